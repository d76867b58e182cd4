/**
 * A throwaway Redis for a test file: `const redis = await startRedis()` runs Debian's redis-server
 * on 127.0.0.1 and a free port with its files in a temporary directory; `stop()` stops it and
 * removes the directory; `restart()`, `crash()`, `pause()` / `resume()` for the failures a
 * distributed deployment must survive. The server itself is src/cluster/local.ts's (what `secagg
 * cluster` runs); only the defaults differ: nothing is saved unless a test asks for `appendonly`,
 * and then fsynced once a second unless it asks for `appendfsync: 'always'`. Registers no tests.
 *
 * It never skips: without redis-server the tests that need it fail with the command to install it
 * (.ci/run installs it).
 */
import { type LocalRedis, type LocalRedisOptions, startRedis as startLocalRedis } from '../src/cluster/local.js';

export type TestRedis = LocalRedis;

export function startRedis(options: Partial<LocalRedisOptions> = {}): Promise<TestRedis> {
  return startLocalRedis({ appendonly: false, appendfsync: 'everysec', ...options });
}
