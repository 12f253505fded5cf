"""Admin views of reader answers: read-only (answers change only through the reading services)."""

from django.contrib import admin

from annotations.models import Answer, AnswerItem, AnswerRevision, CaseFlag, CaseVisit, ImageAnswer
from readerstudy.selectors import study_reader_blinded


class ReadOnlyAdmin(admin.ModelAdmin):
    """Coordinators inspect answers here; nobody edits them by hand. One of a study's readers (a coordinator who
    reads it) is refused (403) the pages of its answers, revisions, visits and flags until the study is closed:
    they show the other readers' choices and timings."""

    study_of = staticmethod(lambda obj: obj.assignment.study)

    def has_view_permission(self, request, obj=None) -> bool:
        blinded = obj is not None and study_reader_blinded(user=request.user, study=self.study_of(obj))
        return not blinded and super().has_view_permission(request, obj)

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
    study_of = staticmethod(lambda obj: obj.answer.assignment.study)
    list_display = ["id", "answer", "revision", "submitted_at", "replaced_at"]


@admin.register(CaseVisit)
class CaseVisitAdmin(ReadOnlyAdmin):
    list_display = ["id", "assignment", "case", "opened_at", "last_seen_at", "active_ms"]
    list_filter = ["assignment__study"]


@admin.register(CaseFlag)
class CaseFlagAdmin(ReadOnlyAdmin):
    list_display = ["id", "assignment", "case", "comment", "updated_at"]
    list_filter = ["assignment__study"]
