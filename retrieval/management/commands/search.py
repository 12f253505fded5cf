"""manage.py search RUN (--image ID | --file PATH) [--k 10] [--json]"""

import json

from django.core.management.base import BaseCommand, CommandError

from core.cli import wait_for_job
from core.errors import ApplicationError
from core.jobs import JobStatus
from retrieval.cli import run_lookup, search_file_request
from retrieval.models import Image
from retrieval.runs.index import search_by_image


class Command(BaseCommand):
    help = (
        "The k images most similar to a collection image (--image: its stored embedding looked up in the "
        "run's FAISS index in this process, no model needed; itself excluded) or to an image file (--file: "
        "queued like an upload on the web page, embedded by the worker with the run's model, with a progress "
        "bar; --sync embeds it in this process, which imports torch)."
    )

    def add_arguments(self, parser):
        parser.add_argument("run", help="run id or name")
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--image", type=int, help="id of an image of the run's dataset")
        group.add_argument("--file", help="a DICOM/PNG/JPEG file")
        parser.add_argument("--k", type=int, default=10)
        parser.add_argument("--json", action="store_true", dest="as_json")
        parser.add_argument(
            "--sync",
            action="store_true",
            help="--file: embed in this process instead of the worker (--image always answers here)",
        )
        parser.add_argument("--no-wait", action="store_true", help="--file: queue the search and return at once")

    def handle(self, *args, run, image, file, k, as_json, sync, no_wait, **o):
        run = run_lookup(run)
        try:
            if image is not None:
                results = search_by_image(run=run, image_id=image, k=k)
            else:
                results = self._file_search(run, file, k, sync=sync, no_wait=no_wait)
                if results is None:
                    return
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        images = {
            i.pk: i for i in Image.objects.filter(pk__in=[r["image_id"] for r in results]).prefetch_related("labels")
        }
        for r in results:
            r["source_name"] = images[r["image_id"]].source_name
            r["labels"] = {lab.name: lab.value for lab in images[r["image_id"]].labels.all()}
        if as_json:
            self.stdout.write(json.dumps(results, indent=2))
            return
        for r in results:
            findings = ", ".join(n for n, v in r["labels"].items() if v == 1.0)
            self.stdout.write(
                f"{r['rank']:>3}  {r['distance']:.4f}  #{r['image_id']:<6} {r['source_name']}  {findings}"
            )

    def _file_search(self, run, path, k, *, sync: bool, no_wait: bool) -> list[dict] | None:
        """The upload-search path of the web page: a search request, embedded by the worker (or here with --sync)."""
        from retrieval.runs.search_job import search_request_execute  # --sync: this process embeds (torch)

        req = search_file_request(run=run, path=path, k=k, enqueue=not sync, wait=not sync and not no_wait)
        if sync:
            search_request_execute(search_id=req.pk)
            req.refresh_from_db()
        elif no_wait:
            self.stdout.write(f"Search #{req.pk} queued; results at /api/searches/{req.pk}/ once the worker is done.")
            return None
        else:
            req = wait_for_job(req, stream=self.stderr)
        if req.status != JobStatus.SUCCEEDED:
            raise CommandError(f"{path}: {req.error or req.status}")
        return req.results
