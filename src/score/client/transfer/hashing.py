"""Whole-file MD5 computed beside the transfer, so verification does not double the transfer time.

hashlib releases the GIL on large buffers, so these threads use the second core while the part
workers move bytes.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

CHUNK = 4 * 1024 * 1024


class SequentialFileHasher:
    """Hashes a whole file front to back in a background thread (uploads: the file is all there)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._digest: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="md5-file", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            md5 = hashlib.md5()  # noqa: S324 - integrity, not security
            with open(self._path, "rb", buffering=0) as handle:
                buffer = bytearray(CHUNK)
                view = memoryview(buffer)
                while n := handle.readinto(buffer):
                    md5.update(view[:n])
            self._digest = md5.hexdigest()
        except BaseException as exc:  # reported by result()
            self._error = exc

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
                    position, end = offset, offset + length
                    while position < end:
                        data = os.pread(fd, min(CHUNK, end - position), position)
                        if not data:
                            raise OSError(f"{self._path} is shorter than expected at byte {position}")
                        md5.update(data)
                        position += len(data)
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
