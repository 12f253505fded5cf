"""Modality values for greyscale DICOM images imported before they were kept (`manage.py image_values`).

The stored original (the de-identified DICOM, same pixel data) is decoded again; images whose rendition
is a linear window of their values get the 16-bit values file and `display` (imaging.values), exactly as
an import makes them now. Nothing else of the image changes.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from retrieval.imports.imaging.decode import decode_image
from retrieval.imports.imaging.errors import ImageDecodeError
from retrieval.imports.imaging.values import make_values_png
from retrieval.models import Image


def image_values_backfill(*, dataset_id: int | None = None) -> dict[str, int]:
    """Add the values to every DICOM image that lacks them; counts of `added`, `none` (no linear window or
    colour) and `failed` (original missing or undecodable)."""
    counts = {"added": 0, "none": 0, "failed": 0}
    # An image found to have none is marked (`display = {"values": "none"}`) and not decoded again: the demo
    # runs this at every start.
    images = Image.objects.filter(source_format="dicom", values="").exclude(display__has_key="values")
    if dataset_id is not None:
        images = images.filter(dataset_id=dataset_id)
    for image in images.iterator(chunk_size=200):
        try:
            with image.original.open("rb") as fh:
                decoded = decode_image(fh.read(), max_pixels=settings.IMPORT_MAX_PIXELS)
        except (FileNotFoundError, ImageDecodeError, ValueError):
            counts["failed"] += 1
            continue
        if decoded.values is None:
            Image.objects.filter(pk=image.pk, values="").update(display={"values": "none"})
            counts["none"] += 1
            continue
        data, display = make_values_png(decoded.values, decoded.values_display, max_side=settings.RENDITION_MAX_SIDE)
        digest = image.content_hash
        path = default_storage.save(f"datasets/{image.dataset_id}/values/{digest[:2]}/{digest}.png", ContentFile(data))
        try:
            with transaction.atomic():
                updated = Image.objects.filter(pk=image.pk, values="").update(values=path, display=display)
        except BaseException:
            _delete_unreferenced(path)
            raise
        if updated:
            counts["added"] += 1
        else:  # filled in meanwhile by another run
            _delete_unreferenced(path)
    return counts


def _delete_unreferenced(path: str) -> None:
    """Remove a values file no image references. A shared storage (S3, file_overwrite) gives two runs the same
    name, so the file may be the one the other run committed."""
    if not Image.objects.filter(values=path).exists():
        default_storage.delete(path)
