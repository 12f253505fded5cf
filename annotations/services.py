"""Services (writes) of reading: case visits and timing, drafts, answers with revisions, flags.

Payloads here name candidates by their database id (the reading API translates the reader's
opaque candidate keys first). One answer payload, whatever the mode:

    {"selected": [candidate_id, ...],          # choose k: exactly k distinct candidates
     "ranking": [candidate_id, ...],           # rank all: every candidate once, most similar first
     "ratings": {candidate_id: int, ...},      # rate: every candidate, rating_min..rating_max
     "image_answers": [{"question": key, "candidate": candidate_id or None (the query), "value": str}]}

Every write checks that the study is open and that the case belongs to the assignment's study.
`answer_submit` locks the assignment row (SELECT … FOR UPDATE), so a reader's concurrent
submissions serialise; readers never block each other.
"""

from __future__ import annotations

import re
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from annotations.models import Answer, AnswerItem, AnswerRevision, CaseFlag, CaseVisit, ImageAnswer
from annotations.selectors import answer_as_payload
from core.errors import ApplicationError, Conflict
from readerstudy.models import AnswerMode, Assignment, Case, Study, StudyQuestion, StudyStatus, UntouchedRanking

MAX_BEAT_MS = 60_000  # one heartbeat never adds more than this
MAX_COMMENT_CHARS = 2_000
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
UNTOUCHED_RANKING_MESSAGE = (
    "The ranking is still the order the candidates were shown in: order them from most to least similar "
    "before submitting (this study refuses untouched rankings)."
)


# --- guards -------------------------------------------------------------------------------------


def _check_open(*, assignment: Assignment, case: Case) -> Study:
    """The study (read fresh) must be open and own the case."""
    if case.study_id != assignment.study_id:
        raise ApplicationError("This case is not part of your study.", status_code=404)
    study = Study.objects.get(pk=assignment.study_id)
    if study.status != StudyStatus.OPEN:
        raise Conflict("This study is closed." if study.status == StudyStatus.CLOSED else "This study is not open.")
    return study


def _visit_for_update(*, assignment: Assignment, case: Case) -> CaseVisit:
    """The reader's visit row for the case, locked; created (opened now) when missing."""
    now = timezone.now()
    visit, _ = CaseVisit.objects.select_for_update().get_or_create(
        assignment=assignment, case=case, defaults={"opened_at": now, "last_seen_at": now}
    )
    return visit


# --- visits, timing and drafts ------------------------------------------------------------------


def case_open(*, assignment: Assignment, case: Case) -> CaseVisit:
    """Record that the reader opened the case (opened_at only on the first open)."""
    _check_open(assignment=assignment, case=case)
    with transaction.atomic():
        visit = _visit_for_update(assignment=assignment, case=case)
        visit.last_seen_at = timezone.now()
        visit.save(update_fields=["last_seen_at"])
    return visit


def _bounded_delta(*, visit: CaseVisit, active_ms_delta: int) -> int:
    """A beat adds at most MAX_BEAT_MS and never more than the wall time since the last one."""
    elapsed_ms = max(0, int((timezone.now() - visit.last_seen_at) / timedelta(milliseconds=1)))
    return max(0, min(int(active_ms_delta), MAX_BEAT_MS, elapsed_ms))


def _beat(*, visit: CaseVisit, active_ms_delta: int) -> CaseVisit:
    """Add a bounded active-time delta to a locked visit row."""
    visit.active_ms += _bounded_delta(visit=visit, active_ms_delta=active_ms_delta)
    visit.last_seen_at = timezone.now()
    visit.save(update_fields=["active_ms", "last_seen_at"])
    return visit


def visit_heartbeat(*, assignment: Assignment, case: Case, active_ms_delta: int) -> CaseVisit:
    """Add the reader's active time on the case since the last beat (bounded: cannot be inflated)."""
    _check_open(assignment=assignment, case=case)
    if not isinstance(active_ms_delta, int) or active_ms_delta < 0:
        raise ApplicationError("active_ms_delta must be a non-negative integer.")
    with transaction.atomic():
        return _beat(visit=_visit_for_update(assignment=assignment, case=case), active_ms_delta=active_ms_delta)


