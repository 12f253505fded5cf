"""Case builders: which queries a study shows, and which catalogue each query gets.

Pure functions (numpy, no Django): ids and callables in, case specs out, so every builder is
testable on arrays alone and a study can be rebuilt exactly from its recorded seed.

A case spec is ``(query_id, [(image_id, provenance), ...])`` in canonical catalogue order. A
provenance is a list of entries ``{"method", "run", "rank", "distance", ...}``, one per method
that proposed the image (several for pooled catalogues). Canonical order is always a seeded
shuffle (unless a case list gives explicit positions), so the stored position never reveals a
model's rank: paper 000 shows the 5 closest and 5 farthest images unordered.

Randomness comes from ``numpy.random.default_rng([seed, purpose, query_id])``: each query's
catalogue depends only on the seed and that query, not on the other queries or their order; except the
far images of k nearest + k farthest with a far band, drawn across the study (see `_far_draw`).

Builders and the papers they reproduce:
  knn_and_farthest  k nearest + k far under one model run, shuffled; far drawn across the study
                    so that recurrence in other cases does not tell near from far  (paper 000)
  stratified_random random catalogue of N stratified by class from a pool      (papers 001/003)
  top_n             the N nearest under one model run, shuffled
  pooled            the top candidates of several methods, de-duplicated, so readers cannot
                    tell which method proposed what
  case list (CSV)   query + candidate ids or file names chosen elsewhere
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Provenance = dict[str, Any]
CandidateSpec = tuple[int, list[Provenance]]
CaseSpec = tuple[int, list[CandidateSpec]]
# neighbours_fn(query_id, k, farthest=False) -> [(image id, rank, distance)], rank 1 = nearest.
NeighboursFn = Callable[..., list[tuple[int, int, float]]]

ALLOCATIONS = ("proportional", "equal")
MAX_SEED = 2**63 - 1
MAX_REPORTED_ERRORS = 50

# Salts of the seeded generators, one per purpose, so that two purposes never share a stream.
_QUERIES, _SHUFFLE, _DRAW, _CASE_LIST, _FAR = 0, 1, 2, 3, 4


class BuildError(ValueError):
    """A build that cannot be done as asked; the message is meant for the coordinator."""

    def __init__(self, message: str, errors: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or []


class CaseListError(BuildError):
    """A case list with problems; `errors` holds one message per offending line."""

    def __init__(self, errors: list[str]):
        shown = errors[:MAX_REPORTED_ERRORS]
        more = len(errors) - len(shown)
        text = "; ".join(shown) + (f"; … and {more} more" if more else "")
        super().__init__(f"The case list has {len(errors)} problem{'s' if len(errors) != 1 else ''}: {text}", errors)


def check_seed(seed: int) -> int:
    """A seed as stored (0 ≤ seed < 2**63), or BuildError."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MAX_SEED:
        raise BuildError(f"The seed must be a whole number between 0 and {MAX_SEED}.")
    return int(seed)


def _rng(seed: int, purpose: int, *salt: int) -> np.random.Generator:
    return np.random.default_rng([check_seed(seed), purpose, *[int(s) for s in salt]])


def _shuffled(items: list, rng: np.random.Generator) -> list:
    return [items[i] for i in rng.permutation(len(items))]


