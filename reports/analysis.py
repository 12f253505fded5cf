"""What one set of statistics is computed on, and the helpers every answer mode's section shares.

``report_inputs`` gathers everything a report needs from the database (the study's arrays, the
methods' distances, the query classes); ``analysis_for`` restricts it to the analysed cases (the
cases answered by every reader, or a subgroup of them) with each method's ranks. Confidence
intervals are BCa bootstraps at the small-sample expanded level (stats.bootstrap_ci, method
"bca-expanded") over cases (queries), optionally over readers too.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from readerstudy.models import AnswerMode, Study
from reports import mrmc
from reports import stats as S
from reports.inputs import StudyArrays, query_classes, study_arrays
from reports.methods import Method, report_methods
from reports.options import ReportOptions

READERS_TOO_MIN = 3
READERS_TOO_MIN_NOTE = (
    "readers too needs ≥ 3 readers; this interval treats the readers as fixed (cases resampled only): with 2 "
    "readers the reader variance has 1 degree of freedom, and the two-way bootstrap and the OR interval covered "
    "88–91 % of the population value (benchmarks/bench_coverage.py)"
)
INTERVAL_METHOD = "bca-expanded"  # the percentile bootstrap covered 90–93 % at 30 cases (benchmarks/bench_coverage.py)


@dataclass
class ReportInputs:
    """A study's arrays, the methods that rank its catalogues, and its query classes (when a label is chosen)."""

    arrays: StudyArrays
    methods: list[Method]
    classes: list[str] | None = None


def report_inputs(*, study: Study, options: ReportOptions) -> ReportInputs:
    """Everything a report needs from the database (3 + methods queries)."""
    arrays = study_arrays(study=study)
    methods = report_methods(arrays=arrays, runs=options.runs)
    classes = query_classes(arrays=arrays, label=options.class_label) if options.class_label else None
    return ReportInputs(arrays, methods, classes)


@dataclass
class MethodView:
    """A method's distances, ranks and rankable cases (mask) over the analysed cases."""

    name: str
    distances: np.ndarray
    ranks: np.ndarray
    mask: np.ndarray


@dataclass
class Analysis:
    """The arrays one set of statistics is computed on (the complete cases, or a subgroup of them)."""

    mode: str
    values: np.ndarray
    case_ids: np.ndarray
    readers: list[str]
    gt: int
    methods: dict[str, MethodView]
    k: int | None
    scale: tuple[int, int]

    @property
    def n_cases(self) -> int:
        """Number of cases in this analysis."""
        return int(self.values.shape[0])

    def subset(self, mask: np.ndarray) -> Analysis:
        """The same analysis restricted to some cases (a subgroup)."""
        methods = {
            k: MethodView(m.name, m.distances[mask], m.ranks[mask], m.mask[mask]) for k, m in self.methods.items()
        }
        return replace(self, values=self.values[mask], case_ids=self.case_ids[mask], methods=methods)


def ground_truth(arrays: StudyArrays) -> tuple[int, str]:
    """Index of the ground-truth reader among the analysed readers and where the choice comes from."""
    gt_id = arrays.study.ground_truth_reader_id
    for i, r in enumerate(arrays.readers):
        if r.user_id == gt_id:
            return i, "set on the study"
    if gt_id is not None:
        return 0, "the study's ground-truth reader has no answers: the first reader (by name) is used"
    return 0, "none set on the study: the first reader (by name) is used"


def analysed_cases(arrays: StudyArrays) -> np.ndarray:
    """(C,) the cases every analysed reader answered completely: the statistics use these."""
    if not arrays.readers:
        return np.zeros(len(arrays.case_ids), bool)
    return arrays.answered.all(axis=1)


def analysis_for(inputs: ReportInputs, cases: np.ndarray) -> Analysis:
    """The analysis of the given cases (a boolean mask over the loaded cases)."""
    a = inputs.arrays
    methods = {}
    for m in inputs.methods:
        d = m.distances[cases]
        ranks = S.ranks_from_scores(np.nan_to_num(d, nan=np.inf), higher_is_closer=False)
        methods[m.key] = MethodView(m.name, d, ranks, ~np.isnan(d).any(axis=1))
    values = a.values[cases]
    if a.study.mode == AnswerMode.CHOOSE_K:
        values = values.astype(bool)
    elif a.study.mode == AnswerMode.RANK_ALL:
        values = values.astype(int)
    return Analysis(
        a.study.mode,
        values,
        a.case_ids[cases],
        [r.name for r in a.readers],
        ground_truth(a)[0],
        methods,
        a.study.k,
        (a.study.rating_min, a.study.rating_max),
    )


