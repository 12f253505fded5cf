"""manage.py agreement_report: the same report as the page, in every format."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from reports.build import report_for_study
from reports.options import ReportOptions


@pytest.fixture
def study(generate):
    return generate(mode="choose_k", n_cases=6, n_readers=3, q=0.6, name="Command study").study


def _run(*args) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("agreement_report", *args, stdout=out, stderr=err)
    return out.getvalue()


def test_json_with_bootstrap_by_id_and_by_name(study):
    data = json.loads(_run(str(study.pk), "--bootstrap", "60", "--seed", "5", "--readers-too"))
    assert data["uncertainty"] == {**data["uncertainty"], "n_resamples": 60, "seed": 5}
    assert data["choose_k"]["fleiss_kappa"]["resampled"] == "cases+readers"
    by_name = json.loads(_run("Command study", "--bootstrap", "60", "--seed", "5", "--readers-too"))
    assert by_name["choose_k"]["fleiss_kappa"] == data["choose_k"]["fleiss_kappa"]
    plain = json.loads(_run(str(study.pk), "--bootstrap", "0"))
    direct = report_for_study(study=study, options=ReportOptions())
    assert plain["choose_k"] == direct["choose_k"] and plain["tests"] is None


def test_csv_imrmc_html_pdf(study, tmp_path):
    assert len(pd.read_csv(io.StringIO(_run(str(study.pk), "--format", "csv")))) == 3 * 6 * 10
    assert list(pd.read_csv(io.StringIO(_run(str(study.pk), "--format", "imrmc"))).columns) == [
        "readerID",
        "caseID",
        "modalityID",
        "score",
    ]
    out = tmp_path / "r.html"
    _run(str(study.pk), "--format", "html", "--out", str(out), "--bootstrap", "30", "--group", "reader")
    assert "By reader" in out.read_text() and "30 resamples" in out.read_text()
    _run(str(study.pk), "--format", "pdf", "--out", str(tmp_path), "--bootstrap", "0")
    pdf = next(tmp_path.glob("*.pdf"))
    assert pdf.name == f"study-{study.pk}-command-study-report.pdf" and pdf.read_bytes().startswith(b"%PDF")


def test_errors(study):
    with pytest.raises(CommandError, match="No study"):
        _run("no such study")
    with pytest.raises(CommandError, match="needs --out"):
        _run(str(study.pk), "--format", "pdf", "--bootstrap", "0")
    with pytest.raises(CommandError, match="not runs of this study's dataset"):
        _run(str(study.pk), "--runs", "987654", "--bootstrap", "0")
    with pytest.raises(CommandError, match="between 1 and 1000"):
        _run(str(study.pk), "--p", "0")
