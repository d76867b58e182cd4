/** A hand-written SVG of accuracy and loss per round, secure vs plain FedAvg (no plotting library). */
import type { FlResult, Metrics } from './run.js';

interface Series {
  label: string;
  colour: string;
  dash: string;
  points: number[];
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function niceTicks(lo: number, hi: number, count = 5): number[] {
  const span = hi - lo || 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((k) => k * mag).find((s) => span / s <= count) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function panel(x0: number, y0: number, w: number, h: number, title: string, yLabel: string, series: Series[], fmt: (v: number) => string): string {
  const all = series.flatMap((s) => s.points);
  let lo = Math.min(...all);
  let hi = Math.max(...all);
  const pad = (hi - lo) * 0.08 || Math.abs(hi) * 0.05 || 1;
  lo -= pad;
  hi += pad;
  const n = Math.max(...series.map((s) => s.points.length)) - 1;
  const px = (i: number) => x0 + (n === 0 ? 0 : (i / n) * w);
  const py = (v: number) => y0 + h - ((v - lo) / (hi - lo)) * h;
  const parts: string[] = [];
  parts.push(`<text x="${x0 + w / 2}" y="${y0 - 12}" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`);
  parts.push(`<rect x="${x0}" y="${y0}" width="${w}" height="${h}" fill="none" stroke="#888"/>`);
  for (const t of niceTicks(lo, hi)) {
    const y = py(t);
    parts.push(`<line x1="${x0}" x2="${x0 + w}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="#e4e4e4"/>`);
    parts.push(`<text x="${x0 - 6}" y="${(y + 4).toFixed(1)}" text-anchor="end" font-size="11">${esc(fmt(t))}</text>`);
  }
  const xt = niceTicks(0, n, Math.min(n, 10)).filter((t) => Number.isInteger(t));
  for (const t of xt) {
    const x = px(t);
    parts.push(`<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${y0 + h}" y2="${y0 + h + 4}" stroke="#888"/>`);
    parts.push(`<text x="${x.toFixed(1)}" y="${y0 + h + 17}" text-anchor="middle" font-size="11">${t}</text>`);
  }
  parts.push(`<text x="${x0 + w / 2}" y="${y0 + h + 34}" text-anchor="middle" font-size="12">round</text>`);
  parts.push(`<text transform="translate(${x0 - 48} ${y0 + h / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(yLabel)}</text>`);
  for (const s of series) {
    const d = s.points.map((v, i) => `${i === 0 ? 'M' : 'L'}${px(i).toFixed(1)},${py(v).toFixed(1)}`).join(' ');
    parts.push(`<path d="${d}" fill="none" stroke="${s.colour}" stroke-width="${s.dash ? 2 : 3.5}" ${s.dash ? `stroke-dasharray="${s.dash}"` : ''}/>`);
    for (const [i, v] of s.points.entries()) parts.push(`<circle cx="${px(i).toFixed(1)}" cy="${py(v).toFixed(1)}" r="${s.dash ? 2 : 3}" fill="${s.colour}"/>`);
  }
  return parts.join('\n');
}

/** The subtitle under the title: what was trained, on what split, and how it ended. */
function subtitle(result: FlResult, network: boolean): string {
  const o = result.options;
  const last = result.rounds.at(-1);
  const d = result.data;
  const common = `${result.rounds.length} rounds, ${Math.round(o.dropoutRate * 100)}% dropouts per round; ring 2^${result.plan.bits}, scale 2^${result.plan.fractionalBits}`;
  if (d.task === 'spam' && d.heldOut && d.clientPositiveRates) {
    const r = d.clientPositiveRates;
    return (
      `${o.clients} ${network ? 'WebSocket ' : ''}clients = recipient mailboxes (spam rate ${Math.round(100 * Math.min(...r))}–${Math.round(100 * Math.max(...r))}% per client); ` +
      `test: ${d.heldOut.mails} mails of ${d.heldOut.mailboxes} held-out mailboxes; ${common}` +
      (last ? `; final accuracy ${(100 * last.secure.accuracy).toFixed(2)}% vs ${(100 * last.plain.accuracy).toFixed(2)}%` : '')
    );
  }
  return (
    `${o.clients} ${network ? 'WebSocket ' : ''}clients (non-IID: ~85% of each client's data from 2 of ${o.spec.classes} classes), ${common}` +
    (last ? `; final accuracy ${(100 * last.secure.accuracy).toFixed(2)}% vs ${(100 * last.plain.accuracy).toFixed(2)}%` : '')
  );
}

export function renderSvg(result: FlResult): string {
  const metric = (k: 'secure' | 'plain', f: (m: Metrics) => number) => [result.initial, ...result.rounds.map((r) => r[k])].map(f);
  const network = result.aggregation === 'network';
  const spam = result.data.task === 'spam';
  const secure = { label: network ? 'SecAgg service (WebSocket clients, dropouts)' : 'SecAgg (masked, fixed-point, dropouts)', colour: '#7fa7e6', dash: '' };
  const plain = { label: 'plain FedAvg (unmasked, float64)', colour: '#e07b00', dash: '6 4' };
  const baseline = {
    label: `majority class (always ${result.data.majorityClass === 1 ? 'spam' : 'ham'}: ${(100 * result.data.baseline.accuracy).toFixed(1)}%)`,
    colour: '#777',
    dash: '2 3',
  };
  const both = (f: (m: Metrics) => number): Series[] => [
    { ...secure, points: metric('secure', f) },
    { ...plain, points: metric('plain', f) },
  ];
  const flat = (v: number) => new Array<number>(result.rounds.length + 1).fill(v);
  const panels: Array<{ title: string; yLabel: string; series: Series[]; fmt: (v: number) => string }> = [
    {
      title: spam ? 'held-out accuracy' : 'test accuracy',
      yLabel: 'accuracy (%)',
      series: [...both((m) => 100 * m.accuracy), ...(spam ? [{ ...baseline, points: flat(100 * result.data.baseline.accuracy) }] : [])],
      fmt: (v) => v.toFixed(0),
    },
    ...(spam ? [{ title: 'spam F1 (held-out)', yLabel: 'F1 (%)', series: both((m) => 100 * (m.f1 ?? 0)), fmt: (v: number) => v.toFixed(0) }] : []),
    { title: spam ? 'held-out loss' : 'test loss', yLabel: 'cross-entropy', series: both((m) => m.loss), fmt: (v) => v.toFixed(2) },
  ];
  const W = 450 * panels.length;
  const H = 400;
  const legend = spam ? [secure, plain, baseline] : [secure, plain];
  const step = W / legend.length;
  const body = [
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="17" font-weight="bold">${spam ? 'Spam filtering (SpamAssassin corpus), federated: ' : 'Federated averaging: '}${network ? 'secure aggregation over the network service' : 'secure aggregation'} vs plain FedAvg</text>`,
    `<text x="${W / 2}" y="44" text-anchor="middle" font-size="11" fill="#444">${esc(subtitle(result, network))}</text>`,
    ...panels.map((p, i) => panel(80 + 450 * i, 80, 330, 230, p.title, p.yLabel, p.series, p.fmt)),
    ...legend.map((s, i) => {
      const x = spam ? step * i + 40 : 220 + 300 * i;
      return (
        `<line x1="${x}" x2="${x + 36}" y1="${H - 28}" y2="${H - 28}" stroke="${s.colour}" stroke-width="2" ${s.dash ? `stroke-dasharray="${s.dash}"` : ''}/>` +
        `<text x="${x + 42}" y="${H - 24}" font-size="12">${esc(s.label)}</text>`
      );
    }),
  ];
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n${body.join('\n')}\n</svg>\n`;
}
