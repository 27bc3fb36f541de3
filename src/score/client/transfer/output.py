"""The file a download writes into: parts land at their offsets, bypassing the page cache when it can.

Buffered writes of a big download cost the client more than receiving it: every byte is copied into
freshly allocated page-cache pages (on a VM whose free memory goes back to the host, each new page is
a host fault too), parallel writers queue on the file's inode lock, and the closing fsync then writes
the whole file out at once. Direct I/O (``O_DIRECT``) hands the receive buffers to the disk instead:
no copy, no dirty pages, nothing left for the fsync but metadata. It needs block-aligned buffers,
offsets and lengths, so whole-object downloads use it (parts start at multiples of the part size and
receive buffers are page-aligned ``mmap`` memory) and anything unaligned (the object's last few bytes,
a byte range, a file system that refuses ``O_DIRECT``) goes through the ordinary descriptor.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

from score.client.transfer.writeback import WritebackFlusher

ALIGN = 4096  # the largest logical block size in use; a multiple of every smaller one
FLUSH_BEHIND_MIN = 64 * 1024 * 1024  # smaller files have little to flush early; a thread each would cost more
_O_DIRECT = getattr(os, "O_DIRECT", 0)


class OutputFile:
    def __init__(self, path: Path, size: int, direct: bool) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._direct: int | None = None
        try:
            os.ftruncate(self.fd, size)
            if direct and _O_DIRECT:
                try:
                    self._direct = os.open(path, os.O_WRONLY | _O_DIRECT)
                except OSError:  # tmpfs, some FUSE and network file systems: buffered it is
                    self._direct = None
        except BaseException:
            os.close(self.fd)
            raise
        # Linux serialises writes to one file on its inode lock, and writers queued there spin in the
        # kernel (measured: a quarter of the client's CPU on 2 cores); queueing here sleeps instead.
        self._lock = threading.Lock()
        # Buffered bytes of a big file are flushed behind each finished part; direct writes leave nothing to
        # flush, and a small file's few pages are written out by its batch's syncfs or its final fsync.
        self._flusher = None if self.direct or size < FLUSH_BEHIND_MIN else WritebackFlusher(self.fd)

    @property
    def direct(self) -> bool:
        return self._direct is not None

    def write(self, data: memoryview, position: int) -> None:
        """Write all of ``data`` at ``position``: the aligned head directly when possible, the rest buffered."""
        with self._lock:
            if self._direct is not None and position % ALIGN == 0:
                aligned = len(data) - len(data) % ALIGN
                done = self._write_direct(data[:aligned], position) if aligned else 0
                data, position = data[done:], position + done
            while data:
                written = os.pwrite(self.fd, data, position)
                data, position = data[written:], position + written

    def _write_direct(self, data: memoryview, position: int) -> int:
        """Bytes written directly; on EINVAL (alignment this file system will not take) direct I/O is
        dropped for the rest of the download and the caller writes the bytes the ordinary way."""
        done = 0
        try:
            while done < len(data):
                written = os.pwrite(self._direct, data[done:], position + done)  # type: ignore[arg-type]
                done += written
                if written % ALIGN:
                    break  # a short, unaligned write: finish this chunk buffered
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._close_direct()
        return done

    def part_finished(self) -> None:
        """A part is complete: start writing buffered bytes out (see ``WritebackFlusher``)."""
        if self._flusher is not None:
            self._flusher.part_finished()

    def _close_direct(self) -> None:
        if self._direct is not None:
            os.close(self._direct)
            self._direct = None

    def close(self) -> None:
        if self._flusher is not None:
            self._flusher.close()
        self._close_direct()
        os.close(self.fd)
