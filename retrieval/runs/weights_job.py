"""The worker's body of a weights fetch (worker only: retrieval.ml.fetch imports timm and torch): download a model's
pretrained weights into the Hugging Face cache, the job's progress bar following the bytes."""

from __future__ import annotations

import io
import time

from django.conf import settings
from tqdm import tqdm

from core.jobs import job_progress, job_run
from retrieval.ml.fetch import WeightsFetchError, fetch_weights
from retrieval.models import WeightsFetch


def weights_fetch_execute(*, fetch_id: int) -> WeightsFetch | None:
    """Worker body (core runner): fetch the weights; WEIGHTS_DOWNLOAD off or the hub out of reach fails the job with
    the file to copy and where (WeightsFetchError)."""

    def body(job: WeightsFetch) -> None:
        job_progress(job, done=0, total=0, note=f"looking for the weights of {job.model_name}")
        paths = fetch_weights(job.model_name, allowed=settings.WEIGHTS_DOWNLOAD, tqdm_class=_bar_for(job))
        WeightsFetch.objects.filter(pk=job.pk).update(paths=[str(p) for p in paths], progress_note="in the cache")

    return job_run(WeightsFetch, fetch_id, body, expected=(WeightsFetchError,))


def _bar_for(job: WeightsFetch) -> type[tqdm]:
    """A tqdm class whose bars write the job's progress (bytes done of the file's size), at most twice a second."""

    class JobBar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            kwargs["file"], kwargs["disable"] = io.StringIO(), False
            super().__init__(*args, **kwargs)
            self._written = 0.0

        def update(self, n=1):
            shown = super().update(n)
            now = time.monotonic()
            if now - self._written >= 0.5 or (self.total and self.n >= self.total):
                self._written = now
                job_progress(job, done=int(self.n), total=int(self.total or 0), note=f"downloading {self.desc}")
            return shown

    return JobBar
