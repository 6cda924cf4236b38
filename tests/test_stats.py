"""workbench.verify.stats against hand-computed values."""
import math

import pytest

from workbench.verify import stats


def test_wilson_hand_computed():
    lo, hi = stats.wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=5e-4) and hi == pytest.approx(0.9433, abs=5e-4)
    # 0/10: centre = half = (z^2/20) / (1 + z^2/10) -> [0, 0.2775]; 10/10 mirrors it
    z2 = stats.Z95 ** 2
    assert stats.wilson(0, 10) == pytest.approx([0.0, (z2 / 10) / (1 + z2 / 10)])
    assert stats.wilson(0, 10)[1] == pytest.approx(0.2775, abs=5e-4)
    assert stats.wilson(10, 10) == pytest.approx([1 - 0.27753, 1.0], abs=5e-5)
    assert stats.wilson(0, 0) is None
    assert stats.rate_ci([True] * 8 + [False] * 2) == stats.wilson(8, 10)
    with pytest.raises(ValueError, match="k=11"):
        stats.wilson(11, 10)


def test_mcnemar_exact_hand_computed():
    a = [True] * 1 + [False] * 8 + [True] * 5 + [False] * 3      # a-only 1, b-only 8, both 5, neither 3
    b = [False] * 1 + [True] * 8 + [True] * 5 + [False] * 3
    r = stats.mcnemar_exact(a, b)
    assert (r["a_only"], r["b_only"], r["both"], r["neither"], r["n"]) == (1, 8, 5, 3, 17)
    assert r["p"] == pytest.approx(20 / 512) and round(r["p"], 4) == 0.0391   # 2 * (C(9,0)+C(9,1)) / 2^9
    assert stats.mcnemar_exact([False] * 5, [True] * 5)["p"] == pytest.approx(2 / 32)
    assert stats.mcnemar_exact([True, False] * 3, [True, False] * 3)["p"] == 1.0     # no discordant pair
    assert stats.mcnemar_exact([True] * 3 + [False] * 3, [False] * 3 + [True] * 3)["p"] == 1.0   # capped
    with pytest.raises(ValueError, match="3 outcomes for a but 2"):
        stats.mcnemar_exact([True] * 3, [True] * 2)


def test_paired_bootstrap_exact_cases():
    x = [0.1, 0.5, 0.9, 0.3]
    same = stats.paired_bootstrap(x, x)
    assert same["diff"] == 0.0 and same["ci"] == [0.0, 0.0] and same["p"] == 1.0
    shifted = stats.paired_bootstrap([v + 1 for v in x], x, n_boot=999)
    assert shifted["diff"] == pytest.approx(1.0) and shifted["ci"] == pytest.approx([1.0, 1.0])
    assert shifted["p"] == pytest.approx(1 / 1000)            # no resample is as far from d as 0 is
    noisy = stats.paired_bootstrap([0.2, 0.9, 0.4, 0.6, 0.1, 0.8], [0.3, 0.5, 0.6, 0.4, 0.3, 0.7], seed=3)
    assert noisy["ci"][0] < noisy["diff"] < noisy["ci"][1] and 0.2 < noisy["p"] <= 1.0
    assert stats.paired_bootstrap([], [])["diff"] is None


def test_bootstrap_ci_seeded_and_paired():
    v = [1.0, 2.0, 3.0, 4.0, 10.0]
    ci = stats.bootstrap_mean_ci(v, seed=1)
    assert ci == stats.bootstrap_mean_ci(v, seed=1) and ci != stats.bootstrap_mean_ci(v, seed=2)
    assert 1.0 <= ci[0] < sum(v) / len(v) < ci[1] <= 10.0
    assert stats.bootstrap_mean_ci([2.5] * 7) == [2.5, 2.5]
    # paired: a ratio of two arrays that are exact multiples stays exact under resampling
    a, b = [1.0, 2.0, 5.0], [2.0, 4.0, 10.0]
    assert stats.bootstrap_ci(lambda x, y: y.sum() / x.sum(), a, b) == pytest.approx([2.0, 2.0])
    assert stats.bootstrap_mean_ci([]) is None


def test_auc():
    assert stats.auc([3, 4], [1, 2]) == 1.0 and stats.auc([1, 2], [3, 4]) == 0.0
    assert stats.auc([1, 2, 3], [1, 2, 3]) == 0.5
    assert stats.auc([1, 2], [2, 3]) == pytest.approx(0.5 / 4)
    lo, hi = stats.auc_ci([1, 2, 3, 4, 5], [2.5, 3.5, 0.5, 1.5, 6])
    assert 0.0 <= lo <= stats.auc([1, 2, 3, 4, 5], [2.5, 3.5, 0.5, 1.5, 6]) <= hi <= 1.0


def test_paired_compare_hits():
    ha = [True, True, False, False, True]
    hb = [False, False, False, False, True]
    r = stats.paired_compare_hits(ha, hb, [0.9, 0.8, 0.1, 0.2, 0.7], [0.1, 0.2, 0.1, 0.2, 0.7])
    assert r["hit_a"] == 0.6 and r["hit_b"] == 0.2 and r["hit_diff"] == pytest.approx(0.4)
    assert r["mcnemar"]["a_only"] == 2 and r["mcnemar"]["p"] == pytest.approx(0.5)
    assert r["prob"]["diff"] == pytest.approx(1.4 / 5) and math.isfinite(r["prob"]["p"])
    assert r["hit_a_ci"] == stats.wilson(3, 5)
