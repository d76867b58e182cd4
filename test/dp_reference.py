#!/usr/bin/env python3
"""Independent re-computation of the accountant's formulas, in another language and another
arithmetic, for test/dp-accountant.test.ts. Python standard library only (decimal, math, json).

Written from the papers' statements, not from src/dp/accountant.ts: exact binomial sums in 60-digit
decimal arithmetic (no log-space tricks, no lgamma), so a slip in the TypeScript log-space code
shows up as a disagreement.

Reads one JSON request per line on stdin and prints one JSON answer per line:
  {"kind": "sgm", "q": Q, "z": Z, "alpha": A}            RDP of the Poisson-sampled Gaussian, integer A
       Mironov, Talwar, Zhang 2019, Sec. 3.1: A_a = sum_k C(a,k) (1-q)^(a-k) q^k exp((k^2-k)/(2 z^2)),
       RDP = log(A_a)/(a-1).
  {"kind": "zw", "q": Q, "alpha": A, "eps": [e(2), ..., e(A)]}   Zhu & Wang 2019, Theorem 5
  {"kind": "dgauss", "alpha": A, "d": D, "l1": L1, "l2": L2, "sigma": S, "n": N}
       Kairouz, Liu, Steinke 2021, Proposition 14 (sum of N discrete Gaussians of stddev S)
  {"kind": "skellam", "alpha": A, "l1": L1, "l2": L2, "mu": MU}
       Agarwal, Kairouz, Liu 2021 (multi-dimensional Skellam, variance MU per coordinate)
  {"kind": "eps", "orders": [...], "rdp": [...], "delta": D}
       Balle et al. 2020, Theorem 21: eps = min_a rdp_a + log((a-1)/a) - (log D + log a)/(a-1)
  {"kind": "sgm_integral", "q": Q, "z": Z, "alpha": A}   RDP of the Poisson-sampled Gaussian at any
       real order A > 1, by integrating A_a = E_{x~N(0,z^2)} [((1-q) + q exp((2x-1)/(2z^2)))^a]
       (Mironov, Talwar, Zhang 2019, Sec. 3) with the trapezoid rule in log space: no series at all.
  {"kind": "log_erfc", "x": X}   log(erfc(X)) from math.erfc, or past its underflow from the
       asymptotic series erfc(x) ~ e^(-x^2)/(x sqrt(pi)) (1 - 1/(2x^2) + 3/(4x^4) - 15/(8x^6) + 105/(16x^8))
  {"kind": "orders"}   dp_accounting's DEFAULT_RDP_ORDERS expression, evaluated by Python
  {"kind": "gauss_delta", "z": Z, "eps": E}
       the exact delta(eps) of one Gaussian release with noise multiplier Z (Balle & Wang 2018,
       Theorem 8): Phi(1/(2Z) - E Z) - e^E Phi(-1/(2Z) - E Z)
  {"kind": "exact_skellam", "variance": V, "alphas": [A, ...], "shifts": [[D, COUNT], ...]}
       the EXACT Renyi divergence D_A(N || N + v) of the noise itself, by direct summation of its pmf
       (no bound involved): N has independent Skellam coordinates of variance V (Poisson(V/2) -
       Poisson(V/2)), v is an integer vector with COUNT coordinates equal to D (the other coordinates
       are 0 and contribute nothing: the divergence of a product is the sum over its coordinates).
       Answer, one per order A: {"divergence": the sum, "per": [D_A for each D]}. The pmf e^(-V) I_k(V) comes from the
       modified Bessel functions by Miller's backward recurrence, normalised by e^x = I_0(x) + 2 sum I_k(x).
  {"kind": "exact_dgauss_sum", "sigma": S, "n": N, "alphas": [A, ...], "shifts": [[D, COUNT], ...]}
       the same for the distributed discrete Gaussian: each coordinate of N is the sum of N independent
       N_Z(0, S^2) (pmf by explicit convolution of the truncated pmfs, truncated where it cannot matter).
  {"kind": "exact_self_check"}   checks of the exact computation itself: the Bessel recurrence against
       the Poisson convolution sum_j Pois(j + k) Pois(j); pmfs sum to 1 with the right variance; for ONE
       discrete Gaussian at integer order the exact divergence is a closed form, A D^2 / (2 S^2)
       (Canonne, Kamath, Steinke 2020: the lattice sum is invariant under the integer shift A D).
"""
import json
import math
import operator
import sys
from decimal import MAX_EMAX, MIN_EMIN, Decimal, getcontext, localcontext

getcontext().prec = 60


def binom(n, k):
    return Decimal(math.comb(n, k))


