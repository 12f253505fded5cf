"""Training: fit a model for a binary, multi-label or regression task with validation-based selection and resume.

Every completed epoch writes `last.pt` (model, optimiser, scaler, epoch, best metric, history)
atomically (temporary file + os.replace), and `best.pt` (model weights + metric) when the
validation metric improves, so a killed process resumes from its last completed epoch. A
stop request (`should_stop`) or a kill in the middle of an epoch loses only that epoch.
Random-number state is not checkpointed: a resumed run is equivalent, not bit-identical.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from .device import autocast, resolve_device

TASKS = ("binary", "multilabel", "regression")
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
Progress = Callable[[dict[str, Any]], None]


def loss_function(task: str) -> nn.Module:
    """BCE-with-logits for binary/multi-label classification, L1 for regression."""
    if task in ("binary", "multilabel"):
        return nn.BCEWithLogitsLoss()
    if task == "regression":
        return nn.L1Loss()
    raise ValueError(f"task must be one of {TASKS}, got {task!r}.")


def default_metric(task: str) -> str:
    """Model-selection metric per task: ROC AUC for classification, −MAE for regression."""
    return "neg_mae" if task == "regression" else "auc"


def _align(outputs: torch.Tensor, targets: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs and float targets of the same shape ((n,) for binary/regression, (n, L) for multi-label)."""
    outputs = outputs.float()
    if task != "multilabel":
        outputs = outputs.reshape(len(outputs), -1)[:, 0]
        targets = targets.reshape(-1)
    return outputs, targets.to(outputs.device, dtype=torch.float32)


def validation_score(task: str, outputs: np.ndarray, targets: np.ndarray, metric: str) -> float:
    """Higher-is-better validation score: "auc" (macro over labels), "accuracy" (threshold 0.5), or "neg_mae"."""
    if metric == "neg_mae":
        return -float(np.mean(np.abs(outputs - targets)))
    probs = 1.0 / (1.0 + np.exp(-outputs))
    if metric == "accuracy":
        return float(np.mean((probs >= 0.5) == (targets >= 0.5)))
    if metric != "auc":
        raise ValueError(f"unknown validation metric {metric!r}.")

    columns = probs.reshape(len(probs), -1).T
    truth = targets.reshape(len(targets), -1).T
    aucs = [roc_auc_score(t, p) for t, p in zip(truth, columns, strict=True) if 0 < t.sum() < len(t)]
    return float(np.mean(aucs)) if aucs else validation_score(task, outputs, targets, "accuracy")


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then os.replace over `path`."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW, or SGD with momentum 0.9 (paper 000 used SGD)."""
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {name!r}.")


def _new_history(metric: str) -> dict[str, Any]:
    """Empty training history."""
    return {
        "epoch": [],
        "train_loss": [],
        "val_loss": [],
        "val_metric": [],
        "metric_name": metric,
        "best_metric": -math.inf,
        "best_epoch": 0,
        "epochs_completed": 0,
        "resumed_from": 0,
        "stopped": False,
    }


