export type { CryptoProvider, Ed25519PrivateKey, X25519PrivateKey } from './provider.js';
export { nodeCrypto } from './node.js';
export { webCrypto } from './web.js';
// node.js under the "node" condition, web.js everywhere else (package.json "imports").
export { defaultCrypto } from '#crypto-default';
