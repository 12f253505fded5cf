"""On the demo collection, every trained method of the papers beats random retrieval on the test split,
is compared in one table, and builds a reader study (issues 3 and 4, "Done when").

One slow test on purpose: the demo phantoms (`readerstudy.demo`, the same generator and seed as
`make demo`, fewer images) are imported once and every method of `demo_methods_train` trains once,
small (random initialisation, 64 px, a few epochs on two CPU cores). `make demo --methods` runs the
same at full size; its table is in the README.
"""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from readerstudy import building
from readerstudy import services as study_services
from readerstudy.demo import PHANTOM_DATASET, demo_collections_import, demo_methods_train
from readerstudy.models import AnswerMode
from retrieval.models import Dataset
from retrieval.runs.splits import split_create

pytestmark = [pytest.mark.ml, pytest.mark.django_db]


def test_every_trained_method_beats_random_retrieval_on_the_demo_collection(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    demo_collections_import(n_phantoms=120, seed=7)
    dataset = Dataset.objects.get(name=PHANTOM_DATASET)
    # 50/20/30: about 36 test queries, so that "beats random" is a significance test with some power.
    split = split_create(dataset=dataset, name="eval", seed=1, fractions=(0.5, 0.2, 0.3))
    runs = demo_methods_train(dataset=dataset, split=split, epochs=8, resize=72, crop=64, overlays=False)
    assert sorted(r.method for r in runs) == ["attention", "densenet_cnn", "ensemble", "finetune", "finetune", "igcbir"]

    out = StringIO()
    call_command("compare_methods", dataset.name, "--split", "eval", "--k", "5", "10", "--json", stdout=out)
    table = {row["run"]: row for row in json.loads(out.getvalue())["rows"]}
    for run in runs:
        cell = table[run.pk]["cells"]["precision@5"]
        assert cell["value"] > cell["random"] and cell["p"] < 0.05, (run.name, cell)

    # Each run builds the paper-000 catalogues (5 nearest + 5 farthest) of a reader study.
    for run in runs:
        study = study_services.study_create(name=run.name, dataset=dataset, mode=AnswerMode.CHOOSE_K, k=5)
        building.study_build_cases(
            study=study,
            builder=building.KNN_FARTHEST,
            config={"n_queries": 4, "run": run.pk, "k": 5, "split": split.pk},
            seed=3,
        )
        assert study.cases.count() == 4
        for case in study.cases.all():
            provenance = [c.provenance[0] for c in case.candidates.all()]
            assert sorted(p["set"] for p in provenance) == ["farthest"] * 5 + ["nearest"] * 5, run.name
            assert {p["run"] for p in provenance} == {run.pk}
