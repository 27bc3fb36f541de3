"""The MD5s an upload needs: each part it sends (its ``Content-MD5``) and the whole file (checked at finalize).

Why two threads: the store needs the CPU too (on a two-core machine SeaweedFS takes most of it), so
the client's hashing is upload speed. The whole-file MD5 cannot be split (each block depends on the
last) and runs front to back on its own. The parts are independent messages: they are hashed side by
side, up to 16 at once on SIMD lanes (``score.core.md5lanes``), which costs about a fifth of hashing
them one after another; without the C kernel they are hashed one by one with hashlib.

Parts are hashed in the order they will be sent, in batches. The first batch covers at least the parts
that go out at once, so every sender starts early instead of one after another; later batches of 16 are
hashed while those parts travel, far faster than any store takes them.

Both hashes read the file through a memory map where the ``_mapguard`` extension is built: copying the
bytes out of the page cache costs the client 1.25 CPU-s more per uploaded GiB (4.39 against 3.14) and the
upload 7% of its speed (113 against 121 MB/s; ``bench/race.py --tools score --runs 3``, 1 GiB to SeaweedFS,
issue 12), on the cores the store needs: the second path earns its keep. A map of a file that someone else
truncates meanwhile faults (SIGBUS) where hashlib reads it; the guard turns that into a clear message and
exit status 1. Without the extension the file is read with copying reads.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import threading
from pathlib import Path
from typing import Any

from score.client.transfer.hashing import hash_mapped_range, map_range
from score.core import md5lanes

try:
    from score.core import _mapguard  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler: the file is read with copying reads
    _mapguard = None

CHUNK = 1024 * 1024  # per lane and read: a multiple of 64 (MD5's block), so only a part's end is partial
WINDOW_CHUNKS = 4  # how much of the file the whole-file hash maps at a time, in CHUNKs (what it read at a time)


def map_guarded(path: Path) -> bool:
    """True when ``path`` may be read through a memory map: the SIGBUS guard is built, and now names it."""
    if _mapguard is None:
        return False
    _mapguard.exit_on_sigbus(
        f"\nerror: {path} could not be read while it was being uploaded: it became shorter (changed by another "
        "program?) or the disk failed. Nothing was finalized; check the file and upload it again "
        "(with --force if it changed)\n".encode(errors="replace")
    )
    return True


def read_buffer(length: int) -> memoryview:
    """A buffer made once per pass: a fresh one per read costs page faults (host faults on a VM that
    hands freed memory back to its host) for every chunk hashed."""
    return memoryview(bytearray(max(length, 1)))


def read_exactly(fd: int, into: memoryview, position: int) -> None:
    """Fill ``into`` from ``fd`` at ``position``; a file that ends first is an error (it shrank meanwhile).

    The copying path, for a client built without the SIGBUS guard (see ``map_guarded``): an upload's source
    is not ours, and unguarded, a file truncated under a map would kill the process with a bare "Bus error".
    """
    done = 0
    while done < len(into):
        got = os.preadv(fd, [into[done:]], position + done)
        if not got:
            raise OSError(f"file ended at byte {position + done}, expected {position + len(into)}")
        done += got


def hash_range(fd: int, offset: int, length: int, digest: Any, buffer: memoryview) -> None:
    """Feed ``length`` bytes of ``fd`` from ``offset`` to ``digest``, reading through ``buffer``."""
    position, end = offset, offset + length
    while position < end:
        view = buffer[: min(len(buffer), end - position)]
        read_exactly(fd, view, position)
        digest.update(view)
        position += len(view)


def hash_parts_together(
    fd: int, parts: list[tuple[int, int]], buffer: memoryview | None, stopped: threading.Event
) -> list[str] | None:
    """MD5s of up to 16 ``(offset, size)`` ranges of ``fd``, one per SIMD lane, CHUNK by CHUNK.

    Read into ``buffer`` (CHUNK per lane), or with no buffer through a map of the batch's span, whose
    pages are let go of as each chunk is hashed (so they do not add up in the client's memory). None if
    ``stopped`` was set meanwhile.
    """
    lanes = md5lanes.LaneMd5(len(parts))
    done = [0] * len(parts)
    first = min(offset for offset, _ in parts)
    span = max(offset + size for offset, size in parts) - first
    if buffer is None and span == 0:  # only empty parts: nothing to map
        buffer = read_buffer(CHUNK * len(parts))
    mapped, start = (None, 0) if buffer is not None else map_range(fd, first, span)
    try:
        while any(done[i] < size for i, (_, size) in enumerate(parts)):
            if stopped.is_set():
                return None
            offsets, lengths = [], []
            for lane, (offset, size) in enumerate(parts):
                length = min(CHUNK, size - done[lane])
                if buffer is not None:
                    offsets.append(lane * CHUNK)
                    if length:
                        read_exactly(fd, buffer[lane * CHUNK : lane * CHUNK + length], offset + done[lane])
                else:
                    offsets.append(start + offset - first + done[lane])
                done[lane] += length
                lengths.append(length)
            lanes.update(buffer if buffer is not None else mapped, offsets, lengths)
            if mapped is not None:
                for position, length in zip(offsets, lengths, strict=True):
                    _let_go(mapped, position, length)
        return [lanes.hexdigest(lane) for lane in range(len(parts))]
    finally:
        if mapped is not None:
            mapped.close()


def _let_go(mapped: mmap.mmap, position: int, length: int) -> None:
    """Unmap the pages of ``[position, position + length)`` from this process (the page cache keeps them)."""
    first = position - position % mmap.PAGESIZE
    end = position + length - (position + length) % mmap.PAGESIZE
    if end > first:
        mapped.madvise(mmap.MADV_DONTNEED, first, end - first)


READ_AHEAD = 2 * 1024**3  # how far the hashing threads may run ahead of the parts being sent


class ReadAhead:
    """Keeps the hashing threads within a window ahead of the senders.

    Three readers go through an upload's file: the whole-file hash, the part hashes, and the senders
    (``sendfile``). Unbounded, the hashes run far ahead, and for a file larger than memory every byte is
    then read from disk three times. Within a window of a few GiB, the page cache serves the second and
    third reads. ``release`` lifts the bound once no more parts will be asked for, so the whole-file hash
    can finish the file (a resumed upload may not send its last parts at all).
    """

    def __init__(self, window: int = READ_AHEAD) -> None:
        self._window = window
        self._frontier = 0  # end of the furthest part a sender has asked for
        self._changed = threading.Condition()

    def widen(self, window: int) -> None:
        """At least ``window`` bytes ahead: the part hashes read a batch of 16 parts in lockstep, and the
        next batch must be able to start while the current one is being sent, or the senders would wait."""
        with self._changed:
            if window > self._window:
                self._window = window
                self._changed.notify_all()

    def advance(self, end: int) -> None:
        with self._changed:
            if end > self._frontier:
                self._frontier = end
                self._changed.notify_all()

    def release(self) -> None:
        self.advance(2**63)

    def wait_for(self, position: int, stopped: threading.Event) -> None:
        """Return once ``position`` is within the window (or ``stopped`` is set, followed by ``wake``)."""
        with self._changed:
            while position > self._frontier + self._window and not stopped.is_set():
                self._changed.wait()

    def wake(self) -> None:
        """A hash was stopped: its thread, if it waits here, must see it now."""
        with self._changed:
            self._changed.notify_all()


class WholeFileMd5:
    """The whole file's MD5, front to back on a thread of its own: started before the upload's API calls,
    so it overlaps them; ``stop`` ends it early when the upload fails before any part is sent."""

    def __init__(self, path: Path, size: int, read_ahead: ReadAhead | None = None) -> None:
        self._path = path
        self._size = size
        self.read_ahead = read_ahead or ReadAhead()  # shared with the part hashes (see PartMd5s)
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        self._digest: str | None = None
        self._thread = threading.Thread(target=self._run, name="md5-file", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            whole = hashlib.md5()  # noqa: S324 - integrity, not security
            buffer = None if map_guarded(self._path) else read_buffer(min(4 * CHUNK, self._size))
            step = WINDOW_CHUNKS * CHUNK if buffer is None else len(buffer)
            fd = os.open(self._path, os.O_RDONLY)
            try:
                for offset in range(0, self._size, step):
                    self.read_ahead.wait_for(offset, self._stopped)
                    if self._stopped.is_set():
                        return
                    length = min(step, self._size - offset)
                    if buffer is None:
                        hash_mapped_range(fd, offset, length, whole, sequential=True)
                    else:
                        hash_range(fd, offset, length, whole, buffer)
            finally:
                os.close(fd)
            self._digest = whole.hexdigest()
        except BaseException as exc:  # reported by result()
            self._error = exc

    def stop(self) -> None:
        self._stopped.set()
        self.read_ahead.wake()

    def result(self) -> str:
        """The whole file's MD5; lifts the read-ahead bound first (no more parts will be asked for)."""
        self.read_ahead.release()
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._digest is None:
            raise RuntimeError("the whole-file MD5 was stopped before it finished")
        return self._digest


class PartMd5s:
    """The MD5 of each part to send, in sending order, hashed on a thread of its own (``stop`` ends it)."""

    def __init__(
        self, path: Path, parts: list[tuple[int, int]], first_batch: int, read_ahead: ReadAhead | None = None
    ) -> None:
        self._path = path
        self._parts = parts  # (offset, size) of the parts to send, in sending order
        self._sizes = dict(parts)
        self._asked: set[int] = set()  # offsets of the parts senders have asked for
        self._read_ahead = read_ahead or ReadAhead()
        self._read_ahead.widen(md5lanes.MAX_LANES * max((size for _, size in parts), default=0))
        # The first batch is hashed before any part can go out. With AVX2, 8 lanes take as long as 4,
        # so a batch of at least 8 costs no waiting and half the CPU per byte.
        self._first_batch = max(8, min(first_batch, md5lanes.MAX_LANES))
        self._part_md5: dict[int, str] = {}
        self._ready = threading.Condition()
        self._error: BaseException | None = None
        self._stopped = threading.Event()
        self._finished = False  # the thread has published all it will (or met an error)
        self._thread = threading.Thread(target=self._run, name="md5-parts", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            fd = os.open(self._path, os.O_RDONLY)
            try:
                if md5lanes.available():
                    self._hash_on_lanes(fd)
                else:
                    self._hash_one_by_one(fd)
            finally:
                os.close(fd)
        except BaseException as exc:  # reported to whoever waits
            self._error = exc
        finally:
            with self._ready:
                self._finished = True
                self._ready.notify_all()

    def _hash_on_lanes(self, fd: int) -> None:
        buffer = None if map_guarded(self._path) else read_buffer(CHUNK * md5lanes.MAX_LANES)
        start, batch = 0, self._first_batch
        while start < len(self._parts):
            parts = self._parts[start : start + batch]
            self._read_ahead.wait_for(parts[0][0], self._stopped)
            digests = hash_parts_together(fd, parts, buffer, self._stopped)
            if digests is None:
                return
            self._publish(zip(parts, digests, strict=True))
            start, batch = start + len(parts), md5lanes.MAX_LANES

    def _hash_one_by_one(self, fd: int) -> None:
        buffer = read_buffer(4 * CHUNK)
        for part in self._parts:
            self._read_ahead.wait_for(part[0], self._stopped)
            if self._stopped.is_set():
                return
            md5 = hashlib.md5()  # noqa: S324 - integrity, not security
            hash_range(fd, part[0], part[1], md5, buffer)
            self._publish([(part, md5.hexdigest())])

    def _publish(self, digests: Any) -> None:
        with self._ready:
            for (offset, _), digest in digests:
                self._part_md5[offset] = digest
            self._ready.notify_all()

    def part_md5(self, offset: int) -> str:
        """The MD5 of the part starting at ``offset``, waiting until it is hashed; a sender asks for it just
        before sending the part, which moves the read-ahead window on."""
        self._read_ahead.advance(offset + self._sizes.get(offset, 0))
        self._asked.add(offset)
        if len(self._asked) >= len(self._parts):
            self._read_ahead.release()  # every part is on its way: the whole-file hash may finish the file
        with self._ready:
            while offset not in self._part_md5 and not self._finished:
                self._ready.wait()
            if offset in self._part_md5:
                return self._part_md5[offset]
        if self._error is not None:
            raise self._error
        raise RuntimeError(f"no part to send starts at byte {offset}")

    def stop(self) -> None:
        self._stopped.set()
        self._read_ahead.wake()

    def check(self) -> None:
        """Wait for the thread; a read error it met is raised here."""
        self._thread.join()
        if self._error is not None:
            raise self._error
