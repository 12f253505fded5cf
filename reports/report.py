"""Agreement reports of reader studies (papers 000, 001, 003): arrays from the database, one dict out.

Data flow
---------
``report_inputs(study=..., options=...)`` loads the study's answers into a
(cases × candidates × readers) array and ranks every catalogue under every available method;
``report_build(inputs, options)`` calls ``reports.stats`` and assembles ONE JSON-ready dict,
the one that the page, the API, the downloads and ``manage.py agreement_report`` all serve.
``report_run_start`` / ``report_run_execute`` compute the same dict with bootstrap confidence
intervals and p-values on the worker and store it in a ``ReportRun``.

Rules the report states in its own output
-----------------------------------------
* Statistics use the cases answered by **every** reader (``data.note`` says how many); readers
  without a single answer are left out and named; readers with missing answers are flagged.
* Cases whose catalogue size differs from the study's most common size are left out (named).
* A *method* ranks a catalogue by distance (lower = closer): every finished model run of the
  dataset (or the runs asked for), and every method named in the candidates' provenance with a
  distance for every candidate of a case. A method that cannot rank some cases is reported with
  the reason, and its statistics use the cases it can rank.
* Confidence intervals are percentile bootstraps over cases (queries), optionally over readers
  too; the number of resamples, the seed and what was resampled are in the report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Sum

from annotations.models import Answer, AnswerItem, CaseFlag
from core.errors import ApplicationError
from core.jobs import JobStatus, job_progress, job_run
from readerstudy.models import AnswerMode, Assignment, Candidate, Case, Study, StudyStatus
from reports import stats as S
from reports.models import ReportRun
from retrieval.models import Label, ModelRun

log = logging.getLogger(__name__)

SCHEMA = "cbir-agreement-report/1"
DEFAULT_P = (3, 10)
DEFAULT_RESAMPLES = 2000
MAX_RESAMPLES = 100_000
MAX_GROUPS = 30
ICC_KINDS = {"ICC(A,1)": "ICC2", "ICC(C,1)": "ICC3", "ICC(A,k)": "ICC2k"}
VALUE_FIELD = {AnswerMode.CHOOSE_K: "selected", AnswerMode.RANK_ALL: "rank", AnswerMode.RATE: "rating"}
CATALOGUE_ORDER = "catalogue order"


# ============================================================================================
# Options
# ============================================================================================


@dataclass(frozen=True)
class ReportOptions:
    """What to compute: nDCG cut-offs, tie-break, bootstrap, runs, the query class label."""

    p: tuple[int, ...] = DEFAULT_P
    tie_break: str = "index"
    n_resamples: int = 0
    seed: int = 0
    readers_too: bool = False
    level: float = 0.95
    runs: tuple[int, ...] | None = None
    class_label: str = ""

    def as_dict(self) -> dict:
        """JSON form (stored with a ReportRun, shown in the report)."""
        d = asdict(self)
        d["p"], d["runs"] = list(self.p), None if self.runs is None else list(self.runs)
        return d

    def key(self, fingerprint: str = "") -> str:
        """sha256 of the options (and a data fingerprint): the identity of a stored report."""
        text = json.dumps(self.as_dict(), sort_keys=True) + fingerprint
        return hashlib.sha256(text.encode()).hexdigest()

    def without_bootstrap(self) -> ReportOptions:
        """These options without bootstrap (point estimates only)."""
        return replace(self, n_resamples=0)

    def analysis(self) -> ReportOptions:
        """These options with the bootstrap settings reset: what the point estimates depend on."""
        return replace(self, n_resamples=0, seed=0, readers_too=False, level=0.95)


def _int_list(value: Any, name: str, *, low: int, high: int) -> tuple[int, ...]:
    """A list of ints from a list or a comma-separated string, each in [low, high]."""
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        out = tuple(int(str(v).strip()) for v in items if str(v).strip() != "")
    except (TypeError, ValueError):
        raise ApplicationError(f"{name} must be whole numbers separated by commas, not {value!r}.") from None
    if any(not low <= v <= high for v in out):
        raise ApplicationError(f"{name} must be between {low} and {high}.")
    return out


def options_parse(*, p: Any = None, tie_break: Any = None, n_resamples: Any = None, seed: Any = None,
                  readers_too: Any = None, level: Any = None, runs: Any = None, class_label: Any = None,
                  ) -> ReportOptions:
    """Validated ReportOptions from user input (None = default); ApplicationError names the problem."""
    o = ReportOptions()
    out: dict[str, Any] = {}
    if p not in (None, "", []):
        out["p"] = tuple(sorted(set(_int_list(p, "p", low=1, high=1000)))) or DEFAULT_P
    if tie_break not in (None, ""):
        if tie_break not in S.TIE_BREAK_RULES:
            raise ApplicationError(f"tie_break must be one of {', '.join(sorted(S.TIE_BREAK_RULES))}.")
        out["tie_break"] = tie_break
    if n_resamples not in (None, ""):
        out["n_resamples"] = _int_list([n_resamples], "The number of resamples", low=0, high=MAX_RESAMPLES)[0]
    if seed not in (None, ""):
        out["seed"] = _int_list([seed], "The seed", low=0, high=2**32 - 1)[0]
    if readers_too not in (None, ""):
        out["readers_too"] = str(readers_too).lower() in ("1", "true", "on", "yes")
    if level not in (None, ""):
        out["level"] = _level(level)
    if runs not in (None, ""):
        out["runs"] = tuple(sorted(set(_int_list(runs, "runs", low=1, high=2**62))))
    if class_label not in (None,):
        out["class_label"] = str(class_label).strip()[:100]
    return replace(o, **out)


def _level(value: Any) -> float:
    try:
        level = float(value)
    except (TypeError, ValueError):
        raise ApplicationError(f"The confidence level must be a number, not {value!r}.") from None
    if not 0.5 <= level < 1.0:
        raise ApplicationError("The confidence level must be at least 0.5 and below 1 (e.g. 0.95).")
    return level


def options_from_dict(data: dict) -> ReportOptions:
    """ReportOptions from their stored JSON form."""
    return options_parse(**{k: data.get(k) for k in ReportOptions.__dataclass_fields__ if k in data})


# ============================================================================================
# Selectors: the study as arrays
# ============================================================================================


@dataclass
class ReaderInfo:
    user_id: int
    assignment_id: int
    name: str
    n_answered: int = 0
    median_active_s: float | None = None
    n_flags: int = 0


@dataclass
class StudyArrays:
    """A study's answers: values (C, M, R) in canonical case/candidate order, NaN = no answer."""

    study: Study
    case_ids: np.ndarray
    query_ids: np.ndarray
    candidate_ids: np.ndarray
    image_ids: np.ndarray
    provenance: list[list[list]]
    modality: list[str]
    readers: list[ReaderInfo]
    values: np.ndarray
    n_cases_total: int
    excluded_case_ids: list[int] = field(default_factory=list)
    excluded_readers: list[str] = field(default_factory=list)

    @property
    def answered(self) -> np.ndarray:
        """(C, R): the reader gave a value for every candidate of the case."""
        return ~np.isnan(self.values).any(axis=1)


