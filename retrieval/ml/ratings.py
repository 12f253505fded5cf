"""Rating-based metric learning (paper 004, Loyman & Greenspan, LIDC): similarity from readers' rating vectors.

Each item (nodule patch) has a *set* of rating vectors, one per reader (9 characteristics, 1–5).
Paper 004's ground-truth distance between items a and b (Eq. 1) is

    D(a, b) = ½·mean_i min_j ‖R_a,i − R_b,j‖₂ + ½·mean_j min_i ‖R_b,j − R_a,i‖₂

An embedding network (128-d, L2-normalised) is trained multi-task: rating regression (logcosh on
the item's mean rating vector) plus a distance-matrix loss, the KL divergence between the
row-softmaxes of the target distance matrix T (set distances within the batch) and the predicted
matrix P (L2 distances between embeddings), Eq. 3:

    T̃_b,i = e^{T_b,i} / Σ_i e^{T_b,i},  P̃_b,i = e^{P_b,i} / Σ_i e^{P_b,i},  KL = Σ_b Σ_i T̃ log(T̃ / P̃)

What the paper fixes and what it leaves open (our defaults in brackets):

* Sign and temperature: Eq. 3 exponentiates the distances themselves, +T and +P, at temperature 1
  [`DistanceMatrixKLLoss(negate=False, temperature=1.0)`]; `negate=True` gives the SNE-style
  softmax of −distances (mass on near neighbours). Either way the loss is zero exactly when each
  row of P equals the row of T up to an additive constant, so T and P must live on comparable
  scales: with unit-norm embeddings P ≤ 2, while rating distances reach ~12 — rescale T (e.g.
  `target_scale=1/T.max()`) or raise the temperature when ratings are on the raw 1–5 scale.
* The row sum includes the diagonal (both matrices are 0 there), as Eq. 3 does; rows are averaged
  over the batch (Keras' KL loss per sample, then the batch mean) rather than summed.
* Multi-task weights (Table 1): (regression, similarity) = (0.9, 0.1) → (0.5, 0.5) → (0.0, 0.1).
  The paper does not give the epochs at which the steps switch; the authors' code switches its
  loss-weight schedules every 20 epochs, so `PAPER_SCHEDULE` starts the steps at epochs 1, 21
  and 41 (epochs counted from 1 as in train.fit). Pass your own schedule to change them.
* Semi-supervised (Sec. 3.2): a rating regressor trained on the labelled part predicts ratings for
  the unlabelled part (`pseudo_label_ratings`); the metric net then learns from the predicted
  ratings (each a one-vector set), with or without the labelled items (`fit_semi_supervised`).
* Evaluation: Pearson correlation between embedding distances and set distances over the upper
  triangle, and the hubness index mean_k exp(−|skew N_k|), k ∈ {3, 5, 7, 11, 17}
  (`evaluate_rating_metric`, via retrieval.ml.metrics).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial.distance import cdist
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .backbones import embedding_dim
from .device import resolve_device
from .embed import pooled_features
from .metrics import HUBNESS_KS, distance_correlation, hubness, knn
from .train import LAST_CHECKPOINT, atomic_save

N_RATINGS = 9  # LIDC: subtlety, internal structure, calcification, sphericity, margin, lobulation,
#               spiculation, texture, malignancy
EMBED_DIM = 128
Schedule = Sequence[tuple[int, float, float]]  # (first epoch, regression weight, similarity weight)
PAPER_SCHEDULE: Schedule = ((1, 0.9, 0.1), (21, 0.5, 0.5), (41, 0.0, 0.1))
REGRESSION_ONLY: Schedule = ((1, 1.0, 0.0),)
Progress = Callable[[dict[str, Any]], None]


# --- ground-truth distances ---------------------------------------------------------------


def set_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Paper 004's Eq. 1 between two rating sets (na, d) and (nb, d): ½·mean_a min_b + ½·mean_b min_a of L2."""
    a, b = np.atleast_2d(np.asarray(a, dtype=np.float64)), np.atleast_2d(np.asarray(b, dtype=np.float64))
    if len(a) == 0 or len(b) == 0:
        raise ValueError("rating sets must not be empty.")
    d = cdist(a, b)
    return float(0.5 * d.min(axis=1).mean() + 0.5 * d.min(axis=0).mean())


