"""Helpers shared by management commands: waiting on a job with a progress line."""

from __future__ import annotations

import sys
import time

from core.jobs import TrackedJob


def wait_for_job(job: TrackedJob, *, stream=sys.stderr, poll: float = 0.5, timeout: float | None = None) -> TrackedJob:
    """Poll a job row until it finishes, drawing a one-line progress bar; returns the fresh row."""
    start = time.monotonic()
    while True:
        job.refresh_from_db()
        bar = "#" * (job.progress_percent // 5)
        stream.write(
            f"\r[{bar:<20}] {job.progress_percent:3d}% {job.progress_done}/{job.progress_total} "
            f"{job.status:<9} {job.progress_note[:40]:<40}"
        )
        stream.flush()
        if job.is_finished:
            stream.write("\n")
            return job
        if timeout is not None and time.monotonic() - start > timeout:
            stream.write("\n")
            raise TimeoutError(f"job {job.pk} still {job.status} after {timeout:.0f} s")
        time.sleep(poll)
