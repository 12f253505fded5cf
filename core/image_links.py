"""Image addresses that the web server in front of gunicorn answers by itself: no Python request per image.

Enabled by `IMAGE_LINK_SECRET` (the Docker set-up; docker/nginx.conf.template holds the nginx side). A page
that shows an image to one user asks `address()` for it and gets

    <IMAGE_LINK_URL><folder>/<name>?s=<signature>&e=<expiry>

- **the file**: `<IMAGE_LINK_ROOT>/<folder>/<name>` is a relative symbolic link to the image's file under
  MEDIA_ROOT, made (once, atomically) when the address is handed out; nginx serves the folder tree, so the
  bytes never pass through Python. The caller chooses an opaque `name` (the reader pages use the image's
  per-reader, per-place ETag) and a `scope` (the reader's assignment): the folder's name is an HMAC of the
  scope, so no id, file name or content hash is in the address.
- **the signature**: nginx's `secure_link` (in Debian's nginx-light and the official image): the MD5 of
  `<expiry><path><session cookie> <secret>`, base64url without padding. An address works only with the
  session cookie of the user it was made for (logged out, or someone else's browser: 403) and only until
  its expiry (410): midnight UTC at the end of the next day, so an address stays the same all day (the
  browser keeps the image) and lives 24 to 48 hours.
- **revocation**: `revoke(scope)` removes the scope's folder (a reader taken off a study); an address whose
  link is gone is a 404.

Pages still render without it (`enabled()` false): the images are then served by the Django view.
Standard library and Django settings only (the kernel: no app imports).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings


def enabled() -> bool:
    return bool(settings.IMAGE_LINK_SECRET)


def session_cookie(request) -> str:
    """The request's session cookie as nginx reads it (`$cookie_sessionid`): what an address is bound to."""
    return request.COOKIES.get(settings.SESSION_COOKIE_NAME, "")


def folder_name(scope: str) -> str:
    """The folder of one scope's links: opaque, stable, unguessable without SECRET_KEY."""
    return hmac.new(settings.SECRET_KEY.encode(), f"image-links:{scope}".encode(), hashlib.sha256).hexdigest()[:24]


def expiry(now: datetime | None = None) -> int:
    """The expiry of an address handed out at `now`: 00:00 UTC two days later (epoch seconds)."""
    now = now or datetime.now(UTC)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC)
    return int((midnight + timedelta(days=2)).timestamp())


def signature(path: str, expires: int, session_cookie: str) -> str:
    """What nginx's `secure_link_md5 "$secure_link_expires$uri$cookie_<name> <secret>"` computes."""
    text = f"{expires}{path}{session_cookie} {settings.IMAGE_LINK_SECRET}"
    return base64.urlsafe_b64encode(hashlib.md5(text.encode()).digest()).decode().rstrip("=")


def address(*, scope: str, name: str, target: Path, session_cookie: str, now: datetime | None = None) -> str:
    """The signed address of `target` (a file under MEDIA_ROOT) as `name` in `scope`'s folder; makes the link."""
    folder = folder_name(scope)
    _link(Path(settings.IMAGE_LINK_ROOT) / folder / name, Path(target))
    path = f"{settings.IMAGE_LINK_URL}{folder}/{name}"
    expires = expiry(now)
    return f"{path}?s={signature(path, expires, session_cookie)}&e={expires}"


def revoke(scope: str) -> None:
    """Every address of this scope stops working (its folder of links is removed)."""
    shutil.rmtree(Path(settings.IMAGE_LINK_ROOT) / folder_name(scope), ignore_errors=True)


def _link(path: Path, target: Path) -> None:
    """A relative symbolic link `path` → `target`, unless it is there: made under a temporary name and renamed,
    so that nginx never sees half a link and two requests making the same link both succeed."""
    if os.path.lexists(path):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    os.symlink(os.path.relpath(target, path.parent), temporary)
    os.replace(temporary, path)