def ci(statistic: Callable, n_cases: int, o: ReportOptions, *, n_readers: int = 0, **kwargs) -> dict | None:
    """Bootstrap CI (cases, plus readers when asked, the statistic accepts reader weights and 3 or more readers).

    Readers too with only 2 readers: the case interval, marked with ``readers_note`` (READERS_TOO_MIN_NOTE).
    """
    if not o.n_resamples or n_cases < 2:
        return None
    readers = n_readers if (o.readers_too and n_readers >= READERS_TOO_MIN) else None
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = S.bootstrap_ci(
            statistic,
            n_cases,
            n_resamples=o.n_resamples,
            seed=o.seed,
            level=o.level,
            n_readers=readers,
            method=INTERVAL_METHOD,
            **kwargs,
        )
    resampled = res["resampled"].replace("clusters", "cases")  # the clusters are the cases' items
    out = {"low": res["low"], "high": res["high"], "resampled": resampled, "n_failed": res["n_failed"]}
    return out | _declined(o, n_readers)


def _declined(o: ReportOptions, n_readers: int) -> dict:
    """The note of an interval that stays a case interval although readers too was asked (2 readers)."""
    return {"readers_note": READERS_TOO_MIN_NOTE} if o.readers_too and 2 <= n_readers < READERS_TOO_MIN else {}


def est(value: Any, interval: dict | None = None) -> dict:
    """A statistic with its (optional) confidence interval (from `ci`)."""
    out = {
        "estimate": None if value is None else float(value),
        "ci_low": None,
        "ci_high": None,
        "resampled": None,
        "n_failed": None,
    }
    if interval:
        out.update(
            ci_low=interval["low"],
            ci_high=interval["high"],
            resampled=interval["resampled"],
            n_failed=interval["n_failed"],
        )
        if interval.get("readers_note"):
            out["readers_note"] = interval["readers_note"]
    return out


def reader_mean_statistic(per_case: np.ndarray) -> Callable:
    """Vectorised statistic: mean over readers and cases of (C, R) values, cases and readers weighted."""
    x = np.asarray(per_case, float)

    def stat(w: np.ndarray, v: np.ndarray | None = None) -> np.ndarray:
        v = np.ones((len(w), x.shape[1])) if v is None else v
        return ((w @ x) * v).sum(-1) / (w.sum(-1) * v.sum(-1))

    return stat


def readers_random_ci(
    statistic: Callable,
    n_cases: int,
    o: ReportOptions,
    jackknife: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]],
    *,
    fisher_z: bool = False,
    df: str = "satterthwaite",
    **kwargs,
) -> dict | None:
    """With readers too and at least 3 readers: readers and cases random by the jackknife over each.

    For a statistic whose reader variance a bootstrap of 3 readers cannot show (ICC(A,1), the means over
    readers). ``jackknife()`` gives the statistic without each case (K,), without each reader (R,) and without
    both (K, R); ``stats.readers_random_interval`` adds the case and the reader variance (that one kept ≥ 0)
    on Satterthwaite degrees of freedom, or with ``df="readers"`` (the ICC) the unfloored reader jackknife variance
    on R − 1 df. With 3 readers drawn from a population the two-way bootstrap covered
    85 % (ICC(A,1)) and 98–99 % (mean agreements), the reader jackknife added to the case interval 97.8 % and
    98–99 %, OR / Hillis 92–93 % for some means (benchmarks/bench_coverage.py). Fewer than 3 readers: the case
    interval with ``readers_note``; without readers too, the case bootstrap.
    """
    n_readers = kwargs.pop("n_readers", 0)
    if not (o.readers_too and o.n_resamples and n_readers >= READERS_TOO_MIN and n_cases >= 3):
        return ci(statistic, n_cases, o, n_readers=n_readers, **kwargs)
    estimate = _full_value(statistic, n_cases, kwargs.get("vectorized", True))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = S.readers_random_interval(estimate, *jackknife(), level=o.level, fisher_z=fisher_z, df=df)
    return {"low": res["low"], "high": res["high"], "resampled": "cases+readers", "n_failed": 0}


