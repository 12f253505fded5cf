"""One domain error type, turned into a clear 4xx by the API exception handler and views."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ApplicationError(Exception):
    """A request the domain refuses, with a message meant for the user."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, extra: dict[str, Any] | None = None, *, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}
        if status_code is not None:
            self.status_code = status_code


class Conflict(ApplicationError):
    """The request conflicts with the current state (e.g. a study that already has answers)."""

    status_code = status.HTTP_409_CONFLICT


def api_exception_handler(exc, context):
    """DRF's handler plus ApplicationError and Django's own validation/permission errors."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, BrokerUnavailable):
        return Response({"detail": exc.message}, status=exc.status_code, headers={"Retry-After": "60"})
    if isinstance(exc, ApplicationError):
        return Response({"detail": exc.message, "extra": exc.extra}, status=exc.status_code)
    return exception_handler(exc, context)


class BrokerUnavailable(Exception):
    """The task broker could not be reached: the job row is saved pending (the outbox, core.tasks.jobs_requeue).

    Not an ApplicationError (whose views re-render their form): every page answers it with a 503 and the message
    (core.http.BrokerUnavailableMiddleware), the API with a JSON 503 (api_exception_handler), commands with a
    CommandError."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
