"""The body of a model run on the worker: train → embed → index → evaluate (imports torch).

Each stage records its duration in `run.timings`; a stage already recorded is not redone, so
a run whose worker died resumes where it stopped (training itself resumes from the last epoch
checkpoint). Embedding only embeds images without an embedding yet, which also makes
"add newly imported images" an ordinary re-run.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from core.errors import ApplicationError
from core.jobs import JobStatus, job_progress, job_run
from retrieval import ranking
from retrieval.methods import method_get, normalised_features
from retrieval.models import Image, Label, ModelRun, RunStage, SplitPart
from retrieval.runs import images_missing_from

log = logging.getLogger(__name__)
MODEL_FILE = "model.safetensors"
INDEX_DIR = "index"


def run_execute(*, run_id: int) -> ModelRun | None:
    """Claim a run and carry out its remaining stages (core runner: any failure is recorded with its message).

    A run waiting for a queued re-evaluation is not re-run: a redelivered `run_execute` message of a
    finished run does that evaluation, with its recorded options (the evaluation task then finds
    nothing to claim)."""
    from retrieval.runs import evaluation_pending

    run = ModelRun.objects.filter(pk=run_id).first()
    if run is not None and evaluation_pending(run):
        from retrieval.evaluation import run_evaluation_execute

        return run_evaluation_execute(run_id=run_id)
    return job_run(ModelRun, run_id, _run_body, expected=_expected_errors())


def _run_body(run: ModelRun) -> None:
    run = ModelRun.objects.select_related("dataset", "split").get(pk=run.pk)
    folder = ranking.run_artefact_dir(run)
    folder.mkdir(parents=True, exist_ok=True)
    if run.artefact_dir != str(folder):
        run.artefact_dir = str(folder)
        ModelRun.objects.filter(pk=run.pk).update(artefact_dir=run.artefact_dir)
    try:
        _stages(run)
    except RuntimeError as exc:
        if "DataLoader worker" in str(exc):  # torch's words for a loader process that died (e.g. /dev/shm full)
            raise ApplicationError(
                f"A DataLoader worker process died ({exc}). Give the worker more shared memory (docker: "
                f"shm_size), or set the run's DataLoader workers to 0, and resume the run.") from exc
        raise
    _set(run, stage=RunStage.DONE)


def _expected_errors() -> tuple[type[Exception], ...]:
    from retrieval.ml.backbones import WeightsUnavailableError

    return (WeightsUnavailableError, FileNotFoundError)


def loader_workers(run: ModelRun) -> int:
    """The run's DataLoader worker processes, refused with one clear line where processes cannot be started.

    Celery's prefork pool runs tasks in daemonic children, and Python forbids a daemonic process to
    start processes; `manage.py worker gpu` uses the solo pool, where they can (core.workers)."""
    import multiprocessing

    n = int(run.config.get("workers", 0))
    if n and multiprocessing.current_process().daemon:
        raise ApplicationError(
            f"This run uses {n} DataLoader worker process(es), which cannot start inside a daemonic process "
            f"(a Celery prefork pool): start the GPU worker with `python manage.py worker gpu`, or set the run's "
            f"DataLoader workers to 0, and resume the run.")
    return n


def _stages(run: ModelRun) -> None:
    method = method_get(run.method)
    if run.config.get("normalisation") == "dataset" and "mean" not in run.config:
        _dataset_statistics(run)
    if run.method == "igcbir" and "saliency_inputs" not in run.timings:
        _timed(run, "saliency_inputs", RunStage.TRAINING, _saliency_inputs)
    if method.trains and "train" not in run.timings:
        _timed(run, "train", RunStage.TRAINING, _train)
    if method.trains and run.config.get("saliency") and "saliency" not in run.timings:
        _timed(run, "saliency", RunStage.EVALUATING, _saliency)
    if method.embeds:
        _timed(run, "embed", RunStage.EMBEDDING, _embed)
        _timed(run, "index", RunStage.INDEXING, _index)
    if run.split_id and (method.embeds or run.method == "ssim"):
        _timed(run, "evaluate", RunStage.EVALUATING, _evaluate)


def _timed(run: ModelRun, name: str, stage: str, body) -> None:
    _set(run, stage=stage)
    start = time.perf_counter()
    body(run)
    run.timings = {**run.timings, name: round(time.perf_counter() - start, 3)}
    _set(run, timings=run.timings)


def _set(run: ModelRun, **fields) -> None:
    for key, value in fields.items():
        setattr(run, key, value)
    ModelRun.objects.filter(pk=run.pk).update(**fields)


def _cancelled(run: ModelRun) -> bool:
    return ModelRun.objects.filter(pk=run.pk, status=JobStatus.CANCELLED).exists()


# --- model and data --------------------------------------------------------------------------

def _device():
    from retrieval.ml.device import resolve_device

    return resolve_device(os.environ.get("CBIR_DEVICE") or None)


def build_model(run: ModelRun, *, for_training: bool = False):
    """The run's network: the trained weights once training is done, else the configured backbone.

    Layers that no weights cover (`weights: random`, a new classifier head) are initialised from the
    run's seed, so every process — the worker embedding the collection, the one embedding an uploaded
    query — builds the same network.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(run.config.get("seed", 0)))
        return _build_model(run, for_training=for_training)


