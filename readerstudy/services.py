"""Services of the study domain (coordinator side): design, cases, readers, questions, lifecycle.

Every write is atomic and refuses, with a message for the coordinator, anything that would
invalidate answers already given: once any reader has answered, the cases, catalogues, answer
mode, k, rating range, questions and what readers are shown are locked (clone the study to
change them); name, instructions, revisions and the ground-truth reader stay editable.

The reads used by the coordinator pages and API are at the end of this module (`study_list`,
`study_progress`, ...); what readers see of a study is annotations.selectors. Answers are read
here only through the reverse relations of cases and assignments (`answers`, `flags`): the
studies layer imports nothing from reading.
"""

from __future__ import annotations

import hashlib
import secrets
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import PurePosixPath
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Max, Prefetch, QuerySet
from django.utils import timezone
from django.utils.text import slugify

from core.errors import ApplicationError, Conflict
from core.roles import READER, has_role
from readerstudy import builders
from readerstudy.models import AnswerMode, Assignment, Candidate, Case, Study, StudyQuestion, StudyStatus
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
ALL_IMAGES = "all"  # pool_part: every image of the dataset

MAX_CASES = 2000
MAX_CATALOGUE = 100
# Fields that change what readers answered or saw: frozen once the first answer exists.
LOCKED_ONCE_ANSWERED = ("mode", "k", "rating_min", "rating_max", "show_candidate_labels", "show_saliency")
ALWAYS_EDITABLE = ("name", "instructions", "allow_revisions", "ground_truth_reader")


# --- Study design -------------------------------------------------------------------------------


def study_has_answers(*, study: Study) -> bool:
    """True once any reader has submitted an answer in the study."""
    return study.cases.filter(answers__isnull=False).exists()


def _refuse_if_answered(study: Study, what: str) -> None:
    if study_has_answers(study=study):
        raise Conflict(
            f"Study {study.name!r} already has answers: {what} would invalidate them. "
            "Clone the study to change its design."
        )


def _lock(study: Study) -> Study:
    """Re-read the study row under a row lock (serialises concurrent edits on PostgreSQL)."""
    return Study.objects.select_for_update().get(pk=study.pk)


def _clean_name(name: str, *, exclude_pk: int | None = None) -> str:
    name = (name or "").strip()
    if not name:
        raise ApplicationError("A study needs a name.")
    if len(name) > 200:
        raise ApplicationError("A study name has at most 200 characters.")
    if Study.objects.filter(name=name).exclude(pk=exclude_pk).exists():
        raise ApplicationError(f"A study named {name!r} already exists.")
    return name


def _clean_design(mode: str, k: int | None, rating_min: int, rating_max: int) -> int | None:
    if mode not in AnswerMode.values:
        raise ApplicationError(f"Unknown answer mode {mode!r}; use one of {', '.join(AnswerMode.values)}.")
    if mode == AnswerMode.CHOOSE_K:
        if k is None or k < 1:
            raise ApplicationError("Choose k needs k ≥ 1 (how many candidates each reader picks).")
        if k >= MAX_CATALOGUE:
            raise ApplicationError(f"k must be smaller than the catalogue (at most {MAX_CATALOGUE - 1}).")
    if not 0 <= rating_min < rating_max <= 100:
        raise ApplicationError("The rating range needs 0 ≤ minimum < maximum ≤ 100.")
    return k if mode == AnswerMode.CHOOSE_K else None


def _check_ground_truth_reader(user) -> None:
    if user is not None and not has_role(user, READER):
        raise ApplicationError(
            f"{user.get_username()} is not a reader: the ground-truth reader must have the reader role."
        )


def new_seed() -> int:
    """A fresh random study seed (kept small enough to read and type)."""
    return secrets.randbelow(2**31)


def study_create(
    *,
    name: str,
    dataset: Dataset,
    mode: str,
    k: int | None = None,
    instructions: str = "",
    rating_min: int = 1,
    rating_max: int = 5,
    allow_revisions: bool = False,
    show_candidate_labels: bool = False,
    show_saliency: bool = False,
    seed: int | None = None,
    ground_truth_reader=None,
    created_by=None,
) -> Study:
    """Create a draft study (no cases yet: build them with `study_build_cases` or a case list)."""
    k = _clean_design(mode, k, rating_min, rating_max)
    _check_ground_truth_reader(ground_truth_reader)
    seed = new_seed() if seed is None else _seed(seed)
    return Study.objects.create(
        name=_clean_name(name),
        dataset=dataset,
        mode=mode,
        k=k,
        instructions=instructions or "",
        rating_min=rating_min,
        rating_max=rating_max,
        allow_revisions=allow_revisions,
        show_candidate_labels=show_candidate_labels,
        show_saliency=show_saliency,
        seed=seed,
        ground_truth_reader=ground_truth_reader,
        created_by=created_by,
    )


