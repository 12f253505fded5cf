"""A run's network, transforms and data loaders (worker only: imports torch).

Layers that no weights cover are initialised from the run's seed, so every process that builds a
run's network — the worker embedding the collection, the one embedding an uploaded query — builds
the same one.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from core.errors import ApplicationError
from core.jobs import JobStatus
from retrieval.ml.attention import DualAttentionDenseNet
from retrieval.ml.backbones import create_backbone, data_config, load_weights
from retrieval.ml.device import resolve_device
from retrieval.ml.embed import ImagePathDataset
from retrieval.ml.ensemble import FindingEnsemble
from retrieval.ml.ratings import RatingMetricNet
from retrieval.ml.saliency import resolve_saliency_method, saliency_input
from retrieval.ml.saliency_dataset import SaliencyInputDataset
from retrieval.ml.transforms import build_transform
from retrieval.models import ModelRun
from retrieval.runs import artefacts, ranking
from retrieval.runs.data import image_paths, run_set
from retrieval.runs.methods import method_get, weights_source

log = logging.getLogger(__name__)


MODEL_FILE = "model.safetensors"


def loader_workers(run: ModelRun) -> int:
    """The run's DataLoader worker processes, refused with one clear line where processes cannot be started.

    Celery's prefork pool runs tasks in daemonic children, and Python forbids a daemonic process to
    start processes; `manage.py worker gpu` uses the solo pool, where they can (core.workers)."""
    n = int(run.config.get("workers", 0))
    if n and multiprocessing.current_process().daemon:
        raise ApplicationError(
            f"This run uses {n} DataLoader worker process(es), which cannot start inside a daemonic process "
            f"(a Celery prefork pool): start the GPU worker with `python manage.py worker gpu`, or set the run's "
            f"DataLoader workers to 0, and resume the run."
        )
    return n


def run_cancelled(run: ModelRun) -> bool:
    return ModelRun.objects.filter(pk=run.pk, status=JobStatus.CANCELLED).exists()


def run_device():
    return resolve_device(os.environ.get("CBIR_DEVICE") or None)


def build_model(run: ModelRun, *, for_training: bool = False):
    """The run's network: the trained weights once training is done, else the configured backbone.

    Layers that no weights cover (`weights: random`, a new classifier head) are initialised from the
    run's seed, so every process — the worker embedding the collection, the one embedding an uploaded
    query — builds the same network.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(run.config.get("seed", 0)))
        return _build_model(run, for_training=for_training)


def _build_model(run: ModelRun, *, for_training: bool):
    cfg = run.config
    trained = artefacts.fetch(run, MODEL_FILE)  # the trained weights, from the artefact storage
    if run.method == "ensemble":
        return _ensemble_model(run)
    if run.method == "rating_metric":
        weights = weights_source(cfg["weights"]) if for_training or not trained.exists() else "random"
        model = RatingMetricNet(
            create_backbone(cfg["backbone"], weights=weights, num_classes=0),
            embed_dim=int(cfg["embed_dim"]),
            n_ratings=len(cfg["characteristics"]),
        )
        if not for_training and trained.exists():
            load_weights(model, trained)
        return model
    if run.method == "attention":
        n_out = len(cfg.get("labels", [])) if cfg["task"] == "multilabel" else 1
        weights = weights_source(cfg["weights"]) if for_training or not trained.exists() else "random"
        model = DualAttentionDenseNet(num_classes=n_out, backbone=cfg["backbone"], weights=weights)
        if not for_training and trained.exists():
            load_weights(model, trained)
        return model
    if method_get(run.method).trains:
        n_out = len(cfg.get("labels", [])) if cfg["task"] == "multilabel" else 1
        weights = weights_source(cfg["weights"]) if for_training or not trained.exists() else "random"
        model = create_backbone(cfg["backbone"], weights=weights, num_classes=n_out)
        if not for_training and trained.exists():
            load_weights(model, trained)
        return model
    return create_backbone(cfg["backbone"], weights=weights_source(cfg["weights"]), num_classes=0)


