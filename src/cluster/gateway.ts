/**
 * A gateway: terminates clients' WebSockets (the same handshake, tokens and limits as `secagg
 * serve`, from server/connection.ts), registers the welcomed clients as waiting in Redis, and
 * relays each round member's protocol frames to its shard's input stream and the worker's frames
 * back. It adds its clients' masked inputs into one partial sum per shard and sends the worker that
 * one vector with the list of clients in it, so the O(n·m) traffic of the masked stage stays here.
 *
 * A gateway that dies takes its connections with it: its clients become the round's dropouts.
 */
import { randomBytes } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { SecAggError, isSecAggError } from '../errors.js';
import { toHex } from '../identity/index.js';
import { maxClientMessageBytesForStage } from '../protocol/limits.js';
import { createPartialSum, maskedInputVector, type PartialSumBuilder } from '../protocol/partialSum.js';
import type { RoundConfig } from '../protocol/config.js';
import { CLOSE, encodeControl } from '../transport/frames.js';
import { peekClientBody } from '../wire/peek.js';
import { createConnections, CLOSE_ON_REFUSAL, type Conn } from '../server/connection.js';
import { Metrics } from '../server/metrics.js';
import { maxServiceFrameBytes, resolveOptions, type ServiceOptions } from '../server/options.js';
import { createTokenVerifier } from '../server/token.js';
import { append, connect, keys, readStream, wordsToBytes, type Outbound } from './bus.js';
import { fromHex, parsePlan, shardConfig, type PlanShard, type RoundPlan } from './plan.js';
import { roleMetrics } from './metrics.js';

export interface GatewayOptions {
  readonly redisUrl: string;
  readonly prefix?: string;
  /** This gateway's name (default: random). */
  readonly id?: string;
  /** The client-facing service options: port, host, tokens/secret/jwt, tls, limits, mode, dimension, bits. */
  readonly service: Partial<ServiceOptions>;
  /** Heartbeat lapse after which the coordinator stops drawing from this gateway (default 3000 ms). */
  readonly aliveMs?: number;
}

export interface Gateway {
  readonly id: string;
  readonly url: string;
  readonly httpUrl: string;
  readonly port: number;
  /** Welcomed connections, and those waiting for a round. */
  status(): { connections: number; waiting: number; inRound: number };
  close(): Promise<void>;
}

/** One shard of a round, as this gateway sees it. */
interface GwShard {
  readonly rid: string;
  readonly s: number;
  readonly config: RoundConfig;
  readonly shard: PlanShard;
  /** This gateway's members: in-shard id → connection. */
  readonly members: Map<number, Conn>;
  /** The masked stage, while open here. */
  masked?: {
    readonly tag: string;
    readonly acc: PartialSumBuilder;
    readonly expected: Set<number>;
    readonly summed: Set<number>;
    sealed: boolean;
    timer: ReturnType<typeof setTimeout> | undefined;
    /** Members gone while the stage was open: told to the worker after the seal. */
    readonly gone: number[];
  };
}

interface GwRound {
  readonly plan: RoundPlan;
  readonly shards: Map<number, GwShard>;
  readonly watchdog: ReturnType<typeof setTimeout>;
}

