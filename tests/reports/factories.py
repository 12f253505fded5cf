"""Reader studies with known answers, written straight through the ORM (bulk_create).

`generate_study` makes a dataset of image rows (no files), a finished model run whose embeddings
are written to disk, a study whose candidates carry that run's provenance, readers, and their
answers. The planted truth of each case is the model's own order of the catalogue; each reader
answers a case exactly as the truth with probability `q`, and at random otherwise:

* choose_k: the truth's k nearest, or k random candidates;
* rank_all: the truth's ranking, or a random permutation;
* rate: a rating that falls with the truth's rank (max for the nearest), or a random rating.

The returned `Generated` holds the same answers as arrays in the report's order (cases by
position, candidates by position, readers by user name), NaN where a reader did not answer, so a
test can compute every statistic independently.
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.contrib.auth import get_user_model
from django.utils import timezone

from annotations.models import Answer, AnswerItem, CaseFlag
from core.jobs import JobStatus
from core.roles import READER, user_set_roles
from readerstudy.models import AnswerMode, Assignment, Candidate, Case, Study, StudyStatus
from retrieval.models import Dataset, Image, Label, ModelRun

_seq = itertools.count(1)
_RUN = uuid.uuid4().hex[:4]


@dataclass
class Generated:
    study: Study
    readers: list
    run: ModelRun | None
    case_ids: np.ndarray
    query_ids: np.ndarray
    candidate_ids: np.ndarray
    image_ids: np.ndarray
    distances: np.ndarray
    values: np.ndarray
    modalities: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)

    @property
    def model_ranks(self) -> np.ndarray:
        """(C, M) 1-based ranks of each catalogue under the model (1 = nearest; ties: lower position)."""
        order = np.argsort(self.distances, axis=1, kind="stable")
        return np.argsort(order, axis=1) + 1

    @property
    def complete(self) -> np.ndarray:
        """(C,) cases answered by every reader."""
        return ~np.isnan(self.values).any(axis=(1, 2))


def _images(dataset: Dataset, n: int, tag: str) -> list[Image]:
    rows = [
        Image(
            dataset=dataset,
            source_name=f"{tag}/{i:06d}.png",
            source_format="png",
            width=8,
            height=8,
            content_hash=hashlib.sha256(f"{tag}-{i}".encode()).hexdigest(),
            original=f"o/{tag}/{i}.png",
            rendition=f"r/{tag}/{i}.png",
            thumbnail=f"t/{tag}/{i}.png",
        )
        for i in range(n)
    ]
    return Image.objects.bulk_create(rows, batch_size=2000)


def _run(dataset: Dataset, folder: Path, image_ids: list[int], vectors: np.ndarray, name: str) -> ModelRun:
    """A succeeded cosine run whose artefacts are written in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    np.save(folder / "embeddings.npy", v.astype(np.float32))
    np.save(folder / "image_ids.npy", np.asarray(image_ids, dtype=np.int64))
    return ModelRun.objects.create(
        dataset=dataset,
        name=name,
        method="timm",
        config={"metric": "cosine"},
        status=JobStatus.SUCCEEDED,
        artefact_dir=str(folder),
        n_embedded=len(image_ids),
        finished_at=timezone.now(),
    )


def _readers(tag: str, n: int) -> list:
    User = get_user_model()
    users = []
    for i in range(n):
        user = User(username=f"{tag}-r{i:02d}")
        user.set_unusable_password()
        user.save()
        user_set_roles(user=user, roles=[READER])
        users.append(user)
    return users


def _answer(
    mode: str, truth_ranks: np.ndarray, agree: bool, rng: np.random.Generator, k: int, scale: tuple[int, int]
) -> np.ndarray:
    """One reader's answer to one case (values per candidate position)."""
    m = len(truth_ranks)
    ranks = truth_ranks if agree else rng.permutation(m) + 1
    if mode == AnswerMode.CHOOSE_K:
        return (ranks <= k).astype(float)
    if mode == AnswerMode.RANK_ALL:
        return ranks.astype(float)
    lo, hi = scale
    if not agree:
        return rng.integers(lo, hi + 1, size=m).astype(float)
    return (hi - np.floor((truth_ranks - 1) * (hi - lo + 1) / m)).astype(float)