def _build_model(run: ModelRun, *, for_training: bool):
    from retrieval.ml.backbones import create_backbone, load_weights

    cfg = run.config
    trained = Path(run.artefact_dir or ranking.run_artefact_dir(run)) / MODEL_FILE
    if run.method == "ensemble":
        return _ensemble_model(run)
    if run.method == "rating_metric":
        from retrieval.ml.ratings import RatingMetricNet

        weights = cfg["weights"] if for_training or not trained.exists() else "random"
        model = RatingMetricNet(create_backbone(cfg["backbone"], weights=weights, num_classes=0),
                                embed_dim=int(cfg["embed_dim"]), n_ratings=len(cfg["characteristics"]))
        if not for_training and trained.exists():
            load_weights(model, trained)
        return model
    if run.method == "attention":
        from retrieval.ml.attention import DualAttentionDenseNet

        n_out = len(cfg.get("labels", [])) if cfg["task"] == "multilabel" else 1
        weights = cfg["weights"] if for_training or not trained.exists() else "random"
        model = DualAttentionDenseNet(num_classes=n_out, backbone=cfg["backbone"], weights=weights)
        if not for_training and trained.exists():
            load_weights(model, trained)
        return model
    if method_get(run.method).trains:
        n_out = len(cfg.get("labels", [])) if cfg["task"] == "multilabel" else 1
        weights = cfg["weights"] if for_training or not trained.exists() else "random"
        model = create_backbone(cfg["backbone"], weights=weights, num_classes=n_out)
        if not for_training and trained.exists():
            load_weights(model, trained)
        return model
    return create_backbone(cfg["backbone"], weights=cfg["weights"], num_classes=0)


def _ensemble_model(run: ModelRun):
    """Paper 000: the per-finding classifiers of the listed runs as one multi-label model."""
    from retrieval.ml.ensemble import FindingEnsemble

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
    from retrieval.ml.backbones import data_config
    from retrieval.ml.transforms import build_transform

    cfg = run.config
    return build_transform(data_config(model), train=train, resize=cfg["resize"], crop=cfg["crop"],
                           mean=cfg.get("mean"), std=cfg.get("std"))


DATASET_STATISTICS_MAX = 2000


def _dataset_statistics(run: ModelRun) -> None:
    """`normalisation: dataset`: per-channel mean and std of the split's train images (all images without a
    split; a seeded sample of at most DATASET_STATISTICS_MAX), after grey → RGB and the run's resize,
    recorded in the run's config (mean, std, normalisation_images) before anything is trained or embedded."""
    from PIL import Image as PILImage

    from retrieval.ml.transforms import dataset_mean_std
    from retrieval.runs import split_image_ids

    ids = (split_image_ids(split=run.split, part=SplitPart.TRAIN) if run.split_id
           else list(run.dataset.images.order_by("pk").values_list("pk", flat=True)))
    if not ids:
        raise ApplicationError("normalisation 'dataset' needs images in the split's train part.")
    if len(ids) > DATASET_STATISTICS_MAX:
        ids = sorted(np.random.default_rng(int(run.config.get("seed", 0))).choice(ids, DATASET_STATISTICS_MAX,
                                                                                  replace=False).tolist())

    def images():
        for path in _paths(ids):
            with PILImage.open(path) as pil:
                yield pil

    job_progress(run, done=0, total=len(ids), note="dataset mean/std")
    mean, std = dataset_mean_std(images(), size=int(run.config["resize"]))
    run.config = {**run.config, "mean": [round(v, 6) for v in mean], "std": [round(v, 6) for v in std],
                  "normalisation_images": len(ids)}
    _set(run, config=run.config)


