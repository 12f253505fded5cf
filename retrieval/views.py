"""Server-rendered pages of the image collection (thin: forms in, services/selectors out)."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.paginator import Paginator
from django.db import transaction
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from core.errors import ApplicationError
from core.roles import COORDINATOR, RESEARCHER, has_role, role_required
from retrieval import selectors
from retrieval.forms import DatasetForm, ImportUploadForm
from retrieval.imports import pacs, services
from retrieval.imports.uploads import upload_discard, upload_name, upload_resolve, upload_save
from retrieval.models import Dataset, Image, ImportJob
from retrieval.run_views import saliency_runs_for


@role_required(COORDINATOR, RESEARCHER)
def dataset_list(request):
    return render(request, "retrieval/dataset_list.html", {"datasets": selectors.dataset_list(), "form": DatasetForm()})


@role_required(COORDINATOR)
@require_http_methods(["POST"])
def dataset_create(request):
    form = DatasetForm(request.POST)
    if form.is_valid():
        try:
            ds = services.dataset_create(created_by=request.user, **form.cleaned_data)
        except ApplicationError as exc:
            messages.error(request, exc.message)
            return redirect("retrieval:dataset-list")
        messages.success(request, f"Dataset {ds.name} created. Import images into it below.")
        return redirect("retrieval:import-create", pk=ds.pk)
    messages.error(request, "A dataset needs a name.")
    return redirect("retrieval:dataset-list")


@role_required(COORDINATOR, RESEARCHER)
def dataset_detail(request, pk: int):
    dataset = get_object_or_404(Dataset, pk=pk)
    label, value = request.GET.get("label", ""), request.GET.get("value", "")
    page = Paginator(selectors.image_list(dataset=dataset, label=label, value=value), 48).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "retrieval/dataset_detail.html",
        {
            "dataset": dataset,
            "page": page,
            "label_summary": selectors.dataset_label_summary(dataset=dataset),
            "imports": selectors.import_jobs_for(dataset=dataset)[:10],
            "filter_label": label,
            "filter_value": value,
        },
    )


@role_required(COORDINATOR, RESEARCHER)
def image_detail(request, pk: int):
    image = get_object_or_404(Image.objects.select_related("dataset"), pk=pk)
    return render(
        request,
        "retrieval/image_detail.html",
        {
            "image": image,
            "labels": image.labels.order_by("name"),
            "saliency_runs": saliency_runs_for(image),
            "display_json": json.dumps(image.display),
        },
    )


@role_required(COORDINATOR)
def import_create(request, pk: int):
    """Upload images and/or a label table. With a label table, the column preview comes first
    (`import_confirm`): nothing is imported before the coordinator confirms what each column becomes."""
    dataset = get_object_or_404(Dataset, pk=pk)
    form = ImportUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        archive = upload_save(form.cleaned_data["archive"], kind="archives") if form.cleaned_data["archive"] else ""
        labels = upload_save(form.cleaned_data["labels"], kind="labels") if form.cleaned_data["labels"] else ""
        pending = {
            "dataset": dataset.pk,
            "archive": upload_name(archive) if archive else "",
            "labels": upload_name(labels) if labels else "",
            "label_format": form.cleaned_data["label_format"],
            "allow_free_text": form.cleaned_data["allow_free_text"],
        }
        if labels:
            try:
                return import_preview(request, dataset, pending)
            except ApplicationError as exc:
                upload_discard(archive, labels)
                form.add_error("labels", exc.message)
        else:
            return _import_start(request, dataset, pending)
    return render(request, "retrieval/import_form.html", {"dataset": dataset, "form": form})


_PENDING_SALT = "retrieval.import-confirm"


def import_preview(request, dataset, pending: dict):
    """The column preview of an uploaded label table, confirmed by `import_confirm`. `pending` says what the
    import would be: uploaded files (`archive`, `labels`), or a PACS selection (`pacs`: endpoint and UIDs, from
    the PACS page, retrieval.pacs_views) with its label table."""
    preview = services.label_table_preview(
        labels_path=upload_resolve(pending["labels"]),
        label_format=pending["label_format"],
        allow_free_text=pending["allow_free_text"],
        uid_keys=bool(pending.get("pacs")),
    )
    return render(
        request,
        "retrieval/import_confirm.html",
        {
            "dataset": dataset,
            "preview": preview,
            "pending": pending,
            "token": signing.dumps(pending, salt=_PENDING_SALT),
            "refused": [c for c in preview.columns if c.action == "free_text"],
        },
    )


def _import_start(request, dataset, pending: dict):
    archive = upload_resolve(pending["archive"]) if pending["archive"] else ""
    labels = upload_resolve(pending["labels"]) if pending["labels"] else ""
    if pending.get("pacs"):
        try:
            with transaction.atomic():
                job = pacs.dicomweb_import_create(
                    dataset=dataset,
                    endpoint=pending["pacs"]["endpoint"],
                    selections=pending["pacs"]["selections"],
                    labels_path=labels,
                    label_format=pending["label_format"],
                    allow_free_text=pending["allow_free_text"],
                    created_by=request.user,
                    remove_sources=True,
                )
        except ApplicationError:
            upload_discard(labels)  # nothing is created, the upload included (as on the PACS page)
            raise
        return redirect(job.get_absolute_url())
    with transaction.atomic():
        job = services.import_job_create(
            dataset=dataset,
            source_path=archive or "",
            labels_path=labels or "",
            label_format=pending["label_format"],
            allow_free_text=pending["allow_free_text"],
            created_by=request.user,
            remove_sources=True,
        )
    return redirect(job.get_absolute_url())


@role_required(COORDINATOR)
@require_http_methods(["POST"])
def import_confirm(request, pk: int):
    """The coordinator's answer to the column preview: import, show again (free text allowed or not), or cancel."""
    dataset = get_object_or_404(Dataset, pk=pk)
    try:
        pending = signing.loads(
            request.POST.get("token", ""), salt=_PENDING_SALT, max_age=max(settings.IMPORT_UPLOAD_KEEP_HOURS, 1) * 3600
        )
    except signing.BadSignature:
        messages.error(request, "This preview has expired or is not valid: upload the files again.")
        return redirect("retrieval:import-create", pk=dataset.pk)
    paths = [pending[k] for k in ("archive", "labels") if pending.get(k)]
    if pending.get("dataset") != dataset.pk or any(upload_resolve(p) is None for p in paths):
        messages.error(request, "The uploaded files of this preview are gone: upload them again.")
        return redirect("retrieval:import-create", pk=dataset.pk)
    back = "retrieval:dicomweb-import" if pending.get("pacs") else "retrieval:import-create"
    action = request.POST.get("action")
    if action == "cancel":
        upload_discard(*(upload_resolve(p) for p in paths))
        messages.info(request, "Import cancelled; the uploaded files were removed.")
        return redirect(dataset.get_absolute_url())
    if action == "preview":
        pending = {**pending, "allow_free_text": request.POST.get("allow_free_text") == "on"}
        try:
            return import_preview(request, dataset, pending)
        except ApplicationError as exc:
            messages.error(request, exc.message)
            return redirect(back, pk=dataset.pk)
    try:
        return _import_start(request, dataset, pending)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect(back, pk=dataset.pk)


