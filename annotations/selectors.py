"""Selectors (reads) of reading: the blinded view of a study that readers get, and their own answers.

Blinding: a reader learns a case's query image, the catalogue images in the reader's own seeded
positions, the study's questions and the reader's own draft, answer and flag. Candidates are
named by an opaque per-reader key (an HMAC of assignment and candidate), never by their database
id, whose order may follow the order in which a builder created them (e.g. the model's ranks).
Provenance, ranks, distances, labels (unless `show_candidate_labels`), file names and other
readers' answers are never read here, so they cannot reach a reader's page or JSON. Images are
addressed the same way: renditions by case number and "query" or candidate key
(`reader_image_url`), never by image id, which follows import order (same patient adjacent,
folders by class) and may follow a builder's ranks; behind nginx with image links on, by signed links
named by an HMAC of the assignment and the per-reader, per-place ETag (core.image_links). Saliency
overlays (when `show_saliency`) come from one fixed model run per study
(`readerstudy.selectors.study_saliency_run`) and are addressed by case number and candidate key, never
by run or image id.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from django.conf import settings
from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.urls import reverse

from annotations.models import Answer, CaseFlag, CaseVisit
from core import image_links
from core.errors import ApplicationError
from core.roles import ROLES, has_role
from readerstudy.models import Assignment, Candidate, Case, Study, StudyQuestion, StudyStatus
from readerstudy.selectors import study_saliency_run
from retrieval.models import Image
from retrieval.runs.ranking import saliency_path

READABLE = (StudyStatus.OPEN, StudyStatus.CLOSED)
QUERY_KEY = "query"  # how a reader's address names the query image (candidate keys are 16 hex digits)


# --- access -------------------------------------------------------------------------------------


def reader_assignment(*, user, study_id: int) -> Assignment | None:
    """The user's assignment to an open or closed study (None: no role, not assigned, or a draft)."""
    if not has_role(user, *ROLES):
        return None
    return (
        Assignment.objects.select_related("study")
        .filter(reader=user, study_id=study_id, study__status__in=READABLE)
        .first()
    )


def reader_study_list(*, user) -> list[Assignment]:
    """The user's assignments to open and closed studies, with `n_cases` and `n_done` (open first)."""
    if not has_role(user, *ROLES):
        return []
    n_cases = Case.objects.filter(study=OuterRef("study")).values("study").annotate(n=Count("pk")).values("n")
    n_done = Answer.objects.filter(assignment=OuterRef("pk")).values("assignment").annotate(n=Count("pk")).values("n")
    rows = (
        Assignment.objects.filter(reader=user, study__status__in=READABLE)
        .select_related("study")
        .annotate(
            n_cases=Coalesce(Subquery(n_cases, output_field=IntegerField()), Value(0)),
            n_done=Coalesce(Subquery(n_done, output_field=IntegerField()), Value(0)),
        )
    )
    return sorted(rows, key=lambda a: (a.study.status != StudyStatus.OPEN, a.study.name.lower()))


# --- the reader's order -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReaderOrder:
    """A reader's seeded case order and which of those cases they have answered."""

    case_ids: tuple[int, ...]
    answered: frozenset[int] = field(default_factory=frozenset)

    @property
    def total(self) -> int:
        return len(self.case_ids)

    @property
    def done(self) -> int:
        return sum(1 for c in self.case_ids if c in self.answered)

    @cached_property
    def next_index(self) -> int | None:
        """1-based position of the first unanswered case (None: all done)."""
        return next((i + 1 for i, c in enumerate(self.case_ids) if c not in self.answered), None)

    def case_id(self, index: int) -> int | None:
        return self.case_ids[index - 1] if 1 <= index <= self.total else None

    def index_of(self, case_id: int) -> int:
        return self.case_ids.index(case_id) + 1

    def can_open(self, index: int) -> bool:
        """Answered cases and the next one are open to the reader; later ones wait their turn."""
        cid = self.case_id(index)
        return cid is not None and (cid in self.answered or index == self.next_index)


def reader_order(*, assignment: Assignment) -> ReaderOrder:
    """The reader's case order (from the assignment's seed) and their answered cases."""
    ids = list(Case.objects.filter(study_id=assignment.study_id).values_list("pk", flat=True))
    answered = Answer.objects.filter(assignment=assignment).values_list("case_id", flat=True)
    return ReaderOrder(tuple(assignment.case_order(ids)), frozenset(answered))


