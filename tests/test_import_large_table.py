"""Issue 15, point 9: a label table of 200,000 rows (CheXpert's `train.csv` shape) imported with three images through
`manage.py import_images` as users run it. The table is streamed: the command's peak memory stays within
TABLE_EXTRA_MB of the same import without the table (it used to cost ~470 MB more, 3.3 GB for the real 150 MB
file), and the rows naming no file are one counted report line, not a line each."""

from __future__ import annotations

import csv
import sys

import pytest

from retrieval.imports.labels import CHEXPERT_OBSERVATIONS
from retrieval.models import Image, ImportJob, Label
from tests.importing import stored_name
from tests.imports_corpus.build import png
from tests.test_import_corpus import _env, run_with_peak_memory

ROWS = 200_000
#: The most a streamed table of any number of rows may add to the command's peak memory (docs/importing.md).
TABLE_EXTRA_MB = 40

pytestmark = [
    pytest.mark.db_engine("the command is another process: what it commits must be seen by the test's connection"),
    pytest.mark.django_db(transaction=True),
]


def train_csv(path, rows: int, labelled: list[str]) -> None:
    """A CheXpert-like train.csv: Path, Sex, Age, Frontal/Lateral, AP/PA and the 14 observations."""
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_OBSERVATIONS])
        values = ("1.0", "0.0", "-1.0", "", "")
        for i in range(rows):
            patient, study = divmod(i, 3)
            name = labelled[i] if i < len(labelled) else f"patient{patient:05d}/study{study + 1}/view1_frontal.jpg"
            observations = [values[(i * 7 + j) % 5] for j in range(len(CHEXPERT_OBSERVATIONS))]
            observations[2] = "1.0"  # Cardiomegaly
            writer.writerow([f"CheXpert-v1.0/train/{name}", "Female", str(20 + i % 60), "Frontal", "AP", *observations])


def import_images(*args: str) -> tuple[int, str, float]:
    """`manage.py import_images ... --sync` in its own process: (exit status, output, peak VmHWM in MB)."""
    return run_with_peak_memory([sys.executable, "manage.py", "import_images", *args, "--sync"], _env())


def _folder(root, names):
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png(700 + i))
    return root


def test_a_200k_row_table_is_streamed_in_bounded_memory(tmp_path):
    names = [f"patient{90000 + i}/study1/view1_frontal.png" for i in range(3)]
    table = tmp_path / "train.csv"
    train_csv(table, ROWS, names)
    # The baseline: the same command importing three images without a table.
    rc, output, baseline = import_images(
        "baseline", str(_folder(tmp_path / "baseline", [f"b{i}.png" for i in range(3)]))
    )
    assert rc == 0, output
    rc, output, peak = import_images(
        "chexpert", str(_folder(tmp_path / "train", names)), "--labels", str(table), "--label-format", "chexpert"
    )
    assert rc == 0 and "Traceback" not in output, output
    print(
        f"peak memory: {baseline:.0f} MB without a table, {peak:.0f} MB with {ROWS:,} rows",
        f"({table.stat().st_size >> 20} MB)",
    )
    assert peak < baseline + TABLE_EXTRA_MB, (baseline, peak)

    job = ImportJob.objects.get(dataset__name="chexpert")
    assert job.status == "succeeded" and job.n_imported == 3, (job.status, job.error)
    for name in names:  # the three rows naming the files labelled them (the table's extra leading folders apart)
        image = Image.objects.get(import_job=job, source_name=stored_name(job.dataset, name))
        assert Label.objects.get(image=image, name="Cardiomegaly").value_num == 1.0
    no_file = [
        r for r in job.report if "name no imported file" in r["message"] or "names no imported file" in r["message"]
    ]
    listed = [r for r in no_file if r["line"] is not None]
    (summary,) = [r for r in no_file if r["line"] is None]
    assert (
        len(listed) == 20
        and summary["message"] == f"{ROWS - 3 - 20:,} more label rows name no imported file (not listed)"
    )
    assert len(job.report) < 60, len(job.report)


def test_the_preview_of_a_large_table_reads_it_as_a_stream(tmp_path):
    """The preview counts the rows and shows samples without holding the table."""
    from retrieval.imports.labels import label_table_columns

    table = tmp_path / "train.csv"
    train_csv(table, 20_000, [])
    with table.open("rb") as stream:
        preview = label_table_columns(stream, "chexpert")
    assert preview.rows == 20_000
    assert {c.name: c.action for c in preview.columns}["Cardiomegaly"] == "label"
    assert {c.name: c.samples for c in preview.columns}["Cardiomegaly"] == ["1.0"]


def test_a_table_malformed_far_down_fails_the_import_before_any_image(tmp_path):
    """Rows are read after the source is scanned: CSV broken at row 50,000 still stores nothing."""
    from retrieval.imports import ingest, services

    names = ["patient90000/study1/view1_frontal.png"]
    table = tmp_path / "train.csv"
    train_csv(table, 50_000, names)
    with table.open("a") as out:
        out.write('CheXpert-v1.0/train/x.jpg,"Female\n')
    dataset = services.dataset_create(name="broken")
    job = services.import_job_create(
        dataset=dataset,
        source_path=_folder(tmp_path / "src", names),
        labels_path=table,
        label_format="chexpert",
        enqueue=False,
    )
    ingest.import_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and "malformed CSV in the record starting at line 50002" in job.error, job.error
    assert not Image.objects.filter(dataset=dataset).exists()
