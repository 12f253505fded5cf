"""Agreement reports of reader studies (papers 000, 001, 003): arrays from the database, one dict out.

Data flow
---------
``reports.analysis.report_inputs(study=..., options=...)`` loads the study's answers into a
(cases × candidates × readers) array (reports.inputs) and ranks every catalogue under every
available method (reports.methods); ``report_build(inputs, options)`` calls the study's answer-mode
module (reports.choose_k, reports.ranking or reports.rating, which call ``reports.stats``) and
assembles ONE JSON-ready dict, the one that the page, the API, the downloads and
``manage.py agreement_report`` all serve. reports.jobs computes the same dict with bootstrap
confidence intervals and p-values on the worker and stores it in a ``ReportRun``.

Rules the report states in its own output
-----------------------------------------
* Statistics use the cases answered by **every** reader (``data.note`` says how many); readers
  without a single answer are left out and named; readers with missing answers are flagged.
* Cases whose catalogue size differs from the study's most common size are left out (named).
* A *method* ranks a catalogue by distance (lower = closer): every finished model run of the
  dataset (or the runs asked for), and every method named in the candidates' provenance with a
  distance for every candidate of a case. A method that cannot rank some cases is reported with
  the reason, and its statistics use the cases it can rank.
* Confidence intervals are BCa bootstraps (expanded level) over cases (queries), optionally over readers
  too; the number of resamples, the seed and what was resampled are in the report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from readerstudy.models import AnswerMode, Study, StudyStatus
from reports import choose_k, ranking, rating
from reports import stats as S
from reports.analysis import Analysis, ReportInputs, analysed_cases, analysis_for, ground_truth, quiet, report_inputs
from reports.inputs import study_fingerprint
from reports.options import ReportOptions
from reports.subgroups import subgroups

SCHEMA = "cbir-agreement-report/1"
# The answer-mode modules: each has NAME, section, tests, headline and reader_statistics.
MODES = {AnswerMode.CHOOSE_K: choose_k, AnswerMode.RANK_ALL: ranking, AnswerMode.RATE: rating}


def _study_info(study: Study) -> dict:
    return {
        "id": study.pk,
        "name": study.name,
        "mode": study.mode,
        "k": study.k,
        "rating_scale": [study.rating_min, study.rating_max],
        "status": study.status,
        "dataset": {"id": study.dataset_id, "name": study.dataset.name},
        "builder": study.builder,
        "seed": study.seed,
        "ground_truth_reader": study.ground_truth_reader.username if study.ground_truth_reader_id else None,
    }


def _data_block(inputs: ReportInputs, use: np.ndarray) -> dict:
    """How many cases and readers the statistics use, and why the others are left out."""
    a = inputs.arrays
    n_use, n_readers = int(use.sum()), len(a.readers)
    note = (
        f"Statistics use the {n_use} of {a.n_cases_total} cases answered by all {n_readers} readers."
        if n_readers
        else "No reader has answered yet."
    )
    if a.excluded_case_ids:
        note += (
            f" {len(a.excluded_case_ids)} cases with a catalogue size other than "
            f"{a.candidate_ids.shape[1]} are left out."
        )
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
    gt, _ = ground_truth(a)
    answered = a.answered
    n_loaded = len(a.case_ids)
    return [
        {
            "id": r.user_id,
            "name": r.name,
            "n_answered": r.n_answered,
            "n_answered_complete": int(answered[:, i].sum()),
            "complete": bool(answered[:, i].all()) and n_loaded > 0,
            "is_ground_truth": a.study.mode == AnswerMode.RANK_ALL and i == gt,
            "median_active_s": r.median_active_s,
            "n_flags": r.n_flags,
        }
        for i, r in enumerate(a.readers)
    ]


def _uncertainty_block(o: ReportOptions) -> dict | None:
    if not o.n_resamples:
        return None
    return {
        "n_resamples": o.n_resamples,
        "seed": o.seed,
        "level": o.level,
        "method": (
            "BCa bootstrap (bias-corrected and accelerated, Efron 1987; acceleration from the leave-one-case-out "
            "jackknife) at Hesterberg's small-sample expanded level: z replaced by sqrt(n/(n-1)) t(n-1), n = cases"
        ),
        "unit": "cases (queries)" + (" and readers" if o.readers_too else ""),
        "readers_random": (
            "readers too: Fleiss κ draws readers with the cases (two-way bootstrap); means over 3 or more "
            "readers and ICC(A,1) with 3 or more readers: jackknife over cases and over readers (for a mean: the "
            "Obuchowski–Rockette single-method interval with MS(R) ≥ Var − Cov2, t on Satterthwaite df; for the "
            "ICC on the Fisher z scale, the readers' jackknife variance + the case variance not already in it, t on "
            "R − 1 df); with 2 readers readers too is declined: the interval is the case interval (readers fixed), "
            "marked readers_note"
            if o.readers_too
            else None
        ),
        "p_values": "sign-flip permutation and paired t-test; nDCG vs random: permutation of catalogue orders",
        "n_permutations": o.n_resamples,
        "permutation_p_values": (
            f"Sign-flip tests on up to {S.EXACT_MAX_CASES} cases enumerate all 2^n sign patterns (exact p). "
            f"Otherwise p-values are simulated, (1 + #as extreme)/(1 + {o.n_resamples}), so never below "
            f"1/{o.n_resamples + 1} = {1 / (o.n_resamples + 1):.2g}; each comes with its Monte Carlo standard error "
            "sqrt(p(1 − p)/B) (mc_se)."
        ),
        "failed_resamples": (
            "a resample whose statistic is undefined (e.g. one distinct reader drawn: no pair of readers) is "
            "dropped; every interval's n_failed counts them and the interval uses the rest"
        ),
    }


Progress = Callable[[int, int, str], None]


def report_build(
    inputs: ReportInputs, options: ReportOptions, *, progress: Progress | None = None, fingerprint: str = ""
) -> dict:
    """The whole report as a JSON-ready dict (see docs/reports.md for every key).

    BLAS runs single-threaded here: the matrices are small, web and worker processes compute
    several reports side by side, and threaded OpenBLAS spinning on busy cores made the same
    report up to 6× slower (benchmarks/bench_report.py).
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _report_build(inputs, options, progress=progress, fingerprint=fingerprint)