def _study_cases(study: Study) -> tuple[list[dict], dict[int, list[tuple]]]:
    """The study's cases (canonical order) and, per case id, its candidates in catalogue order."""
    cases = list(Case.objects.filter(study=study).order_by("position")
                 .values("id", "position", "query_id", "query__modality"))
    candidates: dict[int, list[tuple]] = {c["id"]: [] for c in cases}
    rows = (Candidate.objects.filter(case__study=study).order_by("case_id", "position")
            .values_list("case_id", "id", "image_id", "provenance"))
    for case_id, cand_id, image_id, provenance in rows:
        candidates[case_id].append((cand_id, image_id, provenance))
    return cases, candidates


def _catalogue_size(candidates: dict[int, list]) -> int:
    """The most common catalogue size (ties: the larger)."""
    sizes = [len(v) for v in candidates.values() if v]
    if not sizes:
        return 0
    values, counts = np.unique(sizes, return_counts=True)
    return int(values[counts == counts.max()].max())


def _study_readers(study: Study) -> list[ReaderInfo]:
    """Assigned readers ordered by user name, with answer counts, median active time and flags."""
    readers = [ReaderInfo(a["reader_id"], a["id"], a["reader__username"])
               for a in Assignment.objects.filter(study=study).order_by("reader__username")
               .values("id", "reader_id", "reader__username")]
    times: dict[int, list[int]] = {}
    for assignment_id, active_ms in Answer.objects.filter(assignment__study=study).values_list(
            "assignment_id", "active_ms"):
        times.setdefault(assignment_id, []).append(active_ms)
    flags = dict(CaseFlag.objects.filter(assignment__study=study).values_list("assignment_id")
                 .annotate(n=Count("id")).values_list("assignment_id", "n"))
    for r in readers:
        ms = times.get(r.assignment_id, [])
        r.n_answered, r.n_flags = len(ms), flags.get(r.assignment_id, 0)
        r.median_active_s = float(np.median(ms)) / 1000.0 if ms else None
    return readers


