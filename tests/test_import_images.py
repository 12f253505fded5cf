"""Importing PNG/JPEG folders and zips with label tables."""

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from retrieval.models import Image, Label
from tests.factories import csv_bytes, jpeg_bytes, png_bytes, write_files, zip_bytes
from tests.importing import image_named, report_for, run_import, stored_name

pytestmark = pytest.mark.django_db


@pytest.mark.db_engine("an import writes its images and labels in bulk (bulk_create) and its per-file report as JSON")
def test_folder_with_generic_labels(tmp_path):
    src = write_files(tmp_path / "src", {"a.png": png_bytes(1), "sub/b.jpg": jpeg_bytes(2)})
    labels = tmp_path / "labels.csv"
    labels.write_bytes(
        csv_bytes(
            [
                ["filename", "weight", "finding", "patient_id"],
                ["a.png", "172.5", "normal", "MRN-1"],
                ["sub/b.jpg", "140", "effusion", "MRN-1"],
            ]
        )
    )
    job = run_import(source=src, labels=labels)
    assert job.status == "succeeded", job.report
    assert (job.n_imported, job.n_failed, job.n_skipped) == (2, 0, 0)
    a = image_named("a.png")
    assert a.labels.get(name="weight").value_num == 172.5
    assert a.labels.get(name="finding").value_text == "normal"
    assert not a.labels.filter(name="patient_id").exists()
    b = image_named("sub/b.jpg")
    assert b.source_format == "jpeg" and a.source_format == "png"
    # one patient, one pseudonym, and the raw id is nowhere
    assert a.patient_pseudo_id and a.patient_pseudo_id == b.patient_pseudo_id
    assert "MRN-1" not in a.patient_pseudo_id


def test_renditions_and_thumbnails_are_bounded(tmp_path, settings):
    big = io.BytesIO()
    PILImage.fromarray(np.zeros((300, 2000), np.uint8)).save(big, format="PNG")
    src = write_files(tmp_path / "src", {"wide.png": big.getvalue()})
    run_import(source=src)
    image = Image.objects.get()
    assert (image.width, image.height) == (2000, 300)
    with image.rendition.open("rb") as fh:
        assert max(PILImage.open(fh).size) == settings.RENDITION_MAX_SIDE
    with image.thumbnail.open("rb") as fh:
        assert max(PILImage.open(fh).size) == settings.THUMBNAIL_MAX_SIDE
    with image.original.open("rb") as fh:
        assert fh.read() == big.getvalue()  # the original is kept byte for byte


def test_zip_import(tmp_path):
    archive = tmp_path / "images.zip"
    archive.write_bytes(zip_bytes({"x/1.png": png_bytes(1), "x/2.png": png_bytes(2), "__MACOSX/._1.png": b"junk"}))
    job = run_import(source=archive)
    assert job.n_imported == 2 and job.n_failed == 0
    ds = job.dataset
    assert set(Image.objects.values_list("source_name", flat=True)) == {
        stored_name(ds, "x/1.png"),
        stored_name(ds, "x/2.png"),
    }
    # one folder, one pseudonym; the extension is kept, no original name is
    (folder,) = {name.split("/")[0] for name in Image.objects.values_list("source_name", flat=True)}
    assert len(folder) == 12 and all(
        name.endswith(".png") for name in Image.objects.values_list("source_name", flat=True)
    )


def test_same_patient_same_pseudonym_across_imports_not_across_datasets(tmp_path):
    labels = tmp_path / "l.csv"
    labels.write_bytes(csv_bytes([["filename", "patient_id"], ["a.png", "MRN-9"], ["b.png", "MRN-9"]]))
    run_import(source=write_files(tmp_path / "s1", {"a.png": png_bytes(1)}), labels=labels, name="one")
    run_import(source=write_files(tmp_path / "s2", {"b.png": png_bytes(2)}), labels=labels, name="one")
    run_import(source=write_files(tmp_path / "s3", {"a.png": png_bytes(1)}), labels=labels, name="two")
    one = set(Image.objects.filter(dataset__name="one").values_list("patient_pseudo_id", flat=True))
    two = set(Image.objects.filter(dataset__name="two").values_list("patient_pseudo_id", flat=True))
    assert len(one) == 1 and len(two) == 1 and one != two


def test_labels_only_import_updates_existing_images(tmp_path):
    run_import(source=write_files(tmp_path / "s", {"a.png": png_bytes(1)}))
    labels = tmp_path / "l.csv"
    labels.write_bytes(csv_bytes([["filename", "grade"], ["a.png", "3"], ["ghost.png", "1"]]))
    job = run_import(labels=labels)
    assert job.status == "succeeded"
    assert Label.objects.get(name="grade").value_num == 3.0
    assert any("names no imported file" in r["message"] for r in job.report)


