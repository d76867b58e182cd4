import { accountRounds, discreteMechanism, distributedDiscreteGaussianTau, type Mechanism } from '../dp/index.js';
import { fail, intFlag, parseFlags } from './args.js';

export const PRIVACY_HELP = `Usage: secagg privacy --mechanism gaussian|skellam|dgauss --noise-multiplier Z --sampling-rate Q
                      --rounds R --delta D [--dimension d --l2-clip c --bits b --clients n] [--json]

Prints the (ε, δ) differential privacy of R rounds, each releasing one noisy sum whose cohort is
drawn by Poisson sampling at rate Q from its population: Rényi DP per round, composed over the
rounds, converted as Google's dp_accounting does over its default orders. docs/privacy.md gives
the formulas and their sources.

Options:
  --mechanism M         gaussian (continuous, the reference), skellam, or dgauss (distributed
                        discrete Gaussian)
  --noise-multiplier Z  standard deviation of the noise in the released sum, per coordinate,
                        divided by the l2 clip (for every mechanism)
  --sampling-rate Q     probability that a client of the population is in a round, in [0, 1]
  --rounds R            number of rounds (releases)
  --delta D             δ, in (0, 1)
  --json                print {"epsilon": …, "order": …} on one line

Skellam and dgauss only (all four required): the noise is added in integers, so ε depends on how
finely the clipped update is scaled into a b-bit ring, and on the rounding:
  --dimension d         coordinates of each client's (padded) vector
  --l2-clip c           l2 clip of each client's vector, in its real units
  --bits b              bits per coordinate of the ring, 1..32: sets the scale s (integer units per
                        real unit) so that 4 standard deviations of a coordinate of the noisy sum
                        of n clients fit (Kairouz et al. 2021, Sec. 4)
  --clients n           clients whose noise is in the released sum (the fewest that can be in one)
Then one client's integer vector has l2 norm ≤ s·c + √d and l1 norm ≤ min(√d, s·c + √d)·(s·c + √d);
the total noise has standard deviation s·Z·c (Skellam variance (s·Z·c)²; dgauss: each of the n
clients adds σ = s·Z·c/√n). With Q < 1 amplification uses Zhu & Wang 2019, Theorem 5.

  -h, --help            this text

Exit code 0 with ε printed, 2 for bad arguments.`;

/** A finite number flag (required), checked against `ok` and described by `range` in the message. */
function numberFlag(value: string | undefined, name: string, ok: (x: number) => boolean, range: string): number {
  if (value === undefined) fail(`give --${name}`);
  const x = value.trim() === '' ? Number.NaN : Number(value);
  if (!Number.isFinite(x) || !ok(x)) fail(`--${name} must be ${range}, got '${value}'`);
  return x;
}

const MECHANISM_NAMES = { gaussian: 'the Gaussian mechanism', skellam: 'the Skellam mechanism', dgauss: 'the distributed discrete Gaussian' } as const;
type MechanismName = keyof typeof MECHANISM_NAMES;

/** For the readable output: up to 4 significant digits, no exponent for ordinary magnitudes. */
function num(x: number): string {
  if (x === 0) return '0';
  return Math.abs(x) >= 1e-3 && Math.abs(x) < 1e7 ? String(Number(x.toPrecision(4))) : x.toPrecision(4);
}

