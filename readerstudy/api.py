"""Study API for coordinators (writes) and researchers (reads): one class per operation.

Readers and users without a role get 403 on every endpoint here: these answers carry model
provenance (method, rank, distance), which readers must never see.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.http import BoundedLimitOffsetPagination
from core.roles import COORDINATOR, RESEARCHER, api_role
from readerstudy import building, selectors, services
from readerstudy.forms import MAX_CASE_LIST_BYTES
from readerstudy.models import AnswerMode, Study, StudyQuestion, UntouchedRanking
from retrieval.models import Dataset, SplitPart

CoordinatorOrResearcher = api_role(COORDINATOR, RESEARCHER)
CoordinatorOnly = api_role(COORDINATOR)


# --- Output serializers (shared) ----------------------------------------------------------------


@extend_schema_serializer(component_name="StudyQuestion")
class QuestionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    key = serializers.CharField()
    text = serializers.CharField()
    choices = serializers.ListField(child=serializers.CharField())
    applies_to = serializers.CharField()
    position = serializers.IntegerField()


@extend_schema_serializer(component_name="StudyReader")
class AssignmentOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    reader = serializers.IntegerField(source="reader_id")
    username = serializers.CharField(source="reader.username")
    seed = serializers.IntegerField()
    created_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="StudyDetail")
class StudyOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField()
    dataset = serializers.IntegerField(source="dataset_id")
    dataset_name = serializers.CharField(source="dataset.name")
    mode = serializers.CharField()
    k = serializers.IntegerField(allow_null=True)
    rating_min = serializers.IntegerField()
    rating_max = serializers.IntegerField()
    instructions = serializers.CharField()
    allow_revisions = serializers.BooleanField()
    untouched_ranking = serializers.CharField()
    show_candidate_labels = serializers.BooleanField()
    show_saliency = serializers.BooleanField()
    builder = serializers.CharField()
    builder_config = serializers.DictField()
    seed = serializers.IntegerField()
    ground_truth_reader = serializers.IntegerField(source="ground_truth_reader_id", allow_null=True)
    created_at = serializers.DateTimeField()
    opened_at = serializers.DateTimeField(allow_null=True)
    closed_at = serializers.DateTimeField(allow_null=True)
    n_cases = serializers.SerializerMethodField()
    locked = serializers.SerializerMethodField(help_text="true once any reader has answered: the design is frozen")
    questions = QuestionOutputSerializer(many=True, source="questions.all")
    readers = AssignmentOutputSerializer(many=True, source="assignments.all")
    catalogue_recurrence = serializers.SerializerMethodField(
        help_text="per candidate set (nearest/farthest, or all): candidates, how many show an image another case "
        "shows too, and the rate; rule_accuracy: how well 'recurs ⇒ far' tells the sets apart (0.5 = not at all)"
    )

    def get_catalogue_recurrence(self, obj: Study) -> dict:
        return building.study_recurrence(study=obj)

    def get_n_cases(self, obj: Study) -> int:
        return obj.cases.count()

    def get_locked(self, obj: Study) -> bool:
        return services.study_has_answers(study=obj)


def _study_response(study: Study, code: int = status.HTTP_200_OK) -> Response:
    study = (
        Study.objects.select_related("dataset").prefetch_related("questions", "assignments__reader").get(pk=study.pk)
    )
    return Response(StudyOutputSerializer(study).data, status=code)


def _study(pk: int, *, blinded_for) -> Study:
    """The study, refused (403) to `blinded_for` while they are one of its readers: every study endpoint, reads
    and writes alike (a write answers with the study's provenance; issue 12, finding 10)."""
    study = get_object_or_404(Study, pk=pk)
    selectors.study_blinding_check(user=blinded_for, study=study)
    return study


def _reader(user_id: int):
    return get_object_or_404(get_user_model(), pk=user_id)


# --- Studies ------------------------------------------------------------------------------------


class StudyListApi(APIView):
    permission_classes = [CoordinatorOrResearcher]

    @extend_schema_serializer(component_name="StudyListItem")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        status = serializers.CharField()
        dataset = serializers.IntegerField(source="dataset_id")
        mode = serializers.CharField()
        k = serializers.IntegerField(allow_null=True)
        builder = serializers.CharField()
        n_cases = serializers.IntegerField()
        n_readers = serializers.IntegerField()
        created_at = serializers.DateTimeField()

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request):
        return Response(self.OutputSerializer(selectors.study_list(), many=True).data)


