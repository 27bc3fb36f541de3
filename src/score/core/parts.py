"""Part calculation (reference §3.5): how an object or a byte range is cut into transfer parts."""

from __future__ import annotations

from score.core.models import Part

MAX_PARTS = 10_000  # S3's limit, kept for every backend so one layout works everywhere
SCORE_MIN_PART_SIZE = 20 * 1024 * 1024  # the original's floor, applied when no explicit minimum is set


def part_size_for(length: int, requested: int, minimum: int = SCORE_MIN_PART_SIZE) -> int:
    """Size of every part but the last: at least ``minimum`` and big enough to stay within MAX_PARTS."""
    if requested <= 0:
        raise ValueError("part size must be positive")
    base = max(requested, minimum)
    return max(base, length // MAX_PARTS + 1)


def calculate_parts(offset: int, length: int, requested: int, minimum: int = SCORE_MIN_PART_SIZE) -> list[Part]:
    """Consecutive parts covering ``[offset, offset+length)``, numbered from 1, offsets absolute."""
    if offset < 0 or length < 0:
        raise ValueError("offset and length must not be negative")
    if length == 0:
        return []
    size = part_size_for(length, requested, minimum)
    parts: list[Part] = []
    position = offset
    end = offset + length
    number = 1
    while position < end:
        this_size = min(size, end - position)
        parts.append(Part(partNumber=number, partSize=this_size, offset=position))
        position += this_size
        number += 1
    return parts


def slice_parts(parts: list[Part], offset: int, length: int) -> list[Part]:
    """Cut an object's upload parts to a byte range, renumbering from 1.

    Parts wholly inside the range keep their ``sourceMd5``, so a ranged download can still verify
    the bytes it gets against what was uploaded; edge parts that are cut lose it.
    """
    end = offset + length
    result: list[Part] = []
    for part in sorted(parts, key=lambda p: p.offset):
        start = max(part.offset, offset)
        stop = min(part.end, end)
        if start >= stop:
            continue
        whole = start == part.offset and stop == part.end
        result.append(
            Part(
                partNumber=len(result) + 1,
                partSize=stop - start,
                offset=start,
                sourceMd5=part.sourceMd5 if whole else None,
            )
        )
    return result
