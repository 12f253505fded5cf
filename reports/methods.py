"""The methods that rank a study's catalogues, as distances (lower = closer).

Every finished model run of the dataset (or the runs asked for), ranked from its stored
embeddings with the run's own metric (SSIM runs image by image), then every method named in the
candidates' provenance with a distance for every candidate of a case. A method that cannot rank
some cases is reported with the reason; its statistics use the cases it can rank.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import ApplicationError
from core.jobs import JobStatus
from readerstudy.models import Study
from reports.inputs import StudyArrays
from retrieval.models import ModelRun
from retrieval.runs import ranking


@dataclass
class Method:
    """A method's distances (C, M) to each catalogue (NaN where it cannot rank a case)."""

    key: str
    name: str
    source: str
    run_id: int | None
    distances: np.ndarray
    reason: str = ""

    @property
    def available(self) -> np.ndarray:
        """(C,) the cases the method can rank (a distance for every candidate)."""
        return ~np.isnan(self.distances).any(axis=1)

    def describe(self, cases: np.ndarray | None = None) -> dict:
        """Summary row of the methods table (over the analysed cases when given)."""
        ok = self.available if cases is None else self.available[cases]
        return {
            "key": self.key,
            "name": self.name,
            "source": self.source,
            "run_id": self.run_id,
            "available": bool(ok.any()),
            "n_cases": int(ok.sum()),
            "reason": self.reason,
        }


def _provenance_distances(arrays: StudyArrays) -> dict[tuple[str, int | None], np.ndarray]:
    """Per (method, run) named in provenance, the (C, M) distances it recorded (NaN = none)."""
    shape = arrays.candidate_ids.shape
    out: dict[tuple[str, int | None], np.ndarray] = {}
    for c, row in enumerate(arrays.provenance):
        for j, entries in enumerate(row):
            for entry in entries if isinstance(entries, list) else []:
                distance = _as_float(entry.get("distance")) if isinstance(entry, dict) else None
                if distance is None:
                    continue
                run = entry.get("run")
                key = (str(entry.get("method") or "model"), run if isinstance(run, int) else None)
                out.setdefault(key, np.full(shape, np.nan))[c, j] = distance
    return out


def _as_float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _report_runs(study: Study, run_ids: tuple[int, ...] | None) -> list[ModelRun]:
    """The runs asked for (checked to belong to the dataset), or every finished run of the dataset."""
    runs = ModelRun.objects.filter(dataset_id=study.dataset_id).order_by("id")
    if run_ids is None:
        return list(runs.filter(status=JobStatus.SUCCEEDED))
    found = {r.pk: r for r in runs.filter(pk__in=run_ids)}
    missing = [i for i in run_ids if i not in found]
    if missing:
        raise ApplicationError(f"Run(s) {', '.join(map(str, missing))} are not runs of this study's dataset.")
    return [found[i] for i in run_ids]


def _run_distances(run: ModelRun, arrays: StudyArrays) -> tuple[np.ndarray, str]:
    """(C, M) distances of each catalogue under a run (its ranker: embeddings loaded once, each SSIM
    rendition read once); the reason when some cases could not be ranked."""
    d = np.full(arrays.candidate_ids.shape, np.nan)
    if run.status != JobStatus.SUCCEEDED:
        return d, f"the run is {run.status}, not finished"
    try:
        ranker = ranking.ranker_for(run)
    except ApplicationError as exc:
        return d, exc.message
    missing, reasons = 0, []
    for c, (q, cands) in enumerate(zip(arrays.query_ids, arrays.image_ids)):
        cands = [int(i) for i in cands]
        if not all(ranker.has(i) for i in [int(q), *cands]):
            missing += 1
            continue
        try:
            d[c] = ranker.rank(int(q), cands)
        except (ApplicationError, OSError, ValueError) as exc:
            reasons.append(getattr(exc, "message", None) or str(exc))
    if missing:
        return d, f"no embedding for the images of {missing} of {len(d)} cases"
    return d, (f"{len(reasons)} cases could not be compared: {reasons[0]}" if reasons else "")


def _unique_key(name: str, taken: set[str]) -> str:
    """A short identifier (letters, digits, - _ .) unique among the report's methods."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[:40] or "method"
    key, n = base, 2
    while key in taken:
        key, n = f"{base}-{n}", n + 1
    taken.add(key)
    return key


def _coverage_reason(d: np.ndarray) -> str:
    missing = int(np.isnan(d).any(axis=1).sum())
    if not missing:
        return ""
    return (
        f"has no distance for every candidate in {missing} of {len(d)} cases "
        "(it did not propose every candidate of those catalogues)"
    )


def report_methods(*, arrays: StudyArrays, runs: tuple[int, ...] | None = None) -> list[Method]:
    """Model runs (distances from their embeddings) then provenance-only methods, with reasons."""
    study = arrays.study
    prov = _provenance_distances(arrays)
    run_objs = _report_runs(study, runs)
    names = dict(ModelRun.objects.filter(pk__in=[r for _, r in prov if r is not None]).values_list("pk", "name"))
    taken: set[str] = set()
    methods = []
    for run in run_objs:
        d, reason = _run_distances(run, arrays)
        for (_, rid), pd in prov.items():
            if rid == run.pk:  # cases the embeddings cannot rank, provenance may still cover
                fill = np.isnan(d).any(axis=1) & ~np.isnan(pd).any(axis=1)
                d[fill] = pd[fill]
        reason = (reason or _coverage_reason(d)) if np.isnan(d).any() else ""
        methods.append(Method(_unique_key(run.name, taken), run.name, "run", run.pk, d, reason))
    used = {r.pk for r in run_objs}
    for (name, rid), pd in prov.items():
        if rid is not None and rid in used:
            continue
        label = names.get(rid, name) if rid is not None else name
        methods.append(Method(_unique_key(label, taken), label, "provenance", rid, pd, _coverage_reason(pd)))
    return methods
