"""Login throttling (django-axes), the client address, and response headers for signed-in pages.

Failed logins, on the login form and through HTTP Basic auth on the API, are counted per account and
per client address by django-axes; after `LOGIN_FAILURE_LIMIT` failures that account or address is
refused, even with the right password, for `LOGIN_COOLOFF_MINUTES` (docs/configuration.md). Every
failure is logged (logger `axes`, WARNING) with the user name and the address.

`NoStoreMiddleware` marks every response to a signed-in user `Cache-Control: no-store, private` unless
the view set its own Cache-Control (the reader's per-assignment image URLs are private and cacheable).
"""

from __future__ import annotations

import math

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_cool_off
from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render
from django.utils.cache import patch_cache_control
from drf_spectacular.authentication import BasicScheme
from rest_framework.authentication import BasicAuthentication


class LoginThrottleBackend(AxesStandaloneBackend):
    """Axes' lockout check for every authentication that comes with a request (the login form, Basic auth).

    A call without a request (the test client's `login`, a shell) comes from no client address and is left
    to the next backend instead of being refused."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


class ThrottledBasicAuthentication(BasicAuthentication):
    """DRF's HTTP Basic auth handing Django's own request to `authenticate`, so that axes counts the
    failures and its middleware can answer a locked-out client with the lockout message."""

    def authenticate_credentials(self, userid, password, request=None):
        return super().authenticate_credentials(userid, password, getattr(request, "_request", request))


class ThrottledBasicScheme(BasicScheme):
    """The OpenAPI schema's `basicAuth` for ThrottledBasicAuthentication (registered on import)."""

    target_class = "core.security.ThrottledBasicAuthentication"


def client_ip(request) -> str | None:
    """The client's address: REMOTE_ADDR, or behind a trusted reverse proxy (`BEHIND_PROXY=true`) the
    address that proxy appended last to X-Forwarded-For (earlier entries come from the client and can be forged)."""
    if getattr(settings, "BEHIND_PROXY", False):
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if forwarded:
            return forwarded[-1]
    return request.META.get("REMOTE_ADDR")


def lockout_message(request) -> str:
    cool_off = get_cool_off(request)
    minutes = max(1, math.ceil(cool_off.total_seconds() / 60)) if cool_off else None
    wait = f"Try again in {minutes} minute{'s' if minutes != 1 else ''}" if minutes else "Ask an administrator"
    return (
        f"Too many failed logins for this account or from this address: logging in is locked. {wait}, "
        f"or ask an administrator to unlock it (manage.py axes_reset_username NAME)."
    )


def lockout_response(request, original_response=None, credentials=None):
    """429 with the lockout message: JSON on the API, the error page elsewhere."""
    message = lockout_message(request)
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=429)
    return render(
        request,
        "errors/error.html",
        {"code": 429, "title": "Too many failed logins", "message": message},
        status=429,
    )


class NoStoreMiddleware:
    """`Cache-Control: no-store, private` on every response to a signed-in user that set no Cache-Control."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not response.has_header("Cache-Control"):
            patch_cache_control(response, no_store=True, private=True)
        return response