def _seed(seed: int) -> int:
    try:
        return builders.check_seed(seed)
    except builders.BuildError as exc:
        raise ApplicationError(exc.message) from None


@transaction.atomic
def study_update(*, study: Study, **changes: Any) -> Study:
    """Change a study's design; fields readers depend on are refused once answers exist."""
    unknown = set(changes) - set(LOCKED_ONCE_ANSWERED) - set(ALWAYS_EDITABLE)
    if unknown:
        raise ApplicationError(f"These fields cannot be changed here: {', '.join(sorted(unknown))}.")
    study = _lock(study)
    changed = {f: v for f, v in changes.items() if getattr(study, f) != v}
    locked = [f for f in LOCKED_ONCE_ANSWERED if f in changed]
    if locked:
        _refuse_if_answered(study, "changing " + ", ".join(locked))
    merged = {f: changed.get(f, getattr(study, f)) for f in ("mode", "k", "rating_min", "rating_max")}
    if merged["mode"] != AnswerMode.CHOOSE_K:
        merged["k"] = None
    changed["k"] = _clean_design(**merged)
    _check_catalogue_sizes(merged["mode"], changed["k"], _catalogue_sizes(study))
    if "name" in changed:
        changed["name"] = _clean_name(changed["name"], exclude_pk=study.pk)
    if changed.get("ground_truth_reader") is not None:
        _check_ground_truth_reader(changed["ground_truth_reader"])
        if not study.assignments.filter(reader=changed["ground_truth_reader"]).exists():
            raise ApplicationError("The ground-truth reader must be one of the study's readers: add them first.")
    for field, value in changed.items():
        setattr(study, field, value)
    study.save()
    return study


def study_open(*, study: Study) -> Study:
    """Open a draft (or re-open a closed) study to its readers; it needs cases and readers."""
    with transaction.atomic():
        study = _lock(study)
        if study.status == StudyStatus.OPEN:
            raise Conflict(f"Study {study.name!r} is already open.")
        if not study.cases.exists():
            raise ApplicationError("The study has no cases yet: build them or upload a case list first.")
        if not study.assignments.exists():
            raise ApplicationError("The study has no readers yet: assign at least one reader first.")
        study.status, study.closed_at = StudyStatus.OPEN, None
        study.opened_at = study.opened_at or timezone.now()
        study.save(update_fields=["status", "opened_at", "closed_at"])
    return study


def study_close(*, study: Study) -> Study:
    """Close an open study: readers can no longer answer; results stay readable."""
    with transaction.atomic():
        study = _lock(study)
        if study.status != StudyStatus.OPEN:
            raise Conflict(f"Only an open study can be closed; {study.name!r} is {study.get_status_display().lower()}.")
        study.status, study.closed_at = StudyStatus.CLOSED, timezone.now()
        study.save(update_fields=["status", "closed_at"])
    return study


@transaction.atomic
def study_clone(*, study: Study, name: str, created_by=None) -> Study:
    """A new draft with the same design, questions, cases and catalogues (provenance kept); no readers, no answers."""
    study = Study.objects.get(pk=study.pk)  # the stored design, not a caller's stale copy
    copy = study_create(
        name=name,
        dataset=study.dataset,
        mode=study.mode,
        k=study.k,
        instructions=study.instructions,
        rating_min=study.rating_min,
        rating_max=study.rating_max,
        allow_revisions=study.allow_revisions,
        show_candidate_labels=study.show_candidate_labels,
        show_saliency=study.show_saliency,
        seed=study.seed,
        created_by=created_by,
    )
    copy.builder, copy.builder_config = study.builder, {**study.builder_config, "cloned_from": study.pk}
    copy.save(update_fields=["builder", "builder_config"])
    StudyQuestion.objects.bulk_create(
        StudyQuestion(
            study=copy, key=q.key, text=q.text, choices=q.choices, applies_to=q.applies_to, position=q.position
        )
        for q in study.questions.all()
    )
    cases = list(study.cases.prefetch_related("candidates"))
    new_cases = Case.objects.bulk_create(Case(study=copy, position=c.position, query_id=c.query_id) for c in cases)
    Candidate.objects.bulk_create(
        Candidate(case=new, image_id=cand.image_id, position=cand.position, provenance=cand.provenance)
        for old, new in zip(cases, new_cases)
        for cand in old.candidates.all()
    )
    return copy


