/**
 * /metrics after real rounds over WebSocket, read with a strict parser of the Prometheus text
 * exposition format (0.0.4): every line is a HELP, a TYPE, a comment or a sample
 * `name{label="value",…} value [timestamp]`; a family's lines form one group, its TYPE before its
 * samples; histograms have `_bucket` (with `le`, ascending, cumulative, ending at +Inf), `_sum` and
 * `_count` (= the +Inf bucket) per label set; no series appears twice.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { SecAggServer } from '../src/server/index.js';
import { nextResult, nodeClient, startServer, vector } from './serviceHelpers.js';

const M = 64;
const BITS = 16;

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
  readonly timestamp?: number;
}

interface Family {
  readonly name: string;
  type: string;
  help?: string;
  readonly samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

/** A sample value: a Go float (ParseFloat), including NaN and ±Inf. */
function parseValue(s: string, line: number): number {
  if (/^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/.test(s)) return Number(s);
  if (/^[+-]?Inf$/i.test(s)) return s.startsWith('-') ? -Infinity : Infinity;
  if (/^NaN$/i.test(s)) return Number.NaN;
  throw new Error(`line ${line}: bad value ${JSON.stringify(s)}`);
}

/** `{a="x",b="y\"z"}` from position `i` (at the `{`); returns the labels and the position after the `}`. */
function parseLabels(text: string, i: number, line: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  i++; // '{'
  for (;;) {
    if (text[i] === '}') return { labels, end: i + 1 };
    const eq = text.indexOf('=', i);
    if (eq < 0) throw new Error(`line ${line}: label without '='`);
    const name = text.slice(i, eq);
    if (!LABEL_NAME.test(name)) throw new Error(`line ${line}: bad label name ${JSON.stringify(name)}`);
    if (name in labels) throw new Error(`line ${line}: label ${name} twice`);
    if (text[eq + 1] !== '"') throw new Error(`line ${line}: label ${name}'s value is not quoted`);
    let value = '';
    let j = eq + 2;
    for (;;) {
      const ch = text[j];
      if (ch === undefined) throw new Error(`line ${line}: unterminated label value`);
      if (ch === '"') break;
      if (ch === '\\') {
        const esc = text[j + 1];
        if (esc === '\\') value += '\\';
        else if (esc === '"') value += '"';
        else if (esc === 'n') value += '\n';
        else throw new Error(`line ${line}: bad escape \\${esc}`);
        j += 2;
      } else {
        value += ch;
        j++;
      }
    }
    labels[name] = value;
    i = j + 1;
    if (text[i] === ',') i++;
    else if (text[i] !== '}') throw new Error(`line ${line}: expected ',' or '}' after label ${name}`);
  }
}

/** The family a sample belongs to: its own name, or a histogram's/summary's base name. */
function familyOf(families: Map<string, Family>, name: string): string {
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  if (m) {
    const base = families.get(m[1]!);
    if (base && (base.type === 'histogram' || (base.type === 'summary' && m[2] !== 'bucket'))) return m[1]!;
  }
  return name;
}

