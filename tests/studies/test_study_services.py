"""Study services: design rules, what locks once answers exist, clone, readers and their seeds, lifecycle."""

from __future__ import annotations

import pytest

from annotations.models import Answer
from core.errors import ApplicationError, Conflict
from readerstudy import building, selectors, services, wizard
from readerstudy.models import AnswerMode, Assignment, Candidate, Case, Study, StudyQuestion, StudyStatus
from tests.studies.factories import answer

pytestmark = pytest.mark.django_db

BUILD = {"n_queries": 4, "n": 10, "class_label": "finding"}


# --- design ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"name": " "}, "needs a name"),
        ({"mode": "vote"}, "Unknown answer mode 'vote'"),
        ({"k": None}, "Choose k needs k"),
        ({"k": 0}, "Choose k needs k"),
        ({"mode": AnswerMode.RATE, "rating_min": 5, "rating_max": 5}, "rating range"),
        ({"seed": -3}, "seed must be a whole number"),
    ],
)
def test_create_refuses_bad_designs(dataset, kwargs, message):
    args = {"name": "S", "dataset": dataset, "mode": AnswerMode.CHOOSE_K, "k": 5, **kwargs}
    with pytest.raises(ApplicationError, match=message):
        services.study_create(**args)
    assert not Study.objects.exists()


def test_names_are_unique(study, dataset):
    with pytest.raises(ApplicationError, match="already exists"):
        services.study_create(name=study.name, dataset=dataset, mode=AnswerMode.RANK_ALL)


def test_k_is_dropped_outside_choose_k_and_a_seed_is_drawn(dataset):
    study = services.study_create(name="S", dataset=dataset, mode=AnswerMode.RANK_ALL, k=3)
    assert study.k is None and 0 <= study.seed < 2**31


def test_ground_truth_reader_must_be_a_reader(dataset, researcher):
    with pytest.raises(ApplicationError, match="must have the reader role"):
        services.study_create(name="S", dataset=dataset, mode=AnswerMode.RANK_ALL, ground_truth_reader=researcher)


def test_update_checks_k_against_the_catalogues(study):
    with pytest.raises(ApplicationError, match="Choose 10 needs catalogues of more than 10"):
        services.study_update(study=study, k=10)
    services.study_update(study=study, k=9)
    services.study_update(study=study, mode=AnswerMode.RATE)
    study.refresh_from_db()
    assert study.mode == AnswerMode.RATE and study.k is None


def test_ground_truth_reader_must_be_assigned(assigned, reader, django_user_model):
    from core.roles import READER, user_set_roles

    outsider = django_user_model.objects.create_user("r3", password="x")
    user_set_roles(user=outsider, roles=[READER])
    with pytest.raises(ApplicationError, match="must be one of the study's readers"):
        services.study_update(study=assigned, ground_truth_reader=outsider)
    services.study_update(study=assigned, ground_truth_reader=reader)
    assert Study.objects.get().ground_truth_reader == reader


# --- locks once answers exist ----------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"mode": AnswerMode.RANK_ALL},
        {"k": 4},
        {"rating_max": 7},
        {"show_candidate_labels": True},
        {"show_saliency": True},
    ],
)
def test_design_changes_are_refused_once_answered(assigned, reader, change):
    answer(assigned, reader)
    with pytest.raises(Conflict, match="already has answers") as exc:
        services.study_update(study=assigned, **change)
    assert "Clone the study" in exc.value.message
    assert Study.objects.get().mode == AnswerMode.CHOOSE_K and Study.objects.get().k == 5


def test_name_instructions_revisions_and_ground_truth_stay_editable(assigned, reader):
    answer(assigned, reader)
    services.study_update(
        study=assigned,
        name="Renamed",
        instructions="Pick 5.",
        allow_revisions=True,
        ground_truth_reader=reader,
        mode=AnswerMode.CHOOSE_K,
        k=5,
    )  # unchanged values pass
    study = Study.objects.get()
    assert (study.name, study.instructions, study.allow_revisions, study.ground_truth_reader) == (
        "Renamed",
        "Pick 5.",
        True,
        reader,
    )


def test_rebuilding_or_replacing_cases_is_refused_once_answered(assigned, reader):
    answer(assigned, reader)
    cases = list(Case.objects.values_list("pk", "query_id"))
    with pytest.raises(Conflict, match="rebuilding the cases would invalidate them"):
        building.study_build_cases(study=assigned, builder=building.STRATIFIED_RANDOM, config=BUILD, seed=9)
    with pytest.raises(Conflict, match="replacing the cases"):
        building.study_load_case_list(study=assigned, data=b"query,candidate\n1,2\n")
    assert list(Case.objects.values_list("pk", "query_id")) == cases


def test_questions_are_locked_once_answered(assigned, reader):
    question = services.question_add(study=assigned, text="Pleural effusion?", choices=["yes", "no"])
    answer(assigned, reader)
    with pytest.raises(Conflict, match="adding a question"):
        services.question_add(study=assigned, text="Nodule?", choices=["yes", "no"])
    with pytest.raises(Conflict, match="removing a question"):
        services.question_remove(study=assigned, question=question)
    assert StudyQuestion.objects.count() == 1


