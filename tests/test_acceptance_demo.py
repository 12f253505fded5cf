"""The README's journey with the product's own launch: `make demo`, its own workers, a real browser.

`make demo` is started as a newcomer starts it (a fresh data folder, no settings in the environment:
SQLite, the embedded broker, DEBUG off, the demo's workers from core.workers). On the PostgreSQL pass
(the suite's DATABASE_URL names a PostgreSQL server) the demo gets one setting more, DATABASE_URL
naming a fresh database on that server, so the same journey runs on the production engine. The test waits
for the demo run to finish *in the demo's gpu worker* and to beat random retrieval, then in Chromium:

1. the coordinator searches with an uploaded image (embedded by the demo's cpu worker) and sees the
   run's saliency overlays, then builds a k-nearest + k-farthest study under the demo run and opens it;
2. reader1 and reader2 answer every case with the keyboard;
3. the researcher opens the report and downloads its CSV.

Then the server log is checked for the demo's hygiene (no traceback for a 403/404, no debug 404 page,
no broker or favicon noise, no log line per progress poll), SIGTERM stops the demo *and* its workers,
and a second `make demo` on the same data keeps the passwords, the session and the finished run.

Slow on purpose (a few minutes: the demo's import, then its training run); run it alone with
`pytest -m acceptance`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from playwright.sync_api import expect

from readerstudy.demo import DEMO_RUN, PHANTOM_DATASET
from tests.browser.conftest import login, shot, wait_reader_ready
from tests.conftest import ROOT, worker_database_url

pytestmark = [pytest.mark.acceptance, pytest.mark.browser, pytest.mark.worker]

# What a newcomer's shell does not have: the test suite's own settings must not leak into the demo.
SUITE_ONLY = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "DEBUG",
    "SECRET_KEY",
    "SECRET_KEY_FILE",
    "MEDIA_ROOT",
    "UPLOAD_ROOT",
    "ARTEFACT_ROOT",
    "JOB_STALE_SECONDS",
    "DJANGO_ALLOW_ASYNC_UNSAFE",
)


class Demo:
    """`make demo` in its own process group, its output in a log file."""

    def __init__(self, data_dir: Path, port: int, database_url: str | None = None):
        self.data_dir, self.port, self.database_url = data_dir, port, database_url
        self.url = f"http://127.0.0.1:{port}"
        self.log = data_dir.parent / f"demo-{time.monotonic_ns()}.log"
        env = {k: v for k, v in os.environ.items() if k not in SUITE_ONLY}
        env["DATA_DIR"] = str(data_dir)
        if database_url:  # the PostgreSQL pass: the demo's own fresh database on the suite's server
            env["DATABASE_URL"] = database_url
        self.proc = subprocess.Popen(
            ["make", "--no-print-directory", "demo", f"DEMO_ARGS=--addrport 127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.demo_pid = self.worker_pids = None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_served(self, timeout: float = 600) -> None:
        """Until the demo prints its address; records the demo's and its workers' pids."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"Workers started \(pids: cpu (\d+), gpu (\d+)\); demo pid (\d+)", self.output())
            if found and _answers(self.url + "/healthz/"):
                self.worker_pids = [int(found[1]), int(found[2])]
                self.demo_pid = int(found[3])
                return
            assert self.proc.poll() is None, f"make demo exited with {self.proc.returncode}:\n{self.output()[-5000:]}"
            time.sleep(0.5)
        raise AssertionError(f"the demo did not serve within {timeout} s:\n{self.output()[-5000:]}")

    def terminate(self) -> None:
        """SIGTERM to the demo command itself (not its process group): it must stop its workers."""
        os.kill(self.demo_pid, signal.SIGTERM)
        self.proc.wait(timeout=90)

    def kill_all(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and ") Z " not in Path(f"/proc/{pid}/stat").read_text()


def _query(demo: Demo, sql: str, *args) -> list[tuple]:
    """Rows from the demo's database: its SQLite file, or its PostgreSQL database (`?` placeholders)."""
    if demo.database_url:
        import psycopg

        with psycopg.connect(demo.database_url) as db:
            return db.execute(sql.replace("?", "%s"), args).fetchall()
    with sqlite3.connect(demo.data_dir / "db.sqlite3", timeout=30) as db:
        return db.execute(sql, args).fetchall()


def _json(value) -> dict:
    """A JSON column as SQLite (text) or PostgreSQL (jsonb, already decoded) returns it."""
    return value if isinstance(value, dict) else json.loads(value)


def _wait_for_demo_run(demo: Demo, timeout: float = 900) -> tuple[int, float]:
    """(run id, seconds from serving to finished) once the demo run is finished; fails unless it succeeded and
    its retrieval on the test part beats random (P@5 above the random expectation, t-test p < 0.05)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        rows = _query(demo, "SELECT id, status, error, metrics FROM retrieval_modelrun WHERE name = ?", DEMO_RUN)
        if rows and rows[0][1] in ("succeeded", "failed", "cancelled"):
            run_id, status, error, metrics = rows[0]
            assert status == "succeeded", f"the demo run is {status}: {error}\n{demo.output()[-5000:]}"
            retrieval = _json(metrics)["retrieval"]
            assert retrieval["n_queries"] >= 50, retrieval["n_queries"]
            assert retrieval["precision@5"] > retrieval["precision@5_random"] and retrieval["precision@5_p"] < 0.05, {
                k: v for k, v in retrieval.items() if k.startswith("precision@5")
            }
            return run_id, time.monotonic() - start
        assert demo.proc.poll() is None, demo.output()[-5000:]
        time.sleep(0.5)
    raise AssertionError(f"the demo run did not finish within {timeout} s:\n{demo.output()[-5000:]}")


@pytest.fixture
def demo_dir(tmp_path):
    return tmp_path / "demo-data"


@pytest.fixture
def demo_database():
    """None on SQLite (the demo makes its own file, as for a newcomer); on the PostgreSQL pass, the URL of a
    fresh database on the suite's server (dropped afterwards), so that the demo runs on PostgreSQL."""
    db = django_settings.DATABASES["default"]
    if not db["ENGINE"].endswith("postgresql"):
        yield None
        return
    import psycopg

    name = f"{db['NAME']}_demo_{uuid.uuid4().hex[:8]}"
    server = worker_database_url().rsplit("/", 1)[0]  # the suite's server and credentials
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_readme_journey_on_the_demo_as_launched(browser, demo_dir, demo_database, capsys):
    demo = Demo(demo_dir, _free_port(), demo_database)
    try:
        demo.wait_served()
        run_id, waited = _wait_for_demo_run(demo)
        with capsys.disabled():
            print(f"\n[acceptance] the demo run finished in the demo's gpu worker {waited:.0f} s after the site was up")
        context = browser.new_context(viewport={"width": 1400, "height": 900}, base_url=demo.url)
        page = context.new_page()
        page.set_default_timeout(30_000)
        _coordinator_searches_and_sees_saliency(page, demo, run_id)
        study_id = _coordinator_builds_knn_farthest_study(page)
        for reader in ("reader1", "reader2"):
            _reader_answers_every_case(browser, demo, study_id, reader)
        _researcher_downloads_the_report(browser, demo, study_id)
        _error_pages_are_the_projects_own(browser, demo)

        demo.terminate()  # SIGTERM stops the workers too
        assert demo.proc.returncode is not None
        assert not [pid for pid in demo.worker_pids if _alive(pid)], "a demo worker outlived the demo"
        _check_server_log(demo.output())

        # A second `make demo` on the same data: passwords, session and the finished run are kept.
        again = Demo(demo_dir, _free_port(), demo_database)
        try:
            again.wait_served()
            out = again.output()
            assert "coordinator  demo-coordinator" in out and "Queued" not in out and "Re-queued" not in out
            assert _query(again, "SELECT status FROM retrieval_modelrun WHERE id = ?", run_id) == [("succeeded",)]
            page.goto(again.url + "/")  # the coordinator's cookie from the first demo
            assert "/accounts/login/" not in page.url
            expect(page.locator(".topbar .user")).to_contain_text("coordinator")
            again.terminate()
        finally:
            again.kill_all()
        context.close()
    finally:
        demo.kill_all()


def _coordinator_searches_and_sees_saliency(page, demo: Demo, run_id: int) -> None:
    login(page, "coordinator", "demo-coordinator")
    page.goto(f"/runs/{run_id}/")
    expect(page.locator("body")).to_contain_text("succeeded")
    query = sorted((demo.data_dir / "demo" / "phantoms").rglob("*.png"))[0]
    page.goto(f"/runs/{run_id}/search/")
    page.set_input_files("input[type=file]", str(query))
    page.click("button:has-text('Search with this image')")
    page.wait_for_url(re.compile(r"/searches/\d+/$"))
    expect(page.locator("ol.results li")).to_have_count(10, timeout=120_000)  # the cpu worker embedded it
    shot(page, "acceptance-upload-search")
    # The run's Grad-CAM overlays of its test images: shown by the search page's toggle.
    (image_id,) = _query(
        demo,
        "SELECT m.image_id FROM retrieval_splitmember m JOIN retrieval_modelrun r "
        "ON r.split_id = m.split_id WHERE r.id = ? AND m.part = 'test' "
        "ORDER BY m.image_id LIMIT 1",
        run_id,
    )[0]
    page.goto(f"/runs/{run_id}/search/?image={image_id}&k=5")
    page.keyboard.press("s")
    expect(page.locator("img.saliency-overlay").first).to_be_visible()
    overlay = page.request.get(f"/runs/{run_id}/saliency/{image_id}.png")
    assert overlay.status == 200 and overlay.body()[:8] == b"\x89PNG\r\n\x1a\n"


def _coordinator_builds_knn_farthest_study(page) -> int:
    page.goto("/studies/new/")
    page.fill("input[name=name]", "Acceptance: 5 nearest + 5 farthest")
    page.fill("textarea[name=instructions]", "Pick the 5 images most similar to the query.")
    page.select_option("select[name=dataset]", label=PHANTOM_DATASET)
    page.select_option("select[name=mode]", "choose_k")
    page.fill("input[name=k]", "5")
    page.select_option("select[name=builder]", "knn_farthest")
    page.fill("input[name=seed]", "5")
    page.fill("input[name=n_queries]", "3")
    page.fill("input[name=nearest_k]", "5")
    page.select_option("select[name=run]", label=f"{DEMO_RUN} (finetune, succeeded)")
    for reader in ("reader1", "reader2"):
        page.check(f"[data-field=readers] label:has-text('{reader}') input")
    page.click("button[name=create]")
    page.wait_for_url(re.compile(r"/studies/\d+/$"))
    page.click("button:has-text('Open study')")
    expect(page.locator("[data-testid=study-status]")).to_have_text("Open")
    shot(page, "acceptance-study")
    return int(re.search(r"/studies/(\d+)/$", page.url)[1])


def _reader_answers_every_case(browser, demo: Demo, study_id: int, reader: str) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, base_url=demo.url)
    page = context.new_page()
    page.set_default_timeout(30_000)
    login(page, reader, f"demo-{reader}")
    page.goto(f"/read/{study_id}/")
    page.click("#start")
    for index in range(1, 4):
        page.wait_for_url(f"**/read/{study_id}/case/{index}/")
        wait_reader_ready(page)
        expect(page.locator("#grid .tile")).to_have_count(10)
        for digit in ("1", "3", "5", "7", "9") if reader == "reader1" else ("1", "2", "3", "4", "5"):
            page.keyboard.press(digit)
        expect(page.locator("#counter")).to_have_text("5/5")
        page.keyboard.press("Enter")
    page.wait_for_url(f"**/read/{study_id}/done/")
    context.close()


