"""The download's file and hashing machinery: direct-I/O output, in-order whole-object MD5, mapped reads."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from score.client.errors import ClientError
from score.client.transfer.hashing import HashingCancelled, InOrderHasher, hash_mapped_range
from score.client.transfer.output import ALIGN, OutputFile

MiB = 1 << 20


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - integrity, not security


@contextmanager
def _opened(tmp_path: Path, data: bytes) -> Iterator[int]:
    """A file holding ``data``, open for reading (the download's own file, as the hasher reads it)."""
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


def _aligned(data: bytes) -> memoryview:
    """``data`` in page-aligned memory, as the receive buffers are."""
    import mmap

    buffer = mmap.mmap(-1, max(len(data), 1))
    buffer[: len(data)] = data
    return memoryview(buffer)[: len(data)]


def test_output_file_writes_aligned_head_directly_and_unaligned_tail_buffered(tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 1234)  # the object's last part: not a multiple of the block size
    path = tmp_path / "out"
    out = OutputFile(path, len(data), direct=True)
    try:
        out.write(_aligned(data[: 2 * MiB]), 0)
        out.write(_aligned(data[2 * MiB :]), 2 * MiB)
        assert out.direct  # ext4 here takes O_DIRECT: the aligned heads went past the page cache
        os.fsync(out.fd)
    finally:
        out.close()
    assert path.read_bytes() == data


def test_output_file_takes_unaligned_positions_and_buffers(tmp_path: Path) -> None:
    """Byte ranges land anywhere, from any slice of a buffer: those go the buffered way, unchanged."""
    data = os.urandom(MiB + 77)
    path = tmp_path / "out"
    out = OutputFile(path, len(data) + 10, direct=True)
    try:
        out.write(memoryview(bytearray(data))[3:], 13)  # neither the position nor the buffer is aligned
        out.write(memoryview(bytearray(data[:3])), 10)
    finally:
        out.close()
    assert path.read_bytes() == b"\0" * 10 + data


def test_output_file_falls_back_when_direct_io_refuses(tmp_path: Path) -> None:
    """A misaligned buffer at an aligned position makes O_DIRECT refuse (EINVAL): bytes still land."""
    data = os.urandom(2 * ALIGN)
    path = tmp_path / "out"
    out = OutputFile(path, len(data) + 1, direct=True)
    try:
        assert out.direct
        out.write(memoryview(bytearray(b"x" + data))[1:], 0)
        assert not out.direct  # EINVAL dropped direct I/O for the rest of the download
        out.write(memoryview(b"y"), len(data))
    finally:
        out.close()
    assert path.read_bytes() == data + b"y"


def _ranges(sizes: list[int]) -> list[tuple[int, int]]:
    ranges, offset = [], 0
    for size in sizes:
        ranges.append((offset, size))
        offset += size
    return ranges


def _pieces(data: bytes, offset: int, length: int, step: int) -> list[tuple[int, bytes]]:
    return [(p, data[p : min(p + step, offset + length)]) for p in range(offset, offset + length, step)]


def test_in_order_hasher_hashes_parts_fed_out_of_order_in_file_order(tmp_path: Path) -> None:
    data = os.urandom(5 * MiB + 321)
    ranges = _ranges([2 * MiB, 2 * MiB, MiB + 321])
    with _opened(tmp_path, data) as fd:
        hasher = InOrderHasher(fd, ranges, on_disk=set())
        # Each part's worker feeds its own pieces in order; later parts start first and must wait.
        workers = [
            threading.Thread(target=lambda r=r: [hasher.feed(p, memoryview(b)) for p, b in _pieces(data, *r, 300_000)])
            for r in reversed(ranges)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        assert hasher.result() == _md5(data)


def test_in_order_hasher_reads_parts_finished_earlier_from_the_file(tmp_path: Path) -> None:
    data = os.urandom(4 * MiB)
    ranges = _ranges([MiB] * 4)
    with _opened(tmp_path, data) as fd:
        hasher = InOrderHasher(fd, ranges, on_disk={0, 2})
        feeders = [
            threading.Thread(
                target=lambda i=index: [hasher.feed(p, memoryview(b)) for p, b in _pieces(data, *ranges[i], MiB // 3)]
            )
            for index in (3, 1)  # handed over early; part 1 is hashed once part 0 is read from the file
        ]
        for feeder in feeders:
            feeder.start()
        for feeder in feeders:
            feeder.join(30)
            assert not feeder.is_alive()
        assert hasher.result() == _md5(data)
        assert InOrderHasher(fd, ranges, on_disk={0, 1, 2, 3}).result() == _md5(data)
        # A run of finished parts in the middle is skipped in one step: part 3 follows part 0 directly.
        hasher = InOrderHasher(fd, ranges, on_disk={1, 2})
        feeder = threading.Thread(
            target=lambda: [
                hasher.feed(p, memoryview(b)) for i in (0, 3) for p, b in _pieces(data, *ranges[i], MiB // 2)
            ]
        )
        feeder.start()
        feeder.join(30)
        assert not feeder.is_alive()
        assert hasher.result() == _md5(data)


def test_in_order_hasher_drops_what_a_retry_resends_and_never_reads_the_file(tmp_path: Path) -> None:
    """A broken connection after half a part, then the retry from the part's start: each byte is hashed once,
    from memory (the file holds other bytes here, so a digest read from it would differ)."""
    data = os.urandom(2 * MiB)
    with _opened(tmp_path, b"\0" * len(data)) as fd:
        hasher = InOrderHasher(fd, _ranges([MiB, MiB]), on_disk=set())
        hasher.feed(MiB, memoryview(data[MiB : MiB + 300_000]))  # part 1, then its connection broke
        hasher.feed(0, memoryview(data[:MiB]))
        for position in range(MiB, 2 * MiB, 400_000):  # the retry of part 1, in other piece sizes
            hasher.feed(position, memoryview(data[position : min(position + 400_000, 2 * MiB)]))
        assert hasher.result() == _md5(data)


def test_in_order_hasher_says_when_bytes_were_never_handed_over(tmp_path: Path) -> None:
    with _opened(tmp_path, b"\0" * 2 * MiB) as fd:
        hasher = InOrderHasher(fd, _ranges([MiB, MiB]), on_disk=set())
        hasher.feed(0, memoryview(b"\0" * MiB))
        with pytest.raises(ClientError, match=f"stopped at byte {MiB} of {2 * MiB}.*defect"):
            hasher.result()


def test_in_order_hasher_takes_later_parts_without_waiting_and_holds_their_buffers(tmp_path: Path) -> None:
    """Workers hand over bytes far ahead of the hash without blocking; reusing a buffer waits for the hash."""
    data = os.urandom(3 * MiB)
    with _opened(tmp_path, data) as fd:
        hasher = InOrderHasher(fd, _ranges([MiB] * 3), on_disk=set())
        for position in (2 * MiB, MiB):  # one thread, last part first: a turn per part would deadlock here
            hasher.feed(position, memoryview(data[position : position + MiB]))
        reused: list[float] = []
        buffer_of_part_2 = threading.Thread(target=lambda: (hasher.wait_hashed(3 * MiB), reused.append(1.0)))
        buffer_of_part_2.start()
        buffer_of_part_2.join(0.3)
        assert buffer_of_part_2.is_alive() and not reused  # part 0 is missing, so nothing is hashed yet
        hasher.feed(0, memoryview(data[:MiB]))
        buffer_of_part_2.join(10)
        assert reused == [1.0]
        assert hasher.result() == _md5(data)


def test_in_order_hasher_cancel_releases_waiting_workers(tmp_path: Path) -> None:
    with _opened(tmp_path, b"\0" * 2 * MiB) as fd:
        hasher = InOrderHasher(fd, _ranges([MiB, MiB]), on_disk=set())
        hasher.feed(MiB, memoryview(b"\0" * MiB))
        released: list[bool] = []

        def reuse_the_buffer() -> None:
            hasher.wait_hashed(2 * MiB)  # part 0 never comes
            released.append(True)

        waiter = threading.Thread(target=reuse_the_buffer)
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive()
        hasher.cancel()
        waiter.join(10)
        assert not waiter.is_alive() and released == [True]
        with pytest.raises(HashingCancelled, match="stopped"):
            hasher.feed(0, memoryview(b"\0" * MiB))


def test_hash_mapped_range_matches_hashlib_and_refuses_a_short_file(tmp_path: Path) -> None:
    data = os.urandom(9 * MiB + 123)
    with _opened(tmp_path, data) as fd:
        for offset, length in [(0, len(data)), (12345, 5 * MiB), (len(data) - 1, 1), (7, 0)]:
            md5 = hashlib.md5()  # noqa: S324 - integrity, not security
            hash_mapped_range(fd, offset, length, md5)
            assert md5.hexdigest() == _md5(data[offset : offset + length])
        with pytest.raises(OSError, match="shorter"):
            hash_mapped_range(fd, 100, len(data), hashlib.md5())  # noqa: S324
