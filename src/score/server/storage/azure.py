"""The Azure Blob ObjectStore: every key is a blob of one container, uploads are block blobs.

Keys are the same as on every other backend (``data/{id}``, ``data/{id}.meta``, ``upload/...`` state
and zero-byte markers whose names carry JSON), so existence, listing, MD5s and the publish checks
behave exactly as on S3. The Azure SDK quotes blob names in request paths itself, and SAS URLs are
built from the blob client's (quoted) URL, so names with ``|``, ``{``, ``"`` or spaces work.

Multipart upload maps onto blocks and a block list, staged on a blob of the upload's own (``layout.staging_key``:
``upload/{id}_{uploadId}/blocks``), never on ``data/{id}``. Azure SAS permissions cannot be narrowed to Put Block:
a write SAS also allows Put Blob and Put Block List on its blob until it expires. A part URL for ``data/{id}``
would let a client replace a published object's bytes behind its ``.meta`` (or commit its own block list with a
forged Content-MD5 before finalize), for as long as the URL lives, cancel or not. A part URL opens the staging
blob only, and the server assembles ``data/{id}`` itself, the bytes never passing through it:

* ``start_upload`` only mints an upload id (uuid4 hex): Azure needs nothing created.
* A part is one Put Block on the staging blob, through a blob SAS URL (write permission, that blob only) with
  ``comp=block&blockid=...`` appended. The block id is base64 of ``{uploadId}-{partNumber:06d}``: Azure refuses
  blocks whose ids differ in encoded length from the blob's other uncommitted blocks, so every id has the same
  length (52 characters). The client sends ``Content-MD5`` and Azure verifies it on Put Block; no ETag comes
  back, hence ``UploadedPart.etag == ""``.
* ``list_uploaded_parts`` reads the staging blob's block list, filtered to the upload's ids: the uncommitted
  blocks (and, after a completion that died midway, the committed ones). Azure keeps no record of an upload as
  such, so an upload with no blocks yet lists as empty; the upload service keeps its own state in
  ``upload/{id}_{uploadId}/.meta`` and decides.
* ``complete_upload`` checks the part list (``check_part_list``), commits it on the staging blob (Put Block List
  in part order, each block's latest version), takes a snapshot of exactly that commit (``If-Match`` its ETag;
  a snapshot is immutable, so whatever a part URL writes afterwards cannot reach the copy), copies the snapshot
  to ``data/{id}`` with Copy Blob, polls until the copy succeeded (within one storage account it usually has by
  the time Copy Blob answers), then deletes its snapshot and the staging blob (the service has hidden a replaced
  object's ``.meta`` before it completes). Every step may be repeated after a crash (the commit takes the
  blocks' latest versions, committed or not). A completion that finds ``data/{id}`` already a finished copy of
  this upload's staging blob (Azure keeps a copy's source on its destination) raises UploadNotFound and copies
  nothing again (the service then checks the object's size): neither blocks a stale part URL staged since, nor
  a retried or overlapping finalize (two replicas), can assemble the object a second time. An overlapping
  completion's snapshot is never deleted under it (the staging blob goes with the last snapshot).
  Copy Blob rather than Put Block From URL per part: one request whatever the number of parts, and on Azurite
  a 64-part completion takes ~40-90 ms against ~1.4-3 s (Put Block From URL reads every part again over HTTP
  and stores it anew, one request per part or per range of up to 4000 MiB). Copy Blob From URL (the
  synchronous copy) is limited to 256 MiB, hence the asynchronous Copy Blob and the polling (up to
  ``COPY_WAIT_SECONDS``, then 503: the finalize is retried and waits for the copy under way).
* ``abort_upload`` commits an empty block list on the staging blob (which discards every uncommitted block)
  and deletes it, snapshots included. A stale part URL can still write the staging blob later: uncommitted
  blocks expire after 7 days, and a committed blob there is a key in a state folder, which the sweep removes.

The Java client's Azure uploader (``SignsBlobUploads``): one blob SAS for ``data/{id}`` with write and
create permissions only (no read, delete or list, no other blob), with which the client's own Azure SDK
writes the whole blob (Put Blob, or Put Block and Put Block List with block ids of its own, and the blob's
Content-MD5). The upload service judges the result by the blob's size and Content-MD5.

Containers written by the Java server (``HoldsLegacyObjects``) keep each object as a blob named ``{id}``
in the container root, with no ``.meta``: those are read as they are.

SAS URLs are signed with the account key (user delegation SAS is out of scope), start a few minutes
in the past to tolerate clock skew, and are HTTPS-only when the endpoint is HTTPS. Neither SAS tokens
nor the key are ever logged or put in exception messages.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote, urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import (
    BlobBlock,
    BlobClient,
    BlobPrefix,
    BlobSasPermissions,
    BlobServiceClient,
    BlockState,
    ContentSettings,
    ExponentialRetry,
    generate_blob_sas,
)

from score.server.storage.backends import AzureConfig
from score.server.storage.base import (
    ObjectHead,
    StoreError,
    StoreMisconfigured,
    StoreUnavailable,
    StoreUpload,
    UploadedPart,
    UploadNotFound,
    check_part_list,
    keys_after,
)
from score.server.storage.layout import data_name, staging_key

CLOCK_SKEW = timedelta(minutes=5)  # SAS start time in the past: the store's clock may run ahead of ours
MAX_BLOCKS = 50_000  # Azure's limit of committed blocks per blob
MAX_BLOCK_BYTES = 4000 * 1024 * 1024  # Azure's largest block (service version 2019-12-12 and later)
MAX_KEY_CHARS = 1024  # Azure's limit on blob names
OCTET_STREAM = "application/octet-stream"
COPY_SOURCE_TTL = timedelta(days=1)  # the read SAS of a staging snapshot, for a server-side copy that may queue
COMMIT_ATTEMPTS = 3  # a completion's commit and snapshot, raced by overlapping ones
COPY_WAIT_SECONDS = 300  # a completion waits this long for Azure's server-side copy, then answers 503: retry
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}\Z")  # fixed length, so every block id has one encoded length
_TRANSIENT_STATUS = {408, 429}  # plus every 5xx: timeouts and throttling, worth a retry


def block_id(upload_id: str, part_number: int) -> str:
    """The SDK-level (not yet base64-encoded) id of a part's block: ``{uploadId}-{partNumber:06d}``."""
    return f"{upload_id}-{part_number:06d}"


