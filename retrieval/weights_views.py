"""Pages of weights fetches: the run form's *Fetch weights* button, and the fetch's page with its progress bar."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from core.errors import ApplicationError
from core.roles import COORDINATOR, RESEARCHER, role_required
from retrieval.models import WeightsFetch
from retrieval.runs.fetching import weights_fetch_create, weights_fetch_retry


@role_required(COORDINATOR)
@require_http_methods(["POST"])
def weights_fetch_start(request):
    try:
        with transaction.atomic():
            job = weights_fetch_create(model_name=request.POST.get("model", ""), created_by=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect(request.META.get("HTTP_REFERER") or "retrieval:dataset-list")
    return redirect("retrieval:weights-fetch", pk=job.pk)


@role_required(COORDINATOR, RESEARCHER)
def weights_fetch_detail(request, pk: int):
    job = get_object_or_404(WeightsFetch, pk=pk)
    return render(request, "retrieval/weights_fetch.html", {"job": job, "download_allowed": settings.WEIGHTS_DOWNLOAD})


@role_required(COORDINATOR, RESEARCHER)
def weights_fetch_progress(request, pk: int):
    return JsonResponse(get_object_or_404(WeightsFetch, pk=pk).progress_dict())


@role_required(COORDINATOR)
@require_http_methods(["POST"])
def weights_fetch_again(request, pk: int):
    job = get_object_or_404(WeightsFetch, pk=pk)
    try:
        weights_fetch_retry(job=job)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("retrieval:weights-fetch", pk=job.pk)