export async function createGateway(go: GatewayOptions): Promise<Gateway> {
  const me = go.id ?? `gw-${toHex(randomBytes(4))}`;
  const k = keys(go.prefix ?? 'secagg');
  const aliveMs = go.aliveMs ?? 3000;
  const o = resolveOptions({ ...go.service, autoStart: false });
  const log = o.logger;
  const r = connect(go.redisUrl, `${me}:cmd`);
  const reader = connect(go.redisUrl, `${me}:out`);
  const metrics = new Metrics();
  const role = roleMetrics('gateway');
  const verify = createTokenVerifier({ tokens: o.tokens, jwt: o.jwt, ...(o.secret !== undefined ? { secret: o.secret } : {}) });
  const byId = new Map<number, Conn>();
  const waiting = new Set<Conn>();
  /** A connection's welcome id → its shard in the round it is in, and its id there. */
  const membership = new Map<number, { readonly sh: GwShard; readonly id: number }>();
  const rounds = new Map<string, GwRound>();
  let closing = false;

  // Outgoing entries are batched per tick: one pipeline carries every frame of a burst.
  let outbox: Outbound[] = [];
  let flushing = false;
  const send = (e: Outbound) => {
    outbox.push(e);
    if (!flushing) {
      flushing = true;
      setImmediate(() => {
        flushing = false;
        const batch = outbox;
        outbox = [];
        void append(r, k, batch).catch((err: unknown) => log.log('error', 'relaying to Redis failed', { gateway: me, error: String(err) }));
      });
    }
  };
  const waitingJson = (c: Conn) =>
    JSON.stringify({
      identity: c.identity ?? '',
      ...(c.identityKey ? { identityKey: toHex(c.identityKey) } : {}),
      ...(c.certificate ? { certificate: c.certificate } : {}),
      ...(c.expiresAt !== undefined ? { expiresAt: c.expiresAt } : {}),
    });

  const maxPayload = maxServiceFrameBytes(o);
  const connections = createConnections({
    options: o,
    log,
    metrics,
    verify,
    maxPayload,
    serverId: () => o.serverId ?? `secagg:${me}`,
    closing: () => closing,
    onWelcome: (c) => {
      byId.set(c.clientId!, c);
      waiting.add(c);
      metrics.waiting = waiting.size;
      void r.hset(k.waiting(me), String(c.clientId), waitingJson(c)).catch(() => {});
    },
    onGone: (c) => {
      const id = c.clientId;
      if (id === undefined) return;
      if (byId.get(id) === c) byId.delete(id);
      waiting.delete(c);
      metrics.waiting = waiting.size;
      void r.hdel(k.waiting(me), String(id)).catch(() => {});
      const at = membership.get(id);
      membership.delete(id);
      if (!at || at.sh.members.get(at.id) !== c) return;
      const { sh, id: inShard } = at;
      sh.members.delete(inShard);
      const m = sh.masked;
      if (m && !m.sealed) {
        m.gone.push(inShard);
        m.expected.delete(inShard);
        if (m.expected.size === 0) seal(sh);
      } else send({ key: k.shardIn(sh.rid, sh.s), h: { k: 'gone', from: inShard } });
    },
    onProtocolFrame: (c, bytes) => {
      const at = membership.get(c.clientId!);
      if (!at || c.phase !== 'in-round' || at.sh.members.get(at.id) !== c)
        return connections.refused(c, 'ERR_STAGE_MISMATCH', 'protocol frame outside a round');
      const { sh, id } = at;
      const max = rounds.get(sh.rid)?.plan.maxFrameBytes ?? maxPayload;
      if (bytes.length > max) return connections.close(c, CLOSE.TOO_BIG, `frame of ${bytes.length} bytes exceeds the round's limit of ${max}`, 'too_big');
      role.inc('framesIn');
      if (sh.masked && isMasked(bytes)) return onMasked(c, sh, id, bytes);
      send({ key: k.shardIn(sh.rid, sh.s), h: { k: 'f', from: id }, b: bytes });
    },
  });

  const isMasked = (bytes: Uint8Array): boolean => {
    try {
      return peekClientBody(bytes).kind === 'maskedInput';
    } catch {
      return false;
    }
  };

  const refuse = (c: Conn, e: unknown, rid: string) => {
    const err = isSecAggError(e) ? e : new SecAggError('ERR_INTERNAL', 'unexpected error', { cause: e });
    const close = CLOSE_ON_REFUSAL[err.code];
    if (close !== undefined) connections.close(c, close, `${err.code}: ${err.message}`, 'malformed');
    else connections.refused(c, err.code, err.message);
    log.log('info', 'masked input refused', { gateway: me, round: rid, code: err.code, reason: err.message });
  };

  /** A member's masked input: checked as the state machine would, then added here. */
  const onMasked = (c: Conn, sh: GwShard, id: number, bytes: Uint8Array) => {
    const m = sh.masked!;
    try {
      if (m.sealed) throw new SecAggError('ERR_STAGE_MISMATCH', 'the masked stage is over at this gateway');
      if (m.summed.has(id)) throw new SecAggError('ERR_DUPLICATE_SENDER', `client ${id} already sent its masked input`);
      if (!m.expected.has(id)) throw new SecAggError('ERR_UNKNOWN_SENDER', `client ${id} is not in the shared-keys set`);
      const limit = maxClientMessageBytesForStage(sh.config, 'masked');
      if (bytes.length > limit) throw new SecAggError('ERR_SIZE', `frame of ${bytes.length} bytes exceeds the masked stage's limit of ${limit}`);
      m.acc.add(id, maskedInputVector(sh.config, id, bytes));
      m.summed.add(id);
      m.expected.delete(id);
      role.inc('maskedSummed');
      if (m.expected.size === 0) seal(sh);
    } catch (e) {
      refuse(c, e, sh.rid);
    }
  };

  /** Send the shard's worker this gateway's partial sum and the clients in it; then the members that left. */
  const seal = (sh: GwShard) => {
    const m = sh.masked;
    if (!m || m.sealed) return;
    m.sealed = true;
    if (m.timer) clearTimeout(m.timer);
    const { clients, words } = m.acc.finish();
    send({ key: k.shardIn(sh.rid, sh.s), h: { k: 'partial', gw: me, tag: m.tag, clients }, b: clients.length ? wordsToBytes(words) : new Uint8Array(0) });
    for (const g of m.gone) send({ key: k.shardIn(sh.rid, sh.s), h: { k: 'gone', from: g } });
    role.inc('partialSums');
  };

  const backToWaiting = (c: Conn) => {
    if (c.phase !== 'in-round') return;
    c.phase = 'waiting';
    waiting.add(c);
    metrics.waiting = waiting.size;
    void r.hset(k.waiting(me), String(c.clientId), waitingJson(c)).catch(() => {});
  };

  const endRound = (rid: string, finished: (sh: GwShard, id: number) => Parameters<typeof encodeControl>[0]) => {
    const round = rounds.get(rid);
    if (!round) return;
    clearTimeout(round.watchdog);
    rounds.delete(rid);
    for (const sh of round.shards.values()) {
      if (sh.masked?.timer) clearTimeout(sh.masked.timer);
      for (const [id, c] of sh.members) {
        membership.delete(c.clientId!);
        if (c.phase !== 'in-round') continue;
        c.ws.send(encodeControl(finished(sh, id)));
        backToWaiting(c);
      }
    }
  };

  const onAssign = async (rid: string) => {
    const plan = parsePlan(await r.get(k.plan(rid)));
    const mine = new Map<number, GwShard>();
    for (const shard of plan.shards) {
      const config = shardConfig(plan, shard);
      const sh: GwShard = { rid, s: shard.index, config, shard, members: new Map() };
      const directory =
        plan.mode === 'active'
          ? shard.members.map((m) => ({ clientId: m.id, identity: m.identity, identityKey: fromHex(m.identityKey ?? ''), certificate: m.certificate ?? '' }))
          : [];
      for (const m of shard.members) {
        if (m.gw !== me) continue;
        const c = byId.get(m.conn);
        if (c?.phase !== 'waiting') {
          // Left between the draw and now: a dropout from the start.
          send({ key: k.shardIn(rid, shard.index), h: { k: 'gone', from: m.id } });
          continue;
        }
        waiting.delete(c);
        c.phase = 'in-round';
        c.refused = 0;
        c.queued = 0;
        sh.members.set(m.id, c);
        membership.set(c.clientId!, { sh, id: m.id });
        c.ws.send(
          encodeControl({
            case: 'assignment',
            value: {
              roundNumber: plan.number,
              roundId: config.roundId,
              clientId: m.id,
              bits: plan.bits,
              dimension: plan.dimension,
              maxFrameBytes: plan.maxFrameBytes,
              stageTimeoutMs: plan.stageTimeoutMs,
              directory,
            },
          }),
        );
      }
      if (sh.members.size > 0 || shard.members.some((m) => m.gw === me)) mine.set(shard.index, sh);
    }
    metrics.waiting = waiting.size;
    // The coordinator always ends a round it started; this is for a coordinator that never will
    // (its Redis state lost): the members are told the round is over, and wait again.
    const watchdog = setTimeout(
      () => {
        log.log('warn', 'round did not end in time: its members are released', { gateway: me, round: rid });
        endRound(rid, (sh) => ({
          case: 'finished',
          value: {
            roundNumber: plan.number,
            roundId: sh.config.roundId,
            completed: false,
            included: false,
            code: 'ERR_ABORTED',
            reason: 'the round did not end in time',
            survivors: 0,
          },
        }));
      },
      Math.max(1000, plan.deadline - Date.now() + 10_000),
    );
    rounds.set(rid, { plan, shards: mine, watchdog });
    log.log('info', 'round assigned', { gateway: me, round: rid, members: [...mine.values()].reduce((a, sh) => a + sh.members.size, 0) });
  };

  const onEntry = async (h: Record<string, unknown>, b: Buffer | undefined) => {
    const rid = typeof h.rid === 'string' ? h.rid : '';
    switch (h.k) {
      case 'assign':
        await onAssign(rid);
        return;
      case 'frame': {
        const sh = rounds.get(rid)?.shards.get(h.s as number);
        const c = typeof h.conn === 'number' ? byId.get(h.conn) : undefined;
        if (!sh || !c || c.phase !== 'in-round' || membership.get(c.clientId!)?.sh !== sh || !b) return;
        c.ws.send(b);
        role.inc('framesOut');
        return;
      }
      case 'masked': {
        const sh = rounds.get(rid)?.shards.get(h.s as number);
        if (!sh || typeof h.tag !== 'string' || !Array.isArray(h.ids)) return;
        if (sh.masked?.timer) clearTimeout(sh.masked.timer);
        const ids = (h.ids as unknown[]).filter((x): x is number => typeof x === 'number');
        const expected = new Set(ids.filter((id) => sh.members.has(id)));
        const gone = ids.filter((id) => !sh.members.has(id));
        sh.masked = {
          tag: h.tag,
          acc: createPartialSum(sh.config),
          expected,
          summed: new Set(),
          sealed: false,
          timer: undefined,
          gone: [],
        };
        for (const g of gone) send({ key: k.shardIn(rid, sh.s), h: { k: 'gone', from: g } });
        const sealAt = typeof h.sealAt === 'number' ? h.sealAt : Date.now();
        if (expected.size === 0) seal(sh);
        else sh.masked.timer = setTimeout(() => seal(sh), Math.max(0, sealAt - Date.now()));
        return;
      }
      case 'refused': {
        const c = typeof h.conn === 'number' ? byId.get(h.conn) : undefined;
        if (c?.phase !== 'in-round') return;
        const code = String(h.code);
        const close = CLOSE_ON_REFUSAL[code as keyof typeof CLOSE_ON_REFUSAL];
        if (close !== undefined) connections.close(c, close, `${code}: ${String(h.reason)}`, 'malformed');
        else connections.refused(c, code, String(h.reason));
        return;
      }
      case 'finished': {
        const shards = Array.isArray(h.shards) ? (h.shards as { s: number; counted: boolean; included: number[] }[]) : [];
        const completed = h.completed === true;
        const round = rounds.get(rid);
        if (!round) return;
        endRound(rid, (sh, id) => {
          const res = shards.find((x) => x.s === sh.s);
          return {
            case: 'finished',
            value: {
              roundNumber: round.plan.number,
              roundId: sh.config.roundId,
              completed,
              included: completed && res?.counted === true && res.included.includes(id),
              code: typeof h.code === 'string' ? h.code : '',
              reason: typeof h.reason === 'string' ? h.reason : '',
              survivors: typeof h.survivors === 'number' ? h.survivors : 0,
            },
          };
        });
        log.log('info', 'round finished', { gateway: me, round: rid, completed });
        return;
      }
      default:
        return;
    }
  };

  // The gateway's stream: assignments and results from the coordinator, frames from the workers, in one order.
  let last = (await r.call('XINFO', ['STREAM', k.gatewayOut(me)]).then(
    (info) => {
      const arr = info as unknown[];
      const i = arr.indexOf('last-generated-id');
      return i >= 0 ? String(arr[i + 1]) : '0-0';
    },
    () => '0-0',
  )) as string;
  const loop = (async () => {
    while (!closing) {
      try {
        const entries = await readStream(reader, k.gatewayOut(me), last, 500);
        for (const e of entries) {
          last = e.id;
          try {
            await onEntry(e.h, e.b);
          } catch (err) {
            log.log('error', 'could not handle a cluster message', { gateway: me, kind: String(e.h.k), error: String(err) });
          }
        }
        if (entries.length) void r.call('XTRIM', [k.gatewayOut(me), 'MINID', last]).catch(() => {});
      } catch (err) {
        if (closing) break;
        log.log('warn', 'reading from Redis failed; retrying', { gateway: me, error: String(err) });
        await new Promise((ok) => setTimeout(ok, 200));
      }
    }
  })();

  // Heartbeat; when the key had lapsed (a pause, a Redis that lost its data) the waiting list is written again.
  const heartbeat = async () => {
    const was = await r.set(k.gatewayAlive(me), JSON.stringify({ at: Date.now(), waiting: waiting.size, connections: byId.size }), 'PX', aliveMs, 'GET');
    await r.sadd(k.gateways, me);
    if (was === null && waiting.size > 0) {
      const p = r.pipeline();
      for (const c of waiting) p.hset(k.waiting(me), String(c.clientId), waitingJson(c));
      await p.exec();
    }
  };
  await r.del(k.waiting(me));
  await heartbeat();
  const beat = setInterval(() => void heartbeat().catch(() => {}), Math.max(200, aliveMs / 3));

  const health = () => ({ role: 'gateway', id: me, connections: byId.size, waiting: waiting.size, rounds: rounds.size });
  const roleHandler = role.handler(health);
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics' || path === '/healthz') return roleHandler(req, res);
    res.writeHead(404);
    res.end();
  };
  // With TLS: HTTPS, and the clients' WebSocket over it (wss://), as `secagg serve` has it.
  const pem = (v: string | Uint8Array) => (typeof v === 'string' ? v : new TextDecoder().decode(v));
  const http = o.tls ? createHttpsServer({ cert: pem(o.tls.cert), key: pem(o.tls.key) }, handler) : createHttpServer(handler);
  role.gauge('connections', () => byId.size);
  role.gauge('waiting', () => waiting.size);
  http.on('upgrade', connections.upgrade);
  await new Promise<void>((ok, fail) => http.once('error', fail).listen(o.port, o.host, () => ok()));
  const port = (http.address() as AddressInfo).port;
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  connections.startKeepAlive();
  const ws = o.tls ? 'wss' : 'ws';
  const web = o.tls ? 'https' : 'http';
  log.log('info', 'gateway listening', { gateway: me, url: `${ws}://${host}:${port}/ws` });

  return {
    id: me,
    url: `${ws}://${host}:${port}/ws`,
    httpUrl: `${web}://${host}:${port}/`,
    port,
    status: () => ({ connections: byId.size, waiting: waiting.size, inRound: membership.size }),
    async close() {
      if (closing) return;
      closing = true;
      clearInterval(beat);
      connections.stopKeepAlive();
      for (const round of rounds.values()) clearTimeout(round.watchdog);
      for (const c of connections.all()) connections.close(c, CLOSE.GOING_AWAY, 'gateway shutting down', 'shutdown');
      connections.stop();
      reader.disconnect();
      await loop;
      await r.del(k.waiting(me), k.gatewayAlive(me)).catch(() => {});
      await r.srem(k.gateways, me).catch(() => {});
      r.disconnect();
      await new Promise<void>((ok) => {
        http.close(() => ok());
        http.closeAllConnections();
      });
    },
  };
}
