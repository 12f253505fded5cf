"""SSIM runs (papers 001/003 baseline) are evaluated offline like embedding runs, from their pairwise SSIM matrix."""

from __future__ import annotations

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image as PILImage
from scipy import stats
from skimage.metrics import structural_similarity

from core.errors import ApplicationError
from retrieval.ml.metrics import evaluate_retrieval
from retrieval.models import Image, Label, ModelRun
from retrieval.runs import ranking
from retrieval.runs.comparison import comparison_table
from retrieval.runs.evaluation import MAP_FILE, evaluate_run
from retrieval.runs.ranking import SSIM_FILE
from retrieval.runs.services import run_create
from retrieval.runs.splits import split_create, split_image_ids
from retrieval.runs.stages import run_execute
from tests.runs.conftest import make_phantom_dataset

SIZE = 48  # SSIM on 48 px renditions: every pair of ~10 test images in well under a second
KS = (1, 3, 5)


@pytest.fixture
def dataset(db, tmp_path):
    return make_phantom_dataset(tmp_path / "p", n=32, size=64)


@pytest.fixture
def split(dataset):
    return split_create(dataset=dataset, fractions=(0.5, 0.2, 0.3))


def _ssim_run(dataset, split, name="ssim", **cfg) -> ModelRun:
    run = run_create(
        dataset=dataset, name=name, method="ssim", config={"size": SIZE, **cfg}, split=split, enqueue=False
    )
    run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return run


def _brute_distances(image_ids: list[int], size: int) -> np.ndarray:
    """1 − SSIM of every ordered pair, each image read from its rendition here (not through the platform)."""
    greys = []
    for pk in image_ids:
        with Image.objects.get(pk=pk).rendition.open("rb") as fh:
            pil = PILImage.open(fh).convert("L").resize((size, size), PILImage.Resampling.BILINEAR)
        greys.append(np.asarray(pil, dtype=np.float64) / 255.0)
    n = len(greys)
    d = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            if a != b:
                d[a, b] = 1.0 - structural_similarity(greys[a], greys[b], data_range=1.0)
    return d


def _brute_metrics(d: np.ndarray, findings: list[set[str]], k: int) -> dict[str, float]:
    """P@k, AP@k over min(k, R) and binary nDCG@k, written out query by query."""
    n = len(d)
    relevant = [
        [bool(findings[q] & findings[j]) or (not findings[q] and not findings[j]) for j in range(n)] for q in range(n)
    ]
    p_at_k, ap, ndcg, p_random = [], [], [], []
    for q in range(n):
        ranked = sorted((j for j in range(n) if j != q), key=lambda j: (d[q, j], j))[:k]
        rel = [relevant[q][j] for j in ranked]
        r = sum(relevant[q][j] for j in range(n) if j != q)
        p_at_k.append(sum(rel) / k)
        hits, total = 0, 0.0
        for i, is_relevant in enumerate(rel, start=1):
            if is_relevant:
                hits += 1
                total += hits / i
        ap.append(total / min(k, r) if r else 0.0)
        dcg = sum(1 / np.log2(i + 1) for i, is_relevant in enumerate(rel, start=1) if is_relevant)
        idcg = sum(1 / np.log2(i + 1) for i in range(1, min(k, r) + 1))
        ndcg.append(dcg / idcg if idcg else 0.0)
        p_random.append(r / (n - 1))
    return {
        f"precision@{k}": np.mean(p_at_k),
        f"map@{k}": np.mean(ap),
        f"ndcg@{k}": np.mean(ndcg),
        f"precision@{k}_random": np.mean(p_random),
    }


def _findings(image_ids: list[int], names: list[str]) -> list[set[str]]:
    positive = set(
        Label.objects.filter(image_id__in=image_ids, name__in=names, value_num=1).values_list("image_id", "name")
    )
    return [{name for name in names if (pk, name) in positive} for pk in image_ids]


def test_ssim_evaluation_equals_a_brute_force_computation(dataset, split):
    run = _ssim_run(dataset, split)
    result = evaluate_run(run=run, ks=KS, graded="ctr")
    test_ids = split_image_ids(split=split, part="test")
    assert result["n_queries"] == len(test_ids) >= 8 and result["metric"] == "ssim" and result["note"] == ""
    assert "Cardiomegaly" in result["labels"] and "ctr" not in result["labels"]
    d = _brute_distances(test_ids, SIZE)
    findings = _findings(test_ids, result["labels"])
    assert 0.1 < result["precision@1_random"] < 0.9  # some pairs relevant, some not: the metrics are not trivial
    for k in KS:
        for key, value in _brute_metrics(d, findings, k).items():
            assert result[key] == pytest.approx(value, abs=1e-12), key
    ctr = np.array([Label.objects.get(image_id=pk, name="ctr").value_num for pk in test_ids])
    upper = np.triu_indices(len(test_ids), k=1)
    r = stats.pearsonr(d[upper], np.abs(ctr[:, None] - ctr[None, :])[upper]).statistic
    assert result["distance_correlation_r"] == pytest.approx(r, abs=1e-9)
    first = np.argsort(np.where(np.eye(len(d)) > 0, np.inf, d), axis=1, kind="stable")[:, :3]
    counts = np.bincount(first.ravel(), minlength=len(d))
    assert result["hubness_skew@3"] == pytest.approx(stats.skew(counts))


