"""The local-disk ObjectStore: keys are files, and the server itself serves the signed URLs.

Layout under ``root`` (e.g. ``<data-dir>/store``)::

    objects/<key>                          every object and document, one file per key
    multipart/<uploadId>/upload.json       {key, size, created} of an upload in progress
    multipart/<uploadId>/data              the object being uploaded, pre-sized (sparse)
    multipart/<uploadId>/parts/NNNNNNNN.json   {partNumber, etag, size, offset} per stored part
    ../keys/url-signing.key                the HMAC secret of the signed URLs (0600)

Parts are written in place into ``data`` at their offsets, so completing an upload is a rename, not a
copy of the whole object. Durability rules, so that a process killed at any instant loses nothing it
acknowledged: a part is recorded only after its bytes are fsynced; every document is written to a
temporary file in the same folder, fsynced, renamed over the final name and the folder fsynced; a
completed object appears under its key by one rename.

Part writes and completion synchronise through ``flock`` on ``data``: each batch of part bytes is
written under a shared lock after checking that ``data`` is still the upload's file, and completion
and abort hold an exclusive lock. A late or retried PUT therefore can never write into an object after
it was completed (it gets UploadNotFound instead).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode
from uuid import uuid4

from score.server.storage.base import ObjectHead, StoreError, UploadedPart, UploadNotFound
from score.server.storage.url_signing import UrlSigner

TMP_PREFIX = ".score-tmp-"  # temporary files; reserved, so never a key segment
MAX_KEY_BYTES = 1024  # S3's limit
MAX_SEGMENT_BYTES = 255  # NAME_MAX of common file systems
SIGNING_KEY_BYTES = 32
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
_PART_RECORD = re.compile(r"^(\d{8})\.json$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class BadDigest(StoreError):
    """The bytes received for a part do not match the Content-MD5 the client sent."""


# -- keys -------------------------------------------------------------------------------------------


def _check_segment(segment: str, what: str) -> None:
    if not segment:
        raise ValueError(f"invalid {what}: empty path segment (no leading '/', no '//')")
    if segment in (".", ".."):
        raise ValueError(f"invalid {what}: '.' and '..' segments are not allowed")
    if segment.startswith(TMP_PREFIX):
        raise ValueError(f"invalid {what}: segments starting with {TMP_PREFIX!r} are reserved")
    if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
        raise ValueError(f"invalid {what}: a segment is longer than {MAX_SEGMENT_BYTES} bytes")


def _check_characters(text: str, what: str) -> None:
    if _CONTROL.search(text):
        raise ValueError(f"invalid {what}: control characters (including NUL) are not allowed")
    if "\\" in text:
        raise ValueError(f"invalid {what}: backslashes are not allowed; use '/' between segments")
    if len(text.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"invalid {what}: longer than {MAX_KEY_BYTES} bytes")


def validate_key(key: str) -> str:
    """Return ``key`` if it is safe to map onto a file path, else raise ValueError saying why.

    Keys come from object ids and JSON marker payloads; validating here means no key can escape
    ``objects/`` or collide with the store's temporary files, whatever a caller passes.
    """
    if not isinstance(key, str) or not key:
        raise ValueError("invalid key: it must be a non-empty string")
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


# -- durable file primitives ------------------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    """Make a rename/creation/unlink in ``path`` durable (a rename alone survives no power cut)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, body: bytes, mode: int = 0o644) -> None:
    """Write ``body`` to ``path`` so a reader (or a restart) sees the old file, the new one, or none."""
    tmp = path.with_name(f"{TMP_PREFIX}{uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def ensure_dir(path: Path) -> None:
    """``mkdir -p`` that also fsyncs each new folder's parent, so the folder survives a crash."""
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
        fsync_dir(folder.parent)


def load_or_create_signing_key(path: Path) -> bytes:
    """Read the URL signing secret, creating a random one (0600) if none exists yet.

    Creation is atomic and the first writer wins (``link`` refuses to replace), so several server
    processes starting together on one data dir agree on one key.
    """
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f"{TMP_PREFIX}{uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
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


class _UploadFile:
    """An open handle on an upload's ``data`` file plus the lock discipline described above."""

    def __init__(self, upload_dir: Path, upload_id: str, flags: int) -> None:
        self.upload_dir = upload_dir
        self.upload_id = upload_id
        self.path = upload_dir / "data"
        try:
            self.fd = os.open(self.path, flags | os.O_CLOEXEC)
        except FileNotFoundError:
            raise UploadNotFound(_gone(upload_id)) from None

    @contextlib.contextmanager
    def locked(self, exclusive: bool = False) -> Iterator[None]:
        """Hold the lock and guarantee ``data`` is still this upload's file (not completed/aborted)."""
        fcntl.flock(self.fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            try:
                on_disk = os.stat(self.path)
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


class PartBusy(StoreError):
    """Another request is writing the same part right now (HTTP 409)."""


class PartWriter:
    """Receives one part's bytes (in order), writes them in place and records the part when done.

    Used by the data endpoint from worker threads: ``write`` per batch of bytes, then ``finish``.
    Not thread-safe itself (one writer per request); writers of different parts run concurrently.
    """

    def __init__(self, upload: _UploadFile, part_number: int, offset: int, size: int, part_lock: int = -1) -> None:
        self._upload = upload
        self._part_lock = part_lock  # an fd holding this part's exclusive lock, released by close()
        self.part_number = part_number
        self.offset = offset
        self.size = size
        self.received = 0
        self._md5 = hashlib.md5()  # noqa: S324 - integrity checksum mandated by the protocol

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        if self.received + len(chunk) > self.size:
            raise ValueError(f"part {self.part_number} body is longer than its signed size of {self.size} bytes")
        self._md5.update(chunk)
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

        Raises BadDigest, without recording anything, when ``content_md5_hex`` differs.
        """
        if self.received != self.size:
            raise ValueError(
                f"part {self.part_number} body has {self.received} bytes but its URL was signed for {self.size}"
            )
        etag = self._md5.hexdigest()
        with self._upload.locked():
            os.fdatasync(self._upload.fd)
            if content_md5_hex is not None and content_md5_hex.lower() != etag:
                raise BadDigest(
                    f"BadDigest: part {self.part_number} arrived with MD5 {etag} but Content-MD5 says "
                    f"{content_md5_hex.lower()}; the bytes were damaged in transit or the file changed: "
                    "upload the part again"
                )
            record = PartRecord(self.part_number, etag, self.size, self.offset)
            parts_dir = self._upload.upload_dir / "parts"
            write_atomic(parts_dir / _record_name(self.part_number), record.to_json())
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


def _check_tiling(parts: list[UploadedPart], records: dict[int, PartRecord], size: int) -> None:
    """Refuse to complete unless the given parts are all stored, match, and cover [0, size) in order."""
    position = 0
    previous = 0
    for part in parts:
        if part.part_number <= previous:
            raise ValueError(f"parts must be given in increasing order; part {part.part_number} is out of order")
        record = records.get(part.part_number)
        if record is None:
            raise ValueError(f"part {part.part_number} was never stored (or its upload failed): upload it again")
        if part.etag.strip('"').lower() != record.etag:
            raise ValueError(
                f"part {part.part_number} has ETag {record.etag} in the store, not {part.etag}: upload it again"
            )
        if part.size != record.size or record.offset != position:
            raise ValueError(
                f"part {part.part_number} covers {record.size} bytes at offset {record.offset}, but the parts "
                f"given must tile the object contiguously (expected offset {position}, size {part.size})"
            )
        position += record.size
        previous = part.part_number
    if position != size:
        raise ValueError(f"the parts given cover {position} bytes, but the upload is {size} bytes: parts are missing")


class LocalStore:
    """ObjectStore over a local folder; its signed URLs point at this server's ``/_store`` endpoint."""

    name = "local"
    etag_is_md5 = True  # part ETags are the MD5 of the bytes this server received
    min_part_size = 1

    def __init__(self, root: Path, base_url: str, signing_key: bytes | None = None) -> None:
        self.root = Path(root).absolute()
        self.base_url = base_url.rstrip("/")
        self.objects = self.root / "objects"
        self.multipart = self.root / "multipart"
        for folder in (self.objects, self.multipart):
            folder.mkdir(parents=True, exist_ok=True)
        if signing_key is None:
            signing_key = load_or_create_signing_key(self.root.parent / "keys" / "url-signing.key")
        self.signer = UrlSigner(signing_key)

    # -- paths ---------------------------------------------------------------------------------------
    def path_of(self, key: str) -> Path:
        """The file holding ``key`` (validated, so it is always inside ``objects/``)."""
        return self.objects.joinpath(*validate_key(key).split("/"))

    def _upload_dir(self, upload_id: str) -> Path:
        if not isinstance(upload_id, str) or not _UPLOAD_ID.match(upload_id):
            raise UploadNotFound(f"{upload_id!r} is not an upload id of this store; start a new upload")
        return self.multipart / upload_id

    def _upload_size(self, key: str, upload_id: str) -> int:
        """Read ``upload.json``; raise UploadNotFound if it is missing or for another key."""
        try:
            meta = json.loads((self._upload_dir(upload_id) / "upload.json").read_bytes())
        except FileNotFoundError:
            raise UploadNotFound(_gone(upload_id)) from None
        if meta.get("key") != key:
            raise UploadNotFound(f"upload {upload_id} is for another object, not {key}; check the object id")
        return int(meta["size"])

    def _signed_url(self, key: str, method: str, params: dict[str, str | int], expires_in: int) -> str:
        if expires_in <= 0:
            raise ValueError(f"expires_in must be positive, got {expires_in}")
        query = self.signer.sign(method, key, params, int(time.time()) + expires_in)
        return f"{self.base_url}/_store/{quote(key, safe='/')}?{urlencode(query)}"

    def check_ready(self, sentinel_key: str) -> None:
        """The embedded default owns its directory: create the sentinel instead of requiring it."""
        if self.head(sentinel_key) is None:
            self.write_document(sentinel_key, b"heliograph\n")

    # -- multipart upload ----------------------------------------------------------------------------
    def start_upload(self, key: str, size: int) -> str:
        validate_key(key)
        if size < 0:
            raise ValueError(f"upload size must be >= 0, got {size}")
        upload_id = uuid4().hex
        staging = self.multipart / f"{TMP_PREFIX}{upload_id}"
        staging.mkdir()
        try:
            (staging / "parts").mkdir()
            with open(staging / "data", "wb") as data:
                data.truncate(size)
                os.fsync(data.fileno())
            created = datetime.now(UTC).isoformat(timespec="milliseconds")
            write_atomic(staging / "upload.json", json.dumps({"key": key, "size": size, "created": created}).encode())
            fsync_dir(staging / "parts")
            os.rename(staging, self.multipart / upload_id)  # the upload exists complete or not at all
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        fsync_dir(self.multipart)
        return upload_id

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
        """Open the upload for writing one part (the data endpoint's PUT).

        Any previous record of this part is removed first (durably), so a re-PUT that fails half-way
        leaves the part missing, never recorded with bytes that no longer match its ETag.
        """
        validate_key(key)
        total = self._upload_size(key, upload_id)
        if offset + size > total:
            raise ValueError(f"part {part_number} ({size} bytes at {offset}) ends past the upload's {total} bytes")
        upload = _UploadFile(self._upload_dir(upload_id), upload_id, os.O_WRONLY)
        part_lock = -1
        try:
            # One writer per part: two concurrent PUTs of the same part would interleave their bytes
            # on disk while each recorded the MD5 of its own stream.
            part_lock = os.open(upload.upload_dir / "parts" / f"{part_number:08d}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(part_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise PartBusy(
                    f"part {part_number} of upload {upload_id} is being uploaded by another request; "
                    "retry once it has finished"
                ) from None
            with upload.locked():
                record = upload.upload_dir / "parts" / _record_name(part_number)
                if record.exists():
                    record.unlink()
                    fsync_dir(record.parent)
        except BaseException:
            if part_lock >= 0:
                os.close(part_lock)
            upload.close()
            raise
        return PartWriter(upload, part_number, offset, size, part_lock)

    def _read_records(self, upload_id: str) -> dict[int, PartRecord]:
        parts_dir = self._upload_dir(upload_id) / "parts"
        records: dict[int, PartRecord] = {}
        try:
            names = os.listdir(parts_dir)
        except FileNotFoundError:
            raise UploadNotFound(_gone(upload_id)) from None
        for name in names:
            if _PART_RECORD.match(name):
                with contextlib.suppress(FileNotFoundError):  # a concurrent re-PUT removed it
                    record = PartRecord.from_json((parts_dir / name).read_bytes())
                    records[record.part_number] = record
        return records

    def list_uploaded_parts(self, key: str, upload_id: str) -> list[UploadedPart]:
        self._upload_size(key, upload_id)
        if not (self._upload_dir(upload_id) / "data").exists():
            raise UploadNotFound(_gone(upload_id))  # completed; only the clean-up was interrupted
        records = self._read_records(upload_id)
        return [UploadedPart(r.part_number, r.etag, r.size) for _, r in sorted(records.items())]

    def complete_upload(self, key: str, upload_id: str, parts: list[UploadedPart]) -> None:
        size = self._upload_size(key, upload_id)
        upload_dir = self._upload_dir(upload_id)
        upload = _UploadFile(upload_dir, upload_id, os.O_RDONLY)
        try:
            with upload.locked(exclusive=True):
                _check_tiling(parts, self._read_records(upload_id), size)
                os.fsync(upload.fd)
                target = self.path_of(key)
                ensure_dir(target.parent)
                os.replace(upload.path, target)
                fsync_dir(target.parent)
        finally:
            upload.close()
        shutil.rmtree(upload_dir, ignore_errors=True)
        fsync_dir(self.multipart)

    def abort_upload(self, key: str, upload_id: str) -> None:
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

    def put_empty(self, key: str) -> None:
        self.write_document(key, b"")

    # -- reads ---------------------------------------------------------------------------------------
    def sign_read(self, key: str, offset: int | None, length: int | None, expires_in: int) -> str:
        """Signed GET URL; ``length`` None or negative with an offset means "to the end of the object"."""
        validate_key(key)
        params: dict[str, str | int] = {"op": "get"}
        if offset is not None or length is not None:
            start = offset or 0
            if start < 0:
                raise ValueError(f"offset must be >= 0, got {start}")
            if length == 0:
                raise ValueError("cannot sign an empty byte range; sign the whole object instead")
            end = "" if length is None or length < 0 else str(start + length - 1)
            params["range"] = f"{start}-{end}"
        return self._signed_url(key, "GET", params, expires_in)

    def open_read(self, key: str) -> OpenObject | None:
        """Open ``key`` for the data endpoint's GET; None if there is no such object."""
        try:
            fd = os.open(self.path_of(key), os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            return None
        return OpenObject(fd, info.st_size, info.st_mtime_ns // 1_000_000)

    def head(self, key: str) -> ObjectHead | None:
        try:
            info = os.stat(self.path_of(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return ObjectHead(key=key, size=info.st_size, last_modified_ms=info.st_mtime_ns // 1_000_000)

    # -- documents -----------------------------------------------------------------------------------
    def read_document(self, key: str, start: int = 0, end: int | None = None) -> bytes | None:
        try:
            with self.path_of(key).open("rb") as handle:
                handle.seek(start)
                return handle.read() if end is None else handle.read(max(end - start, 0))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def write_document(self, key: str, body: bytes) -> None:
        target = self.path_of(key)
        for attempt in range(3):  # a concurrent delete may prune the folder between mkdir and write
            try:
                ensure_dir(target.parent)
                write_atomic(target, body)
                return
            except FileNotFoundError:
                if attempt == 2:
                    raise
            except (NotADirectoryError, IsADirectoryError) as exc:
                raise StoreError(f"cannot write {key}: it clashes with an existing object or folder ({exc})") from exc

    def list(self, prefix: str) -> Iterator[ObjectHead]:
        folders, partial = _split_prefix(prefix)
        key_prefix = "".join(f"{folder}/" for folder in folders)
        return self._walk(self.objects.joinpath(*folders), key_prefix, partial)

    def _walk(self, folder: Path, key_prefix: str, name_prefix: str) -> Iterator[ObjectHead]:
        """Yield files under ``folder`` in key order: a folder sorts as ``name/`` so that ``a.x`` < ``a/b``."""
        try:
            with os.scandir(folder) as scan:
                entries = [e for e in scan if e.name.startswith(name_prefix) and not e.name.startswith(TMP_PREFIX)]
        except (FileNotFoundError, NotADirectoryError):
            return
        ordered = sorted(
            ((e.name + "/", e) if e.is_dir(follow_symlinks=False) else (e.name, e) for e in entries),
            key=lambda item: item[0],
        )
        for sort_name, entry in ordered:
            if sort_name.endswith("/"):
                yield from self._walk(Path(entry.path), f"{key_prefix}{entry.name}/", "")
            elif entry.is_file(follow_symlinks=False):
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                yield ObjectHead(f"{key_prefix}{entry.name}", info.st_size, info.st_mtime_ns // 1_000_000)

    def delete(self, key: str) -> None:
        target = self.path_of(key)
        try:
            target.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        fsync_dir(target.parent)
        folder = target.parent
        while folder != self.objects:  # prune folders the key leaves empty
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent
