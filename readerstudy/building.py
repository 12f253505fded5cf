"""Cases and catalogues of a study: the builders (pure, readerstudy.builders) fed from the collection
and the model runs (each run ranks through its ranker, retrieval.runs.ranking), or an uploaded case list.
Refused, with the coordinator's message, once any reader has answered."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath

from django.db import transaction

from core.errors import ApplicationError
from readerstudy import builders
from readerstudy.models import Candidate, Case, Study
from readerstudy.services import (
    MAX_CASES,
    MAX_CATALOGUE,
    check_catalogue_sizes,
    clean_seed,
    lock_study,
    refuse_if_answered,
)
from retrieval.imports.names import path_pseudonym
from retrieval.models import Dataset, Label, ModelRun, Split, SplitPart
from retrieval.runs.methods import METHODS
from retrieval.runs.ranking import neighbours_fn, run_vectors

STRATIFIED_RANDOM, KNN_FARTHEST, TOP_N, POOLED, CASE_LIST = (
    "stratified_random",
    "knn_farthest",
    "top_n",
    "pooled",
    "case_list",
)
BUILDERS: dict[str, str] = {
    STRATIFIED_RANDOM: "Random catalogue stratified by class (papers 001/003)",
    KNN_FARTHEST: "k nearest + k farthest under a model run (paper 000)",
    TOP_N: "Top N under a model run",
    POOLED: "Pooled top candidates of several model runs (blinded)",
    CASE_LIST: "Uploaded case list (CSV of query + candidate)",
}
RUN_BUILDERS = (KNN_FARTHEST, TOP_N, POOLED)
#: k nearest + k farthest: far images are drawn from the farthest quarter of each query's pool (at most
#: FAR_BAND_MAX images), not only its k farthest, so that the same outliers need not recur in every case.
FAR_BAND_FRACTION = 0.25
FAR_BAND_MAX = 2000
ALL_IMAGES = "all"  # pool_part: every image of the dataset


def _write_cases(study: Study, specs: Sequence[builders.CaseSpec]) -> None:
    """Replace a study's cases by these specs (caller holds the transaction and the checks)."""
    if not specs:
        raise ApplicationError("The build produced no case.")
    if len(specs) > MAX_CASES:
        raise ApplicationError(f"A study has at most {MAX_CASES} cases ({len(specs)} asked).")
    check_catalogue_sizes(study.mode, study.k, [len(c) for _, c in specs])
    ids = {q for q, _ in specs} | {i for _, cat in specs for i, _ in cat}
    foreign = ids - set(study.dataset.images.filter(pk__in=ids).values_list("pk", flat=True))
    if foreign:
        raise ApplicationError(f"Image(s) {sorted(foreign)[:5]} are not in dataset {study.dataset.name!r}.")
    study.cases.all().delete()
    cases = Case.objects.bulk_create(Case(study=study, position=n, query_id=q) for n, (q, _) in enumerate(specs))
    Candidate.objects.bulk_create(
        Candidate(case=case, image_id=image_id, position=p, provenance=prov)
        for case, (_, catalogue) in zip(cases, specs)
        for p, (image_id, prov) in enumerate(catalogue)
    )


def study_build_cases(*, study: Study, builder: str, config: dict, seed: int) -> Study:
    """(Re)build a study's cases with a builder; refused once answers exist. Returns the study."""
    if builder not in BUILDERS or builder == CASE_LIST:
        raise ApplicationError(
            f"Unknown builder {builder!r}; use one of "
            f"{', '.join(b for b in BUILDERS if b != CASE_LIST)} (or upload a case list)."
        )
    seed = clean_seed(seed)
    with transaction.atomic():
        study = lock_study(study)
        refuse_if_answered(study, "rebuilding the cases")
        cfg = _config_clean(builder, config)
        _write_cases(study, _specs_for(study, builder, cfg, seed))
        study.builder, study.builder_config, study.seed = builder, cfg, seed
        study.save(update_fields=["builder", "builder_config", "seed"])
    return study


