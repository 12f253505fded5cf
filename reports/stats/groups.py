"""Subgroups: per-group means of per-case values."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
from numpy.typing import ArrayLike


def by_group(per_case_values: ArrayLike, groups: Sequence[Hashable] | ArrayLike) -> dict:
    """{group: {'mean', 'n'}} of per-case values (NaN values skipped), groups in sorted order."""
    x = np.asarray(per_case_values, float)
    labels, inverse = np.unique(np.asarray(groups), return_inverse=True)
    ok = ~np.isnan(x)
    n = np.bincount(inverse[ok], minlength=len(labels))
    sums = np.bincount(inverse[ok], weights=x[ok], minlength=len(labels))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / n
    keys = labels.tolist()
    return {key: {"mean": float(m), "n": int(c)} for key, m, c in zip(keys, means, n)}
