"""retrieval.ml.ratings (paper 004): set distance, KL loss, weight schedule, multi-task and semi-supervised training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from retrieval.ml.embed import pooled_features
from retrieval.ml.ratings import (
    PAPER_SCHEDULE,
    REGRESSION_ONLY,
    DistanceMatrixKLLoss,
    RatingMetricNet,
    evaluate_embeddings,
    evaluate_rating_metric,
    fit_rating_metric,
    fit_semi_supervised,
    logcosh_loss,
    loss_weights,
    pairwise_l2,
    pseudo_label_ratings,
    set_distance,
    set_distance_matrix,
)
from retrieval.ml.train import LAST_CHECKPOINT

pytestmark = pytest.mark.ml


# --- set distance -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b, expected",
    [
        # one rating each: the plain L2 distance, √(3² + 4²) = 5
        ([[0, 0]], [[3, 4]], 5.0),
        # a→b nearest: 0 and 2 (mean 1); b→a nearest: 0 (mean 0); ½·1 + ½·0 = 0.5
        ([[0, 0], [2, 0]], [[0, 0]], 0.5),
        # 1-d: a→b: 0→1 is 1, 10→12 is 2 (mean 1.5); b→a: 1→0 is 1, 2→0 is 2, 12→10 is 2 (mean 5/3)
        # D = ½·1.5 + ½·5/3 = 0.75 + 0.8333… = 1.58333…
        ([[0], [10]], [[1], [2], [12]], 0.75 + 5 / 6),
        # the same set (order does not matter): 0
        ([[1, 2, 3], [4, 5, 6]], [[4, 5, 6], [1, 2, 3]], 0.0),
    ],
)
def test_set_distance_matches_hand_computed_cases(a, b, expected):
    assert set_distance(np.array(a), np.array(b)) == pytest.approx(expected)
    assert set_distance(np.array(b), np.array(a)) == pytest.approx(expected)


def random_rating_sets(n: int, seed: int = 0) -> list[np.ndarray]:
    """n items with 1–4 readers' integer ratings (9 characteristics, 1–5)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 6, size=(rng.integers(1, 5), 9)).astype(float) for _ in range(n)]


def test_set_distance_matrix_equals_the_pairwise_definition_in_any_block_size():
    sets = random_rating_sets(23)
    expected = np.array([[set_distance(a, b) for b in sets] for a in sets])
    for block_rows in (1, 7, 10_000):
        np.testing.assert_allclose(set_distance_matrix(sets, block_rows=block_rows), expected, rtol=1e-12)
    assert np.allclose(np.diag(expected), 0)
    with pytest.raises(ValueError):
        set_distance_matrix([np.zeros((0, 9))])


# --- losses and schedule ------------------------------------------------------------------


def test_logcosh_loss_matches_numpy_and_is_stable_for_large_errors():
    pred, target = torch.tensor([[0.5, -2.0], [100.0, 3.0]]), torch.tensor([[0.0, 0.0], [0.0, 3.0]])
    expected = np.mean([np.log(np.cosh(0.5)), np.log(np.cosh(2.0)), 100.0 - np.log(2.0), 0.0])
    assert float(logcosh_loss(pred, target)) == pytest.approx(expected, rel=1e-6)


def softmax_rows(m: np.ndarray) -> np.ndarray:
    e = np.exp(m - m.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("negate, temperature, scale", [(False, 1.0, 1.0), (True, 0.5, 1.0), (False, 2.0, 0.25)])
def test_distance_matrix_kl_equals_a_direct_numpy_computation(negate, temperature, scale):
    rng = np.random.default_rng(1)
    p, t = rng.uniform(0, 2, (6, 6)), rng.uniform(0, 8, (6, 6))
    sign = -1.0 if negate else 1.0
    pt, pp = softmax_rows(sign * scale * t / temperature), softmax_rows(sign * p / temperature)
    expected = np.mean(np.sum(pt * np.log(pt / pp), axis=1))  # Eq. 3, averaged over rows
    loss = DistanceMatrixKLLoss(negate=negate, temperature=temperature, target_scale=scale)
    assert float(loss(torch.tensor(p), torch.tensor(t))) == pytest.approx(expected, rel=1e-9)


def test_distance_matrix_kl_is_zero_when_rows_differ_by_a_constant():
    t = torch.rand(5, 5)
    assert float(DistanceMatrixKLLoss()(t + torch.arange(5.0)[:, None], t)) == pytest.approx(0.0, abs=1e-6)


def test_pairwise_l2_has_a_zero_diagonal_and_finite_gradients():
    e = torch.randn(4, 3, requires_grad=True)
    d = pairwise_l2(e)
    torch.testing.assert_close(d, torch.cdist(e, e), rtol=1e-5, atol=1e-5)
    d.sum().backward()
    assert torch.isfinite(e.grad).all()


@pytest.mark.parametrize(
    "epoch, expected",
    [(1, (0.9, 0.1)), (20, (0.9, 0.1)), (21, (0.5, 0.5)), (40, (0.5, 0.5)), (41, (0.0, 0.1)), (500, (0.0, 0.1))],
)
def test_paper_schedule_switches_at_its_boundary_epochs(epoch, expected):
    assert loss_weights(epoch, PAPER_SCHEDULE) == expected


def test_custom_schedules_and_uncovered_epochs():
    schedule = [(5, 0.0, 1.0), (1, 1.0, 0.0)]  # order does not matter
    assert loss_weights(4, schedule) == (1.0, 0.0) and loss_weights(5, schedule) == (0.0, 1.0)
    with pytest.raises(ValueError):
        loss_weights(0, PAPER_SCHEDULE)


# --- model and training -------------------------------------------------------------------


def tiny_net(seed: int = 0) -> RatingMetricNet:
    """A RatingMetricNet on a two-layer conv backbone with global max pooling (as paper 004's core)."""
    torch.manual_seed(seed)
    backbone = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
    )
    return RatingMetricNet(backbone, feature_dim=16)


