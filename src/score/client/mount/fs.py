"""The FUSE file system: the tree's paths as read-only files and directories, reads through ``ObjectReader``.

Binding: ``mfusepy`` (the maintained successor of fusepy) over Debian's libfuse3. It is pure ctypes, so
nothing compiles on install, and its callbacks run on libfuse's own threads, which suits the thread-based
transfer code this reuses; ``pyfuse3`` would need a C build and an async (trio) rewrite of the read path.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import logging
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")  # libfuse3 even where libfuse2 is installed too

import mfusepy

from score.client.mount.listing import MountedFile
from score.client.mount.reader import ObjectReader, Sequence
from score.client.mount.tree import Link, Tree

FuseOSError = mfusepy.FuseOSError
log = logging.getLogger("score.mount")
BLOCK_SIZE = 4096
KERNEL_READ = 1 << 20


def raise_read_ahead(mount_point: str, wait: float = 30.0) -> None:
    """Once the mount is up, raise the kernel's read-ahead on it from 128 KiB to ``KERNEL_READ``: then a
    sequential reader's requests come 1 MiB at a time, ahead of it, instead of 128 KiB each after the last
    (1 GiB with dd: 323 -> 421 MB/s on the embedded store). Only root may; anyone else keeps the default."""
    deadline = time.monotonic() + wait
    while not os.path.ismount(mount_point):
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)
    device = os.stat(mount_point).st_dev
    setting = Path(f"/sys/class/bdi/{os.major(device)}:{os.minor(device)}/read_ahead_kb")
    try:
        setting.write_text(str(KERNEL_READ // 1024))
    except OSError as exc:
        log.info("kernel read-ahead stays at its default (%s: %s); as root it is raised", setting, exc.strerror)


class FUSE(mfusepy.FUSE):
    """mfusepy's FUSE, but a read's bytes go from the cache to libfuse's buffer in one copy: mfusepy's own
    ``read`` wants ``bytes``, which costs another copy of every byte read."""

    def read(self, path: bytes | None, buf: Any, size: int, offset: int, fip: Any) -> int:
        data = self.operations.read(None, size, offset, fip.contents.fh)
        n = len(data)
        if n:
            source = (ctypes.c_char * n).from_buffer(data) if isinstance(data, memoryview) else data
            ctypes.memmove(buf, source, n)
        return n


class _Open:
    __slots__ = ("file", "sequence")

    def __init__(self, f: MountedFile) -> None:
        self.file = f
        self.sequence = Sequence()


class ScoreFs(mfusepy.Operations):
    """Every write, create, rename or attribute change answers ``EROFS``."""

    use_ns = True  # times in nanoseconds (mfusepy's float seconds are deprecated)

    def __init__(self, tree: Tree, reader: ObjectReader, started_ns: int) -> None:
        self.tree = tree  # replaced whole by the refresher: a lookup sees the old tree or the new one
        self.reader = reader
        self._started_ns = started_ns
        self._uid, self._gid = os.getuid(), os.getgid()
        self._open: dict[int, _Open] = {}
        self._handles = itertools.count(1)
        self._lock = threading.Lock()
        self.mounted = False  # set once the kernel has started the file system

    def init_with_config(self, conn: Any, config: Any) -> None:
        """Kernel requests of up to ``KERNEL_READ``: libfuse asks the kernel for as many pages per request as
        ``max_write`` allows (read-ahead, which libfuse can only lower, is raised by ``raise_read_ahead``)."""
        self.mounted = True
        if conn is not None:
            conn.max_write = KERNEL_READ

    # -- what is there -------------------------------------------------------------------------
    def _node(self, path: str) -> Any:
        node = self.tree.lookup(path)
        if node is None:
            raise FuseOSError(errno.ENOENT)
        return node

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        node = self._node(path)
        base = {"st_uid": self._uid, "st_gid": self._gid, "st_blksize": 1 << 20}
        if isinstance(node, MountedFile):
            times = {"st_mtime": node.mtime_ns, "st_ctime": node.mtime_ns, "st_atime": node.mtime_ns}
            return {
                **base,
                **times,
                "st_mode": stat.S_IFREG | 0o444,
                "st_nlink": 1,
                "st_size": node.size,
                "st_blocks": -(-node.size // 512),
            }
        times = {"st_mtime": self._started_ns, "st_ctime": self._started_ns, "st_atime": self._started_ns}
        if isinstance(node, Link):
            return {**base, **times, "st_mode": stat.S_IFLNK | 0o777, "st_nlink": 1, "st_size": len(node.target)}
        subdirectories = sum(1 for child in node.values() if isinstance(child, dict))
        return {**base, **times, "st_mode": stat.S_IFDIR | 0o555, "st_nlink": 2 + subdirectories, "st_size": 0}

    def readdir(self, path: str, fh: int) -> list[str]:
        node = self._node(path)
        if not isinstance(node, dict):
            raise FuseOSError(errno.ENOTDIR)
        return [".", "..", *node]

    def readlink(self, path: str) -> str:
        node = self._node(path)
        if not isinstance(node, Link):
            raise FuseOSError(errno.EINVAL)
        return node.target

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": BLOCK_SIZE, "f_frsize": BLOCK_SIZE, "f_files": self.tree.files, "f_namemax": 255}

    # -- reading -------------------------------------------------------------------------------
    def open(self, path: str, flags: int) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            raise FuseOSError(errno.EROFS)
        node = self._node(path)
        if not isinstance(node, MountedFile):
            raise FuseOSError(errno.EISDIR if isinstance(node, dict) else errno.EINVAL)
        self.reader.url(node)  # the server's access check, at open: EACCES here, not on the first read
        handle = next(self._handles)
        with self._lock:
            self._open[handle] = _Open(node)
        return handle

    def read(self, path: str | None, size: int, offset: int, fh: int) -> memoryview | bytes:
        with self._lock:
            opened = self._open.get(fh)
        if opened is None:
            raise FuseOSError(errno.EBADF)
        return self.reader.read(opened.file, offset, size, opened.sequence)

    def release(self, path: str | None, fh: int) -> int:
        with self._lock:
            self._open.pop(fh, None)
        return 0

    # -- read-only -----------------------------------------------------------------------------
    def _read_only(self, *args: Any) -> Any:
        raise FuseOSError(errno.EROFS)

    chmod = chown = create = link = mkdir = mknod = rename = rmdir = symlink = _read_only
    truncate = unlink = utimens = write = setxattr = removexattr = _read_only
