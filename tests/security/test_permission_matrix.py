"""The permission matrix: every route × six personas × GET and its writes, with the expected status code.

The routes come from the URL resolver (`get_resolver().url_patterns`, walked recursively) and the API's
write methods from the OpenAPI schema; `EXPECTED` below is the table, written out by hand. A route without
an entry, an entry without a route, or an API entry whose methods differ from the schema's fails
`test_every_route_has_an_entry` and `test_api_entries_match_the_schema`: a new route needs its row.

Personas (columns, in this order): anonymous; `reader`, assigned to the world's open study; `outsider`, a
reader not assigned to it; `coordinator`; `researcher`; `coord_reader`, a coordinator who is also one of
the study's readers and so is blinded while assigned (readerstudy.selectors.study_blinding_check): no
study-level provenance, progress, answers or report, and no study writes either (a write page or API
answer shows the design, readers and cases, and a case-list upload decides the cases).

Writes go with an empty body (a form POST, or `{}` as JSON): the point is authorisation, so a write that
a persona may make answers 2xx or a 4xx about the body (400, 409, 415), and one it may not 403/404.
Anonymous gets the login redirect (302) on pages and 401/403 on the API. Each cell is one test in its own
transaction (rolled back), on one world made per module (tests/security/conftest.py).

`KNOWN_GAPS` lists the cells main does not meet yet; they run as strict xfails, so each one turns into a
failure as soon as it is fixed, and then leaves the set.
"""

from __future__ import annotations

import pytest

from tests.security.conftest import PERSONAS
from tests.security.routes import WRITE_METHODS, admin_url_for, api_operations, openapi_path, routes, url_for

pytestmark = pytest.mark.django_db

API_ANON = frozenset({401, 403})  # the API without credentials
PAGE_OR_API_ANON = frozenset({302, 401, 403})  # the API's HTML docs without a session: a login redirect or a refusal
BLINDED_OR_405 = frozenset({403, 405})  # GET on a study write endpoint, for a blinded coordinator-reader

