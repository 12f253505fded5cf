"""Folder and file names are stored as keyed pseudonyms (issue 12, High 2), and server paths are forgotten.

The scan of every place is tests/test_phi_scan.py; these are the finding's own regression tests and the
properties the rest of the platform relies on (determinism per dataset, label tables and retries still work).
"""

from __future__ import annotations

import importlib
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from core.errors import ApplicationError
from retrieval.imports import ingest, services
from retrieval.imports.names import LENGTH, component_pseudonym, path_pseudonym
from retrieval.models import Image, ImportJob, Label
from tests.factories import csv_bytes, png_bytes, write_files
from tests.importing import run_import, stored_name

pytestmark = pytest.mark.django_db


# --------------------------------------------------------------------------- the pseudonym (pure)


def test_every_component_is_replaced_and_a_known_extension_kept():
    name = path_pseudonym("k", "Doe^Jane_MRN-123_DOB19610203/chest_Doe.PNG")
    folder, file = name.split("/")
    assert len(folder) == LENGTH and file.endswith(".PNG") and len(file) == LENGTH + 4
    assert "Doe" not in name and "123" not in name
    # an unknown "extension" is part of the name; a file without one keeps none
    assert "." not in path_pseudonym("k", "Smith.John") and "." not in path_pseudonym("k", "77654033/CR1/6154")


def test_the_pseudonym_is_deterministic_per_key_and_component_wise():
    assert path_pseudonym("k", "a/b.png") == path_pseudonym("k", "./a\\b.png ")  # as tables spell paths
    assert path_pseudonym("k", "a/b.png").split("/")[0] == path_pseudonym("k", "a/c.png").split("/")[0]
    assert path_pseudonym("k", "a/b.png") == component_pseudonym("k", "a") + "/" + component_pseudonym("k", "b.png")
    assert path_pseudonym("k", "a/b.png") != path_pseudonym("other", "a/b.png")  # datasets cannot be linked


# --------------------------------------------------------------------------- the finding


def _dicomdirtests(tmp_path) -> Path:
    from pydicom.data import get_testdata_file

    folder = Path(get_testdata_file("DICOMDIR")).parent / "77654033"
    return Path(shutil.copytree(folder, tmp_path / "dicomdirtests" / "77654033")).parent


def test_pydicom_dicomdirtests_folder_names_are_not_stored_or_shown(tmp_path, client, coordinator):
    """The audit's reproduction: one folder per PatientID puts 77654033 nowhere any more."""
    source = _dicomdirtests(tmp_path)
    job = run_import(source=source)
    assert job.status == "succeeded" and job.n_imported + job.n_failed + job.n_skipped > 0, job.report
    texts = [job.source_path, job.labels_path, job.progress_note, job.error, str(job.report)]
    texts += list(Image.objects.values_list("source_name", flat=True))
    client.force_login(coordinator)
    for address in [f"/imports/{job.pk}/", f"/api/imports/{job.pk}/", f"/datasets/{job.dataset_id}/"]:
        texts.append(client.get(address).content.decode())
    for image in Image.objects.all():
        texts += [
            client.get(f"/images/{image.pk}/").content.decode(),
            client.get(f"/api/images/{image.pk}/").content.decode(),
        ]
        texts.append(client.get(f"/admin/retrieval/image/{image.pk}/change/").content.decode())
    assert not [t for t in texts if "77654033" in t or str(tmp_path) in t]
    assert Image.objects.exists()
    folder = stored_name(job.dataset, "77654033")
    assert all(name.startswith(folder + "/") for name in Image.objects.values_list("source_name", flat=True))


