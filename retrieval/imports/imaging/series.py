"""Slices of CT/MR/PT volumes grouped by series, and the middle slice of a group."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

from retrieval.imports.imaging.dicom import DicomHeader

#: Modalities whose single-frame images of one series are slices of a volume.
VOLUME_MODALITIES = frozenset({"CT", "MR", "PT"})

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def group_series(headers: Sequence[tuple[K, DicomHeader]]) -> list[list[K]]:
    """Group slices of CT/MR/PT volumes; every other image is a group of its own.

    Single-frame images of a volume modality that share a Series Instance UID with at
    least one other such image form one group sorted by slice position (then instance
    number, then input order). Groups come in the order of their first member.
    """
    volume_members: dict[str, list[tuple[int, K, DicomHeader]]] = {}
    for index, (key, header) in enumerate(headers):
        if _is_volume_slice(header):
            volume_members.setdefault(header.series_uid, []).append((index, key, header))

    groups: list[list[K]] = []
    emitted: set[str] = set()
    for key, header in headers:
        members = volume_members.get(header.series_uid) if _is_volume_slice(header) else None
        if members is None or len(members) < 2:
            groups.append([key])
            continue
        if header.series_uid in emitted:
            continue
        emitted.add(header.series_uid)
        members = sorted(members, key=_slice_sort_key)
        groups.append([member_key for _, member_key, _ in members])
    return groups


def _is_volume_slice(header: DicomHeader) -> bool:
    return header.series_uid is not None and header.frames == 1 and (header.modality or "").upper() in VOLUME_MODALITIES


def _slice_sort_key(member: tuple[int, Hashable, DicomHeader]):
    index, _, header = member
    position = header.slice_position
    number = header.instance_number
    return (
        position is None,
        position if position is not None else 0.0,
        number is None,
        number if number is not None else 0,
        index,
    )


def middle(group: Sequence[T]) -> T:
    """The middle element (index len // 2), as the NLST set-up of paper 000 takes the
    middle slice of each CT scan."""
    if not group:
        raise ValueError("middle() of an empty group")
    return group[len(group) // 2]