def toy_nodules(n: int, seed: int = 0) -> tuple[torch.Tensor, list[np.ndarray]]:
    """16 px blobs whose size and brightness drive the 9 ratings; 1–3 noisy readers per item."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:16, 0:16]
    images, sets = [], []
    for _ in range(n):
        radius, brightness = rng.uniform(1.5, 5), rng.uniform(0.3, 1.0)
        images.append(brightness * np.exp(-((yy - 8) ** 2 + (xx - 8) ** 2) / (2 * radius**2)))
        base = np.array([radius, brightness * 4, radius, 5 - radius, brightness * 5, radius / 2, 1, 3, radius])
        sets.append(np.clip(base + rng.normal(0, 0.3, (rng.integers(1, 4), 9)), 1, 5))
    return torch.tensor(np.stack(images)[:, None], dtype=torch.float32), sets


def test_rating_metric_net_gives_unit_128d_embeddings_and_nine_ratings():
    net = tiny_net()
    x, _ = toy_nodules(3)
    embedding, ratings = net(x)
    assert embedding.shape == (3, 128) and ratings.shape == (3, 9)
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(pooled_features(net, x), embedding)


def test_multitask_losses_decrease_on_a_toy_problem():
    x, sets = toy_nodules(48)
    net = tiny_net()
    history = fit_rating_metric(
        net,
        x,
        sets,
        epochs=12,
        schedule=[(1, 0.5, 0.5)],
        batch_size=16,
        lr=1e-2,
        device="cpu",
        distance_loss=DistanceMatrixKLLoss(target_scale=0.5),
    )
    assert history["epochs_completed"] == 12 and history["weights"][0] == [0.5, 0.5]
    assert history["regression"][-1] < 0.5 * history["regression"][0]
    assert history["similarity"][-1] < 0.8 * history["similarity"][0]
    assert history["loss"][-1] < history["loss"][0]
    assert evaluate_rating_metric(net, x, sets)["distance_correlation_r"] > 0.5


def test_training_resumes_from_its_last_checkpoint(tmp_path: Path):
    x, sets = toy_nodules(16)
    first = fit_rating_metric(tiny_net(), x, sets, epochs=2, batch_size=8, device="cpu", checkpoint_dir=tmp_path)
    assert (tmp_path / LAST_CHECKPOINT).exists() and first["epochs_completed"] == 2
    seen: list[int] = []
    second = fit_rating_metric(
        tiny_net(seed=1),
        x,
        sets,
        epochs=3,
        batch_size=8,
        device="cpu",
        checkpoint_dir=tmp_path,
        progress=lambda info: seen.append(info["epoch"]),
    )
    assert seen == [3] and second["epoch"] == [1, 2, 3]


def test_semi_supervised_path_pseudo_labels_and_trains_the_metric_net():
    x, sets = toy_nodules(40, seed=3)
    labelled_x, labelled_sets, unlabelled_x = x[:24], sets[:24], x[24:]
    regressor = tiny_net(seed=2)
    fit_rating_metric(
        regressor, labelled_x, labelled_sets, epochs=2, schedule=REGRESSION_ONLY, batch_size=8, device="cpu"
    )
    pseudo = pseudo_label_ratings(regressor, unlabelled_x, device="cpu")
    assert pseudo.shape == (16, 9) and pseudo.min() >= 1 and pseudo.max() <= 5
    metric_net = tiny_net(seed=4)
    history, used = fit_semi_supervised(
        metric_net,
        regressor,
        labelled_x,
        labelled_sets,
        unlabelled_x,
        epochs=2,
        batch_size=8,
        device="cpu",
        val_images=labelled_x,
        val_ratings=labelled_sets,
    )
    np.testing.assert_allclose(used, pseudo, rtol=1e-5)
    assert history["epoch"] == [1, 2] and history["best_epoch"] in (1, 2)
    scores = evaluate_rating_metric(metric_net, labelled_x, labelled_sets)
    assert -1 <= scores["distance_correlation_r"] <= 1 and 0 <= scores["hubness_index"] <= 1
    assert scores["rating_rmse"] > 0


def test_evaluation_is_perfect_for_embeddings_equal_to_single_ratings():
    rng = np.random.default_rng(0)
    ratings = rng.uniform(1, 5, (30, 9))
    scores = evaluate_embeddings(ratings, [r[None] for r in ratings])
    assert scores["distance_correlation_r"] == pytest.approx(1.0)
    assert {"hubness_index", "hubness_skew@3", "hubness_skew@17"} <= scores.keys()


def test_a_timm_backbone_sets_the_feature_width_itself():
    from retrieval.ml.backbones import create_backbone

    net = RatingMetricNet(create_backbone("test_resnet", weights="random", num_classes=0))
    embedding, ratings = net(torch.randn(2, 3, 32, 32))
    assert net.project.in_features == 96 and embedding.shape == (2, 128) and ratings.shape == (2, 9)
