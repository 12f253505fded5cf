"""`normalisation: dataset`: a run normalises its inputs with the mean/std of the dataset's own train images."""

import numpy as np
import pytest
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from core.errors import ApplicationError
from retrieval.models import Image
from retrieval.runs.methods import config_validate
from retrieval.runs.networks import build_model, build_transform_for
from retrieval.runs.services import run_create
from retrieval.runs.splits import split_create, split_image_ids
from retrieval.runs.stages import run_execute
from tests.runs.conftest import SMALL

pytestmark = pytest.mark.ml


def test_a_dataset_normalised_run_records_and_uses_the_train_images_statistics(phantom_dataset):
    split = split_create(dataset=phantom_dataset)
    run = run_create(
        dataset=phantom_dataset,
        name="dn",
        method="timm",
        split=split,
        config={**SMALL, "normalisation": "dataset"},
        enqueue=False,
    )
    run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error

    train = split_image_ids(split=split, part="train")
    pixels = []
    for image in Image.objects.filter(pk__in=train):
        with PILImage.open(default_storage.path(image.rendition.name)) as pil:
            grey = np.asarray(pil.convert("L").resize((SMALL["resize"],) * 2, PILImage.BILINEAR), dtype=np.float64)
        pixels.append(grey / 255.0)
    grey = np.stack(pixels)  # grey → RGB copies the channel: every channel has the grey statistics
    assert run.config["normalisation_images"] == len(train)
    assert run.config["mean"] == pytest.approx([grey.mean()] * 3, abs=1e-5)
    assert run.config["std"] == pytest.approx([grey.std()] * 3, abs=1e-5)

    normalize = build_transform_for(run, build_model(run)).transforms[-1]
    assert list(normalize.mean) == pytest.approx(run.config["mean"]) and list(normalize.std) == pytest.approx(
        run.config["std"]
    )


def test_normalisation_is_checked_before_anything_is_queued():
    with pytest.raises(ApplicationError, match="normalisation must be one of backbone, dataset"):
        config_validate("timm", {"normalisation": "imagenet"})
    with pytest.raises(ApplicationError, match="take their inputs from other runs"):
        config_validate("ensemble", {"runs": [1, 2], "normalisation": "dataset"})
    assert config_validate("timm", {})["normalisation"] == "backbone"