# --- Cases and catalogues -----------------------------------------------------------------------


def _catalogue_sizes(study: Study) -> list[int]:
    return list(study.cases.annotate(n=Count("candidates")).values_list("n", flat=True))


def _check_catalogue_sizes(mode: str, k: int | None, sizes: Iterable[int]) -> None:
    sizes = list(sizes)
    if not sizes:
        return
    smallest = min(sizes)
    if mode == AnswerMode.CHOOSE_K and smallest <= (k or 0):
        raise ApplicationError(f"Choose {k} needs catalogues of more than {k} candidates; the smallest has {smallest}.")
    if mode == AnswerMode.RANK_ALL and smallest < 2:
        raise ApplicationError("Ranking needs catalogues of at least 2 candidates.")
    if smallest < 1:
        raise ApplicationError("Every case needs at least one candidate.")
    if max(sizes) > MAX_CATALOGUE:
        raise ApplicationError(f"A catalogue has at most {MAX_CATALOGUE} candidates (the largest has {max(sizes)}).")


def _write_cases(study: Study, specs: Sequence[builders.CaseSpec]) -> None:
    """Replace a study's cases by these specs (caller holds the transaction and the checks)."""
    if not specs:
        raise ApplicationError("The build produced no case.")
    if len(specs) > MAX_CASES:
        raise ApplicationError(f"A study has at most {MAX_CASES} cases ({len(specs)} asked).")
    _check_catalogue_sizes(study.mode, study.k, [len(c) for _, c in specs])
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
    seed = _seed(seed)
    with transaction.atomic():
        study = _lock(study)
        _refuse_if_answered(study, "rebuilding the cases")
        cfg = _config_clean(builder, config)
        _write_cases(study, _specs_for(study, builder, cfg, seed))
        study.builder, study.builder_config, study.seed = builder, cfg, seed
        study.save(update_fields=["builder", "builder_config", "seed"])
    return study


def study_load_case_list(*, study: Study, data: bytes, seed: int | None = None, file_name: str = "") -> Study:
    """Replace a study's cases by an uploaded CSV case list (query, candidate[, position, ...])."""
    seed = study.seed if seed is None else _seed(seed)
    with transaction.atomic():
        study = _lock(study)
        _refuse_if_answered(study, "replacing the cases")
        try:
            specs = builders.case_list_specs(
                builders.parse_case_list_csv(data), _image_resolver(study.dataset), seed=seed
            )
        except builders.BuildError as exc:
            raise ApplicationError(exc.message, {"errors": exc.errors}) from None
        _write_cases(study, specs)
        study.builder, study.seed = CASE_LIST, seed
        study.builder_config = {
            "file_name": file_name[:200],
            "sha256": hashlib.sha256(data).hexdigest(),
            "n_cases": len(specs),
        }
        study.save(update_fields=["builder", "builder_config", "seed"])
    return study


def _image_resolver(dataset: Dataset) -> Callable[[str], int | None]:
    """Resolve a case-list reference: an image id of the dataset, a source name, or a unique base name."""
    rows = list(dataset.images.values_list("pk", "source_name"))
    ids = {pk for pk, _ in rows}
    names = {name: pk for pk, name in rows}
    bases: dict[str, list[int]] = defaultdict(list)
    for pk, name in rows:
        bases[PurePosixPath(name).name].append(pk)

    def resolve(ref: str) -> int | None:
        if ref.isdigit() and int(ref) in ids:
            return int(ref)
        if ref in names:
            return names[ref]
        hits = bases.get(PurePosixPath(ref).name, [])
        return hits[0] if len(hits) == 1 else None

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
            queries, neighbours_fn(runs[0], pool), cfg["k"], seed=seed, method=runs[0].method, run=runs[0].pk
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


# --- Readers and questions ----------------------------------------------------------------------


