"""Selectors (reads) of reading answers."""

from __future__ import annotations

from annotations.models import Answer, CaseFlag, CaseVisit
from readerstudy.models import Assignment, Case


def answer_as_payload(answer: Answer) -> dict:
    """An answer in the services' payload shape (candidate ids), plus its token and timing."""
    items = list(answer.items.order_by("rank", "candidate_id").values("candidate_id", "selected", "rank", "rating"))
    query_image = answer.case.query_id
    image_to_candidate = dict(answer.case.candidates.values_list("image_id", "pk"))
    return {
        "client_token": answer.client_token,
        "revision": answer.revision,
        "active_ms": answer.active_ms,
        "selected": [i["candidate_id"] for i in items if i["selected"]],
        "ranking": [i["candidate_id"] for i in items if i["rank"] is not None],
        "ratings": {str(i["candidate_id"]): i["rating"] for i in items if i["rating"] is not None},
        "image_answers": [
            {"question": key, "candidate": None if img == query_image else image_to_candidate.get(img), "value": v}
            for key, img, v in answer.image_answers.order_by("pk").values_list("question__key", "image_id", "value")
        ],
    }


def reader_answer(*, assignment: Assignment, case: Case) -> Answer | None:
    """The reader's own final answer to a case, if any."""
    return Answer.objects.filter(assignment=assignment, case=case).select_related("case").first()


def reader_draft(*, assignment: Assignment, case: Case) -> dict:
    """The reader's autosaved draft of a case ({} when none)."""
    visit = CaseVisit.objects.filter(assignment=assignment, case=case).only("draft").first()
    return dict(visit.draft) if visit else {}


def reader_flag(*, assignment: Assignment, case: Case) -> CaseFlag | None:
    """The reader's own flag on a case, if any."""
    return CaseFlag.objects.filter(assignment=assignment, case=case).first()
