"""manage.py search RUN (--image ID | --file PATH) [--k 10] [--json]"""

import json

from django.core.management.base import BaseCommand, CommandError

from readerstudy.errors import ApplicationError
from retrieval.cli import run_lookup
from retrieval.models import Image


class Command(BaseCommand):
    help = ("The k images most similar to a collection image (its stored embedding; itself excluded) or to "
            "an image file (embedded in this process with the run's model).")

    def add_arguments(self, parser):
        parser.add_argument("run", help="run id or name")
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--image", type=int, help="id of an image of the run's dataset")
        group.add_argument("--file", help="a DICOM/PNG/JPEG file")
        parser.add_argument("--k", type=int, default=10)
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(self, *args, run, image, file, k, as_json, **o):
        from retrieval import search

        run = run_lookup(run)
        try:
            if image is not None:
                results = search.search_by_image(run=run, image_id=image, k=k)
            else:
                results = self._file_search(run, file, k)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        images = {i.pk: i for i in Image.objects.filter(pk__in=[r["image_id"] for r in results]).prefetch_related("labels")}
        for r in results:
            r["source_name"] = images[r["image_id"]].source_name
            r["labels"] = {lab.name: lab.value for lab in images[r["image_id"]].labels.all()}
        if as_json:
            self.stdout.write(json.dumps(results, indent=2))
            return
        for r in results:
            findings = ", ".join(n for n, v in r["labels"].items() if v == 1.0)
            self.stdout.write(f"{r['rank']:>3}  {r['distance']:.4f}  #{r['image_id']:<6} {r['source_name']}  {findings}")

    def _file_search(self, run, path, k):
        from pathlib import Path

        from django.conf import settings

        from retrieval import imaging, search

        try:
            decoded = imaging.decode_image(Path(path).read_bytes(), max_pixels=settings.IMPORT_MAX_PIXELS)
        except (OSError, imaging.ImageDecodeError) as exc:
            raise CommandError(f"{path}: {exc}") from None
        return search.search_by_vector(run=run, vector=search.embed_pixels(run, decoded.pixels), k=k)
