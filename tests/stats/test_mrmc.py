"""Readers as a random effect: Obuchowski–Rockette with Hillis' ddf, against a published example and a loop version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from reports import mrmc

from ._or_reference import or_reference

DATA = Path(__file__).parent / "data"


def _van_dyke() -> tuple[np.ndarray, np.ndarray]:
    """Van Dyke et al. (1993), cine MRI vs spin-echo MRI: 2 modalities × 5 readers × 114 cases (45 abnormal), 1–5.

    The file is RJafroc's inst/extdata/datasets/VD.lrc (its `dataset02`): per reader, the normal cases then
    the abnormal ones, each line 'modality 0 rating, modality 1 rating, case id'.
    """
    lines = (DATA / "vandyke.lrc").read_text().splitlines()
    ratings, abnormal, reader, block = {}, {}, int(lines[1]), "normal"  # lines 1-4: title, reader 0, names, L L
    for line in lines[4:]:
        parts = line.split()
        if parts == ["#"]:
            break
        if parts == ["*"]:
            block = "abnormal" if block == "normal" else "done"
        elif len(parts) == 1:
            reader, block = int(parts[0]), "normal"
        elif len(parts) == 3:
            a, b, case = map(int, parts)
            ratings.setdefault(reader, {})[case] = (a, b)
            abnormal[case] = block == "abnormal"
    cases = sorted(abnormal)
    x = np.array([[[ratings[r][c][t] for c in cases] for r in sorted(ratings)] for t in range(2)], float)
    return x, np.array([abnormal[c] for c in cases])


def _auc(x: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Empirical (Wilcoxon) AUC of (..., K) ratings, ties counted one half."""
    pos, neg = x[..., truth][..., :, None], x[..., ~truth][..., None, :]
    return ((pos > neg) + 0.5 * (pos == neg)).mean((-2, -1))


def test_van_dyke_published_or_analysis():
    # RJafroc StSignificanceTesting(dataset02, FOM = "Wilcoxon", method = "OR") and Hillis (2007):
    # F = 4.456319 on (1, 15.25967) df, p = 0.05166569; difference -0.04380032, s.e. 0.02074862,
    # 95 % CI (-0.0879594986, 0.0003588544); Cov1..3, Var, MS(T), MS(T:R) as printed there.
    x, truth = _van_dyke()
    assert x.shape == (2, 5, 114) and truth.sum() == 45
    keep = ~np.eye(114, dtype=bool)
    jack = np.stack([_auc(x[..., keep[k]], truth[keep[k]]) for k in range(114)], -1)
    res = mrmc.or_hillis(_auc(x, truth), jack)
    assert res["f"] == pytest.approx(4.456319, abs=5e-7)
    assert res["ddf"] == pytest.approx(15.25967, abs=5e-6)
    assert res["p_value"] == pytest.approx(0.05166569, abs=5e-9)
    assert res["ms_t"] == pytest.approx(0.004796171, abs=5e-10)
    assert res["ms_tr"] == pytest.approx(0.0005510306, abs=5e-11)
    assert res["cov1"] == pytest.approx(0.0003466137, abs=5e-11)
    assert res["cov2"] == pytest.approx(0.0003440748, abs=5e-11)
    assert res["cov3"] == pytest.approx(0.0002390284, abs=5e-11)
    assert res["var"] == pytest.approx(0.0008022883, abs=5e-11)
    pair = res["pairs"][0]
    assert pair["difference"] == pytest.approx(-0.04380032, abs=5e-9)
    assert pair["se"] == pytest.approx(0.02074862, abs=5e-9)
    assert (pair["ci_low"], pair["ci_high"]) == pytest.approx((-0.0879594986, 0.0003588544), abs=5e-10)
    assert pair["t"] == pytest.approx(-2.110999, abs=5e-7) and pair["p_value"] == pytest.approx(res["p_value"])


@pytest.mark.parametrize("n_methods, n_readers, seed", [(2, 3, 0), (3, 4, 1), (4, 5, 2)])
def test_matches_the_loop_implementation_of_the_published_formulas(n_methods, n_readers, seed):
    rng = np.random.default_rng(seed)
    case = rng.normal(size=(1, 1, 30))
    reader = rng.normal(0, 0.3, size=(1, n_readers, 1))
    method = np.linspace(0, 0.3, n_methods)[:, None, None]
    scores = method + reader + case + rng.normal(0, 0.5, size=(n_methods, n_readers, 30))
    fom, jack = mrmc.mean_fom_jackknife(scores)
    for k in (0, 17):  # leave-one-case-out means, by hand
        assert jack[..., k] == pytest.approx(np.delete(scores, k, axis=-1).mean(-1))
    res = mrmc.or_hillis(fom, jack, level=0.9)
    ref = or_reference(fom.tolist(), jack.tolist(), level=0.9)
    for key in ("var", "cov1", "cov2", "cov3", "ms_t", "ms_tr", "f", "ddf", "p_value"):
        assert res[key] == pytest.approx(ref[key], rel=1e-10), key
    for pair in res["pairs"]:
        r = ref["pairs"][(pair["a"], pair["b"])]
        assert pair["difference"] == pytest.approx(r["difference"], rel=1e-12)
        assert (pair["ci_low"], pair["ci_high"]) == pytest.approx(r["ci"], rel=1e-10)
        assert pair["p_value"] == pytest.approx(r["p_value"], rel=1e-10)
    if n_methods == 2:  # two methods: the F test is the square of the pair's t test
        assert res["f"] == pytest.approx(res["pairs"][0]["t"] ** 2) and res["p_value"] == pytest.approx(
            res["pairs"][0]["p_value"]
        )


def test_holm_matches_statsmodels():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan, 0.5, 0.04])
    ok = ~np.isnan(p)
    got = mrmc.holm(p)
    assert got[ok] == pytest.approx(multipletests(p[ok], method="holm")[1])
    assert np.isnan(got[~ok]).all()


def test_needs_two_methods_and_two_readers():
    with pytest.raises(ValueError):
        mrmc.or_hillis(np.ones((1, 3)), np.ones((1, 3, 5)))
    with pytest.raises(ValueError):
        mrmc.or_hillis(np.ones((2, 1)), np.ones((2, 1, 5)))
