"""``FileOrder``: a file's bytes back in file order, each byte once, whatever order and retries bring."""

from __future__ import annotations

import random

import pytest

from score.client.transfer.reorder import FileOrder


def _drain(order: FileOrder) -> bytes:
    taken = b""
    while (piece := order.take()) is not None:
        taken += bytes(piece)
    return taken


def _parts(sizes: list[int], start: int = 0) -> list[tuple[int, int]]:
    ranges, offset = [], start
    for size in sizes:
        ranges.append((offset, size))
        offset += size
    return ranges


def test_parts_received_out_of_order_come_out_in_file_order() -> None:
    data = bytes(range(256)) * 4
    order = FileOrder(_parts([300, 300, 424]))
    assert order.add(600, memoryview(data[600:1024]))
    assert order.take() is None  # part 0 has not arrived: nothing may be hashed yet
    assert order.add(300, memoryview(data[300:600]))
    assert order.take() is None
    assert order.add(0, memoryview(data[0:100]))
    assert order.add(100, memoryview(data[100:300]))
    assert _drain(order) == data
    assert order.next == order.end == 1024


def test_a_retry_resending_a_part_from_its_start_is_dropped_up_to_what_was_received() -> None:
    data = bytes(random.Random(1).randbytes(1000))
    order = FileOrder(_parts([500, 500]))
    order.add(500, memoryview(data[500:700]))  # part 1's first attempt broke after 200 bytes
    order.add(0, memoryview(data[0:500]))
    assert not order.add(500, memoryview(b"X" * 150))  # the retry: all received before, so all dropped
    assert order.add(650, memoryview(data[650:800]))  # overlaps: only 700..800 is new
    order.add(800, memoryview(data[800:1000]))
    assert _drain(order) == data


def test_whatever_the_order_and_retries_every_byte_comes_out_once() -> None:
    rng = random.Random(7)
    for _ in range(200):
        sizes = [rng.randint(1, 50) for _ in range(rng.randint(1, 6))]
        start = rng.randint(0, 9)
        data = rng.randbytes(sum(sizes))
        order = FileOrder(_parts(sizes, start))
        # Each part: an attempt that breaks somewhere, then a full retry, both in random piece sizes.
        feeds = []
        for offset, size in _parts(sizes, start):
            attempts = [rng.randint(0, size), size]
            stream = []
            for reach in attempts:
                position = offset
                while position < offset + reach:
                    step = rng.randint(1, 17)
                    end = min(position + step, offset + reach)
                    stream.append((position, data[position - start : end - start]))
                    position = end
            feeds.append(stream)
        taken = b""
        while any(feeds):
            stream = rng.choice([f for f in feeds if f])
            position, piece = stream.pop(0)
            order.add(position, memoryview(piece))
            if rng.random() < 0.5:
                taken += _drain(order)
        taken += _drain(order)
        assert taken == data


def test_parts_already_in_the_file_are_skipped_in_order() -> None:
    order = FileOrder(_parts([10, 10, 10]))
    order.skip(0)
    order.add(20, memoryview(b"c" * 10))
    assert order.take() is None
    with pytest.raises(ValueError, match="part 2 starts at 20, not at 10"):
        order.skip(2)
    order.add(10, memoryview(b"b" * 10))
    assert _drain(order) == b"b" * 10 + b"c" * 10


def test_a_hole_or_a_piece_beyond_its_part_is_refused() -> None:
    order = FileOrder(_parts([10, 10]))
    with pytest.raises(ValueError, match="would leave a hole: the part was received up to 0"):
        order.add(5, memoryview(b"x"))
    with pytest.raises(ValueError, match="not within one part"):
        order.add(5, memoryview(b"x" * 6))
    with pytest.raises(ValueError, match="not within one part"):
        order.add(25, memoryview(b"x"))


def test_clear_forgets_pieces_not_taken() -> None:
    order = FileOrder(_parts([4, 4]))
    order.add(4, memoryview(b"late"))
    order.clear()
    order.add(0, memoryview(b"head"))
    assert _drain(order) == b"head"
