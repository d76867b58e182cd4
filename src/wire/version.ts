/** The protocol version this implementation speaks; bumped on any incompatible change. */
export const PROTOCOL_VERSION = 1;