class StudyDetailApi(APIView):
    permission_classes = [CoordinatorOrResearcher]

    @extend_schema(responses=StudyOutputSerializer)
    def get(self, request, pk: int):
        return _study_response(_study(pk, blinded_for=request.user))


class StudyCreateApi(APIView):
    permission_classes = [CoordinatorOnly]

    @extend_schema_serializer(component_name="StudyCreateInput")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        dataset = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.all())
        mode = serializers.ChoiceField(choices=AnswerMode.choices)
        k = serializers.IntegerField(min_value=1, required=False, allow_null=True)
        instructions = serializers.CharField(required=False, allow_blank=True, default="")
        rating_min = serializers.IntegerField(required=False, default=1)
        rating_max = serializers.IntegerField(required=False, default=5)
        allow_revisions = serializers.BooleanField(required=False, default=False)
        untouched_ranking = serializers.ChoiceField(
            choices=UntouchedRanking.choices, required=False, default=UntouchedRanking.WARN
        )
        show_candidate_labels = serializers.BooleanField(required=False, default=False)
        show_saliency = serializers.BooleanField(required=False, default=False)
        seed = serializers.IntegerField(min_value=0, max_value=2**63 - 1, required=False, allow_null=True)
        ground_truth_reader = serializers.PrimaryKeyRelatedField(
            queryset=get_user_model().objects.all(), required=False, allow_null=True
        )

    @extend_schema(request=InputSerializer, responses={201: StudyOutputSerializer})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        study = services.study_create(**data.validated_data, created_by=request.user)
        return _study_response(study, status.HTTP_201_CREATED)


class StudyUpdateApi(APIView):
    """Change a study; the answer mode, k, rating range and display options are locked once answers exist (409)."""

    permission_classes = [CoordinatorOnly]

    @extend_schema_serializer(component_name="StudyUpdateInput")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200, required=False)
        instructions = serializers.CharField(required=False, allow_blank=True)
        allow_revisions = serializers.BooleanField(required=False)
        untouched_ranking = serializers.ChoiceField(choices=UntouchedRanking.choices, required=False)
        ground_truth_reader = serializers.PrimaryKeyRelatedField(
            queryset=get_user_model().objects.all(), required=False, allow_null=True
        )
        mode = serializers.ChoiceField(choices=AnswerMode.choices, required=False)
        k = serializers.IntegerField(min_value=1, required=False, allow_null=True)
        rating_min = serializers.IntegerField(required=False)
        rating_max = serializers.IntegerField(required=False)
        show_candidate_labels = serializers.BooleanField(required=False)
        show_saliency = serializers.BooleanField(required=False)

    @extend_schema(request=InputSerializer, responses=StudyOutputSerializer)
    def patch(self, request, pk: int):
        data = self.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        return _study_response(services.study_update(study=_study(pk, blinded_for=request.user), **data.validated_data))


class StudyOpenApi(APIView):
    permission_classes = [CoordinatorOnly]

    @extend_schema(request=None, responses=StudyOutputSerializer)
    def post(self, request, pk: int):
        return _study_response(services.study_open(study=_study(pk, blinded_for=request.user)))


class StudyCloseApi(APIView):
    permission_classes = [CoordinatorOnly]

    @extend_schema(request=None, responses=StudyOutputSerializer)
    def post(self, request, pk: int):
        return _study_response(services.study_close(study=_study(pk, blinded_for=request.user)))


class StudyCloneApi(APIView):
    permission_classes = [CoordinatorOnly]

    @extend_schema_serializer(component_name="StudyCloneInput")
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)

    @extend_schema(request=InputSerializer, responses={201: StudyOutputSerializer})
    def post(self, request, pk: int):
        study = _study(pk, blinded_for=request.user)  # refused before the body is read
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        copy = services.study_clone(study=study, name=data.validated_data["name"], created_by=request.user)
        return _study_response(copy, status.HTTP_201_CREATED)


# --- Cases --------------------------------------------------------------------------------------