def encoded_block_id(upload_id: str, part_number: int) -> str:
    """The ``blockid`` query value Azure expects on Put Block: base64 of ``block_id``."""
    return base64.b64encode(block_id(upload_id, part_number).encode("ascii")).decode("ascii")


def _md5_hex(content_md5: bytes | bytearray | None) -> str | None:
    """Azure reports Content-MD5 as raw bytes (base64 on the wire); Score speaks lower-case hex."""
    return bytes(content_md5).hex() if content_md5 and len(content_md5) == 16 else None


def _millis(moment: datetime | None) -> int:
    return int(moment.timestamp() * 1000) if moment else 0


def _gone(upload_id: str) -> str:
    return (
        f"upload {upload_id} has no blocks in the store (already completed, aborted, or expired after 7 days); "
        "ask the server for the upload's status or start a new upload"
    )


def _code(exc: HttpResponseError) -> str:
    """Azure's error code as plain text (the SDK gives a str enum, whose ``str()`` is its Python name)."""
    code = exc.error_code
    return str(getattr(code, "value", code) or exc.reason or "")


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
        raise ValueError(f"invalid key {key!r}: a blob name has 1 to {MAX_KEY_CHARS} characters")
    return key


def _same_path(url: object, other: str) -> bool:
    """Whether two blob URLs name the same blob (their queries, e.g. a snapshot and a SAS, aside)."""
    return unquote(urlsplit(str(url or "")).path) == unquote(urlsplit(other).path)


def _object_id(key: str) -> str:
    """The object id of a multipart upload's key, which must be ``data/{id}``."""
    object_id = data_name(_check_key(key))
    if object_id is None:
        raise ValueError(f"invalid key {key!r}: multipart uploads go to an object's data key, data/{{id}}")
    return object_id


