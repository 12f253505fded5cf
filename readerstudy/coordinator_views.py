"""Coordinator pages: study list, wizard, dashboard, edit, readers, questions, lifecycle.

Coordinators manage; researchers read (list and dashboard); readers and users without a role
get 403, anonymous users the login page. Every write is a POST with CSRF and calls a service;
a refused request shows the service's message.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from core.errors import ApplicationError
from core.roles import COORDINATOR, RESEARCHER, role_required
from readerstudy import building, selectors, services, wizard
from readerstudy.forms import (
    AssignmentAddForm,
    CaseListForm,
    CloneForm,
    QuestionForm,
    QuestionFormSet,
    StudyEditForm,
    StudyWizardForm,
)
from readerstudy.models import Study, StudyQuestion

CASES_PER_PAGE = 10


@role_required(COORDINATOR, RESEARCHER)
def study_list(request):
    return render(request, "studies/study_list.html", {"studies": selectors.study_list()})


@role_required(COORDINATOR)
def study_create(request):
    form = StudyWizardForm(request.POST or None, request.FILES or None)
    questions = QuestionFormSet(request.POST or None, prefix="q")
    summary = None
    # `&`, not `and`: validate both so that every error shows at once.
    if request.method == "POST" and form.is_valid() & questions.is_valid():
        dry_run = "review" in request.POST
        try:
            result = _setup(request, form, questions, dry_run=dry_run)
        except ApplicationError as exc:
            form.add_error(None, exc.message)
            for line in exc.extra.get("errors", [])[:50]:
                form.add_error(None, line)
        else:
            if not dry_run:
                messages.success(
                    request,
                    f"Study {result.name} created with {result.cases.count()} cases. Open it when you are ready.",
                )
                return redirect(result.get_absolute_url())
            summary = result
    return render(
        request,
        "studies/study_wizard.html",
        {
            "form": form,
            "questions": questions,
            "summary": summary,
            "labels_by_dataset": {str(k): v for k, v in selectors.dataset_label_names().items()},
        },
    )


def _setup(request, form: StudyWizardForm, questions, *, dry_run: bool):
    upload = form.cleaned_data.get("case_list")
    return wizard.study_setup(
        design=form.design(),
        builder=form.cleaned_data["builder"],
        config=form.builder_config(),
        seed=form.cleaned_data["seed"],
        readers=list(form.cleaned_data["readers"]),
        questions=[q for q in (f.question() for f in questions.forms) if q],
        case_list=upload.read() if upload else None,
        case_list_name=upload.name if upload else "",
        created_by=request.user,
        dry_run=dry_run,
    )


@role_required(COORDINATOR, RESEARCHER)
def study_detail(request, pk: int):
    study = get_object_or_404(Study.objects.select_related("dataset", "ground_truth_reader", "created_by"), pk=pk)
    selectors.study_blinding_check(user=request.user, study=study)
    page = Paginator(selectors.study_cases(study=study), CASES_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "studies/study_detail.html",
        {
            "study": study,
            "progress": selectors.study_progress(study=study),
            "locked": services.study_has_answers(study=study),
            "page": page,
            "questions": study.questions.all(),
            "add_reader_form": AssignmentAddForm(study=study),
            "question_form": QuestionForm(),
            "clone_form": CloneForm(initial={"name": f"{study.name} (copy)"}),
            "case_list_form": CaseListForm(),
            "saliency_run": selectors.study_saliency_run(study=study) if study.show_saliency else None,
            "recurrence": building.study_recurrence(study=study),
            "flags": selectors.study_flags(study=study),
        },
    )


@role_required(COORDINATOR, RESEARCHER)
def study_case(request, pk: int, number: int):
    """One case, read-only, as the coordinator sees it: query, catalogue with provenance, readers' flags."""
    study = get_object_or_404(Study, pk=pk)
    selectors.study_blinding_check(user=request.user, study=study)
    case = get_object_or_404(selectors.study_cases(study=study), position=number - 1)
    return render(
        request,
        "studies/study_case.html",
        {
            "study": study,
            "case": case,
            "flags": selectors.study_flags(study=study, case=case),
            "n_cases": study.cases.count(),
        },
    )


@role_required(COORDINATOR)
def study_edit(request, pk: int):
    study = get_object_or_404(Study, pk=pk)
    selectors.study_blinding_check(user=request.user, study=study)
    locked = services.study_has_answers(study=study)
    initial = {f: getattr(study, f) for f in (*services.ALWAYS_EDITABLE, *services.LOCKED_ONCE_ANSWERED)}
    form = StudyEditForm(request.POST or None, study=study, locked=locked, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.study_update(study=study, **form.cleaned_data)
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, "Study saved.")
            return redirect(study.get_absolute_url())
    return render(request, "studies/study_edit.html", {"study": study, "form": form, "locked": locked})