def set_distance_matrix(ratings: Sequence[np.ndarray], *, block_rows: int = 1024) -> np.ndarray:
    """(n, n) matrix of `set_distance` between all rating sets, vectorised over blocks of whole items."""
    sets = [np.atleast_2d(np.asarray(r, dtype=np.float64)) for r in ratings]
    if any(len(s) == 0 for s in sets):
        raise ValueError("rating sets must not be empty.")
    counts = np.array([len(s) for s in sets])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rows = np.concatenate(sets) if sets else np.zeros((0, N_RATINGS))
    n = len(sets)
    directed = np.empty((n, n))  # directed[i, j] = mean over i's ratings of the distance to the nearest of j's
    item = 0
    while item < n:
        stop = item + 1
        while stop < n and starts[stop] + counts[stop] - starts[item] <= block_rows:
            stop += 1
        block = rows[starts[item] : starts[stop - 1] + counts[stop - 1]]
        nearest = np.minimum.reduceat(cdist(block, rows), starts, axis=1)  # (block rows, n)
        sums = np.add.reduceat(nearest, starts[item:stop] - starts[item], axis=0)
        directed[item:stop] = sums / counts[item:stop, None]
        item = stop
    return 0.5 * (directed + directed.T)


def mean_ratings(ratings: Sequence[np.ndarray]) -> np.ndarray:
    """(n, d) mean rating vector of each item: the regression target."""
    return np.stack([np.atleast_2d(np.asarray(r, dtype=np.float64)).mean(axis=0) for r in ratings]).astype(np.float32)


# --- losses -------------------------------------------------------------------------------


