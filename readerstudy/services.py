"""Services of the study domain (coordinator side): design, lifecycle, readers and questions.

Every write is atomic and refuses, with a message for the coordinator, anything that would
invalidate answers already given: once any reader has answered, the cases, catalogues, answer
mode, k, rating range, questions and what readers are shown are locked (clone the study to
change them); name, instructions, revisions and the ground-truth reader stay editable.

Cases and catalogues are built by readerstudy.building, the wizard's all-at-once set-up is
readerstudy.wizard, the coordinator's reads are readerstudy.selectors; what readers see of a study
is annotations.selectors. Answers are read here only through the reverse relations of cases and
assignments (`answers`, `flags`): the studies layer imports nothing from reading.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone
from django.utils.text import slugify

from core.errors import ApplicationError, Conflict
from core.roles import READER, has_role
from readerstudy import builders
from readerstudy.models import (
    AnswerMode,
    Assignment,
    Candidate,
    Case,
    Study,
    StudyQuestion,
    StudyStatus,
    UntouchedRanking,
)
from retrieval.models import Dataset

MAX_CASES = 2000
MAX_CATALOGUE = 100
# Fields that change what readers answered or saw: frozen once the first answer exists.
LOCKED_ONCE_ANSWERED = ("mode", "k", "rating_min", "rating_max", "show_candidate_labels", "show_saliency")
ALWAYS_EDITABLE = ("name", "instructions", "allow_revisions", "untouched_ranking", "ground_truth_reader")


# --- Study design -------------------------------------------------------------------------------


def study_has_answers(*, study: Study) -> bool:
    """True once any reader has submitted an answer in the study."""
    return study.cases.filter(answers__isnull=False).exists()


def refuse_if_answered(study: Study, what: str) -> None:
    if study_has_answers(study=study):
        raise Conflict(
            f"Study {study.name!r} already has answers: {what} would invalidate them. "
            "Clone the study to change its design."
        )


def lock_study(study: Study) -> Study:
    """Re-read the study row under a row lock (serialises concurrent edits on PostgreSQL)."""
    return Study.objects.select_for_update().get(pk=study.pk)


def _clean_name(name: str, *, exclude_pk: int | None = None) -> str:
    name = (name or "").strip()
    if not name:
        raise ApplicationError("A study needs a name.")
    if len(name) > 200:
        raise ApplicationError("A study name has at most 200 characters.")
    if Study.objects.filter(name=name).exclude(pk=exclude_pk).exists():
        raise ApplicationError(f"A study named {name!r} already exists.")
    return name


def _clean_design(mode: str, k: int | None, rating_min: int, rating_max: int) -> int | None:
    if mode not in AnswerMode.values:
        raise ApplicationError(f"Unknown answer mode {mode!r}; use one of {', '.join(AnswerMode.values)}.")
    if mode == AnswerMode.CHOOSE_K:
        if k is None or k < 1:
            raise ApplicationError("Choose k needs k ≥ 1 (how many candidates each reader picks).")
        if k >= MAX_CATALOGUE:
            raise ApplicationError(f"k must be smaller than the catalogue (at most {MAX_CATALOGUE - 1}).")
    if not 0 <= rating_min < rating_max <= 100:
        raise ApplicationError("The rating range needs 0 ≤ minimum < maximum ≤ 100.")
    return k if mode == AnswerMode.CHOOSE_K else None


def _check_ground_truth_reader(user) -> None:
    if user is not None and not has_role(user, READER):
        raise ApplicationError(
            f"{user.get_username()} is not a reader: the ground-truth reader must have the reader role."
        )


def new_seed() -> int:
    """A fresh random study seed (kept small enough to read and type)."""
    return secrets.randbelow(2**31)


def study_create(
    *,
    name: str,
    dataset: Dataset,
    mode: str,
    k: int | None = None,
    instructions: str = "",
    rating_min: int = 1,
    rating_max: int = 5,
    allow_revisions: bool = False,
    untouched_ranking: str = UntouchedRanking.WARN,
    show_candidate_labels: bool = False,
    show_saliency: bool = False,
    seed: int | None = None,
    ground_truth_reader=None,
    created_by=None,
) -> Study:
    """Create a draft study (no cases yet: build them with `study_build_cases` or a case list)."""
    k = _clean_design(mode, k, rating_min, rating_max)
    _check_untouched_ranking(untouched_ranking)
    _check_ground_truth_reader(ground_truth_reader)
    seed = new_seed() if seed is None else clean_seed(seed)
    return Study.objects.create(
        name=_clean_name(name),
        dataset=dataset,
        mode=mode,
        k=k,
        instructions=instructions or "",
        rating_min=rating_min,
        rating_max=rating_max,
        allow_revisions=allow_revisions,
        untouched_ranking=untouched_ranking,
        show_candidate_labels=show_candidate_labels,
        show_saliency=show_saliency,
        seed=seed,
        ground_truth_reader=ground_truth_reader,
        created_by=created_by,
    )


def clean_seed(seed: int) -> int:
    try:
        return builders.check_seed(seed)
    except builders.BuildError as exc:
        raise ApplicationError(exc.message) from None


@transaction.atomic
def _check_untouched_ranking(value: str) -> None:
    if value not in UntouchedRanking.values:
        raise ApplicationError(f"untouched_ranking must be one of {', '.join(UntouchedRanking.values)}.")


def study_update(*, study: Study, **changes: Any) -> Study:
    """Change a study's design; fields readers depend on are refused once answers exist."""
    unknown = set(changes) - set(LOCKED_ONCE_ANSWERED) - set(ALWAYS_EDITABLE)
    if unknown:
        raise ApplicationError(f"These fields cannot be changed here: {', '.join(sorted(unknown))}.")
    study = lock_study(study)
    changed = {f: v for f, v in changes.items() if getattr(study, f) != v}
    locked = [f for f in LOCKED_ONCE_ANSWERED if f in changed]
    if locked:
        refuse_if_answered(study, "changing " + ", ".join(locked))
    merged = {f: changed.get(f, getattr(study, f)) for f in ("mode", "k", "rating_min", "rating_max")}
    if merged["mode"] != AnswerMode.CHOOSE_K:
        merged["k"] = None
    changed["k"] = _clean_design(**merged)
    check_catalogue_sizes(merged["mode"], changed["k"], catalogue_sizes(study))
    if "name" in changed:
        changed["name"] = _clean_name(changed["name"], exclude_pk=study.pk)
    if "untouched_ranking" in changed:
        _check_untouched_ranking(changed["untouched_ranking"])
    if changed.get("ground_truth_reader") is not None:
        _check_ground_truth_reader(changed["ground_truth_reader"])
        if not study.assignments.filter(reader=changed["ground_truth_reader"]).exists():
            raise ApplicationError("The ground-truth reader must be one of the study's readers: add them first.")
    for field, value in changed.items():
        setattr(study, field, value)
    study.save()
    return study