def _split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) from a DataLoader batch."""
    inputs, targets = batch[0], batch[1]
    return inputs, torch.as_tensor(targets)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    task: str,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    amp: bool,
    epoch: int,
    progress: Progress | None,
    should_stop: Callable[[], bool] | None,
) -> float | None:
    """Mean training loss of one epoch, or None when a stop was requested before it finished."""
    criterion = loss_function(task)
    model.train()
    n_batches = len(loader)  # type: ignore[arg-type]
    total, count = 0.0, 0
    for number, batch in enumerate(loader, start=1):
        if should_stop and should_stop():
            return None
        inputs, targets = _split_batch(batch)
        with autocast(device, amp):
            outputs, aligned = _align(model(inputs.to(device, non_blocking=True)), targets, task)
            loss = criterion(outputs, aligned)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += float(loss.detach()) * len(inputs)
        count += len(inputs)
        if progress:
            progress(
                {
                    "phase": "train",
                    "epoch": epoch,
                    "batch": number,
                    "n_batches": n_batches,
                    "loss": float(loss.detach()),
                    "val_metric": None,
                }
            )
    return total / max(count, 1)


def evaluate(
    model: nn.Module, loader: Iterable[Any], *, task: str, device: torch.device, amp: bool, metric: str
) -> tuple[float, float]:
    """(validation loss, validation score) of the model on a loader."""
    criterion = loss_function(task)
    model.eval()
    outputs_all, targets_all, total, count = [], [], 0.0, 0
    with torch.inference_mode(), autocast(device, amp):
        for batch in loader:
            inputs, targets = _split_batch(batch)
            outputs, aligned = _align(model(inputs.to(device, non_blocking=True)), targets, task)
            total += float(criterion(outputs, aligned)) * len(inputs)
            count += len(inputs)
            outputs_all.append(outputs.float().cpu().numpy())
            targets_all.append(aligned.cpu().numpy())
    if count == 0:
        raise ValueError("the validation loader is empty.")
    score = validation_score(task, np.concatenate(outputs_all), np.concatenate(targets_all), metric)
    return total / count, score


def fit(
    model: nn.Module,
    train_loader: Iterable[Any],
    val_loader: Iterable[Any] | None,
    *,
    task: str,
    epochs: int,
    lr: float = 1e-4,
    weight_decay: float = 0.0,
    optimizer: str = "adamw",
    device: str | torch.device | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = True,
    amp: bool = True,
    metric: str | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    restore_best: bool = True,
) -> dict[str, Any]:
    """Train for `epochs` (resuming from checkpoint_dir/last.pt), keep the best validation model; return the history."""
    loss_function(task)  # validates the task
    metric = metric or default_metric(task)
    device = resolve_device(device)
    model.to(device)
    opt = make_optimizer(model, optimizer, lr, weight_decay)
    use_amp = amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    folder = Path(checkpoint_dir) if checkpoint_dir else None
    history = _new_history(metric)
    if folder and resume and (folder / LAST_CHECKPOINT).exists():
        history = _resume(folder / LAST_CHECKPOINT, model, opt, scaler, task)
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
    best_state = copy.deepcopy(model.state_dict()) if folder is None else None
    for epoch in range(history["epochs_completed"] + 1, epochs + 1):
        train_loss = train_one_epoch(
            model,
            train_loader,
            task=task,
            optimizer=opt,
            scaler=scaler,
            device=device,
            amp=use_amp,
            epoch=epoch,
            progress=progress,
            should_stop=should_stop,
        )
        if train_loss is None:
            history["stopped"] = True
            break
        val_loss, score = (
            evaluate(model, val_loader, task=task, device=device, amp=use_amp, metric=metric)
            if val_loader is not None
            else (math.nan, -train_loss)
        )
        if _record(history, epoch, train_loss, val_loss, score):
            best_state = _keep_best(model, task, history, folder)
        if folder:
            atomic_save(_full_record(model, opt, scaler, task, history), folder / LAST_CHECKPOINT)
        if progress:
            progress(
                {
                    "phase": "epoch_end",
                    "epoch": epoch,
                    "batch": len(train_loader),
                    "n_batches": len(train_loader),  # type: ignore[arg-type]
                    "loss": train_loss,
                    "val_loss": val_loss,
                    "val_metric": score,
                    "best_metric": history["best_metric"],
                }
            )
    if restore_best and history["best_epoch"]:
        _restore_best(model, folder, best_state)
    if folder:
        history["best_checkpoint"] = str(folder / BEST_CHECKPOINT)
    return history


def _record(history: dict[str, Any], epoch: int, train_loss: float, val_loss: float, score: float) -> bool:
    """Append one epoch to the history; whether it is the best so far."""
    history["epoch"].append(epoch)
    history["train_loss"].append(train_loss)
    history["val_loss"].append(val_loss)
    history["val_metric"].append(score)
    history["epochs_completed"] = epoch
    if score > history["best_metric"]:
        history["best_metric"], history["best_epoch"] = score, epoch
        return True
    return False


def _keep_best(
    model: nn.Module, task: str, history: dict[str, Any], folder: Path | None
) -> dict[str, torch.Tensor] | None:
    """Write best.pt (with a checkpoint folder) or return an in-memory copy of the best weights."""
    if folder is None:
        return copy.deepcopy(model.state_dict())
    atomic_save(_weights_record(model, task, history), folder / BEST_CHECKPOINT)
    return None


def _arch(model: nn.Module) -> str | None:
    """timm architecture name of the model, if it has one."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return cfg.get("architecture")


def _weights_record(model: nn.Module, task: str, history: dict[str, Any]) -> dict[str, Any]:
    """What best.pt holds: model weights and why they were chosen (loadable by backbones.load_weights)."""
    return {
        "model": _cpu_state(model),
        "arch": _arch(model),
        "task": task,
        "epoch": history["best_epoch"],
        "metric_name": history["metric_name"],
        "metric": history["best_metric"],
    }


def _full_record(
    model: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, task: str, history: dict[str, Any]
) -> dict[str, Any]:
    """What last.pt holds: everything needed to resume after the last completed epoch."""
    return {
        "model": _cpu_state(model),
        "optimizer": opt.state_dict(),
        "scaler": scaler.state_dict(),
        "arch": _arch(model),
        "task": task,
        "epoch": history["epochs_completed"],
        "best_metric": history["best_metric"],
        "history": history,
    }


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict copied to the CPU."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _resume(
    path: Path, model: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, task: str
) -> dict[str, Any]:
    """Load last.pt into model, optimiser and scaler; return its history."""
    record = torch.load(path, map_location="cpu", weights_only=True)
    if record.get("task") != task:
        raise ValueError(f"{path} is a {record.get('task')!r} checkpoint, not {task!r}.")
    model.load_state_dict(record["model"])
    opt.load_state_dict(record["optimizer"])
    scaler.load_state_dict(record["scaler"])
    history = record["history"]
    history["resumed_from"] = record["epoch"]
    history["stopped"] = False
    return history


def _restore_best(model: nn.Module, folder: Path | None, best_state: dict[str, torch.Tensor] | None) -> None:
    """Put the best validation weights back into the model."""
    if folder is not None and (folder / BEST_CHECKPOINT).exists():
        best_state = torch.load(folder / BEST_CHECKPOINT, map_location="cpu", weights_only=True)["model"]
    if best_state is not None:
        model.load_state_dict(best_state)