def test_a_label_table_imported_later_names_the_original_files(tmp_path):
    src = write_files(tmp_path / "s", {"Doe^Jane_MRN-1/a.png": png_bytes(1), "Doe^Jane_MRN-1/b.png": png_bytes(2)})
    dataset = run_import(source=src).dataset
    table = tmp_path / "later.csv"
    table.write_bytes(
        csv_bytes([["file", "grade"], ["Doe^Jane_MRN-1/a.png", "3"], ["b.png", "4"], ["Ghost^G.png", "1"]])
    )
    job = run_import(labels=table, dataset=dataset)
    grades = dict(Label.objects.filter(name="grade").values_list("image__source_name", "value_num"))
    assert grades == {
        stored_name(dataset, "Doe^Jane_MRN-1/a.png"): 3.0,
        stored_name(dataset, "Doe^Jane_MRN-1/b.png"): 4.0,
    }
    (ghost,) = [r for r in job.report if "names no imported file" in r["message"]]
    assert "Ghost" not in str(job.report) and stored_name(dataset, "Ghost^G.png") in ghost["message"]
    assert ghost["file"] == ingest.LABEL_TABLE and job.labels_path == ""


def test_label_table_problems_name_pseudonyms(tmp_path):
    src = write_files(tmp_path / "s", {"Roe^R.png": png_bytes(1)})
    table = tmp_path / "Roe_labels.csv"
    table.write_bytes(csv_bytes([["Image Index", "Finding Labels"], ["Roe^R.png", "Unicorn"], ["Roe^R.png", "Mass"]]))
    job = run_import(source=src, labels=table, fmt="nih")
    assert job.status == "succeeded" and job.report
    assert "Roe" not in str(job.report)
    assert any(r["message"].startswith(stored_name(job.dataset, "Roe^R.png") + ": unknown finding") for r in job.report)


def test_a_server_folder_is_forgotten_when_the_import_succeeds(tmp_path):
    src = write_files(tmp_path / "Doe^Jane_MRN-9", {"a.png": png_bytes(1)})
    call_command("import_images", "d", str(src), "--sync", stdout=open("/dev/null", "w"))
    job = ImportJob.objects.get()
    assert job.status == "succeeded" and job.source_path == job.labels_path == "" and "Doe" not in job.progress_note


def test_a_failed_server_import_keeps_its_path_for_a_retry_until_the_window_closes(tmp_path):
    dataset = services.dataset_create(name="d")
    missing = tmp_path / "Doe^Jane_MRN-9"
    missing.mkdir()
    job = services.import_job_create(dataset=dataset, source_path=missing, enqueue=False)
    missing.rmdir()
    ingest.import_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and job.error == "source: no such file or folder"
    assert "Doe" not in str(job.report) and job.source_path == str(missing)  # kept: the folder may come back
    ImportJob.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(hours=25))
    call_command("import_uploads_purge", stdout=open("/dev/null", "w"))
    job.refresh_from_db()
    assert job.source_path == job.labels_path == ""
    with pytest.raises(ApplicationError, match="upload them again"):
        services.import_job_retry(job=job, enqueue=False)


# --------------------------------------------------------------------------- the migration of stored names


def test_the_migration_rewrites_old_report_lines():
    migration = importlib.import_module("retrieval.migrations.0008_pseudonymise_file_names")

    class Job:
        source_path, labels_path = "/data/Roe_Richard_MRN-5/images", "/data/Roe_labels.csv"

    key = "secret"
    old = [
        {
            "file": "Doe^Jane/a.png",
            "line": None,
            "status": "skipped",
            "message": "duplicate of Doe^Jane/b.png (same content)",
        },
        {
            "file": "Roe_labels.csv",
            "line": 3,
            "status": "warning",
            "message": "label row for 'Ghost^G.png' names no imported file",
        },
        {
            "file": "Roe_labels.csv",
            "line": 4,
            "status": "warning",
            "message": "Doe^Jane/a.png: unknown finding 'X' ignored",
        },
        {
            "file": "Roe_labels.csv",
            "line": 1,
            "status": "warning",
            "message": "column 'PatientName' looks like a patient identifier and was not imported",
        },
        {
            "file": "images",
            "line": None,
            "status": "failed",
            "message": "/data/Roe_Richard_MRN-5/images: no such file or folder",
        },
    ]
    new = [migration._line(entry, Job, key) for entry in old]
    assert [e["file"] for e in new] == [
        path_pseudonym(key, "Doe^Jane/a.png"),
        "label table",
        "label table",
        "label table",
        "source",
    ]
    assert new[0]["message"] == f"duplicate of {path_pseudonym(key, 'Doe^Jane/b.png')} (same content)"
    assert new[1]["message"] == f"label row for {path_pseudonym(key, 'Ghost^G.png')!r} names no imported file"
    assert new[2]["message"].startswith(path_pseudonym(key, "Doe^Jane/a.png") + ": unknown finding")
    assert new[3]["message"] == old[3]["message"]
    assert new[4]["message"] == "source: no such file or folder"
    assert not any(word in str(new) for word in ("Doe", "Roe", "Ghost"))


