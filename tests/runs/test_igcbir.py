"""IG-CBIR (papers 001/003) end to end: the second network only ever sees the classifier's saliency maps —
at training, at embedding, for uploaded queries and in the overlays — and the saliency method falls back
to Grad-CAM, recorded on the run, where Deep Taylor does not apply (attention networks)."""

import re
import shutil

import numpy as np
import pytest
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from retrieval.models import Image, SearchRequest
from retrieval.runs import networks, ranking, stages, training
from retrieval.runs.services import run_create
from retrieval.runs.splits import split_create, split_image_ids
from tests.runs.conftest import SMALL, make_phantom_dataset, run_inline

pytestmark = pytest.mark.ml

TASK = {"task": "binary", "positive": ["Cardiomegaly"], "undersample": False, "epochs": 1, "lr": 1e-3}
SECOND = {"backbone": "resnet10t", "saliency_max": 3}  # a small second network keeps the test fast
# 32 px, and every image of a part in one batch (no 1-image batch meets 1×1 features in training mode).
TINY = {**SMALL, "resize": 36, "crop": 32, "batch_size": 16}


@pytest.fixture
def dataset(db, tmp_path):
    return make_phantom_dataset(tmp_path / "p", n=16, size=48)


def _run(dataset, name, method, split, **cfg):
    return run_inline(dataset, name, method, split, {**TINY, **cfg})


def _stored_input(run, image_id):
    return np.load(ranking.run_artefact_dir(run) / "saliency_inputs" / f"{image_id}.npy")


def test_igcbir_on_an_attention_classifier_uses_grad_cam_and_says_so(dataset):
    from retrieval.ml.backbones import save_weights
    from retrieval.ml.saliency import saliency_input

    split = split_create(dataset=dataset)
    size = {"resize": 72, "crop": 64}  # Grad-CAM of the attention layer on a 2×2 grid, not a constant 1×1
    # The classifier's weights do not matter here, only its layers: an untrained (random) finished run.
    attention = run_create(
        dataset=dataset,
        name="att",
        method="attention",
        split=split,
        enqueue=False,
        config={**TINY, **TASK, **size, "saliency": ""},
    )
    ranking.run_artefact_dir(attention).mkdir(parents=True)
    save_weights(
        networks.build_model(attention, for_training=True), ranking.run_artefact_dir(attention) / "model.safetensors"
    )
    type(attention).objects.filter(pk=attention.pk).update(status="succeeded")
    ig = _run(
        dataset,
        "ig",
        "igcbir",
        split,
        classifier_run=attention.pk,
        input_saliency="deep_taylor",
        **{**TASK, **SECOND, **size},
    )
    assert ig.config["input_saliency"] == "deep_taylor" and ig.config["input_saliency_used"] == "grad_cam"
    record = ig.metrics["input_saliency"]
    assert record["used"] == "grad_cam" and "Deep Taylor does not apply" in record["reason"]
    image = dataset.images.order_by("pk").first()
    model = networks.build_model(attention).eval()
    with PILImage.open(default_storage.path(image.rendition.name)) as pil:
        x = networks.build_transform_for(attention, model)(pil).unsqueeze(0)
    expected = saliency_input(model, x, "grad_cam")[0].numpy().astype(np.float16)
    stored = _stored_input(ig, image.pk).astype(np.float32)
    assert np.allclose(stored, expected.astype(np.float32), atol=2e-3)
    maps = [_stored_input(ig, i).astype(np.float32)[0] for i in dataset.images.values_list("pk", flat=True)]
    assert (
        sum(np.abs(m).max() == pytest.approx(1.0, abs=1e-3) and m.std() > 0.01 for m in maps) >= 8
    )  # maps, not constants
    assert ranking.run_vectors(run=ig)[1].shape[0] == 16


def test_igcbir_queries_and_overlays_are_the_classifier_saliency(dataset, tmp_path, settings):
    from retrieval.imports.imaging.decode import decode_image
    from retrieval.ml.saliency import overlay_png
    from retrieval.runs import search_job

    split = split_create(dataset=dataset, fractions=(0.5, 0.2, 0.3))
    classifier = _run(dataset, "cnn", "finetune", split, **{**TASK, "saliency": ""})
    ig = _run(dataset, "ig", "igcbir", split, classifier_run=classifier.pk, **{**TASK, **SECOND})
    assert ig.config["input_saliency_used"] == "deep_taylor" and ig.metrics["input_saliency"]["reason"] == ""

    # Overlays: the stored input of the second network (the classifier's map) over the classifier's view.
    test_ids = split_image_ids(split=split, part="test")[:3]
    assert len(test_ids) == 3 and "classifier" in ig.metrics["saliency"]["shows"]
    for image_id in test_ids:
        with PILImage.open(default_storage.path(Image.objects.get(pk=image_id).rendition.name)) as pil:
            grey = stages._network_view(pil.convert("L"), classifier.config["resize"], classifier.config["crop"])
        expected = overlay_png(grey, _stored_input(ig, image_id)[0].astype(np.float32))
        assert ranking.saliency_path(ig, image_id).read_bytes() == expected

    # Upload search: the image's own rendition, uploaded, embeds to its stored embedding and finds itself first.
    ids, vectors = ranking.run_vectors(run=ig)
    query = Image.objects.get(pk=int(ids[3]))
    data = query.rendition.open("rb").read()
    pixels = decode_image(data, max_pixels=settings.IMPORT_MAX_PIXELS).pixels
    assert np.allclose(search_job.embed_pixels(ig, pixels), vectors[3], atol=1e-4)
    upload = tmp_path / "query.png"
    shutil.copyfile(default_storage.path(query.rendition.name), upload)
    req = SearchRequest.objects.create(run=ig, upload_path=str(upload), k=3)
    search_job.search_request_execute(search_id=req.pk)
    req.refresh_from_db()
    assert req.status == "succeeded", req.error
    assert req.results[0]["image_id"] == query.pk and req.results[0]["distance"] < 1e-3


@pytest.mark.db_engine("progress is one UPDATE per batch and the history a JSON column read back as numbers")
def test_training_progress_note_shows_the_last_validation_metric(dataset, monkeypatch):
    notes = []
    real = training.job_progress
    monkeypatch.setattr(training, "job_progress", lambda job, **kw: (notes.append(kw.get("note")), real(job, **kw)))
    split = split_create(dataset=dataset, fractions=(0.5, 0.3, 0.2))
    run = _run(dataset, "cnn", "finetune", split, **{**TASK, "epochs": 2, "saliency": ""})
    epochs = [n for n in notes if n and n.startswith("epoch ")]
    first_epoch_end = next(i for i, n in enumerate(epochs) if n.startswith("epoch 1/2") and "val AUC" in n)
    assert not any("val" in n for n in epochs[:first_epoch_end])  # nothing to show before the first epoch ends
    shown = [float(m.group(1)) for n in epochs if (m := re.search(r"val AUC (\d\.\d{4})$", n))]
    assert shown[0] == pytest.approx(run.history[0]["val_metric"], abs=5e-5)
    assert shown[-1] == pytest.approx(run.history[1]["val_metric"], abs=5e-5)
