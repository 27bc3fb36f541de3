"""The local-disk ObjectStore: keys are files, and the server itself serves the signed URLs.

Layout under ``root`` (e.g. ``<data-dir>/store``), every file 0600 and every folder 0700::

    objects/<key>                          every object and document, one file per key
    multipart/<uploadId>/upload.json       {key, size, created} of an upload in progress
    multipart/<uploadId>/data              the object being uploaded, its space reserved up front
    multipart/<uploadId>/parts/NNNNNNNN.json   {partNumber, etag, size, offset} per stored part
    ../keys/url-signing.key                the HMAC secret of the signed URLs (0600)

Parts are written in place into ``data`` at their offsets, so completing an upload is a rename, not a
copy of the whole object. Durability rules, so that a process killed at any instant loses nothing it
acknowledged: a part is recorded only after its bytes are fsynced; every document is written to a
temporary file in the same folder, fsynced, renamed over the final name and the folder fsynced; a
completed object appears under its key by one rename. Keys are reached without following symbolic links
(``files``).

Space: starting an upload reserves its whole size on disk (``fallocate``), and refuses with StoreFull
when that would leave less than ``min_free_bytes`` free, so an upload that starts can finish and the
server's own small writes (state documents, the registry, the audit log) keep their room. On a file
system without ``fallocate`` every part is checked against the free space instead.

A stored part is immutable: a PUT of a part the store already holds is hashed, not written, and
acknowledged only if the bytes are the same (a retry whose answer was lost); different bytes are refused
with PartImmutable and change nothing. A first PUT whose bytes fail their ``Content-MD5`` leaves the part
unrecorded.

Part writes and completion synchronise through ``flock`` on ``data``: each batch of part bytes is
written under a shared lock after checking that ``data`` is still the upload's file, and completion
and abort hold an exclusive lock. A late or retried PUT therefore can never write into an object after
it was completed (it gets UploadNotFound instead).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode
from uuid import uuid4

from score.server.storage.base import (
    InvalidKey,
    ObjectHead,
    StoreError,
    StoreFull,
    StoreUpload,
    TiB,
    UploadedPart,
    UploadNotFound,
    check_part_list,
    keys_after,
    range_header,
)
from score.server.storage.local.files import (
    DIR_MODE,
    FILE_MODE,
    TMP_PREFIX,
    Beneath,
    fsync_dir,
    write_atomic,
)
from score.server.storage.local.whole import WholeWriter, keeps_attributes, kept_md5
from score.server.storage.url_signing import UrlSigner

if TYPE_CHECKING:
    from fastapi import APIRouter

MAX_KEY_BYTES = 1024  # S3's limit
MAX_SEGMENT_BYTES = 255  # NAME_MAX of common file systems
MAX_OBJECT_SIZE = 5 * TiB  # S3's limit, so a local store's objects can move to any backend as they are
SIGNING_KEY_BYTES = 32
STALE_STAGING_SECONDS = 3600  # an upload folder still being set up after this long was left by a crash
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}\Z")
_PART_RECORD = re.compile(r"^(\d{8})\.json\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class BadDigest(StoreError):
    """The bytes received for a part do not match the Content-MD5 the client sent."""


class PartImmutable(StoreError):
    """A PUT of a part the store already holds, with different bytes (HTTP 409): nothing was changed."""


class PartBusy(StoreError):
    """Another request is writing the same part right now (HTTP 409)."""


# -- keys -------------------------------------------------------------------------------------------


def _check_segment(segment: str, what: str) -> None:
    if not segment:
        raise InvalidKey(f"invalid {what}: empty path segment (no leading '/', no '//')")
    if segment in (".", ".."):
        raise InvalidKey(f"invalid {what}: '.' and '..' segments are not allowed")
    if segment.startswith(TMP_PREFIX):
        raise InvalidKey(f"invalid {what}: segments starting with {TMP_PREFIX!r} are reserved")
    if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
        raise InvalidKey(f"invalid {what}: a segment is longer than {MAX_SEGMENT_BYTES} bytes")


def _check_characters(text: str, what: str) -> None:
    if _CONTROL.search(text):
        raise InvalidKey(f"invalid {what}: control characters (including NUL) are not allowed")
    if "\\" in text:
        raise InvalidKey(f"invalid {what}: backslashes are not allowed; use '/' between segments")
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKey(f"invalid {what}: not Unicode text (a lone surrogate)") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise InvalidKey(f"invalid {what}: longer than {MAX_KEY_BYTES} bytes")


def validate_key(key: str) -> str:
    """Return ``key`` if it is safe to map onto a file path, else raise InvalidKey saying why.

    Keys come from object ids and JSON marker payloads; validating here means no key can escape
    ``objects/`` or collide with the store's temporary files, whatever a caller passes.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey("invalid key: it must be a non-empty string")
    _check_characters(key, f"key {key!r}")
    for segment in key.split("/"):
        _check_segment(segment, f"key {key!r}")
    return key


