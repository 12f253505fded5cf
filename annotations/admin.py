"""Admin views of reader answers: read-only (answers change only through the reading services)."""

from django.contrib import admin

from annotations.models import Answer, AnswerItem, AnswerRevision, CaseFlag, CaseVisit, ImageAnswer
from readerstudy.admin import BlindedAdmin


class ReadOnlyAdmin(BlindedAdmin):
    """Coordinators inspect answers here (not those of a study they read themselves); nobody edits them by hand."""

    study_path = "assignment__study"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class AnswerItemInline(admin.TabularInline):
    model = AnswerItem
    fields = ["candidate", "shown_position", "selected", "rank", "rating"]
    readonly_fields = fields
    extra = 0
    can_delete = False


class ImageAnswerInline(admin.TabularInline):
    model = ImageAnswer
    fields = ["question", "image", "value"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Answer)
class AnswerAdmin(ReadOnlyAdmin):
    list_display = ["id", "assignment", "case", "revision", "submitted_at", "active_ms"]
    list_filter = ["assignment__study"]
    inlines = [AnswerItemInline, ImageAnswerInline]


@admin.register(AnswerRevision)
class AnswerRevisionAdmin(ReadOnlyAdmin):
    study_path = "answer__assignment__study"
    list_display = ["id", "answer", "revision", "submitted_at", "replaced_at"]


@admin.register(CaseVisit)
class CaseVisitAdmin(ReadOnlyAdmin):
    list_display = ["id", "assignment", "case", "opened_at", "last_seen_at", "active_ms"]
    list_filter = ["assignment__study"]


@admin.register(CaseFlag)
class CaseFlagAdmin(ReadOnlyAdmin):
    list_display = ["id", "assignment", "case", "comment", "updated_at"]
    list_filter = ["assignment__study"]
