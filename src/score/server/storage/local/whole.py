"""Whole-object PUTs on the local store (``SignsWholePuts``): one signed PUT creates an object, all or nothing,
and only with the bytes of the MD5 its URL was signed for, as S3 does with a signed ``Content-MD5``.

Why: a one-part upload through the multipart machinery costs this store ~15 file-system operations and the
server ~13 ms of CPU (the start with its reservation and state documents, the part and its record, the
listing, the completion, the clean-up), and a job of many small files is mostly that. Here the bytes go to a
temporary file beside the key, are hashed as they arrive, fsynced, and renamed over the key only if they hash
to the signed MD5. The MD5 stays with the file as an extended attribute (``user.score.md5``), so a HEAD
reports it as the object's ETag: that is what the finalize of a whole-object upload checks
(``services/uploads.py``), exactly as on S3.

The attribute always describes the file's bytes: nothing writes an object's file in place (a multipart
completion or a document write replaces the file, with a new inode that has no attribute). A file system
without user extended attributes (some NFS mounts; tmpfs before Linux 6.6) gets no whole-object URLs
(``sign_whole_put`` answers None) and uploads as before. A temporary file that a killed PUT leaves behind is
swept like a document's (``LocalStore.list_uploads``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from uuid import uuid4

from score.core.md5 import is_hex
from score.server.storage.base import StoreError
from score.server.storage.local.files import FILE_MODE, TMP_PREFIX, Beneath, write_all

MD5_ATTRIBUTE = "user.score.md5"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class WrongBytes(StoreError):
    """The body of a whole-object PUT does not hash to the MD5 its URL was signed for (S3's BadDigest)."""


def keeps_attributes(folder: Path) -> bool:
    """Whether files in ``folder`` keep user extended attributes: tried once, on a scratch file."""
    probe = folder / f"{TMP_PREFIX}{uuid4().hex}"
    try:
        fd = os.open(probe, _CREATE, FILE_MODE)
    except OSError:
        return False
    try:
        os.setxattr(fd, MD5_ATTRIBUTE, b"0" * 32)
        return os.getxattr(fd, MD5_ATTRIBUTE) == b"0" * 32
    except OSError:
        return False
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(probe)


def kept_md5(fd: int) -> str | None:
    """The MD5 a whole-object PUT verified and kept with the open file, or None (written otherwise)."""
    try:
        value = os.getxattr(fd, MD5_ATTRIBUTE).decode("ascii", "replace")
    except OSError:
        return None
    return value if is_hex(value) else None


class WholeWriter:
    """Receives one whole-object PUT (``write`` per batch of bytes, in order, then ``finish``; always ``close``).
    Not thread-safe itself: one writer per request. Until ``finish`` the key is untouched."""

    def __init__(self, files: Beneath, segments: Sequence[str], size: int, md5: str) -> None:
        self.size = size
        self.md5 = md5
        self.received = 0
        self._name = segments[-1]
        self._temporary = f"{TMP_PREFIX}{uuid4().hex}"
        self._placed = False
        self._hash = hashlib.md5()  # noqa: S324 - integrity checksum mandated by the protocol
        self._folder = files.open_folder(segments[:-1], create=True)
        try:
            self._fd = os.open(self._temporary, _CREATE, FILE_MODE, dir_fd=self._folder)
        except BaseException:
            os.close(self._folder)
            raise

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        if self.received + len(chunk) > self.size:
            raise ValueError(f"the body is longer than the {self.size} bytes its Content-Length announced")
        self._hash.update(chunk)
        write_all(self._fd, chunk)
        self.received += len(chunk)

    def finish(self) -> str:
        """Make the bytes the object (durably), if they are all there and hash to the signed MD5; their MD5."""
        if self.received != self.size:
            raise ValueError(f"the body had {self.received} bytes but its Content-Length announced {self.size}")
        md5 = self._hash.hexdigest()
        if md5 != self.md5:
            raise WrongBytes(
                f"BadDigest: the body hashes to MD5 {md5}, not the {self.md5} this URL was signed for; the bytes "
                "were damaged in transit or the file changed: upload it again"
            )
        os.setxattr(self._fd, MD5_ATTRIBUTE, md5.encode("ascii"))
        os.fsync(self._fd)
        os.replace(self._temporary, self._name, src_dir_fd=self._folder, dst_dir_fd=self._folder)
        self._placed = True
        os.fsync(self._folder)
        return md5

    def close(self) -> None:
        """Release the files; bytes never placed under the key are removed."""
        with contextlib.suppress(OSError):
            os.close(self._fd)
        if not self._placed:
            with contextlib.suppress(OSError):
                os.unlink(self._temporary, dir_fd=self._folder)
        with contextlib.suppress(OSError):
            os.close(self._folder)