def next_case_for(assignment: Assignment) -> Case | None:
    """The first case in the reader's order that they have not answered (None: all done)."""
    order = reader_order(assignment=assignment)
    return Case.objects.filter(pk=order.case_id(order.next_index)).first() if order.next_index else None


# --- blinded candidates -------------------------------------------------------------------------


def candidate_key(*, assignment: Assignment, candidate_id: int) -> str:
    """The opaque name of a candidate for one reader (stable, unguessable, not ordered)."""
    msg = f"reading-candidate:{assignment.pk}:{assignment.seed}:{candidate_id}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), msg, hashlib.sha256).hexdigest()[:16]


def reader_candidates(*, assignment: Assignment, case: Case) -> list[Candidate]:
    """The case's candidates in the reader's positions, each with `.key` and `.shown_position`."""
    by_id = {c.pk: c for c in Candidate.objects.filter(case=case).select_related("image")}
    out = []
    for pos, cid in enumerate(assignment.candidate_order(case.pk, list(by_id)), start=1):
        c = by_id[cid]
        c.key, c.shown_position = candidate_key(assignment=assignment, candidate_id=cid), pos
        out.append(c)
    return out


def candidate_keymap(*, assignment: Assignment, case: Case) -> dict[str, int]:
    """Reader key → candidate id for one case."""
    ids = Candidate.objects.filter(case=case).values_list("pk", flat=True)
    return {candidate_key(assignment=assignment, candidate_id=cid): cid for cid in ids}


def reader_payload_to_ids(*, data: dict, keymap: dict[str, int]) -> dict:
    """Translate a reader's answer or draft (candidate keys, "query") into the services' shape (ids)."""

    def cid(key):
        if key not in keymap:
            raise ApplicationError("Not a candidate of this case.", {"candidate": str(key)[:40]})
        return keymap[key]

    out: dict = {}
    for name in ("selected", "ranking"):
        if name in data:
            out[name] = [cid(k) for k in data[name]]
    if "ratings" in data:
        out["ratings"] = {cid(k): r for k, r in data["ratings"].items()}
    if "image_answers" in data:
        out["image_answers"] = [
            {
                "question": a["question"],
                "candidate": None if a["image"] == "query" else cid(a["image"]),
                "value": a["value"],
            }
            for a in data["image_answers"]
        ]
    return out


def reader_payload_to_keys(*, payload: dict, keymap: dict[str, int]) -> dict:
    """Translate a stored draft or answer (ids) into what the reader sees (keys, "query")."""
    keys = {cid: key for key, cid in keymap.items()}

    def key(c):
        return keys.get(int(c))

    return {
        "selected": [key(c) for c in payload.get("selected", []) if key(c)],
        "ranking": [key(c) for c in payload.get("ranking", []) if key(c)],
        "ratings": {key(c): r for c, r in payload.get("ratings", {}).items() if key(c)},
        "image_answers": [
            {
                "question": a["question"],
                "image": "query" if a["candidate"] is None else key(a["candidate"]),
                "value": a["value"],
            }
            for a in payload.get("image_answers", [])
            if a["candidate"] is None or key(a["candidate"])
        ],
    }


def reader_error_to_keys(*, error: ApplicationError, keymap: dict[str, int]) -> ApplicationError:
    """The services' refusal as the reader may see it: images by "query" or candidate key, never by id.

    Only `missing` (unanswered image questions) names images; any other candidate field the services
    might add is dropped rather than passed on with an id in it.
    """
    keys = {cid: key for key, cid in keymap.items()}
    extra = {k: v for k, v in error.extra.items() if k not in ("missing", "candidate", "candidates")}
    if "missing" in error.extra:
        extra["missing"] = [
            {"question": m["question"], "image": QUERY_KEY if m["candidate"] is None else keys.get(m["candidate"])}
            for m in error.extra["missing"]
        ]
    error.extra = extra
    return error


# --- saliency overlays ---------------------------------------------------------------------------


def reader_saliency_images(*, study: Study, image_ids: list[int]) -> set[int]:
    """Those of the images that readers of this study see with an overlay (none unless `show_saliency`)."""
    run = study_saliency_run(study=study) if study.show_saliency else None
    if run is None:
        return set()
    return {i for i in image_ids if saliency_path(run, i).is_file()}


