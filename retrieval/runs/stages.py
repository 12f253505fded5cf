"""The body of a model run on the worker: train → embed → index → evaluate (imports torch).

Each stage records its duration in `run.timings`; a stage already recorded is not redone, so
a run whose worker died resumes where it stopped (training itself resumes from the last epoch
checkpoint). Embedding only embeds images without an embedding yet, which also makes
"add newly imported images" an ordinary re-run. More than EMBED_SHARD_SIZE images are embedded in shards,
each its own task on every gpu worker (`embed_shard_execute`, core.fanout); the last shard queues the run
again, which merges the shards' embeddings and goes on to the index.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from django.conf import settings
from django.db.models import Max, Min
from PIL import Image as PILImage

from core.errors import ApplicationError
from core.fanout import part_progress, part_run, parts_fan_out, parts_state, parts_wait
from core.jobs import PARTS_CLAIMANT, JobStatus, job_progress, job_run
from retrieval.ml.backbones import WeightsUnavailableError
from retrieval.ml.embed import ImagePathDataset, embed_images
from retrieval.ml.index import VectorIndex
from retrieval.ml.ratings import evaluate_embeddings, evaluate_rating_metric, mean_ratings
from retrieval.ml.saliency import normalise_saliency, overlay_png, resolve_saliency_method, saliency
from retrieval.ml.transforms import dataset_mean_std
from retrieval.models import EmbedShard, ModelRun, RunStage, SplitPart
from retrieval.runs import artefacts, ranking
from retrieval.runs.data import image_paths, images_missing_from, run_set
from retrieval.runs.evaluation import evaluate_run
from retrieval.runs.index import INDEX_DIR, fetch_index, publish_index
from retrieval.runs.methods import method_get, normalised_features
from retrieval.runs.networks import (
    build_model,
    build_transform_for,
    classifier_saliency_input,
    igcbir_classifier,
    igcbir_saliency_model,
    image_dataset,
    loader_workers,
    run_device,
    saliency_input_dir,
)
from retrieval.runs.ratings import rating_characteristics, rating_sets
from retrieval.runs.splits import split_image_ids
from retrieval.runs.training import train

log = logging.getLogger(__name__)


def run_execute(*, run_id: int) -> ModelRun | None:
    """Claim a run and carry out its remaining stages (core runner: any failure is recorded with its message)."""
    return job_run(ModelRun, run_id, _run_body, expected=_expected_errors())


def _run_body(run: ModelRun) -> None:
    run = ModelRun.objects.select_related("dataset", "split").get(pk=run.pk)
    folder = ranking.run_artefact_dir(run)
    folder.mkdir(parents=True, exist_ok=True)
    if run.artefact_dir != str(folder):
        run.artefact_dir = str(folder)
        ModelRun.objects.filter(pk=run.pk).update(artefact_dir=run.artefact_dir)
    try:
        _stages(run)
        if run.claimed_by == PARTS_CLAIMANT:  # its images are embedded in shards: the last one queues the run again
            return
    except RuntimeError as exc:
        if "DataLoader worker" in str(exc):  # torch's words for a loader process that died (e.g. /dev/shm full)
            raise ApplicationError(
                f"A DataLoader worker process died ({exc}). Give the worker more shared memory (docker: "
                f"shm_size), or set the run's DataLoader workers to 0, and resume the run."
            ) from exc
        raise
    run_set(run, stage=RunStage.DONE)


def _expected_errors() -> tuple[type[Exception], ...]:
    return (WeightsUnavailableError, FileNotFoundError)


def _stages(run: ModelRun) -> None:
    method = method_get(run.method)
    if run.config.get("normalisation") == "dataset" and "mean" not in run.config:
        _dataset_statistics(run)
    if run.method == "igcbir" and "saliency_inputs" not in run.timings:
        _timed(run, "saliency_inputs", RunStage.TRAINING, _saliency_inputs)
    elif run.method == "igcbir" and "train" not in run.timings and artefacts.shared():
        _saliency_inputs(run)  # training resumed on another machine: the inputs it lacks (they stay local)
    if method.trains and "train" not in run.timings:
        _timed(run, "train", RunStage.TRAINING, train)
    if method.trains and run.config.get("saliency") and "saliency" not in run.timings:
        _timed(run, "saliency", RunStage.EVALUATING, _saliency)
    if method.embeds:
        _timed(run, "embed", RunStage.EMBEDDING, _embed)
        if run.claimed_by == PARTS_CLAIMANT:  # waiting for its shards (core.fanout)
            return
        _timed(run, "index", RunStage.INDEXING, _index)
    if run.split_id and (method.embeds or run.method == "ssim"):
        _timed(run, "evaluate", RunStage.EVALUATING, _evaluate)


def _timed(run: ModelRun, name: str, stage: str, body) -> None:
    run_set(run, stage=stage)
    start = time.perf_counter()
    body(run)
    if run.claimed_by == PARTS_CLAIMANT:
        return  # its shards run on other workers: the continuation records the stage
    run.timings = {**run.timings, name: round(time.perf_counter() - start, 3)}
    run_set(run, timings=run.timings)


# --- model and data --------------------------------------------------------------------------


DATASET_STATISTICS_MAX = 2000


def _dataset_statistics(run: ModelRun) -> None:
    """`normalisation: dataset`: per-channel mean and std of the split's train images (all images without a
    split; a seeded sample of at most DATASET_STATISTICS_MAX), after grey → RGB and the run's resize,
    recorded in the run's config (mean, std, normalisation_images) before anything is trained or embedded."""
    ids = (
        split_image_ids(split=run.split, part=SplitPart.TRAIN)
        if run.split_id
        else list(run.dataset.images.order_by("pk").values_list("pk", flat=True))
    )
    if not ids:
        raise ApplicationError("normalisation 'dataset' needs images in the split's train part.")
    if len(ids) > DATASET_STATISTICS_MAX:
        ids = sorted(
            np.random.default_rng(int(run.config.get("seed", 0)))
            .choice(ids, DATASET_STATISTICS_MAX, replace=False)
            .tolist()
        )

    def images():
        for path in image_paths(ids):
            with PILImage.open(path) as pil:
                yield pil

    job_progress(run, done=0, total=len(ids), note="dataset mean/std")
    mean, std = dataset_mean_std(images(), size=int(run.config["resize"]))
    run.config = {
        **run.config,
        "mean": [round(v, 6) for v in mean],
        "std": [round(v, 6) for v in std],
        "normalisation_images": len(ids),
    }
    run_set(run, config=run.config)


