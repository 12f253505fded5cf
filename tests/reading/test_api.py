"""The reading API: a whole session by keys, replays, conflicts, drafts, heartbeats, flags."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from annotations import selectors
from annotations.models import Answer, CaseFlag, CaseVisit
from readerstudy.models import AnswerMode, StudyStatus
from tests.reading.factories import study_make


def url(study, index, op=""):
    return f"/api/reading/studies/{study.pk}/cases/{index}/" + (f"{op}/" if op else "")


@pytest.fixture
def api(client, reader):
    client.force_login(reader)
    return client


def post(client, path, data, method="post"):
    return getattr(client, method)(path, data, content_type="application/json")


def test_whole_session_through_the_api(api, study, assignment):
    listing = api.get("/api/reading/studies/").json()
    assert listing == [
        {
            "id": study.pk,
            "name": study.name,
            "mode": "choose_k",
            "status": "open",
            "n_cases": 3,
            "n_done": 0,
            "url": f"/read/{study.pk}/",
        }
    ]
    for index in (1, 2, 3):
        payload = api.get(url(study, index)).json()
        assert payload["case"] == {"index": index, "total": 3, "done": index - 1}
        keys = [c["key"] for c in payload["candidates"]]
        assert [c["position"] for c in payload["candidates"]] == [1, 2, 3, 4, 5]
        r = post(api, url(study, index, "answer"), {"selected": keys[:2], "client_token": f"token-api-{index}"})
        assert r.status_code == 201, r.json()
        expected_next = f"/read/{study.pk}/case/{index + 1}/" if index < 3 else f"/read/{study.pk}/done/"
        assert r.json()["next_url"] == expected_next
    order = selectors.reader_order(assignment=assignment)
    assert order.done == 3 and Answer.objects.filter(assignment=assignment).count() == 3
    first_case = order.case_ids[0]
    keymap = selectors.candidate_keymap(assignment=assignment, case=study.cases.get(pk=first_case))
    shown = [c.key for c in selectors.reader_candidates(assignment=assignment, case=study.cases.get(pk=first_case))]
    stored = Answer.objects.get(assignment=assignment, case_id=first_case)
    chosen = set(stored.items.filter(selected=True).values_list("candidate_id", flat=True))
    assert chosen == {keymap[k] for k in shown[:2]}
    assert api.get("/api/reading/studies/").json()[0]["n_done"] == 3


def test_retry_with_same_token_returns_200_and_stores_once(api, study):
    keys = [c["key"] for c in api.get(url(study, 1)).json()["candidates"]]
    body = {"selected": keys[:2], "client_token": "token-retry-1"}
    assert post(api, url(study, 1, "answer"), body).status_code == 201
    again = post(api, url(study, 1, "answer"), body)
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert Answer.objects.count() == 1


def test_second_answer_is_409_without_revisions(api, study):
    keys = [c["key"] for c in api.get(url(study, 1)).json()["candidates"]]
    post(api, url(study, 1, "answer"), {"selected": keys[:2], "client_token": "token-first-1"})
    r = post(api, url(study, 1, "answer"), {"selected": keys[2:4], "client_token": "token-second"})
    assert r.status_code == 409 and "does not allow changes" in r.json()["detail"]


def test_invalid_answers_are_400_with_a_message(api, study):
    keys = [c["key"] for c in api.get(url(study, 1)).json()["candidates"]]
    cases = [
        ({"selected": keys[:1], "client_token": "token-bad-1"}, "exactly 2"),
        ({"selected": keys[:2] + ["not-a-key"], "client_token": "token-bad-2"}, "Not a candidate"),
        ({"selected": keys[:2]}, "client_token"),
        ({"selected": "abc", "client_token": "token-bad-3"}, "selected"),
        ({"selected": keys[:2], "client_token": "token-bad-4", "active_ms_delta": -5}, "active_ms_delta"),
    ]
    for body, message in cases:
        r = post(api, url(study, 1, "answer"), body)
        assert r.status_code == 400 and message in str(r.json()), (body, r.json())
    assert not Answer.objects.exists()


def test_cases_must_be_read_in_order(api, study):
    r = api.get(url(study, 2))
    assert r.status_code == 409 and r.json()["extra"] == {"next_case": 1}
    assert api.get(url(study, 4)).status_code == 404
    assert api.get(url(study, 0)).status_code == 404


def test_keys_of_another_case_are_refused(api, study):
    api.get(url(study, 1))
    keys = [c["key"] for c in api.get(url(study, 1)).json()["candidates"]]
    post(api, url(study, 1, "answer"), {"selected": keys[:2], "client_token": "token-case-1"})
    r = post(api, url(study, 2, "answer"), {"selected": keys[:2], "client_token": "token-case-2"})
    assert r.status_code == 400 and Answer.objects.count() == 1


def test_draft_roundtrip_restores_selection(api, study):
    keys = [c["key"] for c in api.get(url(study, 1)).json()["candidates"]]
    r = post(api, url(study, 1, "draft"), {"selected": [keys[3]]}, method="put")
    assert r.status_code == 200
    assert api.get(url(study, 1)).json()["draft"] == {
        "selected": [keys[3]],
        "ranking": [],
        "ratings": {},
        "image_answers": [],
    }
    assert post(api, url(study, 1, "draft"), {"selected": keys[:3]}, method="put").status_code == 400


def test_rank_and_rate_through_the_api(client, reader):
    client.force_login(reader)
    rank = study_make(mode=AnswerMode.RANK_ALL, readers=[reader], n_cases=1, n_candidates=4)
    keys = [c["key"] for c in client.get(url(rank, 1)).json()["candidates"]]
    r = post(client, url(rank, 1, "answer"), {"ranking": list(reversed(keys)), "client_token": "token-rank"})
    assert r.status_code == 201
    answer = Answer.objects.get(assignment__study=rank)
    assert answer.items.get(rank=1).shown_position == 4
    rate = study_make(mode=AnswerMode.RATE, readers=[reader], n_cases=1, n_candidates=3)
    keys = [c["key"] for c in client.get(url(rate, 1)).json()["candidates"]]
    bad = post(
        client,
        url(rate, 1, "answer"),
        {"ratings": {keys[0]: 9, keys[1]: 1, keys[2]: 1}, "client_token": "token-rate-bad"},
    )
    assert bad.status_code == 400
    ok = post(client, url(rate, 1, "answer"), {"ratings": dict(zip(keys, [5, 3, 1])), "client_token": "token-rate"})
    assert ok.status_code == 201
    assert sorted(Answer.objects.get(assignment__study=rate).items.values_list("rating", flat=True)) == [1, 3, 5]


def test_image_questions_through_the_api(client, reader):
    client.force_login(reader)
    study = study_make(
        readers=[reader],
        n_cases=1,
        n_candidates=2,
        questions=[{"key": "effusion", "text": "Effusion?", "choices": ["yes", "no"], "applies_to": "all"}],
    )
    payload = client.get(url(study, 1)).json()
    assert payload["questions"] == [
        {"key": "effusion", "text": "Effusion?", "choices": ["yes", "no"], "applies_to": "all"}
    ]
    keys = [c["key"] for c in payload["candidates"]]
    answers = [{"question": "effusion", "image": img, "value": "no"} for img in ["query", *keys]]
    r = post(client, url(study, 1, "answer"), {"selected": keys, "image_answers": answers, "client_token": "token-q-1"})
    assert r.status_code == 201, r.json()
    after = client.get(f"/read/{study.pk}/case/1/")
    assert after.status_code == 200


def test_heartbeat_and_flags(api, study, assignment):
    api.get(url(study, 1))
    r = post(api, url(study, 1, "heartbeat"), {"active_ms_delta": 50_000_000})
    assert r.status_code == 200 and r.json()["active_ms"] <= 60_000
    assert post(api, url(study, 1, "heartbeat"), {"active_ms_delta": -1}).status_code == 400
    r = post(api, url(study, 1, "flag"), {"comment": "image cut off"})
    assert r.json() == {"flagged": True, "comment": "image cut off"}
    assert api.get(url(study, 1)).json()["flag"] == {"comment": "image cut off"}
    assert post(api, url(study, 1, "flag/clear"), {}).json() == {"flagged": False, "comment": ""}
    assert not CaseFlag.objects.exists()
    assert CaseVisit.objects.filter(assignment=assignment).count() == 1


def test_closed_study_refuses_every_reading_call(api, study):
    api.get(url(study, 1))
    study.status = StudyStatus.CLOSED
    study.save()
    assert api.get(url(study, 1)).status_code == 409
    for op, method in [("draft", "put"), ("answer", "post"), ("heartbeat", "post"), ("flag", "post")]:
        r = post(api, url(study, 1, op), {"active_ms_delta": 1, "client_token": "token-closed"}, method=method)
        assert r.status_code == 409 and r.json()["detail"] == "This study is closed."
    assert api.get("/api/reading/studies/").json()[0]["status"] == "closed"


def test_draft_study_is_invisible(api, study):
    study.status = StudyStatus.DRAFT
    study.save()
    assert api.get(url(study, 1)).status_code == 404
    assert api.get("/api/reading/studies/").json() == []


def test_revisions_through_the_api(client, reader):
    client.force_login(reader)
    study = study_make(readers=[reader], n_cases=1, allow_revisions=True)
    keys = [c["key"] for c in client.get(url(study, 1)).json()["candidates"]]
    post(client, url(study, 1, "answer"), {"selected": keys[:2], "client_token": "token-v1-aaaa"})
    r = post(client, url(study, 1, "answer"), {"selected": keys[2:4], "client_token": "token-v2-aaaa"})
    assert r.status_code == 201 and r.json()["revision"] == 2
    own = client.get(url(study, 1)).json()["answer"]
    assert own["selected"] == keys[2:4] or set(own["selected"]) == set(keys[2:4])
    assert own["revision"] == 2


def test_schema_stays_clean_with_reading_endpoints(tmp_path, db):
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(out), "--fail-on-warn", "--validate")
    text = out.read_text()
    assert "/api/reading/studies/{study_id}/cases/{index}/answer/" in text and "ReadingAnswerInput" in text