def _lookup(sorted_ids: np.ndarray, order: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Index of each wanted id in the unsorted array behind (sorted_ids, order); -1 when absent."""
    pos = np.clip(np.searchsorted(sorted_ids, wanted), 0, max(len(sorted_ids) - 1, 0))
    if len(sorted_ids) == 0:
        return np.full(np.shape(wanted), -1)
    found = sorted_ids[pos] == wanted
    return np.where(found, order[pos], -1)


def _answer_values(study: Study, readers: list[ReaderInfo], candidate_ids: np.ndarray) -> np.ndarray:
    """(C*M, R) float values of the study's mode (selected as 0/1, rank, rating); NaN = missing."""
    field_name = VALUE_FIELD[study.mode]
    values = np.full((candidate_ids.size, len(readers)), np.nan)
    rows = list(AnswerItem.objects.filter(answer__assignment__study=study)
                .values_list("answer__assignment_id", "candidate_id", field_name))
    if not rows or not readers:
        return values
    arr = np.array(rows, dtype=float)
    flat = candidate_ids.ravel()
    order = np.argsort(flat, kind="stable")
    item = _lookup(flat[order], order, arr[:, 1].astype(np.int64))
    assignments = np.array([r.assignment_id for r in readers])
    a_order = np.argsort(assignments)
    reader = _lookup(assignments[a_order], a_order, arr[:, 0].astype(np.int64))
    ok = (item >= 0) & (reader >= 0)
    values[item[ok], reader[ok]] = arr[ok, 2]
    return values


def study_arrays(*, study: Study) -> StudyArrays:
    """Load a study's cases, candidates and answers into arrays (one query per table)."""
    cases, candidates = _study_cases(study)
    size = _catalogue_size(candidates)
    kept = [c for c in cases if len(candidates[c["id"]]) == size and size > 0]
    excluded = [c["id"] for c in cases if c not in kept]
    all_readers = _study_readers(study)
    readers = [r for r in all_readers if r.n_answered > 0]
    cand = [candidates[c["id"]] for c in kept]
    candidate_ids = np.array([[x[0] for x in row] for row in cand], dtype=np.int64).reshape(len(kept), size)
    image_ids = np.array([[x[1] for x in row] for row in cand], dtype=np.int64).reshape(len(kept), size)
    values = _answer_values(study, readers, candidate_ids).reshape(len(kept), size, len(readers))
    return StudyArrays(
        study=study,
        case_ids=np.array([c["id"] for c in kept], dtype=np.int64),
        query_ids=np.array([c["query_id"] for c in kept], dtype=np.int64),
        candidate_ids=candidate_ids,
        image_ids=image_ids,
        provenance=[[x[2] or [] for x in row] for row in cand],
        modality=[c["query__modality"] or "(unknown)" for c in kept],
        readers=readers,
        values=values,
        n_cases_total=len(cases),
        excluded_case_ids=excluded,
        excluded_readers=[r.name for r in all_readers if r.n_answered == 0],
    )


def query_classes(*, arrays: StudyArrays, label: str) -> list[str]:
    """The value of a label on each case's query image ('(missing)' when the image has none)."""
    rows = Label.objects.filter(image_id__in=arrays.query_ids.tolist(), name=label).values_list(
        "image_id", "value_num", "value_text")
    found = {i: _label_text(num, text) for i, num, text in rows}
    return [found.get(int(q), "(missing)") for q in arrays.query_ids]


def _label_text(num: float | None, text: str) -> str:
    if num is None:
        return text or "(missing)"
    return str(int(num)) if float(num).is_integer() else f"{num:g}"


def query_label_names(*, study: Study) -> list[str]:
    """Names of the labels carried by the study's query images (for the subgroup selector)."""
    return list(Label.objects.filter(image_id__in=Case.objects.filter(study=study).values("query_id"))
                .order_by("name").values_list("name", flat=True).distinct())


def study_fingerprint(*, study: Study) -> str:
    """Hash of everything a report depends on: answers, revisions, cases, readers, runs, status."""
    answers = Answer.objects.filter(assignment__study=study).aggregate(
        n=Count("id"), last=Max("submitted_at"), revisions=Sum("revision"), ids=Sum("id"))
    parts = [
        study.status, study.mode, study.k, study.rating_min, study.rating_max, study.ground_truth_reader_id,
        answers["n"], str(answers["last"]), answers["revisions"], answers["ids"],
        list(Assignment.objects.filter(study=study).order_by("id").values_list("id", flat=True)),
        Candidate.objects.filter(case__study=study).aggregate(n=Count("id"), ids=Sum("id")),
        list(ModelRun.objects.filter(dataset_id=study.dataset_id, status=JobStatus.SUCCEEDED)
             .order_by("id").values_list("id", "finished_at")),
    ]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


# ============================================================================================
# Selectors: methods that rank the catalogues
# ============================================================================================


@dataclass
class Method:
    """A method's distances (C, M) to each catalogue (NaN where it cannot rank a case)."""

    key: str
    name: str
    source: str
    run_id: int | None
    distances: np.ndarray
    reason: str = ""

    @property
    def available(self) -> np.ndarray:
        """(C,) the cases the method can rank (a distance for every candidate)."""
        return ~np.isnan(self.distances).any(axis=1)

    def describe(self, cases: np.ndarray | None = None) -> dict:
        """Summary row of the methods table (over the analysed cases when given)."""
        ok = self.available if cases is None else self.available[cases]
        return {"key": self.key, "name": self.name, "source": self.source, "run_id": self.run_id,
                "available": bool(ok.any()), "n_cases": int(ok.sum()), "reason": self.reason}


def _provenance_distances(arrays: StudyArrays) -> dict[tuple[str, int | None], np.ndarray]:
    """Per (method, run) named in provenance, the (C, M) distances it recorded (NaN = none)."""
    shape = arrays.candidate_ids.shape
    out: dict[tuple[str, int | None], np.ndarray] = {}
    for c, row in enumerate(arrays.provenance):
        for j, entries in enumerate(row):
            for entry in entries if isinstance(entries, list) else []:
                distance = _as_float(entry.get("distance")) if isinstance(entry, dict) else None
                if distance is None:
                    continue
                run = entry.get("run")
                key = (str(entry.get("method") or "model"), run if isinstance(run, int) else None)
                out.setdefault(key, np.full(shape, np.nan))[c, j] = distance
    return out


def _as_float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _report_runs(study: Study, run_ids: tuple[int, ...] | None) -> list[ModelRun]:
    """The runs asked for (checked to belong to the dataset), or every finished run of the dataset."""
    runs = ModelRun.objects.filter(dataset_id=study.dataset_id).order_by("id")
    if run_ids is None:
        return list(runs.filter(status=JobStatus.SUCCEEDED))
    found = {r.pk: r for r in runs.filter(pk__in=run_ids)}
    missing = [i for i in run_ids if i not in found]
    if missing:
        raise ApplicationError(f"Run(s) {', '.join(map(str, missing))} are not runs of this study's dataset.")
    return [found[i] for i in run_ids]


def _run_distances(run: ModelRun, arrays: StudyArrays) -> tuple[np.ndarray, str]:
    """(C, M) distances of each catalogue under a run, embeddings loaded once; reason when incomplete."""
    from retrieval import ranking

    d = np.full(arrays.candidate_ids.shape, np.nan)
    if run.status != JobStatus.SUCCEEDED:
        return d, f"the run is {run.status}, not finished"
    if run.method == "ssim":
        return _ssim_distances(run, arrays)
    try:
        ids, vectors = ranking.run_vectors(run=run)
    except ApplicationError as exc:
        return d, exc.message
    order = np.argsort(ids, kind="stable")
    qpos = _lookup(ids[order], order, arrays.query_ids)
    cpos = _lookup(ids[order], order, arrays.image_ids)
    ok = (qpos >= 0) & (cpos >= 0).all(axis=1)
    metric = ranking.run_metric(run)  # the run's own metric, exactly as retrieval.ranking applies it
    for c in np.flatnonzero(ok):
        d[c] = ranking.pairwise_distances(vectors[qpos[c]], vectors[cpos[c]], metric)
    missing = int((~ok).sum())
    return d, f"no embedding for the images of {missing} of {len(ok)} cases" if missing else ""


def _ssim_distances(run: ModelRun, arrays: StudyArrays) -> tuple[np.ndarray, str]:
    """SSIM runs have no embeddings: each catalogue is compared image by image."""
    from retrieval import ranking

    d = np.full(arrays.candidate_ids.shape, np.nan)
    reasons = []
    for c, (q, cands) in enumerate(zip(arrays.query_ids, arrays.image_ids)):
        try:
            d[c] = ranking.run_distances(run=run, query_id=int(q), candidate_ids=[int(i) for i in cands])
        except (ApplicationError, OSError, ValueError) as exc:
            reasons.append(getattr(exc, "message", None) or str(exc))
    return d, (f"{len(reasons)} cases could not be compared: {reasons[0]}" if reasons else "")


def _unique_key(name: str, taken: set[str]) -> str:
    """A short identifier (letters, digits, - _ .) unique among the report's methods."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[:40] or "method"
    key, n = base, 2
    while key in taken:
        key, n = f"{base}-{n}", n + 1
    taken.add(key)
    return key


def _coverage_reason(d: np.ndarray) -> str:
    missing = int(np.isnan(d).any(axis=1).sum())
    if not missing:
        return ""
    return (f"has no distance for every candidate in {missing} of {len(d)} cases "
            "(it did not propose every candidate of those catalogues)")


def report_methods(*, arrays: StudyArrays, runs: tuple[int, ...] | None = None) -> list[Method]:
    """Model runs (distances from their embeddings) then provenance-only methods, with reasons."""
    study = arrays.study
    prov = _provenance_distances(arrays)
    run_objs = _report_runs(study, runs)
    names = dict(ModelRun.objects.filter(pk__in=[r for _, r in prov if r is not None]).values_list("pk", "name"))
    taken: set[str] = set()
    methods = []
    for run in run_objs:
        d, reason = _run_distances(run, arrays)
        for (_, rid), pd in prov.items():
            if rid == run.pk:  # cases the embeddings cannot rank, provenance may still cover
                fill = np.isnan(d).any(axis=1) & ~np.isnan(pd).any(axis=1)
                d[fill] = pd[fill]
        reason = (reason or _coverage_reason(d)) if np.isnan(d).any() else ""
        methods.append(Method(_unique_key(run.name, taken), run.name, "run", run.pk, d, reason))
    used = {r.pk for r in run_objs}
    for (name, rid), pd in prov.items():
        if rid is not None and rid in used:
            continue
        label = names.get(rid, name) if rid is not None else name
        methods.append(Method(_unique_key(label, taken), label, "provenance", rid, pd, _coverage_reason(pd)))
    return methods


# ============================================================================================
# Report inputs and the analysis view (arrays restricted to the analysed cases)
# ============================================================================================


@dataclass
class ReportInputs:
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
        methods = {k: MethodView(m.name, m.distances[mask], m.ranks[mask], m.mask[mask])
                   for k, m in self.methods.items()}
        return replace(self, values=self.values[mask], case_ids=self.case_ids[mask], methods=methods)


def _ground_truth(arrays: StudyArrays) -> tuple[int, str]:
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
    return Analysis(a.study.mode, values, a.case_ids[cases], [r.name for r in a.readers], _ground_truth(a)[0],
                    methods, a.study.k, (a.study.rating_min, a.study.rating_max))


# ============================================================================================
# Uncertainty helpers
# ============================================================================================


def _ci(statistic: Callable, n_cases: int, o: ReportOptions, *, n_readers: int = 0, **kwargs) -> dict | None:
    """Bootstrap CI (cases, plus readers when asked and the statistic accepts reader weights)."""
    if not o.n_resamples or n_cases < 2:
        return None
    readers = n_readers if (o.readers_too and n_readers >= 2) else None
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = S.bootstrap_ci(statistic, n_cases, n_resamples=o.n_resamples, seed=o.seed, level=o.level,
                             n_readers=readers, **kwargs)
    resampled = res["resampled"].replace("clusters", "cases")  # the clusters are the cases' items
    return {"low": res["low"], "high": res["high"], "resampled": resampled, "n_failed": res["n_failed"]}


def _est(value: Any, ci: dict | None = None) -> dict:
    """A statistic with its (optional) confidence interval."""
    out = {"estimate": None if value is None else float(value), "ci_low": None, "ci_high": None, "resampled": None}
    if ci:
        out.update(ci_low=ci["low"], ci_high=ci["high"], resampled=ci["resampled"])
    return out


def _reader_mean_statistic(per_case: np.ndarray) -> Callable:
    """Vectorised statistic: mean over readers and cases of (C, R) values, cases and readers weighted."""
    x = np.asarray(per_case, float)

    def stat(w: np.ndarray, v: np.ndarray | None = None) -> np.ndarray:
        v = np.ones((len(w), x.shape[1])) if v is None else v
        return ((w @ x) * v).sum(-1) / (w.sum(-1) * v.sum(-1))

    return stat


# ============================================================================================
# Choose-k studies (paper 000)
# ============================================================================================


def _tie_breaker(an: Analysis, o: ReportOptions) -> tuple[str, np.ndarray | None, str]:
    """(name, model ranks or None, rule text) of the consensus tie-break actually applied."""
    if o.tie_break == "model":
        for m in an.methods.values():
            if m.mask.all() and an.n_cases:
                return m.name, m.ranks, S.tie_break_rule("model") + f" ({m.name})"
        return CATALOGUE_ORDER, None, S.tie_break_rule("index") + " (no method ranks every analysed case)"
    return CATALOGUE_ORDER, None, S.tie_break_rule("index")


def per_case_agreement(selections: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(C, R) percentage of each case's candidates on which each reader agrees with the reference."""
    return 100.0 * (selections == reference[..., None]).mean(axis=1)


def _inter_reader_choose(sel: np.ndarray, o: ReportOptions) -> dict:
    """Fleiss κ, mean pairwise agreement, pairwise Cohen κ and Krippendorff α between readers."""
    n_cases, _, n_readers = sel.shape
    if n_readers < 2:
        return {"fleiss_kappa": _est(None), "mean_pairwise_agreement": _est(None),
                "krippendorff_alpha": _est(None), "pairwise_cohen_kappa": None, "mean_pairwise_cohen_kappa": None}
    stats = S.agreement_stats(sel, n_cat=2)
    items = sel.reshape(-1, n_readers)
    pairwise = S.pairwise_cohen_kappa(items, labels=[False, True])
    off = ~np.eye(n_readers, dtype=bool)
    per_case_pair = (stats.agree * off).sum((1, 2)) / (off.sum() * stats.n_items)
    return {
        "fleiss_kappa": _est(S.fleiss_kappa_from_stats(stats),
                             _ci(S.fleiss_statistic(stats), n_cases, o, n_readers=n_readers)),
        "mean_pairwise_agreement": _est(100.0 * S.mean_pairwise_agreement(stats),
                                        _ci(S.mean_statistic(100.0 * per_case_pair), n_cases, o)),
        "krippendorff_alpha": _est(S.krippendorff_alpha(items.astype(float))),
        "pairwise_cohen_kappa": pairwise.tolist(),
        "mean_pairwise_cohen_kappa": float(pairwise[off].mean()),
    }


def _agreement_block(sel: np.ndarray, reference: np.ndarray, readers: list[str], o: ReportOptions) -> dict:
    """Per-reader and mean % agreement with a reference selection (Table 2), with CIs."""
    per_case = per_case_agreement(sel, reference)
    pooled = S.reader_agreement(sel, reference)
    n = len(per_case)
    return {
        "reader_agreement": {name: _est(pooled[r], _ci(S.mean_statistic(per_case[:, r]), n, o))
                             for r, name in enumerate(readers)},
        "mean_reader_agreement": _est(float(pooled.mean()),
                                      _ci(_reader_mean_statistic(per_case), n, o, n_readers=len(readers))),
    }


def _choose_method(sel: np.ndarray, consensus: np.ndarray, m: MethodView, an: Analysis, o: ReportOptions) -> dict:
    """Cohen κ and % agreement of one method's k nearest with the consensus and with each reader."""
    n = int(m.mask.sum())
    if not n:
        return {"available": False, "n_cases": 0}
    s, cons = sel[m.mask], consensus[m.mask]
    chosen = S.model_selection(m.ranks[m.mask], an.k)
    conf = S.paired_confusion(cons, chosen)
    agree_cases = 100.0 * (cons == chosen).mean(axis=1)
    return {
        "available": True,
        "n_cases": n,
        "cohen_kappa_vs_consensus": _est(S.cohen_kappa(cons, chosen, labels=[False, True]),
                                         _ci(S.kappa_statistic(conf), n, o)),
        "agreement_with_consensus": _est(S.percent_agreement(cons, chosen), _ci(S.mean_statistic(agree_cases), n, o)),
        **_agreement_block(s, chosen, an.readers, o),
    }


def choose_k_section(an: Analysis, o: ReportOptions) -> dict:
    """Paper 000: agreement between readers, the exactly-k consensus, and each method against both."""
    sel = an.values.astype(bool)
    n_cases, n_cand, _ = sel.shape
    _, tb_ranks, rule = _tie_breaker(an, o)
    consensus = S.consensus_selection(sel, an.k, model_ranks=tb_ranks,
                                      tie_break="model" if tb_ranks is not None else "index")
    k = an.k
    return {
        "k": k,
        "n_cases": n_cases,
        "n_candidates": n_cand,
        "n_items": n_cases * n_cand,
        "readers": an.readers,
        "chance_agreement": 100.0 * (k * k + (n_cand - k) ** 2) / n_cand**2 if n_cand else None,
        **_inter_reader_choose(sel, o),
        "consensus": {
            "tie_break": rule,
            "n_cases_tie_broken": int(S.consensus_tied(sel, k).sum()) if n_cases else 0,
            **_agreement_block(sel, consensus, an.readers, o),
        },
        "methods": {key: _choose_method(sel, consensus, m, an, o) for key, m in an.methods.items()},
    }


# ============================================================================================
# Ranking studies (papers 001 / 003)
# ============================================================================================


def _metric_names(o: ReportOptions) -> list[str]:
    return [f"ndcg@{q}" for q in o.p] + ["kendall_tau", "spearman_rho"]


def _ranking_summary(ranks: np.ndarray, methods: dict, gt: int, o: ReportOptions, names: list[str]) -> dict:
    """stats.ranking_summary with the report's options (one reader: no inter-rater band)."""
    return S.ranking_summary(ranks, methods, ground_truth=gt, p=o.p, reader_names=names)


def _ranking_per_case(an: Analysis, o: ReportOptions, gt: int) -> tuple[dict, dict, dict]:
    """Per compared method/reader: per-case metric arrays (NaN where unavailable), kinds, n cases."""
    ranks = an.values.astype(int)
    full = {k: m.ranks for k, m in an.methods.items() if m.mask.all()}
    summary = _ranking_summary(ranks, full, gt, o, an.readers)
    per_case, kinds = dict(summary["per_case"]), dict(summary["kind"])
    n = {name: an.n_cases for name in per_case}
    for key, m in an.methods.items():
        if key in full or not m.mask.any():
            continue
        part = _ranking_summary(ranks[m.mask][..., [gt]], {key: m.ranks[m.mask]}, 0, o,
                                [an.readers[gt]])["per_case"][key]
        per_case[key] = {metric: _scatter(v, m.mask) for metric, v in part.items()}
        kinds[key], n[key] = "method", int(m.mask.sum())
    return per_case, kinds, n


def _scatter(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Values of the masked cases placed in a full-length array (NaN elsewhere)."""
    out = np.full(mask.shape, np.nan)
    out[mask] = values
    return out


def _compared_block(values: dict, kind: str, n: int, metrics: list[str], o: ReportOptions) -> dict:
    """Mean of each per-case metric with its bootstrap CI over the cases where it is defined."""
    out = {}
    for metric in metrics:
        v = np.asarray(values[metric], float)
        v = v[~np.isnan(v)]
        out[metric] = _est(float(v.mean()) if len(v) else None, _ci(S.mean_statistic(v), len(v), o))
    return {"kind": kind, "n_cases": n, "metrics": out}


def _other_readers_mean(per_case: dict, others: list[str], metrics: list[str], o: ReportOptions) -> dict:
    """Mean over the non-ground-truth readers (the inter-rater level), cases and readers resampled."""
    if not others:
        return {}
    out = {}
    for metric in metrics:
        x = np.stack([per_case[r][metric] for r in others], axis=1)
        out[metric] = _est(float(x.mean()), _ci(_reader_mean_statistic(x), len(x), o, n_readers=len(others)))
    return out


def _reader_tau_matrix(ranks: np.ndarray) -> list[list[float]]:
    """Mean per-case Kendall τ between every pair of readers (1 on the diagonal)."""
    n_readers = ranks.shape[-1]
    m = np.eye(n_readers)
    for i in range(n_readers):
        for j in range(i + 1, n_readers):
            m[i, j] = m[j, i] = float(np.mean(S.kendall_tau(ranks[..., i], ranks[..., j])))
    return m.tolist()


def ranking_section(an: Analysis, o: ReportOptions, *, gt_source: str = "") -> dict:
    """Papers 001/003: nDCG@p, Kendall τ, Spearman ρ of each method and reader against the ground truth."""
    n_cases, n_cand, _ = an.values.shape
    metrics = _metric_names(o)
    per_case, kinds, n = _ranking_per_case(an, o, an.gt)
    others = [name for name, kind in kinds.items() if kind == "reader"]
    compared = {name: _compared_block(per_case[name], kinds[name], n[name], metrics, o) for name in per_case}
    random = {f"ndcg@{q}": S.expected_random_ndcg(n_cand, q) for q in o.p} if n_cand else {}
    random.update(kendall_tau=0.0, spearman_rho=0.0)
    band = {met: [min(compared[r]["metrics"][met]["estimate"] for r in others),
                  max(compared[r]["metrics"][met]["estimate"] for r in others)] for met in metrics} if others else {}
    return {
        "n_cases": n_cases,
        "n_candidates": n_cand,
        "readers": an.readers,
        "ground_truth": an.readers[an.gt],
        "ground_truth_source": gt_source,
        "relevance": "(N + 1 - rank)/2 + 0.5 of the ground-truth reader's rank",
        "gain": "2^rel - 1",
        "discount": "log2(i + 1)",
        "p": list(o.p),
        "metrics": metrics,
        "random": random,
        "compared": compared,
        "inter_rater_band": band,
        "other_readers_mean": _other_readers_mean(per_case, others, metrics, o),
        "reader_kendall_tau": _reader_tau_matrix(an.values.astype(int)) if an.values.shape[-1] > 1 else None,
        "per_case": {"case_ids": an.case_ids.tolist(),
                     "values": {name: {met: np.asarray(v).tolist() for met, v in vals.items()}
                                for name, vals in per_case.items()}},
    }


# ============================================================================================
# Rating studies
# ============================================================================================


def _icc_block(items: np.ndarray, n_cases: int, n_cand: int, o: ReportOptions) -> dict:
    """ICC(A,1) with a case-clustered bootstrap CI; ICC(C,1), ICC(A,k) as point estimates."""
    if items.shape[0] < 2 or items.shape[1] < 2:
        return {name: _est(None) for name in ICC_KINDS}
    cluster = np.repeat(np.arange(n_cases), n_cand)

    def stat(idx: np.ndarray, ridx: np.ndarray | None = None) -> float:
        x = items[idx] if ridx is None else items[np.ix_(idx, ridx)]
        return S.icc(x, kind="ICC2")

    out = {name: _est(S.icc(items, kind=kind)) for name, kind in ICC_KINDS.items()}
    ci = _ci(stat, len(items), o, n_readers=items.shape[1], vectorized=False, cluster=cluster) if n_cases >= 2 else None
    out["ICC(A,1)"] = _est(out["ICC(A,1)"]["estimate"], ci)
    return out


def _weighted_kappa_block(x: np.ndarray, labels: np.ndarray, o: ReportOptions) -> dict:
    """Quadratic-weighted Cohen κ between every pair of readers; its mean with a case-bootstrap CI."""
    n_cases, _, n_readers = x.shape
    off = ~np.eye(n_readers, dtype=bool)
    matrix = S.pairwise_cohen_kappa(x.reshape(-1, n_readers), weights="quadratic", labels=labels)
    linear = S.pairwise_cohen_kappa(x.reshape(-1, n_readers), weights="linear", labels=labels)
    return {
        "weights": "quadratic",
        "matrix": matrix.tolist(),
        "mean": _est(float(matrix[off].mean()), _ci(_weighted_kappa_statistic(x, labels), n_cases, o)
                     if o.n_resamples else None),
        "mean_linear": float(linear[off].mean()),
    }


def _weighted_kappa_statistic(x: np.ndarray, labels: np.ndarray) -> Callable:
    """Vectorised statistic: mean pairwise quadratic κ from per-case (reader, reader) confusion counts."""
    n_readers = x.shape[-1]
    onehot = np.eye(len(labels))[np.searchsorted(labels, x.astype(int))]  # (C, M, R, K)
    conf = np.einsum("cmrk,cmsl->crskl", onehot, onehot, optimize=True)
    off = ~np.eye(n_readers, dtype=bool)

    def stat(w: np.ndarray) -> np.ndarray:
        k = S.kappa_from_confusion(np.tensordot(w, conf, axes=(-1, 0)), weights="quadratic")
        return k[..., off].mean(-1)

    return stat


def _quiet(fn: Callable, *args, **kwargs) -> Any:
    """Call a statistic with numpy/scipy warnings silenced (constant inputs give NaN, reported as null)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _rating_method(x: np.ndarray, m: MethodView, an: Analysis, o: ReportOptions) -> dict:
    """Correlation of ratings with a method's distances: pooled, per reader, mean per-case Spearman."""
    n = int(m.mask.sum())
    if not n:
        return {"available": False, "n_cases": 0}
    r, d = x[m.mask], m.distances[m.mask]
    per_case = _quiet(S.spearman_rho, np.moveaxis(r, -1, 1), d[:, None, :])  # (C, R)
    case_mean = _quiet(np.nanmean, per_case, axis=1)
    case_mean = case_mean[~np.isnan(case_mean)]
    return {
        "available": True,
        "n_cases": n,
        "correlation": _quiet(S.distance_rating_correlation, r.reshape(-1, r.shape[-1]), d.ravel()),
        "per_reader_spearman": {name: _quiet(S.distance_rating_correlation, r[..., i].ravel(), d.ravel())["spearman"]
                                for i, name in enumerate(an.readers)},
        "mean_case_spearman": _est(float(case_mean.mean()) if len(case_mean) else None,
                                   _ci(S.mean_statistic(case_mean), len(case_mean), o)),
        "mean_rating_by_model_rank": np.nanmean(
            np.take_along_axis(r.mean(-1), np.argsort(m.ranks[m.mask], axis=1), axis=1), axis=0).tolist(),
    }


def rating_section(an: Analysis, o: ReportOptions) -> dict:
    """Rating studies: ICC and weighted κ between readers, correlation of ratings with model distances."""
    x = an.values.astype(float)
    n_cases, n_cand, n_readers = x.shape
    items = x.reshape(-1, n_readers)
    # the study's scale, plus any value outside it (the reading services refuse those; old data may not)
    labels = np.union1d(np.arange(an.scale[0], an.scale[1] + 1), np.unique(x)).astype(int)
    inter = n_readers >= 2 and n_cases >= 1
    return {
        "scale": list(an.scale),
        "n_cases": n_cases,
        "n_candidates": n_cand,
        "n_items": n_cases * n_cand,
        "readers": an.readers,
        "reader_mean_rating": {name: float(items[:, i].mean()) if len(items) else None
                               for i, name in enumerate(an.readers)},
        "icc": _quiet(_icc_block, items, n_cases, n_cand, o),
        "weighted_kappa": _weighted_kappa_block(x, labels, o) if inter else None,
        "krippendorff_alpha_ordinal": _est(_quiet(S.krippendorff_alpha, items, level="ordinal") if inter else None),
        "krippendorff_alpha_interval": _est(_quiet(S.krippendorff_alpha, items, level="interval") if inter else None),
        "methods": {key: _rating_method(x, m, an, o) for key, m in an.methods.items()},
    }


SECTIONS: dict[str, Callable[..., dict]] = {
    AnswerMode.CHOOSE_K: choose_k_section,
    AnswerMode.RANK_ALL: ranking_section,
    AnswerMode.RATE: rating_section,
}
SECTION_NAME = {AnswerMode.CHOOSE_K: "choose_k", AnswerMode.RANK_ALL: "ranking", AnswerMode.RATE: "rating"}


# ============================================================================================
# Hypothesis tests: method vs random, method vs method
# ============================================================================================


def _paired(a: np.ndarray, b: np.ndarray, o: ReportOptions, alternative: str = "two-sided") -> dict:
    """Sign-flip permutation test and paired t-test of per-case values a − b."""
    perm = S.paired_permutation_test(a, b, n_resamples=o.n_resamples, seed=o.seed, alternative=alternative)
    ttest = _quiet(S.paired_ttest, a, b, alternative=alternative)
    return {"n": perm["n"], "mean_difference": perm["statistic"], "permutation_p": perm["p_value"],
            "ttest_p": ttest["p_value"], "alternative": alternative}


def _method_pairs(per_case: dict[str, np.ndarray], o: ReportOptions, metric: str) -> list[dict]:
    """Every pair of methods compared on their common cases."""
    keys = list(per_case)
    out = []
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            ok = ~(np.isnan(per_case[a]) | np.isnan(per_case[b]))
            if ok.sum() >= 2:
                out.append({"a": a, "b": b, "metric": metric, **_paired(per_case[a][ok], per_case[b][ok], o)})
    return out


def _choose_case_agreement(an: Analysis) -> dict[str, np.ndarray]:
    """Per method, per-case mean reader % agreement with its k nearest (NaN where unavailable)."""
    sel = an.values.astype(bool)
    out = {}
    for key, m in an.methods.items():
        if m.mask.any():
            chosen = S.model_selection(m.ranks[m.mask], an.k)
            out[key] = _scatter(per_case_agreement(sel[m.mask], chosen).mean(axis=1), m.mask)
    return out


def choose_k_tests(an: Analysis, section: dict, o: ReportOptions) -> dict:
    """Reader agreement with each method vs the chance level of a random k; method vs method."""
    per_case = _choose_case_agreement(an)
    chance = section["chance_agreement"]
    vs_random = {}
    for key, v in per_case.items():
        x = v[~np.isnan(v)]
        if len(x) >= 2:
            vs_random[key] = {"statistic": "mean reader % agreement", "chance": chance,
                              **_paired(x, np.full(len(x), chance), o, alternative="greater")}
    return {"vs_random": vs_random, "method_vs_method": _method_pairs(per_case, o, "mean reader % agreement")}


def ranking_tests(an: Analysis, section: dict, o: ReportOptions) -> dict:
    """Permutation test of each method's mean nDCG@p against random orders; paired tests between methods."""
    truth = an.values.astype(int)[..., an.gt]
    vs_random: dict[str, dict] = {}
    for key, m in an.methods.items():
        if m.mask.sum() < 2:
            continue
        vs_random[key] = {
            f"ndcg@{q}": S.permutation_test_vs_random(m.ranks[m.mask], truth[m.mask], p=q, n_resamples=o.n_resamples,
                                                      seed=o.seed)
            for q in o.p}
    values = section["per_case"]["values"]
    pairs = []
    for metric in _metric_names(o):
        pairs += _method_pairs({k: np.asarray(values[k][metric], float) for k in an.methods if k in values}, o, metric)
    return {"vs_random": vs_random, "method_vs_method": pairs}


def rating_tests(an: Analysis, section: dict, o: ReportOptions) -> dict:
    """Mean per-case Spearman ρ (ratings vs distances) against 0; paired tests between methods."""
    x = an.values.astype(float)
    per_case = {}
    for key, m in an.methods.items():
        if m.mask.any():
            rho = _quiet(S.spearman_rho, np.moveaxis(x[m.mask], -1, 1), m.distances[m.mask][:, None, :])
            per_case[key] = _scatter(_quiet(np.nanmean, rho, axis=1), m.mask)
    vs_random = {}
    for key, v in per_case.items():
        v = v[~np.isnan(v)]
        if len(v) >= 2:
            vs_random[key] = {"statistic": "mean per-case Spearman rho", **_paired(v, np.zeros(len(v)), o)}
    return {"vs_random": vs_random, "method_vs_method": _method_pairs(per_case, o, "mean per-case Spearman rho")}


TESTS = {AnswerMode.CHOOSE_K: choose_k_tests, AnswerMode.RANK_ALL: ranking_tests, AnswerMode.RATE: rating_tests}


# ============================================================================================
# Subgroups
# ============================================================================================


def _flat(mode: str, section: dict) -> dict[str, dict[str, float | None]]:
    """The headline numbers of a section as {row: {statistic: value}} (a block of a subgroup table)."""
    if mode == AnswerMode.CHOOSE_K:
        rows = {"readers": {"fleiss_kappa": section["fleiss_kappa"]["estimate"],
                            "mean_pairwise_agreement": section["mean_pairwise_agreement"]["estimate"]},
                "consensus": {"mean_reader_agreement": section["consensus"]["mean_reader_agreement"]["estimate"]}}
        for key, m in section["methods"].items():
            if m["available"]:
                rows[key] = {"kappa_vs_consensus": m["cohen_kappa_vs_consensus"]["estimate"],
                             "mean_reader_agreement": m["mean_reader_agreement"]["estimate"]}
        return rows
    if mode == AnswerMode.RANK_ALL:
        return {name: {met: v["estimate"] for met, v in c["metrics"].items()} for name, c in section["compared"].items()}
    rows = {"readers": {"icc_a1": section["icc"]["ICC(A,1)"]["estimate"],
                        "mean_weighted_kappa": (section["weighted_kappa"] or {}).get("mean", {}).get("estimate")}}
    for key, m in section["methods"].items():
        if m["available"]:
            rows[key] = {"spearman": m["correlation"]["spearman"],
                         "mean_case_spearman": m["mean_case_spearman"]["estimate"]}
    return rows


def _split(an: Analysis, keys: list[str], o: ReportOptions) -> dict:
    """Headline statistics recomputed on each group of cases (no bootstrap)."""
    labels = np.asarray(keys, dtype=object)
    groups = sorted(set(keys))
    if len(groups) > MAX_GROUPS:
        return {"groups": {}, "note": f"{len(groups)} groups: too many to tabulate (at most {MAX_GROUPS})."}
    out = {}
    for g in groups:
        sub = an.subset(labels == g)
        section = _quiet(SECTIONS[an.mode], sub, o)
        out[g] = {"n_cases": sub.n_cases, "statistics": _flat(an.mode, section)}
    return {"groups": out, "note": ""}


def _by_reader(an: Analysis, section: dict, o: ReportOptions) -> dict:
    """One block per reader: agreement (choose-k), methods scored against that reader (ranking), ratings."""
    rows = {}
    for i, name in enumerate(an.readers):
        if an.mode == AnswerMode.CHOOSE_K:
            stats = {"consensus": {"agreement": section["consensus"]["reader_agreement"][name]["estimate"]}}
            stats |= {k: {"agreement": m["reader_agreement"][name]["estimate"]}
                      for k, m in section["methods"].items() if m["available"]}
        elif an.mode == AnswerMode.RANK_ALL:
            per_case, _, _ = _ranking_per_case(an, o, i)
            stats = {k: {met: _nanmean(per_case[k][met]) for met in _metric_names(o)}
                     for k in an.methods if k in per_case}
        else:
            stats = {"reader": {"mean_rating": section["reader_mean_rating"][name]}}
            stats |= {k: {"spearman": m["per_reader_spearman"][name]}
                      for k, m in section["methods"].items() if m["available"]}
        rows[name] = {"n_cases": an.n_cases, "statistics": stats}
    note = "Methods scored against each reader's ranking as the reference." if an.mode == AnswerMode.RANK_ALL else ""
    return {"groups": rows, "note": note}


def _nanmean(values: Any) -> float | None:
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    return float(v.mean()) if len(v) else None


def subgroups(inputs: ReportInputs, use: np.ndarray, an: Analysis, section: dict, o: ReportOptions) -> dict:
    """Subgroup tables: by query modality, by query class (when a label is chosen), by reader."""
    plain = o.without_bootstrap()
    out = {"modality": {"key": "query modality",
                        **_split(an, [m for m, u in zip(inputs.arrays.modality, use) if u], plain)}}
    if inputs.classes is not None:
        out["query_class"] = {"key": f"query label {o.class_label!r}",
                              **_split(an, [c for c, u in zip(inputs.classes, use) if u], plain)}
    out["reader"] = {"key": "reader", **_by_reader(an, section, plain)}
    return out


# ============================================================================================
# The report
# ============================================================================================


def _study_info(study: Study) -> dict:
    return {
        "id": study.pk, "name": study.name, "mode": study.mode, "k": study.k,
        "rating_scale": [study.rating_min, study.rating_max], "status": study.status,
        "dataset": {"id": study.dataset_id, "name": study.dataset.name},
        "builder": study.builder, "seed": study.seed,
        "ground_truth_reader": study.ground_truth_reader.username if study.ground_truth_reader_id else None,
    }


def _data_block(inputs: ReportInputs, use: np.ndarray) -> dict:
    """How many cases and readers the statistics use, and why the others are left out."""
    a = inputs.arrays
    n_use, n_readers = int(use.sum()), len(a.readers)
    note = (f"Statistics use the {n_use} of {a.n_cases_total} cases answered by all {n_readers} readers."
            if n_readers else "No reader has answered yet.")
    if a.excluded_case_ids:
        note += (f" {len(a.excluded_case_ids)} cases with a catalogue size other than "
                 f"{a.candidate_ids.shape[1]} are left out.")
    if a.excluded_readers:
        note += f" Readers without any answer are left out: {', '.join(a.excluded_readers)}."
    return {
        "n_cases_total": a.n_cases_total,
        "n_cases_analysed": n_use,
        "n_cases_incomplete": int(len(use) - n_use),
        "catalogue_size": int(a.candidate_ids.shape[1]) if a.candidate_ids.ndim == 2 else 0,
        "excluded_case_ids": a.excluded_case_ids,
        "excluded_readers": a.excluded_readers,
        "note": note,
    }


def _readers_block(inputs: ReportInputs) -> list[dict]:
    a = inputs.arrays
    gt, _ = _ground_truth(a)
    answered = a.answered
    n_loaded = len(a.case_ids)
    return [{"id": r.user_id, "name": r.name, "n_answered": r.n_answered,
             "n_answered_complete": int(answered[:, i].sum()),
             "complete": bool(answered[:, i].all()) and n_loaded > 0,
             "is_ground_truth": a.study.mode == AnswerMode.RANK_ALL and i == gt,
             "median_active_s": r.median_active_s, "n_flags": r.n_flags}
            for i, r in enumerate(a.readers)]


def _uncertainty_block(o: ReportOptions) -> dict | None:
    if not o.n_resamples:
        return None
    return {"n_resamples": o.n_resamples, "seed": o.seed, "level": o.level, "method": "percentile bootstrap",
            "unit": "cases (queries)" + (" and readers" if o.readers_too else ""),
            "p_values": "sign-flip permutation and paired t-test; nDCG vs random: permutation of catalogue orders",
            "n_permutations": o.n_resamples}


Progress = Callable[[int, int, str], None]


def report_build(inputs: ReportInputs, options: ReportOptions, *, progress: Progress | None = None,
                 fingerprint: str = "") -> dict:
    """The whole report as a JSON-ready dict (see docs/README-reports.md for every key).

    BLAS runs single-threaded here: the matrices are small, web and worker processes compute
    several reports side by side, and threaded OpenBLAS spinning on busy cores made the same
    report up to 6× slower (benchmarks/bench_report.py).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _report_build(inputs, options, progress=progress, fingerprint=fingerprint)


def _report_build(inputs: ReportInputs, options: ReportOptions, *, progress: Progress | None,
                  fingerprint: str) -> dict:
    """report_build's body."""
    tick = progress or (lambda done, total, note: None)
    study = inputs.arrays.study
    use = analysed_cases(inputs.arrays)
    an = analysis_for(inputs, use)
    report = _report_header(inputs, options, use, an, fingerprint)
    if an.n_cases == 0:
        return jsonable(report)
    tick(1, 4, "statistics" + (" and bootstrap intervals" if options.n_resamples else ""))
    gt_note = {"gt_source": _ground_truth(inputs.arrays)[1]} if study.mode == AnswerMode.RANK_ALL else {}
    section = _quiet(SECTIONS[study.mode], an, options, **gt_note)
    report[SECTION_NAME[study.mode]] = section
    if options.n_resamples:
        tick(2, 4, "p-values")
        report["tests"] = _quiet(TESTS[study.mode], an, section, options)
    tick(3, 4, "subgroups")
    report["subgroups"] = subgroups(inputs, use, an, section, options)
    return jsonable(report)


def _report_header(inputs: ReportInputs, options: ReportOptions, use: np.ndarray, an: Analysis,
                   fingerprint: str) -> dict:
    """Study, options, data coverage, readers and methods; the mode sections start empty."""
    study = inputs.arrays.study
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "interim": study.status != StudyStatus.CLOSED,
        "study": _study_info(study),
        "options": options.as_dict(),
        "fingerprint": fingerprint,
        "data": _data_block(inputs, use),
        "n_cases": an.n_cases,
        "n_readers": len(an.readers),
        "readers": _readers_block(inputs),
        "methods": [m.describe(use) for m in inputs.methods],
        "uncertainty": _uncertainty_block(options),
        "section": SECTION_NAME[study.mode],
    }
    for key in SECTION_NAME.values():
        report[key] = None
    report["tests"] = report["subgroups"] = None
    return report


def report_for_study(*, study: Study, options: ReportOptions, progress: Progress | None = None) -> dict:
    """Load and build in one call (command line, downloads, API)."""
    fingerprint = study_fingerprint(study=study)
    return report_build(report_inputs(study=study, options=options), options, progress=progress,
                        fingerprint=fingerprint)


def jsonable(value: Any) -> Any:
    """numpy → Python, NaN/inf → None, tuples → lists, keys → str: strict JSON."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


# ============================================================================================
# Services: reports computed on the worker (bootstrap CIs and p-values)
# ============================================================================================


def report_run_find(*, study: Study, options: ReportOptions) -> ReportRun | None:
    """The latest report run of the study computed with the same analysis options (any bootstrap settings)."""
    wanted = options.analysis()
    for run in ReportRun.objects.filter(study=study).order_by("-created_at", "-pk"):
        try:
            if options_from_dict(run.options).analysis() == wanted:
                return run
        except ApplicationError:  # options stored by an older version
            continue
    return None


def report_run_start(*, study: Study, options: ReportOptions, created_by=None) -> tuple[ReportRun, bool]:
    """Queue a report with bootstrap for the current data; the same request again returns the same run."""
    if not options.n_resamples:
        raise ApplicationError("A bootstrap report needs at least one resample (e.g. 2000).")
    fingerprint = study_fingerprint(study=study)
    key = options.key(fingerprint)
    try:
        with transaction.atomic():
            run, created = ReportRun.objects.get_or_create(
                study=study, key=key,
                defaults={"options": options.as_dict(), "fingerprint": fingerprint, "created_by": created_by,
                          "progress_total": 4, "progress_note": "queued"})
    except IntegrityError:  # a concurrent identical request created it first
        run, created = ReportRun.objects.get(study=study, key=key), False
    retried = not created and ReportRun.objects.filter(
        pk=run.pk, status__in=[JobStatus.FAILED, JobStatus.CANCELLED]).update(
        status=JobStatus.PENDING, error="", progress_done=0, progress_note="queued again") == 1
    if created or retried:
        _enqueue(run.pk)
        run.refresh_from_db()
    return run, created or retried


def _enqueue(run_id: int) -> None:
    from reports.tasks import report_bootstrap

    transaction.on_commit(lambda: report_bootstrap.delay(report_run_id=run_id))


def report_run_execute(*, report_run_id: int) -> ReportRun | None:
    """Worker body: claim the run (compare-and-set), compute the report with bootstrap, store it (core runner:
    any failure is recorded; asking for the same report again retries it, see report_run_start)."""

    def body(run: ReportRun) -> None:
        run = ReportRun.objects.select_related("study", "study__dataset", "study__ground_truth_reader").get(pk=run.pk)
        options = options_from_dict(run.options)
        result = report_for_study(study=run.study, options=options,
                                  progress=lambda done, total, note: job_progress(run, done=done, total=total,
                                                                                  note=note))
        ReportRun.objects.filter(pk=run.pk).update(result=result, progress_done=4, progress_note="done")

    return job_run(ReportRun, report_run_id, body)


def report_run_current(run: ReportRun | None, *, fingerprint: str) -> bool:
    """True when a run succeeded on data identical to the given fingerprint (computed at execution)."""
    return bool(run and run.status == JobStatus.SUCCEEDED and run.result
                and run.result.get("fingerprint") == fingerprint)


def report_latest(*, study: Study, options: ReportOptions,
                  run: ReportRun | None = None) -> tuple[dict, ReportRun | None]:
    """The report to show or download: the given run's result, a current bootstrap result, else a fresh one."""
    fingerprint = study_fingerprint(study=study)
    if run is not None and run.status == JobStatus.SUCCEEDED and run.result:
        return run.result, run
    latest = report_run_find(study=study, options=options)
    if report_run_current(latest, fingerprint=fingerprint):
        return latest.result, latest
    plain = options.without_bootstrap()
    return report_build(report_inputs(study=study, options=plain), plain, fingerprint=fingerprint), None