def _paths(image_ids: list[int]) -> list[str]:
    paths = dict(Image.objects.filter(pk__in=image_ids).values_list("pk", "rendition"))
    from django.core.files.storage import default_storage

    return [default_storage.path(paths[i]) for i in image_ids]


def label_matrix(image_ids: list[int], names: list[str]) -> np.ndarray:
    """(n, len(names)) float matrix of numeric label values; NaN where an image lacks the label."""
    out = np.full((len(image_ids), len(names)), np.nan, dtype=np.float64)
    row = {pk: i for i, pk in enumerate(image_ids)}
    col = {n: j for j, n in enumerate(names)}
    for pk, name, value in Label.objects.filter(image_id__in=image_ids, name__in=names).values_list(
        "image_id", "name", "value_num"
    ):
        if value is not None:
            out[row[pk], col[name]] = value
    return out


def training_targets(run: ModelRun, image_ids: list[int], *, undersample: bool):
    """(ids, targets) of a part for the run's task (paper 000's label definitions)."""
    from retrieval.ml.splits import binary_task

    cfg = run.config
    if cfg["task"] == "binary":
        names = list(dict.fromkeys([*cfg["positive"], *cfg["negative"]]))
        values = np.nan_to_num(label_matrix(image_ids, names), nan=0.0) == 1
        idx, y = binary_task({n: values[:, j] for j, n in enumerate(names)}, cfg["positive"], cfg["negative"],
                             undersample=undersample, seed=cfg["seed"])
        return [image_ids[i] for i in idx], np.asarray(y, dtype=np.float32).reshape(-1, 1)
    if cfg["task"] == "multilabel":
        values = label_matrix(image_ids, cfg["labels"])
        return image_ids, (np.nan_to_num(values, nan=0.0) == 1).astype(np.float32)
    values = label_matrix(image_ids, [cfg["target"]])[:, 0]
    keep = ~np.isnan(values)
    return [i for i, k in zip(image_ids, keep) if k], values[keep].astype(np.float32).reshape(-1, 1)


def _image_dataset(run, model, ids, targets=None, *, train: bool = False):
    """Images through the run's transform, or (IG-CBIR) the stored saliency inputs of those images."""
    from retrieval.ml.embed import ImagePathDataset

    if run.method == "igcbir":
        from retrieval.ml.saliency_dataset import SaliencyInputDataset

        return SaliencyInputDataset(_saliency_input_dir(run), ids, targets, flip=train)
    return ImagePathDataset(_paths(ids), build_transform_for(run, model, train=train), targets)


def _loader(run, model, ids, targets, *, train: bool):
    from torch.utils.data import DataLoader

    dataset = _image_dataset(run, model, ids, targets, train=train)
    return DataLoader(dataset, batch_size=run.config["batch_size"], shuffle=train,
                      num_workers=loader_workers(run), drop_last=False)


# --- stages ----------------------------------------------------------------------------------