# route → method → expected code (or set of codes) per persona, in PERSONAS order:
#       (anonymous, reader, outsider, coordinator, researcher, coord_reader)
EXPECTED: dict[str, dict[str, tuple]] = {
    "home": {"GET": (302, 200, 200, 200, 200, 200), "POST": (302, 200, 200, 200, 200, 200)},
    "healthz": {"GET": (200, 200, 200, 200, 200, 200), "POST": (200, 200, 200, 200, 200, 200)},
    "favicon.ico": {"GET": (301, 301, 301, 301, 301, 301), "POST": (301, 301, 301, 301, 301, 301)},
    "login": {"GET": (200, 302, 302, 302, 302, 302), "POST": (200, 302, 302, 302, 302, 302)},
    "logout": {"GET": (405, 405, 405, 405, 405, 405), "POST": (302, 302, 302, 302, 302, 302)},
    "password_change": {"GET": (302, 200, 200, 200, 200, 200), "POST": (302, 200, 200, 200, 200, 200)},
    "password_change_done": {"GET": (302, 200, 200, 200, 200, 200), "POST": (302, 405, 405, 405, 405, 405)},
    "api-dataset-list": {"GET": (API_ANON, 403, 403, 200, 200, 200)},
    "api-dataset-create": {"GET": (API_ANON, 403, 403, 405, 403, 405), "POST": (API_ANON, 403, 403, 400, 403, 400)},
    "api-image-list": {"GET": (API_ANON, 403, 403, 200, 200, 200)},
    "api-import-create": {"GET": (API_ANON, 403, 403, 405, 403, 405), "POST": (API_ANON, 403, 403, 415, 403, 415)},
    "api-image-detail": {"GET": (API_ANON, 403, 403, 200, 200, 200)},
    "api-import-detail": {"GET": (API_ANON, 403, 403, 200, 200, 200)},
    "api-run-list": {"GET": (API_ANON, 403, 403, 200, 200, 200)},
    "api-run-create": {"GET": (API_ANON, 403, 403, 405, 403, 405), "POST": (API_ANON, 403, 403, 400, 403, 400)},
    "api-split-create": {"GET": (API_ANON, 403, 403, 405, 403, 405), "POST": (API_ANON, 403, 403, 400, 403, 400)},
    "api-run-detail": {"GET": (API_ANON, 403, 403, 200, 200, 200)},
    "api-run-resume": {"GET": (API_ANON, 403, 403, 405, 403, 405), "POST": (API_ANON, 403, 403, 409, 403, 409)},
    "api-search": {"GET": (API_ANON, 403, 403, 400, 400, 400), "POST": (API_ANON, 403, 403, 415, 415, 415)},
    "api-search-detail": {"GET": (API_ANON, 403, 403, 200, 200, 200)},
    "api-study-list": {"GET": (API_ANON, 403, 403, 200, 200, 200)},
    "api-study-create": {"GET": (API_ANON, 403, 403, 405, 403, 405), "POST": (API_ANON, 403, 403, 400, 403, 400)},
    "api-study-detail": {"GET": (API_ANON, 403, 403, 200, 200, 403)},
    "api-study-update": {
        "GET": (API_ANON, 403, 403, 405, 403, BLINDED_OR_405),
        "PATCH": (API_ANON, 403, 403, 200, 403, 403),
    },
    "api-study-build": {
        "GET": (API_ANON, 403, 403, 405, 403, BLINDED_OR_405),
        "POST": (API_ANON, 403, 403, 400, 403, 403),
    },
    "api-study-case-list": {
        "GET": (API_ANON, 403, 403, 405, 403, BLINDED_OR_405),
        "POST": (API_ANON, 403, 403, 415, 403, 403),
    },
    "api-study-cases": {"GET": (API_ANON, 403, 403, 200, 200, 403)},
    "api-study-progress": {"GET": (API_ANON, 403, 403, 200, 200, 403)},
    "api-study-open": {
        "GET": (API_ANON, 403, 403, 405, 403, BLINDED_OR_405),
        "POST": (API_ANON, 403, 403, 409, 403, 403),
    },
    "api-study-close": {
        "GET": (API_ANON, 403, 403, 405, 403, BLINDED_OR_405),
        "POST": (API_ANON, 403, 403, 200, 403, 403),
    },
    "api-study-clone": {
        "GET": (API_ANON, 403, 403, 405, 403, BLINDED_OR_405),
        "POST": (API_ANON, 403, 403, 400, 403, 403),
    },
    "api-study-reader-add": {
        "GET": (API_ANON, 403, 403, 405, 403, BLINDED_OR_405),
        "POST": (API_ANON, 403, 403, 400, 403, 403),
    },
    "api-study-reader-remove": {
        "GET": (API_ANON, 403, 403, 405, 403, BLINDED_OR_405),
        "DELETE": (API_ANON, 403, 403, 409, 403, 403),
    },
    "api-study-question-add": {
        "GET": (API_ANON, 403, 403, 405, 403, BLINDED_OR_405),
        "POST": (API_ANON, 403, 403, 400, 403, 403),
    },
    "api-study-question-remove": {
        "GET": (API_ANON, 403, 403, 405, 403, BLINDED_OR_405),
        "DELETE": (API_ANON, 403, 403, 409, 403, 403),
    },
    "api-reading-studies": {"GET": (API_ANON, 200, 200, 200, 200, 200)},
    "api-reading-case": {"GET": (API_ANON, 200, 404, 404, 404, 200)},
    "api-reading-draft": {"GET": (API_ANON, 405, 405, 405, 405, 405), "PUT": (API_ANON, 200, 404, 404, 404, 200)},
    "api-reading-answer": {"GET": (API_ANON, 405, 405, 405, 405, 405), "POST": (API_ANON, 400, 404, 404, 404, 400)},
    "api-reading-heartbeat": {"GET": (API_ANON, 405, 405, 405, 405, 405), "POST": (API_ANON, 400, 404, 404, 404, 400)},
    "api-reading-flag": {"GET": (API_ANON, 405, 405, 405, 405, 405), "POST": (API_ANON, 200, 404, 404, 404, 200)},
    "api-reading-flag-clear": {"GET": (API_ANON, 405, 405, 405, 405, 405), "POST": (API_ANON, 200, 404, 404, 404, 200)},
    "api-report-detail": {"GET": (API_ANON, 403, 403, 200, 200, 403)},
    "api-report-bootstrap": {"GET": (API_ANON, 403, 403, 405, 405, 405), "POST": (API_ANON, 403, 403, 202, 202, 403)},
    "api-report-run": {"GET": (API_ANON, 403, 403, 200, 200, 403)},
    "api-report-run-result": {"GET": (API_ANON, 403, 403, 200, 200, 403)},
    "api-schema": {"GET": (API_ANON, 200, 200, 200, 200, 200)},
    "api-docs": {"GET": (PAGE_OR_API_ANON, 200, 200, 200, 200, 200)},
    "api-redoc": {"GET": (PAGE_OR_API_ANON, 200, 200, 200, 200, 200)},
    "retrieval:dataset-list": {"GET": (302, 403, 403, 200, 200, 200), "POST": (302, 403, 403, 200, 200, 200)},
    "retrieval:dataset-create": {"GET": (302, 403, 403, 405, 403, 405), "POST": (302, 403, 403, 302, 403, 302)},
    "retrieval:dataset-detail": {"GET": (302, 403, 403, 200, 200, 200), "POST": (302, 403, 403, 200, 200, 200)},
    "retrieval:import-create": {"GET": (302, 403, 403, 200, 403, 200), "POST": (302, 403, 403, 200, 403, 200)},
    "retrieval:import-detail": {"GET": (302, 403, 403, 200, 200, 200), "POST": (302, 403, 403, 200, 200, 200)},
    "retrieval:import-retry": {"GET": (302, 403, 403, 405, 403, 405), "POST": (302, 403, 403, 302, 403, 302)},
    "retrieval:image-detail": {"GET": (302, 403, 403, 200, 200, 200), "POST": (302, 403, 403, 200, 200, 200)},
    "retrieval:image-file": {"GET": (302, 404, 404, 200, 200, 200), "POST": (302, 404, 404, 200, 200, 200)},
    "retrieval:run-list": {"GET": (302, 403, 403, 200, 200, 200), "POST": (302, 403, 403, 200, 200, 200)},
    "retrieval:run-create": {"GET": (302, 403, 403, 200, 403, 200), "POST": (302, 403, 403, 200, 403, 200)},
    "retrieval:compare": {"GET": (302, 403, 403, 200, 200, 200), "POST": (302, 403, 403, 200, 200, 200)},
    "retrieval:run-detail": {"GET": (302, 403, 403, 200, 200, 200), "POST": (302, 403, 403, 200, 200, 200)},
    "retrieval:run-resume": {"GET": (302, 403, 403, 302, 403, 302), "POST": (302, 403, 403, 302, 403, 302)},
    "retrieval:run-figure": {"GET": (302, 403, 403, 200, 200, 200), "POST": (302, 403, 403, 200, 200, 200)},
    "retrieval:run-saliency": {"GET": (302, 403, 403, 404, 404, 404), "POST": (302, 403, 403, 404, 404, 404)},
    "retrieval:search": {"GET": (302, 403, 403, 200, 200, 200), "POST": (302, 403, 403, 200, 200, 200)},
    "retrieval:search-upload": {"GET": (302, 403, 403, 200, 200, 200), "POST": (302, 403, 403, 200, 200, 200)},
    "retrieval:search-retry": {"GET": (302, 403, 403, 405, 405, 405), "POST": (302, 403, 403, 302, 302, 302)},
    "studies:list": {"GET": (302, 403, 403, 200, 200, 200), "POST": (302, 403, 403, 200, 200, 200)},
    "studies:create": {"GET": (302, 403, 403, 200, 403, 200), "POST": (302, 403, 403, 200, 403, 200)},
    "studies:detail": {"GET": (302, 403, 403, 200, 200, 403), "POST": (302, 403, 403, 200, 200, 403)},
    "studies:edit": {"GET": (302, 403, 403, 200, 403, 403), "POST": (302, 403, 403, 200, 403, 403)},
    "studies:open": {"GET": (302, 403, 403, 405, 403, 405), "POST": (302, 403, 403, 302, 403, 403)},
    "studies:close": {"GET": (302, 403, 403, 405, 403, 405), "POST": (302, 403, 403, 302, 403, 403)},
    "studies:clone": {"GET": (302, 403, 403, 405, 403, 405), "POST": (302, 403, 403, 302, 403, 403)},
    "studies:reader-add": {"GET": (302, 403, 403, 405, 403, 405), "POST": (302, 403, 403, 302, 403, 403)},
    "studies:reader-remove": {"GET": (302, 403, 403, 405, 403, 405), "POST": (302, 403, 403, 302, 403, 403)},
    "studies:question-add": {"GET": (302, 403, 403, 405, 403, 405), "POST": (302, 403, 403, 302, 403, 403)},
    "studies:question-remove": {"GET": (302, 403, 403, 405, 403, 405), "POST": (302, 403, 403, 302, 403, 403)},
    "studies:case-list": {"GET": (302, 403, 403, 405, 403, 405), "POST": (302, 403, 403, 302, 403, 403)},
    "reading:study-list": {"GET": (302, 200, 200, 200, 200, 200), "POST": (302, 200, 200, 200, 200, 200)},
    "reading:study": {"GET": (302, 200, 404, 404, 404, 200), "POST": (302, 200, 404, 404, 404, 200)},
    "reading:start": {"GET": (302, 302, 404, 404, 404, 302), "POST": (302, 302, 404, 404, 404, 302)},
    "reading:case": {"GET": (302, 200, 404, 404, 404, 200), "POST": (302, 200, 404, 404, 404, 200)},
    "reading:image": {"GET": (302, 200, 404, 404, 404, 200), "POST": (302, 200, 404, 404, 404, 200)},
    # The world's images are PNGs, which have no modality values: 404 for everyone signed in.
    "reading:values": {"GET": (302, 404, 404, 404, 404, 404), "POST": (302, 404, 404, 404, 404, 404)},
    "reading:saliency": {"GET": (302, 404, 404, 404, 404, 404), "POST": (302, 404, 404, 404, 404, 404)},
    "reading:done": {"GET": (302, 302, 404, 404, 404, 302), "POST": (302, 302, 404, 404, 404, 302)},
    "reading:closed": {"GET": (302, 302, 404, 404, 404, 302), "POST": (302, 302, 404, 404, 404, 302)},
    "reports:index": {"GET": (302, 403, 403, 200, 200, 200), "POST": (302, 403, 403, 200, 200, 200)},
    "reports:study": {"GET": (302, 403, 403, 200, 200, 403), "POST": (302, 403, 403, 200, 200, 403)},
    "reports:bootstrap": {"GET": (405, 405, 405, 405, 405, 405), "POST": (302, 403, 403, 302, 302, 403)},
    "reports:download": {"GET": (302, 403, 403, 200, 200, 403), "POST": (302, 403, 403, 200, 200, 403)},
    "api-dicomweb-search": {"GET": (API_ANON, 403, 403, 405, 403, 405), "POST": (API_ANON, 403, 403, 400, 403, 400)},
    "api-dicomweb-import": {"GET": (API_ANON, 403, 403, 405, 403, 405), "POST": (API_ANON, 403, 403, 400, 403, 400)},
    "retrieval:import-confirm": {"GET": (302, 403, 403, 405, 403, 405), "POST": (302, 403, 403, 302, 403, 302)},
    "retrieval:dicomweb-import": {"GET": (302, 403, 403, 200, 403, 200), "POST": (302, 403, 403, 200, 403, 200)},
    "retrieval:weights-fetch-start": {"GET": (302, 403, 403, 405, 403, 405), "POST": (302, 403, 403, 302, 403, 302)},
    "retrieval:weights-fetch": {"GET": (302, 403, 403, 200, 200, 200), "POST": (302, 403, 403, 200, 200, 200)},
    "retrieval:weights-fetch-progress": {"GET": (302, 403, 403, 200, 200, 200), "POST": (302, 403, 403, 200, 200, 200)},
    "retrieval:weights-fetch-retry": {"GET": (302, 403, 403, 405, 403, 405), "POST": (302, 403, 403, 302, 403, 302)},
    "studies:case": {"GET": (302, 403, 403, 200, 200, 403), "POST": (302, 403, 403, 200, 200, 403)},
}

