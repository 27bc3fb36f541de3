"""Small JSON state files written atomically (write, fsync, rename), so a kill never leaves half a file."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_json(path: Path, document: dict[str, Any], durable: bool = True) -> None:
    """Replace ``path`` whole. ``durable=False`` skips the fsync: for a batch of journals that the caller
    makes durable together (one ``syncfs``), still never half a file (the rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(document, handle, separators=(",", ":"))
        handle.flush()
        if durable:
            os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """The document, or None if it is missing or unreadable (then the caller starts afresh)."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        function = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).syncfs
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = (ctypes.c_int,)
    return function  # type: ignore[no-any-return]


_SYNCFS = _load_syncfs()


def sync_file_system(path: Path) -> None:
    """Flush every dirty page of the file system holding ``path`` (``os.sync`` where there is no syncfs)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _SYNCFS is None or _SYNCFS(fd) != 0:
            os.sync()
    finally:
        os.close(fd)
