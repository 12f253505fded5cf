"""Reader pages: the home dashboard, my studies, a study's intro, the case page with its images and overlays,
the end and closed pages.

Thin: access and reads come from annotations.selectors, the one write (opening a case starts
its timing) from annotations.services. Drafts, answers, flags and heartbeats go through the
reading API (annotations.api) from static/js/reader.js.
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import get_conditional_response

from annotations import selectors, services
from core import image_links
from core.roles import COORDINATOR, RESEARCHER, ROLES, has_role, role_required
from readerstudy.models import Assignment, StudyStatus
from retrieval.selectors import dataset_list


def _assignment_or_404(request, study_id: int) -> Assignment:
    """The user's assignment to this open or closed study; anything else is "not found"."""
    assignment = selectors.reader_assignment(user=request.user, study_id=study_id)
    if assignment is None:
        raise Http404("No such study among yours.")
    return assignment


def _is_closed(assignment: Assignment) -> bool:
    return assignment.study.status != StudyStatus.OPEN


@login_required
def home(request):
    """The role dashboard: my reading studies (if any are assigned) and, for staff, the collections."""
    context = {"reader_studies": selectors.reader_study_list(user=request.user)}
    if has_role(request.user, COORDINATOR, RESEARCHER):
        context["datasets"] = dataset_list()[:20]
    return render(request, "home.html", context)


@role_required(*ROLES)
def study_list(request):
    """The studies assigned to me, with progress."""
    return render(request, "reader/study_list.html", {"assignments": selectors.reader_study_list(user=request.user)})


@role_required(*ROLES)
def study_intro(request, study_id: int):
    """Instructions, progress, start/resume, and the cases I may revisit."""
    assignment = _assignment_or_404(request, study_id)
    if _is_closed(assignment):
        return redirect("reading:closed", study_id)
    order = selectors.reader_order(assignment=assignment)
    cases = [
        {"index": i, "done": cid in order.answered, "open": order.can_open(i)}
        for i, cid in enumerate(order.case_ids, start=1)
    ]
    return render(request, "reader/study_intro.html", {"study": assignment.study, "order": order, "cases": cases})


@role_required(*ROLES)
def study_start(request, study_id: int):
    """Go to the first unanswered case in my order (resume), or to the end page."""
    assignment = _assignment_or_404(request, study_id)
    if _is_closed(assignment):
        return redirect("reading:closed", study_id)
    order = selectors.reader_order(assignment=assignment)
    if order.next_index is None:
        return redirect("reading:done", study_id)
    return redirect("reading:case", study_id, order.next_index)


@role_required(*ROLES)
def case_detail(request, study_id: int, index: int):
    """Case `index` of my order: the query beside the catalogue."""
    assignment = _assignment_or_404(request, study_id)
    if _is_closed(assignment):
        return redirect("reading:closed", study_id)
    order = selectors.reader_order(assignment=assignment)
    if order.case_id(index) is None:
        raise Http404(f"This study has cases 1 to {order.total}.")
    if not order.can_open(index):
        messages.info(request, f"Cases are read in order: this is case {order.next_index}.")
        return redirect("reading:case", study_id, order.next_index)
    case = selectors.reader_case(order=order, index=index)
    services.case_open(assignment=assignment, case=case)
    session = image_links.session_cookie(request)
    payload = selectors.case_payload(assignment=assignment, case=case, order=order, session_cookie=session)
    return render(request, "reader/case.html", _case_context(assignment, order, index, payload, session))


@role_required(*ROLES)
def case_saliency(request, study_id: int, index: int, key: str):
    """The saliency overlay (PNG) of case `index`'s query (`key` = "query") or candidate `key`.

    The same checks as the case page (role, assignment, open study, a case the reader may open),
    then 404 unless the study shows saliency and its saliency run holds an overlay of that image.
    Addressed like the case page (case number, candidate key): no image or run id reaches the reader.
    """
    assignment = _assignment_or_404(request, study_id)
    order = selectors.reader_order(assignment=assignment)
    if _is_closed(assignment) or not order.can_open(index):
        raise Http404("No such case among yours.")
    path = selectors.reader_saliency_file(
        assignment=assignment, case=selectors.reader_case(order=order, index=index), key=key
    )
    if path is None:
        raise Http404("No saliency overlay for this image.")
    response = FileResponse(path.open("rb"), content_type="image/png", filename="saliency.png")
    response["Cache-Control"] = "private, no-cache"  # a rebuilt study reuses case numbers
    return response


