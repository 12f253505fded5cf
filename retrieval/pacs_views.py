"""The PACS import page: search a configured DICOMweb endpoint, tick studies or series, import them.

With a label table, the column preview comes first (retrieval.views.import_preview / import_confirm, as for
uploaded files): nothing is asked of the PACS for the import before the coordinator confirms what each column becomes.

The search results show the PACS's patient identifiers to the coordinator on this page only (sent with
`Cache-Control: no-store`); the search is posted (no identifier in a URL, so none in an access log), the
import form posts back UIDs alone, and only those are stored.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache

from core.errors import ApplicationError
from core.roles import COORDINATOR, role_required
from retrieval.imports import dicomweb, pacs
from retrieval.imports.uploads import upload_discard, upload_name, upload_save
from retrieval.models import Dataset, LabelFormat
from retrieval.pacs_api import search_rows
from retrieval.views import import_preview


class SearchForm(forms.Form):
    endpoint = forms.ChoiceField(choices=[])
    level = forms.ChoiceField(choices=[("study", "Studies"), ("series", "Series")], initial="study", required=False)
    patient_id = forms.CharField(required=False, label="Patient ID")
    patient_name = forms.CharField(required=False, label="Patient name", help_text="wildcards: DOE^*")
    study_uid = forms.CharField(required=False, label="StudyInstanceUID")
    modality = forms.CharField(required=False, max_length=16)
    date_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].choices = [(n, n) for n in dicomweb.endpoint_names()]


class ImportForm(forms.Form):
    endpoint = forms.CharField(widget=forms.HiddenInput)
    select = forms.MultipleChoiceField(required=True, widget=forms.CheckboxSelectMultiple)
    labels = forms.FileField(
        required=False, help_text="CSV; may be keyed by a StudyInstanceUID, SeriesInstanceUID or SOPInstanceUID column"
    )
    label_format = forms.ChoiceField(choices=LabelFormat.choices, initial=LabelFormat.GENERIC, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["select"].choices = [(v, v) for v in self.data.getlist("select")] if self.data else []


@role_required(COORDINATOR)
@never_cache
def dicomweb_import(request, pk: int):
    dataset = get_object_or_404(Dataset, pk=pk)
    searching = request.method == "POST" and request.POST.get("action") == "search"
    if request.method == "POST" and not searching:
        form = ImportForm(request.POST, request.FILES)
        if form.is_valid():
            labels = upload_save(form.cleaned_data["labels"], kind="labels") if form.cleaned_data["labels"] else ""
            if labels:
                pending = {
                    "dataset": dataset.pk,
                    "archive": "",
                    "labels": upload_name(labels),
                    "label_format": form.cleaned_data["label_format"] or LabelFormat.GENERIC,
                    "allow_free_text": False,
                    "pacs": {"endpoint": form.cleaned_data["endpoint"], "selections": form.cleaned_data["select"]},
                }
                try:
                    return import_preview(request, dataset, pending)
                except ApplicationError as exc:
                    upload_discard(labels)
                    messages.error(request, exc.message)
                    return redirect("retrieval:dicomweb-import", pk=dataset.pk)
            try:
                with transaction.atomic():
                    job = pacs.dicomweb_import_create(
                        dataset=dataset,
                        endpoint=form.cleaned_data["endpoint"],
                        selections=form.cleaned_data["select"],
                        label_format=form.cleaned_data["label_format"] or LabelFormat.GENERIC,
                        created_by=request.user,
                        remove_sources=True,
                    )
            except ApplicationError as exc:
                messages.error(request, exc.message)
            else:
                return redirect(job.get_absolute_url())
        else:
            messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
    search = SearchForm(request.POST if searching else None)  # a POST: no patient identifier in a URL or a log
    rows, error = None, ""
    if search.is_bound and search.is_valid():
        try:
            rows = search_rows(search.cleaned_data)
        except ApplicationError as exc:
            error = exc.message
    return render(
        request,
        "retrieval/dicomweb_import.html",
        {
            "dataset": dataset,
            "search": search,
            "rows": rows,
            "error": error,
            "endpoint": search.cleaned_data.get("endpoint") if search.is_bound and search.is_valid() else "",
            "configured": bool(dicomweb.endpoint_names()),
            "label_formats": LabelFormat.choices,
        },
    )
