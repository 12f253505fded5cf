"""Reading API: what the reader's pages do, one class per operation (HackSoft style).

Cases are addressed by their 1-based number in the reader's own order (`/cases/12/` is "case 12
of 50" for this reader), candidates by the reader's opaque keys. Every endpoint checks that the
user holds a role and is assigned to the study; other studies, draft studies and other readers'
answers are simply not found.
"""

from __future__ import annotations

from contextlib import contextmanager

from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations import selectors, services
from core import image_links
from core.errors import ApplicationError, Conflict
from core.roles import ROLES, api_role
from readerstudy.models import Assignment, Case, StudyStatus

AnyRole = api_role(*ROLES)
MAX_ITEMS = 500  # no catalogue is larger; bounds what a request may carry
IMAGE_HELP = (
    'address of the rendition (PNG): by case number and "query" or candidate key, or behind nginx with image '
    "links on a signed link valid only with this session's cookie until its expiry (docs/install.md); no image id"
)
VALUES_HELP = (
    "greyscale DICOM only: address of the modality values (16-bit PNG; value = stored · scale + offset), "
    "addressed like the rendition"
)
DISPLAY_HELP = (
    "greyscale DICOM only: offset, scale, min, max, units (HU for CT), modality, monochrome1, the rendition's "
    "window (LINEAR_EXACT centre/width in units) and the file's VOI windows"
)
SALIENCY_HELP = "address of the saliency overlay (PNG); only when the study shows saliency and the image has one"


def reading_target(*, user, study_id: int, index: int) -> tuple[Assignment, selectors.ReaderOrder, Case]:
    """The reader's assignment, order and case number `index`, or the 4xx that explains why not."""
    assignment = selectors.reader_assignment(user=user, study_id=study_id)
    if assignment is None:
        raise NotFound("No such study among yours.")
    if assignment.study.status != StudyStatus.OPEN:
        raise Conflict("This study is closed.")
    order = selectors.reader_order(assignment=assignment)
    if order.case_id(index) is None:
        raise NotFound(f"This study has cases 1 to {order.total}.")
    if not order.can_open(index):
        raise Conflict(f"Answer case {order.next_index} first.", {"next_case": order.next_index})
    return assignment, order, selectors.reader_case(order=order, index=index)


@contextmanager
def keys_in_errors(keymap: dict[str, int]):
    """Refusals of the services (which speak candidate ids) reach the reader with candidate keys only."""
    try:
        yield
    except ApplicationError as error:
        raise selectors.reader_error_to_keys(error=error, keymap=keymap) from None


def next_url(*, assignment: Assignment) -> str:
    """Where the reader goes after a submission: the next unanswered case, or the end page."""
    order = selectors.reader_order(assignment=assignment)
    if order.next_index is None:
        return reverse("reading:done", args=[assignment.study_id])
    return reverse("reading:case", args=[assignment.study_id, order.next_index])


# --- shared serializers (unique component names for the schema) ---------------------------------


@extend_schema_serializer(component_name="ReadingImageAnswer")
class ImageAnswerSerializer(serializers.Serializer):
    question = serializers.CharField(max_length=50)
    image = serializers.CharField(max_length=40, help_text='"query" or a candidate key')
    value = serializers.CharField(max_length=100)


@extend_schema_serializer(component_name="ReadingSelection")
class SelectionSerializer(serializers.Serializer):
    """A reader's (partial) answer: candidate keys, ratings by key, per-image answers."""

    selected = serializers.ListField(child=serializers.CharField(max_length=40), max_length=MAX_ITEMS, required=False)
    ranking = serializers.ListField(child=serializers.CharField(max_length=40), max_length=MAX_ITEMS, required=False)
    ratings = serializers.DictField(child=serializers.IntegerField(), required=False)
    image_answers = ImageAnswerSerializer(many=True, required=False, max_length=10 * MAX_ITEMS)

    def validate_ratings(self, value: dict) -> dict:
        if len(value) > MAX_ITEMS:
            raise serializers.ValidationError("Too many ratings.")
        return value


# --- endpoints ----------------------------------------------------------------------------------


