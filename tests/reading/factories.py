"""Reader studies built directly with the ORM: images with real rendition files, cases, assignments."""

from __future__ import annotations

import hashlib
import itertools

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from readerstudy.models import AnswerMode, Assignment, Candidate, Case, Study, StudyQuestion, StudyStatus
from retrieval.models import Dataset, Image, Label, ModelRun
from retrieval.runs.ranking import saliency_path
from tests.factories import png_bytes

_seq = itertools.count(1)


def image_make(
    *, dataset: Dataset, name: str, seed: int, labels: dict | None = None, size: int = 48, pk: int | None = None
) -> Image:
    """An image row (database id `pk`, default: the next one) with rendition and thumbnail PNGs in MEDIA_ROOT."""
    data = png_bytes(seed, size=size)
    digest = hashlib.sha256(data + name.encode()).hexdigest()
    paths = {}
    for kind in ("original", "rendition", "thumbnail"):
        paths[kind] = default_storage.save(f"datasets/{dataset.pk}/{kind}/{digest[:2]}/{digest}.png", ContentFile(data))
    image = Image.objects.create(
        pk=pk,
        dataset=dataset,
        source_name=name,
        source_format="png",
        width=size,
        height=size,
        content_hash=digest,
        **paths,
    )
    for label, value in (labels or {}).items():
        num = value if isinstance(value, (int, float)) else None
        Label.objects.create(image=image, name=label, value_num=num, value_text="" if num is not None else value)
    return image


def study_make(
    *,
    mode: str = AnswerMode.CHOOSE_K,
    k: int | None = 2,
    n_cases: int = 3,
    n_candidates: int = 5,
    status: str = StudyStatus.OPEN,
    readers=(),
    questions=(),
    marker: str = "",
    image_pk_base: int | None = None,
    **fields,
) -> Study:
    """A study with n_cases cases of n_candidates candidates each; `marker` tags everything secret.

    The marker goes into image file names, labels, provenance methods and the dataset name, so a
    test can search a reader's page or JSON for it. With `image_pk_base`, case c's query gets
    image id base + 100·c and its candidate of rank j (0-based) base + 100·c + j + 1: ids in rank
    order, as an import or a builder can produce, and long enough to be recognised in any text.
    """
    n = next(_seq)
    tag = marker or f"s{n}"
    dataset = Dataset.objects.create(name=f"dataset-{tag}-{n}")
    study = Study.objects.create(
        name=fields.pop("name", f"Study {n}"),
        dataset=dataset,
        mode=mode,
        k=k if mode == AnswerMode.CHOOSE_K else None,
        status=status,
        seed=n,
        **fields,
    )
    for i, q in enumerate(questions):
        StudyQuestion.objects.create(study=study, position=i, **q)
    for c in range(n_cases):
        base = None if image_pk_base is None else image_pk_base + 100 * c
        query = image_make(
            dataset=dataset,
            name=f"{tag}-query-{c}.png",
            seed=1000 * n + 100 * c,
            labels={f"finding_{tag}": 1, "view": f"PA-{tag}"},
            pk=base,
        )
        case = Case.objects.create(study=study, position=c, query=query)
        for j in range(n_candidates):
            image = image_make(
                dataset=dataset,
                name=f"{tag}-cand-{c}-{j}.png",
                seed=1000 * n + 100 * c + j + 1,
                labels={f"finding_{tag}": j % 2, "diagnosis": f"label-{tag}-{j}"},
                pk=None if base is None else base + j + 1,
            )
            Candidate.objects.create(
                case=case,
                image=image,
                position=j,
                provenance=[{"method": f"method-{tag}", "run": None, "rank": j + 1, "distance": 0.123456 + j}],
            )
    for reader in readers:
        assign(study, reader)
    return study


def assign(study: Study, reader, seed: int | None = None) -> Assignment:
    return Assignment.objects.create(study=study, reader=reader, seed=seed if seed is not None else 7919 * next(_seq))


def answer_payload(study: Study, case: Case, assignment: Assignment | None = None) -> dict:
    """A valid complete answer (service shape, candidate ids) for the study's mode and questions."""
    ids = list(case.candidates.order_by("pk").values_list("pk", flat=True))
    payload: dict = {}
    if study.mode == AnswerMode.CHOOSE_K:
        payload["selected"] = ids[: study.k]
    elif study.mode == AnswerMode.RANK_ALL:
        payload["ranking"] = list(reversed(ids))
    else:
        payload["ratings"] = {
            cid: study.rating_min + i % (study.rating_max - study.rating_min + 1) for i, cid in enumerate(ids)
        }
    answers = []
    for q in study.questions.all():
        targets = ([None] if q.applies_to != "candidates" else []) + (ids if q.applies_to != "query" else [])
        answers += [{"question": q.key, "candidate": t, "value": q.choices[0]} for t in targets]
    if answers:
        payload["image_answers"] = answers
    return payload


def saliency_run_make(
    dataset: Dataset,
    *,
    name: str = "cnn",
    method: str = "densenet_cnn",
    saliency: str = "grad_cam",
    status: str = "succeeded",
    overlays=(),
) -> ModelRun:
    """A model run of `dataset` with saliency overlay PNGs written for the image ids in `overlays` (no training)."""
    run = ModelRun.objects.create(
        dataset=dataset, name=name, method=method, status=status, config={"metric": "l2", "saliency": saliency}
    )
    for image_id in overlays:
        path = saliency_path(run, image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(overlay_bytes(image_id))
    return run


def overlay_bytes(image_id: int) -> bytes:
    """The overlay PNG saliency_run_make writes for an image (colour, so it differs from any rendition)."""
    return png_bytes(50_000 + image_id, size=24, mode="RGB")
