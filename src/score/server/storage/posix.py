"""The POSIX backend: objects in a directory of a shared file system (NFS, Lustre, GPFS), as HPC sites hold data.

It is the local store's machinery (``storage/local``: files beneath one root, parts written in place, documents
renamed into place, ``flock`` between writers, this server serving its own signed URLs), pointed at a directory
that several replicas mount at the same path. What makes sharing safe is what the local store already relies
on, now across hosts: ``rename`` and ``link`` are atomic, ``O_EXCL`` creates once, and ``flock`` locks are seen
by every client (NFSv4, or v3 with lockd; Lustre mounted with ``-o flock``; GPFS) -- which ``check_ready``
proves at start-up rather than assumes. The URL signing key lives in the shared directory too, created once
by whichever replica comes first, so a URL signed by one replica is honoured by all.

Layout under ``root``: ``store/`` (as the local store's root) and ``keys/url-signing.key``.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from score.server.storage.backends import PosixConfig
from score.server.storage.base import StoreMisconfigured
from score.server.storage.local import LocalStore, load_or_create_signing_key


class PosixStore(LocalStore):
    """A LocalStore whose root is shared by every replica; refuses to start on a missing or lock-less mount."""

    name = "posix"

    @classmethod
    def shared(cls, config: PosixConfig, base_url: str, min_free_bytes: int) -> PosixStore:
        if config.root is None:
            raise StoreMisconfigured("storage = posix needs posix.root (SCORE_POSIX__ROOT): the shared directory")
        root = config.root.absolute()
        if not root.is_dir():
            raise StoreMisconfigured(f"posix.root {root} is not a directory: mount the shared file system there")
        if not (root / "store").is_dir() and not config.create:
            raise StoreMisconfigured(
                f"posix.root {root} holds no Score store: if the shared file system is not mounted there, mount "
                "it; if this is the first start, set posix.create = true (SCORE_POSIX__CREATE=true) once"
            )
        key = load_or_create_signing_key(root / "keys" / "url-signing.key")
        return cls(root / "store", base_url, signing_key=key, min_free_bytes=min_free_bytes)

    def check_ready(self, sentinel_key: str) -> None:
        """Writable, and ``flock`` works on this mount (part writes and completion depend on it)."""
        probe = self.root / f".lock-probe-{os.getpid()}"
        try:
            fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreMisconfigured(
                f"cannot write in {self.root}: {exc.strerror}; check the mount and its permissions"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise StoreMisconfigured(
                    f"the file system of {self.root} has no working flock ({exc.strerror}): mount NFS with locking "
                    "(v4, or v3 with lockd) or Lustre with -o flock"
                ) from None
            raise
        finally:
            os.close(fd)
            Path(probe).unlink(missing_ok=True)
        super().check_ready(sentinel_key)
