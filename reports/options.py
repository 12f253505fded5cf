"""What a report computes: nDCG cut-offs, consensus tie-break, nDCG ties, bootstrap, model runs, query class.

`ReportOptions` is the identity of a report: its JSON form is stored with a `ReportRun`, shown
in the report, and hashed with the data fingerprint into the run's key. `options_parse`
validates user input (page, API, command line) and names the problem in an ApplicationError.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from core.errors import ApplicationError
from reports import stats as S

DEFAULT_P = (3, 10)
NDCG_TIES = {
    "broken": "ties in a method's distances broken by the lower canonical catalogue position (the default)",
    "averaged": "tie-averaged: each group of equal distances gets its mean gain (McSherry & Najork 2008)",
}
DEFAULT_RESAMPLES = 2000
MAX_RESAMPLES = 100_000
# Caps on list options: each nDCG cut-off and each model run is another pass over every case, reader and
# method, computed while the page waits (a request with 1,000 cut-offs ran until gunicorn killed the worker).
MAX_CUTOFFS = 10
MAX_CUTOFF = 1000
MAX_RUNS = 20
MAX_LIST_CHARS = 10_000  # the raw text of a list option, before it is split


@dataclass(frozen=True)
class ReportOptions:
    """What to compute: nDCG cut-offs, tie-break, the headline nDCG's ties, bootstrap, runs, the query class label."""

    p: tuple[int, ...] = DEFAULT_P
    tie_break: str = "index"
    ndcg_ties: str = "broken"
    n_resamples: int = 0
    seed: int = 0
    readers_too: bool = False
    level: float = 0.95
    runs: tuple[int, ...] | None = None
    class_label: str = ""

    def as_dict(self) -> dict:
        """JSON form (stored with a ReportRun, shown in the report)."""
        d = asdict(self)
        d["p"], d["runs"] = list(self.p), None if self.runs is None else list(self.runs)
        return d

    def key(self, fingerprint: str = "") -> str:
        """sha256 of the options (and a data fingerprint): the identity of a stored report."""
        text = json.dumps(self.as_dict(), sort_keys=True) + fingerprint
        return hashlib.sha256(text.encode()).hexdigest()

    def without_bootstrap(self) -> ReportOptions:
        """These options without bootstrap (point estimates only)."""
        return replace(self, n_resamples=0)

    def analysis(self) -> ReportOptions:
        """These options with the bootstrap settings reset: what the point estimates depend on."""
        return replace(self, n_resamples=0, seed=0, readers_too=False, level=0.95)


def _int_list(value: Any, name: str, *, low: int, high: int) -> tuple[int, ...]:
    """A list of ints from a list or a comma-separated string, each in [low, high]."""
    if isinstance(value, str) and len(value) > MAX_LIST_CHARS:
        raise ApplicationError(f"{name} is too long ({len(value)} characters; at most {MAX_LIST_CHARS}).")
    items = value.split(",") if isinstance(value, str) else list(value)
    if len(items) > MAX_LIST_CHARS:
        raise ApplicationError(f"{name} has too many items ({len(items)}).")
    try:
        out = tuple(int(str(v).strip()) for v in items if str(v).strip() != "")
    except (TypeError, ValueError):
        raise ApplicationError(f"{name} must be whole numbers separated by commas, not {value!r}.") from None
    if any(not low <= v <= high for v in out):
        raise ApplicationError(f"{name} must be between {low} and {high}.")
    return out


def options_parse(
    *,
    p: Any = None,
    tie_break: Any = None,
    ndcg_ties: Any = None,
    n_resamples: Any = None,
    seed: Any = None,
    readers_too: Any = None,
    level: Any = None,
    runs: Any = None,
    class_label: Any = None,
) -> ReportOptions:
    """Validated ReportOptions from user input (None = default); ApplicationError names the problem."""
    o = ReportOptions()
    out: dict[str, Any] = {}
    if p not in (None, "", []):
        out["p"] = tuple(sorted(set(_int_list(p, "p", low=1, high=MAX_CUTOFF)))) or DEFAULT_P
        if len(out["p"]) > MAX_CUTOFFS:
            raise ApplicationError(
                f"p names {len(out['p'])} nDCG cut-offs; a report computes at most {MAX_CUTOFFS} (e.g. p=3,5,10)."
            )
    if tie_break not in (None, ""):
        if tie_break not in S.TIE_BREAK_RULES:
            raise ApplicationError(f"tie_break must be one of {', '.join(sorted(S.TIE_BREAK_RULES))}.")
        out["tie_break"] = tie_break
    if ndcg_ties not in (None, ""):
        if ndcg_ties not in NDCG_TIES:
            raise ApplicationError(f"ndcg_ties must be one of {', '.join(sorted(NDCG_TIES))}.")
        out["ndcg_ties"] = ndcg_ties
    if n_resamples not in (None, ""):
        out["n_resamples"] = _int_list([n_resamples], "The number of resamples", low=0, high=MAX_RESAMPLES)[0]
    if seed not in (None, ""):
        out["seed"] = _int_list([seed], "The seed", low=0, high=2**32 - 1)[0]
    if readers_too not in (None, ""):
        out["readers_too"] = str(readers_too).lower() in ("1", "true", "on", "yes")
    if level not in (None, ""):
        out["level"] = _level(level)
    if runs not in (None, ""):
        out["runs"] = tuple(sorted(set(_int_list(runs, "runs", low=1, high=2**62))))
        if len(out["runs"]) > MAX_RUNS:
            raise ApplicationError(
                f"runs names {len(out['runs'])} model runs; a report compares at most {MAX_RUNS} at a time."
            )
    if class_label not in (None,):
        out["class_label"] = str(class_label).strip()[:100]
    return replace(o, **out)


def _level(value: Any) -> float:
    try:
        level = float(value)
    except (TypeError, ValueError):
        raise ApplicationError(f"The confidence level must be a number, not {value!r}.") from None
    if not 0.5 <= level < 1.0:
        raise ApplicationError("The confidence level must be at least 0.5 and below 1 (e.g. 0.95).")
    return level


def options_from_dict(data: dict) -> ReportOptions:
    """ReportOptions from their stored JSON form."""
    return options_parse(**{k: data.get(k) for k in ReportOptions.__dataclass_fields__ if k in data})