def test_ssim_result_has_the_keys_of_an_embedding_run(dataset, split):
    run = _ssim_run(dataset, split)
    result = evaluate_run(run=run, ks=KS, graded="ctr")
    n = result["n_queries"]
    labels = np.eye(2, dtype=int)[np.arange(n) % 2]
    embedding_keys = set(
        evaluate_retrieval(np.random.default_rng(0).normal(size=(n, 4)), labels, np.arange(n) * 1.0, ks=KS)
    )
    assert embedding_keys <= set(result)
    assert not (ranking.run_artefact_dir(run) / MAP_FILE).exists()  # no t-SNE: an SSIM run has no embeddings


def test_the_pipeline_evaluates_ssim_runs(dataset, split):
    run = _ssim_run(dataset, split)
    assert run.metrics.get("retrieval", {}).get("metric") == "ssim", run.metrics.get("retrieval_note")


def test_evaluate_retrieval_command_and_comparison_include_ssim_runs(dataset, split, client, researcher):
    run = _ssim_run(dataset, split)
    expected = evaluate_run(run=run, ks=(1, 3), draw_map=False)
    out = StringIO()
    call_command("evaluate_retrieval", str(run.pk), "--k", "1", "3", "--json", "--sync", stdout=out)
    assert json.loads(out.getvalue()) == expected
    run.refresh_from_db()
    assert run.metrics["retrieval"] == expected
    text = StringIO()
    call_command("evaluate_retrieval", "ssim", "--k", "1", "3", "--sync", stdout=text)
    assert "metric ssim" in text.getvalue() and "precision@3" in text.getvalue()

    table = comparison_table(dataset=dataset, ks=(1, 3))
    row = {r["name"]: r for r in table["rows"]}["ssim"]
    assert row["method"] == "ssim" and row["n_queries"] == expected["n_queries"]
    assert row["cells"]["precision@3"] == {
        "value": expected["precision@3"],
        "random": expected["precision@3_random"],
        "p": expected["precision@3_p"],
    }
    assert table["skipped"] == []
    compared = StringIO()
    call_command("compare_methods", dataset.name, "--k", "1", "3", stdout=compared)
    assert "ssim" in compared.getvalue() and "skipped" not in compared.getvalue()
    client.force_login(researcher)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "Retrieval on the test part" in page


def test_eval_max_samples_deterministically_and_says_so(dataset, split):
    run = _ssim_run(dataset, split, eval_max=5, seed=7)
    test_ids = split_image_ids(split=split, part="test")
    first = evaluate_run(run=run, ks=(1, 3))
    (ranking.run_artefact_dir(run) / SSIM_FILE).unlink()  # recompute from the images, not from the stored matrix
    again = evaluate_run(run=run, ks=(1, 3))
    assert first == again
    assert first["n_queries"] == 5 and first["n_part_images"] == len(test_ids) > 5
    assert f"5 of the {len(test_ids)} test images" in first["note"] and "seed 7" in first["note"]
    chosen = [test_ids[i] for i in np.sort(np.random.default_rng(7).choice(len(test_ids), 5, replace=False))]
    with np.load(ranking.run_artefact_dir(run) / SSIM_FILE) as stored:
        assert stored["ids"].tolist() == chosen
    expected = _brute_metrics(_brute_distances(chosen, SIZE), _findings(chosen, first["labels"]), 3)
    assert first["precision@3"] == pytest.approx(expected["precision@3"], abs=1e-12)
    other = _ssim_run(dataset, split, name="other seed", eval_max=5, seed=8)
    evaluate_run(run=other, ks=(1,))
    with np.load(ranking.run_artefact_dir(other) / SSIM_FILE) as stored:
        assert stored["ids"].tolist() != chosen


@pytest.mark.parametrize("eval_max", [2, "300", True])
def test_eval_max_must_be_an_integer_of_at_least_3(dataset, split, eval_max):
    run = _ssim_run(dataset, split, eval_max=eval_max)
    with pytest.raises(ApplicationError, match="eval_max"):
        evaluate_run(run=run)


def test_the_matrix_is_reused_for_the_same_images_and_size(dataset, split, monkeypatch):
    run = _ssim_run(dataset, split)
    (ranking.run_artefact_dir(run) / SSIM_FILE).unlink()  # stored by the pipeline's evaluation: compute afresh
    calls = []
    result = evaluate_run(run=run, ks=(1,), progress=lambda done, total: calls.append((done, total)))
    n = result["n_queries"]
    assert calls[-1] == (n * (n - 1) // 2,) * 2 and [c[0] for c in calls] == sorted(c[0] for c in calls)

    def refuse(a, b):
        raise AssertionError("recomputed an SSIM pair")

    monkeypatch.setattr("retrieval.runs.ranking.ssim_distance", refuse)
    assert evaluate_run(run=run, ks=(1,)) == result
    run.config = {**run.config, "size": SIZE + 8}
    with pytest.raises(AssertionError, match="recomputed"):
        evaluate_run(run=run, ks=(1,))
