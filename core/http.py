"""Request hygiene shared by every app: NUL bytes refused, list pages bounded.

PostgreSQL cannot hold a NUL character in a text value, so a `\\x00` in a query string reaching a filter
was a server error there (and meaningless anywhere): `RejectNulMiddleware` answers 400 before any view
runs. DRF's own CharFields refuse NUL in bodies; JSON objects stored as they are (a run's configuration)
are checked where they are validated. `BoundedLimitOffsetPagination` caps `limit` (MAX_LIMIT) and
`offset`, which the database could not take beyond 64 bits. `RejectHugeIdMiddleware` answers 404 for a
number in the path (an id, a case index) beyond 64 bits, which no row has and SQLite cannot even compare.
`BrokerUnavailableMiddleware` answers a job that could not be queued (core.errors.BrokerUnavailable: its
row is saved pending and sent once the broker is back) with a 503 and the message, JSON under /api/,
instead of a server error.
"""

from __future__ import annotations

from django.http import Http404, HttpResponseBadRequest, JsonResponse
from django.shortcuts import render
from rest_framework.pagination import LimitOffsetPagination

NUL_MESSAGE = "The request contains a NUL character (\\x00), which no field accepts."
NOT_FOUND_MESSAGE = "Not found."
MAX_PATH_INT = 2**63 - 1  # the largest id a database column holds
MAX_LIMIT = 1000
MAX_OFFSET = 2**31 - 1


class RejectNulMiddleware:
    """400 for a NUL character in the path or in a query-string name or value."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path or any(
            "\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists()
        ):
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": NUL_MESSAGE}, status=400)
            return HttpResponseBadRequest(NUL_MESSAGE, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


class BrokerUnavailableMiddleware:
    """503 with the message for core.errors.BrokerUnavailable raised by a view (the API's handler answers its own)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        from core.errors import BrokerUnavailable

        if not isinstance(exception, BrokerUnavailable):
            return None
        if request.path.startswith("/api/"):
            response = JsonResponse({"detail": exception.message}, status=503)
        else:
            context = {"code": 503, "title": "The task queue is unreachable", "message": exception.message}
            response = render(request, "errors/error.html", context, status=503)
        response["Retry-After"] = "60"
        return response


class RejectHugeIdMiddleware:
    """404 for an integer path parameter beyond MAX_PATH_INT (`/api/studies/99999999999999999999/`): no row has
    such an id, and SQLite raises OverflowError (a server error) when a query compares a column with it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if any(isinstance(v, int) and abs(v) > MAX_PATH_INT for v in (*view_args, *view_kwargs.values())):
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": NOT_FOUND_MESSAGE}, status=404)
            raise Http404(NOT_FOUND_MESSAGE)
        return None


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """DRF's limit/offset pages with `limit` at most MAX_LIMIT and `offset` at most MAX_OFFSET."""

    max_limit = MAX_LIMIT

    def get_offset(self, request) -> int:
        return min(super().get_offset(request), MAX_OFFSET)
