from django.contrib import admin
from django.db.models import Q
from django.utils.html import format_html

from retrieval.imports.names import path_pseudonym
from retrieval.models import Dataset, DicomwebSource, Evaluation, Image, ImportJob, Label, WeightsFetch


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "created_at", "created_by")
    search_fields = ("name",)


class LabelInline(admin.TabularInline):
    model = Label
    extra = 0


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = (
        "thumb",
        "source_name",
        "dataset",
        "source_format",
        "modality",
        "view_position",
        "patient_pseudo_id",
    )
    list_filter = ("dataset", "source_format", "modality", "view_position")
    search_fields = ("source_name", "patient_pseudo_id", "sop_instance_uid")
    readonly_fields = [f.name for f in Image._meta.fields]
    inlines = [LabelInline]

    @admin.display(description="")
    def thumb(self, obj):
        return format_html('<img src="/images/{}/thumbnail/" style="height:48px">', obj.pk)

    def get_search_results(self, request, queryset, search_term):
        """Also by an original file name or path: stored names are its pseudonym under each dataset's key."""
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term:
            keys = Dataset.objects.values_list("pk", "pseudonym_key")
            by_name = Q()
            for pk, key in keys:
                stored = path_pseudonym(key, term)
                by_name |= Q(dataset_id=pk) & (Q(source_name=stored) | Q(source_name__endswith="/" + stored))
            found |= queryset.filter(by_name) if keys else queryset.none()
        return found, may_have_duplicates


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ("pk", "dataset", "status", "n_imported", "n_skipped", "n_failed", "created_at")
    list_filter = ("status", "dataset")
    readonly_fields = [f.name for f in ImportJob._meta.fields]


@admin.register(Evaluation)
class EvaluationAdmin(admin.ModelAdmin):
    list_display = ("pk", "run", "status", "created_at", "finished_at")
    list_filter = ("status",)
    readonly_fields = [f.name for f in Evaluation._meta.fields]


@admin.register(DicomwebSource)
class DicomwebSourceAdmin(admin.ModelAdmin):
    """What a PACS import retrieved: the endpoint's name and the UIDs (no patient identifier is stored)."""

    list_display = ("job", "endpoint")
    readonly_fields = [f.name for f in DicomwebSource._meta.fields]


@admin.register(WeightsFetch)
class WeightsFetchAdmin(admin.ModelAdmin):
    list_display = ("pk", "model_name", "status", "created_at", "finished_at")
    list_filter = ("status",)
    readonly_fields = [f.name for f in WeightsFetch._meta.fields]
