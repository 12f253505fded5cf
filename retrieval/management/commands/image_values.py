"""Keep the modality values of greyscale DICOM images imported before the viewer could window them in HU."""

from django.core.management.base import BaseCommand

from retrieval.imports.backfill import image_values_backfill


class Command(BaseCommand):
    help = (
        "Add the modality values (a 16-bit PNG, for windowing in the image's own units) to DICOM images "
        "imported before they were kept. Safe to run again: images that have them are left alone."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", type=int, help="only this dataset (id)")

    def handle(self, *args, **options):
        counts = image_values_backfill(dataset_id=options["dataset"])
        self.stdout.write(
            f"Modality values added to {counts['added']} image(s); {counts['none']} have none to keep "
            f"(colour, SIGMOID window or VOI LUT); {counts['failed']} original(s) missing or unreadable."
        )
