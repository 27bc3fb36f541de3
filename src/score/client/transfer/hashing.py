"""A download's MD5s: the whole object's, computed beside the transfer, and any range of a file through a map.

hashlib releases the GIL on large buffers, so the hashing thread uses the second core while the part
workers move bytes. (An upload's MD5s are in ``upload_hashing``.)
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from score.client.errors import ClientError
from score.client.transfer.reorder import FileOrder

CHUNK = 4 * 1024 * 1024


def map_range(fd: int, offset: int, length: int) -> tuple[mmap.mmap, int]:
    """A read-only map covering ``[offset, offset + length)`` of ``fd``, and where ``offset`` is in it."""
    base = offset - offset % mmap.ALLOCATIONGRANULARITY
    try:
        return mmap.mmap(fd, offset + length - base, offset=base, access=mmap.ACCESS_READ), offset - base
    except ValueError as exc:  # the file is shorter than the range (a source may shrink meanwhile)
        end = offset + length
        raise OSError(f"file ended at byte {os.fstat(fd).st_size}, expected {end} (shorter than the range)") from exc


def hash_mapped_range(fd: int, offset: int, length: int, digest: Any, sequential: bool = False) -> None:
    """Feed ``length`` bytes of ``fd`` from ``offset`` to ``digest`` through a memory map.

    No copy: the hash reads the page cache in place (copying out cost a third of a verified download's
    system time, and 0.23 CPU-s per GiB of an upload). For our own download file, the next chunk is
    requested ahead (``MADV_WILLNEED``) so the disk reads it while this one is hashed, since a download
    written with direct I/O is not in the page cache, and the kernel's own read-around is off
    (``MADV_RANDOM``), so it never caches parts of the file not written yet. A file read once front to
    back (``sequential``: an upload's source) leaves read-ahead to the kernel (``MADV_SEQUENTIAL``).
    """
    if length <= 0:
        return
    mapped, start = map_range(fd, offset, length)
    with mapped:
        _advise(mapped, "MADV_SEQUENTIAL" if sequential else "MADV_RANDOM")
        view = memoryview(mapped)
        try:
            position, end = start, start + length
            while position < end:
                step = min(CHUNK, end - position)
                ahead = position + step - (position + step) % mmap.PAGESIZE
                if ahead < end and not sequential:
                    _advise(mapped, "MADV_WILLNEED", ahead, min(CHUNK, end - ahead))
                digest.update(view[position : position + step])
                position += step
        finally:
            view.release()


def _advise(mapped: mmap.mmap, name: str, *span: int) -> None:
    option = getattr(mmap, name, None)
    if option is not None:
        mapped.madvise(option, *span)


def md5_of_range(fd: int, offset: int, length: int) -> str:
    """MD5 of a range of our own (download) file."""
    md5 = hashlib.md5()  # noqa: S324 - integrity, not security
    hash_mapped_range(fd, offset, length, md5)
    return md5.hexdigest()


class HashingCancelled(ClientError):
    """The download stopped (a part failed for good): workers stop handing over bytes to hash."""


class InOrderHasher:
    """The whole-object MD5 of a download, computed from the bytes as they arrive, in file order.

    MD5 only goes front to back, while parts arrive in parallel. Each part worker hands over what it
    has just written (``feed``) and goes on receiving into the next buffer of its ring; a hashing thread
    takes the pieces in file order (``reorder.FileOrder``, which also drops bytes a retry sends again).
    A worker waits only when it comes round to a buffer whose bytes are not hashed yet
    (``wait_hashed``), so TCP holds back the senders of parts far ahead of the hash.

    Why rings rather than a turn per part: a verified download is as fast as this one thread hashes,
    and it must never wait for bytes. Were only the earliest part's worker allowed to hand over, the
    hash would run at that one stream's speed (receive, then write, per buffer), which here is no faster
    than MD5 itself; with every worker a ring ahead, the next part's first megabytes are already waiting
    when the hash reaches it. Bytes are hashed from memory, never read back: with direct I/O they are not
    in the page cache, and reading a GiB back from disk behind the transfer made verified downloads slower
    than receiving twice. Parts finished by an earlier run are hashed from the file when the hash reaches
    them.
    """

    def __init__(
        self,
        fd: int,
        ranges: list[tuple[int, int]],
        on_disk: set[int],
        while_waiting: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> None:
        self._fd = fd
        self._while_waiting = while_waiting  # entered around a worker's wait (``PartSlots.lent``: gives its slot)
        self._ranges = ranges  # (offset, length) of each part in the file, contiguous, in order
        self._on_disk = set(on_disk)  # indices of parts already in the file when hashing starts
        self._order = FileOrder(ranges)
        self._hashed_end = self._order.next  # hashed up to here
        self._cancelled = False
        self._fed_all = False
        self._error: BaseException | None = None
        self._digest: str | None = None
        self._lock = threading.Lock()
        self._fed = threading.Condition(self._lock)  # the hashing thread waits here for its next piece
        self._hashed = threading.Condition(self._lock)  # workers wait here for a buffer to be hashed
        self._thread = threading.Thread(target=self._run, name="md5-in-order", daemon=True)
        self._thread.start()

    def feed(self, position: int, data: memoryview) -> None:
        """Hand over ``data``, just written at ``position`` (a part's bytes are handed over in order).

        ``data`` must stay unchanged until ``wait_hashed(position + len(data))`` returns.
        """
        with self._lock:
            self._raise_if_stopped()
            if self._order.add(position, data):
                self._fed.notify()

    def _wake_everyone(self) -> None:
        """After a change every waiter must see (cancel, error, the end of feeding); lock held."""
        self._fed.notify_all()
        self._hashed.notify_all()

    def wait_hashed(self, position: int) -> None:
        """Wait until every byte before ``position`` is hashed (so a buffer fed earlier can be reused).

        A worker that has to wait does so inside ``while_waiting``: the hash may be waiting for an earlier
        part, whose worker may be waiting for what this one holds (a slot)."""
        with self._lock:
            if not self._must_wait(position):
                return
        with self._while_waiting(), self._lock:
            while self._must_wait(position):
                self._hashed.wait()

    def _must_wait(self, position: int) -> bool:
        return self._hashed_end < position and not (self._cancelled or self._error)

    def _raise_if_stopped(self) -> None:
        if self._cancelled:
            raise HashingCancelled("the download stopped before this part was hashed")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        md5 = hashlib.md5()  # noqa: S324 - integrity, not security
        try:
            for index, (offset, length) in enumerate(self._ranges):
                if index in self._on_disk:
                    hash_mapped_range(self._fd, offset, length, md5)
                    with self._lock:
                        self._order.skip(index)
                    self._advance(offset + length)
                    continue
                while self._hashed_end < offset + length:
                    piece = self._next_piece()
                    if piece is None:
                        return  # cancelled, or fed to the end with bytes missing: ``result`` says which
                    md5.update(piece)
                    self._advance(self._hashed_end + len(piece))
            self._digest = md5.hexdigest()
        except BaseException as exc:
            with self._lock:
                self._error = exc
                self._wake_everyone()

    def _next_piece(self) -> memoryview | None:
        with self._lock:
            while (piece := self._order.take()) is None:
                if self._cancelled or self._fed_all:
                    return None
                self._fed.wait()
            return piece

    def _advance(self, position: int) -> None:
        with self._lock:
            self._hashed_end = position
            self._hashed.notify_all()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            self._order.clear()
            self._wake_everyone()

    def result(self) -> str:
        """The MD5 of all the ranges; call once every fetched byte has been fed."""
        with self._lock:
            self._fed_all = True
            self._wake_everyone()
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._digest is None:
            raise ClientError(
                f"the whole-object hash stopped at byte {self._hashed_end} of {self._order.end}: bytes after it "
                "were never handed over. This is a defect of score-client: please report it with --verbose output"
            )
        return self._digest
