"""The retrieval methods a model run can use, and what each needs (no torch imports here).

A method is a name recorded on `ModelRun.method` with a configuration in `ModelRun.config`.
`METHODS` says whether it trains, how it embeds, and which paper it reproduces; the worker's
stages (retrieval.runs.stages) carry it out. Embeddings are L2-normalised (config features
"l2_normalised", where metric "l2" ranks like cosine) except for `RAW_L2_METHODS` with metric "l2",
which keep the raw penultimate features as papers 001/003 rank them (features "raw").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from core.errors import ApplicationError


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    trains: bool
    embeds: bool  # False: ranks directly (SSIM)
    default_metric: str
    paper: str


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("timm", "Off-the-shelf timm backbone features", False, True, "cosine", "002 (Denner et al.)"),
        Method(
            "finetune",
            "Fine-tuned timm classifier/regressor embeddings (e.g. a ViT per finding)",
            True,
            True,
            "cosine",
            "000 (Thakrar et al.)",
        ),
        Method(
            "densenet_cnn",
            "DenseNet-121 classifier, raw penultimate 1024-d features, Euclidean",
            True,
            True,
            "l2",
            "001/003 CNN baseline",
        ),
        Method(
            "attention",
            "DenseNet-121 with multi-level dual attention, raw penultimate features, Euclidean",
            True,
            True,
            "l2",
            "003 (Silva et al.)",
        ),
        Method(
            "igcbir",
            "IG-CBIR: a second DenseNet fine-tuned on the classifier's saliency maps",
            True,
            True,
            "l2",
            "001/003 (interpretability-guided CBIR)",
        ),
        Method(
            "ensemble",
            "Per-finding classifiers ensembled into one multi-label embedding",
            False,
            True,
            "cosine",
            "000 (Thakrar et al.)",
        ),
        Method("ssim", "Structural similarity on the resized images", False, False, "ssim", "001/003 baseline"),
        Method(
            "rating_metric",
            "Rating-based metric learning: a 128-d embedding trained on readers' rating vectors "
            "(logcosh rating regression + distance-matrix KL)",
            True,
            True,
            "l2",
            "004 (Loyman & Greenspan)",
        ),
    )
}

TASKS = ("binary", "multilabel", "regression")
RAW_L2_METHODS = ("densenet_cnn", "attention", "igcbir")  # papers 001/003: Euclidean on raw penultimate features
FEATURES = ("l2_normalised", "raw")
#: Input normalisation: the backbone's own mean/std (timm's data config), or the mean/std of the
#: dataset's own images (split's train part), computed when the run starts and recorded in its config.
NORMALISATIONS = ("backbone", "dataset")


def normalised_features(config: dict) -> bool:
    """Whether a run's embeddings are L2-normalised (every run before config 'features' existed was)."""
    return config.get("features", "l2_normalised") != "raw"


def method_get(name: str) -> Method:
    """The method of that name, or a clear error listing the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise ApplicationError(f"Unknown retrieval method {name!r}; known: {', '.join(sorted(METHODS))}.") from None


WEIGHT_KEYWORDS = ("pretrained", "random")
WEIGHTS_REFUSED = (
    "weights must be 'pretrained', 'random' or the name of a checkpoint file in the server's checkpoint "
    "folder (WEIGHTS_DIR); an administrator places checkpoints there."
)


def weights_checked(value) -> str:
    """'pretrained', 'random', or a checkpoint's name relative to WEIGHTS_DIR (what the run's config stores).

    Anything else — a path outside the folder, `..`, a link leading out, a file that is not there — gets the
    same message, so the answer never tells whether a file exists elsewhere on the server.
    """
    if value in WEIGHT_KEYWORDS:
        return value
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise ApplicationError(WEIGHTS_REFUSED)
    root = Path(settings.WEIGHTS_DIR).resolve()
    path = (root / value.strip()).resolve()  # an absolute value stays itself
    if not path.is_relative_to(root) or path == root or not path.is_file():
        raise ApplicationError(WEIGHTS_REFUSED)
    return path.relative_to(root).as_posix()


def weights_source(value: str) -> str:
    """What the network builder loads: the keyword, or the checkpoint's path in WEIGHTS_DIR (checked again)."""
    if value in WEIGHT_KEYWORDS:
        return value
    return str(Path(settings.WEIGHTS_DIR).resolve() / weights_checked(value))


