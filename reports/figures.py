"""Figures of an agreement report (matplotlib, Agg, no pyplot state): report dict in, Figure/PNG out.

* nDCG@p box plots per method and reader with the random-order baseline (paper 003, Fig. 5);
* per-reader % agreement with the consensus and with each method (paper 000, Table 2 as bars);
* the reader × reader agreement heat map (Cohen κ, weighted κ or Kendall τ by study mode);
* rating studies: mean rating by the model's rank of the candidate.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

METHOD_COLOUR = "#3b6ea8"
READER_COLOUR = "#9a9a9a"
CONSENSUS_COLOUR = "#444444"
RANDOM_COLOUR = "#c0392b"


def new_figure(width: float, height: float) -> Figure:
    """An empty figure on the Agg canvas (no pyplot state)."""
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png(fig: Figure) -> bytes:
    """PNG bytes of a figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def data_uri(data: bytes) -> str:
    """A PNG as a data: URI (embedded in the page and the printable HTML)."""
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _finite(values: list) -> np.ndarray:
    v = np.asarray([np.nan if x is None else x for x in values], float)
    return v[~np.isnan(v)]


def ndcg_boxplots(report: dict) -> Figure | None:
    """Per-case nDCG@p of every method and reader against the ground truth, one panel per p."""
    section = report.get("ranking")
    if not section or not section["per_case"]["values"]:
        return None
    values, kinds = section["per_case"]["values"], {n: c["kind"] for n, c in section["compared"].items()}
    names = [n for n in values if kinds.get(n) == "method"] + [n for n in values if kinds.get(n) == "reader"]
    fig = new_figure(max(5.0, 1.0 + 0.7 * len(names)) * len(section["p"]) / 1.4, 3.8)
    axes = fig.subplots(1, len(section["p"]), squeeze=False)[0]
    for ax, q in zip(axes, section["p"]):
        data = [_finite(values[n][f"ndcg@{q}"]) for n in names]
        box = ax.boxplot(data, patch_artist=True, widths=0.6)
        for patch, name in zip(box["boxes"], names):
            patch.set_facecolor(METHOD_COLOUR if kinds[name] == "method" else READER_COLOUR)
        ax.axhline(
            section["random"][f"ndcg@{q}"],
            color=RANDOM_COLOUR,
            ls="--",
            lw=1,
            label=f"random order ({section['random'][f'ndcg@{q}']:.2f})",
        )
        ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"nDCG@{q} vs {section['ground_truth']}", fontsize=10)
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower left", fontsize=7)
    return fig


