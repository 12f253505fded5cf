"""Remove the uploads kept for a retry of failed imports once IMPORT_UPLOAD_KEEP_HOURS have passed (cron)."""

from django.core.management.base import BaseCommand

from retrieval.imports.uploads import uploads_expired_remove


class Command(BaseCommand):
    help = "Remove failed imports' uploads kept past IMPORT_UPLOAD_KEEP_HOURS (every import also does this)."

    def handle(self, *args, **options):
        n = uploads_expired_remove()
        self.stdout.write(f"Removed the uploads of {n} failed import(s).")
