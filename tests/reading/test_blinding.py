"""Readers never receive provenance, ranks, distances, labels, file names or other readers' answers.

The study's secrets all carry a unique marker; every page and JSON a reader can fetch is searched
for it.
"""

from __future__ import annotations

import json
import re

import pytest

from annotations import services
from readerstudy import selectors
from readerstudy.models import Assignment, Candidate, Case
from tests.reading.factories import study_make

MARK = "zqxsecret"


@pytest.fixture
def secret_study(reader, other_reader):
    return study_make(readers=[reader, other_reader], marker=MARK, n_cases=2, n_candidates=4,
                      instructions="Pick the most similar.")


def _reader_texts(client, study) -> dict[str, str]:
    """Everything the reader's browser receives for the study, by address."""
    addresses = ["/", "/read/", f"/read/{study.pk}/", f"/read/{study.pk}/case/1/",
                 "/api/reading/studies/", f"/api/reading/studies/{study.pk}/cases/1/"]
    texts = {a: client.get(a).content.decode() for a in addresses}
    for url in re.findall(r'/images/\d+/rendition/', texts[f"/read/{study.pk}/case/1/"]):
        response = client.get(url)
        assert response.status_code == 200
        texts[url] = str(response.headers)
    return texts


def test_no_secret_reaches_the_reader(client, reader, secret_study):
    client.force_login(reader)
    texts = _reader_texts(client, secret_study)
    for address, text in texts.items():
        assert MARK not in text.lower(), address
        assert "0.123456" not in text and "1.123456" not in text, address  # distances
        assert "provenance" not in text and "source_name" not in text, address
    payload = json.loads(texts[f"/api/reading/studies/{secret_study.pk}/cases/1/"])
    for c in payload["candidates"]:
        assert set(c) == {"key", "position", "url"}
    assert set(payload["query"]) == {"url"}


def test_candidates_are_named_by_opaque_keys_not_ids(client, reader, secret_study):
    client.force_login(reader)
    html = client.get(f"/read/{secret_study.pk}/case/1/").content.decode()
    keys = re.findall(r'data-key="([^"]+)"', html)
    assert len(keys) == 4
    assert all(re.fullmatch(r"[0-9a-f]{16}", k) for k in keys)
    ids = set(Candidate.objects.filter(case__study=secret_study).values_list("pk", flat=True))
    assert not {int(k, 16) for k in keys} & ids
    assert "data-candidate-id" not in html


def test_labels_are_shown_only_when_the_study_says_so(client, reader, secret_study):
    client.force_login(reader)
    secret_study.show_candidate_labels = True
    secret_study.save()
    html = client.get(f"/read/{secret_study.pk}/case/1/").content.decode()
    payload = client.get(f"/api/reading/studies/{secret_study.pk}/cases/1/").json()
    assert all(any(f"label-{MARK}" in label for label in c["labels"]) for c in payload["candidates"])
    assert f"label-{MARK}" in html
    for text in (html, json.dumps(payload)):
        assert f"PA-{MARK}" not in text  # the query's labels: never
        assert f"{MARK}-cand" not in text and f"{MARK}-query" not in text  # file names
        assert f"method-{MARK}" not in text and "0.123456" not in text


def test_other_readers_answers_drafts_and_flags_stay_theirs(client, reader, other_reader, secret_study):
    theirs = Assignment.objects.get(study=secret_study, reader=other_reader)
    order = selectors.reader_order(assignment=theirs)
    for cid in order.case_ids:
        case = Case.objects.get(pk=cid)
        ids = list(case.candidates.values_list("pk", flat=True))
        services.flag_set(assignment=theirs, case=case, comment="otherreadersflag")
        services.answer_submit(assignment=theirs, case=case, payload={"selected": ids[:2]},
                               client_token=f"token-o{cid}")
    client.force_login(reader)
    payload = client.get(f"/api/reading/studies/{secret_study.pk}/cases/1/").json()
    assert payload["answer"] is None and payload["flag"] is None
    assert payload["draft"] == {"selected": [], "ranking": [], "ratings": {}, "image_answers": []}
    assert payload["case"]["done"] == 0
    for text in _reader_texts(client, secret_study).values():
        assert "otherreadersflag" not in text
    assert client.get("/api/reading/studies/").json()[0]["n_done"] == 0
