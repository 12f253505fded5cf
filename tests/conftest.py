"""Shared fixtures: personas, isolated media folders, a real Celery worker process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from core.roles import COORDINATOR, READER, RESEARCHER, user_set_roles
from core.workers import ROLES, worker_argv

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def pytest_configure(config):
    """Under pytest-xdist, each worker needs its own DATA_DIR and Redis database (tests/xdist_isolation.py), set
    before pytest-django reads the settings: `-p tests.xdist_isolation`, as the Makefile passes it."""
    if os.environ.get("PYTEST_XDIST_WORKER") and "tests.xdist_isolation" not in sys.modules:
        raise pytest.UsageError("pytest -n: add `-p tests.xdist_isolation` (see the Makefile's XDIST)")


@pytest.hookimpl(trylast=True)  # after pytest-django's order (db tests, transactional tests, the others)
def pytest_collection_modifyitems(config, items):
    """Every `db_engine` mark says why the test depends on the database engine (the PostgreSQL pass runs only
    those, so the reason is what keeps a test in it): `@pytest.mark.db_engine("select_for_update ...")`."""
    for item in items:
        for mark in item.iter_markers("db_engine"):
            if len(mark.args) != 1 or not isinstance(mark.args[0], str) or not mark.args[0].strip():
                raise pytest.UsageError(
                    f"{item.nodeid}: @pytest.mark.db_engine takes one argument, the reason "
                    f"why the test depends on the database engine"
                )
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # The acceptance journey (minutes; no test database) first, beside the other worker's tests, not as
        # the last test with the other worker idle.
        items.sort(key=lambda item: item.get_closest_marker("acceptance") is None)


_THREADED = ("torch", "faiss", "sklearn", "scipy")  # libraries that bring their own thread pools
_limited: list[frozenset] = []


def limit_threads(*, torch: bool = False) -> None:
    """Run torch, BLAS and OpenMP single-threaded in this process: on a shared 2-core machine, multi-threaded
    small ops wait at barriers for descheduled threads and a test can take 30× longer; one thread is steady
    (and a model trains to the same numbers from one run of the suite to the next).

    `torch=True` imports torch first. Applied again whenever one of those libraries has been imported since
    (each starts its own pool). Worker processes started by the tests keep the product's own settings."""
    if torch:
        import torch as _  # noqa: F401
    loaded = frozenset(name for name in _THREADED if name in sys.modules)
    if not _limited or _limited[-1] != loaded:
        from threadpoolctl import threadpool_limits

        if "torch" in loaded:
            sys.modules["torch"].set_num_threads(1)
        threadpool_limits(limits=1)
        _limited.append(loaded)


@pytest.fixture(autouse=True)
def _one_thread_per_process(request):
    """One thread for every test (tests marked `ml` import torch first, so that their training runs on one)."""
    limit_threads(torch=request.node.get_closest_marker("ml") is not None)
    yield


@pytest.fixture(autouse=True)
def _isolated_storage(settings, tmp_path):
    """Every test writes media, uploads and artefacts into its own temporary folder."""
    # A fast hasher: the personas' passwords are not what the tests are about (PBKDF2 costs ~0.3 s each).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.UPLOAD_ROOT = tmp_path / "uploads"
    settings.ARTEFACT_ROOT = tmp_path / "artefacts"
    settings.IMAGE_LINK_ROOT = tmp_path / "reader-links"
    yield


def _user(django_user_model, username, roles):
    user = django_user_model.objects.create_user(username=username, password="pw-" + username)
    user_set_roles(user=user, roles=roles)
    return user


@pytest.fixture
def coordinator(db, django_user_model):
    return _user(django_user_model, "coordinator", [COORDINATOR])


@pytest.fixture
def reader(db, django_user_model):
    return _user(django_user_model, "reader", [READER])


@pytest.fixture
def other_reader(db, django_user_model):
    return _user(django_user_model, "other_reader", [READER])


@pytest.fixture
def researcher(db, django_user_model):
    return _user(django_user_model, "researcher", [RESEARCHER])


@pytest.fixture
def phantom_dataset(db, tmp_path):
    """60 imported phantom radiographs with known findings (tests/runs/conftest.py: make_phantom_dataset)."""
    from tests.runs.conftest import make_phantom_dataset

    return make_phantom_dataset(tmp_path / "phantoms", n=60)


@pytest.fixture
def nobody(db, django_user_model):
    """Logged in, but without any role."""
    return django_user_model.objects.create_user(username="nobody", password="pw-nobody")


def client_for(client, user):
    client.force_login(user)
    return client