def sgm(q, z, alpha):
    q = Decimal(repr(q))
    z = Decimal(repr(z))
    total = Decimal(0)
    for k in range(alpha + 1):
        term = binom(alpha, k) * (1 - q) ** (alpha - k) * q ** k
        total += term * (Decimal(k * k - k) / (2 * z * z)).exp()
    return float(total.ln() / (alpha - 1))


def zw(q, alpha, eps):
    """eps[l - 2] is the base mechanism's RDP at order l, l = 2..alpha."""
    g = Decimal(repr(q))
    e = [None, None] + [Decimal(repr(x)) for x in eps]
    total = (1 - g) ** (alpha - 1) * (alpha * g - g + 1)
    total += binom(alpha, 2) * g ** 2 * (1 - g) ** (alpha - 2) * e[2].exp()
    for l in range(3, alpha + 1):
        total += 3 * binom(alpha, l) * (1 - g) ** (alpha - l) * g ** l * ((l - 1) * e[l]).exp()
    return float(total.ln() / (alpha - 1))


def dgauss(alpha, d, l1, l2, sigma, n):
    tau = 10 * math.fsum(math.exp(-2 * math.pi ** 2 * sigma ** 2 * k / (k + 1)) for k in range(1, n))
    s = math.sqrt(n) * sigma
    t1 = alpha * l2 ** 2 / (2 * s ** 2) + tau * d
    t2 = alpha / 2 * (l2 ** 2 / s ** 2 + 2 * l1 * tau / s + tau ** 2 * d)
    t3 = alpha / 2 * (l2 / s + tau * math.sqrt(d)) ** 2
    return {"rdp": min(t1, t2, t3), "tau": tau}


def skellam(alpha, l1, l2, mu):
    extra = min(((2 * alpha - 1) * l2 ** 2 + 6 * l1) / (4 * mu ** 2), 3 * l1 / (2 * mu))
    return alpha * l2 ** 2 / (2 * mu) + extra


def eps(orders, rdp, delta):
    best = (math.inf, None)
    for a, r in zip(orders, rdp):
        if a <= 1.01 or r is None:
            continue
        e = r + math.log((a - 1) / a) - (math.log(delta) + math.log(a)) / (a - 1)
        if e < best[0]:
            best = (e, a)
    return {"epsilon": max(0.0, best[0]), "order": best[1]}


def sgm_integral(q, z, alpha):
    def log_f(x):
        u = (2 * x - 1) / (2 * z * z)
        # log((1-q) + q e^u), stable for large u
        m = max(math.log1p(-q), math.log(q) + u)
        inner = m + math.log(math.exp(math.log1p(-q) - m) + math.exp(math.log(q) + u - m))
        return -x * x / (2 * z * z) - math.log(z * math.sqrt(2 * math.pi)) + alpha * inner
    h = min(z, z * z) / 50
    lo, hi = -40 * z, alpha + 40 * z
    n = int((hi - lo) / h) + 1
    logs = [log_f(lo + i * h) for i in range(n + 1)]
    top = max(logs)
    total = math.fsum(math.exp(v - top) for v in logs) - 0.5 * (math.exp(logs[0] - top) + math.exp(logs[-1] - top))
    return (top + math.log(total * h)) / (alpha - 1)


def gauss_delta(z, e):
    phi = lambda t: 0.5 * math.erfc(-t / math.sqrt(2))
    return phi(1 / (2 * z) - e * z) - math.exp(e) * phi(-1 / (2 * z) - e * z)


# ---------------------------------------------------------------------------------------------
# Exact Renyi divergences of the noise distributions themselves (no bound): direct summation.
#
# D_a(P || Q) = 1/(a-1) log sum_x P(x)^a Q(x)^(1-a), P the law of N, Q that of N + D (an integer
# shift). Both noises are symmetric, so D_a(N || N + D) = D_a(N + D || N): one direction covers
# both neighbouring relations. Every pmf value is computed to 50 significant digits however small
# it is (Decimal has an exponent range of 10^(+-999999)): the summands that matter at high orders
# sit far out in the tail (around a*D), where the pmf can be e^-1000.

EXACT_DIGITS = 50
# A summand at an end of the summation range must be below this fraction of the total, or the
# range was too small and the computation refuses (never silently truncated).
EXACT_EDGE = Decimal("1e-30")


def _exact_range(alpha, shift, stddev):
    """Summation range [-R, R]: the tilted summand P^a Q^(1-a) is centred near a*D with width ~stddev."""
    return int(abs(alpha * shift) + abs(shift) + 40 * stddev + 40)


