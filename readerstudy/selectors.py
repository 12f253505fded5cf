"""Selectors (reads) of the study domain used by the coordinator pages and by reading.

The model runs a study was built from, and the one run whose saliency overlays its readers see
(`study_saliency_run`). What readers see of a study (the blinded view) is annotations.selectors.
"""

from __future__ import annotations

from core.jobs import JobStatus
from readerstudy.models import Study
from retrieval.models import ModelRun
from retrieval.runs.methods import METHODS
from retrieval.runs.ranking import SALIENCY_DIR, run_artefact_dir


def study_run_ids(*, study: Study) -> list[int]:
    """The model runs a study's cases were built from, in the order its builder configuration names them.

    `run` (knn_farthest, top_n) first, then `runs` (pooled) in the order the coordinator listed
    them; a clone keeps its original's configuration. Case lists and random catalogues name none.
    """
    cfg = study.builder_config or {}
    ids = ([cfg["run"]] if isinstance(cfg.get("run"), int) else []) + [
        r for r in cfg.get("runs") or [] if isinstance(r, int)
    ]
    return list(dict.fromkeys(ids))


def run_has_saliency(run) -> bool:
    """A finished classifier run (a trained method with `saliency` configured) that wrote overlays."""
    method = METHODS.get(run.method)
    if run.status != JobStatus.SUCCEEDED or method is None or not method.trains or not run.config.get("saliency"):
        return False
    folder = run_artefact_dir(run) / SALIENCY_DIR
    return folder.is_dir() and next(folder.glob("*.png"), None) is not None


def study_saliency_run(*, study: Study):
    """The one model run whose saliency overlays readers of this study see, or None.

    The first of `study_run_ids` that `run_has_saliency`. One run for the whole study (never the
    run that proposed a candidate): whether an image has an overlay then depends only on that
    run's split (overlays exist for its test images), so it cannot tell a reader which method
    proposed a candidate, and every overlay means the same classifier.
    """
    ids = study_run_ids(study=study)
    runs = ModelRun.objects.filter(pk__in=ids, dataset_id=study.dataset_id).in_bulk()
    return next((runs[i] for i in ids if i in runs and run_has_saliency(runs[i])), None)
