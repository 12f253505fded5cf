"""Readers never receive provenance, ranks, distances, labels, file names or other readers' answers.

The study's secrets all carry a unique marker; every page and JSON a reader can fetch is searched
for it.
"""

from __future__ import annotations

import json
import re

import pytest

from annotations import selectors, services
from readerstudy.models import Assignment, Candidate, Case
from tests.reading.factories import study_make

MARK = "zqxsecret"
IMAGE_PK_BASE = 73_190_000  # image ids in rank order, long enough to be found in any text
IMAGE_ADDRESS = re.compile(r"/read/\d+/case/\d+/(?:image|saliency)/(?:query|[0-9a-f]{16})\.png")


@pytest.fixture
def secret_study(reader, other_reader):
    return study_make(
        readers=[reader, other_reader],
        marker=MARK,
        n_cases=2,
        n_candidates=4,
        instructions="Pick the most similar.",
        image_pk_base=IMAGE_PK_BASE,
    )


def _reader_texts(client, study) -> dict[str, str]:
    """Everything the reader's browser receives for the study, by address (images: their headers).

    Pages and JSON of case 1, then every image address they name (case 1's images and case 2's
    prefetched ones): fetched, and their headers kept.
    """
    addresses = [
        "/",
        "/read/",
        f"/read/{study.pk}/",
        f"/read/{study.pk}/start/",
        f"/read/{study.pk}/case/1/",
        "/api/reading/studies/",
        f"/api/reading/studies/{study.pk}/cases/1/",
    ]
    texts = {}
    for address in addresses:
        response = client.get(address)
        texts[address] = response.content.decode()
        texts[f"{address} (headers)"] = str(response.headers)
    images = set()
    for text in texts.values():
        images |= set(IMAGE_ADDRESS.findall(text))
    for url in sorted(images):
        response = client.get(url)
        assert response.status_code == 200, url
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


def test_no_image_id_reaches_the_reader(client, reader, secret_study):
    """Image ids follow import order (or, here, the model's ranks): none may be in any text a reader gets."""
    from retrieval.models import Image

    ids = set(Image.objects.filter(dataset=secret_study.dataset).values_list("pk", flat=True))
    assert len(ids) == 2 * 5 and min(ids) == IMAGE_PK_BASE  # the factory gave the recognisable ids
    client.force_login(reader)
    texts = _reader_texts(client, secret_study)
    images = [a for a in texts if IMAGE_ADDRESS.fullmatch(a)]
    assert len(images) == 2 * 5  # case 1's query and 4 candidates, case 2's prefetched
    for address, text in texts.items():
        assert not re.search(r"/images/\d+", text), address
        for pk in ids:
            assert str(pk) not in text, (address, pk)
            assert f"{pk:x}" not in text.lower(), (address, pk)  # nor in hexadecimal
    for address in images:
        disposition = texts[address].lower()
        assert 'filename="query.png"' in disposition or 'filename="candidate.png"' in disposition


def test_no_image_id_reaches_the_reader_on_later_cases_either(client, reader, secret_study):
    from retrieval.models import Image

    ids = {str(pk) for pk in Image.objects.filter(dataset=secret_study.dataset).values_list("pk", flat=True)}
    client.force_login(reader)
    first = client.get(f"/api/reading/studies/{secret_study.pk}/cases/1/").json()
    keys = [c["key"] for c in first["candidates"][:2]]
    client.post(
        f"/api/reading/studies/{secret_study.pk}/cases/1/answer/",
        {"selected": keys, "client_token": "token-blind-1"},
        content_type="application/json",
    )
    for address in (
        f"/read/{secret_study.pk}/case/1/",
        f"/read/{secret_study.pk}/case/2/",
        f"/api/reading/studies/{secret_study.pk}/cases/1/",
        f"/api/reading/studies/{secret_study.pk}/cases/2/",
    ):
        response = client.get(address)
        assert response.status_code == 200
        text = response.content.decode()
        assert IMAGE_ADDRESS.search(text) and not re.search(r"/images/\d+", text), address
        assert not [pk for pk in ids if pk in text], address


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
        services.answer_submit(
            assignment=theirs, case=case, payload={"selected": ids[:2]}, client_token=f"token-o{cid}"
        )
    client.force_login(reader)
    payload = client.get(f"/api/reading/studies/{secret_study.pk}/cases/1/").json()
    assert payload["answer"] is None and payload["flag"] is None
    assert payload["draft"] == {"selected": [], "ranking": [], "ratings": {}, "image_answers": []}
    assert payload["case"]["done"] == 0
    for text in _reader_texts(client, secret_study).values():
        assert "otherreadersflag" not in text
    assert client.get("/api/reading/studies/").json()[0]["n_done"] == 0


def test_an_unanswered_image_question_names_candidates_by_key_not_id(client, reader):
    """Issue 12, High 1: one failed submission per candidate must not map keys to ids (ids follow ranks)."""
    study = study_make(
        readers=[reader],
        n_cases=1,
        n_candidates=3,
        questions=[{"key": "effusion", "text": "Effusion?", "choices": ["yes", "no"], "applies_to": "all"}],
    )
    client.force_login(reader)
    keys = [c["key"] for c in client.get(f"/api/reading/studies/{study.pk}/cases/1/").json()["candidates"]]
    ids = set(Candidate.objects.filter(case__study=study).values_list("pk", flat=True))
    answers = [{"question": "effusion", "image": "query", "value": "no"}]  # every candidate left unanswered
    response = client.post(
        f"/api/reading/studies/{study.pk}/cases/1/answer/",
        {"selected": keys[:2], "image_answers": answers, "client_token": "token-missing-1"},
        content_type="application/json",
    )
    assert response.status_code == 400
    missing = response.json()["extra"]["missing"]
    assert sorted(m["image"] for m in missing) == sorted(keys)
    assert all(set(m) == {"question", "image"} for m in missing)
    for value in json.loads(response.content.decode())["extra"]["missing"]:
        assert value["image"] not in {str(i) for i in ids} and not isinstance(value["image"], int)
    # the query named the reader's way too
    response = client.post(
        f"/api/reading/studies/{study.pk}/cases/1/answer/",
        {"selected": keys[:2], "image_answers": [], "client_token": "token-missing-2"},
        content_type="application/json",
    )
    assert {m["image"] for m in response.json()["extra"]["missing"]} == {"query", *keys}
