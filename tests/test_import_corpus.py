"""Issue 15's bad-input corpus (tests/imports_corpus/build.py) imported in this process, through
`manage.py import_images` as users run it (its own process, peak memory measured) and through a real worker.

Each import must refuse every refusable input with a message naming the file, import every good file beside
them, leave no traceback, no job running, no partial row, no orphan or temporary file, and damage nothing
stored before (a good collection is imported first and its files hashed)."""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
import time

import pytest
from django.conf import settings as django_settings

from core.jobs import JobStatus
from retrieval.imports import ingest, services
from retrieval.models import Dataset, Image, ImportJob, Label
from tests.conftest import ROOT, send, wait_until, worker_database_url
from tests.imports_corpus.build import CORPUS_ENV, Source, build, count_inputs, png

#: Peak resident memory of one `manage.py import_images --sync` over any corpus source (stated in
#: docs/importing.md); the corpus's hostile files may not raise it more than FLAT_MB over a good-only import.
PEAK_RSS_MB = 500
FLAT_MB = 60


def _files(media) -> dict[str, str]:
    if not media.exists():
        return {}
    return {
        str(p.relative_to(media)): hashlib.sha256(p.read_bytes()).hexdigest() for p in media.rglob("*") if p.is_file()
    }


def _check_source(source: Source, job: ImportJob) -> None:
    report = job.report
    assert job.status == source.status, f"{source.name}: {job.status} {job.error!r}\n{report[:60]}"
    if source.error:
        assert source.error in job.error, f"{source.name}: {job.error!r}"
    for name, message in source.refused.items():
        lines = [r for r in report if r["file"] == name]
        assert lines, f"{source.name}: no report line for {name!r}"
        assert lines[0]["status"] in ("failed", "skipped") and message in lines[0]["message"], (name, lines)
    imported = set(Image.objects.filter(import_job=job).values_list("source_name", flat=True))
    assert imported == source.good, f"{source.name}: missing {source.good - imported}, extra {imported - source.good}"
    for remark in source.remarks:
        assert any(remark in r["message"] for r in report), f"{source.name}: no line with {remark!r}"
    for name, labels in source.labelled.items():
        image = Image.objects.get(import_job=job, source_name=name)
        stored = {label.name: label.value_num for label in Label.objects.filter(image=image)}
        assert stored == labels, (name, stored)
    assert len(report) < 200  # 300 table rows naming no file are one counted line


def _check_store(media, before: dict[str, str]) -> None:
    """No job running, every image complete, no orphan or temporary file, earlier files unchanged."""
    assert not ImportJob.objects.exclude(status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).exists()
    referenced = set()
    for image in Image.objects.all():
        paths = {image.original.name, image.rendition.name, image.thumbnail.name}
        assert all(paths) and all((media / p).is_file() for p in paths), image.source_name
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