def draft_save(*, assignment: Assignment, case: Case, draft: dict) -> CaseVisit:
    """Store the reader's unfinished answer (any subset of a valid answer, checked for shape)."""
    study = _check_open(assignment=assignment, case=case)
    if not study.allow_revisions and Answer.objects.filter(assignment=assignment, case=case).exists():
        raise Conflict("You have already answered this case; this study does not allow changes.")
    clean = _draft_clean(study=study, case=case, draft=draft)
    with transaction.atomic():
        visit = _visit_for_update(assignment=assignment, case=case)
        visit.draft = clean
        visit.last_seen_at = max(visit.last_seen_at, timezone.now())
        visit.save(update_fields=["draft", "last_seen_at"])
    return visit


def _draft_clean(*, study: Study, case: Case, draft: dict) -> dict:
    """Validate a draft's shape: known keys, candidates of this case, values in range."""
    if not isinstance(draft, dict):
        raise ApplicationError("A draft must be an object.")
    unknown = set(draft) - {"selected", "ranking", "ratings", "image_answers"}
    if unknown:
        raise ApplicationError(f"Unknown draft field(s): {', '.join(sorted(unknown))}.")
    ids = _candidate_ids(case)
    clean: dict = {}
    for field in ("selected", "ranking"):
        if field in draft:
            clean[field] = _distinct_candidates(draft[field], ids, field)
    if study.mode == AnswerMode.CHOOSE_K and len(clean.get("selected", [])) > study.k:
        raise ApplicationError(f"Choose at most {study.k} candidates.")
    if "ratings" in draft:
        clean["ratings"] = {str(c): r for c, r in _ratings(draft["ratings"], ids, study, complete=False).items()}
    if "image_answers" in draft:
        clean["image_answers"] = [
            {"question": q.key, "candidate": cid, "value": v}
            for q, cid, _img, v in _image_answers(draft["image_answers"], study, case, complete=False)
        ]
    return clean


# --- answers ------------------------------------------------------------------------------------


def answer_submit(
    *, assignment: Assignment, case: Case, payload: dict, client_token: str, active_ms_delta: int = 0
) -> Answer:
    """Store the reader's final answer to a case (idempotent on client_token; revisions if allowed).

    The returned answer carries `replayed = True` when the token had already been stored.
    """
    if not isinstance(client_token, str) or not TOKEN_RE.match(client_token):
        raise ApplicationError("client_token must be 8–64 letters, digits, '-' or '_'.")
    if not isinstance(payload, dict):
        raise ApplicationError("An answer must be an object.")
    try:
        with transaction.atomic():
            return _answer_submit_locked(
                assignment=assignment,
                case=case,
                payload=payload,
                client_token=client_token,
                active_ms_delta=active_ms_delta,
            )
    except IntegrityError:
        # Only reachable without row locks (SQLite): a concurrent first submission won the race.
        replay = _replay(assignment=assignment, case=case, client_token=client_token)
        if replay is not None:
            return replay
        raise Conflict("This case was answered at the same time in another window.") from None


def _answer_submit_locked(
    *, assignment: Assignment, case: Case, payload: dict, client_token: str, active_ms_delta: int
) -> Answer:
    Assignment.objects.select_for_update().filter(pk=assignment.pk).first()  # serialise this reader
    study = _check_open(assignment=assignment, case=case)
    existing = Answer.objects.filter(assignment=assignment, case=case).first()
    if existing is not None and _seen_token(existing, client_token):
        existing.replayed = True
        return existing
    images = dict(case.candidates.values_list("pk", "image_id"))  # candidate id → image id
    ids = sorted(images)
    items = _items(study=study, ids=ids, payload=payload)
    image_answers = _image_answers(payload.get("image_answers", []), study, case, complete=True, images=images)
    shown_order = assignment.candidate_order(case.pk, ids)
    if study.mode == AnswerMode.RANK_ALL and study.untouched_ranking == UntouchedRanking.REFUSE:
        if sorted(items, key=lambda cid: items[cid]["rank"]) == shown_order:
            raise ApplicationError(UNTOUCHED_RANKING_MESSAGE)
    shown = {cid: i + 1 for i, cid in enumerate(shown_order)}
    visit = _beat(
        visit=_visit_for_update(assignment=assignment, case=case), active_ms_delta=max(0, int(active_ms_delta or 0))
    )
    answer = _answer_row(
        existing=existing, assignment=assignment, case=case, study=study, client_token=client_token, visit=visit
    )
    AnswerItem.objects.bulk_create(
        [
            AnswerItem(answer=answer, candidate_id=cid, shown_position=shown[cid], **fields)
            for cid, fields in items.items()
        ]
    )
    ImageAnswer.objects.bulk_create(
        [ImageAnswer(answer=answer, question=q, image_id=img, value=v) for q, _cid, img, v in image_answers]
    )
    visit.draft = {}
    visit.save(update_fields=["draft"])
    answer.replayed = False
    return answer


