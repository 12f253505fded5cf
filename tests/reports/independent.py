"""Independent computations of the report's statistics with statsmodels, scikit-learn, scipy, pingouin,
krippendorff and plain Python loops, on the arrays a generated study was written from."""

from __future__ import annotations

import itertools
import math

import krippendorff
import numpy as np
import pandas as pd
from scipy import stats as sps
from sklearn.metrics import cohen_kappa_score, ndcg_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa


def fleiss(sel: np.ndarray) -> float:
    items = sel.reshape(-1, sel.shape[-1]).astype(int)
    return float(fleiss_kappa(aggregate_raters(items, n_cat=2)[0]))


def pairwise_cohen(items: np.ndarray, **kw) -> np.ndarray:
    r = items.shape[1]
    m = np.eye(r)
    for i, j in itertools.combinations(range(r), 2):
        m[i, j] = m[j, i] = cohen_kappa_score(items[:, i], items[:, j], **kw)
    return m


def alpha(items: np.ndarray, level: str = "nominal") -> float:
    return float(krippendorff.alpha(reliability_data=items.T.astype(float), level_of_measurement=level))


def consensus(sel: np.ndarray, k: int, model_ranks: np.ndarray | None = None) -> np.ndarray:
    """Exactly k per case: most votes, then (if given) lower model rank, then lower index; Python sort."""
    out = np.zeros(sel.shape[:2], bool)
    for c in range(sel.shape[0]):
        votes = sel[c].sum(1)
        key = (lambda i: (-votes[i], model_ranks[c, i], i)) if model_ranks is not None else (lambda i: (-votes[i], i))  # noqa: B023 (used at once)
        out[c, sorted(range(sel.shape[1]), key=key)[:k]] = True
    return out


def k_nearest(distances: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros(distances.shape, bool)
    for c in range(len(distances)):
        out[c, sorted(range(distances.shape[1]), key=lambda i: (distances[c, i], i))[:k]] = True
    return out


def percent(a: np.ndarray, b: np.ndarray) -> float:
    return 100.0 * float(np.mean(a == b))


def ndcg(method_ranks: np.ndarray, truth_ranks: np.ndarray, p: int) -> np.ndarray:
    """Per-case nDCG@p with scikit-learn: gains 2**rel - 1 as y_true, -rank as the score."""
    n = truth_ranks.shape[1]
    gains = 2.0 ** ((n + 1 - truth_ranks) / 2 + 0.5) - 1
    return np.array(
        [ndcg_score(gains[c : c + 1], -method_ranks[c : c + 1].astype(float), k=p) for c in range(len(gains))]
    )


def kendall(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([sps.kendalltau(a[c], b[c]).statistic for c in range(len(a))])


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([sps.spearmanr(a[c], b[c]).statistic for c in range(len(a))])


def ranks_of(distances: np.ndarray) -> np.ndarray:
    return np.array([sps.rankdata(d, method="ordinal") for d in distances]).astype(int)


def icc(items: np.ndarray) -> dict[str, float]:
    """pingouin's ICC table on long data (targets = items, raters = readers)."""
    import pingouin as pg

    n, r = items.shape
    df = pd.DataFrame({"item": np.repeat(np.arange(n), r), "reader": np.tile(np.arange(r), n), "rating": items.ravel()})
    table = pg.intraclass_corr(data=df, targets="item", raters="reader", ratings="rating").set_index("Type")
    names = {"ICC2": "ICC(A,1)", "ICC3": "ICC(C,1)", "ICC2k": "ICC(A,k)"}  # pingouin 0.7 names the types so
    return {ours: float(table.loc[name, "ICC"]) for ours, name in names.items()}


def bca_expanded(values, estimate: float, jackknife, level: float = 0.95) -> list[float]:
    """BCa interval (Efron 1987) at Hesterberg's (2015) expanded level, from the formulas, with loops.

    z0 = Φ⁻¹(share of resamples below the estimate, ties (up to rounding) one half); a = Σ d³ / (6 (Σ d²)^1.5) with
    d = mean(jackknife) − jackknife; the level's normal quantile replaced by sqrt(n/(n−1)) t_{n−1}.
    """
    v = sorted(x for x in values if not math.isnan(x))
    tol = 1e-12 * max(1.0, abs(estimate))  # equal up to rounding counts as a tie
    below = sum(0.5 if abs(x - estimate) <= tol else 1.0 if x < estimate else 0.0 for x in v) / len(v)
    z0 = sps.norm.ppf(below)
    n = len(jackknife)
    mean = sum(jackknife) / n
    d = [mean - j for j in jackknife]
    a = sum(x**3 for x in d) / (6.0 * sum(x**2 for x in d) ** 1.5)
    z = math.sqrt(n / (n - 1)) * sps.t.ppf(1 - (1 - level) / 2, n - 1)
    out = []
    for q in (-z, z):
        alpha = sps.norm.cdf(z0 + (z0 + q) / (1 - a * (z0 + q)))
        out.append(float(np.percentile(v, 100 * alpha)))
    return out