def _train(run: ModelRun) -> None:
    if run.method == "rating_metric":
        return _train_rating_metric(run)
    from retrieval.ml.backbones import save_weights
    from retrieval.ml.train import fit
    from retrieval.runs import split_image_ids

    train_ids, y_train = training_targets(run, split_image_ids(split=run.split, part=SplitPart.TRAIN), undersample=run.config.get("undersample", False))
    val_ids, y_val = training_targets(run, split_image_ids(split=run.split, part=SplitPart.VAL), undersample=False)
    if len(train_ids) < 2:
        raise ApplicationError("The training part has fewer than two labelled images for this task.")
    _seed_everything(int(run.config.get("seed", 0)))
    model = build_model(run, for_training=True)
    train_loader = _loader(run, model, train_ids, y_train, train=True)
    val_loader = _loader(run, model, val_ids, y_val, train=False) if val_ids else None
    epochs = int(run.config["epochs"])
    total = epochs * len(train_loader)
    job_progress(run, done=0, total=total, note=f"training on {len(train_ids)} images")
    counter = {"n": 0}

    def progress(info: dict) -> None:
        if info["phase"] == "epoch_end":
            run.history = [*run.history, {k: info.get(k) for k in ("epoch", "loss", "val_loss", "val_metric")}]
            _set(run, history=run.history)
        done = (info["epoch"] - 1) * info["n_batches"] + info["batch"]
        _set(run, live={**info, "epochs": epochs})
        job_progress(run, done=done, total=total,
                     note=f"epoch {info['epoch']}/{epochs} · batch {info['batch']}/{info['n_batches']} · "
                          f"loss {info['loss']:.4f}{_val_note(run.history, run.config['task'], val_loader is not None)}")
        counter["n"] += 1

    history = fit(model, train_loader, val_loader, task=run.config["task"], epochs=epochs, lr=run.config["lr"],
                  optimizer=run.config["optimizer"], device=_device(), checkpoint_dir=Path(run.artefact_dir) / "checkpoints",
                  resume=True, progress=progress, should_stop=lambda: counter["n"] % 10 == 0 and _cancelled(run))
    if history.get("stopped"):
        raise ApplicationError("Training was cancelled.")
    save_weights(model, Path(run.artefact_dir) / MODEL_FILE)
    run.metrics = {**run.metrics, "training": {k: history.get(k) for k in ("best_epoch", "best_metric", "metric")}}
    _set(run, metrics=run.metrics)


def _val_note(history: list[dict], task: str, has_val: bool) -> str:
    """" · val AUC 0.812" (the MAE for regression) of the last finished epoch, for the live progress note."""
    last = next((h.get("val_metric") for h in reversed(history) if h.get("val_metric") is not None), None)
    if last is None:
        return ""
    if not has_val:  # fit() selects by −training loss when the split has no validation images
        return f" · no val part (−train loss {last:.4f})"
    if task == "regression":  # fit() maximises −MAE: shown as the MAE itself
        return f" · val MAE {-last:.4f}"
    return f" · val AUC {last:.4f}"