#: Import report lines shown per page (a report holds up to ingest.REPORT_MAX_LINES lines and a summary).
REPORT_LINES_PER_PAGE = 200


@role_required(COORDINATOR, RESEARCHER)
def import_detail(request, pk: int):
    job = get_object_or_404(ImportJob.objects.select_related("dataset"), pk=pk)
    page = Paginator(job.report, REPORT_LINES_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "retrieval/import_detail.html", {"job": job, "page": page})


@role_required(COORDINATOR)
@require_http_methods(["POST"])
def import_retry(request, pk: int):
    """Queue a failed import again, from the sources it kept."""
    job = get_object_or_404(ImportJob, pk=pk)
    try:
        services.import_job_retry(job=job)
        messages.success(request, "Import queued again.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("retrieval:import-detail", pk=job.pk)


@login_required
def image_file(request, pk: int, kind: str):
    """Serve a rendition, thumbnail, modality values (greyscale DICOM) or (coordinators only) the original."""
    image = get_object_or_404(Image, pk=pk)
    if kind not in ("rendition", "thumbnail", "values", "original") or not selectors.image_visible_to(
        user=request.user, image=image
    ):
        raise Http404("No such image.")
    if kind == "values" and not image.values:
        raise Http404("This image has no modality values (not a greyscale DICOM, or imported before they were kept).")
    if kind == "original" and not has_role(request.user, COORDINATOR):
        raise Http404("No such image.")
    field = getattr(image, kind)
    try:
        fh = field.open("rb")
    except FileNotFoundError:
        raise Http404("The image file is missing on the server.") from None
    response = FileResponse(fh, as_attachment=kind == "original", filename=f"image-{image.pk}{Path(field.name).suffix}")
    response["Cache-Control"] = "private, max-age=86400"
    return response
