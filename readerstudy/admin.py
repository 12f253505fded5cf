"""Django admin of the study domain: studies with their questions; cases and candidates read-only.

The admin is a back door around the services, so it applies their rules too: once a study has
answers its design fields are read-only and neither the study nor an answered assignment can be
deleted (that would delete answers); cases and candidates are never edited here.
"""

from django.contrib import admin
from django.utils.html import format_html

from readerstudy import selectors, services
from readerstudy.models import Assignment, Candidate, Case, Study, StudyQuestion

_DESIGN_FIELDS = ("dataset", "builder", "builder_config", "seed", *services.LOCKED_ONCE_ANSWERED)


class BlindedAdmin(admin.ModelAdmin):
    """Leaves out the rows of studies the signed-in user is reading and that are not closed (a coordinator or
    superuser assigned as a reader is blinded here as on the study pages; issue 12, finding 10).
    `study_path` leads from the model to its study."""

    study_path = "study"

    def get_queryset(self, request):
        blinded = selectors.studies_blinded_for(user=request.user).values("pk")
        return super().get_queryset(request).exclude(**{f"{self.study_path}__in": blinded})


def _answered(study) -> bool:
    return study is not None and study.pk is not None and services.study_has_answers(study=study)


class StudyQuestionInline(admin.TabularInline):
    model = StudyQuestion
    extra = 0

    def has_add_permission(self, request, obj=None):
        return not _answered(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return not _answered(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return not _answered(obj) and super().has_delete_permission(request, obj)


@admin.register(Study)
class StudyAdmin(BlindedAdmin):
    study_path = "pk"

    list_display = ("name", "status", "dataset", "mode", "k", "builder", "created_at")
    list_filter = ("status", "mode", "dataset")
    search_fields = ("name",)
    readonly_fields = ("created_at", "opened_at", "closed_at", "created_by")
    inlines = [StudyQuestionInline]

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return (*fields, *_DESIGN_FIELDS) if _answered(obj) else fields

    def has_delete_permission(self, request, obj=None):
        return not _answered(obj) and super().has_delete_permission(request, obj)


class CandidateInline(admin.TabularInline):
    model = Candidate
    extra = 0
    fields = ("position", "thumb", "image", "provenance")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="")
    def thumb(self, obj):
        return format_html('<img src="/images/{}/thumbnail/" style="height:64px">', obj.image_id)


@admin.register(Case)
class CaseAdmin(BlindedAdmin):
    """Read-only: cases change only through the builders (and never once answered)."""

    list_display = ("__str__", "study", "position", "query")
    list_filter = ("study",)
    readonly_fields = ("study", "position", "query", "query_thumb")
    inlines = [CandidateInline]

    @admin.display(description="query image")
    def query_thumb(self, obj):
        return format_html('<img src="/images/{}/thumbnail/" style="height:128px">', obj.query_id)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Assignment)
class AssignmentAdmin(BlindedAdmin):
    list_display = ("reader", "study", "seed", "created_at")
    list_filter = ("study",)
    search_fields = ("reader__username", "study__name")
    readonly_fields = ("study", "reader", "seed", "created_at")

    def has_add_permission(self, request):
        return False  # through the study page: it checks the reader role and derives the seed

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.answers.exists():
            return False
        return super().has_delete_permission(request, obj)
