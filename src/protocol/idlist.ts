import { SecAggError } from '../errors.js';
import { MAX_CLIENT_ID } from '../ids.js';

/** A list of client ids from the network: strictly ascending (so no duplicates), each in range. */
export function checkIdList(list: readonly number[], what: string): number[] {
  let previous = 0;
  for (const v of list) {
    if (!Number.isInteger(v) || v < 1 || v > MAX_CLIENT_ID) throw new SecAggError('ERR_DECODE', `${what}: ${v} is not a client id`);
    if (v <= previous) throw new SecAggError('ERR_DECODE', `${what} must be strictly ascending`);
    previous = v;
  }
  return list.slice();
}
