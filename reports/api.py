"""Agreement report API: one class per operation (HackSoft style), researchers and coordinators only.

GET  /api/reports/studies/<id>/            the report JSON (point estimates, or a current bootstrap result)
POST /api/reports/studies/<id>/bootstrap/  queue the report with bootstrap CIs and p-values (202; 200 if known)
GET  /api/reports/runs/<id>/               status and progress of a queued report
GET  /api/reports/runs/<id>/result/        its report JSON once it succeeded (409 before)
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApplicationError, Conflict
from core.jobs import JobStatus
from core.roles import COORDINATOR, RESEARCHER, api_role
from readerstudy.models import Study
from readerstudy.selectors import study_blinding_check
from reports import stats as S
from reports.jobs import report_latest
from reports.models import ReportRun
from reports.options import DEFAULT_RESAMPLES, MAX_RESAMPLES, NDCG_TIES, ReportOptions, options_parse
from reports.tasks import report_run_start

CoordinatorOrResearcher = api_role(COORDINATOR, RESEARCHER)


class _AnalysisSerializer(serializers.Serializer):
    p = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=1000),
        required=False,
        allow_empty=False,
        help_text="nDCG cut-offs (default 3 and 10)",
    )
    tie_break = serializers.ChoiceField(
        choices=sorted(S.TIE_BREAK_RULES),
        required=False,
        help_text="consensus tie-break of choose-k studies (default index)",
    )
    ndcg_ties = serializers.ChoiceField(
        choices=sorted(NDCG_TIES),
        required=False,
        help_text="headline nDCG of ranking studies: ties in distances broken (default) or averaged",
    )
    runs = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        allow_null=True,
        help_text="model run ids (default: every finished run of the dataset)",
    )
    class_label = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=100,
        help_text="label of the query images that defines the query class",
    )


def _options(data: dict, **extra) -> ReportOptions:
    return options_parse(
        p=data.get("p"),
        tie_break=data.get("tie_break"),
        ndcg_ties=data.get("ndcg_ties"),
        runs=data.get("runs"),
        class_label=data.get("class_label", ""),
        **extra,
    )


@extend_schema_serializer(component_name="ReportRun")
class ReportRunSerializer(serializers.ModelSerializer):
    percent = serializers.IntegerField(source="progress_percent")
    done = serializers.IntegerField(source="progress_done")
    total = serializers.IntegerField(source="progress_total")
    note = serializers.CharField(source="progress_note")
    result_url = serializers.SerializerMethodField()

    class Meta:
        model = ReportRun
        fields = [
            "id",
            "study",
            "status",
            "percent",
            "done",
            "total",
            "note",
            "error",
            "options",
            "created_at",
            "finished_at",
            "result_url",
        ]

    def get_result_url(self, obj) -> str | None:
        return reverse("api-report-run-result", args=[obj.pk]) if obj.status == JobStatus.SUCCEEDED else None


class ReportDetailApi(APIView):
    """The agreement report of a study (interim while the study is open)."""

    permission_classes = [CoordinatorOrResearcher]

    @extend_schema_serializer(component_name="ReportQuery")
    class InputSerializer(serializers.Serializer):
        p = serializers.CharField(required=False, help_text="comma-separated nDCG cut-offs, e.g. 3,10")
        tie_break = serializers.ChoiceField(choices=sorted(S.TIE_BREAK_RULES), required=False)
        ndcg_ties = serializers.ChoiceField(choices=sorted(NDCG_TIES), required=False)
        runs = serializers.CharField(required=False, help_text="comma-separated model run ids")
        class_label = serializers.CharField(required=False, allow_blank=True)

    @extend_schema(parameters=[InputSerializer], responses=OpenApiTypes.OBJECT)
    def get(self, request, pk: int):
        study = get_object_or_404(Study, pk=pk)
        study_blinding_check(user=request.user, study=study)
        query = self.InputSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        options = _options(query.validated_data)
        report, _ = report_latest(study=study, options=options)
        return Response(report)


class ReportBootstrapStartApi(APIView):
    """Queue the report with bootstrap intervals and p-values; the same request again returns the same run."""

    permission_classes = [CoordinatorOrResearcher]

    @extend_schema_serializer(component_name="ReportBootstrapInput")
    class InputSerializer(_AnalysisSerializer):
        n_resamples = serializers.IntegerField(min_value=1, max_value=MAX_RESAMPLES, default=DEFAULT_RESAMPLES)
        seed = serializers.IntegerField(min_value=0, max_value=2**32 - 1, default=0)
        readers_too = serializers.BooleanField(default=False, help_text="resample readers as well as cases")
        level = serializers.FloatField(min_value=0.5, max_value=0.999, default=0.95)

    @extend_schema(request=InputSerializer, responses={202: ReportRunSerializer, 200: ReportRunSerializer})
    def post(self, request, pk: int):
        study = get_object_or_404(Study, pk=pk)
        study_blinding_check(user=request.user, study=study)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        options = _options(
            v, n_resamples=v["n_resamples"], seed=v["seed"], readers_too=v["readers_too"], level=v["level"]
        )
        run, created = report_run_start(study=study, options=options, created_by=request.user)
        return Response(
            ReportRunSerializer(run).data, status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK
        )


class ReportRunDetailApi(APIView):
    """Status and progress of a queued report (the page's progress bar polls this)."""

    permission_classes = [CoordinatorOrResearcher]

    @extend_schema(responses=ReportRunSerializer)
    def get(self, request, pk: int):
        run = get_object_or_404(ReportRun.objects.select_related("study"), pk=pk)
        study_blinding_check(user=request.user, study=run.study)
        return Response(ReportRunSerializer(run).data)


class ReportRunResultApi(APIView):
    """The report JSON of a run that succeeded."""

    permission_classes = [CoordinatorOrResearcher]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, pk: int):
        run = get_object_or_404(ReportRun.objects.select_related("study"), pk=pk)
        study_blinding_check(user=request.user, study=run.study)
        if run.status == JobStatus.FAILED:
            raise ApplicationError(f"The report failed: {run.error}", status_code=status.HTTP_409_CONFLICT)
        if run.status != JobStatus.SUCCEEDED:
            raise Conflict(f"The report is {run.status}; poll {reverse('api-report-run', args=[run.pk])}.")
        return Response(run.result)
