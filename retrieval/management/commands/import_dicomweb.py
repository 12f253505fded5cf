"""manage.py import_dicomweb DATASET --endpoint NAME|URL (--study UID | --series STUDY/SERIES)... [--labels CSV]
[--allow-free-text]"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.cli import wait_for_job
from core.errors import ApplicationError
from core.jobs import JobStatus
from retrieval.imports import dicomweb, ingest, pacs, services
from retrieval.models import Dataset, LabelFormat


class Command(BaseCommand):
    help = (
        "Import studies or series from a PACS over DICOMweb (QIDO-RS, WADO-RS) into a dataset, created if it "
        "does not exist; or, with --search, list what the PACS has. The endpoint is a name of DICOMWEB_ENDPOINTS "
        "(with its credentials) or a URL. Queues the import for the worker unless --sync."
    )

    def add_arguments(self, parser):
        parser.add_argument("dataset", nargs="?", default="", help="dataset name (created when missing)")
        parser.add_argument("--endpoint", "--dicomweb", required=True, help="DICOMWEB_ENDPOINTS name or URL")
        parser.add_argument("--study", action="append", default=[], help="StudyInstanceUID (repeatable)")
        parser.add_argument("--series", action="append", default=[], help="STUDYUID/SERIESUID (repeatable)")
        parser.add_argument("--labels", default="", help="label table (CSV), may be keyed by a UID column")
        parser.add_argument("--label-format", default=LabelFormat.GENERIC, choices=LabelFormat.values)
        parser.add_argument(
            "--allow-free-text",
            action="store_true",
            help="import free-text label columns (notes, comments…); refused otherwise (see what each column "
            "becomes first with `manage.py import_images DATASET --labels CSV --preview`)",
        )
        parser.add_argument("--search", action="store_true", help="list the PACS's studies (no import)")
        parser.add_argument("--patient-id", default="", help="--search: PatientID")
        parser.add_argument("--modality", default="", help="--search: modality")
        parser.add_argument("--sync", action="store_true", help="run in this process instead of the worker")
        parser.add_argument("--no-wait", action="store_true", help="queue and return at once (not with --sync)")

    def handle(self, *args, dataset, endpoint, study, series, labels, label_format, sync, no_wait, **options):
        try:
            if options["search"]:
                return self._search(endpoint, patient_id=options["patient_id"], modality=options["modality"])
            if not dataset:
                raise CommandError("Name the dataset to import into (or use --search).")
            if not study and not series:
                raise CommandError("Choose at least one --study or --series.")
            ds = Dataset.objects.filter(name=dataset).first()
            if ds is None:
                ds = services.dataset_create(name=dataset)
                self.stdout.write(f"Created dataset {ds.name!r}.")
            job = pacs.dicomweb_import_create(
                dataset=ds,
                endpoint=endpoint,
                selections=[*study, *series],
                labels_path=labels,
                label_format=label_format,
                allow_free_text=options["allow_free_text"],
                allow_url=True,
                enqueue=not sync,
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        except dicomweb.DicomwebError as exc:
            raise CommandError(str(exc)) from None
        if sync:
            ingest.import_job_run(job_id=job.pk)
        elif no_wait:
            self.stdout.write(f"Queued import #{job.pk}; follow it on the dataset page or with the API.")
            return
        job = wait_for_job(job, stream=self.stderr)
        self.stdout.write(
            f"Import #{job.pk} {job.status}: {job.n_imported} imported, {job.n_skipped} skipped, "
            f"{job.n_failed} failed, {job.n_labels} labels."
        )
        for r in [r for r in job.report if r["status"] in ("failed", "skipped")][:50]:
            self.stdout.write(f"  {r['status']:<8} {r['file']}: {r['message']}")
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"import #{job.pk} failed: {job.error}")

    def _search(self, endpoint: str, *, patient_id: str, modality: str) -> None:
        rows = dicomweb.search(
            dicomweb.endpoint_resolve(endpoint, allow_url=True), patient_id=patient_id, modality=modality
        )
        for row in rows:
            self.stdout.write(
                f"{row.study_uid}  {row.study_date or '-':8}  {row.modality or '-':6}  "
                f"{row.instances if row.instances is not None else '?':>5} instances  {row.patient_id}"
            )
        self.stdout.write(f"{len(rows)} studies.")