# The Django admin (admin/…), GET only: staff (coordinators) only, the others get the admin's login (302); then
# each model's permissions. A model page on a row the world lacks ("0"), or on a row of a study the user reads
# (readerstudy.admin.BlindedAdmin hides those from coord_reader), redirects to the admin index (302).
#       (anonymous, reader, outsider, coordinator, researcher, coord_reader)
ADMIN_EXPECTED: dict[str, tuple] = {
    "admin:index": (302, 302, 302, 200, 302, 200),
    "admin:login": (200, 200, 200, 302, 200, 302),
    "admin:logout": (302, 302, 302, 405, 302, 405),
    "admin:password_change": (302, 302, 302, 200, 302, 200),
    "admin:password_change_done": (302, 302, 302, 200, 302, 200),
    "admin:autocomplete": (302, 302, 302, 403, 302, 403),
    "admin:jsi18n": (302, 302, 302, 200, 302, 200),
    "admin:view_on_site": (302, 302, 302, 302, 302, 302),
    "admin:auth_group_changelist": (302, 302, 302, 403, 302, 403),
    "admin:auth_group_add": (302, 302, 302, 403, 302, 403),
    "admin:auth_group_history": (302, 302, 302, 403, 302, 403),
    "admin:auth_group_delete": (302, 302, 302, 403, 302, 403),
    "admin:auth_group_change": (302, 302, 302, 403, 302, 403),
    "admin/auth/group/<path:object_id>/": (302, 302, 302, 302, 302, 302),
    "admin:auth_user_password_change": (302, 302, 302, 403, 302, 403),
    "admin:auth_user_changelist": (302, 302, 302, 403, 302, 403),
    "admin:auth_user_add": (302, 302, 302, 403, 302, 403),
    "admin:auth_user_history": (302, 302, 302, 403, 302, 403),
    "admin:auth_user_delete": (302, 302, 302, 403, 302, 403),
    "admin:auth_user_change": (302, 302, 302, 403, 302, 403),
    "admin/auth/user/<path:object_id>/": (302, 302, 302, 302, 302, 302),
    "admin:readerstudy_study_changelist": (302, 302, 302, 200, 302, 200),
    "admin:readerstudy_study_add": (302, 302, 302, 200, 302, 200),
    "admin:readerstudy_study_history": (302, 302, 302, 200, 302, 302),
    "admin:readerstudy_study_delete": (302, 302, 302, 403, 302, 302),
    "admin:readerstudy_study_change": (302, 302, 302, 200, 302, 302),
    "admin/readerstudy/study/<path:object_id>/": (302, 302, 302, 302, 302, 302),
    "admin:readerstudy_case_changelist": (302, 302, 302, 200, 302, 200),
    "admin:readerstudy_case_add": (302, 302, 302, 403, 302, 403),
    "admin:readerstudy_case_history": (302, 302, 302, 200, 302, 302),
    "admin:readerstudy_case_delete": (302, 302, 302, 403, 302, 403),
    "admin:readerstudy_case_change": (302, 302, 302, 200, 302, 302),
    "admin/readerstudy/case/<path:object_id>/": (302, 302, 302, 302, 302, 302),
    "admin:readerstudy_assignment_changelist": (302, 302, 302, 200, 302, 200),
    "admin:readerstudy_assignment_add": (302, 302, 302, 403, 302, 403),
    "admin:readerstudy_assignment_history": (302, 302, 302, 200, 302, 302),
    "admin:readerstudy_assignment_delete": (302, 302, 302, 403, 302, 302),
    "admin:readerstudy_assignment_change": (302, 302, 302, 200, 302, 302),
    "admin/readerstudy/assignment/<path:object_id>/": (302, 302, 302, 302, 302, 302),
    "admin:retrieval_dataset_changelist": (302, 302, 302, 200, 302, 200),
    "admin:retrieval_dataset_add": (302, 302, 302, 200, 302, 200),
    "admin:retrieval_dataset_history": (302, 302, 302, 200, 302, 200),
    "admin:retrieval_dataset_delete": (302, 302, 302, 200, 302, 200),
    "admin:retrieval_dataset_change": (302, 302, 302, 200, 302, 200),
    "admin/retrieval/dataset/<path:object_id>/": (302, 302, 302, 302, 302, 302),
    "admin:retrieval_image_changelist": (302, 302, 302, 200, 302, 200),
    "admin:retrieval_image_add": (302, 302, 302, 200, 302, 200),
    "admin:retrieval_image_history": (302, 302, 302, 200, 302, 200),
    "admin:retrieval_image_delete": (302, 302, 302, 200, 302, 200),
    "admin:retrieval_image_change": (302, 302, 302, 200, 302, 200),
    "admin/retrieval/image/<path:object_id>/": (302, 302, 302, 302, 302, 302),
    "admin:retrieval_importjob_changelist": (302, 302, 302, 200, 302, 200),
    "admin:retrieval_importjob_add": (302, 302, 302, 200, 302, 200),
    "admin:retrieval_importjob_history": (302, 302, 302, 200, 302, 200),
    "admin:retrieval_importjob_delete": (302, 302, 302, 200, 302, 200),
    "admin:retrieval_importjob_change": (302, 302, 302, 200, 302, 200),
    "admin/retrieval/importjob/<path:object_id>/": (302, 302, 302, 302, 302, 302),
    "admin:retrieval_evaluation_changelist": (302, 302, 302, 200, 302, 200),
    "admin:retrieval_evaluation_add": (302, 302, 302, 200, 302, 200),
    "admin:retrieval_evaluation_history": (302, 302, 302, 302, 302, 302),
    "admin:retrieval_evaluation_delete": (302, 302, 302, 302, 302, 302),
    "admin:retrieval_evaluation_change": (302, 302, 302, 302, 302, 302),
    "admin/retrieval/evaluation/<path:object_id>/": (302, 302, 302, 302, 302, 302),
    "admin:annotations_answer_changelist": (302, 302, 302, 200, 302, 200),
    "admin:annotations_answer_add": (302, 302, 302, 403, 302, 403),
    "admin:annotations_answer_history": (302, 302, 302, 200, 302, 302),
    "admin:annotations_answer_delete": (302, 302, 302, 403, 302, 403),
    "admin:annotations_answer_change": (302, 302, 302, 200, 302, 302),
    "admin/annotations/answer/<path:object_id>/": (302, 302, 302, 302, 302, 302),
    "admin:annotations_answerrevision_changelist": (302, 302, 302, 200, 302, 200),
    "admin:annotations_answerrevision_add": (302, 302, 302, 403, 302, 403),
    "admin:annotations_answerrevision_history": (302, 302, 302, 302, 302, 302),
    "admin:annotations_answerrevision_delete": (302, 302, 302, 403, 302, 403),
    "admin:annotations_answerrevision_change": (302, 302, 302, 302, 302, 302),
    "admin/annotations/answerrevision/<path:object_id>/": (302, 302, 302, 302, 302, 302),
    "admin:annotations_casevisit_changelist": (302, 302, 302, 200, 302, 200),
    "admin:annotations_casevisit_add": (302, 302, 302, 403, 302, 403),
    "admin:annotations_casevisit_history": (302, 302, 302, 200, 302, 302),
    "admin:annotations_casevisit_delete": (302, 302, 302, 403, 302, 403),
    "admin:annotations_casevisit_change": (302, 302, 302, 200, 302, 302),
    "admin/annotations/casevisit/<path:object_id>/": (302, 302, 302, 302, 302, 302),
    "admin:annotations_caseflag_changelist": (302, 302, 302, 200, 302, 200),
    "admin:annotations_caseflag_add": (302, 302, 302, 403, 302, 403),
    "admin:annotations_caseflag_history": (302, 302, 302, 200, 302, 302),
    "admin:annotations_caseflag_delete": (302, 302, 302, 403, 302, 403),
    "admin:annotations_caseflag_change": (302, 302, 302, 200, 302, 302),
    "admin/annotations/caseflag/<path:object_id>/": (302, 302, 302, 302, 302, 302),
    "admin:app_list": (302, 302, 302, 200, 302, 200),
    "admin/(?P<url>.*)$": (302, 302, 302, 404, 302, 404),
    "admin:retrieval_dicomwebsource_changelist": (302, 302, 302, 200, 302, 200),
    "admin:retrieval_dicomwebsource_add": (302, 302, 302, 200, 302, 200),
    "admin:retrieval_dicomwebsource_history": (302, 302, 302, 302, 302, 302),
    "admin:retrieval_dicomwebsource_delete": (302, 302, 302, 302, 302, 302),
    "admin:retrieval_dicomwebsource_change": (302, 302, 302, 302, 302, 302),
    "admin/retrieval/dicomwebsource/<path:object_id>/": (302, 302, 302, 302, 302, 302),
    "admin:retrieval_weightsfetch_changelist": (302, 302, 302, 200, 302, 200),
    "admin:retrieval_weightsfetch_add": (302, 302, 302, 200, 302, 200),
    "admin:retrieval_weightsfetch_history": (302, 302, 302, 200, 302, 200),
    "admin:retrieval_weightsfetch_delete": (302, 302, 302, 200, 302, 200),
    "admin:retrieval_weightsfetch_change": (302, 302, 302, 200, 302, 200),
    "admin/retrieval/weightsfetch/<path:object_id>/": (302, 302, 302, 302, 302, 302),
    "admin:axes_accessattempt_changelist": (302, 302, 302, 403, 302, 403),
    "admin:axes_accessattempt_add": (302, 302, 302, 403, 302, 403),
    "admin:axes_accessattempt_history": (302, 302, 302, 302, 302, 302),
    "admin:axes_accessattempt_delete": (302, 302, 302, 403, 302, 403),
    "admin:axes_accessattempt_change": (302, 302, 302, 403, 302, 403),
    "admin/axes/accessattempt/<path:object_id>/": (302, 302, 302, 302, 302, 302),
    "admin:axes_accesslog_changelist": (302, 302, 302, 403, 302, 403),
    "admin:axes_accesslog_add": (302, 302, 302, 403, 302, 403),
    "admin:axes_accesslog_history": (302, 302, 302, 403, 302, 403),
    "admin:axes_accesslog_delete": (302, 302, 302, 403, 302, 403),
    "admin:axes_accesslog_change": (302, 302, 302, 403, 302, 403),
    "admin/axes/accesslog/<path:object_id>/": (302, 302, 302, 302, 302, 302),
    "admin:axes_accessfailurelog_changelist": (302, 302, 302, 403, 302, 403),
    "admin:axes_accessfailurelog_add": (302, 302, 302, 403, 302, 403),
    "admin:axes_accessfailurelog_history": (302, 302, 302, 302, 302, 302),
    "admin:axes_accessfailurelog_delete": (302, 302, 302, 403, 302, 403),
    "admin:axes_accessfailurelog_change": (302, 302, 302, 403, 302, 403),
    "admin/axes/accessfailurelog/<path:object_id>/": (302, 302, 302, 302, 302, 302),
}