def _train_rating_metric(run: ModelRun) -> None:
    """Paper 004: the embedding net learns from the readers' rating sets of the train part (multi-task).

    Semi-supervised (config semi_supervised): first a rating regressor (the same net, regression
    loss only) on the rated train images; it predicts ratings for the unrated train images, and the
    metric net then learns from both (each predicted vector a one-reader set)."""
    from torch.utils.data import ConcatDataset

    from retrieval.ml.backbones import save_weights
    from retrieval.ml.embed import ImagePathDataset
    from retrieval.ml.ratings import (
        REGRESSION_ONLY,
        DistanceMatrixKLLoss,
        fit_rating_metric,
        pseudo_label_ratings,
        set_distance_matrix,
    )
    from retrieval.rating_runs import rating_sets
    from retrieval.runs import split_image_ids

    cfg = run.config
    names = cfg["characteristics"]
    train_all = split_image_ids(split=run.split, part=SplitPart.TRAIN)
    train_ids, train_sets = rating_sets(train_all, names)
    val_ids, val_sets = rating_sets(split_image_ids(split=run.split, part=SplitPart.VAL), names)
    if len(train_ids) < 2:
        raise ApplicationError(f"The training part has {len(train_ids)} images with complete ratings of "
                               f"{', '.join(names)}; at least 2 are needed.")
    _seed_everything(int(cfg.get("seed", 0)))
    model = build_model(run, for_training=True)
    images = lambda ids, train: ImagePathDataset(_paths(ids), build_transform_for(run, model, train=train))  # noqa: E731
    checkpoints = Path(run.artefact_dir) / "checkpoints"
    epochs, regressor_epochs = int(cfg["epochs"]), int(cfg["regressor_epochs"]) if cfg["semi_supervised"] else 0
    rated = set(train_ids)
    unrated = [i for i in train_all if i not in rated] if cfg["semi_supervised"] else []
    total = epochs + (regressor_epochs if unrated else 0)
    job_progress(run, done=0, total=total, note=f"training on {len(train_ids)} rated images")
    common = dict(batch_size=int(cfg["batch_size"]), lr=float(cfg["lr"]), device=_device(), resume=True,
                  seed=int(cfg.get("seed", 0)))
    stop = lambda: _cancelled(run)  # noqa: E731 (asked once per epoch)
    def progress(offset: int, phase: str):
        def report(info: dict) -> None:
            entry = {"epoch": offset + info["epoch"], "phase": phase, "loss": info["loss"],
                     "regression": info["regression"], "similarity": info["similarity"],
                     "val_metric": info.get("distance_correlation_r")}
            run.history = [*run.history, entry]
            _set(run, history=run.history, live={**entry, "epochs": total})
            note = f"{phase} epoch {info['epoch']}/{info['epochs']} · loss {info['loss']:.4f}"
            if entry["val_metric"] is not None:
                note += f" · val distance r {entry['val_metric']:.3f}"
            job_progress(run, done=offset + info["epoch"], total=total, note=note)
        return report

    sets, dataset, pseudo_note = list(train_sets), images(train_ids, True), ""
    if unrated:
        _seed_everything(int(cfg.get("seed", 0)) + 1)
        regressor = build_model(run, for_training=True)
        history = fit_rating_metric(regressor, dataset, train_sets, epochs=regressor_epochs, schedule=REGRESSION_ONLY,
                                    checkpoint_dir=checkpoints / "regressor", progress=progress(0, "regressor"),
                                    should_stop=stop, **common)
        if history.get("stopped"):
            raise ApplicationError("Training was cancelled.")
        predicted = pseudo_label_ratings(regressor, images(unrated, False), clip=_rating_range(train_sets),
                                         device=_device())
        sets += [row[None, :] for row in predicted.astype(np.float32)]
        dataset = ConcatDataset([dataset, images(unrated, True)])
        pseudo_note = f"{len(unrated)} unrated train images labelled by the regressor"
    scale = cfg["target_scale"]
    if scale == "auto":
        largest = float(set_distance_matrix(train_sets).max())
        scale = 1.0 / largest if largest > 0 else 1.0
    kl = DistanceMatrixKLLoss(temperature=float(cfg["temperature"]), negate=bool(cfg["negate"]), target_scale=scale)
    history = fit_rating_metric(
        model, dataset, sets, epochs=epochs, schedule=[tuple(s) for s in cfg["schedule"]], distance_loss=kl,
        val_images=images(val_ids, False) if len(val_ids) >= 3 else None, val_ratings=val_sets or None,
        checkpoint_dir=checkpoints, progress=progress(regressor_epochs if unrated else 0, "metric"),
        should_stop=stop, **common)
    if history.get("stopped"):
        raise ApplicationError("Training was cancelled.")
    save_weights(model, Path(run.artefact_dir) / MODEL_FILE)
    run.metrics = {**run.metrics, "training": {
        "best_epoch": history["best_epoch"], "best_metric": history["best_metric"],
        "metric": "val distance correlation r" if len(val_ids) >= 3 else "-training loss",
        "target_scale": scale, "rated_train_images": len(train_ids), "pseudo_labelled": pseudo_note}}
    _set(run, metrics=run.metrics)


def _rating_range(sets: list[np.ndarray]) -> tuple[float, float]:
    """Clip predicted ratings to the range the readers used (paper 004: the 1–5 scale)."""
    values = np.concatenate(sets)
    return float(values.min()), float(values.max())


