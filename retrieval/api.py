"""REST API of the image collection: one class per operation (HackSoft style)."""

from __future__ import annotations

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.http import BoundedLimitOffsetPagination
from core.roles import COORDINATOR, RESEARCHER, api_role
from retrieval import selectors
from retrieval.imports import services
from retrieval.imports.uploads import upload_discard, upload_save
from retrieval.models import Dataset, Image, ImportJob, LabelFormat, ModelRun, SearchRequest, Split
from retrieval.runs import index, search
from retrieval.runs import services as runs
from retrieval.runs.services import run_worker_lost
from retrieval.runs.splits import MAX_SEED, split_create

CoordinatorOrResearcher = api_role(COORDINATOR, RESEARCHER)
CoordinatorOnly = api_role(COORDINATOR)


class LabelSerializer(serializers.Serializer):
    name = serializers.CharField()
    value = serializers.SerializerMethodField()

    def get_value(self, obj) -> float | str:
        return obj.value


class ImageOutputSerializer(serializers.ModelSerializer):
    labels = LabelSerializer(many=True, read_only=True)
    thumbnail_url = serializers.SerializerMethodField()
    rendition_url = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = [
            "id",
            "dataset",
            "source_name",
            "source_format",
            "patient_pseudo_id",
            "study_uid",
            "series_uid",
            "sop_instance_uid",
            "modality",
            "view_position",
            "width",
            "height",
            "frames",
            "slices_in_series",
            "window_center",
            "window_width",
            "window_source",
            "content_hash",
            "labels",
            "thumbnail_url",
            "rendition_url",
        ]

    def get_thumbnail_url(self, obj) -> str:
        return f"/images/{obj.pk}/thumbnail/"

    def get_rendition_url(self, obj) -> str:
        return f"/images/{obj.pk}/rendition/"


class DatasetListApi(APIView):
    permission_classes = [CoordinatorOrResearcher]

    @extend_schema_serializer(component_name="Dataset")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        description = serializers.CharField()
        n_images = serializers.IntegerField()

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request):
        return Response(self.OutputSerializer(selectors.dataset_list(), many=True).data)


class DatasetCreateApi(APIView):
    permission_classes = [CoordinatorOnly]

    @extend_schema_serializer(component_name="DatasetCreateInput")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        description = serializers.CharField(required=False, allow_blank=True, default="")

    @extend_schema(request=InputSerializer, responses={201: DatasetListApi.OutputSerializer})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ds = services.dataset_create(created_by=request.user, **data.validated_data)
        return Response({"id": ds.pk, "name": ds.name, "description": ds.description, "n_images": 0}, status=201)


class ImageListApi(APIView):
    permission_classes = [CoordinatorOrResearcher]

    @extend_schema(responses=ImageOutputSerializer(many=True))
    def get(self, request, pk: int):
        dataset = get_object_or_404(Dataset, pk=pk)
        qs = selectors.image_list(
            dataset=dataset, label=request.query_params.get("label", ""), value=request.query_params.get("value", "")
        )
        paginator = BoundedLimitOffsetPagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(ImageOutputSerializer(page, many=True).data)


class ImageDetailApi(APIView):
    permission_classes = [CoordinatorOrResearcher]

    @extend_schema(responses=ImageOutputSerializer)
    def get(self, request, pk: int):
        image = get_object_or_404(Image.objects.prefetch_related("labels"), pk=pk)
        return Response(ImageOutputSerializer(image).data)


class ImportJobOutputSerializer(serializers.ModelSerializer):
    percent = serializers.IntegerField(source="progress_percent")

    class Meta:
        model = ImportJob
        fields = [
            "id",
            "dataset",
            "status",
            "progress_done",
            "progress_total",
            "percent",
            "progress_note",
            "error",
            "label_format",
            "allow_free_text",
            "n_imported",
            "n_skipped",
            "n_failed",
            "n_labels",
            "report",
            "created_at",
            "started_at",
            "finished_at",
        ]


class LabelColumnSerializer(serializers.Serializer):
    name = serializers.CharField()
    action = serializers.ChoiceField(
        choices=["key", "patient", "view", "label", "identifier", "free_text", "ignored"],
        help_text="key: names the image file; patient: replaced by a pseudonym; view; label: imported; "
        "identifier: dropped; free_text: refused (send allow_free_text to import it); ignored: not read by the format",
    )
    action_text = serializers.CharField()
    reason = serializers.CharField()
    samples = serializers.ListField(child=serializers.CharField(), help_text="a few values of imported columns")