# Cells that main does not meet yet (route, method, persona): strict xfails, emptied as they are fixed.
# None left: branch websec made the schema and docs need a login and refused the study write API to a study's
# readers; clone, case list and question add read their body before refusing (400/415) until this branch.
KNOWN_GAPS: set[tuple[str, str, str]] = set()

NAMES = list(PERSONAS)


def _cells():
    for route, methods in EXPECTED.items():
        for method, row in methods.items():
            assert len(row) == len(NAMES), f"{route} {method}: {len(row)} codes for {len(NAMES)} personas"
            for persona, expected in zip(NAMES, row):
                marks = (
                    [pytest.mark.xfail(strict=True, reason="known gap on main (KNOWN_GAPS)")]
                    if (route, method, persona) in KNOWN_GAPS
                    else []
                )
                yield pytest.param(route, method, persona, expected, id=f"{route}-{method}-{persona}", marks=marks)


def _route_table() -> dict:
    return {r.key: r for r in routes() if not r.is_admin}


def request(client, method: str, url: str, *, api: bool):
    if method == "GET":
        return client.get(url)
    if api:
        return client.generic(method, url, data="{}", content_type="application/json")
    return client.generic(method, url, data="", content_type="application/x-www-form-urlencoded")


@pytest.mark.parametrize("route,method,persona,expected", list(_cells()))
def test_matrix(world, client, route, method, persona, expected):
    r = _route_table()[route]
    if persona != "anonymous":
        client.force_login(world.users[persona])
    response = request(client, method, url_for(r, world), api=r.is_api)
    allowed = expected if isinstance(expected, frozenset) else {expected}
    assert response.status_code in allowed, (route, method, persona, response.status_code)