def _seed_everything(seed: int) -> None:
    """Seed torch, numpy and random so a run's training is reproducible from its config (on CPU)."""
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _embed(run: ModelRun) -> None:
    from retrieval.ml.embed import embed_images

    folder = Path(run.artefact_dir)
    try:
        old_ids, old = ranking.run_vectors(run=run)
    except ApplicationError:
        old_ids, old = np.zeros(0, dtype=np.int64), None
    todo = images_missing_from(run=run, embedded_ids=old_ids.tolist())
    if not todo:
        return
    model = build_model(run)
    job_progress(run, done=0, total=len(todo), note=f"embedding {len(todo)} images")
    if run.method == "igcbir":
        _saliency_inputs(run, only=todo)
    dataset = _image_dataset(run, model, todo)
    vectors = embed_images(model, dataset, batch_size=run.config["batch_size"], device=_device(),
                           num_workers=loader_workers(run), normalise=normalised_features(run.config),
                           progress=lambda done, total: job_progress(run, done=done, total=total, note=f"embedded {done}/{total}"))
    ids = np.concatenate([old_ids, np.asarray(todo, dtype=np.int64)])
    allv = vectors if old is None else np.concatenate([old, vectors])
    _atomic_npy(folder / ranking.EMBEDDINGS_FILE, allv.astype(np.float32))
    _atomic_npy(folder / ranking.IDS_FILE, ids)
    _set(run, n_embedded=len(ids), device=str(_device()))


def _atomic_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def _index(run: ModelRun) -> None:
    from retrieval.ml.index import VectorIndex

    ids, vectors = ranking.run_vectors(run=run)
    folder = Path(run.artefact_dir) / INDEX_DIR
    if (folder / "meta.json").exists():
        index = VectorIndex.load(folder)
        new = ~np.isin(ids, index.ids)
        if not new.any():
            return
        index.add(vectors[new], ids[new])
    else:
        index = VectorIndex.build(vectors, ids, kind=run.config.get("index", "auto"), metric=run.config["metric"])
    index.save(folder)
    run.metrics = {**run.metrics, "index": index.metadata()}
    _set(run, metrics=run.metrics)


SALIENCY_INPUT_DIR = "saliency_inputs"


def _saliency_input_dir(run: ModelRun) -> Path:
    return ranking.run_artefact_dir(run) / SALIENCY_INPUT_DIR


def igcbir_classifier(run: ModelRun) -> ModelRun:
    """The finished classifier run whose saliency maps an IG-CBIR run learns from (same dataset)."""
    classifier = ModelRun.objects.filter(pk=run.config["classifier_run"], dataset=run.dataset_id).first()
    if (classifier is None or classifier.status != "succeeded" or not method_get(classifier.method).trains
            or classifier.method in ("rating_metric", "igcbir")):
        raise ApplicationError("IG-CBIR's classifier_run must be a finished classifier run of the same dataset.")
    return classifier


def igcbir_saliency_model(run: ModelRun):
    """(classifier model, its transform, saliency method used) of an IG-CBIR run, the method recorded on the run.

    The method is decided once, before the first map: Deep Taylor where the LRP rules cover the
    classifier, else Grad-CAM (attention networks, ViTs). It is kept in config["input_saliency_used"]
    (shown with the run's configuration) and in metrics["input_saliency"] with the reason, so that
    maps of images embedded later and of uploaded queries come from the same method."""
    from retrieval.ml.saliency import resolve_saliency_method

    classifier = igcbir_classifier(run)
    model = build_model(classifier).eval()
    method = run.config.get("input_saliency_used")
    if not method:
        method, reason = resolve_saliency_method(model, run.config["input_saliency"])
        run.config = {**run.config, "input_saliency_used": method}
        run.metrics = {**run.metrics, "input_saliency": {"requested": run.config["input_saliency"], "used": method,
                                                         "classifier_run": classifier.pk, "reason": reason}}
        _set(run, config=run.config, metrics=run.metrics)
        if reason:
            log.info("run %s: %s", run.pk, reason)
    return model, build_transform_for(classifier, model), method


def classifier_saliency_input(model, transform, method: str, images) -> np.ndarray:
    """IG-CBIR's second-network inputs (n, 3, H, W) of a list of images (PIL or uint8 arrays): the
    classifier's saliency, each / its max |value|, in 3 channels, as float16 (the stored precision, so
    stored and query inputs agree). One batched pass: each map depends on its own image only (eval mode)."""
    import torch

    from retrieval.ml.saliency import saliency_input

    x = torch.stack([transform(image) for image in images])
    with torch.enable_grad():
        maps = saliency_input(model, x, method)
    return maps.detach().cpu().numpy().astype(np.float16)


