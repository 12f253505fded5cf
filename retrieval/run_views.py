"""Pages of model runs and search (thin: forms in, services and selectors out)."""

from __future__ import annotations

import io
import re

import matplotlib
import matplotlib.pyplot as plt
from django.contrib import messages
from django.db import transaction
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from core.errors import ApplicationError
from core.roles import COORDINATOR, RESEARCHER, role_required
from retrieval.forms import RunForm, SearchForm
from retrieval.imports.uploads import upload_save
from retrieval.ml.metrics import AP_DEFINITION_NAMES
from retrieval.models import Dataset, Image, ModelRun, SearchRequest
from retrieval.runs import artefacts, index, ranking, search
from retrieval.runs import services as runs
from retrieval.runs.comparison import comparison_table
from retrieval.runs.evaluation import MAP_FILE
from retrieval.runs.methods import METHODS
from retrieval.runs.ranking import saliency_path

BOTH = (COORDINATOR, RESEARCHER)  # reads; starting and resuming runs (and making splits) is coordinators' work


@role_required(*BOTH)
def run_list(request, pk: int):
    dataset = get_object_or_404(Dataset, pk=pk)
    form = RunForm(dataset=dataset)
    return render(
        request,
        "retrieval/run_list.html",
        {
            "dataset": dataset,
            "runs": dataset.runs.select_related("split"),
            "form": form,
            "methods": METHODS.values(),
        },
    )


@role_required(COORDINATOR)
def run_create(request, pk: int):
    dataset = get_object_or_404(Dataset, pk=pk)
    form = RunForm(request.POST or None, dataset=dataset)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                split = form.split_or_create()
                run = runs.run_create(
                    dataset=dataset,
                    name=form.cleaned_data["name"],
                    method=form.cleaned_data["method"],
                    config=form.config(),
                    split=split,
                    created_by=request.user,
                )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Run {run.name} queued on the GPU queue.")
            return redirect(run.get_absolute_url())
    return render(request, "retrieval/run_form.html", {"dataset": dataset, "form": form})


@role_required(*BOTH)
def run_detail(request, pk: int):
    run = get_object_or_404(ModelRun.objects.select_related("dataset", "split"), pk=pk)
    retrieval = run.metrics.get("retrieval") or {}
    return render(
        request,
        "retrieval/run_detail.html",
        {
            "run": run,
            "retrieval": retrieval,
            "rows": metric_rows(retrieval),
            "hubness": hubness_rows(retrieval),
            "has_map": artefacts.exists(run, MAP_FILE),
            "worker_lost": runs.run_worker_lost(run=run),
            "evaluations": run.evaluations.order_by("-pk")[:10],
        },
    )


@role_required(COORDINATOR)
def run_resume(request, pk: int):
    run = get_object_or_404(ModelRun, pk=pk)
    if request.method == "POST":
        try:
            runs.run_resume(run=run)
            messages.success(request, "Run queued again; finished stages are kept.")
        except ApplicationError as exc:
            messages.error(request, exc.message)
    return redirect(run.get_absolute_url())


@role_required(*BOTH)
def run_figure(request, pk: int, name: str):
    """The embedding map (t-SNE) or the training curves of a run, as PNG."""
    run = get_object_or_404(ModelRun, pk=pk)
    if name == "map":
        path = artefacts.fetch(run, MAP_FILE)
        if not path.exists():
            raise Http404("No embedding map yet.")
        return FileResponse(path.open("rb"), content_type="image/png")
    if name == "curves" and run.history:
        return HttpResponse(_curves_png(run.history), content_type="image/png")
    raise Http404("No such figure.")


def _curves_png(history: list[dict]) -> bytes:
    matplotlib.use("Agg")

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    ax.plot(epochs, [h.get("loss") for h in history], "o-", label="training loss")
    if any(h.get("val_loss") is not None for h in history):
        ax.plot(epochs, [h.get("val_loss") for h in history], "s-", label="validation loss")
    ax.set_xlabel("epoch")
    ax2 = ax.twinx()
    ax2.plot(epochs, [h.get("val_metric") for h in history], "^--", color="tab:green", label="validation metric")
    fig.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def metric_rows(result: dict) -> list[dict]:
    """Metric rows with their random baseline and test, in a readable order.

    mAP@k appears under the chosen AP definition and, below it, under each other definition
    (`map@k[hits]`, …), each row naming what AP is divided by.
    """
    chosen = result.get("ap_definition", "min_k_R")
    rows = []
    for key in sorted(k for k in result if k.endswith("_random")):
        name = key[: -len("_random")]
        match = re.fullmatch(r"(\w+?)@(\d+)(_macro)?(?:\[(\w+)\])?", name)
        if match is None or name not in result or match.group(4) == chosen:
            continue  # the chosen definition is the unsuffixed map@k row
        base, k, macro, definition = match.groups()
        if base == "map":
            definition = definition or chosen
        rows.append(
            {
                "name": name,
                "value": result[name],
                "random": result[key],
                "t": result.get(f"{name}_t"),
                "p": result.get(f"{name}_p"),
                "definition": f"AP / {AP_DEFINITION_NAMES.get(definition, definition)}" if definition else "",
                "order": (_METRIC_ORDER.get(base, 9), int(k), bool(macro), definition != chosen, name),
            }
        )
    rows.sort(key=lambda r: r["order"])
    return rows