def study_load_case_list(*, study: Study, data: bytes, seed: int | None = None, file_name: str = "") -> Study:
    """Replace a study's cases by an uploaded CSV case list (query, candidate[, position, ...])."""
    seed = study.seed if seed is None else clean_seed(seed)
    with transaction.atomic():
        study = lock_study(study)
        refuse_if_answered(study, "replacing the cases")
        try:
            specs = builders.case_list_specs(
                builders.parse_case_list_csv(data), _image_resolver(study.dataset), seed=seed
            )
        except builders.BuildError as exc:
            raise ApplicationError(exc.message, {"errors": exc.errors}) from None
        _write_cases(study, specs)
        study.builder, study.seed = CASE_LIST, seed
        study.builder_config = {
            # The upload's name may name a patient: stored as its pseudonym, like an imported file's (issue 12).
            "file_name": path_pseudonym(study.dataset.pseudonym_key, file_name)[:200] if file_name else "",
            "sha256": hashlib.sha256(data).hexdigest(),
            "n_cases": len(specs),
        }
        study.save(update_fields=["builder", "builder_config", "seed"])
    return study


def _image_resolver(dataset: Dataset) -> Callable[[str], int | None]:
    """Resolve a case-list reference: an image id of the dataset, a source name, or a unique base name (a stored
    pseudonym, or the original name, pseudonymised with the dataset's key: retrieval.imports.names)."""
    rows = list(dataset.images.values_list("pk", "source_name"))
    ids = {pk for pk, _ in rows}
    names = {name: pk for pk, name in rows}
    bases: dict[str, list[int]] = defaultdict(list)
    for pk, name in rows:
        bases[PurePosixPath(name).name].append(pk)

    def resolve(ref: str) -> int | None:
        if ref.isdigit() and int(ref) in ids:
            return int(ref)
        # The stored name, or the original file name the coordinator knows (stored as its pseudonym).
        for name in (ref, path_pseudonym(dataset.pseudonym_key, ref)):
            if name in names:
                return names[name]
            hits = bases.get(PurePosixPath(name).name, [])
            if len(hits) == 1:
                return hits[0]
        return None

    return resolve


# Builder configuration: (key, kind, default); None default = required.
_COMMON_CONFIG = (
    ("n_queries", int, None),
    ("split", "id", 0),
    ("query_part", str, SplitPart.TEST),
    ("query_label", str, ""),
    ("allocation", str, "proportional"),
    ("pool_part", str, ALL_IMAGES),
    ("exclude_queries", bool, True),
)
_BUILDER_CONFIG = {
    STRATIFIED_RANDOM: (("n", int, 10), ("class_label", str, None)),
    KNN_FARTHEST: (("run", "id", None), ("k", int, 5)),
    TOP_N: (("run", "id", None), ("n", int, 10)),
    POOLED: (("runs", "ids", None), ("per_method", int, 5)),
}


def _config_clean(builder: str, config: dict) -> dict:
    """The builder configuration with defaults filled in and types checked (as it is recorded)."""
    spec = _COMMON_CONFIG + _BUILDER_CONFIG[builder]
    unknown = set(config) - {key for key, _, _ in spec}
    if unknown:
        raise ApplicationError(f"Unknown option(s) for {builder}: {', '.join(sorted(unknown))}.")
    clean = {}
    for key, kind, default in spec:
        value = config.get(key)
        if value is None or value == "" or value == []:
            if default is None:
                raise ApplicationError(f"The {builder} builder needs {key!r}.")
            value = default
        clean[key] = _typed(key, kind, value)
    if clean["allocation"] not in builders.ALLOCATIONS:
        raise ApplicationError(f"allocation must be one of {', '.join(builders.ALLOCATIONS)}.")
    if clean["query_part"] not in SplitPart.values:
        raise ApplicationError(f"query_part must be one of {', '.join(SplitPart.values)}.")
    if clean["pool_part"] not in (ALL_IMAGES, *SplitPart.values):
        raise ApplicationError(f"pool_part must be one of {ALL_IMAGES}, {', '.join(SplitPart.values)}.")
    return clean