def reader_saliency_file(*, assignment: Assignment, case: Case, key: str) -> Path | None:
    """The overlay PNG of the case's query (`key` = "query") or of its candidate `key`, as this reader sees it.

    None when the study does not show saliency, has no saliency run, `key` names no image of this
    case for this reader, or the run holds no overlay of that image.
    """
    study = assignment.study
    run = study_saliency_run(study=study) if study.show_saliency else None
    image_id = reader_image_id(assignment=assignment, case=case, key=key) if run is not None else None
    if image_id is None:
        return None
    path = saliency_path(run, image_id)
    return path if path.is_file() else None


def reader_image_id(*, assignment: Assignment, case: Case, key: str) -> int | None:
    """The image the reader's `key` names in this case: its query ("query") or candidate `key` (None: neither)."""
    if key == QUERY_KEY:
        return case.query_id
    for candidate_id, image_id in Candidate.objects.filter(case=case).values_list("pk", "image_id"):
        if candidate_key(assignment=assignment, candidate_id=candidate_id) == key:
            return image_id
    return None


def reader_image(*, assignment: Assignment, case: Case, key: str):
    """The image (its rendition is what the reader loads) that `key` names in this case, or None."""
    image_id = reader_image_id(assignment=assignment, case=case, key=key)
    return Image.objects.only("pk", "rendition", "content_hash").get(pk=image_id) if image_id is not None else None


def reader_image_etag(*, assignment: Assignment, case: Case, key: str, image, kind: str = "rendition") -> str:
    """An opaque validator of one image's rendition as one reader loads it at one place (changes with the
    image, names no id).

    Per (assignment, case, key): the same image shown in two cases, or to two readers, gets two unrelated
    ETags, so that a script cannot tell from the validators which candidates recur across cases
    (issue 12, finding 4)."""
    msg = (
        f"reading-image:{assignment.pk}:{case.pk}:{key}:{image.pk}:{image.content_hash}:{kind}:"
        f"{getattr(image, kind).name}"
    ).encode()
    return hmac.new(settings.SECRET_KEY.encode(), msg, hashlib.sha256).hexdigest()[:32]


# --- the case a reader sees ---------------------------------------------------------------------


def reader_image_url(*, study_id: int, index: int, key: str, version: str = "", kind: str = "rendition") -> str:
    """Where the reader loads the rendition (or modality values) of case `index`'s query ("query") or candidate
    `key`: no image id. With `version` (the file's ETag for this reader and place) the address names these
    bytes for good, and the browser keeps them without asking again (an immutable address)."""
    url = reverse("reading:image" if kind == "rendition" else "reading:values", args=[study_id, index, key])
    return f"{url}?v={version}" if version else url


def reader_image_versioned_url(
    *, assignment: Assignment, case: Case, index: int, key: str, image, kind="rendition", session_cookie: str = ""
):
    """The immutable address of one image of the reader's case: a signed link that nginx answers by itself
    when image links are on (core.image_links; bound to the reader's `session_cookie`, named by the ETag in a
    folder of the assignment's), else the image view's address with `?v=<the ETag>`."""
    version = reader_image_etag(assignment=assignment, case=case, key=key, image=image, kind=kind)
    if session_cookie and image_links.enabled():
        return image_links.address(
            scope=assignment.image_link_scope,
            name=f"{version}.png",
            target=Path(getattr(image, kind).path),
            session_cookie=session_cookie,
        )
    return reader_image_url(study_id=assignment.study_id, index=index, key=key, version=version, kind=kind)


def reader_image_case(*, order: ReaderOrder, index: int) -> Case | None:
    """The case at `index` when the reader may load its images: one they may open, or the one after it.

    The case page prefetches the next case's renditions, before that case may be opened.
    """
    if order.can_open(index) or order.can_open(index - 1):
        return reader_case(order=order, index=index)
    return None


def case_image_urls(*, assignment: Assignment, case: Case, index: int, session_cookie: str = "") -> list[str]:
    """The renditions a reader loads for case `index` (query first, then candidates in the reader's positions), at
    their immutable addresses, and the query's modality values (the first thing its viewer fetches next)."""
    by_id = {c.pk: c for c in Candidate.objects.filter(case=case).select_related("image")}
    images = [(QUERY_KEY, case.query)] + [
        (candidate_key(assignment=assignment, candidate_id=c), by_id[c].image)
        for c in assignment.candidate_order(case.pk, list(by_id))
    ]
    urls = [
        reader_image_versioned_url(
            assignment=assignment, case=case, index=index, key=key, image=image, session_cookie=session_cookie
        )
        for key, image in images
    ]
    if case.query.values:
        urls.append(
            reader_image_versioned_url(
                assignment=assignment,
                case=case,
                index=index,
                key=QUERY_KEY,
                image=case.query,
                kind="values",
                session_cookie=session_cookie,
            )
        )
    return urls


