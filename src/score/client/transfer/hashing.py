"""Whole-file MD5 computed beside the transfer, so verification does not double the transfer time.

hashlib releases the GIL on large buffers, so these threads use the second core while the part
workers move bytes.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

CHUNK = 4 * 1024 * 1024


def hash_range(fd: int, offset: int, length: int, *hashes: Any) -> None:
    """Feed ``length`` bytes of ``fd`` from ``offset`` to every hash; a short file is an error."""
    position, end = offset, offset + length
    while position < end:
        data = os.pread(fd, min(CHUNK, end - position), position)
        if not data:
            raise OSError(f"file ended at byte {position}, expected {end}")
        for digest in hashes:
            digest.update(data)
        position += len(data)


def md5_of_range(fd: int, offset: int, length: int) -> str:
    md5 = hashlib.md5()  # noqa: S324 - integrity, not security
    hash_range(fd, offset, length, md5)
    return md5.hexdigest()


class FileAndPartHasher:
    """One front-to-back pass over a file computing the whole-file MD5 and every part's MD5 (uploads).

    Part senders need their part's MD5 before the first byte goes out (for ``Content-MD5``); this
    thread runs ahead of them (hashing is faster than any store takes bytes), so a sender rarely waits,
    and the file is read once for hashing instead of once per part plus once for the whole.
    """

    def __init__(self, path: Path, parts: list[tuple[int, int]]) -> None:
        self._path = path
        self._parts = sorted(parts)  # (offset, size), covering the file in order
        self._part_md5: dict[int, str] = {}
        self._ready = threading.Condition()
        self._digest: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="md5-file", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            whole = hashlib.md5()  # noqa: S324 - integrity, not security
            fd = os.open(self._path, os.O_RDONLY)
            try:
                for offset, size in self._parts:
                    part = hashlib.md5()  # noqa: S324
                    hash_range(fd, offset, size, whole, part)
                    with self._ready:
                        self._part_md5[offset] = part.hexdigest()
                        self._ready.notify_all()
            finally:
                os.close(fd)
            self._digest = whole.hexdigest()
        except BaseException as exc:  # reported to whoever waits
            self._error = exc
        finally:
            with self._ready:
                self._ready.notify_all()

    def part_md5(self, offset: int) -> str:
        """The MD5 of the part starting at ``offset``, waiting for the pass to reach it."""
        with self._ready:
            while offset not in self._part_md5 and self._error is None and self._thread.is_alive():
                self._ready.wait(1.0)
            if offset in self._part_md5:
                return self._part_md5[offset]
        if self._error is not None:
            raise self._error
        raise RuntimeError(f"no part starts at byte {offset}")

    def result(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._digest is not None
        return self._digest


class OrderedRangeHasher:
    """Hashes a file being written part by part, following the contiguous prefix of finished parts.

    Downloads finish parts roughly in order; each finished part is re-read (from the page cache) and
    hashed while later parts are still arriving, so only the tail remains to hash at the end.
    """

    def __init__(self, path: Path, ranges: list[tuple[int, int]]) -> None:
        self._path = path
        self._ranges = ranges  # (offset, length) in file order
        self._done = [threading.Event() for _ in ranges]
        self._stop = threading.Event()
        self._digest: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="md5-ordered", daemon=True)
        self._thread.start()

    def mark_done(self, index: int) -> None:
        self._done[index].set()

    def cancel(self) -> None:
        self._stop.set()
        for event in self._done:
            event.set()

    def _run(self) -> None:
        try:
            md5 = hashlib.md5()  # noqa: S324
            fd = os.open(self._path, os.O_RDONLY)
            try:
                for index, (offset, length) in enumerate(self._ranges):
                    self._done[index].wait()
                    if self._stop.is_set():
                        return
                    hash_range(fd, offset, length, md5)
            finally:
                os.close(fd)
            self._digest = md5.hexdigest()
        except BaseException as exc:
            self._error = exc

    def result(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._digest is None:
            raise RuntimeError("hashing was cancelled")
        return self._digest