def _split_prefix(prefix: str) -> tuple[list[str], str]:
    """Split a listing prefix into the folders it fully names and the partial last name."""
    _check_characters(prefix, f"prefix {prefix!r}")
    *folders, partial = prefix.split("/")
    for segment in folders:
        _check_segment(segment, f"prefix {prefix!r}")
    return folders, partial


# -- space ------------------------------------------------------------------------------------------


def _load_fallocate() -> ctypes._CFuncPtr | None:
    """libc's ``fallocate`` (not ``posix_fallocate``, which on a file system without the call writes
    every block of the file to emulate it)."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        function = libc.fallocate
        function.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong)
        function.restype = ctypes.c_int
        return function
    return None


_FALLOCATE = _load_fallocate()


def reserve_space(fd: int, size: int) -> bool:
    """Allocate ``size`` bytes for ``fd`` (its size becomes ``size``). False where the file system cannot
    reserve space; raises OSError (ENOSPC, EFBIG) when it can but there is no room."""
    if size == 0:
        return True
    if _FALLOCATE is None:
        return False
    if _FALLOCATE(fd, 0, 0, size) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EOPNOTSUPP, errno.ENOSYS):
        return False
    raise OSError(error, os.strerror(error))


def _human(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


# -- signing key ------------------------------------------------------------------------------------


def load_or_create_signing_key(path: Path) -> bytes:
    """Read the URL signing secret, creating a random one (0600) if none exists yet.

    Creation is atomic and the first writer wins (``link`` refuses to replace), so several server
    processes starting together on one data dir agree on one key.
    """
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        tmp = path.with_name(f"{TMP_PREFIX}{uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)
            os.write(fd, secrets.token_bytes(SIGNING_KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)
        secret = path.read_bytes()
    if len(secret) < SIGNING_KEY_BYTES:
        raise StoreError(
            f"URL signing key {path} holds {len(secret)} bytes, expected {SIGNING_KEY_BYTES}: delete it to "
            "generate a new one (URLs already issued will stop working)"
        )
    return secret


# -- part writing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartRecord:
    """What ``parts/NNNNNNNN.json`` says about one stored part."""

    part_number: int
    etag: str
    size: int
    offset: int

    def to_json(self) -> bytes:
        body = {"partNumber": self.part_number, "etag": self.etag, "size": self.size, "offset": self.offset}
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, body: bytes) -> PartRecord:
        data = json.loads(body)
        return cls(int(data["partNumber"]), str(data["etag"]), int(data["size"]), int(data["offset"]))


def _record_name(part_number: int) -> str:
    return f"{part_number:08d}.json"


def _read_record(parts_dir: Path, part_number: int) -> PartRecord | None:
    try:
        return PartRecord.from_json((parts_dir / _record_name(part_number)).read_bytes())
    except FileNotFoundError:
        return None


class _UploadFile:
    """An open handle on an upload's ``data`` file plus the lock discipline described above."""

    def __init__(self, upload_dir: Path, upload_id: str, flags: int) -> None:
        self.upload_dir = upload_dir
        self.upload_id = upload_id
        self.path = upload_dir / "data"
        try:
            self.fd = os.open(self.path, flags | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise UploadNotFound(_gone(upload_id)) from None

    @contextlib.contextmanager
    def locked(self, exclusive: bool = False) -> Iterator[None]:
        """Hold the lock and guarantee ``data`` is still this upload's file (not completed/aborted)."""
        fcntl.flock(self.fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            try:
                on_disk = os.stat(self.path, follow_symlinks=False)
            except FileNotFoundError:
                raise UploadNotFound(_gone(self.upload_id)) from None
            mine = os.fstat(self.fd)
            if (on_disk.st_dev, on_disk.st_ino) != (mine.st_dev, mine.st_ino):
                raise UploadNotFound(_gone(self.upload_id))
            yield
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _gone(upload_id: str) -> str:
    return (
        f"upload {upload_id} does not exist (never started, already completed or aborted); "
        "ask the server for the upload's status or start a new upload"
    )


class PartWriter:
    """Receives one part's bytes (in order), writes them in place and records the part when done.

    Used by the data endpoint from worker threads: ``write`` per batch of bytes, then ``finish``.
    Not thread-safe itself (one writer per request); writers of different parts run concurrently.
    When the part is already stored (``stored`` is its record), the bytes are only hashed: ``finish``
    then acknowledges the same bytes and refuses different ones, writing nothing either way.
    """

    def __init__(
        self,
        upload: _UploadFile,
        part_number: int,
        offset: int,
        size: int,
        part_lock: int = -1,
        stored: PartRecord | None = None,
    ) -> None:
        self._upload = upload
        self._part_lock = part_lock  # an fd holding this part's exclusive lock, released by close()
        self.part_number = part_number
        self.offset = offset
        self.size = size
        self.stored = stored
        self.received = 0
        self._md5 = hashlib.md5()  # noqa: S324 - integrity checksum mandated by the protocol

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        if self.received + len(chunk) > self.size:
            raise ValueError(f"part {self.part_number} body is longer than its signed size of {self.size} bytes")
        self._md5.update(chunk)
        if self.stored is None:
            view = memoryview(chunk)
            with self._upload.locked():
                position = self.offset + self.received
                while view:
                    written = os.pwrite(self._upload.fd, view, position)
                    view = view[written:]
                    position += written
        self.received += len(chunk)

    def finish(self, content_md5_hex: str | None) -> str:
        """Make the part durable and record it; return its ETag (the MD5 hex).

        Raises BadDigest, without recording anything, when ``content_md5_hex`` differs, and
        PartImmutable when the part was stored before with other bytes.
        """
        if self.received != self.size:
            raise ValueError(
                f"part {self.part_number} body has {self.received} bytes but its URL was signed for {self.size}"
            )
        etag = self._md5.hexdigest()
        if content_md5_hex is not None and content_md5_hex.lower() != etag:
            raise BadDigest(
                f"BadDigest: part {self.part_number} arrived with MD5 {etag} but Content-MD5 says "
                f"{content_md5_hex.lower()}; the bytes were damaged in transit or the file changed: "
                "upload the part again"
            )
        if self.stored is not None:
            if self.stored.etag != etag:
                raise PartImmutable(
                    f"part {self.part_number} of upload {self._upload.upload_id} is already stored with MD5 "
                    f"{self.stored.etag}; these bytes hash to {etag}. A stored part cannot be replaced: if the "
                    "file changed, start the upload over (score-client upload --force)"
                )
            return etag  # the same bytes again: a retry whose first answer was lost
        with self._upload.locked():
            os.fdatasync(self._upload.fd)
            record = PartRecord(self.part_number, etag, self.size, self.offset)
            write_atomic(self._upload.upload_dir / "parts" / _record_name(self.part_number), record.to_json())
        return etag

    def close(self) -> None:
        if self._part_lock >= 0:
            with contextlib.suppress(OSError):
                os.close(self._part_lock)
            self._part_lock = -1
        self._upload.close()


@dataclass
class OpenObject:
    """An object opened for reading: the fd pins this version even if the key is replaced meanwhile."""

    fd: int
    size: int
    last_modified_ms: int

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self.fd, length, offset)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


# -- the store ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiskSpace:
    """The store's file system: what is free and what the store keeps free."""

    free: int
    total: int
    threshold: int

    @property
    def low(self) -> bool:
        return self.free < self.threshold


class LocalStore:
    """ObjectStore over a local folder; its signed URLs point at this server's ``/_store`` endpoint."""

    name = "local"
    etag_is_md5 = True  # part ETags are the MD5 of the bytes this server received
    min_part_size = 1
    max_object_size = MAX_OBJECT_SIZE

    def __init__(self, root: Path, base_url: str, signing_key: bytes | None = None, min_free_bytes: int = 0) -> None:
        self.root = Path(root).absolute()
        self.base_url = base_url.rstrip("/")
        self.min_free_bytes = min_free_bytes
        self.objects = self.root / "objects"
        self.multipart = self.root / "multipart"
        for folder in (self.root, self.objects, self.multipart):
            folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        self._files = Beneath(self.objects)
        self._keeps_md5s = keeps_attributes(self.objects)  # whole-object PUTs need it (``whole``)
        if signing_key is None:
            signing_key = load_or_create_signing_key(self.root.parent / "keys" / "url-signing.key")
        self.signer = UrlSigner(signing_key)

    # -- paths ---------------------------------------------------------------------------------------
    def path_of(self, key: str) -> Path:
        """The file holding ``key`` (validated, so it is always inside ``objects/``)."""
        return self.objects.joinpath(*validate_key(key).split("/"))

    @staticmethod
    def _segments(key: str) -> list[str]:
        return validate_key(key).split("/")

    def _upload_dir(self, upload_id: str) -> Path:
        if not isinstance(upload_id, str) or not _UPLOAD_ID.match(upload_id):
            raise UploadNotFound(f"{upload_id!r} is not an upload id of this store; start a new upload")
        return self.multipart / upload_id

    def _upload_meta(self, upload_id: str) -> dict[str, object]:
        try:
            meta = json.loads((self._upload_dir(upload_id) / "upload.json").read_bytes())
        except FileNotFoundError:
            raise UploadNotFound(_gone(upload_id)) from None
        return meta if isinstance(meta, dict) else {}

    def _upload_size(self, key: str, upload_id: str) -> int:
        """Read ``upload.json``; raise UploadNotFound if it is missing or for another key."""
        meta = self._upload_meta(upload_id)
        if meta.get("key") != key:
            raise UploadNotFound(f"upload {upload_id} is for another object, not {key}; check the object id")
        return int(str(meta["size"]))

    def _signed_url(self, key: str, method: str, params: dict[str, str | int], expires_in: int) -> str:
        if expires_in <= 0:
            raise ValueError(f"expires_in must be positive, got {expires_in}")
        query = self.signer.sign(method, key, params, int(time.time()) + expires_in)
        return f"{self.base_url}/_store/{quote(key, safe='/')}?{urlencode(query)}"

    def data_routes(self) -> APIRouter:
        """The ``/_store`` endpoint its signed URLs point at (``ServesDataPlane``): this store is its own
        data plane, as S3 is S3's."""
        from score.server.storage.local.data_plane import build_store_data_router

        return build_store_data_router()

    def check_ready(self, sentinel_key: str) -> None:
        """The embedded default owns its directory: create the sentinel instead of requiring it."""
        if self.head(sentinel_key) is None:
            self.write_document(sentinel_key, b"heliograph\n")

    # -- space ---------------------------------------------------------------------------------------
    def disk_space(self) -> DiskSpace:
        info = os.statvfs(self.root)
        return DiskSpace(info.f_bavail * info.f_frsize, info.f_blocks * info.f_frsize, self.min_free_bytes)

    def _refuse_unless_room(self, size: int, what: str) -> None:
        space = self.disk_space()
        if space.free - size < space.threshold:
            raise StoreFull(
                f"{what} needs {_human(size)} but the store's disk has {_human(space.free)} free and keeps "
                f"{_human(space.threshold)} free for the server itself; free space on the server or ask its "
                "operator, then try again"
            )

    # -- multipart upload ----------------------------------------------------------------------------
    def start_upload(self, key: str, size: int) -> str:
        validate_key(key)
        if size < 0:
            raise ValueError(f"upload size must be >= 0, got {size}")
        if size > self.max_object_size:
            raise InvalidKey(f"an object holds at most {self.max_object_size} bytes, not {size}")
        self._refuse_unless_room(size, f"an upload of {key}")
        upload_id = uuid4().hex
        staging = self.multipart / f"{TMP_PREFIX}{upload_id}"
        staging.mkdir(mode=DIR_MODE)
        try:
            (staging / "parts").mkdir(mode=DIR_MODE)
            fd = os.open(staging / "data", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
            try:
                reserved = self._reserve(fd, size, key)
                os.fsync(fd)
            finally:
                os.close(fd)
            created = datetime.now(UTC).isoformat(timespec="milliseconds")
            record = {"key": key, "size": size, "created": created, "reserved": reserved}
            write_atomic(staging / "upload.json", json.dumps(record).encode())
            fsync_dir(staging / "parts")
            os.rename(staging, self.multipart / upload_id)  # the upload exists complete or not at all
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        fsync_dir(self.multipart)
        return upload_id

    def _reserve(self, fd: int, size: int, key: str) -> bool:
        try:
            if reserve_space(fd, size):
                return True
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise StoreFull(
                    f"there is no room for {_human(size)} on the store's disk ({_human(self.disk_space().free)} "
                    "free); free space on the server or ask its operator, then try again"
                ) from None
            if exc.errno == errno.EFBIG:
                raise InvalidKey(f"the store's file system cannot hold a file of {size} bytes") from None
            raise
        os.ftruncate(fd, size)  # no reservation on this file system: sparse, checked per part instead
        return False

    def sign_upload_part(
        self, key: str, upload_id: str, part_number: int, offset: int, size: int, expires_in: int
    ) -> str:
        validate_key(key)
        self._upload_dir(upload_id)
        if part_number < 1 or offset < 0 or size < 1:
            raise ValueError(f"invalid part: number {part_number} (>= 1), offset {offset} (>= 0), size {size} (>= 1)")
        params: dict[str, str | int] = {
            "op": "put",
            "uploadId": upload_id,
            "partNumber": part_number,
            "offset": offset,
            "size": size,
        }
        return self._signed_url(key, "PUT", params, expires_in)

    def begin_part_write(self, key: str, upload_id: str, part_number: int, offset: int, size: int) -> PartWriter:
        """Open the upload for writing one part (the data endpoint's PUT); a part already stored is only
        compared (see PartWriter)."""
        validate_key(key)
        total = self._upload_size(key, upload_id)
        if offset + size > total:
            raise ValueError(f"part {part_number} ({size} bytes at {offset}) ends past the upload's {total} bytes")
        upload = _UploadFile(self._upload_dir(upload_id), upload_id, os.O_WRONLY)
        part_lock = -1
        try:
            # One writer per part: two concurrent PUTs of the same part would interleave their bytes
            # on disk while each recorded the MD5 of its own stream.
            part_lock = os.open(
                upload.upload_dir / "parts" / f"{part_number:08d}.lock", os.O_CREAT | os.O_RDWR, FILE_MODE
            )
            try:
                fcntl.flock(part_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise PartBusy(
                    f"part {part_number} of upload {upload_id} is being uploaded by another request; "
                    "retry once it has finished"
                ) from None
            with upload.locked():
                stored = _read_record(upload.upload_dir / "parts", part_number)
            if stored is None and not self._upload_meta(upload_id).get("reserved"):
                self._refuse_unless_room(size, f"part {part_number}")
        except BaseException:
            if part_lock >= 0:
                os.close(part_lock)
            upload.close()
            raise
        return PartWriter(upload, part_number, offset, size, part_lock, stored)

    def _read_records(self, upload_id: str) -> dict[int, PartRecord]:
        parts_dir = self._upload_dir(upload_id) / "parts"
        records: dict[int, PartRecord] = {}
        try:
            names = os.listdir(parts_dir)
        except FileNotFoundError:
            raise UploadNotFound(_gone(upload_id)) from None
        for name in names:
            if _PART_RECORD.match(name):
                with contextlib.suppress(FileNotFoundError):
                    record = PartRecord.from_json((parts_dir / name).read_bytes())
                    records[record.part_number] = record
        return records

    def list_uploaded_parts(self, key: str, upload_id: str) -> list[UploadedPart]:
        self._upload_size(key, upload_id)
        records = self._read_records(upload_id)
        # Looked at after the records: a completion moves ``data`` out before it removes the folder, so a listing
        # that overlapped the removal (and may lack records) is seen as the completed upload it is.
        if not (self._upload_dir(upload_id) / "data").exists():
            raise UploadNotFound(_gone(upload_id))  # completed; only the clean-up was interrupted
        return [UploadedPart(r.part_number, r.etag, r.size) for _, r in sorted(records.items())]

    def complete_upload(self, key: str, upload_id: str, parts: list[UploadedPart]) -> None:
        size = self._upload_size(key, upload_id)
        upload_dir = self._upload_dir(upload_id)
        upload = _UploadFile(upload_dir, upload_id, os.O_RDONLY)
        try:
            with upload.locked(exclusive=True):
                records = self._read_records(upload_id)
                held = {n: UploadedPart(n, r.etag, r.size) for n, r in records.items()}
                check_part_list(parts, held, size, offsets={n: r.offset for n, r in records.items()})
                os.fsync(upload.fd)
                self._files.move_in(upload.path, self._segments(key))
        finally:
            upload.close()
        shutil.rmtree(upload_dir, ignore_errors=True)
        fsync_dir(self.multipart)

    def abort_upload(self, key: str, upload_id: str) -> None:
        if isinstance(upload_id, str) and upload_id.startswith(TMP_PREFIX) and "/" not in upload_id:
            if key:  # a document's temporary file a killed writer left (see list_uploads)
                *folders, name = key.split("/")
                if name == upload_id:
                    self._files.unlink([*folders, name])
            else:  # a start that never finished
                shutil.rmtree(self.multipart / upload_id, ignore_errors=True)
            return
        try:
            upload_dir = self._upload_dir(upload_id)
        except UploadNotFound:
            return
        try:
            upload = _UploadFile(upload_dir, upload_id, os.O_RDONLY)
        except UploadNotFound:
            shutil.rmtree(upload_dir, ignore_errors=True)
            return
        try:  # exclusive lock: no part batch is half-way through while the folder goes away
            fcntl.flock(upload.fd, fcntl.LOCK_EX)
            shutil.rmtree(upload_dir, ignore_errors=True)
        finally:
            upload.close()
        fsync_dir(self.multipart)

    def list_uploads(self) -> Iterator[StoreUpload]:
        """Uploads in progress, folders a completion left behind (its clean-up was cut short), upload
        folders whose creation never finished, and documents' temporary files a killed writer left under
        ``objects/`` (those two after an hour: a live start or write takes milliseconds). The last are
        listed as uploads of their own path so that the sweep, which aborts what it finds, removes them."""
        yield from self._started_uploads()
        stale_before = (time.time() - STALE_STAGING_SECONDS) * 1000
        for folder, _, names in os.walk(self.objects):
            for name in names:
                if not name.startswith(TMP_PREFIX):
                    continue
                path = Path(folder) / name
                with contextlib.suppress(FileNotFoundError):
                    modified = path.lstat().st_mtime_ns // 1_000_000
                    if modified < stale_before:
                        yield StoreUpload(str(path.relative_to(self.objects)), name, modified)

    def _started_uploads(self) -> Iterator[StoreUpload]:
        try:
            entries = list(os.scandir(self.multipart))
        except FileNotFoundError:
            return
        for entry in sorted(entries, key=lambda e: e.name):
            try:
                started_ms = entry.stat(follow_symlinks=False).st_mtime_ns // 1_000_000
            except FileNotFoundError:
                continue
            if entry.name.startswith(TMP_PREFIX):
                if started_ms < (time.time() - STALE_STAGING_SECONDS) * 1000:
                    yield StoreUpload("", entry.name, started_ms)
                continue
            if not _UPLOAD_ID.match(entry.name):
                continue
            try:
                meta = self._upload_meta(entry.name)
            except (UploadNotFound, ValueError):
                meta = {}
            yield StoreUpload(str(meta.get("key", "")), entry.name, started_ms)

    # -- whole-object PUT (``SignsWholePuts``; see ``whole``) --------------------------------------------
    def sign_whole_put(self, key: str, md5: str, expires_in: int) -> str | None:
        """A URL that creates ``key`` with one PUT of exactly the bytes of ``md5``; None where the file system
        cannot keep the MD5 with the file (no extended attributes)."""
        validate_key(key)
        if not self._keeps_md5s:
            return None
        return self._signed_url(key, "PUT", {"op": "whole", "md5": md5.lower()}, expires_in)

    def begin_whole_write(self, key: str, size: int, md5: str) -> WholeWriter:
        """Open a whole-object PUT of ``size`` bytes for the data endpoint (refused when there is no room)."""
        segments = self._segments(key)
        if size > self.max_object_size:
            raise InvalidKey(f"an object holds at most {self.max_object_size} bytes, not {size}")
        self._refuse_unless_room(size, f"an upload of {key}")
        return WholeWriter(self._files, segments, size, md5)

    def put_empty(self, key: str) -> None:
        self.write_document(key, b"")

    # -- reads ---------------------------------------------------------------------------------------
    def sign_read(self, key: str, offset: int | None, length: int | None, expires_in: int) -> str:
        """Signed GET URL; ``length`` None or negative with an offset means "to the end of the object"."""
        validate_key(key)
        params: dict[str, str | int] = {"op": "get"}
        byte_range = range_header(offset, length)
        if byte_range:
            params["range"] = byte_range.removeprefix("bytes=")
        return self._signed_url(key, "GET", params, expires_in)

    def open_read(self, key: str) -> OpenObject | None:
        """Open ``key`` for the data endpoint's GET; None if there is no such object."""
        fd = self._files.open(self._segments(key))
        if fd is None:
            return None
        info = os.fstat(fd)
        return OpenObject(fd, info.st_size, info.st_mtime_ns // 1_000_000)

    def head(self, key: str) -> ObjectHead | None:
        """Size and time; and the MD5 (also as the ETag) of an object a whole-object PUT wrote, as S3 tells it."""
        fd = self._files.open(self._segments(key))
        if fd is None:
            return None
        try:
            info, md5 = os.fstat(fd), kept_md5(fd)
        finally:
            os.close(fd)
        return ObjectHead(key=key, size=info.st_size, last_modified_ms=info.st_mtime_ns // 1_000_000, md5=md5, etag=md5)

    # -- documents -----------------------------------------------------------------------------------
    def read_document(self, key: str, start: int = 0, end: int | None = None) -> bytes | None:
        fd = self._files.open(self._segments(key))
        if fd is None:
            return None
        with os.fdopen(fd, "rb") as handle:
            handle.seek(start)
            return handle.read() if end is None else handle.read(max(end - start, 0))

    def write_document(self, key: str, body: bytes) -> None:
        segments = self._segments(key)
        for attempt in range(3):  # a concurrent delete may prune the folder between mkdir and write
            try:
                self._files.write(segments, body)
                return
            except FileNotFoundError:
                if attempt == 2:
                    raise
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise StoreFull(f"no room on the store's disk to write {key}") from None
                if exc.errno in (errno.ENOTDIR, errno.EISDIR, errno.ELOOP):
                    what = "it clashes with an existing object or folder, or goes through a link"
                    raise StoreError(f"cannot write {key}: {what} ({exc})") from None
                raise

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectHead]:
        folders, partial = _split_prefix(prefix)
        key_prefix = "".join(f"{folder}/" for folder in folders)
        heads = (
            ObjectHead(f"{key_prefix}{relative}", info.st_size, info.st_mtime_ns // 1_000_000)
            for relative, info in self._files.walk(folders, partial)
        )
        return keys_after(heads, start_after)

    def delete(self, key: str) -> None:
        self._files.unlink(self._segments(key))