# --- stages ----------------------------------------------------------------------------------


#: Where a run's shards write their embeddings (core.fanout), under its artefact folder, until they are merged.
SHARD_DIR = "embed-shards"
TODO_FILE = f"{SHARD_DIR}/todo.npy"  # the image ids the shards embed, in order


def _embed(run: ModelRun) -> None:
    """Embed the images without an embedding: here, or in shards of EMBED_SHARD_SIZE images, each its own task on
    the run's queue (every gpu worker; core.fanout). The shards' embeddings join the run's when the last is in.
    With a shared storage the shards' files travel through it (retrieval.runs.artefacts): a shard may run on
    another machine than the run."""
    folder = ranking.run_artefact_dir(run)
    state = parts_state(run, EmbedShard)
    if state == "waiting":  # taken over while its shards run: it waits again
        parts_wait(run, EmbedShard)
        return
    if state != "none":  # all in (the last shard queued the run again), or some failed (a resumed run)
        _shards_merge(run)
    try:
        old_ids, old = ranking.run_vectors(run=run)
    except ApplicationError:
        old_ids, old = np.zeros(0, dtype=np.int64), None
    todo = images_missing_from(run=run, embedded_ids=old_ids.tolist())
    if not todo:
        return
    if len(todo) > settings.EMBED_SHARD_SIZE:
        shards = folder / SHARD_DIR
        shutil.rmtree(shards, ignore_errors=True)
        shards.mkdir(parents=True)
        _atomic_npy(folder / TODO_FILE, np.asarray(todo, dtype=np.int64))
        artefacts.publish(run, TODO_FILE)
        n = math.ceil(len(todo) / settings.EMBED_SHARD_SIZE)
        parts_fan_out(run, EmbedShard, n, total=len(todo), note=f"embedding {len(todo)} images in {n} shards")
        return
    model = build_model(run)
    job_progress(run, done=0, total=len(todo), note=f"embedding {len(todo)} images")
    if run.method == "igcbir":
        _saliency_inputs(run, only=todo)
    dataset = image_dataset(run, model, todo)
    vectors = embed_images(
        model,
        dataset,
        batch_size=run.config["batch_size"],
        device=run_device(),
        num_workers=loader_workers(run),
        normalise=normalised_features(run.config),
        progress=lambda done, total: job_progress(run, done=done, total=total, note=f"embedded {done}/{total}"),
    )
    ids = np.concatenate([old_ids, np.asarray(todo, dtype=np.int64)])
    allv = vectors if old is None else np.concatenate([old, vectors])
    _atomic_npy(folder / ranking.EMBEDDINGS_FILE, allv.astype(np.float32))
    _atomic_npy(folder / ranking.IDS_FILE, ids)
    artefacts.publish(run, ranking.EMBEDDINGS_FILE, ranking.IDS_FILE)
    run_set(run, n_embedded=len(ids), device=str(run_device()))