def assignment_seed(*, study_seed: int, reader_id: int) -> int:
    """A reader's seed derived from the study seed and the reader id (reproducible, 63 bits)."""
    digest = hashlib.sha256(f"cbir-assignment:{study_seed}:{reader_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def assignment_add(*, study: Study, reader, seed: int | None = None) -> Assignment:
    """Assign a reader (a user with the reader role) to a study; the seed drives their order."""
    if not has_role(reader, READER):
        raise ApplicationError(f"{reader.get_username()} does not have the reader role.")
    with transaction.atomic():
        study = _lock(study)
        if study.assignments.filter(reader=reader).exists():
            raise Conflict(f"{reader.get_username()} is already a reader of {study.name!r}.")
        seed = assignment_seed(study_seed=study.seed, reader_id=reader.pk) if seed is None else _seed(seed)
        return Assignment.objects.create(study=study, reader=reader, seed=seed)


def assignment_remove(*, study: Study, reader) -> None:
    """Remove a reader who has not answered yet (their drafts and flags go with them)."""
    with transaction.atomic():
        study = _lock(study)
        assignment = study.assignments.filter(reader=reader).first()
        if assignment is None:
            raise ApplicationError(f"{reader.get_username()} is not a reader of {study.name!r}.")
        if assignment.answers.exists():
            raise Conflict(
                f"{reader.get_username()} has already answered in {study.name!r}; "
                "a reader with answers cannot be removed."
            )
        assignment.delete()
        if study.ground_truth_reader_id == reader.pk:
            study.ground_truth_reader = None
            study.save(update_fields=["ground_truth_reader"])


def _question_key(study: Study, text: str, key: str) -> str:
    key = slugify(key or text)[:40] or "question"
    taken = set(study.questions.values_list("key", flat=True))
    if key not in taken:
        return key
    return next(f"{key}-{n}" for n in range(2, 10_000) if f"{key}-{n}" not in taken)


def _clean_choices(choices: Sequence[str]) -> list[str]:
    cleaned = [str(c).strip() for c in choices if str(c).strip()]
    if not 2 <= len(cleaned) <= 12:
        raise ApplicationError("A question needs between 2 and 12 answer choices.")
    if len(set(c.lower() for c in cleaned)) != len(cleaned):
        raise ApplicationError("A question lists the same choice twice.")
    if any(len(c) > 100 for c in cleaned):
        raise ApplicationError("An answer choice has at most 100 characters.")
    return cleaned


def question_add(
    *, study: Study, text: str, choices: Sequence[str], applies_to: str = StudyQuestion.AppliesTo.ALL, key: str = ""
) -> StudyQuestion:
    """Add a per-image question (e.g. "pleural effusion?" yes/no/unsure); refused once answers exist."""
    text = (text or "").strip()
    if not text or len(text) > 300:
        raise ApplicationError("A question needs a text of at most 300 characters.")
    if applies_to not in StudyQuestion.AppliesTo.values:
        raise ApplicationError(f"applies_to must be one of {', '.join(StudyQuestion.AppliesTo.values)}.")
    choices = _clean_choices(choices)
    with transaction.atomic():
        study = _lock(study)
        _refuse_if_answered(study, "adding a question")
        position = (study.questions.aggregate(m=Max("position"))["m"] or 0) + 1
        return StudyQuestion.objects.create(
            study=study,
            key=_question_key(study, text, key),
            text=text,
            choices=choices,
            applies_to=applies_to,
            position=position,
        )


def question_remove(*, study: Study, question: StudyQuestion) -> None:
    """Remove a question; refused once answers exist."""
    with transaction.atomic():
        study = _lock(study)
        _refuse_if_answered(study, "removing a question")
        if question.study_id != study.pk:
            raise ApplicationError("This question belongs to another study.")
        question.delete()


# --- The wizard: everything at once, or a dry run for the review step ---------------------------


@transaction.atomic
def study_setup(
    *,
    design: dict,
    builder: str,
    config: dict,
    seed: int,
    readers: Sequence = (),
    questions: Sequence[dict] = (),
    case_list: bytes | None = None,
    case_list_name: str = "",
    created_by=None,
    dry_run: bool = False,
) -> Study | dict:
    """Create a study with its questions, cases and readers in one transaction (all or nothing).

    With dry_run the same work is done and rolled back, and a summary is returned for review.
    """
    gt = design.get("ground_truth_reader")
    study = study_create(**design, seed=seed, created_by=created_by)
    for q in questions:
        question_add(study=study, **q)
    if builder == CASE_LIST:
        if not case_list:
            raise ApplicationError("Choose the case-list CSV file to upload.")
        study_load_case_list(study=study, data=case_list, seed=seed, file_name=case_list_name)
    else:
        study_build_cases(study=study, builder=builder, config=config, seed=seed)
    for reader in _unique_users([*readers, *([gt] if gt else [])]):
        assignment_add(study=study, reader=reader)
    if not dry_run:
        return study
    summary = _summary(study)
    transaction.set_rollback(True)
    return summary


def _unique_users(users: Iterable) -> list:
    seen, out = set(), []
    for u in users:
        if u.pk not in seen:
            seen.add(u.pk)
            out.append(u)
    return out


def _summary(study: Study) -> dict:
    study = Study.objects.get(pk=study.pk)
    sizes = _catalogue_sizes(study)
    first = study.cases.select_related("query").prefetch_related("candidates").first()
    return {
        "n_cases": len(sizes),
        "catalogue_min": min(sizes),
        "catalogue_max": max(sizes),
        "n_candidates": sum(sizes),
        "readers": list(study.assignments.values_list("reader__username", flat=True)),
        "questions": list(study.questions.values_list("text", flat=True)),
        "builder_config": study.builder_config,
        "example_query": first.query_id,
        "example_candidates": [(c.image_id, c.provenance) for c in first.candidates.all()],
    }


# --- Reads for the coordinator pages and API ----------------------------------------------------


def study_list() -> QuerySet[Study]:
    """Studies with their case and reader counts, newest first."""
    return (
        Study.objects.select_related("dataset")
        .annotate(n_cases=Count("cases", distinct=True), n_readers=Count("assignments", distinct=True))
        .order_by("-created_at")
    )


def eligible_readers() -> QuerySet:
    """Active users with the reader role (the choices when assigning readers)."""
    return get_user_model().objects.filter(groups__name=READER, is_active=True).distinct().order_by("username")


def study_progress(*, study: Study) -> list[dict]:
    """Per reader: answered/total cases, median active time per case, flags, last answer."""
    total = study.cases.count()
    times: dict[int, list[int]] = defaultdict(list)
    last: dict[int, Any] = {}
    for assignment_id, ms, at in study.assignments.values_list("pk", "answers__active_ms", "answers__submitted_at"):
        if at is None:  # a reader without answers (the outer join's empty row)
            continue
        times[assignment_id].append(ms)
        last[assignment_id] = max(at, last.get(assignment_id, at))
    flags = dict(study.assignments.annotate(n=Count("flags")).values_list("pk", "n"))
    rows = []
    for a in study.assignments.select_related("reader").order_by("reader__username"):
        done = len(times[a.pk])
        median = statistics.median(times[a.pk]) / 1000 if times[a.pk] else None
        rows.append(
            {
                "assignment_id": a.pk,
                "reader_id": a.reader_id,
                "reader": a.reader.get_username(),
                "seed": a.seed,
                "done": done,
                "total": total,
                "percent": round(100 * done / total) if total else 0,
                "median_seconds": median,
                "flags": flags.get(a.pk, 0),
                "last_answer_at": last.get(a.pk),
                "is_ground_truth": a.reader_id == study.ground_truth_reader_id,
            }
        )
    return rows


def study_cases(*, study: Study) -> QuerySet[Case]:
    """The cases in canonical order with query and candidates (with provenance) prefetched."""
    return (
        study.cases.select_related("query")
        .prefetch_related(
            Prefetch("candidates", queryset=Candidate.objects.select_related("image").order_by("position"))
        )
        .order_by("position")
    )


def dataset_label_names(*, dataset_ids: Iterable[int] | None = None) -> dict[int, list[str]]:
    """dataset id → its label names (the class choices of the wizard)."""
    qs = Label.objects.values_list("image__dataset_id", "name").distinct().order_by("image__dataset_id", "name")
    if dataset_ids is not None:
        qs = qs.filter(image__dataset_id__in=list(dataset_ids))
    names: dict[int, list[str]] = defaultdict(list)
    for ds, name in qs:
        names[ds].append(name)
    return dict(names)
