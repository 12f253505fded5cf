"""A real Celery worker computes a bootstrap report; the message delivered twice does the work once."""

from __future__ import annotations

import pytest

from reports.models import ReportRun
from reports.options import ReportOptions
from reports.tasks import report_bootstrap, report_run_start
from tests.conftest import send, wait_until

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.db_engine(
        "a worker process stores the report (a JSON result) on the test database; the duplicated delivery's claim "
        "lets one run"
    ),
]


def test_bootstrap_report_on_a_worker(start_worker, generate):
    g = generate(mode="rank_all", n_cases=10, n_readers=3, q=0.5)
    worker = start_worker("filesystem://localhost/")
    run, created = report_run_start(study=g.study, options=ReportOptions(n_resamples=300, seed=2))
    assert created  # autocommit: on_commit has already sent the message
    send(report_bootstrap, "filesystem://localhost/", report_run_id=run.pk)  # and a duplicate delivery
    wait_until(lambda: ReportRun.objects.get(pk=run.pk).is_finished, worker=worker, timeout=120)
    run.refresh_from_db()
    assert run.status == "succeeded", (run.error, worker.output()[-3000:])
    assert run.attempts == 1 and run.result["uncertainty"]["n_resamples"] == 300
    assert run.result["ranking"]["compared"][g.run.name]["metrics"]["ndcg@10"]["ci_low"] is not None
    wait_until(lambda: worker.output().count("succeeded in") >= 2, worker=worker)
    assert ReportRun.objects.count() == 1
