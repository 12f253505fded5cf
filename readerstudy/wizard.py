"""The study wizard's set-up: design, cases, readers and questions in one transaction, or a dry run
that says what would be made (the review step)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import transaction

from core.errors import ApplicationError
from readerstudy.building import CASE_LIST, study_build_cases, study_load_case_list, study_recurrence
from readerstudy.models import Study
from readerstudy.services import assignment_add, catalogue_sizes, question_add, study_create


@transaction.atomic
def study_setup(
    *,
    design: dict,
    builder: str,
    config: dict,
    seed: int,
    readers: Sequence = (),
    questions: Sequence[dict] = (),
    case_list: bytes | None = None,
    case_list_name: str = "",
    created_by=None,
    dry_run: bool = False,
) -> Study | dict:
    """Create a study with its questions, cases and readers in one transaction (all or nothing).

    With dry_run the same work is done and rolled back, and a summary is returned for review.
    """
    gt = design.get("ground_truth_reader")
    study = study_create(**design, seed=seed, created_by=created_by)
    for q in questions:
        question_add(study=study, **q)
    if builder == CASE_LIST:
        if not case_list:
            raise ApplicationError("Choose the case-list CSV file to upload.")
        study_load_case_list(study=study, data=case_list, seed=seed, file_name=case_list_name)
    else:
        study_build_cases(study=study, builder=builder, config=config, seed=seed)
    for reader in _unique_users([*readers, *([gt] if gt else [])]):
        assignment_add(study=study, reader=reader)
    if not dry_run:
        return study
    summary = _summary(study)
    transaction.set_rollback(True)
    return summary


def _unique_users(users: Iterable) -> list:
    seen, out = set(), []
    for u in users:
        if u.pk not in seen:
            seen.add(u.pk)
            out.append(u)
    return out


def _summary(study: Study) -> dict:
    study = Study.objects.get(pk=study.pk)
    sizes = catalogue_sizes(study)
    first = study.cases.select_related("query").prefetch_related("candidates").first()
    return {
        "n_cases": len(sizes),
        "catalogue_min": min(sizes),
        "catalogue_max": max(sizes),
        "n_candidates": sum(sizes),
        "readers": list(study.assignments.values_list("reader__username", flat=True)),
        "questions": list(study.questions.values_list("text", flat=True)),
        "builder_config": study.builder_config,
        "recurrence": study_recurrence(study=study),
        "example_query": first.query_id,
        "example_candidates": [(c.image_id, c.provenance) for c in first.candidates.all()],
    }
