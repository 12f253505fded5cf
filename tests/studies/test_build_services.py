"""Building cases through the service: model runs, splits and labels from the database."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from core.errors import ApplicationError
from readerstudy import building, services
from readerstudy.models import AnswerMode, Candidate, Case, Study
from retrieval.models import Dataset, Label
from tests.importing import stored_name
from tests.studies.factories import make_images, make_run, make_split

pytestmark = pytest.mark.django_db


def new_study(dataset, name="S", mode=AnswerMode.CHOOSE_K, k=5, **kw):
    return services.study_create(
        name=name, dataset=dataset, mode=mode, k=k if mode == AnswerMode.CHOOSE_K else None, **kw
    )


def catalogue(case: Case) -> list[Candidate]:
    return list(case.candidates.order_by("position"))


def brute_force(vectors, image_ids, query_id):
    """id → cosine distance to the query, computed from the raw (unnormalised) vectors."""
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    q = v[image_ids.index(query_id)]
    return {i: float(1 - v[n] @ q) for n, i in enumerate(image_ids) if i != query_id}


def test_knn_farthest_under_a_run_stores_the_true_neighbours_with_provenance(dataset, images, vectors, run):
    study = new_study(dataset)
    building.study_build_cases(
        study=study,
        builder=building.KNN_FARTHEST,
        config={"n_queries": 5, "run": run.pk, "k": 5, "exclude_queries": False},
        seed=1,
    )
    ids = [i.pk for i in images]
    assert study.cases.count() == 5
    for case in study.cases.all():
        d = brute_force(vectors, ids, case.query_id)
        order = sorted(d, key=d.get)
        cands = catalogue(case)
        assert [c.position for c in cands] == list(range(10))
        assert {c.image_id for c in cands if c.provenance[0]["set"] == "nearest"} == set(order[:5])
        # the far ones come from the query's far band (issue 12, finding 4: recurrence must not tell the sets apart)
        band = building.far_band_size(len(ids), 5)
        far = {c.image_id for c in cands if c.provenance[0]["set"] == "farthest"}
        assert len(far) == 5 and far <= set(order[-band:])
        for c in cands:
            (p,) = c.provenance
            assert (p["method"], p["run"], p["rank"]) == ("timm", run.pk, order.index(c.image_id) + 1)
            assert p["distance"] == pytest.approx(d[c.image_id], abs=1e-5)
    study.refresh_from_db()
    assert study.builder == "knn_farthest" and study.seed == 1
    assert study.builder_config["run"] == run.pk and study.builder_config["k"] == 5


def test_rebuilding_with_the_same_seed_gives_the_same_cases(dataset, images, run):
    def build(seed):
        study = building.study_build_cases(
            study=Study.objects.get(name="S"),
            builder=building.KNN_FARTHEST,
            config={"n_queries": 4, "run": run.pk},
            seed=seed,
        )
        return [(c.query_id, [x.image_id for x in catalogue(c)]) for c in study.cases.order_by("position")]

    new_study(dataset)
    first = build(5)
    assert build(5) == first
    assert build(6) != first
    assert Case.objects.count() == 4  # rebuilding replaces, never adds


def test_queries_default_to_the_test_part_and_never_appear_as_candidates(dataset, images, run):
    parts = {img.pk: ("test" if n % 4 == 0 else "train") for n, img in enumerate(images)}
    split = make_split(dataset, parts)
    study = new_study(dataset)
    building.study_build_cases(
        study=study, builder=building.TOP_N, config={"n_queries": 6, "run": run.pk, "n": 8, "split": split.pk}, seed=3
    )
    queries = set(study.cases.values_list("query_id", flat=True))
    assert len(queries) == 6 and all(parts[q] == "test" for q in queries)
    candidates = set(Candidate.objects.filter(case__study=study).values_list("image_id", flat=True))
    assert not candidates & queries


def test_pool_part_restricts_the_candidates(dataset, images, run):
    parts = {img.pk: ("test" if n % 4 == 0 else "train") for n, img in enumerate(images)}
    split = make_split(dataset, parts)
    study = new_study(dataset)
    building.study_build_cases(
        study=study,
        builder=building.KNN_FARTHEST,
        config={"n_queries": 3, "run": run.pk, "split": split.pk, "pool_part": "train"},
        seed=3,
    )
    assert {parts[i] for i in Candidate.objects.filter(case__study=study).values_list("image_id", flat=True)} == {
        "train"
    }


def test_stratified_random_uses_the_label_classes(dataset, images):
    study = new_study(dataset, mode=AnswerMode.RANK_ALL)
    building.study_build_cases(
        study=study,
        builder=building.STRATIFIED_RANDOM,
        config={"n_queries": 5, "n": 10, "class_label": "finding", "query_label": "finding"},
        seed=2,
    )
    cls = dict(Label.objects.values_list("image_id", "value_text"))
    assert Counter(cls[q] for q in study.cases.values_list("query_id", flat=True)) == {
        "normal": 2,
        "effusion": 2,
        "nodule": 1,
    }
    for case in study.cases.all():
        assert Counter(cls[c.image_id] for c in catalogue(case)) == {"normal": 5, "effusion": 3, "nodule": 2}
        assert all(c.provenance[0]["stratum"] == cls[c.image_id] for c in catalogue(case))


def test_pooled_records_each_run_that_proposed_an_image(dataset, images, vectors, run, tmp_path):
    ids = [i.pk for i in images]
    # The second run: the first's vectors with noise, so their top 4 overlap without being equal.
    noisy = vectors + np.random.default_rng(1).normal(scale=0.6, size=vectors.shape).astype(np.float32)
    other = make_run(dataset, tmp_path / "run-cnn", ids, noisy, name="cnn", method="finetune")
    study = new_study(dataset, mode=AnswerMode.RANK_ALL)
    building.study_build_cases(
        study=study,
        builder=building.POOLED,
        config={"n_queries": 6, "runs": [run.pk, other.pk], "per_method": 4, "exclude_queries": False},
        seed=1,
    )
    shared = 0
    for case in study.cases.all():
        top = {}
        for r, vec in ((run, vectors), (other, noisy)):
            d = brute_force(vec, ids, case.query_id)
            top[r.pk] = set(sorted(d, key=d.get)[:4])
        cands = catalogue(case)
        assert {c.image_id for c in cands} == top[run.pk] | top[other.pk]
        assert len(cands) == len({c.image_id for c in cands})
        for c in cands:
            assert {p["run"] for p in c.provenance} == {r for r in top if c.image_id in top[r]}
            assert {p["method"] for p in c.provenance} <= {"timm", "finetune"}
        shared += len(top[run.pk] & top[other.pk])
    assert shared > 0, "the test should cover images proposed by both runs"


def test_a_run_of_another_dataset_is_refused(dataset, images, run):
    elsewhere = Dataset.objects.create(name="Other")
    make_images(elsewhere, ["x"] * 12)
    study = new_study(elsewhere)
    with pytest.raises(ApplicationError, match="does not exist in dataset 'Other'"):
        building.study_build_cases(
            study=study, builder=building.KNN_FARTHEST, config={"n_queries": 2, "run": run.pk}, seed=0
        )


def test_a_run_without_embeddings_is_refused_with_the_ranking_message(dataset, images, run, tmp_path):
    run.artefact_dir = str(tmp_path / "nothing-here")
    run.status = "running"
    run.save()
    with pytest.raises(ApplicationError, match="has no embeddings yet"):
        building.study_build_cases(
            study=new_study(dataset), builder=building.TOP_N, config={"n_queries": 2, "run": run.pk}, seed=0
        )


def test_an_ssim_run_builds_catalogues_from_its_own_ranking(tmp_path):
    """SSIM (papers 001/003) has no embeddings: it compares each query with every pool image."""
    from PIL import Image as PILImage
    from skimage.metrics import structural_similarity

    from retrieval.models import Image, ModelRun
    from tests.runs.conftest import make_phantom_dataset

    def grey(image_id):  # independently of the ranker: skimage on the rendition, greyscale, bilinear 32 px
        with Image.objects.get(pk=image_id).rendition.open("rb") as fh:
            return np.asarray(PILImage.open(fh).convert("L").resize((32, 32), PILImage.BILINEAR), dtype=float)

    dataset = make_phantom_dataset(tmp_path / "p", n=16, size=64)
    run = ModelRun.objects.create(
        dataset=dataset, name="ssim", method="ssim", status="succeeded", config={"metric": "ssim", "size": 32}
    )
    study = new_study(dataset, k=2)
    building.study_build_cases(
        study=study,
        builder=building.KNN_FARTHEST,
        config={"n_queries": 3, "run": run.pk, "k": 2, "exclude_queries": False},
        seed=4,
    )
    everything = sorted(dataset.images.values_list("pk", flat=True))
    assert study.cases.count() == 3
    for case in study.cases.all():
        others = [i for i in everything if i != case.query_id]
        q = grey(case.query_id)
        d = {i: 1 - structural_similarity(q, grey(i), data_range=255) for i in others}
        order = sorted(others, key=lambda i: (d[i], others.index(i)))
        cands = catalogue(case)
        assert {c.image_id for c in cands if c.provenance[0]["set"] == "nearest"} == set(order[:2])
        far = {c.image_id for c in cands if c.provenance[0]["set"] == "farthest"}
        assert len(far) == 2 and far <= set(order[-building.far_band_size(len(everything), 2) :])
        for c in cands:
            (p,) = c.provenance
            assert (p["method"], p["run"], p["rank"]) == ("ssim", run.pk, order.index(c.image_id) + 1)
            assert p["distance"] == pytest.approx(d[c.image_id], abs=1e-9)


def test_an_ssim_build_beyond_its_pair_budget_is_refused_before_any_work(dataset, images, run, monkeypatch):
    run.method = "ssim"
    run.save()
    monkeypatch.setattr(building, "SSIM_BUILD_MAX_PAIRS", 20)
    study = new_study(dataset)
    with pytest.raises(ApplicationError, match=r"SSIM compares image pairs directly: 3 queries × \d+ pool images"):
        building.study_build_cases(study=study, builder=building.TOP_N, config={"n_queries": 3, "run": run.pk}, seed=0)
    assert not study.cases.exists()


def test_only_embedded_images_become_queries_or_candidates(dataset, images, vectors, tmp_path):
    half = images[:20]
    run = make_run(dataset, tmp_path / "half", [i.pk for i in half], vectors[:20])
    study = new_study(dataset)
    building.study_build_cases(
        study=study, builder=building.KNN_FARTHEST, config={"n_queries": 10, "run": run.pk}, seed=0
    )
    used = set(study.cases.values_list("query_id", flat=True)) | set(
        Candidate.objects.filter(case__study=study).values_list("image_id", flat=True)
    )
    assert used <= {i.pk for i in half}


@pytest.mark.parametrize(
    "config,message",
    [
        ({"n": 10, "class_label": "finding"}, "needs 'n_queries'"),
        ({"n_queries": 2, "n": 10}, "needs 'class_label'"),
        ({"n_queries": 2, "n": 10, "class_label": "nope"}, "no image of dataset 'Chest' has a label named 'nope'"),
        ({"n_queries": 2, "n": 10, "class_label": "finding", "run": 3}, "Unknown option(s) for stratified_random: run"),
        ({"n_queries": "two", "n": 10, "class_label": "finding"}, "n_queries must be a whole number"),
        ({"n_queries": 2, "n": 10, "class_label": "finding", "split": 999}, "Split 999 does not exist"),
        ({"n_queries": 2, "n": 10, "class_label": "finding", "pool_part": "train"}, "needs a split"),
        ({"n_queries": 50, "n": 10, "class_label": "finding"}, "only 40 images"),
        ({"n_queries": 2, "n": 5, "class_label": "finding"}, "Choose 5 needs catalogues of more than 5"),
    ],
)
def test_bad_configurations_are_refused_and_nothing_is_written(dataset, images, config, message):
    study = new_study(dataset)
    with pytest.raises(ApplicationError) as exc:
        building.study_build_cases(study=study, builder=building.STRATIFIED_RANDOM, config=config, seed=0)
    assert message.lower() in exc.value.message.lower()
    assert not Case.objects.exists()


def test_a_failed_rebuild_keeps_the_old_cases(study):
    before = list(Candidate.objects.filter(case__study=study).values_list("pk", flat=True))
    with pytest.raises(ApplicationError):
        building.study_build_cases(
            study=study,
            builder=building.STRATIFIED_RANDOM,
            config={"n_queries": 2, "n": 10, "class_label": "nope"},
            seed=1,
        )
    assert list(Candidate.objects.filter(case__study=study).values_list("pk", flat=True)) == before


def test_unknown_builder_is_refused(dataset):
    with pytest.raises(ApplicationError, match="Unknown builder 'magic'"):
        building.study_build_cases(study=new_study(dataset), builder="magic", config={}, seed=0)


# --- case lists ------------------------------------------------------------------------------


def test_case_list_resolves_ids_source_names_and_base_names(dataset, images):
    a, b, c, d = images[:4]
    data = (
        f"query,candidate\n{a.pk},{b.source_name}\n{a.pk},003.png\n{b.source_name},{a.pk}\n{b.source_name},{c.pk}\n"
    ).encode()
    study = new_study(dataset, mode=AnswerMode.RANK_ALL)
    building.study_load_case_list(study=study, data=data, file_name="cases.csv")
    cases = list(study.cases.order_by("position"))
    assert [x.query_id for x in cases] == [a.pk, b.pk]
    assert {x.image_id for x in catalogue(cases[0])} == {b.pk, d.pk}
    study.refresh_from_db()
    assert study.builder == "case_list" and study.builder_config["file_name"] == stored_name(dataset, "cases.csv")


def test_case_list_may_name_the_original_files_of_pseudonymised_images(dataset, images):
    """Issue 12: imported files are stored under pseudonyms; a case list written from the coordinator's own
    folder names the originals, and they resolve through the dataset's key (path and base name)."""
    a, b, c = images[:3]
    a.source_name = stored_name(dataset, "Doe^Jane_MRN-1/chest.png")
    b.source_name = stored_name(dataset, "Doe^Jane_MRN-1/lateral.png")
    a.save(), b.save()
    data = f"query,candidate\nDoe^Jane_MRN-1/chest.png,lateral.png\nDoe^Jane_MRN-1/chest.png,{c.pk}\n".encode()
    study = new_study(dataset, mode=AnswerMode.RANK_ALL)
    building.study_load_case_list(study=study, data=data, file_name="Doe^Jane cases.csv")
    (case,) = study.cases.all()
    assert case.query_id == a.pk and {x.image_id for x in catalogue(case)} == {b.pk, c.pk}
    study.refresh_from_db()
    assert "Doe" not in study.builder_config["file_name"]


def test_case_list_errors_are_listed_per_line_and_nothing_is_written(dataset, images):
    data = (
        f"query,candidate\n{images[0].pk},{images[1].pk}\n{images[0].pk},missing.png\nx.png,{images[2].pk}\n".encode()
    )
    with pytest.raises(ApplicationError) as exc:
        building.study_load_case_list(study=new_study(dataset, mode=AnswerMode.RATE), data=data)
    assert exc.value.extra["errors"] == [
        "line 3: no image 'missing.png' in the dataset",
        "line 4: no image 'x.png' in the dataset",
    ]
    assert not Case.objects.exists()


def test_case_list_cannot_name_images_of_another_dataset(dataset, images):
    other = Dataset.objects.create(name="Other")
    foreign = make_images(other, ["x", "y"])
    data = f"query,candidate\n{images[0].pk},{foreign[0].pk}\n".encode()
    with pytest.raises(ApplicationError, match=f"no image '{foreign[0].pk}'"):
        building.study_load_case_list(study=new_study(dataset, mode=AnswerMode.RATE), data=data)
