"""Platform pages: the health check and the error pages (the role dashboard is annotations.reader_views.home)."""

from __future__ import annotations

from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render


def healthz(request):
    """Liveness + database check for load balancers (no authentication, no data)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def error_400(request, exception=None):
    return render(
        request,
        "errors/error.html",
        {"code": 400, "title": "Bad request", "message": "The request could not be understood."},
        status=400,
    )


def error_403(request, exception=None):
    message = str(exception) if exception and str(exception) else "You do not have access to this page."
    return render(request, "errors/error.html", {"code": 403, "title": "Not allowed", "message": message}, status=403)


def error_404(request, exception=None):
    return render(
        request,
        "errors/error.html",
        {"code": 404, "title": "Not found", "message": "There is nothing at this address."},
        status=404,
    )


def error_500(request):
    return render(
        request,
        "errors/error.html",
        {"code": 500, "title": "Server error", "message": "Something went wrong on our side; the error was logged."},
        status=500,
    )