class ReadingStudyListApi(APIView):
    """My studies (open and closed) with progress."""

    permission_classes = [AnyRole]

    @extend_schema_serializer(component_name="ReadingStudy")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField(source="study.id")
        name = serializers.CharField(source="study.name")
        mode = serializers.CharField(source="study.mode")
        status = serializers.CharField(source="study.status")
        n_cases = serializers.IntegerField()
        n_done = serializers.IntegerField()
        url = serializers.SerializerMethodField()

        def get_url(self, obj) -> str:
            return reverse("reading:study", args=[obj.study_id])

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request):
        return Response(self.OutputSerializer(selectors.reader_study_list(user=request.user), many=True).data)


class ReadingCaseDetailApi(APIView):
    """One case as this reader sees it (blinded); opening it starts its timing."""

    permission_classes = [AnyRole]

    @extend_schema_serializer(component_name="ReadingCase")
    class OutputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="ReadingCaseStudy")
        class StudySerializer(serializers.Serializer):
            id = serializers.IntegerField()
            name = serializers.CharField()
            mode = serializers.CharField()
            k = serializers.IntegerField(allow_null=True)
            rating_min = serializers.IntegerField()
            rating_max = serializers.IntegerField()
            allow_revisions = serializers.BooleanField()

        @extend_schema_serializer(component_name="ReadingCaseProgress")
        class ProgressSerializer(serializers.Serializer):
            index = serializers.IntegerField()
            total = serializers.IntegerField()
            done = serializers.IntegerField()

        @extend_schema_serializer(component_name="ReadingQueryImage")
        class QuerySerializer(serializers.Serializer):
            url = serializers.CharField(help_text=IMAGE_HELP)
            saliency = serializers.CharField(required=False, help_text=SALIENCY_HELP)
            values = serializers.CharField(required=False, help_text=VALUES_HELP)
            display = serializers.DictField(required=False, help_text=DISPLAY_HELP)

        @extend_schema_serializer(component_name="ReadingCandidate")
        class CandidateSerializer(serializers.Serializer):
            key = serializers.CharField()
            position = serializers.IntegerField()
            url = serializers.CharField(help_text=IMAGE_HELP)
            labels = serializers.ListField(
                child=serializers.CharField(), required=False, help_text="only when the study shows candidate labels"
            )
            saliency = serializers.CharField(required=False, help_text=SALIENCY_HELP)
            values = serializers.CharField(required=False, help_text=VALUES_HELP)
            display = serializers.DictField(required=False, help_text=DISPLAY_HELP)

        @extend_schema_serializer(component_name="ReadingQuestion")
        class QuestionSerializer(serializers.Serializer):
            key = serializers.CharField()
            text = serializers.CharField()
            choices = serializers.ListField(child=serializers.CharField())
            applies_to = serializers.CharField()

        @extend_schema_serializer(component_name="ReadingOwnAnswer")
        class AnswerSerializer(SelectionSerializer):
            revision = serializers.IntegerField()
            submitted_at = serializers.DateTimeField()

        @extend_schema_serializer(component_name="ReadingFlag")
        class FlagSerializer(serializers.Serializer):
            comment = serializers.CharField(allow_blank=True)

        study = StudySerializer()
        case = ProgressSerializer()
        query = QuerySerializer()
        candidates = CandidateSerializer(many=True)
        questions = QuestionSerializer(many=True)
        draft = SelectionSerializer()
        answer = AnswerSerializer(allow_null=True)
        flag = FlagSerializer(allow_null=True)
        can_submit = serializers.BooleanField()

    @extend_schema(responses=OutputSerializer)
    def get(self, request, study_id: int, index: int):
        assignment, order, case = reading_target(user=request.user, study_id=study_id, index=index)
        services.case_open(assignment=assignment, case=case)
        session = image_links.session_cookie(request)
        return Response(selectors.case_payload(assignment=assignment, case=case, order=order, session_cookie=session))


class DraftSaveApi(APIView):
    """Autosave the reader's unfinished answer to a case."""

    permission_classes = [AnyRole]

    @extend_schema_serializer(component_name="ReadingDraftSaved")
    class OutputSerializer(serializers.Serializer):
        saved_at = serializers.DateTimeField()

    @extend_schema(request=SelectionSerializer, responses=OutputSerializer)
    def put(self, request, study_id: int, index: int):
        assignment, _order, case = reading_target(user=request.user, study_id=study_id, index=index)
        data = SelectionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        keymap = selectors.candidate_keymap(assignment=assignment, case=case)
        draft = selectors.reader_payload_to_ids(data=data.validated_data, keymap=keymap)
        with keys_in_errors(keymap):
            visit = services.draft_save(assignment=assignment, case=case, draft=draft)
        return Response(self.OutputSerializer({"saved_at": visit.last_seen_at}).data)