class LabelTablePreviewSerializer(serializers.Serializer):
    rows = serializers.IntegerField()
    columns = LabelColumnSerializer(many=True)
    problems = serializers.SerializerMethodField(help_text="the first 50 remarks on the table: [line, message]")

    def get_problems(self, preview) -> list[list]:
        return [[line, message] for line, message in preview.problems[:50]]


class ImportCreateApi(APIView):
    """Upload an archive and/or a label table; the import runs on the worker.

    `preview=true` (with a label table) imports nothing: the answer (200) says what the import would do with
    each column (the same plan the import applies, and the page a coordinator confirms on the web).
    """

    permission_classes = [CoordinatorOnly]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema_serializer(component_name="ImportCreateInput")
    class InputSerializer(serializers.Serializer):
        archive = serializers.FileField(required=False)
        labels = serializers.FileField(required=False)
        label_format = serializers.ChoiceField(choices=LabelFormat.choices, default=LabelFormat.GENERIC)
        allow_free_text = serializers.BooleanField(
            default=False, help_text="import free-text label columns (notes, comments…); refused otherwise"
        )
        preview = serializers.BooleanField(
            default=False, help_text="only say what would happen to each column of the label table"
        )

        def validate(self, attrs):
            if not attrs.get("archive") and not attrs.get("labels"):
                raise serializers.ValidationError("Send an archive of images, a label table, or both.")
            if attrs.get("preview") and not attrs.get("labels"):
                raise serializers.ValidationError({"labels": "A preview needs a label table."})
            return attrs

    @extend_schema(
        request=InputSerializer, responses={202: ImportJobOutputSerializer, 200: LabelTablePreviewSerializer}
    )
    def post(self, request, pk: int):
        dataset = get_object_or_404(Dataset, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        if v["preview"]:
            labels = upload_save(v["labels"], kind="labels")
            try:
                preview = services.label_table_preview(
                    labels_path=labels, label_format=v["label_format"], allow_free_text=v["allow_free_text"]
                )
            finally:
                upload_discard(labels)
            return Response(LabelTablePreviewSerializer(preview).data)
        archive = upload_save(v["archive"], kind="archives") if v.get("archive") else ""
        labels = upload_save(v["labels"], kind="labels") if v.get("labels") else ""
        with transaction.atomic():
            job = services.import_job_create(
                dataset=dataset,
                source_path=archive,
                labels_path=labels,
                label_format=v["label_format"],
                allow_free_text=v["allow_free_text"],
                created_by=request.user,
                remove_sources=True,
            )
        return Response(ImportJobOutputSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class ImportDetailApi(APIView):
    permission_classes = [CoordinatorOrResearcher]

    @extend_schema(responses=ImportJobOutputSerializer)
    def get(self, request, pk: int):
        return Response(ImportJobOutputSerializer(get_object_or_404(ImportJob, pk=pk)).data)


class RunOutputSerializer(serializers.ModelSerializer):
    percent = serializers.IntegerField(source="progress_percent")
    worker_lost = serializers.SerializerMethodField(
        help_text="Running, but no heartbeat for JOB_STALE_SECONDS: the worker died; POST …/resume/ to go on."
    )

    def get_worker_lost(self, run: ModelRun) -> bool:
        return run_worker_lost(run=run)

    class Meta:
        model = ModelRun
        fields = [
            "id",
            "dataset",
            "split",
            "name",
            "method",
            "config",
            "status",
            "stage",
            "progress_done",
            "progress_total",
            "percent",
            "progress_note",
            "error",
            "live",
            "history",
            "metrics",
            "timings",
            "device",
            "n_embedded",
            "worker_lost",
            "created_at",
            "started_at",
            "finished_at",
        ]


class RunListApi(APIView):
    permission_classes = [CoordinatorOrResearcher]

    @extend_schema(responses=RunOutputSerializer(many=True))
    def get(self, request, pk: int):
        dataset = get_object_or_404(Dataset, pk=pk)
        return Response(RunOutputSerializer(dataset.runs.all(), many=True).data)


class RunCreateApi(APIView):
    """Queue a model run (method + configuration) on the GPU queue."""

    permission_classes = [CoordinatorOnly]

    @extend_schema_serializer(component_name="RunCreateInput")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        method = serializers.CharField()
        config = serializers.JSONField(required=False, default=dict, help_text="an object")

        def validate_config(self, value):
            if not isinstance(value, dict):
                raise serializers.ValidationError("config must be a JSON object.")
            return value

        split = serializers.IntegerField(required=False, allow_null=True, help_text="split id")

    @extend_schema(request=InputSerializer, responses={202: RunOutputSerializer})
    def post(self, request, pk: int):
        dataset = get_object_or_404(Dataset, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        split = get_object_or_404(Split, pk=v["split"], dataset=dataset) if v.get("split") else None
        with transaction.atomic():
            run = runs.run_create(
                dataset=dataset,
                name=v["name"],
                method=v["method"],
                config=v["config"],
                split=split,
                created_by=request.user,
            )
        return Response(RunOutputSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class SplitCreateApi(APIView):
    """Split a dataset into train/val/test by patient."""

    permission_classes = [CoordinatorOnly]

    @extend_schema_serializer(component_name="SplitCreateInput")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100, default="default")
        seed = serializers.IntegerField(default=0, min_value=0, max_value=MAX_SEED)
        fractions = serializers.ListField(
            child=serializers.FloatField(), min_length=3, max_length=3, default=[0.6, 0.3, 0.1]
        )

    @extend_schema_serializer(component_name="Split")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        seed = serializers.IntegerField()
        fractions = serializers.ListField(child=serializers.FloatField())

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request, pk: int):
        dataset = get_object_or_404(Dataset, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        split = split_create(
            dataset=dataset, **{**data.validated_data, "fractions": tuple(data.validated_data["fractions"])}
        )
        return Response(self.OutputSerializer(split).data, status=status.HTTP_201_CREATED)


class RunDetailApi(APIView):
    permission_classes = [CoordinatorOrResearcher]

    @extend_schema(responses=RunOutputSerializer)
    def get(self, request, pk: int):
        return Response(RunOutputSerializer(get_object_or_404(ModelRun, pk=pk)).data)


class RunResumeApi(APIView):
    permission_classes = [CoordinatorOnly]

    @extend_schema(request=None, responses={202: RunOutputSerializer})
    def post(self, request, pk: int):
        run = runs.run_resume(run=get_object_or_404(ModelRun, pk=pk))
        return Response(RunOutputSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class SearchResultSerializer(serializers.Serializer):
    image_id = serializers.IntegerField()
    rank = serializers.IntegerField()
    distance = serializers.FloatField()
    image = ImageOutputSerializer()


class SearchApi(APIView):
    """GET: neighbours of a collection image. POST: upload a query image; poll the returned search."""

    permission_classes = [CoordinatorOrResearcher]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema_serializer(component_name="SearchUploadInput")
    class InputSerializer(serializers.Serializer):
        file = serializers.FileField()
        k = serializers.IntegerField(min_value=1, max_value=100, default=10)

    @extend_schema(
        parameters=[OpenApiParameter("image", int, required=True), OpenApiParameter("k", int)],
        responses=SearchResultSerializer(many=True),
    )
    def get(self, request, pk: int):
        run = get_object_or_404(ModelRun, pk=pk)
        query = serializers.IntegerField().run_validation(request.query_params.get("image"))
        k = serializers.IntegerField(min_value=1, max_value=100).run_validation(request.query_params.get("k", 10))
        get_object_or_404(Image, pk=query, dataset=run.dataset)
        results = index.search_by_image(run=run, image_id=query, k=k)
        images = Image.objects.prefetch_related("labels").in_bulk([r["image_id"] for r in results])
        return Response(
            SearchResultSerializer([{**r, "image": images[r["image_id"]]} for r in results], many=True).data
        )

    @extend_schema(request=InputSerializer, responses={202: OpenApiTypes.OBJECT})
    def post(self, request, pk: int):
        run = get_object_or_404(ModelRun, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            req = search.search_request_create(
                run=run,
                upload_path=upload_save(data.validated_data["file"], kind="search"),
                k=data.validated_data["k"],
                created_by=request.user,
            )
        return Response(SearchRequestSerializer(req).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_serializer(component_name="SearchRequestOutput")
class SearchRequestSerializer(serializers.ModelSerializer):
    percent = serializers.IntegerField(source="progress_percent")

    class Meta:
        model = SearchRequest
        fields = [
            "id",
            "run",
            "status",
            "percent",
            "progress_done",
            "progress_total",
            "progress_note",
            "error",
            "k",
            "results",
            "created_at",
            "finished_at",
        ]


class SearchDetailApi(APIView):
    permission_classes = [CoordinatorOrResearcher]

    @extend_schema(responses=SearchRequestSerializer)
    def get(self, request, pk: int):
        return Response(SearchRequestSerializer(get_object_or_404(SearchRequest, pk=pk)).data)