_METRIC_ORDER = {"precision": 0, "map": 1, "ndcg": 2, "ndcg_graded": 3}


def hubness_rows(result: dict) -> list[dict]:
    """Per k: skewness of the k-occurrence and the antihub share (images never among anyone's k nearest)."""
    ks = sorted(int(key.split("@")[1]) for key in result if key.startswith("hubness_skew@"))
    return [{"k": k, "skew": result.get(f"hubness_skew@{k}"), "antihub": result.get(f"antihub_share@{k}")} for k in ks]


@role_required(*BOTH)
def search_page(request, pk: int):
    """Pick a collection image (?image=ID) or upload one; results with thumbnails, labels and distance."""
    run = get_object_or_404(ModelRun.objects.select_related("dataset"), pk=pk)
    form = SearchForm(request.POST or None, request.FILES or None, initial={"k": 10})
    context = {"run": run, "form": form, "results": None, "query": None}
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                req = search.search_request_create(
                    run=run,
                    upload_path=upload_save(form.cleaned_data["file"], kind="search"),
                    k=form.cleaned_data["k"],
                    created_by=request.user,
                )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            return redirect("retrieval:search-upload", pk=req.pk)
    elif request.GET.get("image"):
        if not request.GET["image"].isdecimal() or len(request.GET["image"]) > 18:
            messages.error(request, f"{request.GET['image'][:40]!r} is not an image id.")
            return render(request, "retrieval/search.html", context, status=400)
        query = get_object_or_404(Image, pk=int(request.GET["image"]), dataset=run.dataset)
        k = _bounded_k(request.GET.get("k"))
        try:
            context.update(
                query=query,
                results=_with_images(index.search_by_image(run=run, image_id=query.pk, k=k), run),
                query_saliency=ranking.saliency_path(run, query.pk).exists(),
            )
        except ApplicationError as exc:
            messages.error(request, exc.message)
    return render(request, "retrieval/search.html", context)


@role_required(*BOTH)
def search_upload_result(request, pk: int):
    req = get_object_or_404(SearchRequest.objects.select_related("run", "run__dataset"), pk=pk)
    results = _with_images(req.results, req.run) if req.status == "succeeded" else None
    return render(request, "retrieval/search_upload.html", {"req": req, "run": req.run, "results": results})


@role_required(*BOTH)
@require_http_methods(["POST"])
def search_upload_retry(request, pk: int):
    """Queue a failed upload search again (its image is kept after an unexpected failure)."""
    req = get_object_or_404(SearchRequest, pk=pk)
    try:
        search.search_request_retry(req=req)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("retrieval:search-upload", pk=req.pk)


def _bounded_k(value) -> int:
    try:
        return max(1, min(100, int(value or 10)))
    except ValueError:
        return 10


def _with_images(results: list[dict], run: ModelRun | None = None) -> list[dict]:
    """Results with their image rows, labels and whether the run stored a saliency overlay of each (shown over
    the thumbnail by the search page's toggle)."""
    images = Image.objects.in_bulk([r["image_id"] for r in results])
    for image in images.values():
        image.label_list = list(image.labels.all())
    out = []
    for r in results:
        if r["image_id"] in images:
            has_map = run is not None and saliency_path(run, r["image_id"]).exists()
            out.append({**r, "image": images[r["image_id"]], "saliency": has_map})
    return out


@role_required(*BOTH)
def run_saliency(request, pk: int, image_id: int):
    """The saliency overlay of an image under a classifier run (PNG), when the run computed one."""
    run = get_object_or_404(ModelRun, pk=pk)
    path = saliency_path(run, image_id)
    if not path.exists():
        raise Http404("No saliency map for this image under this run.")
    return FileResponse(path.open("rb"), content_type="image/png")


def saliency_runs_for(image: Image) -> list[ModelRun]:
    """Finished runs of the image's dataset that hold a saliency overlay of it."""
    return [r for r in image.dataset.runs.filter(status="succeeded") if saliency_path(r, image.pk).exists()]


@role_required(*BOTH)
def compare(request, pk: int):
    """Every finished method of the dataset on one split, beside random retrieval."""
    dataset = get_object_or_404(Dataset, pk=pk)
    split = request.GET.get("split") or None
    table = comparison_table(dataset=dataset, split_name=split, ks=(1, 5, 10))
    return render(
        request,
        "retrieval/compare.html",
        {"dataset": dataset, "table": table, "splits": dataset.splits.values_list("name", flat=True)},
    )