def _holds_nul(value) -> bool:
    """True when a NUL character is in any key or text of a JSON value."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


def config_validate(method: str, config: dict) -> dict:
    """Fill defaults and check a run configuration before anything is queued."""
    m = method_get(method)
    if not isinstance(config, dict):
        raise ApplicationError("A run's configuration must be an object (a JSON object of options).")
    if _holds_nul(config):  # PostgreSQL's jsonb cannot hold a NUL character
        raise ApplicationError("A run's configuration cannot contain a NUL character (\\x00).")
    cfg = {"metric": m.default_metric, "seed": 0, **config}
    if m.embeds:
        cfg.setdefault("backbone", "resnet18")
        cfg["weights"] = weights_checked(cfg.get("weights", "pretrained"))
        cfg.setdefault("resize", 256)
        cfg.setdefault("crop", 224)
        cfg.setdefault("batch_size", 32)
        cfg.setdefault("index", "auto")
        if cfg["metric"] not in ("cosine", "l2"):
            raise ApplicationError("metric must be cosine or l2.")
        cfg.setdefault("features", "raw" if m.name in RAW_L2_METHODS and cfg["metric"] == "l2" else "l2_normalised")
        if cfg["features"] not in FEATURES:
            raise ApplicationError(f"features must be one of {', '.join(FEATURES)}.")
        if cfg["features"] == "raw" and cfg["metric"] != "l2":
            raise ApplicationError("Raw (unnormalised) features need the l2 metric; cosine normalises them anyway.")
        cfg.setdefault("normalisation", "backbone")
        if cfg["normalisation"] not in NORMALISATIONS:
            raise ApplicationError(f"normalisation must be one of {', '.join(NORMALISATIONS)}.")
        if cfg["normalisation"] == "dataset" and m.name in ("igcbir", "ensemble"):
            raise ApplicationError(
                f"{m.name} runs take their inputs from other runs: normalisation 'dataset' "
                "applies to the runs that see images (the classifier, the members)."
            )
    if m.name in ("densenet_cnn", "attention"):
        cfg["backbone"] = (
            "densenet121" if m.name == "densenet_cnn" or cfg.get("backbone") == "resnet18" else cfg["backbone"]
        )
    if m.name == "igcbir":
        if not isinstance(cfg.get("classifier_run"), int):
            raise ApplicationError("IG-CBIR needs the id of a finished classifier run (config 'classifier_run').")
        cfg.setdefault("input_saliency", "deep_taylor")
        if cfg["input_saliency"] not in ("deep_taylor", "grad_cam", "gradient_x_input"):
            raise ApplicationError("input_saliency must be deep_taylor, grad_cam or gradient_x_input.")
        cfg["backbone"] = "densenet121" if cfg.get("backbone") == "resnet18" else cfg["backbone"]
    if m.name == "ensemble":
        runs = cfg.get("runs") or []
        if len(runs) < 2 or not all(isinstance(r, int) for r in runs):
            raise ApplicationError("An ensemble needs the ids of at least two fine-tuned runs (config 'runs').")
    if m.name == "rating_metric":
        return _rating_config(cfg)
    if m.trains:
        cfg.setdefault("saliency", "grad_cam")
        cfg.setdefault("saliency_max", 200)
        task = cfg.setdefault("task", "binary")
        if task not in TASKS:
            raise ApplicationError(f"task must be one of {', '.join(TASKS)}.")
        if task == "binary" and not cfg.get("positive"):
            raise ApplicationError("A binary task needs at least one positive label (e.g. Cardiomegaly).")
        if task == "binary":
            cfg.setdefault("negative", ["No Finding"])
            cfg.setdefault("undersample", True)
        if task == "multilabel" and not cfg.get("labels"):
            raise ApplicationError("A multi-label task needs its label names.")
        if task == "regression" and not cfg.get("target"):
            raise ApplicationError("A regression task needs a numeric target label (e.g. weight).")
        cfg.setdefault("epochs", 5)
        cfg.setdefault("lr", 1e-4)
        cfg.setdefault("optimizer", "adamw")
    if m.name == "ssim":
        cfg.setdefault("size", 128)
        cfg.setdefault("eval_max", 300)  # offline evaluation is O(n²) SSIM pairs: a seeded sample above this
    return cfg


def _rating_config(cfg: dict) -> dict:
    """Paper 004's defaults: 128-d embedding, Adam 1e-3, the Table 1 weight schedule, KL of +distances at T = 1."""
    from_paper = [[1, 0.9, 0.1], [21, 0.5, 0.5], [41, 0.0, 0.1]]  # = retrieval.ml.ratings.PAPER_SCHEDULE
    cfg["task"] = "ratings"
    cfg["saliency"] = ""  # no classifier: Grad-CAM overlays do not apply
    cfg.setdefault("embed_dim", 128)
    cfg.setdefault("epochs", 60)
    cfg.setdefault("lr", 1e-3)
    cfg.setdefault("schedule", from_paper)
    cfg.setdefault("temperature", 1.0)
    cfg.setdefault("negate", False)
    cfg.setdefault("target_scale", "auto")  # 1 / the largest training set distance: rating distances meet L2 ≤ 2
    cfg.setdefault("semi_supervised", False)
    cfg.setdefault("regressor_epochs", cfg["epochs"])
    schedule = cfg["schedule"]
    if (
        not isinstance(schedule, list)
        or not schedule
        or any(
            not isinstance(s, list) or len(s) != 3 or not all(isinstance(v, (int, float)) for v in s) for s in schedule
        )
        or schedule[0][0] != 1
    ):
        raise ApplicationError(
            "schedule must be a list of [first epoch, regression weight, similarity weight] starting at epoch 1."
        )
    if cfg["target_scale"] != "auto" and not (
        isinstance(cfg["target_scale"], (int, float)) and cfg["target_scale"] > 0
    ):
        raise ApplicationError("target_scale must be 'auto' or a positive number.")
    if not isinstance(cfg["embed_dim"], int) or cfg["embed_dim"] < 2:
        raise ApplicationError("embed_dim must be an integer ≥ 2.")
    names = cfg.get("characteristics")
    if names is not None and (not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names)):
        raise ApplicationError("characteristics must be a list of rated characteristic names.")
    return cfg
