"""What a report reads from the database: a study's answers as arrays, its query classes, its fingerprint.

``study_arrays(study=...)`` loads the study's answers into a (cases × candidates × readers) array
in canonical case and catalogue order (one query per table). Rules stated in the report's own
output (`data.note`): readers without a single answer are left out and named; cases whose
catalogue size differs from the study's most common size are left out and named.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
from django.db.models import Count, Max, Sum

from annotations.models import Answer, AnswerItem, CaseFlag
from core.jobs import JobStatus
from readerstudy.models import AnswerMode, Assignment, Candidate, Case, Study
from retrieval.models import Label, ModelRun

VALUE_FIELD = {AnswerMode.CHOOSE_K: "selected", AnswerMode.RANK_ALL: "rank", AnswerMode.RATE: "rating"}


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
    cases = list(
        Case.objects.filter(study=study).order_by("position").values("id", "position", "query_id", "query__modality")
    )
    candidates: dict[int, list[tuple]] = {c["id"]: [] for c in cases}
    rows = (
        Candidate.objects.filter(case__study=study)
        .order_by("case_id", "position")
        .values_list("case_id", "id", "image_id", "provenance")
    )
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
    readers = [
        ReaderInfo(a["reader_id"], a["id"], a["reader__username"])
        for a in Assignment.objects.filter(study=study)
        .order_by("reader__username")
        .values("id", "reader_id", "reader__username")
    ]
    times: dict[int, list[int]] = {}
    for assignment_id, active_ms in Answer.objects.filter(assignment__study=study).values_list(
        "assignment_id", "active_ms"
    ):
        times.setdefault(assignment_id, []).append(active_ms)
    flags = dict(
        CaseFlag.objects.filter(assignment__study=study)
        .values_list("assignment_id")
        .annotate(n=Count("id"))
        .values_list("assignment_id", "n")
    )
    for r in readers:
        ms = times.get(r.assignment_id, [])
        r.n_answered, r.n_flags = len(ms), flags.get(r.assignment_id, 0)
        r.median_active_s = float(np.median(ms)) / 1000.0 if ms else None
    return readers


def lookup(sorted_ids: np.ndarray, order: np.ndarray, wanted: np.ndarray) -> np.ndarray:
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
    rows = list(
        AnswerItem.objects.filter(answer__assignment__study=study).values_list(
            "answer__assignment_id", "candidate_id", field_name
        )
    )
    if not rows or not readers:
        return values
    arr = np.array(rows, dtype=float)
    flat = candidate_ids.ravel()
    order = np.argsort(flat, kind="stable")
    item = lookup(flat[order], order, arr[:, 1].astype(np.int64))
    assignments = np.array([r.assignment_id for r in readers])
    a_order = np.argsort(assignments)
    reader = lookup(assignments[a_order], a_order, arr[:, 0].astype(np.int64))
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
        "image_id", "value_num", "value_text"
    )
    found = {i: _label_text(num, text) for i, num, text in rows}
    return [found.get(int(q), "(missing)") for q in arrays.query_ids]


def _label_text(num: float | None, text: str) -> str:
    if num is None:
        return text or "(missing)"
    return str(int(num)) if float(num).is_integer() else f"{num:g}"


def query_label_names(*, study: Study) -> list[str]:
    """Names of the labels carried by the study's query images (for the subgroup selector)."""
    return list(
        Label.objects.filter(image_id__in=Case.objects.filter(study=study).values("query_id"))
        .order_by("name")
        .values_list("name", flat=True)
        .distinct()
    )


def study_fingerprint(*, study: Study) -> str:
    """Hash of everything a report depends on: answers, revisions, cases, readers, runs, status."""
    answers = Answer.objects.filter(assignment__study=study).aggregate(
        n=Count("id"), last=Max("submitted_at"), revisions=Sum("revision"), ids=Sum("id")
    )
    parts = [
        study.status,
        study.mode,
        study.k,
        study.rating_min,
        study.rating_max,
        study.ground_truth_reader_id,
        answers["n"],
        str(answers["last"]),
        answers["revisions"],
        answers["ids"],
        list(Assignment.objects.filter(study=study).order_by("id").values_list("id", flat=True)),
        Candidate.objects.filter(case__study=study).aggregate(n=Count("id"), ids=Sum("id")),
        list(
            ModelRun.objects.filter(dataset_id=study.dataset_id, status=JobStatus.SUCCEEDED)
            .order_by("id")
            .values_list("id", "finished_at")
        ),
    ]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()