function parseExposition(text: string): Map<string, Family> {
  assert.ok(text.endsWith('\n'), 'the exposition ends with a line feed');
  const families = new Map<string, Family>();
  const closed = new Set<string>();
  const series = new Set<string>();
  const typed = new Set<string>();
  let current: string | undefined;
  const enter = (name: string, line: number): Family => {
    if (current !== name) {
      if (closed.has(name)) throw new Error(`line ${line}: metric ${name} is not one group`);
      if (current !== undefined) closed.add(current);
      current = name;
    }
    let f = families.get(name);
    if (!f) families.set(name, (f = { name, type: 'untyped', samples: [] }));
    return f;
  };
  text
    .slice(0, -1)
    .split('\n')
    .forEach((raw, index) => {
      const line = index + 1;
      if (raw.trim() === '') return;
      if (raw.startsWith('#')) {
        const m = /^#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(raw);
        if (!m) return; // a comment
        const [, kind, name, rest = ''] = m as unknown as [string, string, string, string | undefined];
        if (!METRIC_NAME.test(name)) throw new Error(`line ${line}: bad metric name ${JSON.stringify(name)}`);
        const f = enter(name, line);
        if (kind === 'HELP') {
          if (f.help !== undefined) throw new Error(`line ${line}: second HELP for ${name}`);
          if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ''))) throw new Error(`line ${line}: bad escape in HELP`);
          f.help = rest.replace(/\\(\\|n)/g, (_, c: string) => (c === 'n' ? '\n' : '\\'));
        } else {
          if (!TYPES.has(rest)) throw new Error(`line ${line}: unknown type ${JSON.stringify(rest)}`);
          if (f.samples.length > 0 || typed.has(name)) throw new Error(`line ${line}: TYPE for ${name} after its samples or twice`);
          typed.add(name);
          f.type = rest;
        }
        return;
      }
      const nameEnd = raw.search(/[{ \t]/);
      if (nameEnd <= 0) throw new Error(`line ${line}: not a sample: ${JSON.stringify(raw)}`);
      const name = raw.slice(0, nameEnd);
      if (!METRIC_NAME.test(name)) throw new Error(`line ${line}: bad metric name ${JSON.stringify(name)}`);
      let labels: Record<string, string> = {};
      let i = nameEnd;
      if (raw[i] === '{') ({ labels, end: i } = parseLabels(raw, i, line));
      const fields = raw
        .slice(i)
        .trim()
        .split(/[ \t]+/);
      if (!/^[ \t]/.test(raw.slice(i)) || fields.length < 1 || fields.length > 2) throw new Error(`line ${line}: expected 'value [timestamp]'`);
      const value = parseValue(fields[0]!, line);
      let timestamp: number | undefined;
      if (fields[1] !== undefined) {
        if (!/^-?\d+$/.test(fields[1])) throw new Error(`line ${line}: bad timestamp ${fields[1]}`);
        timestamp = Number(fields[1]);
      }
      const key = `${name}{${Object.entries(labels)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
        .join(',')}}`;
      if (series.has(key)) throw new Error(`line ${line}: series ${key} twice`);
      series.add(key);
      const f = enter(familyOf(families, name), line);
      f.samples.push({ name, labels, value, ...(timestamp !== undefined ? { timestamp } : {}) });
    });
  for (const f of families.values()) checkFamily(f);
  return families;
}

/** The type's rules: sample names, counters ≥ 0, histogram buckets. */
function checkFamily(f: Family): void {
  const withoutLe = (l: Readonly<Record<string, string>>) => JSON.stringify(Object.entries(l).filter(([k]) => k !== 'le' && k !== 'quantile'));
  if (f.type === 'counter' || f.type === 'gauge' || f.type === 'untyped') {
    for (const s of f.samples) assert.equal(s.name, f.name, `${s.name} belongs to ${f.type} ${f.name}`);
    if (f.type === 'counter') for (const s of f.samples) assert.ok(s.value >= 0, `counter ${f.name} is ≥ 0`);
    return;
  }
  const groups = new Map<string, { buckets: Array<[number, number]>; sum?: number; count?: number; quantiles: number }>();
  for (const s of f.samples) {
    const key = withoutLe(s.labels);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { buckets: [], quantiles: 0 }));
    if (s.name === `${f.name}_sum`) g.sum = s.value;
    else if (s.name === `${f.name}_count`) g.count = s.value;
    else if (f.type === 'histogram' && s.name === `${f.name}_bucket`) {
      const le = s.labels['le'];
      assert.ok(le !== undefined, `${s.name} has an le label`);
      g.buckets.push([parseValue(le, 0), s.value]);
    } else if (f.type === 'summary' && s.name === f.name) {
      const q = Number(s.labels['quantile']);
      assert.ok(q >= 0 && q <= 1, `${f.name} has a quantile label in [0, 1]`);
      g.quantiles++;
    } else assert.fail(`${s.name} does not belong to ${f.type} ${f.name}`);
    if (s.name !== `${f.name}_bucket`) assert.equal(s.labels['le'], undefined, `only ${f.name}_bucket has le`);
  }
  for (const [key, g] of groups) {
    assert.ok(g.sum !== undefined && g.count !== undefined, `${f.name}${key} has _sum and _count`);
    if (f.type !== 'histogram') continue;
    assert.ok(g.buckets.length > 0, `${f.name}${key} has buckets`);
    for (let i = 1; i < g.buckets.length; i++) {
      assert.ok(g.buckets[i]![0] > g.buckets[i - 1]![0], `${f.name}${key}: le ascending`);
      assert.ok(g.buckets[i]![1] >= g.buckets[i - 1]![1], `${f.name}${key}: buckets cumulative`);
    }
    const last = g.buckets.at(-1)!;
    assert.equal(last[0], Infinity, `${f.name}${key} ends with le="+Inf"`);
    assert.equal(last[1], g.count, `${f.name}${key}: the +Inf bucket is the count`);
  }
}

async function scrape(server: SecAggServer): Promise<{ contentType: string; families: Map<string, Family> }> {
  const res = await fetch(server.httpUrl + 'metrics');
  assert.equal(res.status, 200);
  return { contentType: res.headers.get('content-type') ?? '', families: parseExposition(await res.text()) };
}