def _run(request, action, success: str):
    """Run a service call and queue its outcome as a message; the result, or None when refused."""
    try:
        result = action()
    except ApplicationError as exc:
        messages.error(request, exc.message)
        for line in exc.extra.get("errors", [])[:20]:
            messages.error(request, line)
        return None
    messages.success(request, success)
    return result


@role_required(COORDINATOR)
@require_POST
def study_open(request, pk: int):
    study = get_object_or_404(Study, pk=pk)
    selectors.study_blinding_check(user=request.user, study=study)
    _run(request, lambda: services.study_open(study=study), "The study is open: its readers can start.")
    return redirect(study.get_absolute_url())


@role_required(COORDINATOR)
@require_POST
def study_close(request, pk: int):
    study = get_object_or_404(Study, pk=pk)
    selectors.study_blinding_check(user=request.user, study=study)
    _run(request, lambda: services.study_close(study=study), "The study is closed: readers can no longer answer.")
    return redirect(study.get_absolute_url())


@role_required(COORDINATOR)
@require_POST
def study_clone(request, pk: int):
    study = get_object_or_404(Study, pk=pk)
    selectors.study_blinding_check(user=request.user, study=study)
    form = CloneForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The copy needs a name.")
        return redirect(study.get_absolute_url())
    copy = _run(
        request,
        lambda: services.study_clone(study=study, name=form.cleaned_data["name"], created_by=request.user),
        f"Cloned {study.name}: the copy has the same design, questions and cases, and no readers yet.",
    )
    return redirect((copy or study).get_absolute_url())


@role_required(COORDINATOR)
@require_POST
def reader_add(request, pk: int):
    study = get_object_or_404(Study, pk=pk)
    selectors.study_blinding_check(user=request.user, study=study)
    form = AssignmentAddForm(request.POST, study=study)
    if not form.is_valid():
        messages.error(request, "Choose a reader who is not assigned yet.")
        return redirect(study.get_absolute_url())
    reader = form.cleaned_data["reader"]
    _run(
        request,
        lambda: services.assignment_add(study=study, reader=reader),
        f"{reader.get_username()} is now a reader of this study.",
    )
    return redirect(study.get_absolute_url())


@role_required(COORDINATOR)
@require_POST
def reader_remove(request, pk: int, user_id: int):
    study = get_object_or_404(Study, pk=pk)
    selectors.study_blinding_check(user=request.user, study=study)
    assignment = get_object_or_404(study.assignments.select_related("reader"), reader_id=user_id)
    reader = assignment.reader
    _run(
        request,
        lambda: services.assignment_remove(study=study, reader=reader),
        f"{reader.get_username()} was removed from this study.",
    )
    return redirect(study.get_absolute_url())


@role_required(COORDINATOR)
@require_POST
def question_add(request, pk: int):
    study = get_object_or_404(Study, pk=pk)
    selectors.study_blinding_check(user=request.user, study=study)
    form = QuestionForm(request.POST)
    if not form.is_valid() or form.question() is None:
        messages.error(request, "A question needs a text and at least two comma-separated choices.")
        return redirect(study.get_absolute_url())
    _run(request, lambda: services.question_add(study=study, **form.question()), "Question added.")
    return redirect(study.get_absolute_url())


@role_required(COORDINATOR)
@require_POST
def question_remove(request, pk: int, question_id: int):
    study = get_object_or_404(Study, pk=pk)
    selectors.study_blinding_check(user=request.user, study=study)
    question = get_object_or_404(StudyQuestion, pk=question_id, study=study)
    _run(request, lambda: services.question_remove(study=study, question=question), "Question removed.")
    return redirect(study.get_absolute_url())


@role_required(COORDINATOR)
@require_POST
def case_list_upload(request, pk: int):
    study = get_object_or_404(Study, pk=pk)
    selectors.study_blinding_check(user=request.user, study=study)
    form = CaseListForm(request.POST, request.FILES)
    if not form.is_valid():
        for errors in form.errors.values():
            for e in errors:
                messages.error(request, e)
        return redirect(study.get_absolute_url())
    upload = form.cleaned_data["case_list"]
    _run(
        request,
        lambda: building.study_load_case_list(
            study=study, data=upload.read(), seed=form.cleaned_data["seed"], file_name=upload.name
        ),
        "The case list replaced the study's cases.",
    )
    return redirect(study.get_absolute_url())
