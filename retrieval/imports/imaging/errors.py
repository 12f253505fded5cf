"""The one exception type of image handling, and how a foreign exception is worded in it.

Any exception raised by pydicom, Pillow or numpy on hostile input becomes `ImageDecodeError`;
callers only ever catch that one type.
"""

from __future__ import annotations


class ImageDecodeError(ValueError):
    """The bytes cannot be turned into a display image; the message says why."""


def short_reason(exc: BaseException, limit: int = 200) -> str:
    """The exception's type and the first line of its message, at most `limit` characters."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    message = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return message if len(message) <= limit else message[: limit - 1] + "…"
