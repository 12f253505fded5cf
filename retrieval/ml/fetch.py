"""Fetching a model's pretrained weights into the local Hugging Face cache: the one place that downloads.

Runs never download (retrieval.ml sets HF_HUB_OFFLINE; retrieval.ml.weights reads the cache only). Where
the server may reach the hub (settings.WEIGHTS_DOWNLOAD), `manage.py fetch_weights MODEL` and the
fetch-weights task call `fetch_weights`, which lifts the offline switch for its own downloads only and
puts the files where the runs look for them (retrieval.ml.weights.hf_cache_dir). Where it may not, or
when the hub cannot be reached, `WeightsFetchError` says exactly which file to copy where.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import timm
from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

from .backbones import OPEN_CLIP_PREFIX
from .clip import OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS
from .weights import HF_WEIGHT_FILES, cached_hf_file, hf_cache_dir

DEFAULT_ENDPOINT = "https://huggingface.co"


class WeightsFetchError(RuntimeError):
    """The weights cannot be fetched here; the message says which file to copy where instead."""


@dataclass(frozen=True)
class WeightFiles:
    """What a model needs in the cache: one file of each group (alternatives in order of preference)."""

    model: str
    repo_id: str
    revision: str | None
    groups: tuple[tuple[str, ...], ...]


def weight_files(model: str) -> WeightFiles:
    """The Hugging Face repository and files a model's pretrained weights come from (as the runs look for them)."""
    if model.startswith(OPEN_CLIP_PREFIX):
        hub = model.removeprefix(OPEN_CLIP_PREFIX)
        if not hub.startswith("hf-hub:"):
            raise WeightsFetchError(f"{model!r}: only open_clip models named hf-hub:ORG/REPO can be fetched.")
        repo, _, revision = hub.removeprefix("hf-hub:").partition("@")
        return WeightFiles(model, repo, revision or None, ((OPEN_CLIP_CONFIG,), OPEN_CLIP_WEIGHTS))
    if model.startswith("hf-hub:"):
        repo, _, revision = model.removeprefix("hf-hub:").partition("@")
        return WeightFiles(model, repo, revision or None, (("config.json",), HF_WEIGHT_FILES))
    if not timm.is_model(model):
        raise WeightsFetchError(f"timm has no model called {model!r}.")
    try:
        cfg = timm.models.get_pretrained_cfg(model)
    except RuntimeError as exc:
        raise WeightsFetchError(f"timm knows no pretrained weights called {model!r}: {exc}") from None
    if cfg is None or not cfg.hf_hub_id:
        where = f" (timm downloads them from {cfg.url})" if cfg is not None and cfg.url else ""
        raise WeightsFetchError(f"The pretrained weights of {model!r} are not on the Hugging Face hub{where}.")
    repo, _, revision = cfg.hf_hub_id.partition("@")
    files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HF_WEIGHT_FILES
    return WeightFiles(model, repo, revision or None, (files,))


def cached(files: WeightFiles) -> list[Path] | None:
    """The cached file of every group, or None when one is missing."""
    found = [cached_hf_file(files.repo_id, group, revision=files.revision) for group in files.groups]
    return None if any(f is None for f in found) else found


def copy_instructions(files: WeightFiles, *, endpoint: str | None = None) -> str:
    """Which file to copy where, for a server that may not (or cannot) download."""
    endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
    revision = files.revision or "main"
    names = " and ".join(group[0] for group in files.groups)
    urls = ", ".join(f"{endpoint}/{files.repo_id}/resolve/{revision}/{group[0]}" for group in files.groups)
    folder = "models--" + files.repo_id.replace("/", "--")
    return (
        f"Copy {names} of {files.repo_id} into this server's Hugging Face cache by hand: on a machine with network "
        f"run `hf download {files.repo_id} {' '.join(g[0] for g in files.groups)} --revision {revision} "
        f"--cache-dir hf-cache` (the files are {urls}), then copy the folder hf-cache/{folder} to "
        f"{hf_cache_dir() / folder} (the cache of the web process and the workers: HF_HOME/hub)."
    )


@contextmanager
def _online() -> Iterator[None]:
    """Lift huggingface_hub's offline switch (HF_HUB_OFFLINE, set by retrieval.ml) for this call only."""
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def fetch_weights(model: str, *, allowed: bool, endpoint: str | None = None, tqdm_class=None) -> list[Path]:
    """Download a model's weight files into the Hugging Face cache (a progress bar per file, on stderr or through
    `tqdm_class`); the cached files at once when they are there. `allowed`: the server may reach the hub
    (settings.WEIGHTS_DOWNLOAD); otherwise, and when the hub cannot be reached, WeightsFetchError says which file
    to copy where. `endpoint`: the hub's URL (HF_ENDPOINT, read when called)."""
    files = weight_files(model)
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    if (found := cached(files)) is not None:
        return found
    if not allowed:
        raise WeightsFetchError(
            f"Weights for {model!r} are not cached and this server may not download them (WEIGHTS_DOWNLOAD is off). "
            + copy_instructions(files, endpoint=endpoint)
        )
    out = []
    with _online():
        for group in files.groups:
            out.append(_fetch_one(files, group, endpoint=endpoint, tqdm_class=tqdm_class))
    return out


def _fetch_one(files: WeightFiles, group: tuple[str, ...], *, endpoint: str, tqdm_class) -> Path:
    missing = []
    for filename in group:
        try:
            path = hf_hub_download(
                files.repo_id,
                filename,
                revision=files.revision,
                cache_dir=hf_cache_dir(),
                endpoint=endpoint,
                tqdm_class=tqdm_class,
            )
            return Path(path)
        except LocalEntryNotFoundError as exc:  # the hub cannot be reached (a subclass of EntryNotFoundError)
            raise WeightsFetchError(
                f"The Hugging Face hub at {endpoint} cannot be reached ({exc.__cause__ or exc}). "
                + copy_instructions(files, endpoint=endpoint)
            ) from None
        except EntryNotFoundError:
            missing.append(filename)
        except RepositoryNotFoundError:
            raise WeightsFetchError(f"The hub at {endpoint} has no repository {files.repo_id!r}.") from None
        except HfHubHTTPError as exc:
            raise WeightsFetchError(f"The hub at {endpoint} refused {files.repo_id}/{filename}: {exc}") from None
    raise WeightsFetchError(f"The repository {files.repo_id} at {endpoint} has none of {', '.join(missing)}.")