def test_everything_is_editable_before_the_first_answer(assigned):
    building.study_build_cases(study=assigned, builder=building.STRATIFIED_RANDOM, config=BUILD, seed=9)
    services.study_update(study=assigned, mode=AnswerMode.RANK_ALL)
    assert Study.objects.get().seed == 9 and Case.objects.count() == 4


# --- questions -------------------------------------------------------------------------------


def test_question_keys_are_unique_slugs(study):
    a = services.question_add(study=study, text="Pleural effusion?", choices=["yes", "no", "unsure"])
    b = services.question_add(study=study, text="Pleural effusion?", choices=["yes", "no"], applies_to="query")
    assert (a.key, b.key, a.position, b.position) == ("pleural-effusion", "pleural-effusion-2", 1, 2)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"text": "", "choices": ["y", "n"]}, "needs a text"),
        ({"text": "Q?", "choices": ["only"]}, "between 2 and 12"),
        ({"text": "Q?", "choices": ["Yes", "yes"]}, "same choice twice"),
        ({"text": "Q?", "choices": ["y", "n"], "applies_to": "everyone"}, "applies_to must be one of"),
    ],
)
def test_bad_questions_are_refused(study, kwargs, message):
    with pytest.raises(ApplicationError, match=message):
        services.question_add(study=study, **kwargs)


# --- readers ---------------------------------------------------------------------------------


def test_assignment_seeds_are_distinct_and_reproducible(study, reader, other_reader):
    a = services.assignment_add(study=study, reader=reader)
    b = services.assignment_add(study=study, reader=other_reader)
    assert a.seed != b.seed
    assert a.seed == services.assignment_seed(study_seed=study.seed, reader_id=reader.pk)
    services.assignment_remove(study=study, reader=reader)
    assert services.assignment_add(study=study, reader=reader).seed == a.seed
    case_ids = list(study.cases.values_list("pk", flat=True))
    assert a.case_order(case_ids) != b.case_order(case_ids)


def test_an_explicit_seed_is_kept(study, reader):
    assert services.assignment_add(study=study, reader=reader, seed=123).seed == 123


@pytest.mark.parametrize("persona", ["coordinator", "researcher", "nobody"])
def test_only_readers_can_be_assigned(study, persona, request):
    with pytest.raises(ApplicationError, match="does not have the reader role"):
        services.assignment_add(study=study, reader=request.getfixturevalue(persona))
    assert not Assignment.objects.exists()


def test_a_reader_is_assigned_once(assigned, reader):
    with pytest.raises(Conflict, match="already a reader"):
        services.assignment_add(study=assigned, reader=reader)


def test_a_reader_with_answers_cannot_be_removed(assigned, reader, other_reader):
    answer(assigned, reader)
    with pytest.raises(Conflict, match="has already answered"):
        services.assignment_remove(study=assigned, reader=reader)
    services.assignment_remove(study=assigned, reader=other_reader)
    assert list(Assignment.objects.values_list("reader__username", flat=True)) == ["reader"]


def test_removing_the_ground_truth_reader_clears_it(assigned, other_reader):
    services.study_update(study=assigned, ground_truth_reader=other_reader)
    services.assignment_remove(study=assigned, reader=other_reader)
    assert Study.objects.get().ground_truth_reader is None


# --- lifecycle -------------------------------------------------------------------------------


def test_open_needs_cases_and_readers(dataset, images, reader):
    study = services.study_create(name="S", dataset=dataset, mode=AnswerMode.RANK_ALL)
    with pytest.raises(ApplicationError, match="no cases yet"):
        services.study_open(study=study)
    building.study_build_cases(study=study, builder=building.STRATIFIED_RANDOM, config=BUILD, seed=1)
    with pytest.raises(ApplicationError, match="no readers yet"):
        services.study_open(study=study)
    services.assignment_add(study=study, reader=reader)
    assert services.study_open(study=study).status == StudyStatus.OPEN


def test_open_close_reopen(assigned):
    opened = services.study_open(study=assigned)
    with pytest.raises(Conflict, match="already open"):
        services.study_open(study=assigned)
    closed = services.study_close(study=assigned)
    assert closed.status == StudyStatus.CLOSED and closed.closed_at
    with pytest.raises(Conflict, match="Only an open study can be closed"):
        services.study_close(study=assigned)
    again = services.study_open(study=assigned)
    assert again.status == StudyStatus.OPEN and again.opened_at == opened.opened_at and again.closed_at is None


# --- clone -----------------------------------------------------------------------------------


