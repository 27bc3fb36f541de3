"""Durable, private, symlink-safe file operations under one folder: the local store's file system layer.

* **Durable**: a document is written to a temporary file beside its target, fsynced, renamed over the
  target and the folder fsynced, so a reader or a restart sees the old file, the new one, or none; new
  folders are fsynced into their parents.
* **Private**: files are created 0600 and folders 0700 (controlled-access data is readable by the server's
  user only, whatever the process umask).
* **Symlink-safe**: every path below the root is walked one segment at a time with ``O_NOFOLLOW`` from
  the root's descriptor, so a symbolic link placed anywhere under the root (by mistake or by another
  process) is refused instead of followed out of it. The root itself may be a link (an operator moving
  the data to another disk).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from uuid import uuid4

TMP_PREFIX = ".score-tmp-"  # temporary files; reserved, so never a key segment
FILE_MODE = 0o600
DIR_MODE = 0o700
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class SymlinkRefused(OSError):
    """A path below the store's root goes through a symbolic link."""


def fsync_dir(path: Path | int) -> None:
    """Make a rename/creation/unlink in a folder durable (a rename alone survives no power cut)."""
    if isinstance(path, int):
        os.fsync(path)
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, body: bytes | bytearray | memoryview) -> None:
    view = memoryview(body)
    while view:
        view = view[os.write(fd, view) :]


def write_atomic(path: Path, body: bytes) -> None:
    """Write ``body`` to ``path`` (a path the caller owns, e.g. inside an upload's folder) atomically."""
    parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        write_atomic_at(parent, path.name, body)
    finally:
        os.close(parent)


def write_atomic_at(folder_fd: int, name: str, body: bytes) -> None:
    """``write_atomic`` of ``name`` inside the open folder ``folder_fd``."""
    tmp = f"{TMP_PREFIX}{uuid4().hex}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE, dir_fd=folder_fd)
    try:
        write_all(fd, body)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=folder_fd)
        raise
    os.close(fd)
    try:
        os.replace(tmp, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=folder_fd)
        raise
    os.fsync(folder_fd)


def _refused(name: str, exc: OSError) -> OSError:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return SymlinkRefused(errno.ELOOP, f"{name!r} is a symbolic link or not a folder; refusing to follow it")
    return exc


class Beneath:
    """Operations on paths (sequences of segments) below ``root``, never through a symbolic link."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @contextlib.contextmanager
    def folder(self, segments: Sequence[str], create: bool = False) -> Iterator[int]:
        """An open descriptor of the folder ``segments`` below the root (created 0700 if asked)."""
        fd = self.open_folder(segments, create)
        try:
            yield fd
        finally:
            os.close(fd)

    def open_folder(self, segments: Sequence[str], create: bool = False) -> int:
        """``folder``'s descriptor, for a caller that keeps it open beyond one block (and closes it)."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for segment in segments:
                try:
                    child = os.open(segment, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(segment, DIR_MODE, dir_fd=fd)
                        os.fsync(fd)
                    child = os.open(segment, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    raise _refused(segment, exc) from None
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def open(self, segments: Sequence[str], flags: int = os.O_RDONLY) -> int | None:
        """A descriptor of the regular file at ``segments``, or None if there is none (or not a file)."""
        try:
            with self.folder(segments[:-1]) as parent:
                # O_NONBLOCK: a FIFO placed at the key must not hang the caller (it is refused below, as not a
                # regular file); on a regular file the flag changes nothing.
                fd = os.open(segments[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=parent)
        except (FileNotFoundError, NotADirectoryError, SymlinkRefused):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None  # the file itself is a link: as if absent
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return fd

    def write(self, segments: Sequence[str], body: bytes) -> None:
        """Write a document atomically, creating its folders."""
        with self.folder(segments[:-1], create=True) as parent:
            write_atomic_at(parent, segments[-1], body)

    def move_in(self, source: Path, segments: Sequence[str]) -> None:
        """Rename ``source`` (same file system) to ``segments``, creating folders, durably."""
        with self.folder(segments[:-1], create=True) as parent:
            os.replace(source, segments[-1], dst_dir_fd=parent)
            os.fsync(parent)

    def unlink(self, segments: Sequence[str]) -> bool:
        """Remove the file; prune the folders it leaves empty. False if there was nothing to remove."""
        try:
            with self.folder(segments[:-1]) as parent:
                os.unlink(segments[-1], dir_fd=parent)
                os.fsync(parent)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, SymlinkRefused):
            return False
        for depth in range(len(segments) - 1, 0, -1):  # prune empty folders, deepest first
            try:
                with self.folder(segments[: depth - 1]) as parent:
                    os.rmdir(segments[depth - 1], dir_fd=parent)
            except OSError:
                break
        return True

    def walk(self, segments: Sequence[str], name_prefix: str) -> Iterator[tuple[str, os.stat_result]]:
        """``(relative path, status)`` of every regular file below folder ``segments`` whose first name
        starts with ``name_prefix``, in key order (a folder sorts as ``name/``); links are skipped."""
        try:
            with self.folder(segments) as fd:
                yield from _walk_fd(fd, "", name_prefix)
        except (FileNotFoundError, NotADirectoryError, SymlinkRefused):
            return


def _walk_fd(fd: int, prefix: str, name_prefix: str) -> Iterator[tuple[str, os.stat_result]]:
    with os.scandir(fd) as scan:
        entries = [e for e in scan if e.name.startswith(name_prefix) and not e.name.startswith(TMP_PREFIX)]
    ordered = sorted(
        ((e.name + "/", e) if e.is_dir(follow_symlinks=False) else (e.name, e) for e in entries),
        key=lambda item: item[0],
    )
    for sort_name, entry in ordered:
        if sort_name.endswith("/"):
            try:
                child = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue  # removed meanwhile, or replaced by a link
            try:
                yield from _walk_fd(child, f"{prefix}{entry.name}/", "")
            finally:
                os.close(child)
        elif entry.is_file(follow_symlinks=False):
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            yield f"{prefix}{entry.name}", info
