"""Small simulated reader studies shared by the statistics tests (fixed seeds)."""

from __future__ import annotations

import numpy as np


def ranks_of(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """1-based ranks along axis, rank 1 = highest score."""
    return np.argsort(np.argsort(-scores, axis=axis), axis=axis) + 1


def choose_k_study(n_cases=40, n_cand=10, n_readers=5, k=5, *, seed=0, noise=1.0, noise_spread=0.0):
    """Selections (C, M, R) bool: every reader picks its k highest noisy similarities.

    noise_spread > 0 draws a per-case noise level (clustered data: easy and hard queries).
    Returns selections, latent similarity (C, M) and model ranks (C, M).
    """
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n_cases, n_cand))
    sigma = noise * np.exp(noise_spread * rng.normal(size=(n_cases, 1, 1)))
    perceived = latent[..., None] + sigma * rng.normal(size=(n_cases, n_cand, n_readers))
    selections = ranks_of(perceived, axis=1) <= k
    model_ranks = ranks_of(latent + 0.7 * rng.normal(size=latent.shape))
    return selections, latent, model_ranks


def ranking_study(n_cases=30, n_cand=10, n_readers=3, *, seed=0, noise=0.8):
    """Reader ranks (C, M, R) of noisy similarities, plus latent similarity (C, M)."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n_cases, n_cand))
    perceived = latent[..., None] + noise * rng.normal(size=(n_cases, n_cand, n_readers))
    return ranks_of(perceived, axis=1), latent


def random_permutation_ranks(n_cases, n_cand, *, seed=0):
    """(C, M) uniformly random rank permutations."""
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((n_cases, n_cand)), axis=-1) + 1
