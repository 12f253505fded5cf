"""retrieval.ml.ssim: the SSIM baseline ranks a catalogue by skimage's structural similarity, highest first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

from retrieval.ml.ssim import prepare, ssim_rank, ssim_scores

ROOT = Path(__file__).resolve().parents[2]


def catalogue(seed: int = 0) -> tuple[np.ndarray, list[np.ndarray], int]:
    """A query, 30 candidates of assorted sizes (one a slightly noised copy of the query) and that copy's index."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:200, 0:180] / 200.0

    def smooth(phase: float) -> np.ndarray:
        return np.clip(120 + 90 * np.sin(6 * xx + phase) * np.cos(4 * yy - phase) + rng.normal(0, 10, xx.shape), 0, 255)

    query = smooth(0.3).astype(np.uint8)
    candidates = [
        np.asarray(Image.fromarray(smooth(rng.uniform(0, 6)).astype(np.uint8)).resize((150 + i, 170 + 2 * i)))
        for i in range(30)
    ]
    copy_index = 17
    candidates[copy_index] = np.clip(query + rng.normal(0, 4, query.shape), 0, 255).astype(np.uint8)
    return query, candidates, copy_index


def test_a_slightly_noised_copy_of_the_query_ranks_first():
    query, candidates, copy_index = catalogue()
    order, scores = ssim_rank(query, candidates)
    assert order[0] == copy_index
    assert scores[copy_index] > 0.8
    assert sorted(order.tolist()) == list(range(30))
    assert np.all(np.diff(scores[order]) <= 0)  # most similar first


def test_scores_are_skimage_structural_similarity_on_the_resized_images():
    query, candidates, _ = catalogue(seed=1)
    _, scores = ssim_rank(query, candidates, size=96)
    q = prepare(query, 96)
    expected = [structural_similarity(q, prepare(c, 96), data_range=255) for c in candidates]
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-12)
    assert q.shape == (96, 96) and q.dtype == np.uint8


def test_rgb_and_pil_candidates_are_made_greyscale():
    query, candidates, copy_index = catalogue(seed=2)
    rgb = np.repeat(candidates[copy_index][:, :, None], 3, axis=2)
    scores = ssim_scores(query, [rgb, Image.fromarray(candidates[copy_index]), candidates[0]])
    assert scores[0] == pytest.approx(scores[1]) and scores[0] > scores[2]


def test_ties_keep_catalogue_order_and_full_resolution_needs_equal_sizes():
    query, candidates, _ = catalogue(seed=3)
    order, _ = ssim_rank(query, [candidates[0], candidates[0], candidates[0]])
    assert order.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="size"):
        ssim_scores(query, candidates[:2], size=None)


@pytest.mark.ml  # 16-bit input goes through transforms.to_pil, which imports torch
def test_sixteen_bit_images_are_rescaled():
    wide = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)
    grey = prepare(Image.fromarray(wide), 32)
    assert grey.dtype == np.uint8 and grey.min() < 10 and grey.max() > 245


def test_ranking_8_bit_images_does_not_import_torch():
    code = (
        "import sys, numpy as np; from retrieval.ml.ssim import ssim_rank; "
        "ssim_rank(np.zeros((9, 9), np.uint8), [np.ones((9, 9), np.uint8)], 9); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"
