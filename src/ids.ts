declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/** A client's id within a round: 1..65535. It is also its Shamir x-coordinate, so 0 is never used. */
export type ClientId = Brand<number, 'ClientId'>;
export const MAX_CLIENT_ID = 65535;

export function clientId(n: number): ClientId {
  if (!Number.isInteger(n) || n < 1 || n > MAX_CLIENT_ID) throw new RangeError(`client id must be in [1, ${MAX_CLIENT_ID}], got ${n}`);
  return n as ClientId;
}

/** 16 random bytes naming one round; bound into every key derivation, signature and AEAD. */
export type RoundId = Brand<Uint8Array, 'RoundId'>;
export const ROUND_ID_BYTES = 16;

export function roundId(bytes: Uint8Array): RoundId {
  if (!(bytes instanceof Uint8Array) || bytes.length !== ROUND_ID_BYTES) throw new RangeError(`round id must be ${ROUND_ID_BYTES} bytes`);
  return bytes as RoundId;
}
