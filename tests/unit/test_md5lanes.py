"""The multi-buffer MD5 (C kernel + Python padding) against hashlib, lane by lane, on every kernel this CPU has."""

from __future__ import annotations

import hashlib
import os
import random

import pytest

from score.core import md5lanes

# Lengths around MD5's padding edges (55/56: the length field fits or spills into another block).
EDGE_LENGTHS = [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 4096, 4097]


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - integrity, not security


def test_the_extension_is_built_here() -> None:
    """CI installs a compiler: a silent fall back to hashlib would make uploads slower without failing anything."""
    assert md5lanes._md5lanes is not None, "score.core._md5lanes did not build (pip install -e . needs gcc)"


def test_this_cpu_has_a_lane_kernel() -> None:
    """The kernels are optional: on a CPU without them uploads hash parts with hashlib, slower but correct."""
    if not md5lanes.KERNELS:
        pytest.skip("this CPU has neither AVX2 nor AVX-512: uploads hash parts with hashlib (slower, still correct)")
    assert set(md5lanes.KERNELS) <= {"avx2", "avx512", "avx512vl"}, md5lanes.KERNELS


@pytest.mark.parametrize("kernel", md5lanes.KERNELS)
def test_every_lane_matches_hashlib_at_the_padding_edges(kernel: str) -> None:
    messages = [os.urandom(length) for length in EDGE_LENGTHS[:16]]
    size = max(len(m) for m in messages)
    buffer = bytearray(size * len(messages))
    for lane, message in enumerate(messages):
        buffer[lane * size : lane * size + len(message)] = message
    lanes = md5lanes.LaneMd5(len(messages), kernel)
    lanes.update(buffer, [lane * size for lane in range(len(messages))], [len(m) for m in messages])
    assert [lanes.hexdigest(lane) for lane in range(len(messages))] == [_md5(m) for m in messages]


@pytest.mark.parametrize("kernel", [None, *md5lanes.KERNELS])
def test_random_lanes_fed_in_uneven_rounds_match_hashlib(kernel: str | None) -> None:
    """Lanes of different lengths, fed block-aligned slices of varying size per round, as an upload feeds parts."""
    rng = random.Random(7)
    for _ in range(40):
        count = rng.randint(1, md5lanes.MAX_LANES)
        messages = [rng.randbytes(rng.choice([*EDGE_LENGTHS, rng.randint(0, 20000)])) for _ in range(count)]
        lanes = md5lanes.LaneMd5(count, kernel)
        fed = [0] * count
        while any(fed[i] < len(m) for i, m in enumerate(messages)):
            step = 64 * rng.randint(1, 40)
            slot = step + 64
            buffer = bytearray(slot * count)
            offsets, lengths = [], []
            for lane, message in enumerate(messages):
                piece = message[fed[lane] : fed[lane] + step] if rng.random() < 0.8 else b""
                buffer[lane * slot : lane * slot + len(piece)] = piece
                offsets.append(lane * slot)
                lengths.append(len(piece))
                fed[lane] += len(piece)
            lanes.update(buffer, offsets, lengths)
        assert [lanes.hexdigest(lane) for lane in range(count)] == [_md5(m) for m in messages]


def test_a_lane_cannot_go_on_after_a_partial_block() -> None:
    lanes = md5lanes.LaneMd5(2)
    data = os.urandom(256)
    lanes.update(data, [0, 128], [100, 64])  # lane 0 ended with a partial block
    with pytest.raises(ValueError, match="lane 0 already ended"):
        lanes.update(data, [0, 128], [64, 64])


@pytest.mark.parametrize(
    ("offsets", "lengths", "message"),
    [
        ([0], [64], "an offset and a length for each of the 2 lanes"),
        ([0, 200], [64, 64], "not whole 64-byte blocks inside the 256-byte buffer"),
        ([-64, 0], [64, 64], "not whole 64-byte blocks"),
        ([2**62, 0], [2**62, 64], "not whole 64-byte blocks"),  # no overflow past the buffer's end
    ],
)
def test_bad_slices_are_refused_with_the_reason(offsets: list[int], lengths: list[int], message: str) -> None:
    lanes = md5lanes.LaneMd5(2)
    with pytest.raises(ValueError, match=message):
        lanes.update(bytes(256), offsets, lengths)


@pytest.mark.parametrize("count", [0, md5lanes.MAX_LANES + 1])
def test_lane_count_is_checked(count: int) -> None:
    with pytest.raises(ValueError, match=r"lanes must be 1\.\.16"):
        md5lanes.LaneMd5(count)


def test_an_unknown_kernel_is_refused() -> None:
    lanes = md5lanes.LaneMd5(1, "sse9")
    with pytest.raises(ValueError, match="no MD5 lane kernel sse9"):
        lanes.update(bytes(64), [0], [64])