def _typed(key: str, kind, value):
    if kind is bool:
        if not isinstance(value, bool):
            raise ApplicationError(f"{key} must be true or false.")
        return value
    if kind is str:
        return str(value).strip()
    if kind == "ids":
        if not isinstance(value, (list, tuple)):
            raise ApplicationError(f"{key} must be a list of ids.")
        ids = [_typed(key, "id", v) for v in value]
        if len(set(ids)) != len(ids):
            raise ApplicationError(f"{key} lists the same id twice.")
        return ids
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ApplicationError(f"{key} must be a whole number (got {value!r}).") from None
    if isinstance(value, bool) or number != value and str(number) != str(value).strip():
        raise ApplicationError(f"{key} must be a whole number (got {value!r}).")
    if number < (0 if kind == "id" else 1):
        raise ApplicationError(f"{key} must be at least 1.")
    if kind is int and key in ("n", "k", "per_method") and number > MAX_CATALOGUE:
        raise ApplicationError(f"{key} must be at most {MAX_CATALOGUE}.")
    if key == "n_queries" and number > MAX_CASES:
        raise ApplicationError(f"n_queries must be at most {MAX_CASES}.")
    return number


def _specs_for(study: Study, builder: str, cfg: dict, seed: int) -> list[builders.CaseSpec]:
    """Resolve pools, classes and runs from the database, then call the pure builder."""
    dataset = study.dataset
    split = _split(dataset, cfg["split"])
    if cfg["pool_part"] != ALL_IMAGES and split is None:
        raise ApplicationError("A catalogue pool taken from a split part needs a split.")
    runs = _runs(dataset, [cfg["run"]] if "run" in cfg else cfg.get("runs", []))
    embedded = _embedded_ids(runs)
    query_pool = _pool(dataset, split, cfg["query_part"], embedded)
    catalogue_pool = _pool(dataset, split, cfg["pool_part"], embedded)
    try:
        strata = _classes(dataset, cfg["query_label"]) if cfg["query_label"] else None
        queries = builders.sample_queries(
            query_pool, cfg["n_queries"], seed=seed, strata=strata, allocation=cfg["allocation"]
        )
        if cfg["exclude_queries"]:
            catalogue_pool = sorted(set(catalogue_pool) - set(queries))
        _check_ssim_cost(runs, queries, catalogue_pool)
        return _call_builder(builder, cfg, queries, catalogue_pool, runs, seed, dataset)
    except builders.BuildError as exc:
        raise ApplicationError(exc.message, {"errors": exc.errors}) from None


def _call_builder(
    builder: str, cfg: dict, queries: list[int], pool: list[int], runs: list[ModelRun], seed: int, dataset: Dataset
) -> list[builders.CaseSpec]:
    if builder == STRATIFIED_RANDOM:
        return builders.stratified_random(
            queries, pool, _classes(dataset, cfg["class_label"]), cfg["n"], seed=seed, allocation=cfg["allocation"]
        )
    if builder == KNN_FARTHEST:
        return builders.knn_and_farthest(
            queries,
            neighbours_fn(runs[0], pool),
            cfg["k"],
            seed=seed,
            method=runs[0].method,
            run=runs[0].pk,
            far_band=far_band_size(len(pool), cfg["k"]),
        )
    if builder == TOP_N:
        return builders.top_n(
            queries, neighbours_fn(runs[0], pool), cfg["n"], seed=seed, method=runs[0].method, run=runs[0].pk
        )
    names = _method_names(runs)
    return builders.pooled(
        queries,
        {names[r.pk]: neighbours_fn(r, pool) for r in runs},
        cfg["per_method"],
        seed=seed,
        runs={names[r.pk]: r.pk for r in runs},
    )


def far_band_size(pool_size: int, k: int) -> int:
    """How many of a query's farthest images its k far candidates are drawn from: the farthest quarter of the
    pool (at most FAR_BAND_MAX), never reaching into its k nearest, and at least k."""
    others = max(pool_size - 1, 0)  # the query itself may be in the pool
    return max(k, min(int(FAR_BAND_FRACTION * others), FAR_BAND_MAX, others - k))