def test_nih_format(tmp_path):
    src = write_files(
        tmp_path / "images",
        {"00000001_000.png": png_bytes(1), "00000001_001.png": png_bytes(2), "00000002_000.png": png_bytes(3)},
    )
    header = [
        "Image Index",
        "Finding Labels",
        "Follow-up #",
        "Patient ID",
        "Patient Age",
        "Patient Gender",
        "View Position",
        "OriginalImage[Width",
        "Height]",
        "OriginalImagePixelSpacing[x",
        "y]",
        "",
    ]
    rows = [
        header,
        ["00000001_000.png", "Cardiomegaly", "0", "1", "58", "M", "PA", "2682", "2749", "0.143", "0.143", ""],
        ["00000001_001.png", "Cardiomegaly|Emphysema", "1", "1", "58", "M", "PA", "2894", "2729", "0.143", "0.143", ""],
        ["00000002_000.png", "No Finding", "0", "2", "81", "F", "AP", "2500", "2048", "0.171", "0.171", ""],
        ["00000099_000.png", "Effusion", "0", "99", "40", "F", "PA", "2500", "2048", "0.171", "0.171", ""],
    ]
    labels = tmp_path / "Data_Entry_2017.csv"
    labels.write_bytes(csv_bytes(rows))
    job = run_import(source=src, labels=labels, fmt="nih")
    assert job.n_imported == 3
    img = image_named("00000001_001.png")
    values = {lab.name: lab.value_num for lab in img.labels.all() if lab.value_num is not None}
    assert values["Cardiomegaly"] == 1 and values["Emphysema"] == 1 and values["Effusion"] == 0
    assert values["No Finding"] == 0
    assert img.view_position == "PA"
    assert image_named("00000002_000.png").view_position == "AP"
    p1 = image_named("00000001_000.png").patient_pseudo_id
    assert p1 == img.patient_pseudo_id != image_named("00000002_000.png").patient_pseudo_id
    ghost = stored_name(job.dataset, "00000099_000.png")
    assert any(ghost in r["message"] and "names no imported file" in r["message"] for r in job.report)
    assert not any("000000" in r["message"] + r["file"] for r in job.report)  # no original name is reported


def test_chexpert_keeps_uncertain_and_missing_distinct(tmp_path):
    src = write_files(
        tmp_path / "CheXpert-v1.0-small",
        {
            "train/patient00001/study1/view1_frontal.jpg": jpeg_bytes(1),
            "train/patient00002/study1/view1_frontal.jpg": jpeg_bytes(2),
        },
    )
    labels = tmp_path / "train.csv"
    labels.write_bytes(
        csv_bytes(
            [
                [
                    "Path",
                    "Sex",
                    "Age",
                    "Frontal/Lateral",
                    "AP/PA",
                    "No Finding",
                    "Cardiomegaly",
                    "Pleural Effusion",
                    "Edema",
                ],
                [
                    "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg",
                    "Female",
                    "68",
                    "Frontal",
                    "AP",
                    "",
                    "1.0",
                    "-1.0",
                    "",
                ],
                [
                    "CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg",
                    "Male",
                    "87",
                    "Frontal",
                    "PA",
                    "1.0",
                    "0.0",
                    "",
                    "0",
                ],
            ]
        )
    )
    job = run_import(source=src, labels=labels, fmt="chexpert")
    assert job.n_imported == 2, job.report
    one = {lab.name: lab.value_num for lab in image_named("train/patient00001/study1/view1_frontal.jpg").labels.all()}
    assert one["Cardiomegaly"] == 1.0 and one["Pleural Effusion"] == -1.0
    assert "Edema" not in one and "No Finding" not in one  # blank = missing, not 0
    two = {lab.name: lab.value_num for lab in image_named("train/patient00002/study1/view1_frontal.jpg").labels.all()}
    assert two["Cardiomegaly"] == 0.0 and two["Edema"] == 0.0 and "Pleural Effusion" not in two
    assert image_named("train/patient00002/study1/view1_frontal.jpg").view_position == "PA"


def test_reimport_is_idempotent(tmp_path):
    src = write_files(tmp_path / "s", {"a.png": png_bytes(1), "b.png": png_bytes(2)})
    run_import(source=src)
    job = run_import(source=src)
    assert Image.objects.count() == 2
    assert job.n_imported == 0 and job.n_skipped == 2
    assert all("duplicate of" in r["message"] for r in report_for(job, "a.png") + report_for(job, "b.png"))


def test_running_the_same_job_twice_does_nothing_twice(tmp_path):
    from retrieval.imports import ingest

    src = write_files(tmp_path / "s", {"a.png": png_bytes(1)})
    job = run_import(source=src)
    ingest.import_job_run(job_id=job.pk)  # a redelivered message
    job.refresh_from_db()
    assert Image.objects.count() == 1 and job.n_imported == 1 and job.attempts == 1


@pytest.mark.db_engine("ratings are bulk-created rows holding a JSON object each")
def test_rating_table_one_row_per_reader(tmp_path):
    from retrieval.models import Rating

    src = write_files(tmp_path / "s", {"n1.png": png_bytes(1), "n2.png": png_bytes(2)})
    labels = tmp_path / "ratings.csv"
    labels.write_bytes(
        csv_bytes(
            [
                ["filename", "rater", "malignancy", "spiculation", "patient_id"],
                ["n1.png", "R1", "4", "2", "LIDC-0001"],
                ["n1.png", "R2", "5", "3", "LIDC-0001"],
                ["n2.png", "R1", "1", "1", "LIDC-0002"],
            ]
        )
    )
    job = run_import(source=src, labels=labels)
    assert job.n_imported == 2, job.report
    n1 = image_named("n1.png")
    assert {r.rater: r.values for r in n1.ratings.all()} == {
        "R1": {"malignancy": 4.0, "spiculation": 2.0},
        "R2": {"malignancy": 5.0, "spiculation": 3.0},
    }
    assert not n1.labels.filter(name="rater").exists()
    assert Rating.objects.count() == 3
    assert n1.patient_pseudo_id != image_named("n2.png").patient_pseudo_id