def agreement_bars(report: dict) -> Figure | None:
    """Per-reader % agreement with the consensus and each method's k nearest (Table 2), with CIs."""
    section = report.get("choose_k")
    if not section:
        return None
    series = {"consensus": section["consensus"]["reader_agreement"]}
    series |= {key: m["reader_agreement"] for key, m in section["methods"].items() if m["available"]}
    readers = section["readers"]
    fig = new_figure(max(6.5, 2.5 + 0.5 * len(readers) * len(series)), 3.6)
    ax = fig.subplots()
    width = 0.8 / len(series)
    x = np.arange(len(readers))
    for i, (name, per_reader) in enumerate(series.items()):
        est = [per_reader[r]["estimate"] for r in readers]
        err = _error_bars(per_reader, readers)
        colour = CONSENSUS_COLOUR if name == "consensus" else None
        ax.bar(x + (i - (len(series) - 1) / 2) * width, est, width, yerr=err, label=name, color=colour, capsize=2)
    ax.axhline(
        section["chance_agreement"],
        color=RANDOM_COLOUR,
        ls="--",
        lw=1,
        label=f"chance ({section['chance_agreement']:.0f} %)",
    )
    ax.set_xticks(x, readers, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("% agreement")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Each reader vs the consensus and each method", fontsize=10)
    return fig


def _error_bars(per_reader: dict, readers: list[str]) -> np.ndarray | None:
    """(2, R) distances from the estimate to the CI ends, or None without CIs."""
    rows = [per_reader[r] for r in readers]
    if any(r["ci_low"] is None for r in rows):
        return None
    return np.array([[r["estimate"] - r["ci_low"] for r in rows], [r["ci_high"] - r["estimate"] for r in rows]])


def _matrix(report: dict) -> tuple[list, list[str], str] | None:
    """The reader × reader matrix of the study's mode and its title."""
    if report.get("choose_k") and report["choose_k"]["pairwise_cohen_kappa"]:
        s = report["choose_k"]
        return s["pairwise_cohen_kappa"], s["readers"], "Cohen κ between readers (selected or not)"
    if report.get("rating") and report["rating"]["weighted_kappa"]:
        s = report["rating"]
        return s["weighted_kappa"]["matrix"], s["readers"], "Quadratic-weighted κ between readers"
    if report.get("ranking") and report["ranking"]["reader_kendall_tau"]:
        s = report["ranking"]
        return s["reader_kendall_tau"], s["readers"], "Mean Kendall τ between readers' rankings"
    return None


def reader_heatmap(report: dict) -> Figure | None:
    """Heat map of agreement between every pair of readers, values written in the cells."""
    found = _matrix(report)
    if not found:
        return None
    matrix, readers, title = found
    m = np.asarray([[np.nan if v is None else v for v in row] for row in matrix], float)
    size = 2.5 + 0.45 * len(readers)
    fig = new_figure(size + 1.0, size)
    ax = fig.subplots()
    image = ax.imshow(m, vmin=-1, vmax=1, cmap="RdBu")
    for (i, j), v in np.ndenumerate(m):
        ax.text(
            j,
            i,
            "—" if np.isnan(v) else f"{v:.2f}",
            ha="center",
            va="center",
            fontsize=7,
            color="white" if abs(np.nan_to_num(v)) > 0.6 else "black",
        )
    ax.set_xticks(range(len(readers)), readers, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(readers)), readers, fontsize=7)
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_title(title, fontsize=10)
    return fig


def rating_by_rank(report: dict) -> Figure | None:
    """Mean rating (over readers and cases) of the candidate each method ranks 1st, 2nd, …"""
    section = report.get("rating")
    if not section:
        return None
    lines = {k: m["mean_rating_by_model_rank"] for k, m in section["methods"].items() if m["available"]}
    if not lines:
        return None
    fig = new_figure(5.5, 3.4)
    ax = fig.subplots()
    for name, values in lines.items():
        ax.plot(range(1, len(values) + 1), [np.nan if v is None else v for v in values], "o-", label=name)
    ax.set_xlabel("rank of the candidate under the method (1 = nearest)")
    ax.set_ylabel("mean rating")
    ax.set_ylim(*section["scale"])
    ax.legend(fontsize=7)
    ax.set_title("Ratings against the model's order", fontsize=10)
    return fig


FIGURES: list[tuple[str, str, Callable[[dict], Figure | None]]] = [
    ("ndcg", "nDCG@p per method and reader, with the random-order baseline", ndcg_boxplots),
    ("agreement", "Per-reader agreement (Table 2 as a chart)", agreement_bars),
    ("readers", "Agreement between readers", reader_heatmap),
    ("rating", "Ratings by model rank", rating_by_rank),
]


def report_figures(report: dict) -> list[Figure | tuple]:
    """(name, title, Figure) of every figure the report can draw."""
    out = []
    for name, title, make in FIGURES:
        fig = make(report)
        if fig is not None:
            out.append((name, title, fig))
    return out


def report_figure_uris(report: dict) -> list[dict]:
    """[{name, title, uri}] with each figure as a base64 PNG data URI (page and printable HTML)."""
    return [{"name": name, "title": title, "uri": data_uri(png(fig))} for name, title, fig in report_figures(report)]
