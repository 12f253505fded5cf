"""DataLoader workers: one default (settings.DATALOADER_WORKERS) for runs from the commands and the web page."""

import os
import subprocess
import sys

import pytest

from retrieval.models import ModelRun
from retrieval.runs.services import run_create
from tests.factories import png_bytes, write_files
from tests.importing import run_import


def _setting(**env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "DATALOADER_WORKERS"}
    code = "import config.settings as s; print(s.DATALOADER_WORKERS)"
    return subprocess.run(
        [sys.executable, "-c", code], env={**base, "DEBUG": "true", **env}, capture_output=True, text=True
    )


def test_default_leaves_one_core_and_stays_between_0_and_4(tmp_path):
    result = _setting(DATA_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    cpus = len(os.sched_getaffinity(0))
    assert int(result.stdout) == max(0, min(4, cpus - 1))


def test_setting_is_read_from_the_environment_and_fails_loudly(tmp_path):
    assert _setting(DATA_DIR=str(tmp_path), DATALOADER_WORKERS="2").stdout.strip() == "2"
    bad = _setting(DATA_DIR=str(tmp_path), DATALOADER_WORKERS="-1")
    assert bad.returncode != 0 and "DATALOADER_WORKERS must be at least 0" in bad.stderr


@pytest.fixture
def dataset(db, tmp_path):
    return run_import(
        source=write_files(tmp_path / "s", {f"{i}.png": png_bytes(i) for i in range(4)}), name="w"
    ).dataset


def test_runs_get_the_default_unless_they_say_otherwise(dataset, settings):
    settings.DATALOADER_WORKERS = 3
    assert run_create(dataset=dataset, name="a", method="timm", enqueue=False).config["workers"] == 3
    assert (
        run_create(dataset=dataset, name="b", method="timm", config={"workers": 0}, enqueue=False).config["workers"]
        == 0
    )
    assert (
        "workers" not in run_create(dataset=dataset, name="c", method="ssim", enqueue=False).config
    )  # loads no batches


def test_web_form_runs_use_the_default(client, dataset, coordinator, settings, django_capture_on_commit_callbacks):
    settings.DATALOADER_WORKERS = 2
    client.force_login(coordinator)
    response = client.post(
        f"/datasets/{dataset.pk}/runs/new/",
        {
            "name": "web",
            "method": "timm",
            "backbone": "resnet18",
            "weights": "random",
            "metric": "cosine",
            "split_seed": 0,
            "epochs": 5,
            "lr": 1e-4,
            "batch_size": 32,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert ModelRun.objects.get(name="web").config["workers"] == 2


@pytest.mark.parametrize("command", ["embed", "train"])
def test_command_option_defaults_to_the_setting(command, settings):
    from django.core.management import load_command_class

    settings.DATALOADER_WORKERS = 3
    parser = load_command_class("retrieval", command).create_parser("manage.py", command)
    assert parser.parse_args(["ds"]).workers == 3
    assert parser.parse_args(["ds", "--workers", "0"]).workers == 0


def _loader_workers_in_a_daemonic_process(queue, workers: int) -> None:
    from types import SimpleNamespace

    from core.errors import ApplicationError
    from retrieval.runs.networks import loader_workers

    try:
        queue.put(loader_workers(SimpleNamespace(config={"workers": workers})))
    except ApplicationError as exc:
        queue.put(exc.message)


@pytest.mark.parametrize("workers, expected", [(0, 0), (2, "cannot start inside a daemonic process")])
def test_a_daemonic_process_is_refused_loader_processes_with_one_clear_line(workers, expected):
    """What a run says when its task runs in Celery's prefork pool (daemonic children) instead of the gpu
    worker's solo pool: one line naming the remedy, not Python's assertion."""
    import multiprocessing

    queue = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(
        target=_loader_workers_in_a_daemonic_process, args=(queue, workers), daemon=True
    )
    child.start()
    answer = queue.get(timeout=60)
    child.join(timeout=60)
    if isinstance(expected, int):
        assert answer == expected
    else:
        assert expected in answer and "python manage.py worker gpu" in answer and "\n" not in answer


def test_the_gpu_worker_runs_tasks_where_loader_processes_may_start():
    """The gpu role's pool runs tasks in the worker's own (non-daemonic) process; the cpu role's is prefork."""
    from core.workers import worker_argv, worker_roles

    roles = worker_roles()
    assert (roles["gpu"].pool, roles["gpu"].concurrency) == ("solo", 1)
    assert roles["cpu"].pool == "prefork" and roles["cpu"].concurrency >= 2
    argv = worker_argv("gpu")
    assert argv[argv.index("--pool") + 1] == "solo" and argv[argv.index("--queues") + 1] == "gpu"