def generate_study(
    *,
    mode: str = AnswerMode.CHOOSE_K,
    n_cases: int = 12,
    n_candidates: int = 10,
    n_readers: int = 3,
    k: int = 5,
    q: float = 0.7,
    seed: int = 0,
    status: str = StudyStatus.CLOSED,
    run_dir: Path | None = None,
    modalities: tuple[str, ...] = ("CR", "CT"),
    classes: tuple[str, ...] = ("effusion", "normal", "nodule"),
    missing: dict | None = None,
    scale: tuple[int, int] = (1, 5),
    partial_method: bool = False,
    ground_truth: int | None = None,
    name: str | None = None,
    answers: np.ndarray | None = None,
    distances: np.ndarray | None = None,
) -> Generated:
    """A study with known answers (see the module docstring); `missing` = {reader index: [case indices]}.

    `answers` (C, M, R) replaces the generated answers (NaN = no item; a case left all-NaN by a
    reader gets no Answer row); `distances` (C, M) replaces the model run by a provenance-only
    method "model" with these distances.
    """
    if answers is not None:
        n_cases, n_candidates, n_readers = answers.shape
    n = next(_seq)
    tag = f"g{n}s{seed}{_RUN}"  # unique across processes too (the benchmark may reuse a database)
    rng = np.random.default_rng(seed)
    dataset = Dataset.objects.create(name=f"dataset-{tag}")
    per_case = 1 + n_candidates
    images = _images(dataset, n_cases * per_case, tag)
    ids = np.array([i.pk for i in images]).reshape(n_cases, per_case)
    vectors = rng.normal(size=(len(images), 8))
    run = None
    if distances is None:
        run = _run(dataset, run_dir / f"run-{tag}", ids.ravel().tolist(), vectors, f"vit-{tag}") if run_dir else None
        v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        vec = v.reshape(n_cases, per_case, -1)
        distances = 1.0 - np.einsum("cd,cmd->cm", vec[:, 0], vec[:, 1:])
    distances = np.asarray(distances, float)
    study = Study.objects.create(
        name=name or f"Generated {tag}",
        dataset=dataset,
        mode=mode,
        k=k if mode == AnswerMode.CHOOSE_K else None,
        rating_min=scale[0],
        rating_max=scale[1],
        status=status,
        seed=seed,
        builder="generated",
    )
    cases = Case.objects.bulk_create([Case(study=study, position=c, query_id=int(ids[c, 0])) for c in range(n_cases)])
    mods = [modalities[c % len(modalities)] for c in range(n_cases)]
    cls = [classes[c % len(classes)] for c in range(n_cases)]
    for modality in set(mods):
        Image.objects.filter(pk__in=[int(ids[c, 0]) for c in range(n_cases) if mods[c] == modality]).update(
            modality=modality
        )
    Label.objects.bulk_create(
        [Label(image_id=int(ids[c, 0]), name="finding", value_text=cls[c]) for c in range(n_cases)]
    )
    order = np.argsort(distances, axis=1, kind="stable")
    truth_ranks = np.argsort(order, axis=1) + 1
    cands = []
    for c, case in enumerate(cases):
        for j in range(n_candidates):
            prov = [
                {
                    "method": "timm" if run else "model",
                    "run": run.pk if run else None,
                    "rank": int(truth_ranks[c, j]),
                    "distance": float(distances[c, j]),
                }
            ]
            if partial_method and c % 2 == 0:
                prov.append(
                    {
                        "method": "bm25",
                        "run": None,
                        "rank": int(n_candidates - truth_ranks[c, j] + 1),
                        "distance": float(2.0 - distances[c, j]),
                    }
                )
            cands.append(Candidate(case=case, image_id=int(ids[c, j + 1]), position=j, provenance=prov))
    cands = Candidate.objects.bulk_create(cands, batch_size=2000)
    cand_ids = np.array([x.pk for x in cands]).reshape(n_cases, n_candidates)
    readers = _readers(tag, n_readers)
    if ground_truth is not None:
        study.ground_truth_reader = readers[ground_truth]
        study.save(update_fields=["ground_truth_reader"])
    values = _write_answers(
        study,
        cases,
        cand_ids,
        readers,
        truth_ranks,
        rng,
        mode=mode,
        k=k,
        q=q,
        scale=scale,
        missing=missing or {},
        given=answers,
    )
    return Generated(
        study,
        readers,
        run,
        np.array([c.pk for c in cases]),
        ids[:, 0].copy(),
        cand_ids,
        ids[:, 1:].copy(),
        distances,
        values,
        mods,
        cls,
    )


def _write_answers(
    study, cases, cand_ids, readers, truth_ranks, rng, *, mode, k, q, scale, missing, given=None
) -> np.ndarray:
    """Assignments, answers and items for every reader and case not listed in `missing` (or `given`)."""
    n_cases, n_cand = cand_ids.shape
    values = np.full((n_cases, n_cand, len(readers)), np.nan)
    assignments = Assignment.objects.bulk_create(
        [Assignment(study=study, reader=r, seed=1000 + i) for i, r in enumerate(readers)]
    )
    now = timezone.now()
    answers, pending = [], []
    for r, assignment in enumerate(assignments):
        skip = set(missing.get(r, ()))
        for c, case in enumerate(cases):
            if c in skip:
                continue
            values[c, :, r] = (
                _answer(mode, truth_ranks[c], rng.random() < q, rng, k, scale) if given is None else given[c, :, r]
            )
            if np.isnan(values[c, :, r]).all():
                continue
            answers.append(
                Answer(
                    assignment=assignment,
                    case=case,
                    submitted_at=now - timedelta(seconds=c),
                    active_ms=int(rng.integers(2000, 60000)),
                )
            )
            pending.append((c, r))
    answers = Answer.objects.bulk_create(answers, batch_size=2000)
    field_name = {AnswerMode.CHOOSE_K: "selected", AnswerMode.RANK_ALL: "rank", AnswerMode.RATE: "rating"}[mode]
    items = []
    for answer, (c, r) in zip(answers, pending):
        shown = rng.permutation(n_cand) + 1
        for j in range(n_cand):
            value = values[c, j, r]
            if np.isnan(value):
                continue
            value = bool(value) if mode == AnswerMode.CHOOSE_K else int(value)
            items.append(
                AnswerItem(
                    answer=answer, candidate_id=int(cand_ids[c, j]), shown_position=int(shown[j]), **{field_name: value}
                )
            )
    AnswerItem.objects.bulk_create(items, batch_size=5000)
    return values


def flag(study: Study, reader, case_index: int = 0, comment: str = "label looks wrong") -> CaseFlag:
    case = study.cases.order_by("position")[case_index]
    return CaseFlag.objects.create(assignment=study.assignments.get(reader=reader), case=case, comment=comment)
