"""The Azure Blob ObjectStore: every key is a blob of one container, uploads are block blobs.

Keys are the same as on every other backend (``data/{id}``, ``data/{id}.meta``, ``upload/...`` state
and zero-byte markers whose names carry JSON), so existence, listing, MD5s and the publish checks
behave exactly as on S3. The Azure SDK quotes blob names in request paths itself, and SAS URLs are
built from the blob client's (quoted) URL, so names with ``|``, ``{``, ``"`` or spaces work.

Multipart upload maps onto blocks and a block list:

* ``start_upload`` only mints an upload id (uuid4 hex): Azure needs nothing created.
* A part is one Put Block on the data blob, through a blob SAS URL (write permission) with
  ``comp=block&blockid=...`` appended. The block id is base64 of ``{uploadId}-{partNumber:06d}``:
  Azure refuses blocks whose ids differ in encoded length from the blob's other uncommitted blocks,
  so every id of every upload has the same length (52 characters). The client sends ``Content-MD5``
  and Azure verifies it on Put Block; no ETag comes back, hence ``UploadedPart.etag == ""``.
* ``list_uploaded_parts`` reads the blob's *uncommitted* block list, filtered to the upload's ids.
  Azure keeps no record of an upload as such, so an upload with no blocks yet lists as empty; the
  upload service keeps its own state in ``upload/{id}_{uploadId}/.meta`` and decides.
* ``complete_upload`` is one Put Block List in part order: atomic, and it discards every other
  uncommitted block of the blob. Once committed the upload's blocks are no longer uncommitted, so a
  repeated completion raises UploadNotFound (the service then checks the blob's size).
* ``abort_upload``: uncommitted blocks cannot be deleted one by one. If the blob has no committed
  version, an empty block list is committed only if the blob still does not exist (``If-None-Match:
  *``) and that empty blob is deleted only if unchanged (``If-Match``), which discards the blocks
  without ever touching an object someone else committed meanwhile. If a committed blob exists
  (an upload replacing an object), its uncommitted blocks are left: the next commit on the blob
  discards them, and Azure garbage-collects uncommitted blocks after 7 days anyway.

Known limit: Azure SAS permissions cannot be narrowed to Put Block. A part URL (write permission on
``data/{id}``) also allows Put Blob and Put Block List on that blob until it expires, so a client that
was allowed to upload could replace the bytes of the object after it was finalized. The ``.meta``
written at finalize keeps every part's MD5 and the object's MD5, and downloads verify them, so such a
replacement is detected, not served silently; keep ``upload_url_ttl`` short on Azure to shrink the
window.

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
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

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

CLOCK_SKEW = timedelta(minutes=5)  # SAS start time in the past: the store's clock may run ahead of ours
MAX_BLOCKS = 50_000  # Azure's limit of committed blocks per blob
MAX_BLOCK_BYTES = 4000 * 1024 * 1024  # Azure's largest block (service version 2019-12-12 and later)
MAX_KEY_CHARS = 1024  # Azure's limit on blob names
OCTET_STREAM = "application/octet-stream"
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

    # -- multipart upload (blocks + block list) -------------------------------------------------------
    def start_upload(self, key: str, size: int) -> str:
        _check_key(key)
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
        url = self._sas_url(key, BlobSasPermissions(write=True), expires_in)
        return f"{url}&comp=block&blockid={quote(encoded_block_id(upload_id, part_number), safe='')}"

    def sign_blob_upload(self, key: str, expires_in: int) -> str:
        """A blob SAS for the Java client's Azure SDK: it may create or replace ``key``, nothing else."""
        return self._sas_url(key, BlobSasPermissions(write=True, create=True), expires_in)

    def _staged_blocks(self, key: str, upload_id: str) -> dict[int, int]:
        """{part number: size} of this upload's uncommitted blocks."""
        try:
            _, uncommitted = self._blob(key).get_block_list("uncommitted")
        except ResourceNotFoundError as exc:
            if _code(exc) == "ContainerNotFound":
                raise self._error(exc, f"listing the blocks of {key}") from None
            return {}  # no blob and no uncommitted block at all: nothing uploaded yet
        except UnicodeDecodeError:
            raise StoreError(
                f"{key} has uncommitted blocks with binary ids written by another tool; they expire within 7 days"
            ) from None
        except AzureError as exc:
            raise self._error(exc, f"listing the blocks of {key}") from None
        prefix = f"{upload_id}-"
        staged: dict[int, int] = {}
        for block in uncommitted:
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
        self._check_staged(key, upload_id, parts)
        blocks = [BlobBlock(block_id(upload_id, p.part_number), BlockState.UNCOMMITTED) for p in parts]
        try:
            self._blob(key).commit_block_list(blocks, content_settings=ContentSettings(content_type=OCTET_STREAM))
        except HttpResponseError as exc:
            if exc.status_code == 400 and _code(exc) == "InvalidBlockList":
                # Blocks vanished between the check and the commit (another completion, an abort).
                self._check_staged(key, upload_id, parts)
            raise self._error(exc, f"committing the blocks of {key}") from None
        except AzureError as exc:
            raise self._error(exc, f"committing the blocks of {key}") from None

    def _check_staged(self, key: str, upload_id: str, parts: list[UploadedPart]) -> None:
        staged = self._staged_blocks(key, upload_id)
        if not staged:
            raise UploadNotFound(_gone(upload_id))
        # Uncommitted blocks keep no MD5 and the upload's total is not recorded: presence, sizes and order.
        check_part_list(parts, {n: UploadedPart(n, "", size) for n, size in staged.items()}, None)

    def abort_upload(self, key: str, upload_id: str) -> None:
        if not _UPLOAD_ID.match(upload_id) or not self._staged_blocks(key, upload_id):
            return
        blob = self._blob(key)
        try:
            if blob.exists():
                return  # replacing a committed object: see the module docstring
            created = blob.commit_block_list([], if_none_match="*")  # drops every uncommitted block
            blob.delete_blob(etag=created["etag"], match_condition=MatchConditions.IfNotModified)
        except HttpResponseError as exc:
            if exc.status_code in (404, 409, 412):
                return  # someone committed or deleted the blob meanwhile: theirs wins, blocks expire later
            raise self._error(exc, f"discarding the blocks of {key}") from None
        except AzureError as exc:
            raise self._error(exc, f"discarding the blocks of {key}") from None

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