def _full_value(statistic: Callable, n_cases: int, vectorized: bool) -> float:
    """The statistic on every case (the estimate the interval is centred on)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if vectorized:
            return float(np.asarray(statistic(np.ones((1, n_cases))))[0])
        return float(statistic(np.arange(n_cases)))


def reader_mean_ci(per_case: np.ndarray, o: ReportOptions) -> dict | None:
    """CI of the mean over readers and cases of (C, R) values: the case bootstrap, or readers random with readers too.

    With readers too and at least 3 readers: ``readers_random_ci``, which for a mean is the Obuchowski–Rockette
    single-method interval with the reader variance component kept ≥ 0 (``mrmc.or_mean_ci(floor=True)``); with
    Hillis' plug-in degrees of freedom alone it covered as little as 92.4 % with 3 readers and 30 cases
    (benchmarks/bench_coverage.py). Cases with a NaN value are left out. With 2 readers: the case interval with
    ``readers_note``.
    """
    x = np.asarray(per_case, float)
    if not (o.readers_too and o.n_resamples and x.shape[1] >= READERS_TOO_MIN and len(x) >= 3):
        return ci(reader_mean_statistic(x), len(x), o, n_readers=x.shape[1])
    x = x[~np.isnan(x).any(axis=1)]
    k, r = x.shape

    def jackknife() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        theta = x.mean(0)  # each reader's mean
        loo_cases = (k * theta - x) / (k - 1)  # (K, R): each reader's mean without case k
        others = (theta.sum() - theta) / (r - 1)
        return loo_cases.mean(1), others, (loo_cases.sum(1, keepdims=True) - loo_cases) / (r - 1)

    return readers_random_ci(reader_mean_statistic(x), k, o, jackknife, n_readers=r)


def quiet(fn: Callable, *args, **kwargs) -> Any:
    """Call a statistic with numpy/scipy warnings silenced (constant inputs give NaN, reported as null)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def scatter(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Values of the masked cases (first axis) placed in a full-length array (NaN elsewhere)."""
    values = np.asarray(values, float)
    out = np.full(mask.shape + values.shape[1:], np.nan)
    out[mask] = values
    return out


def nanmean(values: Any) -> float | None:
    """Mean of the defined values (None when there is none)."""
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    return float(v.mean()) if len(v) else None


def paired_tests(a: np.ndarray, b: np.ndarray, o: ReportOptions, alternative: str = "two-sided") -> dict:
    """Sign-flip permutation test and paired t-test of per-case values a − b."""
    perm = S.paired_permutation_test(a, b, n_resamples=o.n_resamples, seed=o.seed, alternative=alternative)
    ttest = quiet(S.paired_ttest, a, b, alternative=alternative)
    return {
        "n": perm["n"],
        "mean_difference": perm["statistic"],
        "permutation_p": perm["p_value"],
        "permutation_method": perm["method"],
        "permutation_mc_se": perm["mc_se"],
        "ttest_p": ttest["p_value"],
        "alternative": alternative,
    }


def method_pairs(per_case: dict[str, np.ndarray], o: ReportOptions, metric: str) -> list[dict]:
    """Every pair of methods compared on their common cases."""
    keys = list(per_case)
    out = []
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            ok = ~(np.isnan(per_case[a]) | np.isnan(per_case[b]))
            if ok.sum() >= 2:
                out.append({"a": a, "b": b, "metric": metric, **paired_tests(per_case[a][ok], per_case[b][ok], o)})
    return out


def readers_random_pairs(scores: dict[str, np.ndarray], o: ReportOptions, metric: str) -> list[dict]:
    """Every pair of methods by the OR analysis (readers and cases random) of their per-reader FOM.

    scores: per method, (C, R) per-case values of each reader (NaN where undefined); the FOM of a
    reader is the mean over the cases where both methods and every reader have a value. The pairs of
    one metric are one family: Holm-adjusted p-values.
    """
    keys = list(scores)
    out = []
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            y = np.stack([scores[a], scores[b]])  # (2, C, R)
            ok = ~np.isnan(y).any(axis=(0, 2))
            if ok.sum() < 3 or y.shape[2] < 2:
                continue
            res = quiet(
                mrmc.or_hillis, *mrmc.mean_fom_jackknife(y[:, ok].transpose(0, 2, 1)), level=o.level, floor=True
            )
            pair = res["pairs"][0]
            out.append(
                {
                    "a": a,
                    "b": b,
                    "metric": metric,
                    "n_cases": int(ok.sum()),
                    "n_readers": res["n_readers"],
                    "mean_difference": pair["difference"],
                    "se": pair["se"],
                    "ci_low": pair["ci_low"],
                    "ci_high": pair["ci_high"],
                    "df": pair["df"],
                    "p_value": pair["p_value"],
                    "reader_fom": {a: res["fom"][0], b: res["fom"][1]},
                    "cov2": res["cov2"],
                    "cov3": res["cov3"],
                    "ms_tr": res["ms_tr"],
                }
            )
    for pair, adjusted in zip(out, mrmc.holm([p["p_value"] for p in out])):
        pair["p_holm"] = float(adjusted)
    return out
