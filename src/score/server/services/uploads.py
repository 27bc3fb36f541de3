"""The upload state machine, backend-agnostic, with all state in the object store (reference §2.3, §3.3).

The keys (``data/{id}``, its ``.meta``, and each upload's state folder ``upload/{id}_{uploadId}/`` with its
``.meta``, part markers and ``committed`` record) are Score's layout, written and parsed by
``storage/layout.py``.

Nothing lives in process memory, so any number of replicas can serve one store. Fixes over the
original: zero-byte objects, overwrite refused with 409, the whole-object MD5 the client computed is
checked against the declared one (and the registry's) before anything becomes visible, a superseded
upload is aborted rather than leaked, and ``status`` marks completed parts so resume skips them (they
still get a URL: see ``_with_upload_urls``).

Finalize is a sequence whose every prefix is recoverable (the crash points name its steps). Up to the
``committed`` document it only reads and checks, so a crash leaves an upload in progress (resumed, or
aborted by the stale-upload sweep). From the ``committed`` document on, the parts are all recorded and the
MD5 verified, so whoever comes next -- the client's retry, its re-run, or the sweep -- rolls the finalize
forward: hide an overwritten ``.meta``, complete the store's upload (already completed counts), write the
new ``.meta``, delete the state. A finalize asked for an upload whose ``.meta`` is already written answers
success and removes what is left of its state.

Whole-object uploads (the batch API, for a client that asks): a one-part file whose MD5 is registered,
on a store that ``SignsWholePuts`` (S3; the local and POSIX stores: ``storage/local/whole.py``), gets one
signed PUT of ``data/{id}`` that the store accepts only with the registered bytes (the signature fixes
``Content-MD5``). No multipart upload, no state: its uploadId
(``~put.<hex>``) only says so, and its finalize checks that ``data/{id}`` holds exactly those bytes (size
and ETag) before writing ``.meta``. A crash leaves at most verified bytes without ``.meta``, which the
next upload overwrites with the same bytes or adopts. A one-part file costs the store 4 requests instead
of 15 (HEAD of ``.meta``, the PUT, HEAD of the object, PUT of ``.meta``); an upload of the object in
progress elsewhere is left alone (it can only end with the same bytes), so none is listed.

Blob uploads (the Java client on a store that ``SignsBlobUploads``, i.e. Azure): the single-object initiate
answers as the Java server does, one part covering the file whose URL lets the client's own SDK write
``data/{id}`` whole; the uploadId (``blob-<hex>``) is recorded like any other upload, but no part is ever
recorded and no finalize comes. The first request that asks about the object (exists, Song's publish
check, a download specification, the listing, the sweep) checks the blob: the declared size and the
expected MD5 (of the bytes, hashed once by the server: a Content-MD5 the SAS holder sets proves nothing)
make it visible, by writing the ``.meta`` a finalize writes and removing the upload's state; anything else
keeps it invisible, and the answer says why. Overwriting withdraws the old object at initiate, since the
blob is written in place.

Buckets written by the Java server (``HoldsLegacyObjects``: Azure keeps ``{id}`` in the container root) are
read as they are when an object has nothing under ``data/``.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import TypeVar

from score.core import md5 as md5s
from score.core.ids import WHOLE_PUT_PREFIX, is_upload_id, is_uuid
from score.core.models import CompletedPart, ObjectSpecification, Part, UploadProgress
from score.core.parts import calculate_parts
from score.crashpoints import crash_point
from score.server.concurrency import KeyedLocks
from score.server.errors import ApiError, BadRequest, Conflict, NotFound, Unavailable
from score.server.metadata.base import Entity, MetadataUnavailable, SpecRecords, StoredObject
from score.server.metadata.song_errors import RegistryError
from score.server.settings import ServerSettings
from score.server.storage.base import (
    HoldsLegacyObjects,
    InvalidKey,
    ObjectHead,
    ObjectStore,
    ReadsOneUploadedPart,
    SignsBlobUploads,
    SignsWholePuts,
    StoreFull,
    StoreUnavailable,
    UploadedPart,
    UploadNotFound,
)
from score.server.storage.layout import (
    COMMITTED,
    DATA_PREFIX,
    MARKER_PREFIX,
    META_SUFFIX,
    STATE_DOCUMENT,
    data_entries,
    data_key,
    marker_prefix,
    meta_key,
    parse_marker,
    parse_state_key,
    state_prefix,
    uploads_prefix,
)
from score.server.storage.layout import marker_key as layout_marker_key


def _unique_ids(heads: Iterable[ObjectHead]) -> Iterator[ObjectHead]:
    """The first of each id in an id-ordered stream (an object under ``data/`` shadows a legacy one)."""
    previous = None
    for head in heads:
        if head.key != previous:
            yield head
        previous = head.key


STATE_DELETE_PARALLEL = 16  # store deletes in flight when an upload's state is removed
BLOB_UPLOAD_PREFIX = "blob-"  # uploadIds of blob uploads (module docstring)
HASHED = "hashed"  # a blob upload's state: the MD5 the server computed of a blob without Content-MD5
HASH_CHUNK = 8 * 1024 * 1024  # bytes read at a time when a blob is hashed: bounded memory
T = TypeVar("T")
log = logging.getLogger("score.uploads")


def is_blob_upload(upload_id: str | None) -> bool:
    return bool(upload_id) and str(upload_id).startswith(BLOB_UPLOAD_PREFIX)


def upload_state_prefix(object_id: str, upload_id: str) -> str:
    """The upload's state folder (``layout.state_prefix``), for an upload id of the server's own form."""
    if not is_upload_id(upload_id):
        raise BadRequest(f"invalid uploadId {upload_id!r}: use the uploadId the server returned at initiate")
    return state_prefix(object_id, upload_id)


def marker_key(object_id: str, upload_id: str, part: CompletedPart) -> str:
    upload_state_prefix(object_id, upload_id)  # the id's form, checked
    return layout_marker_key(object_id, upload_id, part)


def read_spec(store: ObjectStore, key: str) -> ObjectSpecification | None:
    body = store.read_document(key)
    if body is None:
        return None
    try:
        return ObjectSpecification.model_validate_json(body)
    except ValueError as exc:
        raise Unavailable(f"the stored document {key} is not a valid object specification: {exc}") from exc


def spec_document(spec: ObjectSpecification) -> bytes:
    """The ``.meta`` document of ``spec`` as the store holds it (and the registry records it)."""
    return json.dumps(spec.to_wire(), separators=(",", ":")).encode("utf-8")


def write_spec(store: ObjectStore, key: str, spec: ObjectSpecification) -> None:
    store.write_document(key, spec_document(spec))


@dataclass(frozen=True)
class _Commit:
    """The commit record: the MD5 a finalize verified and the parts it will assemble, so that whoever rolls
    the finalize forward (the retry, the sweep) needs nothing else."""

    md5: str | None
    parts: dict[int, CompletedPart]

    def to_json(self) -> bytes:
        parts = [p.to_wire() for _, p in sorted(self.parts.items())]
        return json.dumps({"objectMd5": self.md5, "parts": parts}, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, body: bytes) -> _Commit:
        data = json.loads(body)
        md5 = data["objectMd5"]
        if md5 is not None and not md5s.is_hex(md5):
            raise ValueError(f"objectMd5 {md5!r} is not an MD5")
        parts = [CompletedPart.model_validate(p) for p in data["parts"]]
        return cls(md5.lower() if md5 else None, {p.partNumber: p for p in parts})


@dataclass(frozen=True)
class BlobCheck:
    """What a blob upload's blob turned out to be: the object's ``.meta`` once verified and made visible, else
    why it is not visible (``problem``: not written yet, or the wrong size or MD5)."""

    upload_id: str
    final: ObjectSpecification | None
    problem: str | None = None


class InsufficientStorage(ApiError):
    status = 507


def guard(call: Callable[[], T]) -> T:
    """Run a store call: transient failures are 503 (clients retry), a full store 507, a bad key 400."""
    try:
        return call()
    except StoreUnavailable as exc:
        raise Unavailable(f"the object store is unavailable ({exc}); try again shortly") from exc
    except StoreFull as exc:
        raise InsufficientStorage(f"the store is full: {exc}") from exc
    except InvalidKey as exc:
        raise BadRequest(str(exc)) from exc


def _check_md5(value: str, what: str) -> str:
    if not md5s.is_hex(value):
        raise BadRequest(f"{what} {value!r} is not an MD5 checksum: give 32 hexadecimal digits")
    return value.lower()


class UploadService:
    def __init__(self, store: ObjectStore, settings: ServerSettings) -> None:
        self._store = store
        self._settings = settings
        # The store's optional abilities, found once: each Protocol check walks the protocol's methods through
        # the instrumented proxy (three such checks were ~5% of the server's CPU for an initiated object).
        self._whole_puts = store if isinstance(store, SignsWholePuts) else None
        self._blob_uploads = store if isinstance(store, SignsBlobUploads) else None
        self._legacy = store if isinstance(store, HoldsLegacyObjects) else None
        self._one_part = store if isinstance(store, ReadsOneUploadedPart) else None
        self._finalizing = KeyedLocks()  # one finalize of an upload at a time in this process
        # Set by the app when the embedded registry holds the metadata (None with a remote Song): finished
        # objects' ``.meta`` documents recorded there, read instead of the store's (``stored_spec``).
        self.spec_records: SpecRecords | None = None

    # -- what exists ---------------------------------------------------------------------------
    def exists(self, object_id: str) -> bool:
        """True iff the object was finalized (its ``.meta`` is present), as Score judges it; a blob upload whose
        blob checks out is made visible now; an object the Java server left in the container root exists too
        (as that server judged: the blob exists)."""
        if guard(lambda: self._store.head(meta_key(object_id))) is not None:
            return True
        check = self.settle_blob_upload(object_id)
        if check is not None:
            return check.final is not None
        return self._legacy_head(object_id) is not None

    def stored_object(self, object_id: str) -> StoredObject | None:
        """Size and MD5 as Song's publish check sees them (``stored_spec``), None when there is no object."""
        try:
            spec = self.stored_spec(object_id)
        except NotFound:
            return None
        return StoredObject(object_id=object_id, size=spec.objectSize, md5=spec.objectMd5)

    def stored_spec(self, object_id: str) -> ObjectSpecification:
        """The object's permanent specification: its ``.meta``; a blob upload's, once its blob checks out (a 404
        saying why while it does not); synthesised from the blob for objects without ``.meta`` (written by other
        tools under ``data/``, or by the Java server in a legacy place), with the store's own MD5 if any."""
        spec = self._read_final(object_id)
        if spec is not None:
            return spec
        check = self.settle_blob_upload(object_id)
        if check is not None:
            if check.final is None:
                raise NotFound(check.problem or f"object {object_id} is being uploaded")
            return check.final
        head = self.data_head(object_id)
        if head is None:
            raise NotFound(
                f"object {object_id} is registered but has not been uploaded (or its upload was not "
                "finalized); upload it first"
            )
        return self._synthesised(object_id, head)

    # -- the finished object's .meta, and its record in the registry ---------------------------
    # Invariant: a record exists only while the store's ``.meta`` is the document recorded. It is written
    # after ``.meta`` and dropped before ``.meta`` is hidden or replaced, so a crash between the two leaves
    # no record (and ``.meta`` is read) rather than a stale one; and it is written only if no hide came
    # between (``generation``), so of two finalizes racing on one object the loser records nothing. Changes
    # made to the bucket behind Score's back are not seen through a record; the client's MD5 checks still
    # refuse such bytes.

    def _read_final(self, object_id: str) -> ObjectSpecification | None:
        """The recorded ``.meta`` (one registry read), else the store's (one store GET: on S3 ~1 ms of CPU
        here and about as much in the store, half the cost of a download specification)."""
        recorded = self.spec_records.recorded_spec(object_id) if self.spec_records is not None else None
        if recorded is not None:
            try:
                return ObjectSpecification.model_validate_json(recorded)
            except ValueError as exc:
                log.warning("the recorded specification of %s is unreadable (%s): reading .meta", object_id, exc)
        return guard(lambda: read_spec(self._store, meta_key(object_id)))

    def _show_final(self, object_id: str, final: ObjectSpecification) -> None:
        """Write the object's ``.meta`` (the object is visible from here on), then record it."""
        document = spec_document(final)
        records = self.spec_records
        try:
            generation = records.spec_generation(object_id) if records is not None else None
        except (MetadataUnavailable, RegistryError) as exc:  # harmless: without a record, .meta is read
            log.warning("the specification of %s will not be recorded in the registry (%s)", object_id, exc)
            generation = None
        guard(lambda: self._store.write_document(meta_key(object_id), document))
        if records is None or generation is None:
            return
        try:
            if not records.record_spec(object_id, document.decode("utf-8"), generation):
                log.info("object %s was replaced while its finalize ended: its record is the later one's", object_id)
        except (MetadataUnavailable, RegistryError) as exc:
            log.warning("the specification of %s was not recorded in the registry (%s)", object_id, exc)

    def record_stored(self, object_id: str) -> str:
        """Record the object's ``.meta`` if the registry holds no record of it (finished before records were
        kept), as a finalize would: the generation is read before ``.meta``, so a hide meanwhile makes the record
        refuse. "recorded", "known" (recorded already), "changed" (hidden or replaced meanwhile: its own upload
        records it), "absent" (no ``.meta`` now) or "unreadable" (a ``.meta`` that is no specification)."""
        records = self.spec_records
        if records is None:
            raise ValueError("no registry keeps records here (a remote Song holds the metadata)")
        if records.recorded_spec(object_id) is not None:
            return "known"
        generation = records.spec_generation(object_id)
        document = guard(lambda: self._store.read_document(meta_key(object_id)))
        if document is None:
            return "absent"
        try:
            ObjectSpecification.model_validate_json(document)
        except ValueError:
            return "unreadable"  # every read of it says so; nothing to record
        recorded = records.record_spec(object_id, document.decode("utf-8"), generation)
        return "recorded" if recorded else "changed"

    def _hide_final(self, object_id: str) -> None:
        """Hide the object: its record goes first (a failure stops here, with the object intact), then ``.meta``."""
        if self.spec_records is not None:
            self.spec_records.forget_spec(object_id)
        guard(lambda: self._store.delete(meta_key(object_id)))

    def _synthesised(self, object_id: str, head: ObjectHead) -> ObjectSpecification:
        """The specification of a blob without ``.meta``: the server's parts over it, the store's MD5 if any."""
        minimum = self._settings.min_part_size
        return ObjectSpecification(
            objectKey=head.key,
            objectId=object_id,
            uploadId=object_id,
            parts=calculate_parts(0, head.size, max(self._settings.part_size, minimum), minimum),
            objectSize=head.size,
            objectMd5=head.md5,
        )

    def data_head(self, object_id: str) -> ObjectHead | None:
        """Where the object's bytes are (``ObjectHead.key``): ``data/{id}``, else where the Java server of this
        backend kept them; None when neither holds it."""
        return guard(lambda: self._store.head(data_key(object_id))) or self._legacy_head(object_id)

    def _legacy_head(self, object_id: str) -> ObjectHead | None:
        """The object where the Java server of this backend kept it, if the store has such a place."""
        store = self._legacy
        if store is None:
            return None
        try:
            key = store.legacy_object_key(object_id)
        except ValueError:
            return None
        return guard(lambda: store.head(key))

    def listing(self, after: str = "", limit: int | None = None) -> list[ObjectHead]:
        """Visible objects (``ObjectHead.key`` is the id) in id order: UUID-named blobs under ``data/`` (a blob
        upload's only once its blob checks out), merged with the Java server's legacy ones not shadowed by
        those. A page: ids after ``after``, at most ``limit``; the store's listing is read only that far."""
        found = heapq.merge(self._listed_data(after), self._listed_legacy(after), key=lambda head: head.key)
        pages = _unique_ids(found)
        return list(pages if limit is None else islice(pages, limit))

    def _listed_data(self, after: str) -> Iterator[ObjectHead]:
        """UUID-named objects under ``data/`` with their ``.meta``, or a blob upload's blob that checks out."""
        start = data_key(after) + META_SUFFIX if after else ""
        for entry in data_entries(guard(lambda: self._store.list(DATA_PREFIX, start_after=start))):
            head = entry.data
            if head is None or not is_uuid(entry.name):
                continue
            if entry.has_meta or self._blob_visible(entry.name):  # else not (or not rightly) written yet
                yield ObjectHead(entry.name, head.size, head.last_modified_ms, head.md5)

    def _listed_legacy(self, after: str) -> Iterator[ObjectHead]:
        """Objects the Java server kept elsewhere (Azure: the container root), in id order (that listing comes
        in any order, so it is read whole)."""
        store = self._legacy
        if store is None:
            return iter(())
        heads = [h for h in guard(lambda: list(store.list_legacy_objects())) if is_uuid(h.key) and h.key > after]
        return iter(sorted(heads, key=lambda head: head.key))

    # -- blob uploads (module docstring) -------------------------------------------------------
    def _blob_visible(self, object_id: str) -> bool:
        """False while the object's blob upload has not (or not rightly) written its blob; True otherwise."""
        check = self.settle_blob_upload(object_id)
        return check is None or check.final is not None

    def _blob_upload_id(self, object_id: str) -> str | None:
        for head in guard(lambda: list(self._store.list(uploads_prefix(object_id) + BLOB_UPLOAD_PREFIX))):
            state = parse_state_key(head.key, object_id)
            if state is not None and state.name == STATE_DOCUMENT:
                return state.upload_id
        return None

    def settle_blob_upload(
        self, object_id: str, upload_id: str | None = None, expected: str | None = None
    ) -> BlobCheck | None:
        """Check the blob of the object's blob upload (None when there is none) and make it visible when it
        holds the declared size and the expected MD5 (``expected``, else the one recorded at initiate: the
        registered MD5, or the md5 the client gave): ``.meta`` as a finalize writes it, then the state goes."""
        if self._blob_uploads is None:
            return None  # no store upload of this kind: nothing to look up
        upload_id = upload_id or self._blob_upload_id(object_id)
        if upload_id is None or not is_blob_upload(upload_id):
            return None
        state = guard(lambda: read_spec(self._store, upload_state_prefix(object_id, upload_id) + ".meta"))
        if state is None:  # made visible (or cancelled) by another request meanwhile
            current = guard(lambda: read_spec(self._store, meta_key(object_id)))
            return BlobCheck(upload_id, current) if current is not None and current.uploadId == upload_id else None
        head = guard(lambda: self._store.head(data_key(object_id)))
        if head is None:
            return BlobCheck(
                upload_id,
                None,
                f"object {object_id} is being uploaded (upload {upload_id}) and its blob is not written yet; "
                "wait for the upload to end, or upload it again",
            )
        if head.size != state.objectSize:
            return self._wrong_blob(
                object_id,
                upload_id,
                f"the uploaded blob of object {object_id} holds {head.size} bytes but the upload declared "
                f"{state.objectSize}; upload the file again",
            )
        # Hashed here, never taken from the blob's Content-MD5: whoever holds the SAS can set that property to
        # anything when committing a block list (x-ms-blob-content-md5), so it proves nothing about the bytes.
        actual = self._hashed_md5(object_id, upload_id, head)
        wanted = expected or (state.objectMd5.lower() if state.objectMd5 else None)
        if wanted is not None and actual != wanted:
            return self._wrong_blob(
                object_id,
                upload_id,
                f"the uploaded blob's MD5 ({actual}) differs from the registered one ({wanted}) for object "
                f"{object_id}: the file uploaded is not the one registered; upload it again",
            )
        # Parts of the server's part size, so that downloads run in parallel; only a one-part object has a
        # part MD5 to record (the store kept none per block).
        parts = self._synthesised(object_id, head).parts
        if len(parts) == 1:
            parts = [parts[0].model_copy(update={"sourceMd5": actual})]
        final = ObjectSpecification(
            objectKey=data_key(object_id),
            objectId=object_id,
            uploadId=upload_id,
            parts=parts,
            objectSize=head.size,
            objectMd5=actual,
        )
        self._show_final(object_id, final)
        self.discard_state(object_id, upload_id)
        log.info("blob upload %s of %s verified (%d bytes, MD5 %s): visible", upload_id, object_id, head.size, actual)
        return BlobCheck(upload_id, final)

    @staticmethod
    def _wrong_blob(object_id: str, upload_id: str, problem: str) -> BlobCheck:
        log.warning("blob upload %s of object %s is not made visible: %s", upload_id, object_id, problem)
        return BlobCheck(upload_id, None, problem)

    def _hashed_md5(self, object_id: str, upload_id: str, head: ObjectHead) -> str:
        """The MD5 of the blob's bytes, read in chunks (bounded memory); remembered in the upload's state for
        this version of the blob (size and mtime), so that it is hashed once."""
        memo_key = upload_state_prefix(object_id, upload_id) + HASHED
        version = {"size": head.size, "lastModified": head.last_modified_ms}
        memo = guard(lambda: self._store.read_document(memo_key))
        if memo:
            try:
                known = json.loads(memo)
                if {k: known.get(k) for k in version} == version and md5s.is_hex(known.get("md5", "")):
                    return str(known["md5"]).lower()
            except (ValueError, AttributeError):
                pass  # unreadable: hash again
        digest = hashlib.md5()  # noqa: S324 - MD5 is what Score and Song compare
        for offset in range(0, head.size, HASH_CHUNK):
            end = min(offset + HASH_CHUNK, head.size)
            chunk = guard(lambda o=offset, e=end: self._store.read_document(head.key, o, e))
            if chunk is None or len(chunk) != end - offset:
                raise Unavailable(f"the blob of object {object_id} changed while it was read; try again")
            digest.update(chunk)
        md5 = digest.hexdigest()
        guard(lambda: self._store.write_document(memo_key, json.dumps({**version, "md5": md5}).encode()))
        log.info("blob of object %s hashed (%d bytes, MD5 %s)", object_id, head.size, md5)
        return md5

    def _start_blob_upload(self, object_id: str, file_size: int, md5: str | None, exists: bool) -> ObjectSpecification:
        """A blob upload (module docstring), as the Java server answers on Azure: one part covering the file."""
        store = self._blob_uploads
        assert store is not None
        key = data_key(object_id)
        if exists:
            # The blob is written in place: the old object is withdrawn now, and is invisible until the new
            # blob checks out (or for good, if it never does).
            self._hide_final(object_id)
        # Old bytes (ours, or written by another tool) would pass for the new blob while it is not written yet.
        guard(lambda: self._store.delete(key))
        upload_id = BLOB_UPLOAD_PREFIX + uuid.uuid4().hex
        part = Part(partNumber=1, partSize=file_size, offset=0)
        spec = ObjectSpecification(
            objectKey=key, objectId=object_id, uploadId=upload_id, parts=[part], objectSize=file_size, objectMd5=md5
        )
        guard(lambda: write_spec(self._store, upload_state_prefix(object_id, upload_id) + ".meta", spec))
        url = guard(lambda: store.sign_blob_upload(key, self._settings.upload_url_ttl))
        return spec.model_copy(update={"parts": [part.model_copy(update={"url": url})]})

    def current_upload_id(self, object_id: str) -> str | None:
        """The in-progress upload of an object: the first state folder (listing order) with a ``.meta``."""
        for head in guard(lambda: list(self._store.list(uploads_prefix(object_id)))):
            state = parse_state_key(head.key, object_id)
            if state is not None and state.name == STATE_DOCUMENT:
                return state.upload_id
        return None

    # -- initiate ------------------------------------------------------------------------------
    def initiate(
        self,
        object_id: str,
        file_size: int,
        md5: str | None,
        overwrite: bool,
        entity: Entity,
        replace_in_progress: bool = True,
        whole_put: bool = False,
        blob: bool = False,
    ) -> ObjectSpecification:
        """Start an upload. An upload already in progress for the object is aborted (Score's behaviour), or,
        with ``replace_in_progress`` off, refused with 409 so that a client never discards another's.
        ``whole_put``: the caller can send a one-part file as a whole-object upload; ``blob``: the caller may
        be the Java client, which on a store that ``SignsBlobUploads`` writes the blob itself (module
        docstring)."""
        if file_size < 0:
            raise BadRequest(f"fileSize must not be negative (got {file_size})")
        limit = self._store.max_object_size
        if file_size > limit:
            raise BadRequest(
                f"fileSize {file_size} is larger than the {self._store.name} store can hold "
                f"({limit} bytes = {limit / 1024**4:g} TiB); split the file"
            )
        if entity.fileSize is not None and entity.fileSize != file_size:
            raise BadRequest(
                f"file size {file_size} differs from the size registered for object {object_id} "
                f"({entity.fileSize} bytes, file {entity.fileName!r}); upload the registered file or fix "
                "the registration"
            )
        if file_size == 0 and self._settings.metadata_url:
            # Song validates Score's answer to its publish check against storageDownloadResponse.json, which
            # requires objectSize >= 1: an empty object stored here could never be published there. Said now,
            # not after the upload (the embedded registry publishes empty files).
            raise BadRequest(
                f"object {object_id} is an empty file (0 bytes): the Song server this Score uses cannot publish "
                "empty files (its publish check requires objectSize of at least 1); register and upload files with "
                "content, or leave empty files out of the analysis"
            )
        declared = _check_md5(md5, "md5") if md5 else None
        registered = entity.fileMd5sum.lower() if entity.fileMd5sum else None
        if declared and registered and declared != registered:
            raise BadRequest(
                f"md5 {declared} differs from the MD5 registered for object {object_id} ({registered}); "
                "upload the registered file or fix the registration"
            )
        exists = self.exists(object_id)
        if exists and not overwrite:
            raise Conflict(f"object {object_id} already exists; use --force (overwrite=true) to replace it")
        key = data_key(object_id)
        minimum = max(self._settings.min_part_size, self._store.min_part_size)
        parts = calculate_parts(0, file_size, max(self._settings.part_size, minimum), minimum)
        eligible = whole_put and not exists and len(parts) == 1 and declared in (None, registered)
        whole_md5 = registered if eligible else None
        # Without --force nothing in progress is discarded or disturbed by a whole-object upload: another
        # upload of the object (which can only end with the same registered bytes) goes on, unlisted.
        if whole_md5 and not replace_in_progress and (started := self._whole_put(object_id, key, whole_md5, parts)):
            return started
        previous = self.current_upload_id(object_id)
        if previous is not None and not replace_in_progress:
            raise Conflict(
                f"an upload of object {object_id} is already in progress, started elsewhere; resume it from where "
                "it was started, or use --force to discard it and start over"
            )
        while previous is not None:
            self.discard(object_id, previous)
            previous = self.current_upload_id(object_id)
        if blob and self._blob_uploads is not None:
            return self._start_blob_upload(object_id, file_size, declared or registered, exists)
        if whole_md5 and (started := self._whole_put(object_id, key, whole_md5, parts)):
            return started
        # An empty object needs no multipart upload in the store (S3 cannot complete an empty one).
        upload_id = uuid.uuid4().hex if file_size == 0 else guard(lambda: self._store.start_upload(key, file_size))
        crash_point("initiate.store_started")
        spec = ObjectSpecification(
            objectKey=key,
            objectId=object_id,
            uploadId=upload_id,
            parts=parts,
            objectSize=file_size,
            objectMd5=declared or registered,
        )
        guard(lambda: write_spec(self._store, upload_state_prefix(object_id, upload_id) + ".meta", spec))
        return self._with_upload_urls(spec, completed={})

    def _whole_put(self, object_id: str, key: str, md5: str, parts: list[Part]) -> ObjectSpecification | None:
        """A whole-object upload (module docstring), or None where the store cannot sign one."""
        store = self._whole_puts
        if store is None:
            return None
        url = guard(lambda: store.sign_whole_put(key, md5, self._settings.upload_url_ttl))
        if url is None:
            return None
        return ObjectSpecification(
            objectKey=key,
            objectId=object_id,
            uploadId=WHOLE_PUT_PREFIX + uuid.uuid4().hex,
            parts=[parts[0].model_copy(update={"url": url})],
            objectSize=parts[0].partSize,
            objectMd5=md5,
        )

    def discard(self, object_id: str, upload_id: str) -> None:
        """Abort the store's multipart upload and delete its state (the original leaked the former). A blob
        upload writes ``data/{id}`` in place: its blob goes too, unless the object was made visible."""
        if is_blob_upload(upload_id):
            self.discard_state(object_id, upload_id)
            if guard(lambda: self._store.head(meta_key(object_id))) is None:
                guard(lambda: self._store.delete(data_key(object_id)))
            return
        guard(lambda: self._store.abort_upload(data_key(object_id), upload_id))
        self.discard_state(object_id, upload_id)

    def _with_upload_urls(
        self,
        spec: ObjectSpecification,
        completed: dict[int, CompletedPart],
        stored: dict[int, str] | None = None,
    ) -> ObjectSpecification:
        """Fresh URLs for every part, completed ones too. A part the store already holds but nobody
        recorded (the client died between its PUT and the record call) gets its stored MD5 as
        ``sourceMd5`` with ``md5`` left null: a client whose own part hashes the same records it instead of
        sending it again (the Java client, which only skips parts with ``md5``, sends it again, which is
        harmless).

        Completed parts get a URL as on the Java server: when the Java client's resume finds a completed
        part's MD5 differs from its file, it sends the part again with ``part.getUrl()`` and, with null,
        fails after its ten retries. Our client skips parts by ``md5`` and never looks at their URL."""
        ttl = self._settings.upload_url_ttl
        held = stored or {}
        parts = []
        for part in spec.parts:
            done = completed.get(part.partNumber)
            url = guard(
                lambda p=part: self._store.sign_upload_part(
                    spec.objectKey, spec.uploadId or "", p.partNumber, p.offset, p.partSize, ttl
                )
            )
            parts.append(
                part.model_copy(
                    update={
                        "url": url,
                        # Setting md5 as well as sourceMd5 on completed parts makes the Java client's
                        # resume skip them too (its bug §8.6 re-sent every part).
                        "md5": done.md5 if done else None,
                        "sourceMd5": done.md5 if done else held.get(part.partNumber),
                    }
                )
            )
        return spec.model_copy(update={"parts": parts})

    # -- in-progress state ---------------------------------------------------------------------
    def _state(self, object_id: str, upload_id: str) -> ObjectSpecification:
        spec = guard(lambda: read_spec(self._store, upload_state_prefix(object_id, upload_id) + ".meta"))
        if spec is None:
            raise NotFound(
                f"no upload {upload_id} in progress for object {object_id}; it was finished, cancelled or "
                "superseded: start the upload again"
            )
        return spec

    def _markers(self, object_id: str, upload_id: str) -> list[CompletedPart]:
        prefix = upload_state_prefix(object_id, upload_id) + MARKER_PREFIX
        markers = [parse_marker(h.key) for h in guard(lambda: list(self._store.list(prefix)))]
        return [m for m in markers if m is not None]

    def _current_state(self, object_id: str, file_size: int) -> ObjectSpecification:
        upload_id = self.current_upload_id(object_id)
        if upload_id is None:
            raise NotFound(f"no upload in progress for object {object_id}")
        spec = self._state(object_id, upload_id)
        if spec.objectSize != file_size:
            raise BadRequest(
                f"the upload in progress for object {object_id} is for {spec.objectSize} bytes but the file "
                f"now has {file_size}: the file changed; start over with --force"
            )
        return spec

    def status(self, object_id: str, file_size: int) -> UploadProgress:
        """Progress of the current upload, completed parts marked and fresh URLs for the others."""
        spec = self._current_state(object_id, file_size)
        upload_id = spec.uploadId or ""
        if is_blob_upload(upload_id):
            return self._blob_status(object_id, upload_id, spec)
        completed = {m.partNumber: m for m in self._markers(object_id, upload_id)}
        fresh = self._with_upload_urls(spec, completed, self._stored_unrecorded(spec, completed))
        return UploadProgress(objectId=object_id, uploadId=upload_id, parts=fresh.parts)

    def _stored_unrecorded(self, spec: ObjectSpecification, completed: dict[int, CompletedPart]) -> dict[int, str]:
        """{part number: MD5} of parts the store holds whole but that are not recorded, where the store's
        ETag is the MD5 of the bytes it holds (no such knowledge otherwise)."""
        if len(completed) == len(spec.parts) or spec.objectSize == 0 or not self._store.etag_is_md5:
            return {}
        sizes = {p.partNumber: p.partSize for p in spec.parts}
        try:
            held = guard(lambda: self._store.list_uploaded_parts(spec.objectKey, spec.uploadId or ""))
        except UploadNotFound:
            return {}
        return {
            p.part_number: p.etag.strip('"').lower()
            for p in held
            if p.part_number not in completed and sizes.get(p.part_number) == p.size and md5s.is_hex(p.etag.strip('"'))
        }

    def _blob_status(self, object_id: str, upload_id: str, spec: ObjectSpecification) -> UploadProgress:
        """The one part of a blob upload: its MD5 once the blob checks out (the object is then visible), else
        null, with a fresh URL to write the blob again."""
        check = self.settle_blob_upload(object_id, upload_id)
        done = check.final.objectMd5 if check is not None and check.final is not None else None
        url = None
        if done is None:
            store = self._blob_uploads
            assert store is not None
            url = guard(lambda: store.sign_blob_upload(spec.objectKey, self._settings.upload_url_ttl))
        part = Part(partNumber=1, partSize=spec.objectSize, offset=0, url=url, md5=done, sourceMd5=done)
        return UploadProgress(objectId=object_id, uploadId=upload_id, parts=[part])

    def recovery(self, object_id: str, file_size: int) -> None:
        """200 when the upload in progress can go on with a file of this size; a blob upload answers 200 as the
        Java server does on Azure (the client writes the whole blob again anyway)."""
        upload_id = self.current_upload_id(object_id)
        if upload_id is not None and is_blob_upload(upload_id):
            return
        self._current_state(object_id, file_size)

    def finalize_part(self, object_id: str, upload_id: str, part_number: int, md5: str, etag: str) -> None:
        md5 = _check_md5(md5, "md5")
        if is_blob_upload(upload_id):
            self._state(object_id, upload_id)  # as the Java server on Azure: nothing to record (404 if unknown)
            return
        etag = etag.strip().strip('"')
        if not etag:
            raise BadRequest("etag must not be empty: pass the ETag the store returned for the part")
        spec = self._state(object_id, upload_id)
        expected = next((p for p in spec.parts if p.partNumber == part_number), None)
        if expected is None:
            raise BadRequest(f"upload {upload_id} of object {object_id} has no part {part_number}")
        stored = guard(lambda: self._uploaded_versions(object_id, upload_id, part_number))
        # Some stores list every version of a re-sent part (SeaweedFS) and complete with the one named: the part
        # is there if any listed version is it.
        found = [p for p in stored if p.part_number == part_number and p.size == expected.partSize]
        if not any(not p.etag or p.etag.strip('"') == etag for p in found):
            raise BadRequest(
                f"part {part_number} of object {object_id} is not in the store with ETag {etag} and "
                f"{expected.partSize} bytes; upload the part again"
            )
        if md5s.is_hex(etag) and self._store.etag_is_md5 and etag.lower() != md5:
            raise BadRequest(
                f"part {part_number}: the store received bytes with MD5 {etag} but the client reports {md5}; "
                "upload the part again"
            )
        self.delete_part(object_id, upload_id, part_number)
        crash_point("finalize_part.unmarked")
        marker = CompletedPart(partNumber=part_number, md5=md5, etag=etag)
        guard(lambda: self._store.write_document(marker_key(object_id, upload_id, marker), b""))

    def _uploaded_versions(self, object_id: str, upload_id: str, part_number: int) -> list[UploadedPart]:
        """What the store holds of one part: looked up alone where the store can (``ReadsOneUploadedPart``),
        else picked from the listing of the upload's parts (which may name a re-sent part more than once)."""
        if self._one_part is None:
            return [p for p in self._uploaded_parts(object_id, upload_id) if p.part_number == part_number]
        try:
            found = self._one_part.uploaded_part(data_key(object_id), upload_id, part_number)
        except UploadNotFound as exc:
            raise NotFound(f"the store has no upload {upload_id} for object {object_id}; start again") from exc
        return [] if found is None else [found]

    def _uploaded_parts(self, object_id: str, upload_id: str) -> list[UploadedPart]:
        try:
            return self._store.list_uploaded_parts(data_key(object_id), upload_id)
        except UploadNotFound as exc:
            raise NotFound(f"the store has no upload {upload_id} for object {object_id}; start again") from exc

    def delete_part(self, object_id: str, upload_id: str, part_number: int) -> None:
        upload_state_prefix(object_id, upload_id)  # the id's form, checked
        prefix = marker_prefix(object_id, upload_id, part_number)
        for head in guard(lambda: list(self._store.list(prefix))):
            guard(lambda k=head.key: self._store.delete(k))

    # -- finalize ------------------------------------------------------------------------------
    def finalize(
        self,
        object_id: str,
        upload_id: str,
        md5: str | None,
        entity: Entity,
        parts: list[CompletedPart] | None = None,
    ) -> ObjectSpecification:
        """Verify and publish the object. Idempotent: a repeated call after success answers success.

        The parts are the recorded markers, or ``parts`` when the caller sends them with the finalize (the
        batch API: no per-part record calls). The steps, each survivable (see the module docstring): check
        the parts are all there and still the ones the store holds, verify the MD5, write the commit record
        (the verified MD5 and the parts), then roll forward.
        """
        if upload_id.startswith(WHOLE_PUT_PREFIX):
            return self._finalize_whole_put(object_id, upload_id, md5, entity)
        if is_blob_upload(upload_id):
            return self._finalize_blob_upload(object_id, upload_id, md5, entity)
        with self._finalizing.hold(f"{object_id}_{upload_id}"):
            try:
                return self._finalize_parts(object_id, upload_id, md5, entity, parts)
            except (BadRequest, NotFound):
                # A call that overlapped this one (the client's retry on another replica, or the sweep) may
                # have finished the upload and removed its state under our feet: that is success. Or it may be
                # half-way: committed, the store's upload completed, ``.meta`` not yet written; then this call
                # rolls its commit forward as the sweep would, instead of failing a finalize that is succeeding.
                finished = self._finished(object_id, upload_id)
                if finished is not None:
                    return finished
                commit = self._read_commit(object_id, upload_id)
                if commit is None:  # nobody committed: the refusal stands (no read of the state for it)
                    raise
                spec = guard(lambda: read_spec(self._store, upload_state_prefix(object_id, upload_id) + ".meta"))
                if spec is None:
                    raise
                return self.roll_forward(object_id, upload_id, spec, commit)

    def _finished(self, object_id: str, upload_id: str) -> ObjectSpecification | None:
        """The object's ``.meta`` if this upload is what it holds, else None."""
        current = guard(lambda: read_spec(self._store, meta_key(object_id)))
        return current if current is not None and current.uploadId == upload_id else None

    def _finalize_parts(
        self,
        object_id: str,
        upload_id: str,
        md5: str | None,
        entity: Entity,
        parts: list[CompletedPart] | None,
    ) -> ObjectSpecification:
        finished = self._finished(object_id, upload_id)
        if finished is not None:
            self.discard_state(object_id, upload_id)  # finished earlier; its state may be left over
            return finished
        prefix = upload_state_prefix(object_id, upload_id)
        spec = guard(lambda: read_spec(self._store, prefix + ".meta"))
        if spec is None:
            self._state(object_id, upload_id)  # raises the clear 404
        assert spec is not None
        state_keys = {h.key for h in guard(lambda: list(self._store.list(prefix)))}
        commit = self._read_commit(object_id, upload_id) if prefix + COMMITTED in state_keys else None
        if commit is None:
            if parts is None:
                completed = self._complete_markers(object_id, spec, state_keys)
            else:
                completed = self._complete_given(object_id, upload_id, spec, parts)
            if spec.objectSize > 0:
                self._check_parts_against_store(object_id, upload_id, spec, completed, markers=parts is None)
            commit = _Commit(self._verified_md5(object_id, upload_id, spec, md5, entity, completed), completed)
            guard(lambda: self._store.write_document(prefix + COMMITTED, commit.to_json()))
            state_keys.add(prefix + COMMITTED)
            crash_point("finalize.committed")
        return self.roll_forward(object_id, upload_id, spec, commit, state_keys)

    def _finalize_whole_put(
        self, object_id: str, upload_id: str, md5: str | None, entity: Entity
    ) -> ObjectSpecification:
        """Publish a whole-object upload: ``data/{id}`` must hold exactly the registered bytes (its size, and
        its ETag, which the signed ``Content-MD5`` made that MD5), and the MD5 the client computed must agree.
        Idempotent: a repeated call writes the same ``.meta`` again."""
        upload_state_prefix(object_id, upload_id)  # the id's form, as for any other upload
        registered = entity.fileMd5sum.lower() if entity.fileMd5sum else None
        computed = _check_md5(md5, "md5") if md5 else None
        if computed is not None and registered is not None and computed != registered:
            raise BadRequest(
                f"MD5 mismatch for object {object_id}: the uploaded bytes hash to {computed} but the MD5 registered "
                f"in the metadata is {registered}; nothing was stored. Check the file, then upload again"
            )
        head = guard(lambda: self._store.head(data_key(object_id)))
        expected = computed or registered
        if head is None or expected is None or head.etag is None or head.etag.lower() != expected:
            current = guard(lambda: read_spec(self._store, meta_key(object_id)))
            if current is not None and current.uploadId == upload_id:
                return current  # finished earlier (the bytes were replaced since by another upload)
            raise NotFound(
                f"the store does not hold upload {upload_id} of object {object_id} (no object with MD5 {expected}); "
                "start the upload again"
            )
        if entity.fileSize is not None and head.size != entity.fileSize:
            raise BadRequest(
                f"object {object_id} holds {head.size} bytes but {entity.fileSize} are registered; upload again"
            )
        part = Part(partNumber=1, partSize=head.size, offset=0, sourceMd5=expected)
        final = ObjectSpecification(
            objectKey=data_key(object_id),
            objectId=object_id,
            uploadId=upload_id,
            parts=[part],
            objectSize=head.size,
            objectMd5=expected,
        )
        self._show_final(object_id, final)
        return final

    def _finalize_blob_upload(
        self, object_id: str, upload_id: str, md5: str | None, entity: Entity
    ) -> ObjectSpecification:
        """A finalize of a blob upload (from a client that sends one): check the blob and make it visible, as
        the first question about the object would. Idempotent: a repeated call answers the ``.meta``."""
        current = guard(lambda: read_spec(self._store, meta_key(object_id)))
        if current is not None and current.uploadId == upload_id:
            return current
        state = self._state(object_id, upload_id)
        registered = entity.fileMd5sum.lower() if entity.fileMd5sum else None
        expected = registered or (state.objectMd5.lower() if state.objectMd5 else None)
        computed = _check_md5(md5, "md5") if md5 else None
        if computed is not None and expected is not None and computed != expected:
            raise BadRequest(
                f"MD5 mismatch for object {object_id}: the uploaded file hashes to {computed} but the MD5 expected "
                f"is {expected}; check the file, then upload again"
            )
        check = self.settle_blob_upload(object_id, upload_id, expected or computed)
        if check is None:  # cancelled or superseded meanwhile
            raise NotFound(f"no upload {upload_id} in progress for object {object_id}; start the upload again")
        if check.final is None:
            raise BadRequest(f"object {object_id} cannot be finalized: {check.problem}")
        return check.final

    def _complete_markers(
        self, object_id: str, spec: ObjectSpecification, state_keys: set[str]
    ) -> dict[int, CompletedPart]:
        markers = [m for m in (parse_marker(k) for k in state_keys) if m is not None]
        completed = {m.partNumber: m for m in markers}
        return self._all_parts(object_id, spec, completed)

    def _complete_given(
        self, object_id: str, upload_id: str, spec: ObjectSpecification, parts: list[CompletedPart]
    ) -> dict[int, CompletedPart]:
        for part in parts:
            _check_md5(part.md5, f"md5 of part {part.partNumber}")
            if (
                md5s.is_hex(part.etag.strip('"'))
                and self._store.etag_is_md5
                and part.etag.strip('"').lower() != part.md5.lower()
            ):
                raise BadRequest(
                    f"part {part.partNumber}: the store received bytes with MD5 {part.etag} but the client reports "
                    f"{part.md5}; upload the part again"
                )
        given = {p.partNumber: p.model_copy(update={"md5": p.md5.lower(), "etag": p.etag.strip('"')}) for p in parts}
        return self._all_parts(object_id, spec, given)

    @staticmethod
    def _all_parts(
        object_id: str, spec: ObjectSpecification, completed: dict[int, CompletedPart]
    ) -> dict[int, CompletedPart]:
        missing = [p.partNumber for p in spec.parts if p.partNumber not in completed]
        if missing:
            shown = ", ".join(str(n) for n in missing[:20]) + (" ..." if len(missing) > 20 else "")
            raise BadRequest(
                f"object {object_id} cannot be finalized: {len(missing)} of {len(spec.parts)} parts are not "
                f"uploaded (parts {shown}); resume the upload"
            )
        return completed

    def _check_parts_against_store(
        self,
        object_id: str,
        upload_id: str,
        spec: ObjectSpecification,
        completed: dict[int, CompletedPart],
        markers: bool,
    ) -> None:
        """Every part must be the part the store holds. A part replaced after it was recorded (a replayed PUT;
        S3, Azure and GCS let a signed URL overwrite a part until completion) loses its record, so the
        client's resume sends it again instead of this finalize failing for ever."""
        held: dict[int, list[UploadedPart]] = {}
        for stored in guard(lambda: self._uploaded_parts(object_id, upload_id)):
            held.setdefault(stored.part_number, []).append(stored)
        changed = []
        for part in spec.parts:
            marker = completed[part.partNumber]
            # Some stores list every version of a re-sent part (SeaweedFS) and complete with the one named:
            # the recorded part is still there if any listed version is it.
            still = any(
                stored.size == part.partSize and (not stored.etag or stored.etag.strip('"') == marker.etag)
                for stored in held.get(part.partNumber, [])
            )
            if not still:
                changed.append(part.partNumber)
        if not changed:
            return
        if markers:
            for number in changed:
                self.delete_part(object_id, upload_id, number)
        shown = ", ".join(str(n) for n in changed[:20]) + (" ..." if len(changed) > 20 else "")
        raise BadRequest(
            f"object {object_id} cannot be finalized: parts {shown} are not in the store as recorded (missing "
            "or replaced since); their records were removed: resume the upload to send them again"
        )

    def _read_commit(self, object_id: str, upload_id: str) -> _Commit | None:
        """What a finalize verified and committed to, or None if no finalize got that far."""
        body = guard(lambda: self._store.read_document(upload_state_prefix(object_id, upload_id) + COMMITTED))
        if body is None:
            return None
        try:
            return _Commit.from_json(body)
        except (ValueError, KeyError, TypeError) as exc:
            raise Unavailable(f"the commit record of upload {upload_id} of {object_id} is unreadable: {exc}") from exc

    def finish_committed(self, object_id: str, upload_id: str, spec: ObjectSpecification) -> ObjectSpecification:
        """Roll forward a finalize that committed and then died (the sweep's call)."""
        commit = self._read_commit(object_id, upload_id)
        if commit is None:
            raise BadRequest(f"upload {upload_id} of object {object_id} has no committed finalize to finish")
        return self.roll_forward(object_id, upload_id, spec, commit)

    def roll_forward(
        self,
        object_id: str,
        upload_id: str,
        spec: ObjectSpecification,
        commit: _Commit,
        state_keys: set[str] | None = None,
    ) -> ObjectSpecification:
        """Finish a committed finalize; every step may have been done already by a call that died, or be
        under way in another (a client's retry beside the sweep). The object's ``.meta`` is read here, just
        before it may be hidden, so a call that overlapped this one and finished is seen, not undone: everything
        needed to put the object back is in the commit record, read before anything is hidden."""
        current = guard(lambda: read_spec(self._store, meta_key(object_id)))
        if current is not None and current.uploadId == upload_id:
            self.discard_state(object_id, upload_id, state_keys)  # finished by the other call
            return current
        completed = commit.parts
        if current is not None:
            # Overwrite: hide the old object first so no reader ever pairs old metadata with new bytes.
            self._hide_final(object_id)
            crash_point("finalize.old_meta_hidden")
        key = data_key(object_id)
        if spec.objectSize == 0:
            guard(lambda: self._store.put_empty(key))
        else:
            parts = [UploadedPart(p.partNumber, completed[p.partNumber].etag, p.partSize) for p in spec.parts]
            try:
                guard(lambda: self._store.complete_upload(key, upload_id, parts))
            except UploadNotFound as exc:
                # Completed by an earlier call that died before writing .meta: fine if the bytes are there.
                head = guard(lambda: self._store.head(key))
                if head is None or head.size != spec.objectSize:
                    raise NotFound(
                        f"the store no longer has upload {upload_id} of object {object_id}; start the upload again"
                    ) from exc
            except ValueError as exc:
                raise BadRequest(f"object {object_id} cannot be assembled: {exc}; resume the upload") from exc
        crash_point("finalize.completed")

        final = spec.model_copy(
            update={
                "objectMd5": commit.md5,
                "parts": [
                    p.model_copy(update={"url": None, "md5": None, "sourceMd5": completed[p.partNumber].md5})
                    for p in spec.parts
                ],
            }
        )
        self._show_final(object_id, final)
        crash_point("finalize.meta_written")
        self.discard_state(object_id, upload_id, state_keys)
        return final

    def _verified_md5(
        self,
        object_id: str,
        upload_id: str,
        spec: ObjectSpecification,
        md5: str | None,
        entity: Entity,
        completed: dict[int, CompletedPart],
    ) -> str | None:
        """The whole-object MD5 to record; a mismatch aborts the upload so nothing becomes visible.

        Every MD5 the server knows must agree: the client's, the one declared at initiate, the registry's, and
        what the bytes themselves say where the server can tell -- an empty object's, and a one-part object's,
        which is its part's (checked against the store's ETag when the part was recorded, where that is an MD5).
        """
        computed = _check_md5(md5, "md5") if md5 else None
        candidates = {
            "declared at initiate": spec.objectMd5.lower() if spec.objectMd5 else None,
            "registered in the metadata": entity.fileMd5sum.lower() if entity.fileMd5sum else None,
        }
        if spec.objectSize == 0:
            candidates["of an empty file"] = "d41d8cd98f00b204e9800998ecf8427e"
        if len(spec.parts) == 1 and spec.parts[0].partNumber in completed:
            candidates["of its one part as uploaded"] = completed[spec.parts[0].partNumber].md5.lower()
        known = [(f"MD5 {where} is", value) for where, value in candidates.items() if value is not None]
        if computed is not None:
            known.insert(0, ("uploaded bytes hash to", computed))
        if not known:
            return None
        said, reference = known[0]
        for where, expected in known[1:]:
            if expected != reference:
                self.discard(object_id, upload_id)
                raise BadRequest(
                    f"MD5 mismatch for object {object_id}: the {said} {reference} but the {where} {expected}; "
                    "nothing was stored. Check the file and its declared MD5, then upload again"
                )
        return reference

    def discard_state(self, object_id: str, upload_id: str, keys: set[str] | None = None) -> None:
        """Delete the part markers several at a time (one store round trip each: a 16,000-part upload's
        finalize would otherwise wait ~80 s for them), then the commit record, then the state document, so a
        crash midway leaves the state document for the sweep to find, and an overlapping finalize that lists
        the state while markers go still finds the commit record and rolls forward rather than counting
        parts. ``keys``: the state's keys when the caller has just listed them (saves listing again)."""
        prefix = upload_state_prefix(object_id, upload_id)
        if keys is None:
            keys = {h.key for h in guard(lambda: list(self._store.list(prefix)))}
        last = [prefix + COMMITTED, prefix + ".meta"]
        markers = sorted(keys - set(last))
        if markers:
            with ThreadPoolExecutor(max_workers=min(STATE_DELETE_PARALLEL, len(markers))) as pool:
                list(pool.map(lambda key: guard(lambda: self._store.delete(key)), markers))
            crash_point("finalize.state_half_removed")
        for key in last:
            guard(lambda k=key: self._store.delete(k))

    def cancel(self, object_id: str) -> None:
        upload_id = self.current_upload_id(object_id)
        if upload_id is None:
            raise NotFound(f"no upload in progress for object {object_id}")
        self.discard(object_id, upload_id)
