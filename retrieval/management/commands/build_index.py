"""manage.py build_index RUN: embed images imported since the run and add them to its index."""

from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError
from retrieval.cli import ensure_can_wait, follow, run_lookup
from retrieval.runs.services import run_add_new_images


class Command(BaseCommand):
    help = (
        "Bring a run's FAISS index up to date: images imported after the run are embedded and added "
        "incrementally (the index is built from the stored embeddings when it does not exist)."
    )

    def add_arguments(self, parser):
        parser.add_argument("run", help="run id or name")
        parser.add_argument("--sync", action="store_true", help="run in this process instead of the worker")
        parser.add_argument("--no-wait", action="store_true", help="queue and return at once")

    def handle(self, *args, run, sync, no_wait, **o):
        run = run_lookup(run)
        if not sync and not no_wait:
            ensure_can_wait()
        try:
            run_add_new_images(run=run, enqueue=not sync)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        before = run.n_embedded
        run = follow(self, run, sync=sync, no_wait=no_wait)
        if not no_wait:
            self.stdout.write(f"{run.n_embedded - before} new images embedded and indexed.")
