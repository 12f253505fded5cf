"""A study's stored answers and a run's distances as arrays, read straight from the rows and files.

Independent of the report code (reports.inputs, reports.methods): the ORM rows are walked with plain
loops, and distances are computed here from the run's embedding files (cosine: 1 − the dot product of
unit vectors). The arrays use the report's documented order: cases by position, candidates by
catalogue position, readers by user name.
"""

from __future__ import annotations

import numpy as np

from annotations.models import AnswerItem
from readerstudy.models import Candidate
from retrieval.runs import ranking

FIELD = {"choose_k": "selected", "rank_all": "rank", "rate": "rating"}


def catalogue(study) -> tuple[list[int], list[int], np.ndarray]:
    """(case ids, query image ids, (C, M) candidate image ids) in canonical order (equal-size catalogues)."""
    cases = list(study.cases.order_by("position"))
    images = [
        list(Candidate.objects.filter(case=c).order_by("position").values_list("image_id", flat=True)) for c in cases
    ]
    return [c.pk for c in cases], [c.query_id for c in cases], np.array(images)


def answer_values(study, usernames: list[str]) -> np.ndarray:
    """(C, M, R) stored values of the study's mode (selected 0/1, rank, rating); NaN = no answer item."""
    case_ids, _, images = catalogue(study)
    field = FIELD[study.mode]
    out = np.full(images.shape + (len(usernames),), np.nan)
    for r, name in enumerate(usernames):
        items = AnswerItem.objects.filter(answer__case__study=study, answer__assignment__reader__username=name)
        for case_id, position, value in items.values_list("answer__case_id", "candidate__position", field):
            if value is not None:
                out[case_ids.index(case_id), position, r] = float(value)
    return out


def unit_vectors(run) -> dict[int, np.ndarray]:
    """Image id → the run's embedding scaled to unit length."""
    ids, vectors = ranking.run_vectors(run=run)
    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    return {int(i): v[n] for n, i in enumerate(ids)}


def cosine_distances(run, query_id: int, image_ids) -> np.ndarray:
    """Cosine distance of each image to the query under the run."""
    vec = unit_vectors(run)
    return np.array([1.0 - float(vec[int(i)] @ vec[int(query_id)]) for i in image_ids])


def catalogue_distances(run, study) -> np.ndarray:
    """(C, M) distance of each candidate to its case's query under the run (canonical order)."""
    _, queries, images = catalogue(study)
    return np.array([cosine_distances(run, q, row) for q, row in zip(queries, images)])


def nearest(run, query_id: int, pool, n: int, *, farthest: bool = False) -> list[int]:
    """The n nearest (or farthest) image ids of the pool under the run, by a plain sort."""
    pool = sorted(int(i) for i in pool)
    d = cosine_distances(run, query_id, pool)
    order = sorted(range(len(pool)), key=lambda i: (-d[i] if farthest else d[i], pool[i]))
    return [pool[i] for i in order[:n]]