class StudyBuildApi(APIView):
    """(Re)build the cases with a builder; 409 once answers exist. Options not used by the builder are refused."""

    permission_classes = [CoordinatorOnly]

    @extend_schema_serializer(component_name="StudyBuildInput")
    class InputSerializer(serializers.Serializer):
        builder = serializers.ChoiceField(choices=[b for b in building.BUILDERS if b != building.CASE_LIST])
        seed = serializers.IntegerField(
            min_value=0, max_value=2**63 - 1, required=False, help_text="default: the study's seed"
        )
        n_queries = serializers.IntegerField(min_value=1, help_text="number of cases")
        split = serializers.IntegerField(min_value=1, required=False, help_text="split id: queries from its test part")
        query_part = serializers.ChoiceField(choices=SplitPart.choices, required=False, help_text="default test")
        query_label = serializers.CharField(
            required=False, allow_blank=True, help_text="stratify queries by this label's classes"
        )
        pool_part = serializers.ChoiceField(
            choices=[(building.ALL_IMAGES, "every image of the dataset"), *SplitPart.choices],
            required=False,
            help_text="default all",
        )
        exclude_queries = serializers.BooleanField(required=False, help_text="default true")
        n = serializers.IntegerField(min_value=1, required=False, help_text="catalogue size (stratified_random, top_n)")
        class_label = serializers.CharField(required=False, help_text="stratified_random: label giving the classes")
        allocation = serializers.ChoiceField(
            choices=["proportional", "equal"],
            required=False,
            help_text="how strata (query_label, class_label) are filled",
        )
        run = serializers.IntegerField(min_value=1, required=False, help_text="model run (knn_farthest, top_n)")
        k = serializers.IntegerField(min_value=1, required=False, help_text="knn_farthest: k nearest + k farthest")
        runs = serializers.ListField(
            child=serializers.IntegerField(min_value=1), required=False, help_text="pooled: model runs"
        )
        per_method = serializers.IntegerField(min_value=1, required=False, help_text="pooled: top candidates per run")

    @extend_schema(request=InputSerializer, responses=StudyOutputSerializer)
    def post(self, request, pk: int):
        study = _study(pk, blinded_for=request.user)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        config = dict(data.validated_data)
        builder, seed = config.pop("builder"), config.pop("seed", study.seed)
        return _study_response(building.study_build_cases(study=study, builder=builder, config=config, seed=seed))


class StudyCaseListApi(APIView):
    """Replace the cases by an uploaded CSV case list; per-line errors in extra.errors."""

    permission_classes = [CoordinatorOnly]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema_serializer(component_name="StudyCaseListInput")
    class InputSerializer(serializers.Serializer):
        file = serializers.FileField()
        seed = serializers.IntegerField(min_value=0, max_value=2**63 - 1, required=False)

        def validate_file(self, value):
            if value.size > MAX_CASE_LIST_BYTES:
                raise serializers.ValidationError("The case list is larger than 5 MB.")
            return value

    @extend_schema(request=InputSerializer, responses=StudyOutputSerializer)
    def post(self, request, pk: int):
        study = _study(pk, blinded_for=request.user)  # refused before the body is read
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        study = building.study_load_case_list(
            study=study,
            data=upload.read(),
            seed=data.validated_data.get("seed"),
            file_name=upload.name,
        )
        return _study_response(study)


@extend_schema_serializer(component_name="CandidateProvenance")
class ProvenanceSerializer(serializers.Serializer):
    method = serializers.CharField()
    run = serializers.IntegerField(allow_null=True)
    rank = serializers.IntegerField(allow_null=True)
    distance = serializers.FloatField(allow_null=True)
    set = serializers.CharField(required=False, help_text="knn_farthest: nearest or farthest")
    stratum = serializers.CharField(required=False, help_text="stratified_random: the class drawn from")
    line = serializers.IntegerField(required=False, help_text="case list: the CSV line")


@extend_schema_serializer(component_name="StudyCandidateWithProvenance")
class CandidateOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    image = serializers.IntegerField(source="image_id")
    position = serializers.IntegerField()
    provenance = ProvenanceSerializer(many=True)


