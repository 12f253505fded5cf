"""The training stage of a run (worker only: imports torch): classifiers (papers 000/001/003) and
paper 004's rating-based metric learning, each resuming from its last epoch checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import ConcatDataset

from core.errors import ApplicationError
from core.jobs import job_progress
from retrieval.ml.backbones import save_weights
from retrieval.ml.embed import ImagePathDataset
from retrieval.ml.ratings import (
    REGRESSION_ONLY,
    DistanceMatrixKLLoss,
    fit_rating_metric,
    pseudo_label_ratings,
    set_distance_matrix,
)
from retrieval.ml.train import fit
from retrieval.models import ModelRun, SplitPart
from retrieval.runs import artefacts
from retrieval.runs.data import image_paths, run_set, training_targets
from retrieval.runs.networks import (
    MODEL_FILE,
    build_model,
    build_transform_for,
    run_cancelled,
    run_device,
    run_loader,
    seed_everything,
)
from retrieval.runs.ratings import rating_sets
from retrieval.runs.splits import split_image_ids


def train(run: ModelRun) -> None:
    """Train the run's network on the split's train part (validation part for model selection), saved to MODEL_FILE."""
    if run.method == "rating_metric":
        return _train_rating_metric(run)
    train_ids, y_train = training_targets(
        run, split_image_ids(split=run.split, part=SplitPart.TRAIN), undersample=run.config.get("undersample", False)
    )
    val_ids, y_val = training_targets(run, split_image_ids(split=run.split, part=SplitPart.VAL), undersample=False)
    if len(train_ids) < 2:
        raise ApplicationError("The training part has fewer than two labelled images for this task.")
    seed_everything(int(run.config.get("seed", 0)))
    model = build_model(run, for_training=True)
    train_loader = run_loader(run, model, train_ids, y_train, train=True)
    val_loader = run_loader(run, model, val_ids, y_val, train=False) if val_ids else None
    epochs = int(run.config["epochs"])
    total = epochs * len(train_loader)
    job_progress(run, done=0, total=total, note=f"training on {len(train_ids)} images")
    counter = {"n": 0}

    def progress(info: dict) -> None:
        if info["phase"] == "epoch_end":
            run.history = [*run.history, {k: info.get(k) for k in ("epoch", "loss", "val_loss", "val_metric")}]
            run_set(run, history=run.history)
        done = (info["epoch"] - 1) * info["n_batches"] + info["batch"]
        run_set(run, live={**info, "epochs": epochs})
        job_progress(
            run,
            done=done,
            total=total,
            note=f"epoch {info['epoch']}/{epochs} · batch {info['batch']}/{info['n_batches']} · "
            f"loss {info['loss']:.4f}{_val_note(run.history, run.config['task'], val_loader is not None)}",
        )
        counter["n"] += 1

    history = fit(
        model,
        train_loader,
        val_loader,
        task=run.config["task"],
        epochs=epochs,
        lr=run.config["lr"],
        optimizer=run.config["optimizer"],
        device=run_device(),
        checkpoint_dir=Path(run.artefact_dir) / "checkpoints",
        resume=True,
        progress=progress,
        should_stop=lambda: counter["n"] % 10 == 0 and run_cancelled(run),
    )
    if history.get("stopped"):
        raise ApplicationError("Training was cancelled.")
    save_weights(model, Path(run.artefact_dir) / MODEL_FILE)
    artefacts.publish(run, MODEL_FILE)
    run.metrics = {**run.metrics, "training": {k: history.get(k) for k in ("best_epoch", "best_metric", "metric")}}
    run_set(run, metrics=run.metrics)


def _val_note(history: list[dict], task: str, has_val: bool) -> str:
    """ " · val AUC 0.812" (the MAE for regression) of the last finished epoch, for the live progress note."""
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
    cfg = run.config
    names = cfg["characteristics"]
    train_all = split_image_ids(split=run.split, part=SplitPart.TRAIN)
    train_ids, train_sets = rating_sets(train_all, names)
    val_ids, val_sets = rating_sets(split_image_ids(split=run.split, part=SplitPart.VAL), names)
    if len(train_ids) < 2:
        raise ApplicationError(
            f"The training part has {len(train_ids)} images with complete ratings of "
            f"{', '.join(names)}; at least 2 are needed."
        )
    seed_everything(int(cfg.get("seed", 0)))
    model = build_model(run, for_training=True)
    images = lambda ids, train: ImagePathDataset(image_paths(ids), build_transform_for(run, model, train=train))  # noqa: E731
    checkpoints = Path(run.artefact_dir) / "checkpoints"
    epochs, regressor_epochs = int(cfg["epochs"]), int(cfg["regressor_epochs"]) if cfg["semi_supervised"] else 0
    rated = set(train_ids)
    unrated = [i for i in train_all if i not in rated] if cfg["semi_supervised"] else []
    total = epochs + (regressor_epochs if unrated else 0)
    job_progress(run, done=0, total=total, note=f"training on {len(train_ids)} rated images")
    common = dict(
        batch_size=int(cfg["batch_size"]),
        lr=float(cfg["lr"]),
        device=run_device(),
        resume=True,
        seed=int(cfg.get("seed", 0)),
    )
    stop = lambda: run_cancelled(run)  # noqa: E731 (asked once per epoch)

    def progress(offset: int, phase: str):
        def report(info: dict) -> None:
            entry = {
                "epoch": offset + info["epoch"],
                "phase": phase,
                "loss": info["loss"],
                "regression": info["regression"],
                "similarity": info["similarity"],
                "val_metric": info.get("distance_correlation_r"),
            }
            run.history = [*run.history, entry]
            run_set(run, history=run.history, live={**entry, "epochs": total})
            note = f"{phase} epoch {info['epoch']}/{info['epochs']} · loss {info['loss']:.4f}"
            if entry["val_metric"] is not None:
                note += f" · val distance r {entry['val_metric']:.3f}"
            job_progress(run, done=offset + info["epoch"], total=total, note=note)

        return report

    sets, dataset, pseudo_note = list(train_sets), images(train_ids, True), ""
    if unrated:
        seed_everything(int(cfg.get("seed", 0)) + 1)
        regressor = build_model(run, for_training=True)
        history = fit_rating_metric(
            regressor,
            dataset,
            train_sets,
            epochs=regressor_epochs,
            schedule=REGRESSION_ONLY,
            checkpoint_dir=checkpoints / "regressor",
            progress=progress(0, "regressor"),
            should_stop=stop,
            **common,
        )
        if history.get("stopped"):
            raise ApplicationError("Training was cancelled.")
        predicted = pseudo_label_ratings(
            regressor, images(unrated, False), clip=_rating_range(train_sets), device=run_device()
        )
        sets += [row[None, :] for row in predicted.astype(np.float32)]
        dataset = ConcatDataset([dataset, images(unrated, True)])
        pseudo_note = f"{len(unrated)} unrated train images labelled by the regressor"
    scale = cfg["target_scale"]
    if scale == "auto":
        largest = float(set_distance_matrix(train_sets).max())
        scale = 1.0 / largest if largest > 0 else 1.0
    kl = DistanceMatrixKLLoss(temperature=float(cfg["temperature"]), negate=bool(cfg["negate"]), target_scale=scale)
    history = fit_rating_metric(
        model,
        dataset,
        sets,
        epochs=epochs,
        schedule=[tuple(s) for s in cfg["schedule"]],
        distance_loss=kl,
        val_images=images(val_ids, False) if len(val_ids) >= 3 else None,
        val_ratings=val_sets or None,
        checkpoint_dir=checkpoints,
        progress=progress(regressor_epochs if unrated else 0, "metric"),
        should_stop=stop,
        **common,
    )
    if history.get("stopped"):
        raise ApplicationError("Training was cancelled.")
    save_weights(model, Path(run.artefact_dir) / MODEL_FILE)
    artefacts.publish(run, MODEL_FILE)
    run.metrics = {
        **run.metrics,
        "training": {
            "best_epoch": history["best_epoch"],
            "best_metric": history["best_metric"],
            "metric": "val distance correlation r" if len(val_ids) >= 3 else "-training loss",
            "target_scale": scale,
            "rated_train_images": len(train_ids),
            "pseudo_labelled": pseudo_note,
        },
    }
    run_set(run, metrics=run.metrics)


def _rating_range(sets: list[np.ndarray]) -> tuple[float, float]:
    """Clip predicted ratings to the range the readers used (paper 004: the 1–5 scale)."""
    values = np.concatenate(sets)
    return float(values.min()), float(values.max())
