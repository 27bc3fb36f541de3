"""The ObjectStore protocol: the seam between Score's services and every storage backend.

The protocol is about what the upload/download services need, not what one SDK offers (the
object_store crate's lesson): multipart upload through pre-signed part URLs, signed (ranged) reads,
small JSON/marker documents for state, listing and deletion. Services never import a cloud SDK.
All methods are synchronous; routers call them from a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import dropwhile
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from fastapi import APIRouter


class StoreError(Exception):
    """Base of storage failures."""


class StoreUnavailable(StoreError):
    """A transient failure (network, 5xx): the caller may retry; the API answers 503."""


class UploadNotFound(StoreError):
    """The multipart upload id is unknown to the store (never started, completed or aborted)."""


class ObjectNotFound(StoreError):
    pass


class InvalidKey(StoreError, ValueError):
    """A key (built from a caller's id) the store cannot hold: the API answers 400 with the reason."""


class StoreFull(StoreError):
    """The store has no room for what was asked (the local disk): the API answers 507 with the reason."""


class StoreMisconfigured(StoreError):
    """The store cannot serve as configured (missing bucket, bad credentials, unreachable endpoint).

    Raised by ``check_ready`` at start-up; the message says what is wrong and which setting to fix.
    """


@dataclass(frozen=True)
class UploadedPart:
    """A part as the store recorded it: its number, the ETag it returned and its size in bytes.

    ``etag`` is empty when the store keeps no per-part checksum to compare (Azure's uncommitted block
    list): such stores verify each part's ``Content-MD5`` when it is written instead.
    """

    part_number: int
    etag: str
    size: int


@dataclass(frozen=True)
class ObjectHead:
    """What a HEAD (or a listing entry) tells about one key."""

    key: str
    size: int
    last_modified_ms: int
    md5: str | None = None  # lower-case hex, when the store knows it (e.g. Content-MD5 metadata)
    etag: str | None = None  # the store's ETag, unquoted, where it has one (S3: the MD5 of a single PUT)


@dataclass(frozen=True)
class StoreUpload:
    """A multipart upload the store holds (what S3's ListMultipartUploads lists): for the sweep of orphans."""

    key: str
    upload_id: str
    started_ms: int


TiB = 1024**4


def range_header(offset: int | None, length: int | None) -> str | None:
    """``bytes=a-b`` for a signed ranged read (``bytes=a-`` when the length is open), None for all."""
    if offset is None and length is None:
        return None
    start = offset or 0
    if start < 0:
        raise ValueError(f"offset must be >= 0, got {start}")
    if length == 0:
        raise ValueError("cannot sign an empty byte range; sign the whole object instead")
    if length is None or length < 0:
        return f"bytes={start}-"
    return f"bytes={start}-{start + length - 1}"


def check_part_list(
    parts: Sequence[UploadedPart],
    held: Mapping[int, UploadedPart],
    size: int | None,
    offsets: Mapping[int, int] | None = None,
) -> None:
    """The one meaning of ``complete_upload``'s part list, on every store; ValueError saying what to fix.

    At least one part; ascending numbers without repeats; each part held by the store (``held``) with that
    size, and that ETag where both know one; together tiling the object from offset 0 (``offsets``: where a
    store recorded each part was signed to go, the local store) up to ``size`` (None: a store that does not
    know the total, Azure's uncommitted blocks)."""
    if not parts:
        raise ValueError("no parts given: an upload needs at least one part (empty objects use put_empty)")
    position = 0
    previous = 0
    for part in parts:
        number = part.part_number
        if number <= previous:
            raise ValueError(f"parts must be given in ascending order without repeats; part {number} is not")
        stored = held.get(number)
        if stored is None:
            raise ValueError(f"part {number} was never stored (or its upload failed): upload it again")
        given_etag, stored_etag = part.etag.strip('"').lower(), stored.etag.strip('"').lower()
        if given_etag and stored_etag and given_etag != stored_etag:
            raise ValueError(f"part {number} has ETag {stored_etag} in the store, not {part.etag}: upload it again")
        start = position if offsets is None else offsets.get(number, -1)
        if part.size != stored.size or start != position:
            raise ValueError(
                f"part {number} holds {stored.size} bytes in the store at offset {start}, but the parts given must "
                f"tile the object contiguously (expected offset {position}, size {part.size})"
            )
        position += stored.size
        previous = number
    if size is not None and position != size:
        raise ValueError(f"the parts given cover {position} bytes, but the upload is {size} bytes: parts are missing")


def keys_after(heads: Iterable[ObjectHead], start_after: str) -> Iterator[ObjectHead]:
    """The heads of a key-ordered listing after ``start_after``: what every store's ``list`` answers, whether the
    store began there itself (S3's StartAfter, GCS's startOffset, which includes it) or walks from the start."""
    return dropwhile(lambda head: head.key <= start_after, heads) if start_after else iter(heads)


@runtime_checkable
class SignsWholePuts(Protocol):
    """Optional ability: an object created by ONE signed PUT, all or nothing, only with the bytes of a
    given MD5. The signature fixes ``Content-MD5``, the store checks the body against it, and the object's
    ETag is that MD5 afterwards, so whoever reads the ETag knows which bytes are there. A one-part upload
    then costs the store a PUT instead of start, part, list and complete (see ``services/uploads.py``)."""

    def sign_whole_put(self, key: str, md5: str, expires_in: int) -> str | None:
        """A URL the client PUTs the whole object to with ``Content-MD5`` (base64 of ``md5``, lower-case
        hex); None when the store cannot make that promise as configured (e.g. under SSE-KMS)."""
        ...


@runtime_checkable
class SignsBlobUploads(Protocol):
    """Optional ability: the client writes a whole object with the store's own SDK through ONE signed URL
    (Azure: a blob SAS, which the Java client's Azure uploader uses for Put Blob, or Put Block xN and Put
    Block List with block ids of its own). Nothing is recorded per part and no finalize comes: the object is
    judged by what the store then holds (size and Content-MD5), see ``services/uploads.py``."""

    def sign_blob_upload(self, key: str, expires_in: int) -> str:
        """A URL that can create or replace ``key`` only: no read, no delete, no other key."""
        ...


@runtime_checkable
class ServesDataPlane(Protocol):
    """Optional ability: the store's signed URLs point at routes of this server (the local store), which the
    app mounts because the store brings them; stores whose URLs point at the store itself have none."""

    def data_routes(self) -> APIRouter:
        """The routes that serve this store's signed URLs."""
        ...


@runtime_checkable
class ReadsOneUploadedPart(Protocol):
    """Optional ability: one part of an upload looked up alone, where ``list_uploaded_parts`` walks them all
    (GCS: each part is an object of its own). Recording a part then costs two requests whatever the upload's
    size, instead of a listing of every part (quadratic over an upload of thousands of parts)."""

    def uploaded_part(self, key: str, upload_id: str, part_number: int) -> UploadedPart | None:
        """The part as the store holds it, None when it holds none. Raises UploadNotFound."""
        ...


@runtime_checkable
class HoldsLegacyObjects(Protocol):
    """Optional ability: the Java server of this backend kept objects at other keys than ``data/{id}`` (Azure:
    ``{id}`` in the container root, no ``.meta``), and buckets it wrote are served as they are."""

    def legacy_object_key(self, object_id: str) -> str:
        """Where the Java server kept the bytes of ``object_id``."""
        ...

    def list_legacy_objects(self) -> Iterator[ObjectHead]:
        """Every object at a legacy key (``ObjectHead.key`` is that key), in any order."""
        ...


@runtime_checkable
class ObjectStore(Protocol):
    """One bucket-like namespace of keys such as ``data/{id}``, ``data/{id}.meta``, ``upload/...``."""

    name: str  # "local", "s3", "azure", "gcs": reported by GET /profile
    etag_is_md5: bool  # True when a part's ETag is the MD5 of its bytes (not under SSE-KMS, not Azure)
    min_part_size: int  # smallest part the store accepts but for the last (S3: 5 MiB; local: 1 byte)
    max_object_size: int  # largest object it can hold (S3 and GCS: 5 TiB); initiate refuses larger

    def check_ready(self, sentinel_key: str) -> None:
        """Fail fast at start-up with StoreMisconfigured: buckets exist, credentials work, sentinel present."""
        ...

    # -- multipart upload of a data object -------------------------------------------------------
    def start_upload(self, key: str, size: int) -> str:
        """Begin a multipart upload of ``size`` bytes to ``key``; return the store's upload id."""
        ...

    def sign_upload_part(
        self, key: str, upload_id: str, part_number: int, offset: int, size: int, expires_in: int
    ) -> str:
        """A URL the client PUTs exactly ``size`` bytes to. It may send ``Content-MD5`` to be checked."""
        ...

    def list_uploaded_parts(self, key: str, upload_id: str) -> list[UploadedPart]:
        """Parts the store holds for this upload, ordered by number. Raises UploadNotFound."""
        ...

    def complete_upload(self, key: str, upload_id: str, parts: list[UploadedPart]) -> None:
        """Assemble the parts into ``key``, atomically. The list means the same on every store
        (``check_part_list``: ascending, each held with its size and ETag, tiling the object; ValueError
        otherwise). Raises UploadNotFound."""
        ...

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Discard an upload and its parts; unknown ids are ignored."""
        ...

    def list_uploads(self) -> Iterator[StoreUpload]:
        """Every multipart upload the store still holds, so the sweep can abort those no state refers to
        (a crash between starting an upload and recording it leaves one). Stores that expire abandoned
        uploads themselves and cannot list them (Azure's uncommitted blocks) yield nothing."""
        ...

    def put_empty(self, key: str) -> None:
        """Create ``key`` as a zero-byte object (multipart uploads cannot be empty)."""
        ...

    # -- reads ---------------------------------------------------------------------------------
    def sign_read(self, key: str, offset: int | None, length: int | None, expires_in: int) -> str:
        """A GET URL for ``key``; with offset/length the signature covers exactly that byte range."""
        ...

    def head(self, key: str) -> ObjectHead | None: ...

    # -- small documents (``.meta`` JSON, upload state, markers) ---------------------------------
    def read_document(self, key: str, start: int = 0, end: int | None = None) -> bytes | None:
        """The bytes of ``key`` (or of ``[start, end)``, e.g. a BAM header for htsget); None if absent."""
        ...

    def write_document(self, key: str, body: bytes) -> None:
        """Write atomically and durably: a reader sees the old document, the new one, or none."""
        ...

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectHead]:
        """Every key starting with ``prefix`` (recursively), in lexicographic key order; with ``start_after``,
        only keys after it (a page of a listing; stores that can start there natively do, see ``keys_after``)."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""
        ...
