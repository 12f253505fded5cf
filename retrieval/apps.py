import logging

from django.apps import AppConfig


class RetrievalConfig(AppConfig):
    name = "retrieval"
    verbose_name = "Image collections and retrieval"

    def ready(self) -> None:
        # pydicom.config resets its logger to WARNING when first imported, after Django has applied
        # LOGGING; its decoder loop then logs a traceback at ERROR for every plugin that fails before
        # another one succeeds (e.g. Pillow on 12-bit JPEG Extended, then pylibjpeg decodes it). Import
        # it now and apply the configured level again; files no plugin decodes are in the import report.
        import pydicom  # noqa: F401
        from django.conf import settings

        # An import's uploaded sources go with it when it (or its dataset) is deleted: connect the receiver.
        from retrieval.imports import uploads  # noqa: F401

        level = settings.LOGGING.get("loggers", {}).get("pydicom", {}).get("level")
        if level:
            logging.getLogger("pydicom").setLevel(level)
