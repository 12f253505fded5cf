"""Issue 12, finding 12: one GET with a thousand nDCG cut-offs (or model runs) must not take out a web worker.

List options are capped in reports.options with a 400 that says the limit; the page, the download and the
API all go through options_parse."""

from __future__ import annotations

import time

import pytest

from core.errors import ApplicationError
from reports.options import MAX_CUTOFFS, MAX_RUNS, options_parse
from tests.reports.factories import generate_study

THOUSAND = ",".join(str(i) for i in range(1, 1001))


@pytest.fixture
def study(db, tmp_path):
    return generate_study(mode="choose_k", n_cases=4, n_readers=2, run_dir=tmp_path / "runs").study


def test_options_parse_caps_cutoffs_and_runs():
    assert options_parse(p=",".join(map(str, range(1, MAX_CUTOFFS + 1)))).p == tuple(range(1, MAX_CUTOFFS + 1))
    with pytest.raises(ApplicationError, match=f"at most {MAX_CUTOFFS}"):
        options_parse(p=THOUSAND)
    with pytest.raises(ApplicationError, match=f"at most {MAX_RUNS}"):
        options_parse(runs=list(range(1, MAX_RUNS + 2)))
    with pytest.raises(ApplicationError, match="too long"):
        options_parse(p="1," * 6000)


@pytest.mark.parametrize("where", ["page", "download", "api"])
def test_thousand_cutoffs_is_a_quick_400(client, coordinator, study, where):
    client.force_login(coordinator)
    url = {
        "page": f"/reports/studies/{study.pk}/?p={THOUSAND}",
        "download": f"/reports/studies/{study.pk}/download/json/?p={THOUSAND}",
        "api": f"/api/reports/studies/{study.pk}/?p={THOUSAND}",
    }[where]
    start = time.monotonic()
    response = client.get(url)
    assert time.monotonic() - start < 5
    assert response.status_code == 400, response.content[:300]
    assert f"at most {MAX_CUTOFFS}" in response.content.decode()