def _renyi_shift(pmf, offset, shift, alpha):
    """1/(a-1) log sum_x pmf(x)^a pmf(x - shift)^(1-a) for integer a >= 2; pmf[i] is P(i - offset)."""
    if not (isinstance(alpha, int) and alpha >= 2):
        raise ValueError("exact divergences are computed at integer orders >= 2")
    if shift == 0:
        return Decimal(0)
    n = len(pmf)
    terms = []
    for i in range(n):
        j = i - shift
        if 0 <= j < n:
            terms.append(pmf[i] * (pmf[i] / pmf[j]) ** (alpha - 1))
    total = sum(terms)
    if terms[0] > EXACT_EDGE * total or terms[-1] > EXACT_EDGE * total:
        raise ValueError("summation range too small for order %d and shift %d" % (alpha, shift))
    return total.ln() / (alpha - 1)


def _bessel_i_scaled(x, kmax):
    """e^(-x) I_k(x) for k = 0..kmax, x > 0, by Miller's backward recurrence
    I_(k-1) = I_(k+1) + (2k/x) I_k (I_k is the minimal solution, so the recurrence is stable
    downwards) from a start far above both kmax and x, normalised by e^x = I_0 + 2 sum_(k>=1) I_k."""
    x = Decimal(x)
    start = int(max(kmax, x) + 120 + 10 * x.sqrt())
    r = [Decimal(0)] * (start + 2)
    r[start] = Decimal(1)
    for k in range(start, 0, -1):
        r[k - 1] = r[k + 1] + (2 * k / x) * r[k]
        if r[k - 1] > Decimal("1e1000"):  # rescale: only ratios matter
            r = [v * Decimal("1e-1000") for v in r]
    norm = r[0] + 2 * sum(r[1:])
    return [v / norm for v in r[: kmax + 1]]


def skellam_pmf(variance, kmax):
    """P(k) for k = -kmax..kmax of Poisson(V/2) - Poisson(V/2): e^(-V) I_|k|(V)."""
    half = _bessel_i_scaled(Decimal(repr(variance)), kmax)
    return half[:0:-1] + half


def skellam_pmf_direct(variance, kmax):
    """The same as a finite convolution, sum_j Pois(j + k) Pois(j) (for the self-check only)."""
    mu = Decimal(repr(variance)) / 2
    jmax = int(mu + 40 * mu.sqrt() + 60)
    p = [(-mu).exp()]
    for j in range(1, jmax + kmax + 1):
        p.append(p[-1] * mu / j)
    half = [sum(p[j + k] * p[j] for j in range(jmax + 1)) for k in range(kmax + 1)]
    return half[:0:-1] + half


def dgauss_pmf(sigma, L):
    """N_Z(0, S^2) on -L..L, normalised over that range (the mass left out is below e^-(L^2/2S^2))."""
    s2 = 2 * Decimal(repr(sigma)) ** 2
    w = [(-Decimal(x * x) / s2).exp() for x in range(-L, L + 1)]
    z = sum(w)
    return [v / z for v in w]


def _convolve(a, b, half):
    """(a * b)(m) for the centred sequences a (on -A..A) and b (on -B..B), at m = -half..half only;
    each output is one C-level sum(map(mul, ...)) over the overlapping slices."""
    A, B = (len(a) - 1) // 2, (len(b) - 1) // 2
    rb = b[::-1]  # rb[t] = b at B - t
    out = []
    for m in range(-half, half + 1):
        lo, hi = max(-A, m - B), min(A, m + B)  # a's index y with |y| <= A and |m - y| <= B
        # b at m - y for y = lo..hi is rb[B - m + y]
        out.append(sum(map(operator.mul, a[lo + A : hi + A + 1], rb[B - m + lo : B - m + hi + 1])))
    return out


def dgauss_sum_pmf(sigma, n, R):
    """The law of the sum of n independent N_Z(0, S^2) on -R..R, by n - 1 convolutions.

    Truncation, where it cannot matter: a sum x (|x| <= R) of n terms is dominated by
    configurations near x/n each. With the total fixed, moving one term by u costs at least
    u^2/2S^2 in the exponent, and moving the partial sum of k terms by u from k x/n costs at least
    u^2/(2 k S^2); so each term is kept on |t| <= R/n + M and the partial sum of k terms on
    |y| <= k R/n + M sqrt(k), M = 15 S + 3: what is left out weighs below e^-112 relative."""
    M = 15 * sigma + 3
    one = dgauss_pmf(sigma, int(math.ceil(R / n + M)))
    acc = one
    for k in range(2, n + 1):
        half = R if k == n else int(math.ceil(k * R / n + M * math.sqrt(k)))
        acc = _convolve(acc, one, half)
    mid = (len(acc) - 1) // 2
    return acc[mid - R : mid + R + 1]


