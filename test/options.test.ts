/** The service's options (server/options.ts): defaults merged in one place, every option checked once with its name. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveOptions, type ServiceOptions } from '../src/server/options.js';
import { silentLogger } from '../src/server/logger.js';

test('options: defaults fill what is not given (also an option given as undefined); given values are kept', () => {
  const o = resolveOptions({ minClients: 10, stageTimeoutMs: undefined, logger: silentLogger } as unknown as Partial<ServiceOptions>);
  assert.equal(o.minClients, 10);
  assert.equal(o.maxClients, 1000);
  assert.equal(o.stageTimeoutMs, 30_000);
  assert.equal(o.mode, 'semi-honest');
  assert.equal(o.logger, silentLogger);
  assert.ok(Number.isInteger(o.unmaskWorkers) && o.unmaskWorkers >= 1);
});

test('options: each bad option is refused with a TypeError or RangeError naming it', () => {
  const bad: Array<[Partial<Record<keyof ServiceOptions, unknown>>, typeof TypeError | typeof RangeError, RegExp]> = [
    [{ port: 70_000 }, RangeError, /^port /],
    [{ port: 1.5 }, RangeError, /^port /],
    [{ host: '' }, TypeError, /^host /],
    [{ tokens: 'abc' }, TypeError, /^tokens /],
    [{ secret: 42 }, TypeError, /^secret /],
    [{ minClients: 2 }, RangeError, /^minClients /],
    [{ maxClients: 2 }, RangeError, /^maxClients /],
    [{ startDelayMs: -1 }, RangeError, /^startDelayMs /],
    [{ autoStart: 'yes' }, TypeError, /^autoStart /],
    [{ maxRounds: -1 }, RangeError, /^maxRounds /],
    [{ dimension: 0 }, RangeError, /^dimension /],
    [{ bits: 33 }, RangeError, /^bits /],
    [{ mode: 'malicious' }, RangeError, /^mode /],
    [{ dropoutRate: 1 }, RangeError, /^dropoutRate /],
    [{ stageTimeoutMs: 0 }, RangeError, /^stageTimeoutMs /],
    [{ handshakeTimeoutMs: Number.NaN }, RangeError, /^handshakeTimeoutMs /],
    [{ keepAliveIntervalMs: -5 }, RangeError, /^keepAliveIntervalMs /],
    [{ maxMessagesPerSecond: 0 }, RangeError, /^maxMessagesPerSecond /],
    [{ maxConnections: 0 }, RangeError, /^maxConnections /],
    [{ maxPendingPerAddress: 2.5 }, RangeError, /^maxPendingPerAddress /],
    [{ resultsTokens: [''] }, TypeError, /^resultsTokens /],
    [{ store: {} }, TypeError, /^store /],
    [{ historyFile: '' }, TypeError, /^historyFile /],
    [{ unmaskWorkers: -1 }, RangeError, /^unmaskWorkers /],
    [{ logger: console.log }, TypeError, /^logger /],
    [{ serverId: 7 }, TypeError, /^serverId /],
    [{ issuerKey: new Uint8Array(31) }, RangeError, /^issuerKey /],
    [{ corruption: -1 }, RangeError, /^corruption /],
    [{ threshold: 1 }, RangeError, /^threshold /],
    [{ degree: 1 }, RangeError, /^degree /],
    [{ threshold: 900, degree: 10 }, RangeError, /^threshold 900 exceeds every neighbourhood/],
  ];
  for (const [given, type, message] of bad) {
    assert.throws(
      () => resolveOptions({ logger: silentLogger, ...(given as Partial<ServiceOptions>) }),
      (e: unknown) => e instanceof type && message.test((e as Error).message),
      JSON.stringify(given),
    );
  }
  assert.throws(() => resolveOptions(null as unknown as Partial<ServiceOptions>), TypeError);
});