class StudyCasesApi(APIView):
    """The cases in canonical order with each candidate's provenance (paginated: limit/offset)."""

    permission_classes = [CoordinatorOrResearcher]

    @extend_schema_serializer(component_name="StudyCaseWithProvenance")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        position = serializers.IntegerField()
        query = serializers.IntegerField(source="query_id")
        candidates = CandidateOutputSerializer(many=True, source="candidates.all")

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request, pk: int):
        paginator = BoundedLimitOffsetPagination()
        page = paginator.paginate_queryset(
            selectors.study_cases(study=_study(pk, blinded_for=request.user)), request, view=self
        )
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True).data)


@extend_schema_serializer(component_name="StudyReaderProgress")
class ReaderProgressSerializer(serializers.Serializer):
    reader_id = serializers.IntegerField()
    reader = serializers.CharField()
    done = serializers.IntegerField()
    total = serializers.IntegerField()
    percent = serializers.IntegerField()
    median_seconds = serializers.FloatField(allow_null=True, help_text="median active time per answered case")
    flags = serializers.IntegerField()
    last_answer_at = serializers.DateTimeField(allow_null=True)
    is_ground_truth = serializers.BooleanField()


class StudyProgressApi(APIView):
    permission_classes = [CoordinatorOrResearcher]

    @extend_schema_serializer(component_name="StudyProgress")
    class OutputSerializer(serializers.Serializer):
        study = serializers.IntegerField()
        status = serializers.CharField()
        n_cases = serializers.IntegerField()
        readers = ReaderProgressSerializer(many=True)

    @extend_schema(responses=OutputSerializer)
    def get(self, request, pk: int):
        study = _study(pk, blinded_for=request.user)
        return Response(
            self.OutputSerializer(
                {
                    "study": study.pk,
                    "status": study.status,
                    "n_cases": study.cases.count(),
                    "readers": selectors.study_progress(study=study),
                }
            ).data
        )


# --- Readers and questions ----------------------------------------------------------------------


class AssignmentAddApi(APIView):
    permission_classes = [CoordinatorOnly]

    @extend_schema_serializer(component_name="StudyReaderAddInput")
    class InputSerializer(serializers.Serializer):
        reader = serializers.IntegerField(min_value=1, help_text="user id of a user with the reader role")
        seed = serializers.IntegerField(
            min_value=0,
            max_value=2**63 - 1,
            required=False,
            help_text="default: derived from the study seed and the reader id",
        )

    @extend_schema(request=InputSerializer, responses={201: AssignmentOutputSerializer})
    def post(self, request, pk: int):
        study = _study(pk, blinded_for=request.user)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        assignment = services.assignment_add(
            study=study, reader=_reader(data.validated_data["reader"]), seed=data.validated_data.get("seed")
        )
        return Response(AssignmentOutputSerializer(assignment).data, status=status.HTTP_201_CREATED)


class AssignmentRemoveApi(APIView):
    """Remove a reader; 409 when they have answered."""

    permission_classes = [CoordinatorOnly]

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, pk: int, user_id: int):
        services.assignment_remove(study=_study(pk, blinded_for=request.user), reader=_reader(user_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class QuestionAddApi(APIView):
    permission_classes = [CoordinatorOnly]

    @extend_schema_serializer(component_name="StudyQuestionAddInput")
    class InputSerializer(serializers.Serializer):
        text = serializers.CharField(max_length=300)
        choices = serializers.ListField(child=serializers.CharField(max_length=100), min_length=2, max_length=12)
        applies_to = serializers.ChoiceField(
            choices=StudyQuestion.AppliesTo.choices, default=StudyQuestion.AppliesTo.ALL
        )
        key = serializers.SlugField(max_length=40, required=False, default="")

    @extend_schema(request=InputSerializer, responses={201: QuestionOutputSerializer})
    def post(self, request, pk: int):
        study = _study(pk, blinded_for=request.user)  # refused before the body is read
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        question = services.question_add(study=study, **data.validated_data)
        return Response(QuestionOutputSerializer(question).data, status=status.HTTP_201_CREATED)


class QuestionRemoveApi(APIView):
    permission_classes = [CoordinatorOnly]

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, pk: int, question_id: int):
        study = _study(pk, blinded_for=request.user)
        question = get_object_or_404(StudyQuestion, pk=question_id, study=study)
        services.question_remove(study=study, question=question)
        return Response(status=status.HTTP_204_NO_CONTENT)
