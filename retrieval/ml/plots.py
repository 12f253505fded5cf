"""Embedding maps: a 2-D t-SNE (or PCA) of the embeddings as a PNG, coloured by label (paper 000, Fig. 3)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

MAX_LEGEND_CLASSES = 20


def project_2d(embeddings: np.ndarray, method: str = "tsne", *, seed: int = 0) -> np.ndarray:
    """(n, 2) coordinates by t-SNE (perplexity adapted to n, cosine) or PCA; PCA for fewer than 5 points."""
    x = np.asarray(embeddings, dtype=np.float64)
    if len(x) < 3:
        return np.pad(x[:, :2], ((0, 0), (0, max(0, 2 - x.shape[1]))))
    if method == "pca" or len(x) < 5:
        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method != "tsne":
        raise ValueError(f"method must be 'tsne' or 'pca', got {method!r}.")
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, metric="cosine", init="pca", random_state=seed).fit_transform(x)


def embedding_map_png(
    embeddings: np.ndarray,
    labels: Sequence[object] | np.ndarray,
    method: str = "tsne",
    *,
    title: str | None = None,
    seed: int = 0,
    dpi: int = 120,
) -> bytes:
    """PNG bytes of a 2-D map of the embeddings, categorical labels in a legend, continuous ones on a colour bar."""
    coords = project_2d(embeddings, method, seed=seed)
    values = np.asarray(labels)
    fig = Figure(figsize=(6.4, 5.6), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if _is_continuous(values):
        points = ax.scatter(coords[:, 0], coords[:, 1], c=values.astype(float), cmap="viridis", s=12)
        fig.colorbar(points, ax=ax)
    else:
        for name in np.unique(values.astype(str)):
            mask = values.astype(str) == name
            ax.scatter(coords[mask, 0], coords[mask, 1], s=12, alpha=0.8, label=f"{name} (n={mask.sum()})")
        ax.legend(loc="best", fontsize="small", markerscale=1.5)
    ax.set_title(title or f"{'t-SNE' if method == 'tsne' else 'PCA'} of {len(coords)} embeddings")
    ax.set_xticks([])
    ax.set_yticks([])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _is_continuous(values: np.ndarray) -> bool:
    """Numeric labels with more distinct values than a legend can show."""
    return values.dtype.kind in "fiu" and len(np.unique(values)) > MAX_LEGEND_CLASSES