def _seen_token(answer: Answer, client_token: str) -> bool:
    """True when this token made the answer or one of its earlier revisions."""
    return answer.client_token == client_token or any(
        r.get("client_token") == client_token for r in answer.revisions.values_list("payload", flat=True)
    )


def _replay(*, assignment: Assignment, case: Case, client_token: str) -> Answer | None:
    """The stored answer when this token was already submitted (now or in an earlier revision)."""
    answer = Answer.objects.filter(assignment=assignment, case=case).first()
    if answer is None or not _seen_token(answer, client_token):
        return None
    answer.replayed = True
    return answer


def _answer_row(
    *, existing: Answer | None, assignment: Assignment, case: Case, study: Study, client_token: str, visit: CaseVisit
) -> Answer:
    """Create the answer, or (revisions allowed) archive the old one and reset it for the new items."""
    now = timezone.now()
    if existing is None:
        return Answer.objects.create(
            assignment=assignment, case=case, client_token=client_token, submitted_at=now, active_ms=visit.active_ms
        )
    if not study.allow_revisions:
        raise Conflict("You have already answered this case; this study does not allow changes.")
    answer = existing
    AnswerRevision.objects.create(
        answer=answer,
        revision=answer.revision,
        payload=answer_as_payload(answer),
        submitted_at=answer.submitted_at,
        replaced_at=now,
    )
    answer.items.all().delete()
    answer.image_answers.all().delete()
    answer.revision += 1
    answer.client_token, answer.submitted_at, answer.active_ms = client_token, now, visit.active_ms
    answer.save(update_fields=["revision", "client_token", "submitted_at", "active_ms"])
    return answer


def _items(*, study: Study, ids: list[int], payload: dict) -> dict[int, dict]:
    """Per candidate id, the AnswerItem fields of a complete answer in the study's mode."""
    if study.mode == AnswerMode.CHOOSE_K:
        chosen = _distinct_candidates(payload.get("selected"), ids, "selected")
        if len(chosen) != study.k:
            raise ApplicationError(f"Choose exactly {study.k} candidates (you chose {len(chosen)}).")
        return {cid: {"selected": cid in chosen} for cid in ids}
    if study.mode == AnswerMode.RANK_ALL:
        ranking = _distinct_candidates(payload.get("ranking"), ids, "ranking")
        if len(ranking) != len(ids):
            raise ApplicationError(f"Rank all {len(ids)} candidates (the ranking has {len(ranking)}).")
        return {cid: {"rank": i + 1} for i, cid in enumerate(ranking)}
    ratings = _ratings(payload.get("ratings"), ids, study, complete=True)
    return {cid: {"rating": ratings[cid]} for cid in ids}


def _candidate_ids(case: Case) -> list[int]:
    return list(case.candidates.order_by("pk").values_list("pk", flat=True))