def _researcher_downloads_the_report(browser, demo: Demo, study_id: int) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, base_url=demo.url, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    login(page, "researcher", "demo-researcher")
    page.goto(f"/reports/studies/{study_id}/")
    expect(page.locator("tr", has_text="Fleiss κ")).to_be_visible()
    shot(page, "acceptance-report")
    with page.expect_download() as info:
        page.click(".downloads a:text-is('CSV')")
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text())))
    assert len(rows) == 2 * 3 * 10 and {r["reader"] for r in rows} == {"reader1", "reader2"}
    for reader, keys in (("reader1", {1, 3, 5, 7, 9}), ("reader2", {1, 2, 3, 4, 5})):  # what each pressed
        for case in {r["case_id"] for r in rows}:
            chosen = {
                int(r["shown_position"])
                for r in rows
                if r["reader"] == reader and r["case_id"] == case and r["selected"] == "1"
            }
            assert chosen == keys, (reader, case, chosen)
    context.close()


def _error_pages_are_the_projects_own(browser, demo: Demo) -> None:
    """A reader's 404 and 403 are the project's pages (DEBUG is off: no URL patterns listed)."""
    context = browser.new_context(base_url=demo.url)
    page = context.new_page()
    login(page, "reader1", "demo-reader1")
    missing = page.goto("/no-such-page/")
    assert missing.status == 404 and "URLconf" not in page.content() and "urlpatterns" not in page.content()
    forbidden = page.goto("/datasets/")
    assert forbidden.status == 403 and "Traceback" not in page.content()
    context.close()


def _check_server_log(log: str) -> None:
    assert "Traceback" not in log, log[-5000:]
    assert "No hostname was supplied" not in log
    assert not re.search(r"favicon\.ico.*\b404\b", log)
    assert "daemonic processes" not in log and "AVX2" not in log
    assert re.search(r'"GET /runs/\d+/search/\?image=\d+&k=5 HTTP/1.1" 200', log)  # request lines are logged …
    assert "poll=1" not in log and not re.search(r'"GET /api/searches/\d+/', log)  # … but not the progress polls
    assert re.search(r"Task retrieval\.tasks\.run_execute\[[^\]]+\] succeeded", log), "the demo run's task"
    assert re.search(r"Task retrieval\.tasks\.search_execute\[[^\]]+\] succeeded", log), "the upload search"
    assert "Forbidden (Permission denied): /datasets/" in log and "Not Found: /no-such-page/" in log
