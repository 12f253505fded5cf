"""REST API of PACS imports (DICOMweb): search an endpoint, import the chosen studies or series.

Endpoints are named, never given as URLs (settings.DICOMWEB_ENDPOINTS); the search answer carries the
PACS's patient identifiers to the coordinator and nothing of it is stored.
"""

from __future__ import annotations

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApplicationError
from core.roles import COORDINATOR, api_role
from retrieval.api import ImportJobOutputSerializer
from retrieval.imports import dicomweb, pacs
from retrieval.imports.uploads import upload_save
from retrieval.models import Dataset, LabelFormat

CoordinatorOnly = api_role(COORDINATOR)


class SearchInputSerializer(serializers.Serializer):
    endpoint = serializers.CharField()
    level = serializers.ChoiceField(choices=["study", "series"], default="study")
    patient_id = serializers.CharField(required=False, default="")
    patient_name = serializers.CharField(required=False, default="")
    study_uid = serializers.CharField(required=False, default="")
    modality = serializers.CharField(required=False, default="", max_length=16)
    date_from = serializers.DateField(required=False, allow_null=True, default=None)
    date_to = serializers.DateField(required=False, allow_null=True, default=None)
    limit = serializers.IntegerField(required=False, default=100, min_value=1, max_value=1000)


class SearchRowSerializer(serializers.Serializer):
    selection = serializers.CharField(help_text="what to send to the import: STUDY or STUDY/SERIES")
    study_uid = serializers.CharField()
    series_uid = serializers.CharField()
    patient_id = serializers.CharField()
    patient_name = serializers.CharField()
    study_date = serializers.CharField()
    modality = serializers.CharField()
    description = serializers.CharField()
    instances = serializers.IntegerField(allow_null=True)


def search_rows(values: dict) -> list[dicomweb.SearchRow]:
    """A QIDO-RS search from validated form/API values; ApplicationError with the PACS's problem."""
    try:
        endpoint = dicomweb.endpoint_resolve(values["endpoint"])
        return dicomweb.search(
            endpoint,
            level=values.get("level") or "study",
            patient_id=values.get("patient_id", ""),
            patient_name=values.get("patient_name", ""),
            study_uid=values.get("study_uid", ""),
            modality=values.get("modality", ""),
            date_from=values["date_from"].strftime("%Y%m%d") if values.get("date_from") else "",
            date_to=values["date_to"].strftime("%Y%m%d") if values.get("date_to") else "",
            limit=values.get("limit") or 100,
        )
    except dicomweb.DicomwebError as exc:
        raise ApplicationError(str(exc)) from None


class DicomwebSearchApi(APIView):
    """QIDO-RS search of a configured DICOMweb endpoint (patient, study, modality, dates). A POST: patient IDs and
    names travel in the body, never in a URL that access logs would keep."""

    permission_classes = [CoordinatorOnly]

    @extend_schema(request=SearchInputSerializer, responses=SearchRowSerializer(many=True))
    def post(self, request):
        data = SearchInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(SearchRowSerializer(search_rows(data.validated_data), many=True).data)


class DicomwebImportApi(APIView):
    """Import studies or series of a configured DICOMweb endpoint into a dataset; the import runs on the worker."""

    permission_classes = [CoordinatorOnly]
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema_serializer(component_name="DicomwebImportInput")
    class InputSerializer(serializers.Serializer):
        endpoint = serializers.CharField()
        select = serializers.ListField(
            child=serializers.CharField(), allow_empty=False, help_text="StudyInstanceUIDs, or STUDY/SERIES"
        )
        labels = serializers.FileField(required=False, help_text="label table, may be keyed by a UID column")
        label_format = serializers.ChoiceField(choices=LabelFormat.choices, default=LabelFormat.GENERIC)
        allow_free_text = serializers.BooleanField(
            default=False,
            help_text="import free-text label columns (notes, comments…); refused otherwise. What the import "
            "would do with each column: POST the table to the dataset's import API with preview=true",
        )

    @extend_schema(request=InputSerializer, responses={202: ImportJobOutputSerializer})
    def post(self, request, pk: int):
        dataset = get_object_or_404(Dataset, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        labels = upload_save(v["labels"], kind="labels") if v.get("labels") else ""
        try:
            with transaction.atomic():
                job = pacs.dicomweb_import_create(
                    dataset=dataset,
                    endpoint=v["endpoint"],
                    selections=v["select"],
                    labels_path=labels,
                    label_format=v["label_format"],
                    allow_free_text=v["allow_free_text"],
                    created_by=request.user,
                    remove_sources=True,
                )
        except ApplicationError:
            if labels:
                labels.unlink(missing_ok=True)  # nothing is created, the upload included
            raise
        return Response(ImportJobOutputSerializer(job).data, status=status.HTTP_202_ACCEPTED)
