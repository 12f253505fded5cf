"""A small phantom collection (known, graded findings) imported into a dataset, small run configs, and
module-wide data: a collection imported or a model trained once for all the tests of a module."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
from django.test import override_settings
from PIL import Image as PILImage

from retrieval.imports import phantoms
from retrieval.models import Dataset, ModelRun
from tests.importing import run_import

# Small and fast on two CPU cores: random-initialised resnet18 at 64 px.
SMALL = {"backbone": "resnet18", "weights": "random", "resize": 72, "crop": 64, "batch_size": 16}


def make_phantom_dataset(folder, *, n: int, seed: int = 3, size: int = 128, name: str = "phantoms") -> Dataset:
    folder.mkdir(parents=True, exist_ok=True)
    items = phantoms.generate_chest_phantoms(n, seed=seed, size=size)
    for p in items:
        PILImage.fromarray(p.pixels).save(folder / p.filename)
    table = phantoms.write_generic_csv(items, folder.parent / f"{name}.csv")
    job = run_import(source=folder, labels=table, name=name)
    assert job.status == "succeeded" and job.n_imported == len(items), job.report
    return job.dataset


def make_blob_dataset(folder: Path, *, n: int, seed: int = 0, size: int = 64, name: str = "blobs") -> Dataset:
    """`n` greyscale images of one bright blob in noise, one image per patient, with two independent findings
    that small networks learn from few images in a few epochs: `Top` (the blob sits in the upper half: survives
    the training flips and small rotations) and `Large` (a wide blob); `No Finding` when neither, and `height`
    (1 for Top, plus 0.1 for Large) as a graded label. Half of the images have each finding."""
    import csv

    import numpy as np

    rng = np.random.default_rng(seed)
    top = rng.permutation(np.arange(n) % 2)
    large = rng.permutation((np.arange(n) // 2) % 2)
    yy, xx = np.mgrid[0:size, 0:size]
    folder.mkdir(parents=True, exist_ok=True)
    table = folder.parent / f"{name}.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "patient_id", "Top", "Large", "No Finding", "height"])
        for i, (t, wide) in enumerate(zip(top, large)):
            cy = (rng.uniform(0.2, 0.35) if t else rng.uniform(0.65, 0.8)) * size
            cx = rng.uniform(0.3, 0.7) * size
            radius = size / (6 if wide else 14)
            blob = 170.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
            pixels = np.clip(blob + rng.normal(40.0, 15.0, (size, size)), 0, 255).astype(np.uint8)
            PILImage.fromarray(pixels).save(folder / f"blob_{i:03d}.png")
            writer.writerow(
                [f"blob_{i:03d}.png", f"B{i:03d}", int(t), int(wide), int(not t and not wide), int(t) + 0.1 * int(wide)]
            )
    job = run_import(source=folder, labels=table, name=name)
    assert job.status == "succeeded" and job.n_imported == n, job.report
    return job.dataset


def run_inline(dataset, name: str, method: str, split, config: dict) -> ModelRun:
    """Create a run and carry it out in this process; it must succeed."""
    from retrieval.runs.services import run_create
    from retrieval.runs.stages import run_execute

    run = run_create(dataset=dataset, name=name, method=method, config=config, split=split, enqueue=False)
    run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return run


def shared_folders(root: Path) -> dict[str, Path]:
    """The data folders of module-wide data made under `root`."""
    return {
        "DATA_DIR": root,
        "MEDIA_ROOT": root / "media",
        "UPLOAD_ROOT": root / "uploads",
        "ARTEFACT_ROOT": root / "artefacts",
    }


@contextmanager
def module_data(django_db_blocker, root: Path):
    """Make rows and files that every test of a module reads (for a module-scoped fixture).

    The rows are committed outside the tests' transactions, so each test sees them and rolls back only its
    own changes; they are deleted when the module's tests are done (the fixture's teardown runs `module_data_
    delete`). Files go under `root`; the module's tests point their media there (`use_shared_folders`).
    Only `db` tests may use such data: pytest-django runs every transactional test (which empties the
    database) after them, so none can run in between."""
    with django_db_blocker.unblock(), override_settings(**shared_folders(root)):
        yield


def module_data_delete(django_db_blocker) -> None:
    """Delete what module_data made (every run, then every dataset with its images, splits and imports)."""
    from retrieval.models import Dataset

    with django_db_blocker.unblock():
        ModelRun.objects.all().delete()  # before the splits they protect
        Dataset.objects.all().delete()


def use_shared_folders(settings, root: Path) -> None:
    """Point this test's media (the module-wide images) at the module's folder. Its artefacts and uploads stay its
    own: SQLite hands a rolled-back row's id out again, and a new run must not find an earlier test's files in
    the folder named after its id (the module's own runs keep theirs: a run records its artefact folder)."""
    folders = shared_folders(root)
    settings.DATA_DIR, settings.MEDIA_ROOT = folders["DATA_DIR"], folders["MEDIA_ROOT"]


@pytest.fixture(scope="module")
def _module_phantoms(django_db_setup, django_db_blocker, tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms")
    with module_data(django_db_blocker, root):
        dataset = make_phantom_dataset(root / "phantoms", n=60)
    yield root, dataset
    module_data_delete(django_db_blocker)


@pytest.fixture
def module_phantoms(_module_phantoms, db, settings):
    """tests/conftest.py's phantom_dataset (60 imported phantoms), imported once for the module that asks for it."""
    root, dataset = _module_phantoms
    use_shared_folders(settings, root)
    assert dataset.images.count() == 60, "the module's phantoms are gone"
    return dataset
