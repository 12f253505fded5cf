"""manage.py import_images DATASET PATH [--labels CSV] [--label-format FORMAT] [--allow-free-text] [--preview]"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.cli import wait_for_job
from core.errors import ApplicationError
from core.jobs import JobStatus
from retrieval.imports import ingest, services
from retrieval.models import Dataset, LabelFormat


class Command(BaseCommand):
    help = (
        "Import a folder or .zip of DICOM/PNG/JPEG images (and optionally a label table) into a "
        "dataset, created if it does not exist. Queues the import for the worker unless --sync."
    )

    def add_arguments(self, parser):
        parser.add_argument("dataset", help="dataset name (created when missing)")
        parser.add_argument("path", nargs="?", default="", help="folder or .zip of images (omit to import labels only)")
        parser.add_argument("--labels", default="", help="label table (CSV)")
        parser.add_argument("--label-format", default=LabelFormat.GENERIC, choices=LabelFormat.values)
        parser.add_argument(
            "--allow-free-text",
            action="store_true",
            help="import free-text label columns (notes, comments…); refused otherwise",
        )
        parser.add_argument(
            "--preview",
            action="store_true",
            help="only print what the import would do with each column of the label table, and import nothing",
        )
        parser.add_argument("--sync", action="store_true", help="run in this process instead of the worker")
        parser.add_argument("--no-wait", action="store_true", help="queue and return at once (not with --sync)")
        parser.add_argument("--report", action="store_true", help="print every entry of the import report")

    def handle(self, *args, dataset, path, labels, label_format, sync, no_wait, report, **options):
        if options["preview"]:
            self._preview(labels, label_format, options["allow_free_text"])
            return
        ds = Dataset.objects.filter(name=dataset).first()
        try:
            if ds is None:
                ds = services.dataset_create(name=dataset)
                self.stdout.write(f"Created dataset {ds.name!r}.")
            job = services.import_job_create(
                dataset=ds,
                source_path=path,
                labels_path=labels,
                label_format=label_format,
                allow_free_text=options["allow_free_text"],
                enqueue=not sync,
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        if sync:
            ingest.import_job_run(job_id=job.pk)
        elif no_wait:
            self.stdout.write(f"Queued import #{job.pk}; follow it on the dataset page or with the API.")
            return
        job = wait_for_job(job, stream=self.stderr)
        self._summarise(job, full=report)
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"import #{job.pk} failed: {job.error}")

    def _preview(self, labels: str, label_format: str, allow_free_text: bool) -> None:
        if not labels:
            raise CommandError("--preview needs --labels")
        try:
            preview = services.label_table_preview(
                labels_path=labels, label_format=label_format, allow_free_text=allow_free_text
            )
        except (ApplicationError, OSError) as exc:
            raise CommandError(getattr(exc, "message", None) or str(exc)) from None
        self.stdout.write(f"{preview.rows} rows; nothing imported (--preview).")
        for column in preview.columns:
            why = f" ({column.reason})" if column.reason else ""
            samples = f": {' · '.join(column.samples)}" if column.samples else ""
            self.stdout.write(f"  {column.name!r}: {column.action_text}{why}{samples}")

    def _summarise(self, job, *, full: bool) -> None:
        self.stdout.write(
            f"Import #{job.pk} {job.status}: {job.n_imported} imported, {job.n_skipped} skipped, "
            f"{job.n_failed} failed, {job.n_labels} labels."
        )
        entries = job.report if full else [r for r in job.report if r["status"] in ("failed", "skipped")][:50]
        for r in entries:
            where = r["file"] + (f":{r['line']}" if r.get("line") else "")
            self.stdout.write(f"  {r['status']:<8} {where}: {r['message']}")
        hidden = len([r for r in job.report if r["status"] in ("failed", "skipped")]) - len(entries)
        if not full and hidden > 0:
            self.stdout.write(f"  … {hidden} more (use --report)")
