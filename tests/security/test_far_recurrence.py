"""Issue 12, finding 4: in k nearest + k farthest studies, "seen in another case ⇒ farthest" must not work.

A collection with a few outliers (the same images are the farthest from every query) is the demo's shape:
before, every far candidate recurred and the rule was right for ~95 % of candidates. Now the far images are
drawn across the study from each query's far band so that far candidates recur as often as near ones, the
rule is near chance, the recurrence is shown to the coordinator (page and API), and reader image ETags
differ per assignment and per case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from readerstudy import builders, building, services
from readerstudy.models import AnswerMode, Assignment
from retrieval.models import Dataset
from tests.studies.factories import make_images, make_run


def outlier_collection(n_cluster: int = 150, n_outliers: int = 10, seed: int = 0) -> np.ndarray:
    """A tight cluster and a few images pointing the other way (far from every cluster member)."""
    rng = np.random.default_rng(seed)
    direction = np.zeros(16)
    direction[0] = 1.0
    cluster = direction + 0.35 * rng.normal(size=(n_cluster, 16))
    outliers = -direction + 0.1 * rng.normal(size=(n_outliers, 16))
    vectors = np.vstack([cluster, outliers])
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def neighbours(ids: list[int], vectors: np.ndarray):
    def fn(query_id, k, farthest=False):
        q = vectors[ids.index(query_id)]
        others = [i for i in ids if i != query_id]
        d = np.array([1 - vectors[ids.index(i)] @ q for i in others])
        order = np.argsort(d, kind="stable")
        ranks = np.empty(len(order), dtype=int)
        ranks[order] = np.arange(1, len(order) + 1)
        chosen = order[::-1][:k] if farthest else order[:k]
        return [(others[j], int(ranks[j]), float(d[j])) for j in chosen]

    return fn


def test_recurrence_tells_near_from_far_only_at_chance():
    vectors = outlier_collection(n_cluster=400)
    ids = list(range(1, len(vectors) + 1))
    queries = ids[:20]
    pool = [i for i in ids if i not in queries]
    fn = neighbours(ids, vectors)

    def restricted(query_id, k, farthest=False):
        full = fn(query_id, len(ids), farthest=farthest)
        return [e for e in full if e[0] in pool][:k]

    exact = builders.knn_and_farthest(queries, restricted, 5, seed=3)  # far band = the k farthest: the old build
    assert builders.recurrence(exact)["rule_accuracy"] > 0.8
    band = building.far_band_size(len(pool), 5)
    cases = builders.knn_and_farthest(queries, restricted, 5, seed=3, far_band=band)
    stats = builders.recurrence(cases)
    assert stats["rule_accuracy"] <= 0.6, stats
    near, far = stats["sets"]["nearest"], stats["sets"]["farthest"]
    assert abs(near["rate"] - far["rate"]) <= 0.1, stats
    for q, catalogue in cases:  # the nearest are still the true nearest; the far ones come from the far band
        assert {i for i, p in catalogue if p[0]["set"] == "nearest"} == {i for i, _, _ in restricted(q, 5)}
        far_band = {i for i, _, _ in restricted(q, band, farthest=True)}
        assert {i for i, p in catalogue if p[0]["set"] == "farthest"} <= far_band
    assert builders.knn_and_farthest(queries, restricted, 5, seed=3, far_band=band) == cases  # reproducible


@pytest.fixture
def built(db, tmp_path, settings, coordinator):
    dataset = Dataset.objects.create(name="Outliers")
    vectors = outlier_collection(n_cluster=300)
    images = make_images(dataset, ["x"] * len(vectors))
    for image in images:  # renditions on disk, for the image views
        path = Path(settings.MEDIA_ROOT) / image.rendition.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG fake " + image.rendition.name.encode())
    run = make_run(dataset, tmp_path / "run", [i.pk for i in images], vectors)
    study = services.study_create(
        name="Near and far", dataset=dataset, mode=AnswerMode.CHOOSE_K, k=5, seed=1, created_by=coordinator
    )
    return building.study_build_cases(
        study=study, builder=building.KNN_FARTHEST, config={"n_queries": 20, "run": run.pk, "k": 5}, seed=1
    )


def test_a_built_study_reports_its_recurrence_and_it_is_near_chance(client, coordinator, built):
    stats = building.study_recurrence(study=built)
    assert stats["rule_accuracy"] <= 0.6, stats
    client.force_login(coordinator)
    html = client.get(f"/studies/{built.pk}/").content.decode()
    assert "Recurrence" in html and "Seen in another case ⇒ farthest" in html
    api = client.get(f"/api/studies/{built.pk}/").json()
    assert api["catalogue_recurrence"]["sets"]["farthest"]["candidates"] == 100
    assert api["catalogue_recurrence"]["rule_accuracy"] == stats["rule_accuracy"]


def test_image_etags_differ_per_assignment_and_per_case(client, built, reader, other_reader):
    from annotations import selectors

    built.status = "open"
    built.save()
    etags = {}
    for user in (reader, other_reader):
        assignment = services.assignment_add(study=built, reader=user)
        assignment = Assignment.objects.get(pk=assignment.pk)
        order = selectors.reader_order(assignment=assignment)
        client.force_login(user)
        for index in (1, 2):
            case = selectors.reader_case(order=order, index=index)
            for c in selectors.reader_candidates(assignment=assignment, case=case):
                response = client.get(f"/read/{built.pk}/case/{index}/image/{c.key}.png")
                assert response.status_code == 200, response.status_code
                etags.setdefault((user.pk, c.image_id), []).append(response["ETag"])
    all_tags = [tag for tags in etags.values() for tag in tags]
    assert len(set(all_tags)) == len(all_tags), "one image, two places: two unrelated ETags"
    images_of_both = {i for (u, i) in etags if u == reader.pk} & {i for (u, i) in etags if u == other_reader.pk}
    assert images_of_both  # the same candidate images, seen by both readers


def test_the_wizard_review_shows_the_recurrence(client, coordinator, reader, tmp_path):
    from tests.studies.test_pages import wizard_data

    dataset = Dataset.objects.create(name="Outliers")
    vectors = outlier_collection(n_cluster=300)
    images = make_images(dataset, ["x"] * len(vectors))
    run = make_run(dataset, tmp_path / "run", [i.pk for i in images], vectors)
    client.force_login(coordinator)
    data = {**wizard_data(dataset, [reader]), "builder": "knn_farthest", "run": run.pk, "n_queries": 20}
    response = client.post("/studies/new/", {**data, "review": "1"})
    assert response.status_code == 200, response.content[:500]
    summary = response.context["summary"]
    assert summary["recurrence"]["rule_accuracy"] <= 0.6, summary["recurrence"]
    assert "Seen in another case ⇒ farthest" in response.content.decode()