class AzureStore:
    """ObjectStore over one Azure Blob container (or Azurite), authenticated with the account key."""

    name = "azure"
    etag_is_md5 = False  # Put Block returns no ETag; Azure checks each block's Content-MD5 instead
    min_part_size = 1  # blocks may be of any size
    # Score's part calculator makes at most 10,000 parts, each one block of at most 4000 MiB
    max_object_size = 10_000 * MAX_BLOCK_BYTES

    def __init__(self, config: AzureConfig, retries: int = 3) -> None:
        """``retries``: attempts after a transient failure (connection, 5xx, throttling), 1, 3, 5 s apart."""
        if not config.account_name:
            raise StoreMisconfigured("no Azure storage account is configured: set SCORE_AZURE__ACCOUNT_NAME")
        secret = config.account_key.get_secret_value() if config.account_key else ""
        if not secret:
            raise StoreMisconfigured(
                "no Azure account key is configured: set SCORE_AZURE__ACCOUNT_KEY (SAS URLs are signed with it)"
            )
        try:
            base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            raise StoreMisconfigured(
                "the Azure account key is not valid base64: copy it again from the storage account's access keys "
                "into SCORE_AZURE__ACCOUNT_KEY"
            ) from None
        if not config.container:
            raise StoreMisconfigured("no Azure container is configured: set SCORE_AZURE__CONTAINER")
        self._account = config.account_name
        self._key = secret
        self._container_name = config.container
        self.endpoint = (config.endpoint or f"https://{config.account_name}.blob.core.windows.net").rstrip("/")
        self._https_only = self.endpoint.lower().startswith("https://")
        # The SDK's default retry waits 15 s and more between attempts; a request handler cannot.
        retry = ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=retries, random_jitter_range=1)
        self._service = BlobServiceClient(
            self.endpoint,
            credential={"account_name": self._account, "account_key": self._key},
            retry_policy=retry,
            connection_timeout=10,
            read_timeout=60,
        )
        self._container = self._service.get_container_client(self._container_name)

    def __repr__(self) -> str:  # never show the key
        return f"AzureStore(endpoint={self.endpoint!r}, container={self._container_name!r})"

    # -- helpers ---------------------------------------------------------------------------------------
    def _blob(self, key: str) -> BlobClient:
        return self._container.get_blob_client(_check_key(key))

    def _error(self, exc: AzureError, what: str) -> StoreError:
        """Map an SDK failure to the protocol's errors; the message names no URL query nor credential."""
        if isinstance(exc, ServiceRequestError | ServiceResponseError):
            return StoreUnavailable(
                f"{what}: cannot reach Azure Blob Storage at {self.endpoint} ({type(exc).__name__})"
            )
        if isinstance(exc, HttpResponseError):
            status = exc.status_code or 0
            code = _code(exc)
            if status >= 500 or status in _TRANSIENT_STATUS:
                return StoreUnavailable(f"{what}: Azure Blob Storage answered {status} {code}".rstrip())
            if status == 403 or isinstance(exc, ClientAuthenticationError):
                return StoreError(
                    f"{what}: Azure refused the credentials of account {self._account!r} ({code}); check "
                    "SCORE_AZURE__ACCOUNT_NAME and SCORE_AZURE__ACCOUNT_KEY"
                )
            if isinstance(exc, ResourceNotFoundError) and code == "ContainerNotFound":
                return StoreError(f"{what}: container {self._container_name!r} does not exist")
            return StoreError(f"{what}: Azure Blob Storage answered {status} {code}".rstrip())
        return StoreUnavailable(f"{what}: {type(exc).__name__}")

    def _sas_url(self, key: str, permission: BlobSasPermissions, expires_in: int) -> str:
        if expires_in <= 0:
            raise ValueError(f"expires_in must be a positive number of seconds, got {expires_in}")
        now = datetime.now(UTC)
        token = generate_blob_sas(
            self._account,
            self._container_name,
            _check_key(key),
            account_key=self._key,
            permission=permission,
            start=now - CLOCK_SKEW,
            expiry=now + timedelta(seconds=expires_in),
            protocol="https" if self._https_only else None,
        )
        return f"{self._blob(key).url}?{token}"

    # -- readiness -------------------------------------------------------------------------------------
    def check_ready(self, sentinel_key: str) -> None:
        where = f"container {self._container_name!r} of account {self._account!r} at {self.endpoint}"
        try:
            self._container.get_container_properties(retry_total=0)
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise StoreMisconfigured(
                f"cannot reach Azure Blob Storage at {self.endpoint} ({type(exc).__name__}): check "
                "SCORE_AZURE__ENDPOINT (and SCORE_AZURE__ACCOUNT_NAME) and that the endpoint is reachable from here"
            ) from None
        except ResourceNotFoundError:
            raise StoreMisconfigured(
                f"{where} does not exist: create the container or set SCORE_AZURE__CONTAINER to an existing one"
            ) from None
        except HttpResponseError as exc:
            code = _code(exc)
            if exc.status_code in (401, 403):
                raise StoreMisconfigured(
                    f"Azure refused the credentials for {where} ({exc.status_code} {code}): check "
                    "SCORE_AZURE__ACCOUNT_NAME and SCORE_AZURE__ACCOUNT_KEY"
                ) from None
            raise StoreMisconfigured(f"Azure answered {exc.status_code} {code} for {where}".rstrip()) from None
        except AzureError as exc:
            raise StoreMisconfigured(f"cannot use {where}: {type(exc).__name__}") from None
        try:
            sentinel = self.head(sentinel_key)
        except StoreError as exc:
            raise StoreMisconfigured(f"cannot read the sentinel blob {sentinel_key!r} in {where}: {exc}") from None
        if sentinel is None:
            raise StoreMisconfigured(
                f"the sentinel blob {sentinel_key!r} is missing from {where}; clients fetch it to check they can "
                f"reach the store: upload it (any content), e.g. `az storage blob upload --account-name "
                f"{self._account} --container-name {self._container_name} --name {sentinel_key} --data heliograph`"
            )

    # -- multipart upload (blocks staged on the upload's own blob, copied to the object) ---------------
    def _staging(self, key: str, upload_id: str) -> BlobClient:
        """The blob an upload's parts are staged on (``layout.staging_key``), never ``key`` itself."""
        return self._blob(staging_key(_object_id(key), upload_id))

    def start_upload(self, key: str, size: int) -> str:
        _object_id(key)
        if size < 1 or size > MAX_BLOCKS * MAX_BLOCK_BYTES:
            raise ValueError(f"a block blob upload holds 1 to {MAX_BLOCKS * MAX_BLOCK_BYTES} bytes, not {size}")
        return uuid.uuid4().hex  # Azure keeps no record of an upload: the blocks' ids carry it

    def sign_upload_part(
        self, key: str, upload_id: str, part_number: int, offset: int, size: int, expires_in: int
    ) -> str:
        if not _UPLOAD_ID.match(upload_id):
            raise ValueError(f"invalid upload id {upload_id!r}: this store issues 32 lower-case hex digits")
        if not 1 <= part_number <= MAX_BLOCKS:
            raise ValueError(f"part number {part_number} is outside 1..{MAX_BLOCKS} (Azure's block limit)")
        if offset < 0 or not 1 <= size <= MAX_BLOCK_BYTES:
            raise ValueError(f"invalid part: offset {offset} (>= 0), size {size} (1..{MAX_BLOCK_BYTES})")
        staging = self._staging(key, upload_id).blob_name
        url = self._sas_url(staging, BlobSasPermissions(write=True), expires_in)
        return f"{url}&comp=block&blockid={quote(encoded_block_id(upload_id, part_number), safe='')}"

    def sign_blob_upload(self, key: str, expires_in: int) -> str:
        """A blob SAS for the Java client's Azure SDK: it may create or replace ``key``, nothing else."""
        return self._sas_url(key, BlobSasPermissions(write=True, create=True), expires_in)

    def _staged_blocks(self, key: str, upload_id: str) -> dict[int, int]:
        """{part number: size} of this upload's blocks on its staging blob, each block's latest version (the
        uncommitted one where there is one, as Put Block List's ``Latest`` takes it)."""
        staging = self._staging(key, upload_id)
        try:
            committed, uncommitted = staging.get_block_list("all")
        except ResourceNotFoundError as exc:
            if _code(exc) == "ContainerNotFound":
                raise self._error(exc, f"listing the blocks of {key}") from None
            return {}  # no blob and no uncommitted block at all: nothing uploaded yet
        except UnicodeDecodeError:
            raise StoreError(
                f"the staging blob of upload {upload_id} of {key} has blocks with binary ids written by another "
                "tool; abort the upload and start again"
            ) from None
        except AzureError as exc:
            raise self._error(exc, f"listing the blocks of {key}") from None
        prefix = f"{upload_id}-"
        staged: dict[int, int] = {}
        for block in [*committed, *uncommitted]:  # uncommitted last: the latest version wins
            ident = str(block.id)
            number = ident[len(prefix) :]
            if ident.startswith(prefix) and len(number) == 6 and number.isdigit():
                staged[int(number)] = int(block.size)
        return staged

    def list_uploaded_parts(self, key: str, upload_id: str) -> list[UploadedPart]:
        if not _UPLOAD_ID.match(upload_id):
            raise UploadNotFound(_gone(upload_id))
        staged = self._staged_blocks(key, upload_id)
        return [UploadedPart(number, "", size) for number, size in sorted(staged.items())]

    def complete_upload(self, key: str, upload_id: str, parts: list[UploadedPart]) -> None:
        if not _UPLOAD_ID.match(upload_id):
            raise UploadNotFound(_gone(upload_id))
        staging = self._staging(key, upload_id)
        if self._copied_from(self._blob(key), staging, f"HEAD {key}"):
            # Completed before (a call that died before the service recorded it): whatever a stale part URL
            # staged since must not be assembled again. The service then checks the object's size.
            self._delete_staging(staging, key, upload_id)
            raise UploadNotFound(_gone(upload_id))
        self._check_staged(key, upload_id, parts)
        blocks = [BlobBlock(block_id(upload_id, p.part_number), BlockState.LATEST) for p in parts]
        what = f"assembling {key} from the blocks of upload {upload_id}"
        snapshot = self._commit_and_snapshot(staging, blocks, key, upload_id, parts, what)
        try:
            self._copy(snapshot, staging, self._blob(key), what)
        except StoreError:
            if self._copied_from(self._blob(key), staging, f"HEAD {key}"):
                raise UploadNotFound(_gone(upload_id)) from None  # an overlapping completion did it
            raise
        self._delete_staging(staging, key, upload_id, snapshot)

    def _commit_and_snapshot(
        self,
        staging: BlobClient,
        blocks: list[BlobBlock],
        key: str,
        upload_id: str,
        parts: list[UploadedPart],
        what: str,
    ) -> str:
        """Commit the part list on the staging blob and snapshot exactly that commit; the snapshot's id."""
        for _ in range(COMMIT_ATTEMPTS):
            try:
                # Content settings given in full: a Content-MD5 a part URL's own Put Block List set is cleared.
                settings = ContentSettings(content_type=OCTET_STREAM)
                committed = staging.commit_block_list(blocks, content_settings=settings)
                taken = staging.create_snapshot(etag=committed["etag"], match_condition=MatchConditions.IfNotModified)
                return str(taken["snapshot"])
            except HttpResponseError as exc:
                code = _code(exc)
                if exc.status_code != 412 and (exc.status_code, code) not in (
                    (400, "InvalidBlockList"),
                    (404, "BlobNotFound"),
                ):
                    raise self._error(exc, what) from None
                # Blocks vanished, or the blob was written, between the check and the snapshot (an overlapping
                # completion, an abort, a part URL's own Put Blob): done by another, gone, or try again.
                if self._copied_from(self._blob(key), staging, f"HEAD {key}"):
                    raise UploadNotFound(_gone(upload_id)) from None
                self._check_staged(key, upload_id, parts)
            except AzureError as exc:
                raise self._error(exc, what) from None
        raise StoreUnavailable(f"{what}: the staging blob kept changing meanwhile; retry")

    def _delete_staging(self, staging: BlobClient, key: str, upload_id: str, snapshot: str | None = None) -> None:
        """Remove this completion's snapshot, then the staging blob unless another completion's snapshot is
        still there (Azure refuses with SnapshotsPresent): that completion, copying from it, removes it."""
        try:
            if snapshot is not None:
                with contextlib.suppress(ResourceNotFoundError):
                    self._container.get_blob_client(staging.blob_name, snapshot=snapshot).delete_blob()
            staging.delete_blob()
        except ResourceNotFoundError:
            pass  # removed by an abort or another completion meanwhile
        except HttpResponseError as exc:
            if exc.status_code == 409 and _code(exc) == "SnapshotsPresent":
                return
            raise self._error(exc, f"removing the staging blob of upload {upload_id} of {key}") from None
        except AzureError as exc:
            raise self._error(exc, f"removing the staging blob of upload {upload_id} of {key}") from None

    def _copied_from(self, target: BlobClient, staging: BlobClient, what: str) -> bool:
        """Whether ``target`` holds a finished copy of (a snapshot of) ``staging``: Azure keeps the source of
        the last Copy Blob on the destination until the destination is written otherwise."""
        try:
            copy = target.get_blob_properties().copy
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise self._error(exc, what) from None
        return copy.status == "success" and _same_path(copy.source, staging.url)

    def _copy(self, snapshot: str, source: BlobClient, target: BlobClient, what: str) -> None:
        """Copy Blob from ``source``'s snapshot to ``target`` and wait until Azure reports it succeeded.

        The source URL carries a read SAS for that snapshot alone (needed across accounts, harmless within
        one), valid while a copy may run; the snapshot is deleted right after, so the SAS outlives nothing.
        Azure runs one copy to a blob at a time: one still pending (an earlier attempt's) is waited for first."""
        now = datetime.now(UTC)
        token = generate_blob_sas(
            self._account,
            self._container_name,
            source.blob_name,
            snapshot=snapshot,
            account_key=self._key,
            permission=BlobSasPermissions(read=True),
            start=now - CLOCK_SKEW,
            expiry=now + COPY_SOURCE_TTL,
            protocol="https" if self._https_only else None,
        )
        url = f"{source.url}?snapshot={quote(snapshot, safe='')}&{token}"
        deadline = time.monotonic() + COPY_WAIT_SECONDS
        try:
            try:
                copy = target.start_copy_from_url(url)
            except HttpResponseError as exc:
                if exc.status_code != 409 or _code(exc) != "PendingCopyOperation":
                    raise
                # A copy to the object is under way (an earlier attempt's, or another upload's completion):
                # let it end, then copy this upload's snapshot over it.
                pending = target.get_blob_properties().copy
                ended = self._wait_for_copy(target, str(pending.id), str(pending.status), deadline, what)
                if ended == "success" and _same_path(pending.source, source.url):
                    return  # an overlapping completion of this upload copied the same blocks
                copy = target.start_copy_from_url(url)
            status = self._wait_for_copy(target, str(copy["copy_id"]), str(copy["copy_status"]), deadline, what)
        except AzureError as exc:
            raise self._error(exc, what) from None
        if status != "success":
            raise StoreUnavailable(f"{what}: Azure's server-side copy ended {status}; retry the finalize")

    @staticmethod
    def _wait_for_copy(target: BlobClient, copy_id: str, status: str, deadline: float, what: str) -> str:
        """The end status of copy ``copy_id`` to ``target`` (``success``, ``failed``, ``aborted``), polled."""
        pause = 0.05
        while status == "pending":
            if time.monotonic() > deadline:
                raise StoreUnavailable(
                    f"{what}: Azure's server-side copy is still running after {COPY_WAIT_SECONDS} s; retry the finalize"
                )
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
            properties = target.get_blob_properties().copy
            if properties.id != copy_id:
                raise StoreUnavailable(f"{what}: another copy to {target.blob_name} started meanwhile; retry")
            status = str(properties.status)
        return status

    def _check_staged(self, key: str, upload_id: str, parts: list[UploadedPart]) -> None:
        staged = self._staged_blocks(key, upload_id)
        if not staged:
            raise UploadNotFound(_gone(upload_id))
        # Blocks keep no MD5 and the upload's total is not recorded: presence, sizes and order.
        check_part_list(parts, {n: UploadedPart(n, "", size) for n, size in staged.items()}, None)

    def abort_upload(self, key: str, upload_id: str) -> None:
        if not _UPLOAD_ID.match(upload_id):
            return
        staging = self._staging(key, upload_id)
        try:
            staging.get_block_list("all")
        except ResourceNotFoundError as exc:
            if _code(exc) == "ContainerNotFound":
                raise self._error(exc, f"discarding upload {upload_id} of {key}") from None
            return  # no staging blob and no block: nothing to discard
        except UnicodeDecodeError:
            pass  # blocks with binary ids: discarded all the same
        except AzureError as exc:
            raise self._error(exc, f"discarding upload {upload_id} of {key}") from None
        try:
            # Uncommitted blocks cannot be deleted one by one, nor a blob that has nothing else: an empty
            # commit discards them all, then the blob goes. The staging blob is this upload's alone.
            staging.commit_block_list([])
            staging.delete_blob(delete_snapshots="include")
        except ResourceNotFoundError as exc:
            if _code(exc) == "ContainerNotFound":
                raise self._error(exc, f"discarding upload {upload_id} of {key}") from None
        except AzureError as exc:
            raise self._error(exc, f"discarding upload {upload_id} of {key}") from None

    def list_uploads(self) -> Iterator[StoreUpload]:
        """Nothing: Azure keeps no record of an upload (its block ids carry it) and discards uncommitted
        blocks itself after seven days, so an abandoned upload cannot outlive the sweep's own age limit."""
        return iter(())

    def put_empty(self, key: str) -> None:
        self.write_document(key, b"")

    # -- reads -------------------------------------------------------------------------------------------
    def sign_read(self, key: str, offset: int | None, length: int | None, expires_in: int) -> str:
        """A read SAS for the whole blob: Azure SAS cannot bind a byte range, the client's Range header picks it."""
        if offset is not None and offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        return self._sas_url(key, BlobSasPermissions(read=True), expires_in)

    def head(self, key: str) -> ObjectHead | None:
        try:
            props = self._blob(key).get_blob_properties()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise self._error(exc, f"HEAD {key}") from None
        return ObjectHead(
            key=key,
            size=int(props.size),
            last_modified_ms=_millis(props.last_modified),
            md5=_md5_hex(props.content_settings.content_md5),
        )

    # -- documents -------------------------------------------------------------------------------------
    def read_document(self, key: str, start: int = 0, end: int | None = None) -> bytes | None:
        length = None if end is None else max(end - start, 0)
        if length == 0:
            return b"" if self.head(key) is not None else None
        try:
            offset = start if start or length else None  # the SDK wants an offset whenever a length is given
            return self._blob(key).download_blob(offset=offset, length=length, max_concurrency=1).readall()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise self._error(exc, f"reading {key}") from None

    def write_document(self, key: str, body: bytes) -> None:
        """One Put Blob (documents are far below the SDK's 64 MiB single-put limit): atomic on Azure."""
        try:
            self._blob(key).upload_blob(
                body, overwrite=True, length=len(body), content_settings=ContentSettings(content_type=OCTET_STREAM)
            )
        except AzureError as exc:
            raise self._error(exc, f"writing {key}") from None

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectHead]:
        """Committed blobs only (uploads in progress are invisible), in Azure's lexicographic name order. Azure
        cannot start a listing at a name (its markers are opaque), so a page after ``start_after`` walks there."""
        return keys_after(self._list(prefix), start_after)

    def _list(self, prefix: str) -> Iterator[ObjectHead]:
        try:
            for blob in self._container.list_blobs(name_starts_with=prefix or None):
                yield ObjectHead(
                    key=blob.name,
                    size=int(blob.size),
                    last_modified_ms=_millis(blob.last_modified),
                    md5=_md5_hex(blob.content_settings.content_md5),
                )
        except AzureError as exc:
            raise self._error(exc, f"listing {prefix!r}") from None

    # -- containers written by the Java server ----------------------------------------------------------
    def legacy_object_key(self, object_id: str) -> str:
        """The Java server's key (``ObjectKeys.getObjectKey("", id)``): the object id, in the container root."""
        return _check_key(object_id)

    def list_legacy_objects(self) -> Iterator[ObjectHead]:
        """The blobs of the container root (as the Java server's ``listBlobs()``, which does not descend):
        ``data/`` and ``upload/`` are folders there, so Score's own keys are not walked."""
        try:
            for item in self._container.walk_blobs(delimiter="/"):
                if isinstance(item, BlobPrefix):
                    continue
                yield ObjectHead(
                    key=item.name,
                    size=int(item.size),
                    last_modified_ms=_millis(item.last_modified),
                    md5=_md5_hex(item.content_settings.content_md5),
                )
        except AzureError as exc:
            raise self._error(exc, "listing the container root") from None

    def delete(self, key: str) -> None:
        try:
            self._blob(key).delete_blob(delete_snapshots="include")
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise self._error(exc, f"deleting {key}") from None
