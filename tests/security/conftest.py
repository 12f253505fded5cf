"""One world of real objects for the permission matrix and the API fuzz, made once per module.

Six personas (anonymous and five users) and one of everything a route can name: an imported dataset
(PNG files, a label table, its import job), a finished run with embeddings and a training history, a
split, an upload search, an open study with cases, candidates, a question and two readers — a plain
reader, who has answered, visited and flagged their second case, and a coordinator who is also one of
its readers (blinded while assigned) — a report run and a weights download that failed.
The rows are committed for the module (tests/runs/conftest.py: module_data) and deleted after it; each
test's own writes roll back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.utils import timezone

from annotations.models import Answer, CaseFlag, CaseVisit
from annotations.selectors import reader_order
from core.roles import COORDINATOR, READER, RESEARCHER, user_set_roles
from readerstudy.models import Assignment, Case, Study
from reports.models import ReportRun
from retrieval.models import SearchRequest, WeightsFetch
from tests.factories import png_bytes, write_files
from tests.importing import run_import
from tests.reading.factories import study_make
from tests.runs.conftest import module_data, module_data_delete, use_shared_folders
from tests.studies.factories import make_run, make_split

# persona → roles; `reader` and `coord_reader` are assigned to the world's study, `outsider` is not.
PERSONAS: dict[str, tuple[str, ...] | None] = {
    "anonymous": None,
    "reader": (READER,),
    "outsider": (READER,),
    "coordinator": (COORDINATOR,),
    "researcher": (RESEARCHER,),
    "coord_reader": (COORDINATOR, READER),
}
PASSWORD = "pw-security-world"
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class World:
    users: dict = field(default_factory=dict)
    objects: dict = field(default_factory=dict)

    def __getitem__(self, name):
        return self.objects[name]


def _make_world(tmp) -> World:
    world = World()
    for name, roles in PERSONAS.items():
        if roles is not None:
            user = get_user_model().objects.create_user(username=f"sec-{name}", password=PASSWORD)
            user_set_roles(user=user, roles=roles)
            world.users[name] = user
    job = run_import(
        source=write_files(tmp / "source", {f"img{i}.png": png_bytes(i) for i in range(6)}),
        labels=write_files(
            tmp / "labels",
            {"t.csv": b"file,finding\n" + b"".join(f"img{i}.png,{'ab'[i % 2]}\n".encode() for i in range(6))},
        )
        / "t.csv",
        name="security-world",
    )
    assert job.status == "succeeded", job.report
    dataset = job.dataset
    images = list(dataset.images.order_by("pk"))
    ids = [i.pk for i in images]
    run = make_run(dataset, tmp / "run", ids, np.random.default_rng(1).normal(size=(len(ids), 8)))
    run.history = [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}]
    run.save(update_fields=["history"])
    split = make_split(dataset, {pk: "train" if n < 4 else "test" for n, pk in enumerate(ids)})
    search = SearchRequest.objects.create(run=run, upload_path="", k=3, status="succeeded", results=[])
    study = study_make(
        readers=[world.users["reader"], world.users["coord_reader"]],
        questions=[{"key": "effusion", "text": "Effusion?", "choices": ["yes", "no"], "applies_to": "query"}],
        n_cases=2,
        n_candidates=3,
        created_by=world.users["coordinator"],
    )
    # The reader has answered, visited and flagged their second case (their first is still to read).
    assignment = Assignment.objects.get(study=study, reader=world.users["reader"])
    answered = Case.objects.get(pk=reader_order(assignment=assignment).case_id(2))
    now = timezone.now()
    answer = Answer.objects.create(assignment=assignment, case=answered, submitted_at=now, active_ms=1000)
    CaseVisit.objects.create(assignment=assignment, case=answered, opened_at=now, last_seen_at=now, active_ms=1000)
    CaseFlag.objects.create(assignment=assignment, case=answered, comment="blurred")
    weights = WeightsFetch.objects.create(model_name="resnet18", status="failed", error="offline")
    report_run = ReportRun.objects.create(study=study, options={}, key="k", fingerprint="f", status="succeeded")
    world.objects.update(
        dataset=dataset,
        image=images[0],
        import_job=job,
        run=run,
        split=split,
        search=search,
        study=study,
        case=study.cases.order_by("position").first(),
        question=study.questions.get(),
        report_run=report_run,
        answer=answer,
        weights_fetch=weights,
    )
    return world


def world_delete(django_db_blocker, world: World) -> None:
    with django_db_blocker.unblock():
        Study.objects.filter(pk=world["study"].pk).delete()
        WeightsFetch.objects.filter(pk=world["weights_fetch"].pk).delete()
        module_data_delete(django_db_blocker)
        get_user_model().objects.filter(pk__in=[u.pk for u in world.users.values()]).delete()


@pytest.fixture(scope="module")
def _world(django_db_setup, django_db_blocker, tmp_path_factory):
    root = tmp_path_factory.mktemp("security-world")
    with module_data(django_db_blocker, root), override_settings(PASSWORD_HASHERS=FAST_HASHERS):
        world = _make_world(root / "files")
    yield root, world
    world_delete(django_db_blocker, world)


@pytest.fixture
def world(_world, db, settings) -> World:
    """The module's world (its media folder is this test's), for `db` tests."""
    root, world = _world
    use_shared_folders(settings, root)
    settings.PASSWORD_HASHERS = FAST_HASHERS  # the world's passwords (HTTP Basic in the fuzz) are checked with it
    assert Assignment.objects.filter(study=world["study"]).count() == 2, "the module's world is gone"
    return world