def _ensemble_model(run: ModelRun):
    """Paper 000: the per-finding classifiers of the listed runs as one multi-label model."""
    members = {}
    for member in ModelRun.objects.filter(pk__in=run.config["runs"]).order_by("pk"):
        if member.status != "succeeded" or member.method not in ("finetune", "densenet_cnn", "attention"):
            raise ApplicationError(f"Ensemble member {member.name!r} must be a finished fine-tuned run.")
        finding = "+".join(member.config.get("positive") or member.config.get("labels") or [member.name])
        members[finding] = build_model(member)
    if len(members) != len(run.config["runs"]):
        raise ApplicationError("Some ensemble member runs do not exist.")
    return FindingEnsemble(members, embedding="concat")


def build_transform_for(run: ModelRun, model, *, train: bool = False):
    cfg = run.config
    return build_transform(
        data_config(model),
        train=train,
        resize=cfg["resize"],
        crop=cfg["crop"],
        mean=cfg.get("mean"),
        std=cfg.get("std"),
    )


def image_dataset(run, model, ids, targets=None, *, train: bool = False):
    """Images through the run's transform, or (IG-CBIR) the stored saliency inputs of those images."""
    if run.method == "igcbir":
        return SaliencyInputDataset(saliency_input_dir(run), ids, targets, flip=train)
    return ImagePathDataset(image_paths(ids), build_transform_for(run, model, train=train), targets)


def run_loader(run, model, ids, targets, *, train: bool):
    dataset = image_dataset(run, model, ids, targets, train=train)
    return DataLoader(
        dataset, batch_size=run.config["batch_size"], shuffle=train, num_workers=loader_workers(run), drop_last=False
    )


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and random so a run's training is reproducible from its config (on CPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


SALIENCY_INPUT_DIR = "saliency_inputs"


def saliency_input_dir(run: ModelRun) -> Path:
    return ranking.run_artefact_dir(run) / SALIENCY_INPUT_DIR


def igcbir_classifier(run: ModelRun) -> ModelRun:
    """The finished classifier run whose saliency maps an IG-CBIR run learns from (same dataset)."""
    classifier = ModelRun.objects.filter(pk=run.config["classifier_run"], dataset=run.dataset_id).first()
    if (
        classifier is None
        or classifier.status != "succeeded"
        or not method_get(classifier.method).trains
        or classifier.method in ("rating_metric", "igcbir")
    ):
        raise ApplicationError("IG-CBIR's classifier_run must be a finished classifier run of the same dataset.")
    return classifier


def igcbir_saliency_model(run: ModelRun):
    """(classifier model, its transform, saliency method used) of an IG-CBIR run, the method recorded on the run.

    The method is decided once, before the first map: Deep Taylor where the LRP rules cover the
    classifier, else Grad-CAM (attention networks, ViTs). It is kept in config["input_saliency_used"]
    (shown with the run's configuration) and in metrics["input_saliency"] with the reason, so that
    maps of images embedded later and of uploaded queries come from the same method."""
    classifier = igcbir_classifier(run)
    model = build_model(classifier).eval()
    method = run.config.get("input_saliency_used")
    if not method:
        method, reason = resolve_saliency_method(model, run.config["input_saliency"])
        run.config = {**run.config, "input_saliency_used": method}
        run.metrics = {
            **run.metrics,
            "input_saliency": {
                "requested": run.config["input_saliency"],
                "used": method,
                "classifier_run": classifier.pk,
                "reason": reason,
            },
        }
        run_set(run, config=run.config, metrics=run.metrics)
        if reason:
            log.info("run %s: %s", run.pk, reason)
    return model, build_transform_for(classifier, model), method


def classifier_saliency_input(model, transform, method: str, images) -> np.ndarray:
    """IG-CBIR's second-network inputs (n, 3, H, W) of a list of images (PIL or uint8 arrays): the
    classifier's saliency, each / its max |value|, in 3 channels, as float16 (the stored precision, so
    stored and query inputs agree). One batched pass: each map depends on its own image only (eval mode)."""
    x = torch.stack([transform(image) for image in images])
    with torch.enable_grad():
        maps = saliency_input(model, x, method)
    return maps.detach().cpu().numpy().astype(np.float16)
