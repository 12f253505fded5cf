"""retrieval.ml.train: fit() learns, checkpoints atomically each epoch, resumes, selects the best epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from retrieval.ml.backbones import create_backbone
from retrieval.ml.embed import ImageListDataset, embed_images
from retrieval.ml.metrics import evaluate_retrieval
from retrieval.ml.train import BEST_CHECKPOINT, LAST_CHECKPOINT, fit, validation_score
from retrieval.ml.transforms import build_transform

pytestmark = pytest.mark.ml


class Interrupted(Exception):
    """Stands in for a killed worker."""


def loaders(make_toy, *, n_train: int = 64, n_val: int = 32, targets=None, batch_size: int = 16):
    """Train/val DataLoaders of preprocessed 32 px toy tensors; targets default to the 0/1 labels."""
    images, labels = make_toy(n_train + n_val, seed=1)
    transform = build_transform(crop=32, resize=32)
    x = torch.stack([transform(image) for image in images])
    y = torch.as_tensor(labels if targets is None else targets(labels), dtype=torch.float32)
    torch.manual_seed(0)
    train = DataLoader(TensorDataset(x[:n_train], y[:n_train]), batch_size=batch_size, shuffle=True)
    val = DataLoader(TensorDataset(x[n_train:], y[n_train:]), batch_size=batch_size)
    return train, val


def tiny(num_classes: int = 1) -> torch.nn.Module:
    """A small random timm model, seeded."""
    torch.manual_seed(0)
    return create_backbone("test_resnet", weights="random", num_classes=num_classes)


def test_binary_loss_decreases_and_best_is_restored(make_toy, tmp_path: Path):
    train, val = loaders(make_toy)
    model = tiny()
    history = fit(model, train, val, task="binary", epochs=4, lr=3e-3, device="cpu", checkpoint_dir=tmp_path)
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["metric_name"] == "auc" and history["best_metric"] == max(history["val_metric"])
    best = torch.load(tmp_path / BEST_CHECKPOINT, weights_only=True)
    assert best["epoch"] == history["best_epoch"]
    assert all(torch.equal(v, best["model"][k]) for k, v in model.state_dict().items())
    embedder = create_backbone("test_resnet", weights=tmp_path / BEST_CHECKPOINT)  # headless, same trunk
    assert torch.equal(embedder.state_dict()["conv1.0.weight"], best["model"]["conv1.0.weight"])


def test_resume_continues_after_interruption(make_toy, tmp_path: Path):
    train, val = loaders(make_toy)

    def kill_after_first_epoch(event):
        if event["phase"] == "epoch_end" and event["epoch"] == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        fit(
            tiny(),
            train,
            val,
            task="binary",
            epochs=3,
            lr=3e-3,
            device="cpu",
            checkpoint_dir=tmp_path,
            progress=kill_after_first_epoch,
        )
    saved = torch.load(tmp_path / LAST_CHECKPOINT, weights_only=True)
    assert saved["epoch"] == 1 and not list(tmp_path.glob("*.tmp"))

    seen = []
    history = fit(
        tiny(),
        train,
        val,
        task="binary",
        epochs=3,
        lr=3e-3,
        device="cpu",
        checkpoint_dir=tmp_path,
        progress=seen.append,
    )
    assert history["resumed_from"] == 1
    assert history["epoch"] == [1, 2, 3]
    assert history["train_loss"][0] == saved["history"]["train_loss"][0]
    assert {event["epoch"] for event in seen} == {2, 3}
    assert torch.load(tmp_path / LAST_CHECKPOINT, weights_only=True)["epoch"] == 3


def test_resume_false_restarts(make_toy, tmp_path: Path):
    train, val = loaders(make_toy, n_train=16, n_val=16)
    fit(tiny(), train, val, task="binary", epochs=1, device="cpu", checkpoint_dir=tmp_path)
    history = fit(tiny(), train, val, task="binary", epochs=1, device="cpu", checkpoint_dir=tmp_path, resume=False)
    assert history["resumed_from"] == 0 and history["epoch"] == [1]


def test_should_stop_ends_cleanly_without_checkpointing_partial_epoch(make_toy, tmp_path: Path):
    train, val = loaders(make_toy)
    calls = iter(range(100))
    history = fit(
        tiny(),
        train,
        val,
        task="binary",
        epochs=3,
        device="cpu",
        checkpoint_dir=tmp_path,
        should_stop=lambda: next(calls) >= 6,
    )  # stops in the second epoch (4 batches per epoch)
    assert history["stopped"] and history["epochs_completed"] == 1
    assert torch.load(tmp_path / LAST_CHECKPOINT, weights_only=True)["epoch"] == 1


def test_regression_uses_l1_and_negative_mae(make_toy):
    train, val = loaders(make_toy, targets=lambda labels: 150.0 + 60.0 * labels)
    history = fit(tiny(), train, val, task="regression", epochs=3, lr=0.05, device="cpu")
    assert history["metric_name"] == "neg_mae"
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert all(score <= 0 for score in history["val_metric"])


def test_multilabel_task(make_toy):
    train, val = loaders(make_toy, targets=lambda labels: np.stack([labels, 1 - labels], axis=1))
    history = fit(tiny(num_classes=2), train, val, task="multilabel", epochs=2, lr=3e-3, device="cpu")
    assert len(history["val_metric"]) == 2 and 0.0 <= history["best_metric"] <= 1.0


def test_validation_score_definitions():
    logits = np.array([-2.0, -1.0, 1.0, 2.0])
    assert validation_score("binary", logits, np.array([0, 0, 1, 1.0]), "auc") == 1.0
    assert validation_score("binary", logits, np.array([0, 1, 1, 1.0]), "accuracy") == 0.75
    assert validation_score("regression", np.array([1.0, 3.0]), np.array([2.0, 2.0]), "neg_mae") == -1.0
    with pytest.raises(ValueError):
        fit(tiny(), [], None, task="segmentation", epochs=1)


def test_trained_embedding_beats_random_retrieval(make_toy):
    images, labels = make_toy(120, seed=2)
    train_tf, eval_tf = build_transform(crop=32, train=True), build_transform(crop=32)
    torch.manual_seed(0)
    train = DataLoader(
        ImageListDataset(images[:80], train_tf, labels[:80].astype(np.float32)), batch_size=16, shuffle=True
    )
    val = DataLoader(ImageListDataset(images[80:100], eval_tf, labels[80:100].astype(np.float32)), batch_size=20)
    model = tiny()
    fit(model, train, val, task="binary", epochs=4, lr=3e-3, device="cpu")
    embeddings = embed_images(model, images[100:] + images[80:100], transform=eval_tf)
    result = evaluate_retrieval(embeddings, np.r_[labels[100:], labels[80:100]], ks=(5,))
    assert result["precision@5"] > result["precision@5_random"]
    assert result["precision@5_p"] < 0.05