class AnswerSubmitApi(APIView):
    """Submit the reader's final answer to a case; a retry with the same client_token is a no-op."""

    permission_classes = [AnyRole]

    @extend_schema_serializer(component_name="ReadingAnswerInput")
    class InputSerializer(SelectionSerializer):
        client_token = serializers.RegexField(r"^[A-Za-z0-9_-]{8,64}$", help_text="one per submission (a UUID)")
        active_ms_delta = serializers.IntegerField(
            min_value=0, default=0, help_text="active time since the last heartbeat"
        )

    @extend_schema_serializer(component_name="ReadingAnswerSubmitted")
    class OutputSerializer(serializers.Serializer):
        revision = serializers.IntegerField()
        submitted_at = serializers.DateTimeField()
        replayed = serializers.BooleanField(help_text="true when this client_token had already been stored")
        next_url = serializers.CharField()

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer, 201: OutputSerializer})
    def post(self, request, study_id: int, index: int):
        assignment, _order, case = reading_target(user=request.user, study_id=study_id, index=index)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        keymap = selectors.candidate_keymap(assignment=assignment, case=case)
        payload = selectors.reader_payload_to_ids(data=data.validated_data, keymap=keymap)
        with keys_in_errors(keymap):
            answer = services.answer_submit(
                assignment=assignment,
                case=case,
                payload=payload,
                client_token=data.validated_data["client_token"],
                active_ms_delta=data.validated_data["active_ms_delta"],
            )
        out = {
            "revision": answer.revision,
            "submitted_at": answer.submitted_at,
            "replayed": answer.replayed,
            "next_url": next_url(assignment=assignment),
        }
        return Response(self.OutputSerializer(out).data, status=200 if answer.replayed else 201)


class VisitHeartbeatApi(APIView):
    """Report active time on a case (bounded per beat and by the wall time since the last beat)."""

    permission_classes = [AnyRole]

    @extend_schema_serializer(component_name="ReadingHeartbeatInput")
    class InputSerializer(serializers.Serializer):
        active_ms_delta = serializers.IntegerField(min_value=0, max_value=24 * 3600 * 1000)

    @extend_schema_serializer(component_name="ReadingHeartbeat")
    class OutputSerializer(serializers.Serializer):
        active_ms = serializers.IntegerField()

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request, study_id: int, index: int):
        assignment, _order, case = reading_target(user=request.user, study_id=study_id, index=index)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        visit = services.visit_heartbeat(assignment=assignment, case=case, **data.validated_data)
        return Response(self.OutputSerializer(visit).data)


class FlagSetApi(APIView):
    """Flag a case for the coordinator, with a comment."""

    permission_classes = [AnyRole]

    @extend_schema_serializer(component_name="ReadingFlagInput")
    class InputSerializer(serializers.Serializer):
        comment = serializers.CharField(allow_blank=True, max_length=services.MAX_COMMENT_CHARS, default="")

    @extend_schema_serializer(component_name="ReadingFlagSaved")
    class OutputSerializer(serializers.Serializer):
        flagged = serializers.BooleanField()
        comment = serializers.CharField(allow_blank=True)

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request, study_id: int, index: int):
        assignment, _order, case = reading_target(user=request.user, study_id=study_id, index=index)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        flag = services.flag_set(assignment=assignment, case=case, **data.validated_data)
        return Response(self.OutputSerializer({"flagged": True, "comment": flag.comment}).data)


class FlagClearApi(APIView):
    """Remove the reader's flag from a case."""

    permission_classes = [AnyRole]

    @extend_schema(request=None, responses=FlagSetApi.OutputSerializer)
    def post(self, request, study_id: int, index: int):
        assignment, _order, case = reading_target(user=request.user, study_id=study_id, index=index)
        services.flag_clear(assignment=assignment, case=case)
        return Response(FlagSetApi.OutputSerializer({"flagged": False, "comment": ""}).data)