def logcosh_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean log(cosh(prediction − target)), computed stably as x + softplus(−2x) − log 2 (Keras' logcosh)."""
    x = prediction - target
    return (x + F.softplus(-2.0 * x) - math.log(2.0)).mean()


def pairwise_l2(embeddings: torch.Tensor) -> torch.Tensor:
    """(B, B) Euclidean distances with a zero diagonal and finite gradients there."""
    squared = (embeddings[:, None, :] - embeddings[None, :, :]).pow(2).sum(-1)
    eye = torch.eye(len(embeddings), dtype=torch.bool, device=embeddings.device)
    return torch.where(eye, 0.0, squared.clamp(min=1e-12).sqrt())


class DistanceMatrixKLLoss(nn.Module):
    """Mean over rows of KL(softmax(s·c·T_b/τ) ‖ softmax(s·P_b/τ)); s = +1 (Eq. 3) or −1 (negate), c = target_scale."""

    def __init__(self, *, temperature: float = 1.0, negate: bool = False, target_scale: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be positive.")
        self.temperature = temperature
        self.sign = -1.0 if negate else 1.0
        self.target_scale = target_scale

    def forward(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(self.sign * predicted / self.temperature, dim=1)
        log_t = F.log_softmax(self.sign * self.target_scale * target.to(predicted) / self.temperature, dim=1)
        return F.kl_div(log_p, log_t, reduction="batchmean", log_target=True)


def loss_weights(epoch: int, schedule: Schedule = PAPER_SCHEDULE) -> tuple[float, float]:
    """(regression, similarity) weights in force at `epoch` (from 1): the last step whose first epoch ≤ epoch."""
    steps = sorted(schedule)
    if not steps or epoch < steps[0][0]:
        raise ValueError(f"the schedule {list(schedule)} does not cover epoch {epoch}.")
    current = steps[0]
    for step in steps:
        if step[0] <= epoch:
            current = step
    return float(current[1]), float(current[2])


# --- model --------------------------------------------------------------------------------


class RatingMetricNet(nn.Module):
    """Backbone → pooled features → Linear → 128-d L2-normalised embedding; a linear head regresses 9 ratings.

    `feature_dim` defaults to the backbone's pooled width (`backbones.embedding_dim`, timm models).
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int | None = None,
        *,
        embed_dim: int = EMBED_DIM,
        n_ratings: int = N_RATINGS,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.project = nn.Linear(feature_dim or embedding_dim(backbone), embed_dim)
        self.ratings = nn.Linear(embed_dim, n_ratings)
        self.num_features = self.head_hidden_size = embed_dim
        self.pretrained_cfg = dict(getattr(backbone, "pretrained_cfg", {}) or {}, classifier="ratings")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The L2-normalised embedding (n, embed_dim)."""
        return F.normalize(self.project(pooled_features(self.backbone, x)), dim=1)

    def forward_head(self, embedding: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The embedding itself (pre_logits) or the predicted ratings (n, n_ratings)."""
        return embedding if pre_logits else self.ratings(embedding)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embedding, predicted ratings)."""
        embedding = self.forward_features(x)
        return embedding, self.ratings(embedding)


# --- training -----------------------------------------------------------------------------


class _Indexed(Dataset):
    """Items of a tensor or Dataset as (image, index)."""

    def __init__(self, images: Dataset | torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.images[index]
        return (item[0] if isinstance(item, (tuple, list)) else item), index


def _rating_targets(
    ratings: Sequence[np.ndarray], target_distances: np.ndarray | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean rating vectors (n, d) and the set-distance matrix (n, n) as float32 tensors."""
    distances = set_distance_matrix(ratings) if target_distances is None else np.asarray(target_distances)
    return torch.from_numpy(mean_ratings(ratings)), torch.from_numpy(distances.astype(np.float32))


def multitask_loss(
    model: nn.Module,
    x: torch.Tensor,
    mean_target: torch.Tensor,
    distance_target: torch.Tensor,
    weights: tuple[float, float],
    kl: nn.Module,
) -> tuple[torch.Tensor, dict[str, float]]:
    """w_reg · logcosh(ratings) + w_sim · KL(distance matrices) for one batch, and both parts."""
    embedding, predicted = model(x)
    regression = logcosh_loss(predicted, mean_target)
    similarity = kl(pairwise_l2(embedding), distance_target) if len(x) > 1 else regression * 0.0
    total = weights[0] * regression + weights[1] * similarity
    return total, {"regression": float(regression.detach()), "similarity": float(similarity.detach())}


def _run_epoch(
    model: nn.Module,
    loader: DataLoader,
    targets: tuple[torch.Tensor, torch.Tensor],
    weights: tuple[float, float],
    kl: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> dict[str, float] | None:
    """Mean total/regression/similarity losses of one epoch; None if there was nothing to train."""
    means, distances = targets
    model.train()
    sums = {"loss": 0.0, "regression": 0.0, "similarity": 0.0}
    count = 0
    for x, index in loader:
        total, parts = multitask_loss(
            model, x.to(device), means[index].to(device), distances[index][:, index].to(device), weights, kl
        )
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        for key, value in (("loss", float(total.detach())), *parts.items()):
            sums[key] += value * len(x)
        count += len(x)
    return {k: v / count for k, v in sums.items()} if count else None


def _new_history(schedule: Schedule) -> dict[str, Any]:
    """Empty training history of fit_rating_metric."""
    return {
        "epoch": [],
        "loss": [],
        "regression": [],
        "similarity": [],
        "weights": [],
        "val": [],
        "schedule": [list(s) for s in schedule],
        "epochs_completed": 0,
        "best_epoch": 0,
        "best_metric": -math.inf,
        "stopped": False,
    }


def fit_rating_metric(
    model: nn.Module,
    images: Dataset | torch.Tensor,
    ratings: Sequence[np.ndarray],
    *,
    epochs: int,
    schedule: Schedule = PAPER_SCHEDULE,
    distance_loss: nn.Module | None = None,
    target_distances: np.ndarray | None = None,
    val_images: Dataset | torch.Tensor | None = None,
    val_ratings: Sequence[np.ndarray] | None = None,
    batch_size: int = 32,
    lr: float = 1e-3,
    device: str | torch.device | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = True,
    seed: int = 0,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Multi-task training (logcosh ratings + distance-matrix KL, scheduled weights); returns the history.

    `images`: (n, C, H, W) tensor or a Dataset of (tensor, _) items; `ratings[i]`: (readers_i, 9)
    rating set of item i. With validation data the epoch with the best distance correlation is
    kept (weights restored at the end). With `checkpoint_dir`, last.pt is written atomically after
    every epoch and a later call resumes from it.
    """
    device = resolve_device(device)
    model.to(device)
    targets = _rating_targets(ratings, target_distances)
    kl = distance_loss or DistanceMatrixKLLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    folder = Path(checkpoint_dir) if checkpoint_dir else None
    history = _new_history(schedule)
    if folder and resume and (folder / LAST_CHECKPOINT).exists():
        history = _resume(folder / LAST_CHECKPOINT, model, optimizer)
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed + history["epochs_completed"])
    loader = DataLoader(_Indexed(images), batch_size=batch_size, shuffle=True, generator=generator, drop_last=False)
    best_state = copy.deepcopy(model.state_dict())
    for epoch in range(history["epochs_completed"] + 1, epochs + 1):
        if should_stop and should_stop():
            history["stopped"] = True
            break
        weights = loss_weights(epoch, schedule)
        losses = _run_epoch(model, loader, targets, weights, kl, optimizer, device)
        if losses is None:
            raise ValueError("no training items.")
        val = evaluate_rating_metric(model, val_images, val_ratings, device=device) if val_images is not None else {}
        if _record(history, epoch, weights, losses, val):
            best_state = copy.deepcopy(model.state_dict())
        if folder:
            atomic_save(_checkpoint(model, optimizer, history), folder / LAST_CHECKPOINT)
        if progress:
            progress({"phase": "epoch_end", "epoch": epoch, "epochs": epochs, **losses, **val})
    if val_images is not None and history["best_epoch"]:
        model.load_state_dict(best_state)
    return history


def _record(
    history: dict[str, Any], epoch: int, weights: tuple[float, float], losses: dict[str, float], val: dict[str, float]
) -> bool:
    """Append one epoch; whether its validation correlation is the best so far."""
    history["epoch"].append(epoch)
    history["weights"].append(list(weights))
    for key in ("loss", "regression", "similarity"):
        history[key].append(losses[key])
    history["val"].append(val)
    history["epochs_completed"] = epoch
    score = val.get("distance_correlation_r", -losses["loss"])
    if score > history["best_metric"]:
        history["best_metric"], history["best_epoch"] = score, epoch
        return True
    return False


def _checkpoint(model: nn.Module, optimizer: torch.optim.Optimizer, history: dict[str, Any]) -> dict[str, Any]:
    """What last.pt holds for a rating-metric run."""
    return {
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "task": "rating_metric",
        "epoch": history["epochs_completed"],
        "history": history,
    }


def _resume(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Load last.pt into model and optimiser; return its history."""
    record = torch.load(path, map_location="cpu", weights_only=True)
    if record.get("task") != "rating_metric":
        raise ValueError(f"{path} is a {record.get('task')!r} checkpoint, not a rating-metric one.")
    model.load_state_dict(record["model"])
    optimizer.load_state_dict(record["optimizer"])
    history = record["history"]
    history["stopped"] = False
    return history


# --- prediction, semi-supervised training, evaluation ------------------------------------


def _batches(images: Dataset | torch.Tensor, batch_size: int) -> DataLoader:
    """An ordered DataLoader over a tensor or Dataset."""
    return DataLoader(TensorDataset(images) if isinstance(images, torch.Tensor) else images, batch_size=batch_size)


@torch.no_grad()
def _predict(
    model: nn.Module, images: Dataset | torch.Tensor, device: torch.device, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, ratings) of a RatingMetricNet for all images, in eval mode (modes restored after)."""
    modes = [(module, module.training) for module in model.modules()]
    model.to(device).eval()
    embeddings, ratings = [], []
    try:
        for batch in _batches(images, batch_size):
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            embedding, predicted = model(x.to(device))
            embeddings.append(embedding.float().cpu().numpy())
            ratings.append(predicted.float().cpu().numpy())
    finally:
        for module, training in modes:
            module.training = training
    return np.concatenate(embeddings), np.concatenate(ratings)


def pseudo_label_ratings(
    regressor: nn.Module,
    unlabelled: Dataset | torch.Tensor,
    *,
    clip: tuple[float, float] | None = (1.0, 5.0),
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Predicted ratings (n, 9) for unlabelled images, clipped to the rating scale (paper 004, step 1)."""
    _, ratings = _predict(regressor, unlabelled, resolve_device(device), batch_size)
    return np.clip(ratings, *clip) if clip else ratings


def fit_semi_supervised(
    model: nn.Module,
    regressor: nn.Module,
    labelled_images: torch.Tensor,
    labelled_ratings: Sequence[np.ndarray],
    unlabelled_images: torch.Tensor,
    *,
    include_labelled: bool = True,
    **fit_kwargs: Any,
) -> tuple[dict[str, Any], np.ndarray]:
    """Step 2 of paper 004's semi-supervised scheme: train `model` on regressor-predicted ratings; (history, pseudo)."""
    pseudo = pseudo_label_ratings(regressor, unlabelled_images, device=fit_kwargs.get("device"))
    ratings = [*(list(labelled_ratings) if include_labelled else []), *(p[None] for p in pseudo)]
    images = torch.cat([labelled_images, unlabelled_images]) if include_labelled else unlabelled_images
    return fit_rating_metric(model, images, ratings, **fit_kwargs), pseudo


def evaluate_embeddings(
    embeddings: np.ndarray,
    ratings: Sequence[np.ndarray] | None = None,
    *,
    target_distances: np.ndarray | None = None,
    ks: Sequence[int] = HUBNESS_KS,
) -> dict[str, float]:
    """Pearson r (and p) of embedding L2 distances vs set distances (upper triangle), and hubness (paper 004)."""
    distances = set_distance_matrix(ratings) if target_distances is None else np.asarray(target_distances)
    r, p = distance_correlation(embeddings, distances, metric="l2", precomputed=True, max_items=None)
    usable = [k for k in ks if k <= len(embeddings) - 1]
    neighbours, _ = knn(embeddings, max(usable), "l2") if usable else (np.zeros((len(embeddings), 0), int), None)
    return {"distance_correlation_r": r, "distance_correlation_p": p, **hubness(neighbours, usable)}


def evaluate_rating_metric(
    model: nn.Module,
    images: Dataset | torch.Tensor,
    ratings: Sequence[np.ndarray],
    *,
    device: str | torch.device | None = None,
    batch_size: int = 64,
) -> dict[str, float]:
    """`evaluate_embeddings` of the model's embeddings for these images, plus the rating RMSE."""
    embeddings, predicted = _predict(model, images, resolve_device(device), batch_size)
    out = evaluate_embeddings(embeddings, ratings)
    out["rating_rmse"] = float(np.sqrt(np.mean((predicted - mean_ratings(ratings)) ** 2)))
    return out