def study_open(*, study: Study) -> Study:
    """Open a draft (or re-open a closed) study to its readers; it needs cases and readers."""
    with transaction.atomic():
        study = lock_study(study)
        if study.status == StudyStatus.OPEN:
            raise Conflict(f"Study {study.name!r} is already open.")
        if not study.cases.exists():
            raise ApplicationError("The study has no cases yet: build them or upload a case list first.")
        if not study.assignments.exists():
            raise ApplicationError("The study has no readers yet: assign at least one reader first.")
        study.status, study.closed_at = StudyStatus.OPEN, None
        study.opened_at = study.opened_at or timezone.now()
        study.save(update_fields=["status", "opened_at", "closed_at"])
    return study


def study_close(*, study: Study) -> Study:
    """Close an open study: readers can no longer answer; results stay readable."""
    with transaction.atomic():
        study = lock_study(study)
        if study.status != StudyStatus.OPEN:
            raise Conflict(f"Only an open study can be closed; {study.name!r} is {study.get_status_display().lower()}.")
        study.status, study.closed_at = StudyStatus.CLOSED, timezone.now()
        study.save(update_fields=["status", "closed_at"])
    return study


@transaction.atomic
def study_clone(*, study: Study, name: str, created_by=None) -> Study:
    """A new draft with the same design, questions, cases and catalogues (provenance kept); no readers, no answers."""
    study = Study.objects.get(pk=study.pk)  # the stored design, not a caller's stale copy
    copy = study_create(
        name=name,
        dataset=study.dataset,
        mode=study.mode,
        k=study.k,
        instructions=study.instructions,
        rating_min=study.rating_min,
        rating_max=study.rating_max,
        allow_revisions=study.allow_revisions,
        untouched_ranking=study.untouched_ranking,
        show_candidate_labels=study.show_candidate_labels,
        show_saliency=study.show_saliency,
        seed=study.seed,
        created_by=created_by,
    )
    copy.builder, copy.builder_config = study.builder, {**study.builder_config, "cloned_from": study.pk}
    copy.save(update_fields=["builder", "builder_config"])
    StudyQuestion.objects.bulk_create(
        StudyQuestion(
            study=copy, key=q.key, text=q.text, choices=q.choices, applies_to=q.applies_to, position=q.position
        )
        for q in study.questions.all()
    )
    cases = list(study.cases.prefetch_related("candidates"))
    new_cases = Case.objects.bulk_create(Case(study=copy, position=c.position, query_id=c.query_id) for c in cases)
    Candidate.objects.bulk_create(
        Candidate(case=new, image_id=cand.image_id, position=cand.position, provenance=cand.provenance)
        for old, new in zip(cases, new_cases)
        for cand in old.candidates.all()
    )
    return copy