def test_a_short_source_name_is_replaced_as_a_whole_word_only():
    migration = importlib.import_module("retrieval.migrations.0008_pseudonymise_file_names")

    class Job:
        source_path, labels_path = "/srv/s/", ""

    assert migration._scrub_paths("/srv/s: no such file or folder", Job) == "source: no such file or folder"
    assert migration._scrub_paths("s: 3 files exceed the limit", Job) == "source: 3 files exceed the limit"


def test_a_file_that_cannot_be_read_is_reported_without_its_path(tmp_path, monkeypatch):
    src = write_files(tmp_path / "Roe_R", {"Doe^Jane/a.png": png_bytes(1), "b.png": png_bytes(2)})
    real = Path.read_bytes

    def failing(self):
        if self.name == "a.png":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", failing)
    job = run_import(source=src)
    (line,) = [r for r in job.report if r["status"] == "failed"]
    assert line["file"] == stored_name(job.dataset, "Doe^Jane/a.png") and "Permission denied" in line["message"]
    assert "Doe" not in str(job.report) and "Roe_R" not in str(job.report) and str(tmp_path) not in str(job.report)


def test_the_admin_finds_an_image_by_its_original_name(tmp_path, client, django_user_model):
    """Coordinators hold their files: the admin's image search takes an original path or base name."""
    src = write_files(tmp_path / "s", {"Doe^Jane_MRN-1/chest.png": png_bytes(1), "other.png": png_bytes(2)})
    dataset = run_import(source=src).dataset
    client.force_login(django_user_model.objects.create_superuser(username="root", password="pw"))
    wanted = stored_name(dataset, "Doe^Jane_MRN-1/chest.png")
    for term in ("Doe^Jane_MRN-1/chest.png", "chest.png", wanted):
        page = client.get("/admin/retrieval/image/", {"q": term}).content.decode()
        assert wanted in page and stored_name(dataset, "other.png") not in page, term
    page = client.get("/admin/retrieval/image/", {"q": "nothing.png"}).content.decode()
    assert wanted not in page


def test_the_migration_pseudonymises_the_name_of_an_earlier_case_list(django_user_model):
    """readerstudy/0003 on a study stored before: its case list's upload name becomes the pseudonym."""
    from django.apps import apps

    from readerstudy.models import Study
    from retrieval.models import Dataset

    migration = importlib.import_module("readerstudy.migrations.0003_case_list_name_pseudonym")
    dataset = Dataset.objects.create(name="d")
    config = {"file_name": "Doe^Jane cases.csv", "sha256": "x", "n_cases": 1}
    study = Study.objects.create(
        name="s", dataset=dataset, mode="rank_all", seed=1, builder="case_list", builder_config=config
    )
    other = Study.objects.create(
        name="t", dataset=dataset, mode="rank_all", seed=1, builder="random", builder_config={}
    )
    migration.pseudonymise(apps, None)
    study.refresh_from_db(), other.refresh_from_db()
    assert study.builder_config == {**config, "file_name": stored_name(dataset, "Doe^Jane cases.csv")}
    assert other.builder_config == {}
