/**
 * The dropout matrix for one stage: in both modes and both graph kinds, no drop, one drop, the
 * most the threshold tolerates, and one beyond it. Every run is the real protocol over encoded
 * messages; sums are compared with an independent plaintext sum of the included clients.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { unsafeSeededRng } from '../../src/rng.js';
import { fromBinary } from '@bufbuild/protobuf';
import { buildGraph } from '../../src/graph/index.js';
import { minimumThreshold } from '../../src/protocol/config.js';
import { simulateRound, type SimulateOptions, type Stage } from '../../src/sim/simulate.js';
import { ServerMessageSchema } from '../../src/wire/gen/secagg/v1/secagg_pb.js';
import type { ClientId } from '../../src/ids.js';
import { GRAPH_SEED, randomInputs, range, runAborts, runOk } from '../helpers.js';

const M = 48;
const BITS = 16;

interface Graph {
  name: string;
  n: number;
  degree: number | 'complete';
  k: number;
}
const GRAPHS: Graph[] = [
  { name: 'complete graph (SecAgg)', n: 10, degree: 'complete', k: 9 },
  { name: 'k-regular graph (SecAgg+)', n: 16, degree: 6, k: 6 },
];

/** Clients whose masked input is in the sum after dropping `dropped` at `stage`. */
function survivors(n: number, stage: Stage, dropped: readonly number[]): number[] {
  const before = stage === 'advertise' || stage === 'view' || stage === 'share' || stage === 'masked';
  return before ? range(n).filter((i) => !dropped.includes(i)) : range(n);
}

/**
 * The graph seed a round will use. Semi-honest: the fixed GRAPH_SEED. Active mode derives it from
 * the clients' reveals, which a seeded rng makes the same in every run with that seed up to the
 * view stage — so a dry run without dropouts shows it.
 */
async function graphSeedOf(options: SimulateOptions): Promise<Uint8Array> {
  if (options.mode !== 'active') return GRAPH_SEED;
  let seed: Uint8Array | undefined;
  await simulateRound({
    ...options,
    dropouts: {},
    interceptServer: (_to, bytes) => {
      const msg = fromBinary(ServerMessageSchema, bytes);
      if (msg.body.case === 'keys') seed = msg.body.value.graphSeed;
      return bytes;
    },
  });
  return seed!;
}

export function dropoutMatrix(stage: Stage): void {
  const modes = stage === 'consistency' || stage === 'view' ? (['active'] as const) : (['semi-honest', 'active'] as const);
  for (const mode of modes) {
    for (const g of GRAPHS) {
      describe(`drop at ${stage}, ${mode}, ${g.name}`, () => {
        const t = minimumThreshold(mode, g.degree, g.n);
        const inputs = randomInputs(g.n, M, BITS, g.n * 31 + stage.length);
        const base = { inputs, bits: BITS, degree: g.degree, mode, graphSeed: GRAPH_SEED };
        const run = (dropped: number[], seed: number) => ({ ...base, dropouts: { [stage]: dropped }, rng: unsafeSeededRng(seed) });
        // The clients a worst-case dropout pattern hits: neighbours of client index 0 in the graph
        // the server will build (the graph is complete, or known from its seed).
        const victimNeighbours = async (seed: number) =>
          buildGraph({ clients: range(g.n).map((i) => (i + 1) as ClientId), degree: g.k, seed: await graphSeedOf(run([], seed)) })
            .neighbours(1 as ClientId)
            .map((id) => id - 1);
        // At AdvertiseKeys the graph is built over the clients that advertised, so only the number
        // of advertisers matters: the round needs more than t of them. At later stages any k − t
        // dropped clients leave every client ≥ t live neighbours; k − t + 1 of one client's
        // neighbours leave it t − 1. (At ShareKeys the server first leaves such a client out; in a
        // k-regular ring lattice with t = k/2 + 1 that loss cascades along the ring, so the round
        // still ends below the threshold — the typed abort, never a wrong sum.)
        const early = stage === 'advertise' || stage === 'view';
        const tolerated = early ? g.n - t - 1 : g.k - t;
        const worst = async (count: number, seed: number) => (early ? range(count) : (await victimNeighbours(seed)).slice(0, count));

        test('no dropout', async () => {
          await runOk(run([], 1), range(g.n));
        });

        test('one client drops', async () => {
          await runOk(run([2], 2), survivors(g.n, stage, [2]));
        });

        test(`the most the threshold tolerates (${tolerated} clients)`, async () => {
          assert.ok(tolerated >= 1);
          const dropped = await worst(tolerated, 3);
          await runOk(run(dropped, 3), survivors(g.n, stage, dropped));
        });

        test(`one more than tolerated (${tolerated + 1}) aborts with ERR_BELOW_THRESHOLD`, async () => {
          await runAborts(run(await worst(tolerated + 1, 4), 4), 'ERR_BELOW_THRESHOLD');
        });
      });
    }
  }
}
