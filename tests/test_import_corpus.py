"""Issue 15's bad-input corpus (tests/imports_corpus/build.py) imported in this process, through
`manage.py import_images` as users run it (its own process, peak memory measured) and through a real worker.

Each import must refuse every refusable input with a message naming the file, import every good file beside
them, leave no traceback, no job running, no partial row, no orphan or temporary file, and damage nothing
stored before (a good collection is imported first and its files hashed)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from core.jobs import JobStatus
from retrieval.imports import ingest, services
from retrieval.models import Image, ImportJob, Label
from tests.conftest import ROOT, send, wait_until, worker_database_url
from tests.importing import stored_name
from tests.imports_corpus.build import CORPUS_ENV, Source, build, count_inputs, png

#: Peak resident memory of one `manage.py import_images --sync` over any corpus source (stated in
#: docs/importing.md); the corpus's hostile files may not raise it more than FLAT_MB over a good-only import.
PEAK_RSS_MB = 500
FLAT_MB = 60
#: The sources the command imports in its own process (each start costs seconds on a loaded CI machine; all of
#: them run in-process and on the worker): the two mixed ones, a whole-source refusal, an all-failed import and
#: a refused table.
COMMAND_LINE_SOURCES = {"mixed_folder", "mixed.zip", "bomb.zip", "all_bad", "fifo_labels.csv"}


def _files(media) -> dict[str, str]:
    if not media.exists():
        return {}
    return {
        str(p.relative_to(media)): hashlib.sha256(p.read_bytes()).hexdigest() for p in media.rglob("*") if p.is_file()
    }


def _raw(name: str) -> str:
    """The name as read (sources.printable_name undone): the pseudonym is made from it."""
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m[1], 16) + (0xDC00 if int(m[1], 16) >= 0x80 else 0)), name)


def _check_source(source: Source, job: ImportJob) -> None:
    report = job.report
    assert job.status == source.status, f"{source.name}: {job.status} {job.error!r}\n{report[:60]}"
    if source.error:  # the folder or archive is not named either (its name may name a patient)
        expected = source.error.removeprefix(f"{source.name}: ")
        assert expected in job.error and f"{source.name}:" not in job.error, f"{source.name}: {job.error!r}"
    # Files are known by their keyed pseudonyms once read (issue 12, finding 2): the report and the rows name those.
    for name, message in source.refused.items():
        lines = [r for r in report if r["file"] == stored_name(job.dataset, _raw(name))]
        assert lines, f"{source.name}: no report line for {name!r}"
        for other in (*source.good, *source.refused):  # a message naming another file names its pseudonym
            message = message.replace(other, stored_name(job.dataset, other))
        assert lines[0]["status"] in ("failed", "skipped") and message in lines[0]["message"], (name, lines)
    imported = set(Image.objects.filter(import_job=job).values_list("source_name", flat=True))
    good = {stored_name(job.dataset, name) for name in source.good}
    assert imported == good, f"{source.name}: missing {good - imported}, extra {imported - good}"
    for remark in source.remarks:
        assert any(remark in r["message"] for r in report), f"{source.name}: no line with {remark!r}"
    for name, labels in source.labelled.items():
        image = Image.objects.get(import_job=job, source_name=stored_name(job.dataset, name))
        stored = {label.name: label.value_num for label in Label.objects.filter(image=image)}
        assert stored == labels, (name, stored)
    assert len(report) < 200  # 300 table rows naming no file are one counted line


def _check_store(media, before: dict[str, str]) -> None:
    """No job running, every image complete, no orphan or temporary file, earlier files unchanged."""
    assert not ImportJob.objects.exclude(status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).exists()
    referenced = set()
    for image in Image.objects.all():
        paths = {image.original.name, image.rendition.name, image.thumbnail.name}
        assert all(paths), image.source_name
        paths |= {image.values.name} if image.values else set()  # greyscale DICOM: modality values
        assert all((media / p).is_file() for p in paths), image.source_name
        referenced |= paths
    now = _files(media)
    assert set(now) == referenced, f"orphans: {set(now) - referenced}"
    assert {p: now[p] for p in before} == before  # nothing stored earlier was touched


@pytest.fixture
def corpus(tmp_path):
    sources = build(tmp_path / "c")
    assert count_inputs(sources) >= 100
    return sources


def _stored_first(tmp_path):
    """A good collection imported before the corpus: its files must come out byte-identical."""
    folder = tmp_path / "earlier"
    folder.mkdir()
    for i in range(4):
        (folder / f"earlier_{i}.png").write_bytes(png(5000 + i))
    return folder


pytestmark = pytest.mark.django_db


def test_corpus_in_process(corpus, tmp_path, settings):
    settings.IMPORT_MAX_ARCHIVE_BYTES = int(CORPUS_ENV["IMPORT_MAX_ARCHIVE_BYTES"])
    dataset = services.dataset_create(name="corpus")
    first = services.import_job_create(dataset=dataset, source_path=_stored_first(tmp_path), enqueue=False)
    ingest.import_job_run(job_id=first.pk)
    before = _files(settings.MEDIA_ROOT)
    assert len(before) == 12
    for source in corpus:
        job = services.import_job_create(
            dataset=dataset, source_path=source.path or "", labels_path=source.labels or "", enqueue=False
        )
        ingest.import_job_run(job_id=job.pk)
        job.refresh_from_db()
        _check_source(source, job)
    _check_store(settings.MEDIA_ROOT, before)


ANOTHER_PROCESS = pytest.mark.db_engine(
    "the command and the worker are other processes: what they commit must be seen by the test's connection"
)


def _env(**extra) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": worker_database_url(),
        "DATA_DIR": str(django_settings.DATA_DIR),
        "MEDIA_ROOT": str(django_settings.MEDIA_ROOT),
        "UPLOAD_ROOT": str(django_settings.UPLOAD_ROOT),
        "DEBUG": "true",
        **CORPUS_ENV,
        **extra,
    }


def import_images(source: Source | None, *args: str, env: dict) -> tuple[int, str, float]:
    """`manage.py import_images` in its own process: (exit status, output, peak RSS in MB)."""
    argv = [sys.executable, "manage.py", "import_images", "corpus", *args]
    if source is not None:
        argv.insert(4, str(source.path))
        if source.labels:
            argv += ["--labels", str(source.labels)]
    return run_with_peak_memory(argv, env)


def run_with_peak_memory(argv: list[str], env: dict) -> tuple[int, str, float]:
    """Run a command in the checkout: (exit status, output, peak memory in MB). Peak memory of the command's own
    process: its VmHWM, read while it runs. (Its rusage ru_maxrss would not do: Linux keeps the pre-exec
    high-water mark, i.e. this test process's size at the fork, which is gigabytes once a long session has
    loaded torch.)"""
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    chunks, peak_kb = [], 0
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()))
    reader.start()
    while proc.poll() is None:
        peak_kb = max(peak_kb, _vm_hwm_kb(proc.pid))
        time.sleep(0.02)
    reader.join()
    return proc.returncode, b"".join(chunks).decode(errors="replace"), peak_kb / 1024


def _vm_hwm_kb(pid: int) -> int:
    """The process's peak resident set size so far (VmHWM, kB), 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    return int(match[1]) if match else 0


