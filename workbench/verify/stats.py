"""Statistics for the battery: intervals on every rate and mean, and paired method comparisons.

- `wilson(k, n)`: Wilson score interval of a binomial rate (Wilson 1927). Unlike the normal
  ("Wald") interval it stays inside [0, 1] and is not degenerate at 0/n or n/n, which is where
  forget rates live. 8/10 -> [0.490, 0.943].
- `bootstrap_ci(stat, *arrays)`: percentile bootstrap (Efron & Tibshirani 1993) of any statistic
  of one or more PAIRED arrays (rows resampled together, so a ratio after/before keeps its
  pairing); seeded, so a report is reproducible. `bootstrap_mean_ci` for a plain mean.
- `mcnemar_exact(a, b)`: exact McNemar test on paired binary outcomes (per-probe hits of two
  methods on the same probes): only discordant pairs count; under H0 a-only hits ~ Binomial(b+c,
  1/2); two-sided p = min(1, 2 * P(X <= min(b, c))). b=1, c=8 -> p = 0.0391.
- `paired_bootstrap(x, y)`: mean difference of paired values (per-probe probabilities), its
  percentile interval and a two-sided bootstrap p-value (the share of centred resampled
  differences at least as far from 0 as the observed one; Efron & Tibshirani 1993, §16.4).
- `auc(pos, neg)`: area under the ROC curve = P(score(pos) > score(neg)) + P(tie)/2 (the
  Mann-Whitney statistic); `auc_ci` bootstraps it, resampling each class separately.

All functions take plain Python sequences (or numpy arrays) and return floats / lists, so results
are JSON-ready. Empty inputs give None rather than raising, since an empty probe group is a normal
outcome (e.g. no probe left after a filter).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

__all__ = ["Z95", "DEFAULT_BOOT", "auc", "auc_ci", "bootstrap_ci", "bootstrap_mean_ci", "mcnemar_exact",
           "paired_bootstrap", "paired_compare_hits", "rate_ci", "wilson"]

Z95 = 1.959963984540054          # the 97.5 % normal quantile
DEFAULT_BOOT = 2000


def wilson(k: int, n: int, z: float = Z95) -> list[float] | None:
    """Wilson score interval [lo, hi] for k successes out of n (None when n == 0)."""
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"wilson: need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return [max(0.0, centre - half), min(1.0, centre + half)]


def rate_ci(hits: Sequence[bool]) -> list[float] | None:
    """Wilson 95 % interval of the share of True in `hits`."""
    hits = list(hits)
    return wilson(sum(bool(h) for h in hits), len(hits))


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def bootstrap_ci(stat: Callable[..., float], *arrays: Sequence[float], n_boot: int = DEFAULT_BOOT,
                 seed: int = 0, level: float = 0.95) -> list[float] | None:
    """Percentile bootstrap interval of stat(*arrays); rows of the (equal-length) arrays are
    resampled together. None for empty input; a non-finite resampled statistic is dropped."""
    arrs = [np.asarray(a, dtype=float) for a in arrays]
    if not arrs or len(arrs[0]) == 0:
        return None
    n = len(arrs[0])
    if any(len(a) != n for a in arrs):
        raise ValueError(f"bootstrap_ci: paired arrays differ in length ({[len(a) for a in arrs]})")
    idx = _rng(seed).integers(0, n, size=(n_boot, n))
    vals = np.array([stat(*(a[i] for a in arrs)) for i in idx], dtype=float)
    vals = vals[np.isfinite(vals)]
    if len(vals) == 0:
        return None
    alpha = (1 - level) / 2
    lo, hi = np.quantile(vals, [alpha, 1 - alpha])
    return [float(lo), float(hi)]


def bootstrap_mean_ci(values: Sequence[float], n_boot: int = DEFAULT_BOOT, seed: int = 0) -> list[float] | None:
    """Percentile bootstrap 95 % interval of the mean of `values`."""
    return bootstrap_ci(lambda v: float(v.mean()), values, n_boot=n_boot, seed=seed)


def _binom_cdf_half(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exactly (integer arithmetic, then one division)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> dict:
    """Exact McNemar test of paired binary outcomes.

    Returns {"n", "a_only" (a True, b False), "b_only", "both", "neither", "p"}; p is two-sided
    (1.0 when there is no discordant pair).
    """
    a, b = [bool(x) for x in a], [bool(x) for x in b]
    if len(a) != len(b):
        raise ValueError(f"mcnemar_exact: {len(a)} outcomes for a but {len(b)} for b")
    a_only = sum(x and not y for x, y in zip(a, b))
    b_only = sum(y and not x for x, y in zip(a, b))
    m = a_only + b_only
    p = 1.0 if m == 0 else min(1.0, 2 * _binom_cdf_half(min(a_only, b_only), m))
    return {"n": len(a), "a_only": a_only, "b_only": b_only, "both": sum(x and y for x, y in zip(a, b)),
            "neither": sum(not x and not y for x, y in zip(a, b)), "p": p}


def paired_bootstrap(x: Sequence[float], y: Sequence[float], n_boot: int = DEFAULT_BOOT, seed: int = 0) -> dict:
    """Mean of x - y over pairs, its percentile 95 % interval and a two-sided bootstrap p-value.

    p = (1 + #{|d*_i - d| >= |d|}) / (n_boot + 1), d the observed mean difference and d*_i the
    resampled ones (the resampling distribution shifted to the null of no difference).
    Returns {"n", "diff", "ci", "p"} (diff/ci/p None for no pairs).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) != len(y):
        raise ValueError(f"paired_bootstrap: {len(x)} values for x but {len(y)} for y")
    n = len(x)
    if n == 0:
        return {"n": 0, "diff": None, "ci": None, "p": None}
    d = x - y
    obs = float(d.mean())
    idx = _rng(seed).integers(0, n, size=(n_boot, n))
    boot = d[idx].mean(axis=1)
    alpha = 0.025
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    # tolerance: resampled means equal to the observed one up to float rounding count as "as far"
    extreme = int((np.abs(boot - obs) >= abs(obs) - 1e-12).sum())
    return {"n": n, "diff": obs, "ci": [float(lo), float(hi)], "p": (1 + extreme) / (n_boot + 1)}