def catalogue_sizes(study: Study) -> list[int]:
    return list(study.cases.annotate(n=Count("candidates")).values_list("n", flat=True))


def check_catalogue_sizes(mode: str, k: int | None, sizes: Iterable[int]) -> None:
    sizes = list(sizes)
    if not sizes:
        return
    smallest = min(sizes)
    if mode == AnswerMode.CHOOSE_K and smallest <= (k or 0):
        raise ApplicationError(f"Choose {k} needs catalogues of more than {k} candidates; the smallest has {smallest}.")
    if mode == AnswerMode.RANK_ALL and smallest < 2:
        raise ApplicationError("Ranking needs catalogues of at least 2 candidates.")
    if smallest < 1:
        raise ApplicationError("Every case needs at least one candidate.")
    if max(sizes) > MAX_CATALOGUE:
        raise ApplicationError(f"A catalogue has at most {MAX_CATALOGUE} candidates (the largest has {max(sizes)}).")


# --- Readers and questions ----------------------------------------------------------------------


def assignment_seed(*, study_seed: int, reader_id: int) -> int:
    """A reader's seed derived from the study seed and the reader id (reproducible, 63 bits)."""
    digest = hashlib.sha256(f"cbir-assignment:{study_seed}:{reader_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def assignment_add(*, study: Study, reader, seed: int | None = None) -> Assignment:
    """Assign a reader (a user with the reader role) to a study; the seed drives their order."""
    if not has_role(reader, READER):
        raise ApplicationError(f"{reader.get_username()} does not have the reader role.")
    with transaction.atomic():
        study = lock_study(study)
        if study.assignments.filter(reader=reader).exists():
            raise Conflict(f"{reader.get_username()} is already a reader of {study.name!r}.")
        seed = assignment_seed(study_seed=study.seed, reader_id=reader.pk) if seed is None else clean_seed(seed)
        return Assignment.objects.create(study=study, reader=reader, seed=seed)


def assignment_remove(*, study: Study, reader) -> None:
    """Remove a reader who has not answered yet (their drafts and flags go with them)."""
    with transaction.atomic():
        study = lock_study(study)
        assignment = study.assignments.filter(reader=reader).first()
        if assignment is None:
            raise ApplicationError(f"{reader.get_username()} is not a reader of {study.name!r}.")
        if assignment.answers.exists():
            raise Conflict(
                f"{reader.get_username()} has already answered in {study.name!r}; "
                "a reader with answers cannot be removed."
            )
        assignment.delete()
        if study.ground_truth_reader_id == reader.pk:
            study.ground_truth_reader = None
            study.save(update_fields=["ground_truth_reader"])


def _question_key(study: Study, text: str, key: str) -> str:
    key = slugify(key or text)[:40] or "question"
    taken = set(study.questions.values_list("key", flat=True))
    if key not in taken:
        return key
    return next(f"{key}-{n}" for n in range(2, 10_000) if f"{key}-{n}" not in taken)


def _clean_choices(choices: Sequence[str]) -> list[str]:
    cleaned = [str(c).strip() for c in choices if str(c).strip()]
    if not 2 <= len(cleaned) <= 12:
        raise ApplicationError("A question needs between 2 and 12 answer choices.")
    if len(set(c.lower() for c in cleaned)) != len(cleaned):
        raise ApplicationError("A question lists the same choice twice.")
    if any(len(c) > 100 for c in cleaned):
        raise ApplicationError("An answer choice has at most 100 characters.")
    return cleaned


def question_add(
    *, study: Study, text: str, choices: Sequence[str], applies_to: str = StudyQuestion.AppliesTo.ALL, key: str = ""
) -> StudyQuestion:
    """Add a per-image question (e.g. "pleural effusion?" yes/no/unsure); refused once answers exist."""
    text = (text or "").strip()
    if not text or len(text) > 300:
        raise ApplicationError("A question needs a text of at most 300 characters.")
    if applies_to not in StudyQuestion.AppliesTo.values:
        raise ApplicationError(f"applies_to must be one of {', '.join(StudyQuestion.AppliesTo.values)}.")
    choices = _clean_choices(choices)
    with transaction.atomic():
        study = lock_study(study)
        refuse_if_answered(study, "adding a question")
        position = (study.questions.aggregate(m=Max("position"))["m"] or 0) + 1
        return StudyQuestion.objects.create(
            study=study,
            key=_question_key(study, text, key),
            text=text,
            choices=choices,
            applies_to=applies_to,
            position=position,
        )


def question_remove(*, study: Study, question: StudyQuestion) -> None:
    """Remove a question; refused once answers exist."""
    with transaction.atomic():
        study = lock_study(study)
        refuse_if_answered(study, "removing a question")
        if question.study_id != study.pk:
            raise ApplicationError("This question belongs to another study.")
        question.delete()