@pytest.mark.parametrize(
    "route,persona,expected",
    [
        pytest.param(route, persona, code, id=f"{route}-{persona}")
        for route, row in ADMIN_EXPECTED.items()
        for persona, code in zip(NAMES, row)
    ],
)
def test_admin_matrix(world, client, route, persona, expected):
    r = {r.key: r for r in routes() if r.is_admin}[route]
    if persona != "anonymous":
        client.force_login(world.users[persona])
    response = client.get(admin_url_for(r, world))
    assert response.status_code == expected, (route, persona, response.status_code)


def test_every_route_has_an_entry():
    """A route without a row, or a row without a route, fails here: add or remove it in EXPECTED (ADMIN_EXPECTED
    for the admin's)."""
    for keys, table in [
        ({r.key for r in routes() if not r.is_admin}, EXPECTED),
        ({r.key for r in routes() if r.is_admin}, ADMIN_EXPECTED),
    ]:
        assert not keys - set(table), f"routes without an entry: {sorted(keys - set(table))}"
        assert not set(table) - keys, f"entries naming no route: {sorted(set(table) - keys)}"
    assert all(len(row) == len(NAMES) for row in ADMIN_EXPECTED.values())


def test_api_entries_match_the_schema():
    """Every API route is in the schema and vice versa; its row tests GET and exactly the schema's writes."""
    operations = api_operations()
    api_routes = {openapi_path(r): r for r in _route_table().values() if r.is_api}
    documented = {p for p in api_routes if p in operations}
    undocumented = {r.key for p, r in api_routes.items() if p not in operations}
    assert undocumented == {"api-schema", "api-docs", "api-redoc"}, undocumented  # the schema's own views
    assert set(operations) == documented, set(operations) - documented
    for path in documented:
        key = api_routes[path].key
        writes = {m.upper() for m in operations[path] if m in WRITE_METHODS}
        assert set(EXPECTED[key]) == {"GET", *writes}, (key, sorted(EXPECTED[key]), sorted(writes))


def test_page_entries_test_get_and_post():
    for key, route in _route_table().items():
        if not route.is_api:
            assert set(EXPECTED[key]) == {"GET", "POST"}, key


def test_known_gaps_name_cells_of_the_table():
    for route, method, persona in KNOWN_GAPS:
        assert method in EXPECTED.get(route, {}) and persona in NAMES, (route, method, persona)
