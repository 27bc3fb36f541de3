"""The part calculator (reference §3.5) and range slicing."""

from __future__ import annotations

import itertools

import pytest

from score.core.parts import MAX_PARTS, SCORE_MIN_PART_SIZE, calculate_parts, part_size_for, slice_parts

MiB = 1024 * 1024


def test_score_floor_and_max_parts() -> None:
    assert part_size_for(100, 20_000_000) == SCORE_MIN_PART_SIZE  # raised to the 20 MiB minimum
    huge = 300 * 1024 * MiB * 1024  # 300 TiB
    assert part_size_for(huge, 20_000_000) == huge // MAX_PARTS + 1


def test_parts_cover_range_consecutively() -> None:
    parts = calculate_parts(0, 10 * MiB + 3, MiB, minimum=1)
    assert len(parts) == 11
    assert [p.partNumber for p in parts] == list(range(1, 12))
    assert parts[-1].partSize == 3 and parts[-1].offset == 10 * MiB
    assert sum(p.partSize for p in parts) == 10 * MiB + 3
    assert all(a.end == b.offset for a, b in itertools.pairwise(parts))


def test_zero_length_has_no_parts_and_offsets_are_absolute() -> None:
    assert calculate_parts(0, 0, MiB) == []
    parts = calculate_parts(5, 10, 4, minimum=1)
    assert [(p.offset, p.partSize) for p in parts] == [(5, 4), (9, 4), (13, 2)]
    with pytest.raises(ValueError):
        calculate_parts(-1, 10, 4)


def test_slice_keeps_source_md5_only_on_whole_parts() -> None:
    parts = calculate_parts(0, 30, 10, minimum=1)
    for p in parts:
        p.sourceMd5 = f"{p.partNumber:032x}"
    sliced = slice_parts(parts, 5, 20)
    assert [(p.partNumber, p.offset, p.partSize) for p in sliced] == [(1, 5, 5), (2, 10, 10), (3, 20, 5)]
    assert [p.sourceMd5 for p in sliced] == [None, f"{2:032x}", None]
