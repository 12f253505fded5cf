"""Selectors (reads) of the study domain used by the coordinator pages and by reading.

The model runs a study was built from, and the one run whose saliency overlays its readers see
(`study_saliency_run`). What readers see of a study (the blinded view) is annotations.selectors.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Prefetch, QuerySet

from core.jobs import JobStatus
from core.roles import READER
from readerstudy.models import Assignment, Candidate, Case, Study, StudyStatus
from retrieval.models import Label, ModelRun
from retrieval.runs import artefacts
from retrieval.runs.methods import METHODS
from retrieval.runs.ranking import SALIENCY_DIR


def study_run_ids(*, study: Study) -> list[int]:
    """The model runs a study's cases were built from, in the order its builder configuration names them.

    `run` (knn_farthest, top_n) first, then `runs` (pooled) in the order the coordinator listed
    them; a clone keeps its original's configuration. Case lists and random catalogues name none.
    """
    cfg = study.builder_config or {}
    ids = ([cfg["run"]] if isinstance(cfg.get("run"), int) else []) + [
        r for r in cfg.get("runs") or [] if isinstance(r, int)
    ]
    return list(dict.fromkeys(ids))


def run_has_saliency(run) -> bool:
    """A finished classifier run (a trained method with `saliency` configured) that wrote overlays."""
    method = METHODS.get(run.method)
    if run.status != JobStatus.SUCCEEDED or method is None or not method.trains or not run.config.get("saliency"):
        return False
    return artefacts.any_file(run, SALIENCY_DIR, ".png")


def study_saliency_run(*, study: Study):
    """The one model run whose saliency overlays readers of this study see, or None.

    The first of `study_run_ids` that `run_has_saliency`. One run for the whole study (never the
    run that proposed a candidate): whether an image has an overlay then depends only on that
    run's split (overlays exist for its test images), so it cannot tell a reader which method
    proposed a candidate, and every overlay means the same classifier.
    """
    ids = study_run_ids(study=study)
    runs = ModelRun.objects.filter(pk__in=ids, dataset_id=study.dataset_id).in_bulk()
    return next((runs[i] for i in ids if i in runs and run_has_saliency(runs[i])), None)


# --- Reads for the coordinator pages and API ----------------------------------------------------


def study_list() -> QuerySet[Study]:
    """Studies with their case and reader counts, newest first."""
    return (
        Study.objects.select_related("dataset")
        .annotate(n_cases=Count("cases", distinct=True), n_readers=Count("assignments", distinct=True))
        .order_by("-created_at")
    )


def eligible_readers() -> QuerySet:
    """Active users with the reader role (the choices when assigning readers)."""
    return get_user_model().objects.filter(groups__name=READER, is_active=True).distinct().order_by("username")


def study_progress(*, study: Study) -> list[dict]:
    """Per reader: answered/total cases, median active time per case, flags, last answer."""
    total = study.cases.count()
    times: dict[int, list[int]] = defaultdict(list)
    last: dict[int, Any] = {}
    for assignment_id, ms, at in study.assignments.values_list("pk", "answers__active_ms", "answers__submitted_at"):
        if at is None:  # a reader without answers (the outer join's empty row)
            continue
        times[assignment_id].append(ms)
        last[assignment_id] = max(at, last.get(assignment_id, at))
    flags = dict(study.assignments.annotate(n=Count("flags")).values_list("pk", "n"))
    rows = []
    for a in study.assignments.select_related("reader").order_by("reader__username"):
        done = len(times[a.pk])
        median = statistics.median(times[a.pk]) / 1000 if times[a.pk] else None
        rows.append(
            {
                "assignment_id": a.pk,
                "reader_id": a.reader_id,
                "reader": a.reader.get_username(),
                "seed": a.seed,
                "done": done,
                "total": total,
                "percent": round(100 * done / total) if total else 0,
                "median_seconds": median,
                "flags": flags.get(a.pk, 0),
                "last_answer_at": last.get(a.pk),
                "is_ground_truth": a.reader_id == study.ground_truth_reader_id,
            }
        )
    return rows


def study_flags(*, study: Study, case: Case | None = None) -> list[dict]:
    """Readers' flags on the study's cases (case order, then reader): who flagged which case, with the comment.

    Through the reverse relations of cases, so that the studies layer needs nothing from reading.
    """
    qs = Case.objects.filter(study=study, flags__isnull=False)
    if case is not None:
        qs = qs.filter(pk=case.pk)
    rows = qs.order_by("position", "flags__assignment__reader__username").values(
        "pk", "position", "flags__comment", "flags__assignment__reader__username", "flags__updated_at"
    )
    return [
        {
            "case_id": r["pk"],
            "case_number": r["position"] + 1,
            "reader": r["flags__assignment__reader__username"],
            "comment": r["flags__comment"],
            "updated_at": r["flags__updated_at"],
        }
        for r in rows
    ]


def study_cases(*, study: Study) -> QuerySet[Case]:
    """The cases in canonical order with query and candidates (with provenance) prefetched."""
    return (
        study.cases.select_related("query")
        .prefetch_related(
            Prefetch("candidates", queryset=Candidate.objects.select_related("image").order_by("position"))
        )
        .order_by("position")
    )


def dataset_label_names(*, dataset_ids: Iterable[int] | None = None) -> dict[int, list[str]]:
    """dataset id → its label names (the class choices of the wizard)."""
    qs = Label.objects.values_list("image__dataset_id", "name").distinct().order_by("image__dataset_id", "name")
    if dataset_ids is not None:
        qs = qs.filter(image__dataset_id__in=list(dataset_ids))
    names: dict[int, list[str]] = defaultdict(list)
    for ds, name in qs:
        names[ds].append(name)
    return dict(names)


# --- blinding of readers who hold a second role -------------------------------------------------

BLINDED_MESSAGE = (
    "You are one of this study's readers: its cases with their provenance, the readers' progress and answers, "
    "its report and its management stay closed to you until the study is closed (or you are removed from its "
    "readers by another coordinator)."
)


def study_reader_blinded(*, user, study: Study) -> bool:
    """True when `user` (a coordinator, researcher or superuser too) is assigned to read this study, not closed."""
    return (
        study.status != StudyStatus.CLOSED
        and getattr(user, "is_authenticated", False)
        and Assignment.objects.filter(study_id=study.pk, reader_id=user.pk).exists()
    )


def studies_blinded_for(*, user) -> QuerySet[Study]:
    """The studies `user` reads and that are not closed: every study-level view of them is closed to the user."""
    if not getattr(user, "is_authenticated", False):
        return Study.objects.none()
    return Study.objects.filter(assignments__reader_id=user.pk).exclude(status=StudyStatus.CLOSED).distinct()


def study_blinding_check(*, user, study: Study) -> None:
    """Refuse (403) a study-level read that carries provenance, progress or answers to one of its readers."""
    if study_reader_blinded(user=user, study=study):
        raise PermissionDenied(BLINDED_MESSAGE)