def _saliency_inputs(run: ModelRun, only: list[int] | None = None) -> None:
    """Papers 001/003: the classifier's saliency of every image, / max |value|, in 3 channels, stored
    (in batches of the run's batch size: LRP through a DenseNet is a forward and a backward pass)."""
    from PIL import Image as PILImage

    folder = _saliency_input_dir(run)
    folder.mkdir(parents=True, exist_ok=True)
    ids = only if only is not None else list(run.dataset.images.order_by("pk").values_list("pk", flat=True))
    ids = [i for i in ids if not (folder / f"{i}.npy").exists()]
    if not ids:
        return
    model, transform, method = igcbir_saliency_model(run)
    size = int(run.config.get("batch_size", 16))
    paths = _paths(ids)
    for start in range(0, len(ids), size):
        images = []
        for path in paths[start:start + size]:
            with PILImage.open(path) as pil:
                pil.load()
                images.append(pil.copy())
        maps = classifier_saliency_input(model, transform, method, images)
        for image_id, one in zip(ids[start:start + size], maps):
            np.save(folder / f"{image_id}.npy", one)
        done = min(start + size, len(ids))
        job_progress(run, done=done, total=len(ids), note=f"classifier saliency ({method}) {done}/{len(ids)}")


def _saliency(run: ModelRun) -> None:
    """Saliency overlays of the test images, for the UI: the run's own network (Grad-CAM by default;
    Deep Taylor for CNNs, Grad-CAM where LRP does not apply), or for IG-CBIR the classifier's saliency
    map that is the second network's input (the stored saliency input), over the classifier's view."""
    import torch

    from retrieval.ml.saliency import normalise_saliency, overlay_png, resolve_saliency_method, saliency
    from retrieval.runs import split_image_ids

    ids = split_image_ids(split=run.split, part=SplitPart.TEST)[: int(run.config.get("saliency_max", 200))]
    folder = ranking.run_artefact_dir(run) / ranking.SALIENCY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    job_progress(run, done=0, total=len(ids), note="saliency maps")
    if run.method == "igcbir":
        return _igcbir_overlays(run, ids)
    model = build_model(run).eval()
    transform = build_transform_for(run, model)
    method, reason = resolve_saliency_method(model, run.config["saliency"])
    run.metrics = {**run.metrics, "saliency": {"requested": run.config["saliency"], "used": method, "reason": reason,
                                               "shows": f"{method} of this run's network"}}
    _set(run, metrics=run.metrics)
    from PIL import Image as PILImage

    size = int(run.config.get("batch_size", 16))
    paths = _paths(ids)
    for start in range(0, len(ids), size):  # batched: each map depends on its own image only (eval mode)
        greys, tensors = [], []
        for path in paths[start:start + size]:
            with PILImage.open(path) as pil:
                greys.append(_network_view(pil.convert("L"), run.config["resize"], run.config["crop"]))
                tensors.append(transform(pil))
        with torch.enable_grad():
            maps = normalise_saliency(saliency(model, torch.stack(tensors), method)).detach().cpu().numpy()
        for image_id, grey, sal in zip(ids[start:start + size], greys, maps):
            ranking.saliency_path(run, image_id).write_bytes(overlay_png(grey, sal))
        done = min(start + size, len(ids))
        job_progress(run, done=done, total=len(ids), note=f"saliency {done}/{len(ids)}")


def _igcbir_overlays(run: ModelRun, ids: list[int]) -> None:
    """IG-CBIR: each overlay is the stored input of the second network (the classifier's normalised
    saliency, channel 0) over the image as the classifier sees it; computed first where missing."""
    from PIL import Image as PILImage

    from retrieval.ml.saliency import overlay_png

    _saliency_inputs(run, only=ids)
    classifier = igcbir_classifier(run)
    method = run.config.get("input_saliency_used", run.config["input_saliency"])
    run.metrics = {**run.metrics, "saliency": {"requested": "classifier", "used": method, "reason": "",
                                               "shows": f"{method} of classifier run {classifier.pk} (the input "
                                                        "of the second network)"}}
    _set(run, metrics=run.metrics)
    for n, (image_id, path) in enumerate(zip(ids, _paths(ids)), 1):
        with PILImage.open(path) as pil:
            grey = _network_view(pil.convert("L"), classifier.config["resize"], classifier.config["crop"])
        sal = np.load(_saliency_input_dir(run) / f"{image_id}.npy")[0].astype(np.float32)
        ranking.saliency_path(run, image_id).write_bytes(overlay_png(grey, sal))
        job_progress(run, done=n, total=len(ids), note=f"saliency {n}/{len(ids)}")