def worker_database_url() -> str:
    """The DATABASE_URL under which a separate process sees the test database."""
    db = django_settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    from urllib.parse import quote

    user = quote(db.get("USER") or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


class Worker:
    """The platform's workers as users start them (`manage.py worker cpu` and `… gpu`: core.workers),
    one process per role, over one broker and the test database.

    Only the environment differs from a user's: the test database, media, artefact and checkpoint folders and broker,
    JOB_STALE_SECONDS=2 so that the takeover of a killed worker's job is seen within a test, the requeue every
    second (JOB_REQUEUE_SECONDS=1, JOB_REQUEUE_GRACE_SECONDS=1: a job whose task never reached the broker is sent
    within a test), `env` of the test, and one
    torch/OpenMP/BLAS thread, as in the test process (limit_threads): with two threads a training run in a
    worker took 23 s alone and 47-83 s beside the other work of a shared two-core machine."""

    def __init__(
        self,
        broker_url: str,
        data_dir: Path,
        media_root: Path,
        artefact_root: Path,
        roles: tuple[str, ...] = ROLES,
        env: dict[str, str] | None = None,
    ):
        self.broker_url = broker_url
        self.log = data_dir / f"worker-{uuid.uuid4().hex[:6]}.log"
        env = {
            **os.environ,
            "DATABASE_URL": worker_database_url(),
            "CELERY_BROKER_URL": broker_url,
            "DATA_DIR": str(django_settings.DATA_DIR),
            "MEDIA_ROOT": str(media_root),
            "UPLOAD_ROOT": str(data_dir / "uploads"),
            "ARTEFACT_ROOT": str(artefact_root),
            "WEIGHTS_DIR": str(django_settings.WEIGHTS_DIR),
            "DEBUG": "true",
            "JOB_STALE_SECONDS": "2",
            "JOB_REQUEUE_SECONDS": "1",
            "JOB_REQUEUE_GRACE_SECONDS": "1",
            **{var: "1" for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
            **(env or {}),
        }
        out = self.log.open("wb")
        self.procs = [
            subprocess.Popen(
                worker_argv(role, name=f"{role}-{uuid.uuid4().hex[:6]}@%h"),
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            for role in roles
        ]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def exited(self) -> int | None:
        """The exit code of a worker process that ended, else None."""
        return next((p.returncode for p in self.procs if p.poll() is not None), None)

    def pool_pids(self) -> list[int]:
        """The pids of the worker processes' children (the prefork pool; none for the solo pool)."""
        pids = []
        for proc in self.procs:
            for task in Path(f"/proc/{proc.pid}/task").glob("*"):
                with contextlib.suppress(OSError):
                    pids += [int(p) for p in (task / "children").read_text().split()]
        return pids

    def stop(self, sig: str = "term") -> None:
        """SIGTERM (a warm shutdown), or SIGKILL to the pool processes and the workers, as when a machine or
        container dies: nothing is left to finish the task it was running."""
        if sig == "kill":
            for pid in self.pool_pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill() if sig == "kill" else proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def send(task, broker_url: str, **kwargs) -> None:
    """Publish a task message to the given broker (whatever the test process is configured for)."""
    from config.celery import app

    with app.connection_for_write(broker_url) as conn, conn.Producer() as producer:
        task.apply_async(kwargs=kwargs, producer=producer)


def wait_until(predicate, *, timeout: float = 60, interval: float = 0.2, worker: Worker | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if worker is not None and worker.exited() is not None:
            raise AssertionError(f"worker exited with {worker.exited()}:\n{worker.output()[-4000:]}")
        time.sleep(interval)
    raise AssertionError("timed out" + (f"; worker log:\n{worker.output()[-4000:]}" if worker else ""))


@pytest.fixture
def start_worker(transactional_db, settings, tmp_path):
    """Start the real workers on a broker URL (the embedded `filesystem://localhost/` or 'redis://...'); killed at
    teardown (a warm shutdown takes 3-5 s per worker and proves nothing here: the acceptance test stops the demo's
    workers with SIGTERM). `roles` picks the queues a test needs (default: both, as `make demo` starts them)."""
    workers: list[Worker] = []

    def start(broker_url: str, roles: tuple[str, ...] = ROLES, env: dict[str, str] | None = None) -> Worker:
        w = Worker(broker_url, tmp_path, settings.MEDIA_ROOT, settings.ARTEFACT_ROOT, roles, env)
        workers.append(w)
        return w

    yield start
    for w in workers:
        w.stop("kill")


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright, one per test session (never `playwright install`)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run `make chromium` (apt-get install chromium)"
    # Playwright runs an event loop in this thread; Django's async-safety check would refuse the ORM calls
    # the browser tests make between page actions.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield b
            b.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous
