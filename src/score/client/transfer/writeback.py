"""Flush a download to disk while it is still arriving, so the closing fsync has little left to write."""

from __future__ import annotations

import os
import threading


class WritebackFlusher:
    """Runs ``fdatasync`` on a file in the background each time a part of it is finished.

    A download is fsync'd before its final rename (a crash must never leave a damaged file under the
    final name). Left to the end, that fsync writes the whole file out at once and stalls for it (about
    0.4 s per GiB here, with the page cache dirty limit far above a GiB); flushing behind each finished
    part overlaps that disk time with the transfer, so only the last parts remain for the final fsync.
    Errors are left for the final fsync to raise.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._wanted = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="writeback", daemon=True)
        self._thread.start()

    def part_finished(self) -> None:
        self._wanted.set()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            if self._closing:
                return
            self._wanted.clear()
            try:
                os.fdatasync(self._fd)
            except OSError:
                return

    def close(self) -> None:
        """Stop flushing (waiting for a flush in progress); the caller's own fsync then finishes the job."""
        self._closing = True
        self._wanted.set()
        self._thread.join()