/** The value of the series `name` with exactly these labels (undefined: absent). */
function value(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  const f = families.get(familyOf(families, name));
  const want = JSON.stringify(Object.entries(labels).sort());
  return f?.samples.find((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want)?.value;
}

const need = (families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number => {
  const v = value(families, name, labels);
  assert.ok(v !== undefined, `${name}${JSON.stringify(labels)} is exposed`);
  return v;
};

describe('service metrics (prom-client) in the Prometheus text format', { timeout: 60_000 }, () => {
  test('the strict parser refuses what the format does not allow', () => {
    const bad = [
      'a 1', // no final line feed
      'a{b="1" 1\n',
      'a{b=1} 1\n',
      'a{1b="x"} 1\n',
      'a 1 2 3\n',
      'a x\n',
      'a 1\na 2\n',
      'a 1\nb 1\na{c="d"} 1\n',
      '# TYPE a counter\na -1\n',
      '# TYPE a gaug\n',
      '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="0.5"} 3\nh_bucket{le="+Inf"} 3\nh_sum 1\nh_count 3\n',
      '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
      '# TYPE h histogram\nh_bucket{le="1"} 2\nh_sum 1\nh_count 2\n',
      '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n',
    ];
    for (const text of bad) assert.throws(() => parseExposition(text), Error, JSON.stringify(text));
    const ok = parseExposition(
      '# HELP h A help with \\\\ and \\n.\n# TYPE h histogram\nh_bucket{a="x\\"y",le="1"} 1\nh_bucket{a="x\\"y",le="+Inf"} 2\nh_sum{a="x\\"y"} 3.5\nh_count{a="x\\"y"} 2\n# a comment\nc{z="1",} 1e3 1700000000000\n',
    );
    assert.equal(ok.get('h')?.help, 'A help with \\ and \n.');
    assert.equal(value(ok, 'h_bucket', { a: 'x"y', le: '+Inf' }), 2);
    assert.equal(value(ok, 'c', { z: '1' }), 1000);
    assert.equal(ok.get('c')?.samples[0]?.timestamp, 1_700_000_000_000);
  });

  test('after a completed and an aborted round: build info, default metrics, rounds, aborts, durations, per-stage clients, bytes', async () => {
    const server = await startServer({ minClients: 5, maxClients: 5 });
    const other = await startServer();
    try {
      const t0 = Date.now();
      // Round 1: five clients, one leaves instead of sending its shares — completes with four.
      const published = nextResult(server);
      const first = Array.from({ length: 5 }, (_, i) =>
        nodeClient(server, `m${i}`, vector(700 + i, M, BITS), { unsafeBeforeSend: (stage) => (i === 0 && stage === 'share' ? 'disconnect' : 'send') }),
      );
      await Promise.all(first.map((c) => c.done));
      const result = await published;
      assert.equal(result.included.length, 4);
      const completedAt = Date.now();
      // Round 2: five more, three leave at the share stage — below the threshold, aborted.
      const ended = new Promise<string>((r) => server.onRoundEnd((rec) => r(`${rec.outcome} ${rec.code}`)));
      const second = Array.from({ length: 5 }, (_, i) =>
        nodeClient(server, `n${i}`, vector(800 + i, M, BITS), { unsafeBeforeSend: (stage) => (i < 3 && stage === 'share' ? 'disconnect' : 'send') }),
      );
      await Promise.all(second.map((c) => c.done));
      assert.equal(await ended, 'aborted ERR_BELOW_THRESHOLD');
      const records = (await server.store.list()).reverse();

      const { contentType, families: f } = await scrape(server);
      assert.match(contentType, /^text\/plain; version=0\.0\.4; charset=utf-8$/);

      const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
      assert.equal(need(f, 'secagg_build_info', { version: pkg.version, node: process.version }), 1);
      assert.equal(f.get('secagg_build_info')?.type, 'gauge');
      // prom-client's default metrics, in this server's registry.
      assert.equal(f.get('process_cpu_user_seconds_total')?.type, 'counter');
      assert.ok(need(f, 'process_resident_memory_bytes') > 0);
      assert.ok(need(f, 'nodejs_heap_size_used_bytes') > 0);
      assert.equal(f.get('nodejs_eventloop_lag_seconds')?.type, 'gauge');

      assert.equal(f.get('secagg_rounds_total')?.type, 'counter');
      const completed = need(f, 'secagg_rounds_total', { outcome: 'completed' });
      assert.equal(completed, 1);
      assert.equal(need(f, 'secagg_rounds_total', { outcome: 'aborted' }), 1);
      assert.equal(need(f, 'secagg_round_aborts_total', { code: 'ERR_BELOW_THRESHOLD' }), 1);
      assert.equal(f.get('secagg_round_duration_seconds')?.type, 'histogram');
      assert.equal(need(f, 'secagg_round_duration_seconds_count', { outcome: 'completed' }), completed, 'one duration per completed round');
      assert.equal(need(f, 'secagg_round_duration_seconds_count', { outcome: 'aborted' }), 1);
      const duration = need(f, 'secagg_round_duration_seconds_sum', { outcome: 'completed' });
      assert.ok(duration > 0 && duration < (completedAt - t0) / 1000 + 1, `round duration ${duration} s`);
      const last = need(f, 'secagg_last_completed_round_timestamp_seconds');
      assert.ok(last >= t0 / 1000 - 1 && last <= completedAt / 1000 + 1, `last completed round at ${last}`);
      assert.equal(need(f, 'secagg_round_running'), 0);

      // Per stage, over both rounds: advertise accepted the whole cohorts; each dropout is counted where it left.
      assert.equal(f.get('secagg_stage_clients_total')?.type, 'counter');
      assert.equal(need(f, 'secagg_stage_clients_total', { stage: 'advertise', outcome: 'accepted' }), 10, 'advertise: both cohorts');
      assert.equal(need(f, 'secagg_stage_clients_total', { stage: 'advertise', outcome: 'dropped' }), 0);
      assert.equal(need(f, 'secagg_stage_clients_total', { stage: 'share', outcome: 'accepted' }), 4 + 2);
      assert.equal(need(f, 'secagg_stage_clients_total', { stage: 'share', outcome: 'dropped' }), 1 + 3);
      for (const stage of ['masked', 'unmask'] as const) {
        const want = records.reduce((s, r) => s + (r.stages[stage]?.clients ?? 0), 0);
        assert.equal(need(f, 'secagg_stage_clients_total', { stage, outcome: 'accepted' }), want, `${stage} accepted`);
        assert.ok(want >= 4, `${stage}: the completed round's four`);
      }
      // The counter's dropouts are the stage records' (the dashboard's) figures.
      for (const stage of ['advertise', 'share', 'masked', 'unmask'] as const) {
        const recorded = records.reduce((s, r) => s + (r.stages[stage]?.dropped ?? 0), 0);
        assert.equal(value(f, 'secagg_stage_clients_total', { stage, outcome: 'dropped' }) ?? 0, recorded, `${stage} dropped`);
      }
      assert.equal(value(f, 'secagg_stage_clients_total', { stage: 'view', outcome: 'accepted' }), undefined, 'no view stage in semi-honest mode');
      // The gauge of the last round (the aborted one).
      assert.equal(need(f, 'secagg_round_stage_clients', { stage: 'advertise' }), 5);
      assert.equal(need(f, 'secagg_round_stage_clients', { stage: 'share' }), 2);

      assert.equal(f.get('secagg_stage_duration_seconds')?.type, 'histogram');
      assert.equal(need(f, 'secagg_stage_duration_seconds_count', { stage: 'advertise' }), 2);
      assert.equal(need(f, 'secagg_stage_duration_seconds_count', { stage: 'unmask' }), 1);
      assert.ok(need(f, 'secagg_bytes_total', { direction: 'in', stage: 'masked' }) >= 4 * M * 2, 'masked inputs counted');
      assert.ok(need(f, 'secagg_bytes_total', { direction: 'out', stage: 'advertise' }) > 0);
      assert.ok(need(f, 'secagg_bytes_total', { direction: 'in', stage: 'unmask' }) > 0);
      for (const g of ['secagg_connections', 'secagg_pending_connections', 'secagg_waiting_clients']) {
        assert.equal(f.get(g)?.type, 'gauge');
        assert.ok(Number.isInteger(need(f, g)) && need(f, g) >= 0, g);
      }
      assert.equal(need(f, 'secagg_pending_connections'), 0);
      assert.equal(need(f, 'secagg_waiting_clients'), 0);
      assert.equal(f.get('secagg_messages_refused_total')?.samples.length, 0, 'an honest client is never refused');
      assert.equal(f.get('secagg_connections_closed_total')?.type, 'counter');

      // Another server in the same process has its own registry.
      const o = (await scrape(other)).families;
      assert.equal(need(o, 'secagg_rounds_total', { outcome: 'completed' }), 0);
      assert.equal(o.get('secagg_stage_clients_total')?.samples.length, 0);
      assert.equal(need(o, 'secagg_build_info', { version: pkg.version, node: process.version }), 1);
    } finally {
      await other.close();
      await server.close();
    }
  });
});