@role_required(*ROLES)
def case_image(request, study_id: int, index: int, key: str):
    """The rendition (PNG) of case `index`'s query (`key` = "query") or of its candidate `key`.

    The checks of the case page (role, assignment to the open or closed study), for a case the
    reader may open or the one after it (the case page prefetches the next case's images); 404
    otherwise and for a key that names no image of that case for this reader. Addressed by case
    number and key and served as query.png / candidate.png: no image id reaches the reader.
    """
    return _reader_file(request, study_id, index, key, kind="rendition")


@role_required(*ROLES)
def case_values(request, study_id: int, index: int, key: str):
    """The modality values (16-bit PNG, imaging.values) of case `index`'s query or candidate `key`.

    Greyscale DICOM images only (404 otherwise); the checks, addressing and caching of `case_image`.
    The viewer windows them in the image's own units (HU for CT).
    """
    return _reader_file(request, study_id, index, key, kind="values")


IMMUTABLE = "private, max-age=31536000, immutable"


def _reader_file(request, study_id: int, index: int, key: str, *, kind: str):
    """Serve one of the reader's image files with its per-(assignment, case, key) ETag.

    The page addresses every image with `?v=<its ETag>`: such an address names these bytes for good
    (a rebuilt study or a changed file gets another ETag, hence another address), so the browser keeps
    it a year without asking again (the next case's images, prefetched, cost no request). An address
    without `v`, or with a stale one, is revalidated: the query of case n changes if an unanswered
    study is rebuilt; a candidate key names one candidate row for good (a day).
    """
    assignment = _assignment_or_404(request, study_id)
    case = selectors.reader_image_case(order=selectors.reader_order(assignment=assignment), index=index)
    image = selectors.reader_image(assignment=assignment, case=case, key=key) if case is not None else None
    if image is None or not getattr(image, kind):
        raise Http404("No such image among your cases.")
    etag = selectors.reader_image_etag(assignment=assignment, case=case, key=key, image=image, kind=kind)
    is_query = key == selectors.QUERY_KEY
    if request.GET.get("v") == etag:
        cache = IMMUTABLE
    else:
        cache = "private, no-cache" if is_query or request.GET.get("v") else "private, max-age=86400"
    headers = {"ETag": f'"{etag}"', "Cache-Control": cache}
    response = get_conditional_response(request, etag=headers["ETag"])  # a 304, or None
    if response is None:
        field = getattr(image, kind)
        name = "values.png" if kind == "values" else "query.png" if is_query else "candidate.png"
        try:
            fh = field.open("rb")
        except FileNotFoundError:
            raise Http404("The image file is missing on the server.") from None
        response = FileResponse(fh, content_type="image/png", filename=name)
    for header, value in headers.items():
        response[header] = value
    return response


def _case_context(
    assignment: Assignment, order: selectors.ReaderOrder, index: int, payload: dict, session_cookie: str
) -> dict:
    """Template context of the case page: the payload, API addresses, neighbours, prefetches."""
    study = assignment.study
    api = {
        name.replace("-", "_"): reverse(f"api-reading-{name}", args=[study.pk, index])
        for name in ("case", "draft", "answer", "heartbeat", "flag", "flag-clear")
    }
    next_case = selectors.reader_case(order=order, index=index + 1)
    prefetch = (
        selectors.case_image_urls(assignment=assignment, case=next_case, index=index + 1, session_cookie=session_cookie)
        if next_case
        else []
    )
    questions = payload["questions"]
    return {
        "study": study,
        "payload": payload,
        "index": index,
        "total": order.total,
        "done": order.done,
        "candidates": payload["candidates"],
        "api": api,
        "prefetch": prefetch,
        "query_display": json.dumps(payload["query"].get("display", {})),
        "query_questions": [q for q in questions if q["applies_to"] != "candidates"],
        "candidate_questions": [q for q in questions if q["applies_to"] != "query"],
        "previous_index": index - 1 if index > 1 else None,
        "next_index": index + 1 if order.can_open(index + 1) else None,
        "rating_values": list(range(study.rating_min, study.rating_max + 1)),
        "saliency": "saliency" in payload["query"] or any("saliency" in c for c in payload["candidates"]),
    }


@role_required(*ROLES)
def study_done(request, study_id: int):
    """The end page, once every case is answered."""
    assignment = _assignment_or_404(request, study_id)
    if _is_closed(assignment):
        return redirect("reading:closed", study_id)
    order = selectors.reader_order(assignment=assignment)
    if order.next_index is not None:
        return redirect("reading:case", study_id, order.next_index)
    return render(request, "reader/done.html", {"study": assignment.study, "order": order})


@role_required(*ROLES)
def study_closed(request, study_id: int):
    """A closed study: read-only, nothing more to do."""
    assignment = _assignment_or_404(request, study_id)
    if not _is_closed(assignment):
        return redirect("reading:study", study_id)
    order = selectors.reader_order(assignment=assignment)
    return render(request, "reader/closed.html", {"study": assignment.study, "order": order})
