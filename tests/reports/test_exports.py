"""Downloads load in pandas/json and reproduce the report: long CSV, JSON, iMRMC CSV, HTML, PDF."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from readerstudy.models import StudyStatus
from reports import exports, tables
from reports.build import SCHEMA, report_for_study
from reports.options import ReportOptions, options_parse
from tests.conftest import client_for
from tests.reports import independent as ind


def _get(client, g, fmt: str, query: str = "") -> bytes:
    response = client.get(f"/reports/studies/{g.study.pk}/download/{fmt}/{query}")
    assert response.status_code == 200, response.content[:500]
    return response


@pytest.fixture
def choose(generate):
    return generate(mode="choose_k", n_cases=12, n_readers=3, q=0.6, seed=4, missing={2: [5]})


def test_json_download_is_the_report(client, researcher, choose):
    data = json.loads(_get(client_for(client, researcher), choose, "json").content)
    direct = report_for_study(study=choose.study, options=ReportOptions())
    data.pop("generated_at"), direct.pop("generated_at")
    assert data == direct
    assert data["schema"] == SCHEMA and data["interim"] is False


def test_long_csv_loads_in_pandas_and_reproduces_table_2(client, researcher, choose):
    response = _get(client_for(client, researcher), choose, "csv")
    assert response["Content-Type"].startswith("text/csv")
    df = pd.read_csv(io.BytesIO(response.content))
    assert len(df) == 3 * 12 * 10  # reader × case × candidate, unanswered cases included
    assert df.loc[df.answered == 0, "case_id"].nunique() == 1
    report = report_for_study(study=choose.study, options=ReportOptions())
    key = choose.run.name
    used = df[df.in_analysis == 1]
    assert used.case_id.nunique() == report["n_cases"] == 11
    agree = (used.selected == used[f"{key}__selected"]).groupby(used.reader).mean() * 100
    for reader, value in agree.items():
        assert value == pytest.approx(report["choose_k"]["methods"][key]["reader_agreement"][reader]["estimate"])
    # the consensus from the CSV: most votes, then the lower catalogue position
    votes = used.groupby(["case_id", "candidate_position"]).selected.sum().reset_index()
    votes = votes.sort_values(["case_id", "selected", "candidate_position"], ascending=[True, False, True])
    votes["consensus"] = votes.groupby("case_id").cumcount() < 5
    merged = used.merge(votes[["case_id", "candidate_position", "consensus"]], on=["case_id", "candidate_position"])
    with_consensus = (merged.selected == merged.consensus).groupby(merged.reader).mean() * 100
    for reader, value in with_consensus.items():
        assert value == pytest.approx(report["choose_k"]["consensus"]["reader_agreement"][reader]["estimate"])
    assert set(df.columns) >= {
        "submitted_at",
        "answer_active_ms",
        "visit_active_ms",
        "shown_position",
        "provenance",
        f"{key}__distance",
        f"{key}__rank",
        "query_image_id",
        "candidate_image_id",
    }
    assert json.loads(df.provenance.iloc[0])[0]["run"] == choose.run.pk


def test_long_csv_of_a_ranking_study_reproduces_ndcg(client, researcher, generate):
    g = generate(mode="rank_all", n_cases=8, n_readers=2, q=0.5, seed=6)
    df = pd.read_csv(io.BytesIO(_get(client_for(client, researcher), g, "csv").content))
    report = report_for_study(study=g.study, options=ReportOptions())
    truth = df[df.reader == report["ranking"]["ground_truth"]].sort_values(["case_position", "candidate_position"])
    ranks = truth["rank"].to_numpy().reshape(8, 10)
    model = truth[f"{g.run.name}__rank"].to_numpy().reshape(8, 10)
    assert ind.ndcg(model, ranks, 10).mean() == pytest.approx(
        report["ranking"]["compared"][g.run.name]["metrics"]["ndcg@10"]["estimate"]
    )


def test_imrmc_file_loads_and_matches_the_report(client, researcher, choose):
    df = pd.read_csv(io.BytesIO(_get(client_for(client, researcher), choose, "imrmc").content))
    assert list(df.columns) == ["readerID", "caseID", "modalityID", "score"]
    report = report_for_study(study=choose.study, options=ReportOptions())
    key = choose.run.name
    assert df.caseID.nunique() == report["n_cases"] and set(df.modalityID) == {key}
    per_reader = df.groupby("readerID").score.mean() * 100
    for reader, value in per_reader.items():
        assert value == pytest.approx(report["choose_k"]["methods"][key]["reader_agreement"][reader]["estimate"])
    assert df.score.mean() * 100 == pytest.approx(
        report["choose_k"]["methods"][key]["mean_reader_agreement"]["estimate"]
    )


def test_imrmc_of_ranking_and_rating_studies(client, researcher, generate):
    c = client_for(client, researcher)
    g = generate(mode="rank_all", n_cases=6, n_readers=2, q=0.5)
    df = pd.read_csv(io.BytesIO(_get(c, g, "imrmc", "?p=3,10").content))
    report = report_for_study(study=g.study, options=ReportOptions())
    gt = df[df.readerID == report["ranking"]["ground_truth"]]
    for p in (3, 10):
        assert gt[gt.modalityID == f"{g.run.name}@ndcg{p}"].score.mean() == pytest.approx(
            report["ranking"]["compared"][g.run.name]["metrics"][f"ndcg@{p}"]["estimate"]
        )
    other = g.readers[1].username
    assert df[(df.readerID == other) & (df.modalityID == f"{g.run.name}@ndcg10")].score.mean() == pytest.approx(
        report["subgroups"]["reader"]["groups"][other]["statistics"][g.run.name]["ndcg@10"]
    )
    r = generate(mode="rate", n_cases=6, n_readers=2, q=0.8, seed=3)
    df = pd.read_csv(io.BytesIO(_get(c, r, "imrmc").content))
    rep = report_for_study(study=r.study, options=ReportOptions())
    per_case = df.groupby("caseID").score.mean()
    assert per_case.mean() == pytest.approx(rep["rating"]["methods"][r.run.name]["mean_case_spearman"]["estimate"])


def test_printable_html_and_pdf(client, researcher, generate):
    g = generate(mode="rank_all", n_cases=6, n_readers=3, q=0.5, status=StudyStatus.OPEN)
    c = client_for(client, researcher)
    html = _get(c, g, "html").content.decode()
    report = report_for_study(study=g.study, options=ReportOptions())
    assert "Interim report" in html and g.study.name in html
    assert tables.fmt(report["ranking"]["compared"][g.run.name]["metrics"]["ndcg@10"]) in html
    assert html.count("data:image/png;base64,") >= 2 and "<link" not in html  # standalone
    pdf = _get(c, g, "pdf")
    assert pdf.content.startswith(b"%PDF") and pdf["Content-Type"] == "application/pdf"
    assert pdf.content.count(b"/Type /Page\n") + pdf.content.count(b"/Type /Page ") >= 2
    assert "interim" in pdf["Content-Disposition"]


def test_file_names_carry_only_the_study_id_and_name(client, researcher, generate):
    g = generate(mode="choose_k", n_cases=3, n_readers=2, name='Effusion "5/10"; rm -rf')
    disposition = _get(client_for(client, researcher), g, "json")["Content-Disposition"]
    assert disposition == f'attachment; filename="study-{g.study.pk}-effusion-510-rm-rf-report.json"'


def test_unknown_format_and_bad_options_are_400(client, researcher, generate):
    g = generate(mode="choose_k", n_cases=3, n_readers=2)
    c = client_for(client, researcher)
    assert c.get(f"/reports/studies/{g.study.pk}/download/xlsx/").status_code == 400
    response = c.get(f"/reports/studies/{g.study.pk}/download/json/?p=0")
    assert response.status_code == 400 and b"between 1 and 1000" in response.content


def test_export_functions_without_http(generate):
    g = generate(mode="choose_k", n_cases=4, n_readers=2)
    body, content_type, name = exports.export_file(study=g.study, options=ReportOptions(), fmt="imrmc")
    assert body.startswith(b"readerID,caseID,modalityID,score\n") and name.endswith(".imrmc.csv")
    assert np.isfinite(pd.read_csv(io.BytesIO(body)).score).all()


def test_tests_table_counts_the_cases_each_method_ranks(generate):
    g = generate(mode="rank_all", n_cases=8, n_readers=2, q=0.5, partial_method=True)
    report = report_for_study(study=g.study, options=options_parse(n_resamples=50))
    table = next(t for t in tables.report_tables(report) if t["title"] == "Hypothesis tests")
    cases = {(row[0], row[1]): row[2] for row in table["rows"]}
    assert cases[("bm25 vs random", "ndcg@10")] == "4" and cases[(f"{g.run.name} vs random", "ndcg@10")] == "8"
    assert cases[(f"{g.run.name} vs bm25", "ndcg@10")] == "4"  # compared on their common cases
