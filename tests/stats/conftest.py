"""Fixtures for the pure statistics tests: the hand-computed choose-2-of-4 study."""

from __future__ import annotations

import numpy as np
import pytest

A, B, C, D = range(4)


def _case(*reader_sets):
    """(4 candidates, n_readers) 0/1 selections from one set of chosen candidates per reader."""
    out = np.zeros((4, len(reader_sets)), dtype=int)
    for reader, chosen in enumerate(reader_sets):
        out[list(chosen), reader] = 1
    return out


@pytest.fixture
def hand_study():
    """3 cases, choose 2 of 4 candidates A-D, 3 readers.

    case 1: R1 {A,B}  R2 {A,B}  R3 {A,C}   votes A3 B2 C1 D0
    case 2: R1 {A,B}  R2 {A,C}  R3 {A,D}   votes A3 B1 C1 D1  (tie for 2nd place)
    case 3: R1 {B,D}  R2 {B,D}  R3 {B,D}   votes A0 B3 C0 D3
    model ranks: case 1 (2,1,3,4) -> picks {A,B}; case 2 (1,3,2,4) -> {A,C}; case 3 (1,2,3,4) -> {A,B}
    """
    selections = np.stack([_case({A, B}, {A, B}, {A, C}), _case({A, B}, {A, C}, {A, D}), _case({B, D}, {B, D}, {B, D})])
    model_ranks = np.array([[2, 1, 3, 4], [1, 3, 2, 4], [1, 2, 3, 4]])
    return selections, model_ranks
