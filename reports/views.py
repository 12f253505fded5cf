"""Agreement report pages and downloads (mounted at /reports/), for researchers and coordinators.

Readers and users without a role get 403, anonymous users the login page. The page computes
the point estimates synchronously (well under 2 s for 1,000 cases × 10 readers); bootstrap
intervals and p-values are computed by a worker task (`reports.tasks.report_bootstrap`) and shown
when ready, with a progress bar meanwhile.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.db.models import Count
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from core.errors import ApplicationError
from core.roles import COORDINATOR, RESEARCHER, role_required
from readerstudy.models import Study
from readerstudy.selectors import study_blinding_check
from reports import exports
from reports.figures import report_figure_uris
from reports.inputs import query_label_names, study_fingerprint
from reports.jobs import report_latest, report_run_find
from reports.models import ReportRun
from reports.options import DEFAULT_RESAMPLES, ReportOptions, options_from_dict, options_parse
from reports.tables import report_tables
from reports.tasks import report_run_start

GROUPS = {"": "no split", "modality": "query modality", "query_class": "query class", "reader": "reader"}
ANALYSIS_PARAMS = ("p", "tie_break", "ndcg_ties", "runs", "label")


@role_required(COORDINATOR, RESEARCHER)
def report_index(request):
    """Every study with a link to its report."""
    studies = Study.objects.select_related("dataset").annotate(
        n_cases=Count("cases", distinct=True), n_readers=Count("assignments", distinct=True)
    )
    return render(request, "reports/index.html", {"studies": studies})


def _options(params, study: Study) -> ReportOptions:
    """Analysis options from query/form parameters (the class label defaults to the builder's)."""
    label = params.get("label")
    if label is None:
        label = (study.builder_config or {}).get("class_label", "") if isinstance(study.builder_config, dict) else ""
    return options_parse(
        p=params.get("p"),
        tie_break=params.get("tie_break"),
        ndcg_ties=params.get("ndcg_ties"),
        runs=params.get("runs"),
        class_label=label,
    )


def _run(params, study: Study) -> ReportRun | None:
    """The report run named by ?run=, which must belong to the study."""
    value = params.get("run")
    if not value:
        return None
    if not str(value).isdigit():
        raise ApplicationError("run must be a report run id.")
    return get_object_or_404(ReportRun, pk=int(value), study=study)


def _query(options: ReportOptions, *, run: ReportRun | None = None, group: str = "") -> str:
    """The query string that reproduces these options (links, downloads, redirects)."""
    params = {
        "p": ",".join(map(str, options.p)),
        "tie_break": options.tie_break,
        "ndcg_ties": options.ndcg_ties,
        "label": options.class_label,
    }
    if options.runs is not None:
        params["runs"] = ",".join(map(str, options.runs))
    if run is not None:
        params["run"] = run.pk
    if group:
        params["group"] = group
    return urlencode(params)


@role_required(COORDINATOR, RESEARCHER)
def report_study(request, pk: int):
    """The report page: tables, figures, subgroup selector, bootstrap box, downloads."""
    study = get_object_or_404(Study.objects.select_related("dataset", "ground_truth_reader"), pk=pk)
    study_blinding_check(user=request.user, study=study)
    group = request.GET.get("group", "") if request.GET.get("group", "") in GROUPS else ""
    try:
        run = _run(request.GET, study)
        options = options_from_dict(run.options) if run else _options(request.GET, study)
        report, shown = report_latest(study=study, options=options, run=run)
    except ApplicationError as exc:
        return render(
            request, "reports/study_report.html", {"study": study, "error": exc.message, "groups": GROUPS}, status=400
        )
    return render(
        request,
        "reports/study_report.html",
        _context(study, report, options, group, run or report_run_find(study=study, options=options), shown),
    )


def _context(
    study: Study, report: dict, options: ReportOptions, group: str, run: ReportRun | None, shown: ReportRun | None
) -> dict:
    query = _query(options, run=shown, group=group)
    return {
        "study": study,
        "report": report,
        "options": options,
        "group": group,
        "groups": GROUPS,
        "labels": query_label_names(study=study),
        "tables": report_tables(report, group=group),
        "figures": report_figure_uris(report),
        "run": run,
        "shown_run": shown,
        "stale": bool(shown and shown.result and shown.result.get("fingerprint") != study_fingerprint(study=study)),
        "downloads": [
            (fmt, reverse("reports:download", args=[study.pk, fmt]) + "?" + query) for fmt in exports.FORMATS
        ],
        "default_resamples": DEFAULT_RESAMPLES,
        "analysis_query": _query(options, group=group),
    }


@require_POST
@role_required(COORDINATOR, RESEARCHER)
def report_bootstrap_start(request, pk: int):
    """Queue the report with bootstrap intervals and p-values, then back to the page (with its progress bar)."""
    study = get_object_or_404(Study, pk=pk)
    study_blinding_check(user=request.user, study=study)
    try:
        analysis = _options(request.POST, study)
        options = options_parse(
            **{
                **analysis.as_dict(),
                "n_resamples": request.POST.get("n_resamples") or DEFAULT_RESAMPLES,
                "seed": request.POST.get("seed") or 0,
                "readers_too": request.POST.get("readers_too", ""),
                "level": request.POST.get("level") or 0.95,
            }
        )
        run, created = report_run_start(study=study, options=options, created_by=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect(
            reverse("reports:study", args=[pk])
            + "?"
            + urlencode({k: request.POST[k] for k in ANALYSIS_PARAMS if k in request.POST})
        )
    messages.success(
        request,
        f"Bootstrap with {options.n_resamples} resamples "
        f"{'queued' if created else 'already computed or running'} (report run #{run.pk}).",
    )
    return redirect(
        reverse("reports:study", args=[pk]) + "?" + _query(options, run=run, group=request.POST.get("group", ""))
    )


@role_required(COORDINATOR, RESEARCHER)
def report_download(request, pk: int, fmt: str):
    """One export as an attachment (json, csv, questions, imrmc, html, pdf)."""
    study = get_object_or_404(Study.objects.select_related("dataset", "ground_truth_reader"), pk=pk)
    study_blinding_check(user=request.user, study=study)
    if fmt not in exports.FORMATS:
        return HttpResponseBadRequest(f"Unknown format; use one of {', '.join(exports.FORMATS)}.")
    group = request.GET.get("group", "") if request.GET.get("group", "") in GROUPS else ""
    try:
        run = _run(request.GET, study)
        options = options_from_dict(run.options) if run else _options(request.GET, study)
        body, content_type, filename = exports.export_file(study=study, options=options, fmt=fmt, run=run, group=group)
    except ApplicationError as exc:
        return HttpResponseBadRequest(exc.message, content_type="text/plain; charset=utf-8")
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
