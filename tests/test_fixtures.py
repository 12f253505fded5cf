"""The example collection shipped in fixtures/ imports cleanly in each label format, as the README shows."""

from pathlib import Path

import pytest
from django.core.management import call_command

from retrieval.models import Dataset, Image, ImportJob, Label
from tests.importing import stored_name

pytestmark = pytest.mark.django_db

EXAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "example_chest"
TABLES = {"generic": "labels.csv", "nih": "Data_Entry_2017.csv", "chexpert": "chexpert.csv"}


def _import(fmt: str) -> ImportJob:
    call_command(
        "import_images",
        f"example-{fmt}",
        str(EXAMPLE),
        "--labels",
        str(EXAMPLE / TABLES[fmt]),
        "--label-format",
        fmt,
        "--sync",
        stdout=open("/dev/null", "w"),
    )
    return ImportJob.objects.get(dataset__name=f"example-{fmt}")


def _label(filename: str, dataset: str, name: str):
    image = Image.objects.get(
        dataset__name=dataset, source_name=stored_name(Dataset.objects.get(name=dataset), filename)
    )
    return image.labels.get(name=name).value


@pytest.mark.parametrize("fmt", list(TABLES))
def test_every_example_table_imports_all_eight_images_with_labels(fmt):
    job = _import(fmt)
    assert job.status == "succeeded" and (job.n_imported, job.n_failed, job.n_skipped) == (8, 0, 3), job.report
    # the label tables lying beside the images are reported as skipped, not imported
    skipped = {r["file"] for r in job.report if r["status"] == "skipped"}
    assert skipped == {stored_name(job.dataset, table) for table in TABLES.values()}
    images = Image.objects.filter(dataset=job.dataset)
    assert images.count() == 8
    assert all(image.labels.exists() for image in images)
    # three patients, pseudonymised: the table's patient ids are not stored
    pseudonyms = set(images.values_list("patient_pseudo_id", flat=True))
    assert len(pseudonyms) == 3
    assert not any(p.startswith("P0000") for p in pseudonyms)


def test_example_labels_are_read_as_their_format_means():
    _import("generic"), _import("nih"), _import("chexpert")
    first, healthy = "00000001_000.png", "00000002_000.png"
    assert _label(first, "example-generic", "ctr") == pytest.approx(0.6264)
    assert _label(first, "example-generic", "Cardiomegaly") == 1.0
    assert _label(first, "example-nih", "Cardiomegaly") == 1.0 and _label(first, "example-nih", "Effusion") == 1.0
    assert _label(healthy, "example-nih", "No Finding") == 1.0
    assert _label(healthy, "example-nih", "Cardiomegaly") == 0.0
    # CheXpert: uncertain (-1) stays -1, blank stays missing (no row), never folded into 0
    assert _label(first, "example-chexpert", "Consolidation") == -1.0
    assert not Label.objects.filter(
        image=Image.objects.get(
            dataset__name="example-chexpert",
            source_name=stored_name(Dataset.objects.get(name="example-chexpert"), first),
        ),
        name="Pleural Effusion",
    ).exists()
    assert _label(first, "example-chexpert", "Cardiomegaly") == 1.0