export async function runPrivacy(argv: string[]): Promise<number> {
  const a = parseFlags(
    argv,
    {
      mechanism: { type: 'string' },
      'noise-multiplier': { type: 'string' },
      'sampling-rate': { type: 'string' },
      rounds: { type: 'string' },
      delta: { type: 'string' },
      dimension: { type: 'string' },
      'l2-clip': { type: 'string' },
      bits: { type: 'string' },
      clients: { type: 'string' },
      json: { type: 'boolean' },
    },
    PRIVACY_HELP,
  );
  if (!a) return 0;
  if (a.mechanism === undefined) fail('give --mechanism gaussian, skellam or dgauss');
  if (!(a.mechanism in MECHANISM_NAMES)) fail(`--mechanism must be gaussian, skellam or dgauss, got '${a.mechanism}'`);
  const kind = a.mechanism as MechanismName;
  const z = numberFlag(a['noise-multiplier'], 'noise-multiplier', (x) => x > 0, 'a number > 0');
  const q = numberFlag(a['sampling-rate'], 'sampling-rate', (x) => x >= 0 && x <= 1, 'a number in [0, 1]');
  if (a.rounds === undefined) fail('give --rounds');
  const rounds = intFlag(a.rounds, 'rounds', 0, 1, Number.MAX_SAFE_INTEGER);
  const delta = numberFlag(a.delta, 'delta', (x) => x > 0 && x < 1, 'a number in (0, 1)');
  const discreteFlags = { dimension: a.dimension, 'l2-clip': a['l2-clip'], bits: a.bits, clients: a.clients };

  let mechanism: Mechanism;
  let detail = '';
  if (kind === 'gaussian') {
    const given = Object.entries(discreteFlags).filter(([, v]) => v !== undefined);
    if (given.length > 0) fail(`--${given[0]![0]} applies to skellam and dgauss only (the Gaussian's ε depends on Z alone)`);
    mechanism = { kind: 'gaussian', noiseMultiplier: z };
  } else {
    const missing = Object.entries(discreteFlags).filter(([, v]) => v === undefined);
    if (missing.length > 0) fail(`--mechanism ${kind} needs --dimension, --l2-clip, --bits and --clients (missing --${missing[0]![0]})`);
    const dimension = intFlag(a.dimension, 'dimension', 0, 1, 1 << 30);
    const l2Clip = numberFlag(a['l2-clip'], 'l2-clip', (x) => x > 0, 'a number > 0');
    const bits = intFlag(a.bits, 'bits', 0, 1, 32);
    const clients = intFlag(a.clients, 'clients', 0, 1, 1 << 30);
    if (2 ** (2 * bits) <= clients * 16) fail(`--bits ${bits} is too few for ${clients} clients: the ring cannot hold their rounding`);
    const setup = discreteMechanism({ kind, noiseMultiplier: z, l2Clip, dimension, bits, clients });
    mechanism = setup.mechanism;
    if (mechanism.kind === 'dgauss') {
      if (mechanism.localStddev < 0.5)
        fail(
          `dgauss: each client's noise would have σ = s·Z·c/√n = ${num(mechanism.localStddev)} < 1/2 integer units, below what the bound covers; raise --bits or --noise-multiplier`,
        );
      const tau = distributedDiscreteGaussianTau(mechanism);
      detail = `scale s = ${num(setup.scale)}: l2 sensitivity ${num(mechanism.l2Sensitivity)}, l1 ${num(mechanism.l1Sensitivity)}, per-client σ ${num(mechanism.localStddev)}, τ = ${num(tau)}`;
    } else if (mechanism.kind === 'skellam') {
      detail = `scale s = ${num(setup.scale)}: l2 sensitivity ${num(mechanism.l2Sensitivity)}, l1 ${num(mechanism.l1Sensitivity)}, total variance ${num(mechanism.variance)}`;
    }
  }

  const { epsilon, order } = accountRounds({ mechanism, samplingRate: q, rounds, delta });
  const finite = Number.isFinite(epsilon);
  if (a.json) {
    process.stdout.write(`{"epsilon": ${finite ? epsilon : 'null'}, "order": ${finite ? order : 'null'}}\n`);
    return 0;
  }
  const what = `${rounds} round${rounds === 1 ? '' : 's'} of ${MECHANISM_NAMES[kind]} (Z = ${z}, sampling rate ${q})`;
  process.stdout.write(finite ? `ε = ${num(epsilon)} at δ = ${delta} (RDP order ${order}) after ${what}\n` : `ε = ∞ at δ = ${delta} after ${what}\n`);
  if (detail) process.stdout.write(`  ${detail}\n`);
  return 0;
}