def _report_build(inputs: ReportInputs, options: ReportOptions, *, progress: Progress | None, fingerprint: str) -> dict:
    """report_build's body."""
    tick = progress or (lambda done, total, note: None)
    study = inputs.arrays.study
    use = analysed_cases(inputs.arrays)
    an = analysis_for(inputs, use)
    report = _report_header(inputs, options, use, an, fingerprint)
    if an.n_cases == 0:
        return jsonable(report)
    tick(1, 4, "statistics" + (" and bootstrap intervals" if options.n_resamples else ""))
    gt_note = {"gt_source": ground_truth(inputs.arrays)[1]} if study.mode == AnswerMode.RANK_ALL else {}
    mode = MODES[study.mode]
    section = quiet(mode.section, an, options, **gt_note)
    report[mode.NAME] = section
    if options.n_resamples:
        tick(2, 4, "p-values")
        report["tests"] = quiet(mode.tests, an, section, options)
    tick(3, 4, "subgroups")
    report["subgroups"] = subgroups(inputs, use, an, section, options, mode)
    return jsonable(report)


def _report_header(
    inputs: ReportInputs, options: ReportOptions, use: np.ndarray, an: Analysis, fingerprint: str
) -> dict:
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
        "section": MODES[study.mode].NAME,
    }
    for mode in MODES.values():
        report[mode.NAME] = None
    report["tests"] = report["subgroups"] = None
    return report


def report_for_study(*, study: Study, options: ReportOptions, progress: Progress | None = None) -> dict:
    """Load and build in one call (command line, downloads, API)."""
    fingerprint = study_fingerprint(study=study)
    return report_build(
        report_inputs(study=study, options=options), options, progress=progress, fingerprint=fingerprint
    )


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