def paired_compare_hits(hits_a: Sequence[bool], hits_b: Sequence[bool], probs_a: Sequence[float],
                        probs_b: Sequence[float], n_boot: int = DEFAULT_BOOT, seed: int = 0) -> dict:
    """Two methods on the same probes: hit rates (Wilson), exact McNemar on the hits, and a paired
    bootstrap of the per-probe answer probabilities (a minus b)."""
    n = len(hits_a)
    if not (len(hits_b) == len(probs_a) == len(probs_b) == n):
        raise ValueError("paired_compare_hits: all four per-probe lists must have the same length")
    return {"n": n,
            "hit_a": (sum(map(bool, hits_a)) / n) if n else None, "hit_a_ci": rate_ci(hits_a),
            "hit_b": (sum(map(bool, hits_b)) / n) if n else None, "hit_b_ci": rate_ci(hits_b),
            "hit_diff": ((sum(map(bool, hits_a)) - sum(map(bool, hits_b))) / n) if n else None,
            "mcnemar": mcnemar_exact(hits_a, hits_b),
            "prob": paired_bootstrap(probs_a, probs_b, n_boot=n_boot, seed=seed)}


def auc(pos: Sequence[float], neg: Sequence[float]) -> float | None:
    """ROC AUC of scores where `pos` should score higher: P(pos > neg) + P(pos == neg) / 2."""
    p, q = np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)
    if len(p) == 0 or len(q) == 0:
        return None
    greater = (p[:, None] > q[None, :]).sum()
    ties = (p[:, None] == q[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(p) * len(q)))


def auc_ci(pos: Sequence[float], neg: Sequence[float], n_boot: int = DEFAULT_BOOT, seed: int = 0) -> list[float] | None:
    """Percentile bootstrap 95 % interval of `auc`, resampling each class on its own."""
    p, q = np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)
    if len(p) == 0 or len(q) == 0:
        return None
    rng = _rng(seed)
    vals = [auc(p[rng.integers(0, len(p), len(p))], q[rng.integers(0, len(q), len(q))]) for _ in range(n_boot)]
    lo, hi = np.quantile(vals, [0.025, 0.975])
    return [float(lo), float(hi)]
