"""An independent Obuchowski–Rockette / Hillis analysis written from the published formulas with plain loops.

Hillis (2007) Stat Med 26:596–619, eqs. for F_OR and ddf_H; covariances by the jackknife over cases
(Hillis, Obuchowski, Schartz & Berbaum 2005):
Cov(θ_ij, θ_i'j') = (K−1)/K Σ_k (θ_ij(k) − θ_ij(·))(θ_i'j'(k) − θ_i'j'(·)).
"""

from __future__ import annotations

import math

from scipy import stats as sps


def or_reference(theta, jack, level=0.95, floor=False):
    """theta[i][j] (lists), jack[i][j][k]: F, ddf, p, and (i, i') differences with t CI, by loops.

    floor (the report's analysis): MS(TR) floored at Var − Cov1 − Cov2 + Cov3 (then on K − 1 df), the covariance
    term on K − 1 df, Satterthwaite: ddf = den² / (term1²/df1 + term2²/(K − 1)).
    """
    n_t, n_r, n_c = len(theta), len(theta[0]), len(jack[0][0])
    jbar = [[sum(jack[i][j]) / n_c for j in range(n_r)] for i in range(n_t)]

    def cov(i, j, i2, j2):
        return (
            (n_c - 1) / n_c * sum((jack[i][j][k] - jbar[i][j]) * (jack[i2][j2][k] - jbar[i2][j2]) for k in range(n_c))
        )

    sums = {"var": [], "cov1": [], "cov2": [], "cov3": []}
    for i in range(n_t):
        for j in range(n_r):
            for i2 in range(n_t):
                for j2 in range(n_r):
                    kind = {(True, True): "var", (False, True): "cov1", (True, False): "cov2", (False, False): "cov3"}
                    sums[kind[(i == i2, j == j2)]].append(cov(i, j, i2, j2))
    c = {key: sum(v) / len(v) for key, v in sums.items()}
    t_mean = [sum(theta[i]) / n_r for i in range(n_t)]
    r_mean = [sum(theta[i][j] for i in range(n_t)) / n_t for j in range(n_r)]
    grand = sum(t_mean) / n_t
    ms_t = n_r / (n_t - 1) * sum((m - grand) ** 2 for m in t_mean)
    ms_tr = sum((theta[i][j] - t_mean[i] - r_mean[j] + grand) ** 2 for i in range(n_t) for j in range(n_r)) / (
        (n_t - 1) * (n_r - 1)
    )
    term2 = n_r * max(c["cov2"] - c["cov3"], 0.0)
    if floor:
        no_tr = c["var"] - c["cov1"] - c["cov2"] + c["cov3"]
        term1, df1 = (ms_tr, (n_t - 1) * (n_r - 1)) if ms_tr >= no_tr else (no_tr, n_c - 1)
        den = term1 + term2
        ddf = den**2 / (term1**2 / df1 + term2**2 / (n_c - 1))
    else:
        den = ms_tr + term2
        ddf = den**2 / (ms_tr**2 / ((n_t - 1) * (n_r - 1)))
    f = ms_t / den
    se = math.sqrt(2 * den / n_r)
    q = sps.t.ppf(1 - (1 - level) / 2, ddf)
    pairs = {}
    for i in range(n_t):
        for i2 in range(i + 1, n_t):
            d = t_mean[i] - t_mean[i2]
            pairs[(i, i2)] = {
                "difference": d,
                "se": se,
                "p_value": 2 * sps.t.sf(abs(d / se), ddf),
                "ci": (d - q * se, d + q * se),
            }
    return {**c, "ms_t": ms_t, "ms_tr": ms_tr, "f": f, "ddf": ddf, "p_value": sps.f.sf(f, n_t - 1, ddf), "pairs": pairs}