def reader_case(*, order: ReaderOrder, index: int) -> Case | None:
    """The case at 1-based position `index` of the reader's order, with its query image."""
    cid = order.case_id(index)
    return Case.objects.select_related("query").filter(pk=cid).first() if cid is not None else None


def case_payload(*, assignment: Assignment, case: Case, order: ReaderOrder, session_cookie: str = "") -> dict:
    """Everything the reader's page and API show for one case (blinded). `session_cookie`: the reader's, to which
    the images' signed links are bound when image links are on (core.image_links)."""
    study = assignment.study
    candidates = reader_candidates(assignment=assignment, case=case)
    keymap = {c.key: c.pk for c in candidates}
    answer = reader_answer(assignment=assignment, case=case)
    flag = reader_flag(assignment=assignment, case=case)
    index = order.index_of(case.pk)
    maps = reader_saliency_images(study=study, image_ids=[case.query_id, *(c.image_id for c in candidates)])

    def overlay(key: str) -> str:
        return reverse("reading:saliency", args=[study.pk, index, key])

    images = {QUERY_KEY: case.query, **{c.key: c.image for c in candidates}}

    def image(key: str, kind: str = "rendition") -> str:
        return reader_image_versioned_url(
            assignment=assignment,
            case=case,
            index=index,
            key=key,
            image=images[key],
            kind=kind,
            session_cookie=session_cookie,
        )

    query = {"url": image(QUERY_KEY), **_values_out(case.query, image, QUERY_KEY)}
    if case.query_id in maps:
        query["saliency"] = overlay(QUERY_KEY)
    return {
        "study": {
            "id": study.pk,
            "name": study.name,
            "mode": study.mode,
            "k": study.k,
            "rating_min": study.rating_min,
            "rating_max": study.rating_max,
            "allow_revisions": study.allow_revisions,
        },
        "case": {"index": index, "total": order.total, "done": order.done},
        "query": query,
        "candidates": [
            {
                **_candidate_out(
                    c, image(c.key), study.show_candidate_labels, overlay(c.key) if c.image_id in maps else None
                ),
                **_values_out(c.image, image, c.key),
            }
            for c in candidates
        ],
        "questions": _questions(study_id=study.pk),
        "draft": reader_payload_to_keys(payload=reader_draft(assignment=assignment, case=case), keymap=keymap),
        "answer": _answer_out(answer, keymap),
        "flag": {"comment": flag.comment} if flag else None,
        "can_submit": answer is None or study.allow_revisions,
    }


VIEWER_DISPLAY_KEYS = ("offset", "scale", "min", "max", "units", "modality", "monochrome1", "rendition", "windows")


def _values_out(image, url, key: str) -> dict:
    """A greyscale DICOM's modality values for the viewer: their address (by case number and key, like the
    rendition) and how to read and show them (imaging.values); nothing for other images."""
    if not image.values or not image.display:
        return {}
    display = {k: image.display[k] for k in VIEWER_DISPLAY_KEYS if k in image.display}
    display["windows"] = [  # the file's VOI windows; their explanations are free text: letters and digits only
        {**w, "name": re.sub(r"[^A-Za-z0-9 /_-]", "", str(w.get("name", "")))[:32]} for w in display.get("windows", [])
    ]
    return {"values": url(key, "values"), "display": display}


def _candidate_out(c: Candidate, url: str, with_labels: bool, saliency_url: str | None) -> dict:
    out = {"key": c.key, "position": c.shown_position, "url": url}
    if with_labels:
        out["labels"] = [str(label) for label in c.image.labels.order_by("name")]
    if saliency_url:
        out["saliency"] = saliency_url
    return out


def _questions(*, study_id: int) -> list[dict]:
    return [
        {"key": q.key, "text": q.text, "choices": [str(x) for x in q.choices], "applies_to": q.applies_to}
        for q in StudyQuestion.objects.filter(study_id=study_id)
    ]


def _answer_out(answer, keymap: dict[str, int]) -> dict | None:
    if answer is None:
        return None
    return {
        **reader_payload_to_keys(payload=answer_as_payload(answer), keymap=keymap),
        "revision": answer.revision,
        "submitted_at": answer.submitted_at.isoformat(),
    }


# --- the reader's own answers, drafts and flags ----------------------------------------------------


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