def _network_view(pil, resize: int, crop: int) -> np.ndarray:
    """The image as the network sees it (resized to resize × resize, centre-cropped, as build_transform does),
    so that the saliency overlay lines up with the pixels it was computed on."""
    pil = pil.resize((max(crop, resize), max(crop, resize)), resample=3)  # bicubic, like timm's default
    left, top = (pil.size[0] - crop) // 2, (pil.size[1] - crop) // 2
    return np.asarray(pil.crop((left, top, left + crop, top + crop)))


def _evaluate(run: ModelRun) -> None:
    """Evaluate on the test part; a part too small to evaluate is noted, not a failed run."""
    from retrieval.evaluation import evaluate_run

    try:
        run.metrics = {**run.metrics, "retrieval": evaluate_run(run=run), "retrieval_note": ""}
    except ApplicationError as exc:
        run.metrics = {**run.metrics, "retrieval_note": f"Not evaluated: {exc.message}"}
    if method_get(run.method).embeds:
        ratings = _rating_evaluation(run)
        if ratings:
            run.metrics = {**run.metrics, "ratings": ratings}
    _set(run, metrics=run.metrics)


RATING_EVAL_MAX = 2000


def _rating_evaluation(run: ModelRun) -> dict | None:
    """Paper 004's evaluation on the test part when its images have reader ratings: Pearson r between
    embedding L2 distances and rating set distances, hubness; for rating-metric runs also the RMSE of
    the predicted mean ratings beside the RMSE of predicting the train part's mean (the baseline)."""
    from retrieval.ml.embed import ImagePathDataset
    from retrieval.ml.ratings import evaluate_embeddings, evaluate_rating_metric, mean_ratings
    from retrieval.rating_runs import rating_characteristics, rating_sets
    from retrieval.runs import split_image_ids

    try:
        names = run.config.get("characteristics") or rating_characteristics(run.dataset)
    except ApplicationError:
        return None  # no ratings in this dataset
    ids, vectors = ranking.run_vectors(run=run)
    position = {int(i): n for n, i in enumerate(ids)}
    test_ids, test_sets = rating_sets([i for i in split_image_ids(split=run.split, part=SplitPart.TEST)
                                       if i in position], names)
    if len(test_ids) < 3:
        return None
    note = ""
    if len(test_ids) > RATING_EVAL_MAX:  # set distances of every pair: O(n²) in items and readers²
        keep = np.sort(np.random.default_rng(int(run.config.get("seed", 0))).choice(len(test_ids), RATING_EVAL_MAX,
                                                                                     replace=False))
        note = f"a random sample of {RATING_EVAL_MAX} of the {len(test_ids)} rated test images"
        test_ids, test_sets = [test_ids[i] for i in keep], [test_sets[i] for i in keep]
    out = evaluate_embeddings(vectors[[position[i] for i in test_ids]], test_sets)
    if run.method == "rating_metric":
        model = build_model(run)
        dataset = ImagePathDataset(_paths(test_ids), build_transform_for(run, model))
        out["rating_rmse"] = evaluate_rating_metric(model, dataset, test_sets, device=_device())["rating_rmse"]
        _, train_sets = rating_sets(split_image_ids(split=run.split, part=SplitPart.TRAIN), names)
        if train_sets:
            constant = mean_ratings(train_sets).mean(axis=0)
            out["rating_rmse_train_mean"] = float(np.sqrt(np.mean((mean_ratings(test_sets) - constant) ** 2)))
    out.update(characteristics=names, n_items=len(test_ids), note=note)
    plain = {k: v.item() if isinstance(v, np.generic) else v for k, v in out.items()}
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in plain.items()}
