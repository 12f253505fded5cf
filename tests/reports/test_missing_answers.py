"""Missing answers: statistics on the cases every reader answered, and the report says so."""

from __future__ import annotations

import numpy as np
import pytest

from annotations.models import AnswerItem
from readerstudy.models import Assignment, Candidate
from reports.build import report_for_study
from reports.options import options_parse
from tests.reports import independent as ind


def _report(g, **kw):
    return report_for_study(study=g.study, options=options_parse(**kw))


def test_statistics_use_the_cases_answered_by_every_reader(generate):
    g = generate(mode="choose_k", n_cases=10, n_readers=3, q=0.6, missing={0: [1, 2], 2: [2, 7]})
    report = _report(g)
    assert report["n_cases"] == 7 and report["data"]["n_cases_incomplete"] == 3
    assert "7 of 10 cases answered by all 3 readers" in report["data"]["note"]
    complete = {r["name"]: r["complete"] for r in report["readers"]}
    assert complete == {g.readers[0].username: False, g.readers[1].username: True, g.readers[2].username: False}
    assert [r["n_answered"] for r in report["readers"]] == [8, 10, 8]
    sel = g.values[g.complete].astype(bool)
    assert report["choose_k"]["fleiss_kappa"]["estimate"] == pytest.approx(ind.fleiss(sel))


def test_an_answer_missing_items_is_incomplete(generate):
    g = generate(mode="rank_all", n_cases=5, n_readers=2, q=0.5)
    answer = g.study.cases.order_by("position")[3].answers.first()
    AnswerItem.objects.filter(answer=answer).order_by("pk").first().delete()
    report = _report(g)
    assert report["n_cases"] == 4 and report["data"]["n_cases_incomplete"] == 1


def test_reader_without_any_answer_is_left_out_and_named(generate, django_user_model):
    g = generate(mode="choose_k", n_cases=6, n_readers=2, q=0.6)
    late = django_user_model.objects.create(username="zz-late")
    Assignment.objects.create(study=g.study, reader=late, seed=1)
    report = _report(g)
    assert report["n_cases"] == 6 and report["n_readers"] == 2
    assert report["data"]["excluded_readers"] == ["zz-late"] and "zz-late" in report["data"]["note"]


def test_no_complete_case_gives_an_empty_report_not_an_error(generate):
    g = generate(mode="rate", n_cases=4, n_readers=2, q=0.5, missing={0: [0, 1], 1: [2, 3]})
    report = _report(g, n_resamples=100)
    assert report["n_cases"] == 0 and report["rating"] is None and report["tests"] is None
    assert report["data"]["n_cases_incomplete"] == 4


def test_study_without_answers(generate):
    g = generate(mode="choose_k", n_cases=3, n_readers=2, missing={0: [0, 1, 2], 1: [0, 1, 2]})
    report = _report(g)
    assert report["n_readers"] == 0 and report["n_cases"] == 0
    assert report["data"]["note"].startswith("No reader has answered yet")


def test_cases_with_another_catalogue_size_are_left_out(generate):
    g = generate(mode="choose_k", n_cases=5, n_readers=2, q=0.6)
    case = g.study.cases.order_by("position")[4]
    Candidate.objects.create(case=case, image_id=int(g.query_ids[0]), position=99, provenance=[])
    report = _report(g)
    assert report["data"]["excluded_case_ids"] == [case.pk] and report["n_cases"] == 4
    sel = g.values[:4].astype(bool)
    assert report["choose_k"]["fleiss_kappa"]["estimate"] == pytest.approx(ind.fleiss(sel))
    assert np.isfinite(report["choose_k"]["methods"][g.run.name]["mean_reader_agreement"]["estimate"])
