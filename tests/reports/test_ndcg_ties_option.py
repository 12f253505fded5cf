"""The option ndcg_ties=averaged makes the tie-averaged nDCG the headline nDCG (issue 14.3); the default stays
ties broken by the lower canonical catalogue position. Hand-computed on a catalogue of 4 with a tie."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from django.core.management import call_command

from core.errors import ApplicationError
from reports.analysis import report_inputs
from reports.build import report_for_study
from reports.exports import imrmc_rows, report_html
from reports.options import options_from_dict, options_parse
from reports.tables import report_tables

# Catalogue of N = 4. The ground-truth reader (R1) ranks candidates 0, 1, 2, 3 as 1, 2, 3, 4:
# relevance (N + 1 − rank)/2 + 0.5 = 2.5, 2.0, 1.5, 1.0; gain 2^rel − 1.
GAIN = [2**2.5 - 1, 3.0, 2**1.5 - 1, 1.0]
D2 = 1 / math.log2(3)  # discount of position 2
# The model's distances: candidates 1 and 2 tied nearest (0.2), then 0 (0.5), then 3 (0.9).
DISTANCES = [0.5, 0.2, 0.2, 0.9]
IDEAL = {1: GAIN[0], 2: GAIN[0] + GAIN[1] * D2}
# ties broken by the lower catalogue position: order 1, 2, 0, 3
BROKEN = {1: GAIN[1] / IDEAL[1], 2: (GAIN[1] + GAIN[2] * D2) / IDEAL[2]}
# tie-averaged: positions 1 and 2 both get the mean gain of candidates 1 and 2
MEAN_12 = (GAIN[1] + GAIN[2]) / 2
AVERAGED = {1: MEAN_12 / IDEAL[1], 2: (MEAN_12 + MEAN_12 * D2) / IDEAL[2]}


def _study(generate):
    """Two identical cases (so that the mean is the per-case value), two readers who agree."""
    truth = np.array([1, 2, 3, 4])
    answers = np.stack([np.stack([truth, truth], axis=-1)] * 2).astype(float)  # (C=2, M=4, R=2)
    return generate(mode="rank_all", answers=answers, distances=np.array([DISTANCES, DISTANCES]), seed=3)


def test_hand_computed_values_differ():
    # gains 4.656854, 3, 1.828427, 1; discount of position 2: 0.630930; IDCG@2 = 4.656854 + 3 · 0.630930 = 6.549643
    # broken:   @1 3 / 4.656854;          @2 (3 + 1.828427 · 0.630930) / 6.549643
    # averaged: @1 2.414214 / 4.656854;   @2 2.414214 · (1 + 0.630930) / 6.549643
    assert BROKEN[1] == pytest.approx(0.644212, abs=1e-6) and AVERAGED[1] == pytest.approx(0.518422, abs=1e-6)
    assert BROKEN[2] == pytest.approx(0.634173, abs=1e-6) and AVERAGED[2] == pytest.approx(0.601164, abs=1e-6)


@pytest.mark.parametrize("ties, expected, alternative", [("broken", BROKEN, AVERAGED), ("averaged", AVERAGED, BROKEN)])
def test_headline_ndcg_follows_the_option(generate, ties, expected, alternative):
    g = _study(generate)
    options = options_parse(p="1,2", ndcg_ties=ties, n_resamples=50, seed=1)
    report = report_for_study(study=g.study, options=options)
    s = report["ranking"]
    assert report["options"]["ndcg_ties"] == ties and s["ndcg_ties"] == ties
    assert s["conventions"]["ndcg_ties"] == ties
    model = s["compared"]["model"]["metrics"]
    for q in (1, 2):
        assert model[f"ndcg@{q}"]["estimate"] == pytest.approx(expected[q])
        assert s["per_case"]["values"]["model"][f"ndcg@{q}"] == pytest.approx([expected[q]] * 2)
        assert s["tie_averaged"]["model"][f"ndcg@{q}"] == pytest.approx(AVERAGED[q])  # always shown with ties
        # the p-value against random orders tests the headline number
        assert report["tests"]["vs_random"]["model"][f"ndcg@{q}"]["statistic"] == pytest.approx(expected[q])
    # the other convention is shown beside it, in the JSON and as a row of the table
    other = s["tie_broken"]["model"] if ties == "averaged" else s["tie_averaged"]["model"]
    assert other["n_cases_with_ties"] == 2 and other["ndcg@1"] == pytest.approx(alternative[1])
    (table,) = [t for t in report_tables(report) if t["title"].startswith("Orders scored against")]
    assert f"ndcg_ties={ties}" in table["note"]
    label = "model (ties broken)" if ties == "averaged" else "model (tie-averaged)"
    assert [row for row in table["rows"] if row[0] == label]
    if ties == "averaged":
        assert "tie-averaged" in s["conventions"]["ties"] and "ndcg_ties=averaged" in table["title"]
    html = report_html(report)
    assert f"ndcg_ties={ties}" in html and f"{expected[1]:.3f}" in html


def test_per_reader_figures_of_merit_follow_the_option(generate):
    g = _study(generate)
    averaged = options_parse(p="1,2", ndcg_ties="averaged")
    rows = imrmc_rows(report_inputs(study=g.study, options=averaged), averaged)
    scores = {(r[0], r[2]) for r in rows if r[2].endswith("@ndcg1")}
    assert {round(float(r[3]), 6) for r in rows if r[2] == "model@ndcg1"} == {round(AVERAGED[1], 6)}
    assert scores  # both readers' rows


def test_option_is_validated_and_round_trips():
    assert options_parse().ndcg_ties == "broken"
    o = options_parse(ndcg_ties="averaged")
    assert options_from_dict(json.loads(json.dumps(o.as_dict()))) == o
    assert o.key() != options_parse().key()
    with pytest.raises(ApplicationError, match="ndcg_ties must be one of averaged, broken"):
        options_parse(ndcg_ties="random")


def test_command_line_option(generate, capsys):
    g = _study(generate)
    call_command("agreement_report", str(g.study.pk), "--bootstrap", "0", "--p", "1", "--ndcg-ties", "averaged")
    data = json.loads(capsys.readouterr().out)
    assert data["ranking"]["ndcg_ties"] == "averaged"
    assert data["ranking"]["compared"]["model"]["metrics"]["ndcg@1"]["estimate"] == pytest.approx(AVERAGED[1])


def test_api_and_page_take_the_option(generate, client, researcher):
    g = _study(generate)
    client.force_login(researcher)
    data = client.get(f"/api/reports/studies/{g.study.pk}/?p=1&ndcg_ties=averaged").json()
    assert data["options"]["ndcg_ties"] == "averaged"
    assert data["ranking"]["compared"]["model"]["metrics"]["ndcg@1"]["estimate"] == pytest.approx(AVERAGED[1])
    assert client.get(f"/api/reports/studies/{g.study.pk}/?ndcg_ties=coin").status_code == 400
    page = client.get(f"/reports/studies/{g.study.pk}/?p=1&ndcg_ties=averaged").content.decode()
    assert '<option value="averaged" selected>' in page and "ndcg_ties=averaged" in page
    assert f"{AVERAGED[1]:.3f}" in page and f"{BROKEN[1]:.3f}" in page  # the headline and the 'ties broken' row