def _latest_job() -> ImportJob:
    return ImportJob.objects.order_by("-pk").first()


@ANOTHER_PROCESS
@pytest.mark.django_db(transaction=True)
def test_corpus_through_the_command_line(corpus, tmp_path, settings):
    env = _env()
    earlier = Source("earlier", _stored_first(tmp_path), good={f"earlier_{i}.png" for i in range(4)})
    rc, output, baseline = import_images(earlier, "--sync", env=env)
    assert rc == 0, output
    _check_source(earlier, _latest_job())
    before = _files(settings.MEDIA_ROOT)
    peaks = {}
    for source in [s for s in corpus if s.name in COMMAND_LINE_SOURCES]:
        rc, output, peaks[source.name] = import_images(source, "--sync", env=env)
        assert "Traceback" not in output, output
        assert rc == (0 if source.status == "succeeded" else 1), f"{source.name}: exit {rc}\n{output}"
        job = _latest_job()
        assert f"Import #{job.pk} {source.status}" in output
        _check_source(source, job)
    _check_store(settings.MEDIA_ROOT, before)
    print("peak RSS (MB):", {"good-only baseline": round(baseline)} | {k: round(v) for k, v in peaks.items()})
    worst = max(peaks, key=peaks.get)
    assert peaks[worst] < PEAK_RSS_MB, peaks
    assert peaks[worst] < baseline + FLAT_MB, (baseline, peaks)


@ANOTHER_PROCESS
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_corpus_through_a_real_worker(corpus, tmp_path, settings, start_worker, monkeypatch):
    import redis

    from retrieval.tasks import import_run
    from tests.test_worker import REDIS_URL

    redis.Redis.from_url(REDIS_URL).flushdb()
    for key, value in CORPUS_ENV.items():
        monkeypatch.setenv(key, value)
    worker = start_worker(REDIS_URL, roles=("cpu",))
    env = _env(CELERY_BROKER_URL=REDIS_URL)
    dataset = services.dataset_create(name="corpus")
    earlier = services.import_job_create(dataset=dataset, source_path=_stored_first(tmp_path), enqueue=False)
    send(import_run, REDIS_URL, job_id=earlier.pk)
    wait_until(lambda: ImportJob.objects.get(pk=earlier.pk).is_finished, worker=worker, timeout=120)
    baseline = _worker_peak_mb(worker)
    before = _files(settings.MEDIA_ROOT)
    # The first sources as users run them: the command queues the import and waits for the worker.
    by_command = corpus[:3]
    for source in by_command:
        rc, output, _ = import_images(source, env=env)
        assert "Traceback" not in output, output
        assert rc == (0 if source.status == "succeeded" else 1), f"{source.name}: exit {rc}\n{output}"
        _check_source(source, _latest_job())
    # The others queued at once, as the import form does.
    jobs = []
    for source in corpus[3:]:
        job = services.import_job_create(
            dataset=dataset, source_path=source.path or "", labels_path=source.labels or "", enqueue=False
        )
        send(import_run, REDIS_URL, job_id=job.pk)
        jobs.append((source, job))
    wait_until(lambda: all(ImportJob.objects.get(pk=job.pk).is_finished for _, job in jobs), worker=worker, timeout=300)
    for source, job in jobs:
        job.refresh_from_db()
        _check_source(source, job)
    _check_store(settings.MEDIA_ROOT, before)
    assert "Traceback" not in worker.output()
    peak = _worker_peak_mb(worker)
    print(f"worker peak RSS: {baseline:.0f} MB after a good import, {peak:.0f} MB after the corpus")
    assert peak < PEAK_RSS_MB and peak < baseline + FLAT_MB, (baseline, peak)


def _worker_peak_mb(worker) -> float:
    """The largest peak resident memory (VmHWM) among the worker's processes and their pool children."""
    pids = []
    for proc in worker.procs:
        pids.append(proc.pid)
        try:
            children = (f"/proc/{proc.pid}/task/{proc.pid}/children",)
            pids += [int(p) for p in open(children[0]).read().split()]
        except OSError:
            pass
    peaks = []
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        except OSError:
            pass
    return max(peaks)
