/**
 * Cluster test helpers: a real Redis (redisHarness), gateways, shard workers and coordinators in
 * this process (or as `secagg` child processes, for the SIGKILL tests), and participate() clients
 * spread over the gateways. Registers no tests.
 */
import { fileURLToPath } from 'node:url';
import { startRoleProcess, type RoleProcess } from '../src/cluster/local.js';
import { participate, type ParticipateOptions, type RoundReport } from '../src/client/index.js';
import type { ClusterResult } from '../src/cluster/coordinator.js';
import { jsonLogger, silentLogger } from '../src/server/logger.js';
import { plainSum } from '../src/ring/vector.js';
import { SECRET, WS, token, vector } from './serviceHelpers.js';

export { SECRET, vector };

export const QUIET = { logger: process.env['CLUSTER_DEBUG'] ? jsonLogger({ level: 'debug' }) : silentLogger };

export interface ClusterClient {
  readonly name: string;
  readonly input: Uint32Array;
  readonly done: Promise<RoundReport[]>;
}

/** A participate() client on `url`, named `name`, whose input is vector(seed). */
export function clusterClient(url: string, name: string, input: Uint32Array, extra: Partial<ParticipateOptions> = {}): ClusterClient {
  return { name, input, done: participate({ url, token: token(name), input, WebSocket: WS, ...extra }) };
}

/** The plaintext sum of the named clients' inputs. */
export function expectedSum(clients: readonly ClusterClient[], identities: readonly string[], m: number, bits: number): Uint32Array {
  const byName = new Map(clients.map((c) => [c.name, c.input]));
  return plainSum(
    identities.map((n) => {
      const v = byName.get(n);
      if (!v) throw new Error(`unknown identity ${n} in the result`);
      return v;
    }),
    bits,
    m,
  );
}

export function sameWords(a: Uint32Array, b: Uint32Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Resolves with the coordinator's next result. */
export function nextClusterResult(c: { onResult(l: (r: ClusterResult) => void): () => void }): Promise<ClusterResult> {
  return new Promise((resolve) => {
    const off = c.onResult((r) => {
      off();
      resolve(r);
    });
  });
}

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

export type { RoleProcess };

/** Start `secagg <role> …` (src/cluster/local.ts's startRoleProcess) and wait for its ready line. */
export function startRole(args: string[], env: Record<string, string> = {}): Promise<RoleProcess> {
  return startRoleProcess({ main: MAIN, args, env });
}