def allocate(sizes: Mapping[Hashable, int], n: int, mode: str = "proportional") -> dict[Hashable, int]:
    """How many of n to draw from each class: proportional (largest remainder) or equal (capped)."""
    if mode not in ALLOCATIONS:
        raise BuildError(f"Unknown allocation {mode!r}; use one of {', '.join(ALLOCATIONS)}.")
    total = sum(sizes.values())
    if n > total:
        raise BuildError(f"Asked for {n} images but the pool has only {total}.")
    keys = sorted(sizes, key=str)
    if mode == "proportional":
        exact = {c: n * sizes[c] / total for c in keys}
        counts = {c: int(np.floor(exact[c])) for c in keys}
        by_remainder = sorted(keys, key=lambda c: (-(exact[c] - counts[c]), str(c)))
        for c in by_remainder[: n - sum(counts.values())]:
            counts[c] += 1
        return counts
    counts = {c: 0 for c in keys}
    left = n
    while left:
        open_ = [c for c in keys if counts[c] < sizes[c]]
        share = max(left // len(open_), 1)
        for c in sorted(open_, key=lambda c: (-(sizes[c] - counts[c]), str(c))):
            take = min(share, sizes[c] - counts[c], left)
            counts[c] += take
            left -= take
            if not left:
                break
    return counts


def _by_class(ids: Iterable[int], classes: Mapping[int, Hashable]) -> dict[Hashable, list[int]]:
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i in sorted(set(ids)):
        if i in classes and classes[i] is not None:
            groups[classes[i]].append(i)
    return dict(groups)


def _stratified_draw(
    groups: Mapping[Hashable, list[int]], n: int, rng: np.random.Generator, allocation: str
) -> list[tuple[int, Hashable]]:
    counts = allocate({c: len(v) for c, v in groups.items()}, n, allocation)
    drawn = [(int(i), c) for c in sorted(groups, key=str) for i in rng.choice(groups[c], size=counts[c], replace=False)]
    return _shuffled(drawn, rng)


def sample_queries(
    pool_ids: Sequence[int],
    n: int,
    *,
    seed: int,
    strata: Mapping[int, Hashable] | None = None,
    allocation: str = "proportional",
) -> list[int]:
    """n query ids drawn from the pool: simple random, or stratified by class (strata: id → class)."""
    if n < 1:
        raise BuildError("A study needs at least one query.")
    pool = sorted(set(int(i) for i in pool_ids))
    rng = _rng(seed, _QUERIES)
    if strata is None:
        if n > len(pool):
            raise BuildError(f"Asked for {n} queries but the query pool has only {len(pool)} images.")
        return [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]
    groups = _by_class(pool, strata)
    if not groups:
        raise BuildError("No image of the query pool has a class to stratify by.")
    if n > sum(len(v) for v in groups.values()):
        raise BuildError(
            f"Asked for {n} queries but only {sum(len(v) for v in groups.values())} "
            "images of the query pool have a class."
        )
    return [i for i, _ in _stratified_draw(groups, n, rng, allocation)]


def _entry(method: str, run: int | None, rank: int | None, distance: float | None, **extra) -> Provenance:
    return {"method": method, "run": run, "rank": rank, "distance": distance, **extra}


def _neighbours(fn: NeighboursFn, query_id: int, k: int, *, farthest: bool = False) -> list[tuple[int, int, float]]:
    found = [(int(i), int(r), float(d)) for i, r, d in fn(query_id, k, farthest=farthest)]
    if len(found) < k:
        raise BuildError(f"Query {query_id}: only {len(found)} candidate images under the model, {k} needed.")
    return found


def knn_and_farthest(
    query_ids: Sequence[int],
    neighbours_fn: NeighboursFn,
    k: int,
    *,
    seed: int,
    method: str = "model",
    run: int | None = None,
    far_band: int | None = None,
) -> list[CaseSpec]:
    """Paper 000: per query, its k nearest and k far images under a model, shuffled together.

    The nearest are the true k nearest. The far ones are drawn from the query's far band (its `far_band`
    farthest images; default k, i.e. exactly the k farthest) across the whole study, so that an image's
    recurrence in other cases says nothing about the set it belongs to: the same outliers are far from
    every query, and "seen in another case ⇒ far" was right for 92-97 % of candidates (issue 12, finding 4).
    See `_far_draw`; `recurrence` measures the result. Each far candidate's provenance keeps its true rank.
    """
    if k < 1:
        raise BuildError("k (nearest and farthest each) must be at least 1.")
    band_size = max(k, int(far_band or k))
    near: dict[int, list[tuple[int, int, float]]] = {}
    bands: dict[int, list[tuple[int, int, float]]] = {}
    for q in query_ids:
        q = int(q)
        near[q] = _neighbours(neighbours_fn, q, k)
        band = _neighbours(neighbours_fn, q, band_size, farthest=True)  # farthest first
        near_ids = {i for i, _, _ in near[q]}
        if near_ids & {i for i, _, _ in band[:k]}:
            raise BuildError(
                f"Query {q}: the candidate pool is too small for {k} nearest + {k} farthest "
                f"distinct images (at least {2 * k} needed)."
            )
        bands[q] = [entry for entry in band if entry[0] not in near_ids]
    far = _far_draw([int(q) for q in query_ids], near, bands, k, seed)
    cases = []
    for q in query_ids:
        q = int(q)
        catalogue = [(i, [_entry(method, run, r, d, set="nearest")]) for i, r, d in near[q]]
        catalogue += [(i, [_entry(method, run, r, d, set="farthest")]) for i, r, d in far[q]]
        cases.append((q, _shuffled(catalogue, _rng(seed, _SHUFFLE, q))))
    return cases


def _recurring(counts: Mapping[int, int], ids: Iterable[int]) -> int:
    return sum(1 for i in ids if counts[i] >= 2)


def _far_draw(
    query_ids: list[int],
    near: Mapping[int, list[tuple[int, int, float]]],
    bands: Mapping[int, list[tuple[int, int, float]]],
    k: int,
    seed: int,
) -> dict[int, list[tuple[int, int, float]]]:
    """k far images per query from its band, with as many recurring across cases as the nearest have.

    The nearest sets are what the model says; some of their images recur (hubs near many queries), a
    share `r` of the near candidates. The far draw goes through the queries in a seeded order and, slot by
    slot, keeps the share of recurring far candidates on pace with `r`: above pace it takes an image no
    other case shows (fresh), below it one that another case shows as far already. Images that are near in
    another case are left out of the band while it has enough without them. So "recurs" is as likely for
    a far candidate as for a near one, wherever the bands hold enough fresh images (a small collection
    may leave far images recurring more; `recurrence` reports what was built).
    """
    rng = _rng(seed, _FAR, len(query_ids))
    near_uses: Counter[int] = Counter(i for q in query_ids for i, _, _ in near[q])
    n_near = len(query_ids) * k
    target_share = _recurring(near_uses, (i for q in query_ids for i, _, _ in near[q])) / n_near if n_near else 0.0
    far_uses: Counter[int] = Counter()

    def recurring_far_slots(i: int, extra: int = 0) -> int:  # far slots of image i that recur
        uses = far_uses[i] + extra
        return uses if near_uses[i] + uses >= 2 else 0

    filled, recurring = 0, 0
    far: dict[int, list[tuple[int, int, float]]] = {}
    for q in [query_ids[j] for j in rng.permutation(len(query_ids))]:
        options = [e for e in bands[q] if e[0] not in near_uses]
        if len(options) < k:
            options = list(bands[q])
        chosen: list[tuple[int, int, float]] = []
        for _ in range(k):
            taken = {i for i, _, _ in chosen}
            left = [e for e in options if e[0] not in taken]
            gains = {e[0]: recurring_far_slots(e[0], 1) - recurring_far_slots(e[0]) for e in left}
            need = target_share * (filled + 1) - recurring
            if need >= 0.5:  # below pace: the pick that brings the share closest to it, least used first
                best = min(abs(need - g) for g in gains.values())
                pick = [e for e in left if abs(need - gains[e[0]]) == best]
                low = min(near_uses[e[0]] + far_uses[e[0]] for e in pick)
                pick = [e for e in pick if near_uses[e[0]] + far_uses[e[0]] == low]
            else:  # on pace: an image no other case shows, else the least used of the band
                low = min(near_uses[e[0]] + far_uses[e[0]] for e in left)
                pick = [e for e in left if near_uses[e[0]] + far_uses[e[0]] == low]
            entry = pick[int(rng.integers(len(pick)))]
            recurring += gains[entry[0]]
            chosen.append(entry)
            far_uses[entry[0]] += 1
            filled += 1
        far[q] = sorted(chosen, key=lambda e: -e[1])  # canonical (farthest first); the catalogue is shuffled
    return far


def recurrence(cases: Sequence[CaseSpec]) -> dict[str, Any]:
    """How often each set's candidates recur in other cases of a study, and how well "recurs" predicts "far".

    `sets` maps each provenance set ("nearest", "farthest"; "all" for builders without sets) to its
    candidates, how many of them show an image that another case shows too, and the share. `rule_accuracy`
    (k nearest + k farthest only) is the accuracy of guessing "far" for every recurring candidate and "near"
    for every other: 0.5 when recurrence carries no information about the set.
    """
    cases_of: dict[int, set[int]] = defaultdict(set)
    for n, (_, catalogue) in enumerate(cases):
        for i, _ in catalogue:
            cases_of[i].add(n)
    sets: dict[str, dict[str, Any]] = {}
    hits = 0
    for _, catalogue in cases:
        for i, prov in catalogue:
            name = str(prov[0].get("set", "all")) if prov else "all"
            row = sets.setdefault(name, {"candidates": 0, "recurring": 0})
            recurs = len(cases_of[i]) >= 2
            row["candidates"] += 1
            row["recurring"] += recurs
            hits += recurs == (name == "farthest")
    for row in sets.values():
        row["rate"] = round(row["recurring"] / row["candidates"], 4) if row["candidates"] else 0.0
    out: dict[str, Any] = {"sets": sets}
    if set(sets) == {"nearest", "farthest"}:
        total = sum(row["candidates"] for row in sets.values())
        out["rule_accuracy"] = round(hits / total, 4) if total else None
    return out


def top_n(
    query_ids: Sequence[int],
    neighbours_fn: NeighboursFn,
    n: int,
    *,
    seed: int,
    method: str = "model",
    run: int | None = None,
) -> list[CaseSpec]:
    """Per query, its n nearest images under a model, shuffled (the canonical order hides the rank)."""
    if n < 1:
        raise BuildError("The catalogue size must be at least 1.")
    return [
        (
            int(q),
            _shuffled(
                [(i, [_entry(method, run, r, d)]) for i, r, d in _neighbours(neighbours_fn, q, n)],
                _rng(seed, _SHUFFLE, q),
            ),
        )
        for q in query_ids
    ]


def stratified_random(
    query_ids: Sequence[int],
    pool_ids: Sequence[int],
    classes: Mapping[int, Hashable],
    n: int,
    *,
    seed: int,
    allocation: str = "proportional",
) -> list[CaseSpec]:
    """Papers 001/003: per query, a random catalogue of n from the pool, stratified by class, query excluded."""
    if n < 1:
        raise BuildError("The catalogue size must be at least 1.")
    groups = _by_class(pool_ids, classes)
    cases = []
    for q in query_ids:
        own = {c: [i for i in ids if i != q] for c, ids in groups.items()}
        own = {c: ids for c, ids in own.items() if ids}
        available = sum(len(v) for v in own.values())
        if n > available:
            raise BuildError(f"Query {q}: the pool has only {available} images with a class, {n} needed.")
        drawn = _stratified_draw(own, n, _rng(seed, _DRAW, q), allocation)
        cases.append((int(q), [(i, [_entry("random", None, None, None, stratum=c)]) for i, c in drawn]))
    return cases


def pooled(
    query_ids: Sequence[int],
    methods: Mapping[str, NeighboursFn],
    per_method: int,
    *,
    seed: int,
    runs: Mapping[str, int | None] | None = None,
) -> list[CaseSpec]:
    """Per query, the union of each method's top `per_method`, de-duplicated, shuffled; provenance lists every
    proposer."""
    if not methods:
        raise BuildError("Pooling needs at least one method.")
    if per_method < 1:
        raise BuildError("The number of candidates per method must be at least 1.")
    runs = runs or {}
    cases = []
    for q in query_ids:
        proposed: dict[int, list[Provenance]] = {}
        for name in sorted(methods):
            for i, r, d in _neighbours(methods[name], q, per_method):
                proposed.setdefault(i, []).append(_entry(name, runs.get(name), r, d))
        catalogue = [(i, proposed[i]) for i in sorted(proposed)]
        cases.append((int(q), _shuffled(catalogue, _rng(seed, _SHUFFLE, q))))
    return cases


# --- Case lists (CSV) ---------------------------------------------------------------------------

_COLUMNS = {
    "query": ("query", "query_id", "query_image"),
    "candidate": ("candidate", "candidate_id", "candidate_image"),
    "position": ("position",),
    "method": ("method",),
    "rank": ("rank",),
    "distance": ("distance",),
}


@dataclass(frozen=True)
class CaseListRow:
    """One line of a case list: a query reference, a candidate reference, optional position/provenance."""

    line: int
    query: str
    candidate: str
    position: int | None = None
    method: str = ""
    rank: int | None = None
    distance: float | None = None


def _header_map(header: list[str]) -> dict[str, int]:
    names = [h.strip().lower() for h in header]
    found = {}
    for column, aliases in _COLUMNS.items():
        hits = [n for n, h in enumerate(names) if h in aliases]
        if len(hits) > 1:
            raise CaseListError([f"line 1: the column {column!r} appears more than once"])
        if hits:
            found[column] = hits[0]
    missing = [c for c in ("query", "candidate") if c not in found]
    if missing:
        raise CaseListError(
            [
                f"line 1: the header needs the column{'s' if len(missing) > 1 else ''} "
                f"{' and '.join(missing)} (found: {', '.join(h for h in names if h) or 'nothing'})"
            ]
        )
    return found


def _decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CaseListError([f"the file is not UTF-8 text (byte {exc.start})"]) from None
    if "\x00" in text:
        raise CaseListError(["the file is not a CSV text file"])
    return text


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    first = text.splitlines()[0] if text.strip() else ""
    try:
        return csv.Sniffer().sniff(first, delimiters=",;\t")
    except csv.Error:
        return csv.excel


def _cell(row: list[str], idx: int | None) -> str:
    return row[idx].strip() if idx is not None and idx < len(row) else ""


def _parse_number(value: str, line: int, column: str, kind: type, errors: list[str], minimum=None):
    if value == "":
        return None
    try:
        number = kind(value)
    except ValueError:
        errors.append(f"line {line}: {column} {value!r} is not a {'whole number' if kind is int else 'number'}")
        return None
    if kind is float and not np.isfinite(number):
        errors.append(f"line {line}: {column} {value!r} is not a finite number")
        return None
    if minimum is not None and number < minimum:
        errors.append(f"line {line}: {column} must be at least {minimum} (got {value})")
        return None
    return number


def parse_case_list_csv(data: bytes) -> list[CaseListRow]:
    """Rows of a case-list CSV (columns query, candidate; optional position, method, rank, distance)."""
    text = _decode(data)
    reader = csv.reader(io.StringIO(text), _dialect(text))
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        raise CaseListError(["the file is empty: expected a header line with query and candidate"]) from None
    cols = _header_map(header)
    rows, errors = [], []
    try:
        for row in reader:
            line = reader.line_num
            if not any(c.strip() for c in row):
                continue
            parsed = _parse_row(row, line, cols, errors)
            if parsed is not None:
                rows.append(parsed)
    except csv.Error as exc:
        errors.append(f"line {reader.line_num}: {exc}")
    if not rows and not errors:
        errors.append("the file has a header but no rows")
    if errors:
        raise CaseListError(errors)
    return rows


def _parse_row(row: list[str], line: int, cols: dict[str, int], errors: list[str]) -> CaseListRow | None:
    query, candidate = _cell(row, cols["query"]), _cell(row, cols["candidate"])
    n_errors = len(errors)
    if not query:
        errors.append(f"line {line}: the query cell is empty")
    if not candidate:
        errors.append(f"line {line}: the candidate cell is empty")
    position = _parse_number(_cell(row, cols.get("position")), line, "position", int, errors, minimum=1)
    rank = _parse_number(_cell(row, cols.get("rank")), line, "rank", int, errors, minimum=1)
    distance = _parse_number(_cell(row, cols.get("distance")), line, "distance", float, errors)
    if len(errors) > n_errors:
        return None
    return CaseListRow(line, query, candidate, position, _cell(row, cols.get("method")), rank, distance)


def case_list_specs(rows: Sequence[CaseListRow], resolve: Callable[[str], int | None], *, seed: int) -> list[CaseSpec]:
    """Resolve a case list's references to image ids and group it into case specs (errors per line)."""
    errors: list[str] = []
    grouped: dict[int, list[tuple[CaseListRow, int]]] = {}
    first_line: dict[tuple[int, int], int] = {}
    for row in rows:
        q, c = resolve(row.query), resolve(row.candidate)
        if q is None:
            errors.append(f"line {row.line}: no image {row.query!r} in the dataset")
        if c is None:
            errors.append(f"line {row.line}: no image {row.candidate!r} in the dataset")
        if q is None or c is None:
            continue
        if q == c:
            errors.append(f"line {row.line}: the candidate is the query image itself")
            continue
        if (q, c) in first_line:
            errors.append(
                f"line {row.line}: candidate {row.candidate!r} is already listed for query "
                f"{row.query!r} on line {first_line[(q, c)]}"
            )
            continue
        first_line[(q, c)] = row.line
        grouped.setdefault(q, []).append((row, c))
    for items in grouped.values():
        errors += _position_errors(items)
    if errors:
        raise CaseListError(errors)
    return [(q, _ordered(q, items, seed)) for q, items in grouped.items()]


def _position_errors(items: list[tuple[CaseListRow, int]]) -> list[str]:
    given = [r for r, _ in items if r.position is not None]
    if not given:
        return []
    query = items[0][0].query
    if len(given) != len(items):
        missing = next(r for r, _ in items if r.position is None)
        return [f"line {missing.line}: query {query!r} gives positions on some lines but not on this one"]
    errors, seen = [], {}
    for r in given:
        if r.position in seen:
            errors.append(
                f"line {r.line}: position {r.position} is already used for query {query!r} on line {seen[r.position]}"
            )
        elif r.position > len(items):
            errors.append(
                f"line {r.line}: position {r.position} is beyond the {len(items)} candidates of query {query!r}"
            )
        seen.setdefault(r.position, r.line)
    return errors


def _ordered(query_id: int, items: list[tuple[CaseListRow, int]], seed: int) -> list[CandidateSpec]:
    specs = [(c, [_entry(r.method or "case_list", None, r.rank, r.distance, line=r.line)]) for r, c in items]
    if items[0][0].position is not None:
        return [spec for (r, _), spec in sorted(zip(items, specs), key=lambda pair: pair[0][0].position)]
    return _shuffled(specs, _rng(seed, _CASE_LIST, query_id))
