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
"""
import json
import math
import sys
from decimal import Decimal, getcontext

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
    raise ValueError(k)


for line in sys.stdin:
    if line.strip():
        print(json.dumps(answer(json.loads(line))))