def study_recurrence(*, study: Study) -> dict:
    """How often each set's candidates recur in other cases (builders.recurrence), from the stored cases."""
    specs: dict[int, list] = defaultdict(list)
    for case_id, image_id, provenance in Candidate.objects.filter(case__study=study).values_list(
        "case_id", "image_id", "provenance"
    ):
        specs[case_id].append((image_id, provenance if isinstance(provenance, list) else []))
    return builders.recurrence([(case_id, catalogue) for case_id, catalogue in specs.items()])


def _method_names(runs: list[ModelRun]) -> dict[int, str]:
    """Provenance method names: the run's method, with the run name when two runs share a method."""
    methods = [r.method for r in runs]
    return {r.pk: r.method if methods.count(r.method) == 1 else f"{r.method}:{r.name}" for r in runs}


def _split(dataset: Dataset, split_id: int) -> Split | None:
    if not split_id:
        return None
    split = Split.objects.filter(pk=split_id, dataset=dataset).first()
    if split is None:
        raise ApplicationError(f"Split {split_id} does not exist in dataset {dataset.name!r}.")
    return split


def _runs(dataset: Dataset, run_ids: list[int]) -> list[ModelRun]:
    found = {r.pk: r for r in ModelRun.objects.filter(pk__in=run_ids)}
    runs = []
    for run_id in run_ids:
        run = found.get(run_id)
        if run is None or run.dataset_id != dataset.pk:
            raise ApplicationError(f"Model run {run_id} does not exist in dataset {dataset.name!r}.")
        method = METHODS.get(run.method)
        if method is not None and not method.embeds and run.method != "ssim":
            raise ApplicationError(f"Run {run.name!r} ({method.title}) has no embeddings and cannot build catalogues.")
        runs.append(run)
    return runs


#: SSIM runs build catalogues by comparing each query with every pool image inside the request
#: (≈ 1.5 ms a pair at 128 px, plus loading each pool rendition once): bounded so a build stays short.
SSIM_BUILD_MAX_PAIRS = 10_000


def _check_ssim_cost(runs: list[ModelRun], queries: list[int], pool: list[int]) -> None:
    pairs = len(queries) * len(pool) * sum(r.method == "ssim" for r in runs)
    if pairs > SSIM_BUILD_MAX_PAIRS:
        raise ApplicationError(
            f"SSIM compares image pairs directly: {len(queries)} queries × {len(pool)} pool images is {pairs:,} "
            f"comparisons, more than the {SSIM_BUILD_MAX_PAIRS:,} a study build allows. Take the pool from a split "
            "part (e.g. the test part) or build fewer cases."
        )


def _embedded_ids(runs: list[ModelRun]) -> set[int] | None:
    """Image ids embedded by every run (None without runs); ApplicationError when a run has none."""
    common = None
    for run in runs:
        if run.method == "ssim":  # ranks any image with a rendition: no restriction
            continue
        ids = {int(i) for i in run_vectors(run=run)[0]}
        common = ids if common is None else common & ids
    return common


def _pool(dataset: Dataset, split: Split | None, part: str, embedded: set[int] | None) -> list[int]:
    if split is not None and part != ALL_IMAGES:
        ids = split.members.filter(part=part).values_list("image_id", flat=True)
    else:
        ids = dataset.images.values_list("pk", flat=True)
    return sorted(i for i in ids if embedded is None or i in embedded)


def _classes(dataset: Dataset, label_name: str) -> dict[int, str]:
    """image id → class (the value of one label, e.g. 'finding' = 'effusion' or 'Cardiomegaly' = '1')."""
    rows = Label.objects.filter(image__dataset=dataset, name=label_name).values_list(
        "image_id", "value_num", "value_text"
    )
    classes = {i: _label_text(num, text) for i, num, text in rows}
    if not classes:
        raise ApplicationError(f"No image of dataset {dataset.name!r} has a label named {label_name!r}.")
    return classes


def _label_text(num: float | None, text: str) -> str:
    if num is None:
        return text
    return str(int(num)) if float(num).is_integer() else str(num)