def _as_id(value, field: str) -> int:
    """A candidate id from an int or a digit string (JSON object keys are strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        raise ApplicationError(f"{field}: {value!r} is not a candidate.")
    return int(value)


def _distinct_candidates(values, ids: list[int], field: str) -> list[int]:
    """A list of distinct candidate ids, all of this case."""
    if not isinstance(values, list):
        raise ApplicationError(f"{field} must be a list of candidates.")
    out = [_as_id(v, field) for v in values]
    if len(set(out)) != len(out):
        raise ApplicationError(f"{field}: a candidate appears twice.")
    if not set(out) <= set(ids):
        raise ApplicationError(f"{field}: not a candidate of this case.")
    return out


def _ratings(values, ids: list[int], study: Study, *, complete: bool) -> dict[int, int]:
    """Ratings by candidate id, each in the study's range; all candidates when complete."""
    if not isinstance(values, dict):
        raise ApplicationError("ratings must map candidates to ratings.")
    out = {_as_id(c, "ratings"): r for c, r in values.items()}
    if not set(out) <= set(ids):
        raise ApplicationError("ratings: not a candidate of this case.")
    for r in out.values():
        if isinstance(r, bool) or not isinstance(r, int) or not study.rating_min <= r <= study.rating_max:
            raise ApplicationError(f"A rating must be a whole number from {study.rating_min} to {study.rating_max}.")
    if complete and len(out) != len(ids):
        raise ApplicationError(f"Rate every candidate ({len(out)} of {len(ids)} rated).")
    return out


def _image_answers(
    values, study: Study, case: Case, *, complete: bool, images: dict[int, int] | None = None
) -> list[tuple]:
    """(question, candidate id or None, image id, value) per answer; every image asked when complete."""
    if not isinstance(values, list):
        raise ApplicationError("image_answers must be a list.")
    if not values and not complete:
        return []
    questions = {q.key: q for q in StudyQuestion.objects.filter(study=study)}
    if images is None:
        images = dict(case.candidates.values_list("pk", "image_id"))
    out, seen = [], set()
    for entry in values:
        q, cid, value = _image_answer_parts(entry, questions, images)
        if (q.key, cid) in seen:
            raise ApplicationError(f"Question {q.key!r} is answered twice for the same image.")
        seen.add((q.key, cid))
        out.append((q, cid, case.query_id if cid is None else images[cid], value))
    if complete:
        missing = [(q.key, t) for q in questions.values() for t in _targets(q, images) if (q.key, t) not in seen]
        if missing:
            raise ApplicationError(
                f"Answer every image question ({len(missing)} unanswered).",
                {"missing": [{"question": k, "candidate": t} for k, t in missing]},
            )
    return out


def _image_answer_parts(entry, questions: dict, images: dict[int, int]) -> tuple:
    """Check one image answer: a known question, an image it applies to, one of its choices."""
    if not isinstance(entry, dict) or entry.get("question") not in questions:
        raise ApplicationError("image_answers: unknown question.")
    q = questions[entry["question"]]
    raw = entry.get("candidate")
    cid = None if raw is None else _as_id(raw, "image_answers")
    if cid is not None and cid not in images:
        raise ApplicationError("image_answers: not an image of this case.")
    if cid not in _targets(q, images):
        raise ApplicationError(f"Question {q.key!r} is not asked for that image.")
    if entry.get("value") not in q.choices:
        raise ApplicationError(f"Question {q.key!r}: choose one of {', '.join(map(str, q.choices))}.")
    return q, cid, str(entry["value"])


def _targets(question: StudyQuestion, images: dict[int, int]) -> list[int | None]:
    """The images a question is asked for: None stands for the query."""
    targets: list[int | None] = []
    if question.applies_to in (StudyQuestion.AppliesTo.QUERY, StudyQuestion.AppliesTo.ALL):
        targets.append(None)
    if question.applies_to in (StudyQuestion.AppliesTo.CANDIDATES, StudyQuestion.AppliesTo.ALL):
        targets.extend(sorted(images))
    return targets


# --- flags --------------------------------------------------------------------------------------


def flag_set(*, assignment: Assignment, case: Case, comment: str) -> CaseFlag:
    """Flag a case (or change the flag's comment)."""
    _check_open(assignment=assignment, case=case)
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise ApplicationError(f"A comment has at most {MAX_COMMENT_CHARS} characters.")
    with transaction.atomic():
        flag, _ = CaseFlag.objects.select_for_update().update_or_create(
            assignment=assignment, case=case, defaults={"comment": comment}
        )
    return flag


def flag_clear(*, assignment: Assignment, case: Case) -> None:
    """Remove the reader's flag from a case (no-op when there is none)."""
    _check_open(assignment=assignment, case=case)
    CaseFlag.objects.filter(assignment=assignment, case=case).delete()
