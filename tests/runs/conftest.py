"""A small phantom collection (known, graded findings) imported into a dataset, and small run configs."""

from __future__ import annotations

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


def run_inline(dataset, name: str, method: str, split, config: dict) -> ModelRun:
    """Create a run and carry it out in this process; it must succeed."""
    from retrieval.runs.services import run_create
    from retrieval.runs.stages import run_execute

    run = run_create(dataset=dataset, name=name, method=method, config=config, split=split, enqueue=False)
    run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return run