def _exact_product(pmf_for_range, stddev, alphas, shifts):
    """One pmf on the widest range any (order, shift) needs, then every divergence from it."""
    R = max(_exact_range(a, d, stddev) for a in alphas for d, _ in shifts)
    pmf = pmf_for_range(R)
    out = []
    for alpha in alphas:
        per = [_renyi_shift(pmf, R, int(shift), alpha) for shift, _ in shifts]
        total = sum(count * dv for (_, count), dv in zip(shifts, per))
        out.append({"divergence": float(total), "per": [float(dv) for dv in per]})
    return out


def _exact_context(ctx):
    ctx.prec = EXACT_DIGITS
    ctx.Emax, ctx.Emin = MAX_EMAX, MIN_EMIN  # tail values far below 10^-999999 must not underflow
    return ctx


def exact_skellam(variance, alphas, shifts):
    with localcontext() as ctx:
        _exact_context(ctx)
        return _exact_product(lambda R: skellam_pmf(variance, R), math.sqrt(variance), alphas, shifts)


def exact_dgauss_sum(sigma, n, alphas, shifts):
    with localcontext() as ctx:
        _exact_context(ctx)
        return _exact_product(lambda R: dgauss_sum_pmf(sigma, n, R), math.sqrt(n) * sigma, alphas, shifts)


def exact_self_check():
    out = {}
    with localcontext() as ctx:
        _exact_context(ctx)
        # Bessel recurrence vs the Poisson convolution, relative difference over the whole range
        # (including the far tail, where values are ~e^-100 and below).
        worst = Decimal(0)
        for v in (0.3, 1, 7.5, 40):
            K = _exact_range(8, 3, math.sqrt(v))
            a, b = skellam_pmf(v, K), skellam_pmf_direct(v, K)
            worst = max(worst, max(abs(x - y) / y for x, y in zip(a, b)))
        out["skellam_bessel_vs_convolution"] = float(worst)
        # Mass and variance.
        for name, pmf, var in (
            ("skellam", skellam_pmf(12.5, 400), Decimal("12.5")),
            ("skellam_wide", skellam_pmf(10000, 4400), Decimal("10000")),
            ("dgauss_sum", dgauss_sum_pmf(2.0, 3, 200), None),
        ):
            R = (len(pmf) - 1) // 2
            mass = sum(pmf)
            second = sum(p * (i - R) ** 2 for i, p in enumerate(pmf))
            out[name + "_mass_error"] = float(abs(mass - 1))
            if var is not None:
                out[name + "_variance_error"] = float(abs(second - var))
        # One discrete Gaussian, integer order and shift: exactly a D^2 / (2 S^2).
        worst = Decimal(0)
        for sigma in (0.5, 0.8, 1, 3):
            for alpha in (2, 7):
                for shift in (1, 5):
                    R = _exact_range(alpha, shift, sigma)
                    got = _renyi_shift(dgauss_sum_pmf(sigma, 1, R), R, shift, alpha)
                    want = Decimal(alpha * shift * shift) / (2 * Decimal(repr(sigma)) ** 2)
                    worst = max(worst, abs(got - want) / want)
        out["dgauss_single_closed_form"] = float(worst)
    return out


def answer(req):
    k = req["kind"]
    if k == "orders":
        return [1 + x / 10.0 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512, 1024]
    if k == "log_erfc":
        x = req["x"]
        if x < 20:
            return math.log(math.erfc(x))
        y = 1 / (2 * x * x)
        series = 1 - y + 3 * y ** 2 - 15 * y ** 3 + 105 * y ** 4
        return -x * x - math.log(x * math.sqrt(math.pi)) + math.log(series)
    if k == "sgm_integral":
        return sgm_integral(req["q"], req["z"], req["alpha"])
    if k == "gauss_delta":
        return gauss_delta(req["z"], req["eps"])
    if k == "sgm":
        return sgm(req["q"], req["z"], req["alpha"])
    if k == "zw":
        return zw(req["q"], req["alpha"], req["eps"])
    if k == "dgauss":
        return dgauss(req["alpha"], req["d"], req["l1"], req["l2"], req["sigma"], req["n"])
    if k == "skellam":
        return skellam(req["alpha"], req["l1"], req["l2"], req["mu"])
    if k == "eps":
        return eps(req["orders"], req["rdp"], req["delta"])
    if k == "exact_skellam":
        return exact_skellam(req["variance"], req["alphas"], req["shifts"])
    if k == "exact_dgauss_sum":
        return exact_dgauss_sum(req["sigma"], req["n"], req["alphas"], req["shifts"])
    if k == "exact_self_check":
        return exact_self_check()
    raise ValueError(k)


for line in sys.stdin:
    if line.strip():
        print(json.dumps(answer(json.loads(line))))