def embed_shard_execute(*, part_id: int) -> EmbedShard | None:
    """The body of a shard's task (`retrieval.tasks.embed_shard`): embed its images into its own files."""
    return part_run(EmbedShard, part_id, _embed_shard, expected=_expected_errors())


def _shard_files(index: int) -> tuple[str, str]:
    """Shard `index`'s vectors and ids, relative to the run's artefacts."""
    return f"{SHARD_DIR}/shard-{index:05d}.vectors.npy", f"{SHARD_DIR}/shard-{index:05d}.ids.npy"


def _embed_shard(shard: EmbedShard) -> None:
    """Shard i of n embeds the i-th of n near-equal slices of the images the run planned (todo.npy), and writes
    them atomically to files named by i: a shard redone after its worker was lost overwrites, never adds."""
    run = ModelRun.objects.select_related("dataset", "split").get(pk=shard.parent_id)
    folder = ranking.run_artefact_dir(run)
    count = EmbedShard.objects.filter(parent=run).count()
    todo = artefacts.fetch_stored(run, TODO_FILE)
    if todo is None:
        raise ApplicationError(f"The list of images of run {run.name!r}'s shards is gone: resume the run.")
    ids = np.array_split(np.load(todo), count)[shard.index].tolist()
    model = build_model(run)
    part_progress(shard, done=0, total=len(ids), note=f"shard {shard.index + 1}/{count}: {len(ids)} images")
    if run.method == "igcbir":
        _saliency_inputs(run, only=ids)
    vectors = embed_images(
        model,
        image_dataset(run, model, ids),
        batch_size=run.config["batch_size"],
        device=run_device(),
        num_workers=loader_workers(run),
        normalise=normalised_features(run.config),
        progress=lambda done, total: part_progress(
            shard, done=done, total=total, note=f"shard {shard.index + 1}/{count}: embedded {done}/{total}"
        ),
    )
    vectors_rel, ids_rel = _shard_files(shard.index)
    (folder / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    _atomic_npy(folder / vectors_rel, vectors.astype(np.float32))
    _atomic_npy(folder / ids_rel, np.asarray(ids, dtype=np.int64))
    artefacts.publish(run, vectors_rel, ids_rel)


def _shards_merge(run: ModelRun) -> None:
    """The embeddings of the run's succeeded shards join its own (images already embedded are not added twice:
    a merge redone after a crash adds nothing); the shards' files are removed."""
    folder = ranking.run_artefact_dir(run)
    shards = folder / SHARD_DIR
    try:
        ids, vectors = ranking.run_vectors(run=run)
    except ApplicationError:
        ids, vectors = np.zeros(0, dtype=np.int64), None
    new_ids, new_vectors = [], []
    done = EmbedShard.objects.filter(parent=run, status=JobStatus.SUCCEEDED).order_by("index")
    stored = [TODO_FILE]
    for index in done.values_list("index", flat=True):
        rels = _shard_files(index)
        stored += rels
        vectors_path, ids_path = (artefacts.fetch_stored(run, rel) for rel in rels)
        if vectors_path is None or ids_path is None:
            continue  # merged before
        shard_ids, shard_vectors = np.load(ids_path), np.load(vectors_path)
        keep = ~np.isin(shard_ids, np.concatenate([ids, *new_ids]))
        new_ids.append(shard_ids[keep])
        new_vectors.append(shard_vectors[keep])
    if new_ids and sum(len(i) for i in new_ids):
        all_ids = np.concatenate([ids, *new_ids]).astype(np.int64)
        parts = ([] if vectors is None else [vectors]) + new_vectors
        _atomic_npy(folder / ranking.EMBEDDINGS_FILE, np.concatenate(parts).astype(np.float32))
        _atomic_npy(folder / ranking.IDS_FILE, all_ids)
        artefacts.publish(run, ranking.EMBEDDINGS_FILE, ranking.IDS_FILE)
        run_set(run, n_embedded=len(all_ids), device=str(run_device()))
    spans = EmbedShard.objects.filter(parent=run, status=JobStatus.SUCCEEDED).aggregate(
        start=Min("started_at"), end=Max("finished_at")
    )
    if spans["start"] and spans["end"]:  # the embed stage's own timing is the merge's: the shards ran elsewhere
        run.timings = {**run.timings, "embed_shards": round((spans["end"] - spans["start"]).total_seconds(), 3)}
        run_set(run, timings=run.timings)
    artefacts.remove(run, *stored)
    shutil.rmtree(shards, ignore_errors=True)


def _atomic_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def _index(run: ModelRun) -> None:
    ids, vectors = ranking.run_vectors(run=run)
    folder = fetch_index(run)
    if folder is not None:
        index = VectorIndex.load(folder)
        new = ~np.isin(ids, index.ids)
        if not new.any():
            return
        index.add(vectors[new], ids[new])
    else:
        index = VectorIndex.build(vectors, ids, kind=run.config.get("index", "auto"), metric=run.config["metric"])
    index.save(ranking.run_artefact_dir(run) / INDEX_DIR)
    publish_index(run)
    run.metrics = {**run.metrics, "index": index.metadata()}
    run_set(run, metrics=run.metrics)


def _saliency_inputs(run: ModelRun, only: list[int] | None = None) -> None:
    """Papers 001/003: the classifier's saliency of every image, / max |value|, in 3 channels, stored
    (in batches of the run's batch size: LRP through a DenseNet is a forward and a backward pass)."""
    folder = saliency_input_dir(run)
    folder.mkdir(parents=True, exist_ok=True)
    ids = only if only is not None else list(run.dataset.images.order_by("pk").values_list("pk", flat=True))
    ids = [i for i in ids if not (folder / f"{i}.npy").exists()]
    if not ids:
        return
    model, transform, method = igcbir_saliency_model(run)
    size = int(run.config.get("batch_size", 16))
    paths = image_paths(ids)
    for start in range(0, len(ids), size):
        images = []
        for path in paths[start : start + size]:
            with PILImage.open(path) as pil:
                pil.load()
                images.append(pil.copy())
        maps = classifier_saliency_input(model, transform, method, images)
        for image_id, one in zip(ids[start : start + size], maps):
            np.save(folder / f"{image_id}.npy", one)
        done = min(start + size, len(ids))
        job_progress(run, done=done, total=len(ids), note=f"classifier saliency ({method}) {done}/{len(ids)}")


def _saliency(run: ModelRun) -> None:
    """Saliency overlays of the test images, for the UI: the run's own network (Grad-CAM by default;
    Deep Taylor for CNNs, Grad-CAM where LRP does not apply), or for IG-CBIR the classifier's saliency
    map that is the second network's input (the stored saliency input), over the classifier's view."""
    ids = split_image_ids(split=run.split, part=SplitPart.TEST)[: int(run.config.get("saliency_max", 200))]
    folder = ranking.run_artefact_dir(run) / ranking.SALIENCY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    job_progress(run, done=0, total=len(ids), note="saliency maps")
    if run.method == "igcbir":
        return _igcbir_overlays(run, ids)
    model = build_model(run).eval()
    transform = build_transform_for(run, model)
    method, reason = resolve_saliency_method(model, run.config["saliency"])
    run.metrics = {
        **run.metrics,
        "saliency": {
            "requested": run.config["saliency"],
            "used": method,
            "reason": reason,
            "shows": f"{method} of this run's network",
        },
    }
    run_set(run, metrics=run.metrics)

    size = int(run.config.get("batch_size", 16))
    paths = image_paths(ids)
    for start in range(0, len(ids), size):  # batched: each map depends on its own image only (eval mode)
        greys, tensors = [], []
        for path in paths[start : start + size]:
            with PILImage.open(path) as pil:
                greys.append(_network_view(pil.convert("L"), run.config["resize"], run.config["crop"]))
                tensors.append(transform(pil))
        with torch.enable_grad():
            maps = normalise_saliency(saliency(model, torch.stack(tensors), method)).detach().cpu().numpy()
        for image_id, grey, sal in zip(ids[start : start + size], greys, maps):
            artefacts.write(run, ranking.saliency_name(image_id), overlay_png(grey, sal))
        done = min(start + size, len(ids))
        job_progress(run, done=done, total=len(ids), note=f"saliency {done}/{len(ids)}")


def _igcbir_overlays(run: ModelRun, ids: list[int]) -> None:
    """IG-CBIR: each overlay is the stored input of the second network (the classifier's normalised
    saliency, channel 0) over the image as the classifier sees it; computed first where missing."""
    _saliency_inputs(run, only=ids)
    classifier = igcbir_classifier(run)
    method = run.config.get("input_saliency_used", run.config["input_saliency"])
    run.metrics = {
        **run.metrics,
        "saliency": {
            "requested": "classifier",
            "used": method,
            "reason": "",
            "shows": f"{method} of classifier run {classifier.pk} (the input of the second network)",
        },
    }
    run_set(run, metrics=run.metrics)
    for n, (image_id, path) in enumerate(zip(ids, image_paths(ids)), 1):
        with PILImage.open(path) as pil:
            grey = _network_view(pil.convert("L"), classifier.config["resize"], classifier.config["crop"])
        sal = np.load(saliency_input_dir(run) / f"{image_id}.npy")[0].astype(np.float32)
        artefacts.write(run, ranking.saliency_name(image_id), overlay_png(grey, sal))
        job_progress(run, done=n, total=len(ids), note=f"saliency {n}/{len(ids)}")


def _network_view(pil, resize: int, crop: int) -> np.ndarray:
    """The image as the network sees it (resized to resize × resize, centre-cropped, as build_transform does),
    so that the saliency overlay lines up with the pixels it was computed on."""
    pil = pil.resize((max(crop, resize), max(crop, resize)), resample=3)  # bicubic, like timm's default
    left, top = (pil.size[0] - crop) // 2, (pil.size[1] - crop) // 2
    return np.asarray(pil.crop((left, top, left + crop, top + crop)))


def _evaluate(run: ModelRun) -> None:
    """Evaluate on the test part; a part too small to evaluate is noted, not a failed run."""
    try:
        run.metrics = {**run.metrics, "retrieval": evaluate_run(run=run), "retrieval_note": ""}
    except ApplicationError as exc:
        run.metrics = {**run.metrics, "retrieval_note": f"Not evaluated: {exc.message}"}
    if method_get(run.method).embeds:
        ratings = _rating_evaluation(run)
        if ratings:
            run.metrics = {**run.metrics, "ratings": ratings}
    run_set(run, metrics=run.metrics)


RATING_EVAL_MAX = 2000


def _rating_evaluation(run: ModelRun) -> dict | None:
    """Paper 004's evaluation on the test part when its images have reader ratings: Pearson r between
    embedding L2 distances and rating set distances, hubness; for rating-metric runs also the RMSE of
    the predicted mean ratings beside the RMSE of predicting the train part's mean (the baseline)."""
    try:
        names = run.config.get("characteristics") or rating_characteristics(run.dataset)
    except ApplicationError:
        return None  # no ratings in this dataset
    ids, vectors = ranking.run_vectors(run=run)
    position = {int(i): n for n, i in enumerate(ids)}
    test_ids, test_sets = rating_sets(
        [i for i in split_image_ids(split=run.split, part=SplitPart.TEST) if i in position], names
    )
    if len(test_ids) < 3:
        return None
    note = ""
    if len(test_ids) > RATING_EVAL_MAX:  # set distances of every pair: O(n²) in items and readers²
        keep = np.sort(
            np.random.default_rng(int(run.config.get("seed", 0))).choice(len(test_ids), RATING_EVAL_MAX, replace=False)
        )
        note = f"a random sample of {RATING_EVAL_MAX} of the {len(test_ids)} rated test images"
        test_ids, test_sets = [test_ids[i] for i in keep], [test_sets[i] for i in keep]
    out = evaluate_embeddings(vectors[[position[i] for i in test_ids]], test_sets)
    if run.method == "rating_metric":
        model = build_model(run)
        dataset = ImagePathDataset(image_paths(test_ids), build_transform_for(run, model))
        out["rating_rmse"] = evaluate_rating_metric(model, dataset, test_sets, device=run_device())["rating_rmse"]
        _, train_sets = rating_sets(split_image_ids(split=run.split, part=SplitPart.TRAIN), names)
        if train_sets:
            constant = mean_ratings(train_sets).mean(axis=0)
            out["rating_rmse_train_mean"] = float(np.sqrt(np.mean((mean_ratings(test_sets) - constant) ** 2)))
    out.update(characteristics=names, n_items=len(test_ids), note=note)
    plain = {k: v.item() if isinstance(v, np.generic) else v for k, v in out.items()}
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in plain.items()}