@pytest.mark.db_engine(
    "bulk_create hands back the new cases' primary keys (RETURNING), which the cloned candidates "
    "refer to; provenance is copied through the engine's JSON column"
)
def test_clone_copies_design_questions_cases_and_provenance_not_readers_or_answers(assigned, reader, coordinator):
    services.question_add(study=assigned, text="Effusion?", choices=["yes", "no"])
    services.study_update(study=assigned, ground_truth_reader=reader, instructions="Pick 5")
    services.study_open(study=assigned)
    answer(assigned, reader)
    copy = services.study_clone(study=assigned, name="Copy", created_by=coordinator)
    assert (copy.mode, copy.k, copy.seed, copy.instructions, copy.builder, copy.dataset_id) == (
        assigned.mode,
        assigned.k,
        assigned.seed,
        "Pick 5",
        assigned.builder,
        assigned.dataset_id,
    )
    assert copy.status == StudyStatus.DRAFT and copy.ground_truth_reader is None
    assert copy.builder_config == {**assigned.builder_config, "cloned_from": assigned.pk}
    assert list(copy.questions.values_list("key", "text", "choices")) == list(
        assigned.questions.values_list("key", "text", "choices")
    )

    def snapshot(study):
        return [
            (
                c.position,
                c.query_id,
                [(x.position, x.image_id, x.provenance) for x in c.candidates.order_by("position")],
            )
            for c in study.cases.order_by("position")
        ]

    assert snapshot(copy) == snapshot(assigned)
    assert not copy.assignments.exists()
    assert Answer.objects.filter(case__study=copy).count() == 0 and Answer.objects.count() == 1
    assert not services.study_has_answers(study=copy)
    building.study_build_cases(study=copy, builder=building.STRATIFIED_RANDOM, config=BUILD, seed=3)  # not locked
    assert Candidate.objects.filter(case__study=assigned).count() == 40


def test_clone_needs_a_new_name(study):
    with pytest.raises(ApplicationError, match="already exists"):
        services.study_clone(study=study, name=study.name)
    assert Study.objects.count() == 1


# --- the wizard's all-in-one setup ---------------------------------------------------------


def setup_args(dataset, readers, **overrides):
    args = {
        "design": {"name": "Wizard", "dataset": dataset, "mode": AnswerMode.CHOOSE_K, "k": 5},
        "builder": building.STRATIFIED_RANDOM,
        "config": BUILD,
        "seed": 77,
        "readers": readers,
        "questions": [{"text": "Effusion?", "choices": ["yes", "no"]}],
    }
    return {**args, **overrides}


def test_setup_creates_everything(dataset, images, reader, other_reader, coordinator):
    study = wizard.study_setup(**setup_args(dataset, [reader, other_reader]), created_by=coordinator)
    assert (study.cases.count(), study.assignments.count(), study.questions.count(), study.seed) == (4, 2, 1, 77)


def test_setup_dry_run_writes_nothing_and_summarises(dataset, images, reader):
    summary = wizard.study_setup(**setup_args(dataset, [reader]), dry_run=True)
    assert not Study.objects.exists() and not Case.objects.exists()
    assert (summary["n_cases"], summary["catalogue_min"], summary["catalogue_max"], summary["readers"]) == (
        4,
        10,
        10,
        ["reader"],
    )
    assert len(summary["example_candidates"]) == 10


def test_setup_is_all_or_nothing(dataset, images, reader):
    with pytest.raises(ApplicationError, match="(?i)no image of dataset 'Chest' has a label named 'nope'"):
        wizard.study_setup(**setup_args(dataset, [reader], config={**BUILD, "class_label": "nope"}))
    assert not Study.objects.exists() and not StudyQuestion.objects.exists()


def test_setup_assigns_the_ground_truth_reader(dataset, images, reader, other_reader):
    args = setup_args(dataset, [reader])
    args["design"]["ground_truth_reader"] = other_reader
    study = wizard.study_setup(**args)
    assert set(study.assignments.values_list("reader__username", flat=True)) == {"reader", "other_reader"}


# --- progress --------------------------------------------------------------------------------


def test_progress_counts_answers_times_and_flags(assigned, reader, other_reader):
    from annotations.models import CaseFlag

    cases = list(assigned.cases.order_by("position"))
    for case, ms in zip(cases[:3], (1000, 4000, 9000)):
        a = answer(assigned, reader, case)
        Answer.objects.filter(pk=a.pk).update(active_ms=ms)
    CaseFlag.objects.create(assignment=assigned.assignments.get(reader=reader), case=cases[0], comment="label?")
    study = services.study_update(study=assigned, ground_truth_reader=other_reader)
    rows = {r["reader"]: r for r in selectors.study_progress(study=study)}
    assert (rows["reader"]["done"], rows["reader"]["total"], rows["reader"]["percent"]) == (3, 4, 75)
    assert rows["reader"]["median_seconds"] == 4.0 and rows["reader"]["flags"] == 1
    assert rows["reader"]["last_answer_at"] is not None and not rows["reader"]["is_ground_truth"]
    assert (rows["other_reader"]["done"], rows["other_reader"]["median_seconds"], rows["other_reader"]["flags"]) == (
        0,
        None,
        0,
    )
    assert rows["other_reader"]["is_ground_truth"]
