"""Saving uploaded files where the import task can read them (outside MEDIA_ROOT)."""

from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings


def upload_save(uploaded, *, kind: str) -> Path:
    """Stream an UploadedFile to UPLOAD_ROOT under a random name; returns its path."""
    folder = settings.UPLOAD_ROOT / kind
    folder.mkdir(parents=True, exist_ok=True)
    suffix = Path(uploaded.name).suffix.lower()[:10]
    path = folder / f"{uuid.uuid4().hex}{suffix}"
    with path.open("wb") as fh:
        for chunk in uploaded.chunks():
            fh.write(chunk)
    return path
