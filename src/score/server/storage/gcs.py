"""The Google Cloud Storage ObjectStore: parallel part objects, assembled by server-side compose.

GCS's JSON API has no multipart upload that clients can feed through signed URLs, and the XML API's
multipart upload is missing from the emulators we can test against. So a Score upload becomes one
small object per part, each PUT by the client through a V4 signed URL, then ``compose``d into the
data object at completion::

    multipart/<uploadId>/upload.json           {key, size, created}: the upload exists while this does
    multipart/<uploadId>/part-NNNNNNNN         one object per part, PUT by the client (decimal number)
    multipart/<uploadId>/compose-LL-IIIIII     intermediate composites when there are more than 32 parts

``multipart/`` is reserved: Score's own keys live under ``data/`` and ``upload/``, keys under the
reserved prefix are refused, and ``list`` never returns them unless asked for that prefix itself.

Integrity: a part object's ``md5Hash`` is the MD5 of its bytes, so a part's ETag is that MD5 in hex
(the XML API answers the PUT with the same value as its ETag) and GCS checks the client's
``Content-MD5`` on the PUT. Completion composes exactly the part generations it verified. Composite
objects carry only a CRC32C, so ``head`` reports no MD5 for them.

Credentials: a service-account key (``credentials_file``) signs URLs locally. Without one, Application
Default Credentials are used and URLs are signed through the IAM Credentials API (e.g. GKE workload
identity). An ``http://`` endpoint is an emulator: its JSON API calls go unauthenticated (no bearer
token over cleartext, and no token endpoint to reach), but URLs are still signed with the key file.

Signed URLs and credentials are never logged, and error messages never quote the SDK's text (it
embeds request URLs): only the operation, the HTTP status and the exception class.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import google.auth
import google.auth.credentials
import google.auth.exceptions
import requests
from google.api_core import exceptions as api_exceptions
from google.auth.credentials import AnonymousCredentials
from google.auth.transport.requests import Request as AuthRequest
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption
from google.cloud.storage.retry import DEFAULT_RETRY
from google.oauth2 import service_account

from score.server.storage.backends import GcsConfig
from score.server.storage.base import (
    ObjectHead,
    StoreError,
    StoreMisconfigured,
    StoreUnavailable,
    StoreUpload,
    TiB,
    UploadedPart,
    UploadNotFound,
    check_part_list,
    keys_after,
    range_header,
)

log = logging.getLogger("score.store.gcs")

GOOGLE_ENDPOINT = "https://storage.googleapis.com"
SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)
RESERVED_PREFIX = "multipart/"
MAX_COMPOSE_SOURCES = 32  # GCS refuses a compose of more sources
MAX_SIGNED_TTL = 7 * 86400  # V4 signed URLs live at most seven days
MAX_KEY_BYTES = 1024  # GCS object names: 1-1024 bytes of UTF-8
DELETE_PARALLEL = 8  # concurrent deletes when cleaning up an upload
CONTENT_TYPE = "application/octet-stream"

# Bounded retries: a request thread never waits minutes on a dead store (the SDK default is 120 s).
RETRY_TIMEOUT = 30.0
TIMEOUT = (10.0, 60.0)  # (connect, read) seconds per HTTP request
COMPOSE_TIMEOUT = (10.0, 300.0)
READY_RETRY = DEFAULT_RETRY.with_timeout(5.0)  # start-up checks fail fast on an unreachable endpoint
READY_TIMEOUT = (3.0, 10.0)

_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}\Z")
_PART_NAME = re.compile(r"^part-(\d{8})\Z")
_LINE_BREAK = re.compile(r"[\r\n]")
_TRANSIENT = (
    api_exceptions.TooManyRequests,
    api_exceptions.ServerError,  # every 5xx
    api_exceptions.RetryError,  # the bounded retry ran out on transient failures
    requests.ConnectionError,
    requests.Timeout,
    ConnectionError,
    TimeoutError,
    google.auth.exceptions.TransportError,
    DataCorruption,
)


def upload_prefix(upload_id: str) -> str:
    return f"{RESERVED_PREFIX}{upload_id}/"


def part_object_name(upload_id: str, part_number: int) -> str:
    """Where the client PUTs a part; the contract tests' proxy recognises part PUTs by this name."""
    return f"{upload_prefix(upload_id)}part-{part_number:08d}"


def _record_name(upload_id: str) -> str:
    return f"{upload_prefix(upload_id)}upload.json"


def _gone(upload_id: str) -> str:
    return (
        f"upload {upload_id} does not exist (never started, already completed or aborted); "
        "ask the server for the upload's status or start a new upload"
    )


def validate_key(key: str) -> str:
    """Return ``key`` if GCS accepts it as an object name and it is not one of the store's own."""
    if not isinstance(key, str) or not key:
        raise ValueError("invalid key: it must be a non-empty string")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"invalid key: longer than {MAX_KEY_BYTES} bytes")
    if _LINE_BREAK.search(key):
        raise ValueError("invalid key: carriage returns and line feeds are not allowed in GCS object names")
    if key in (".", ".."):
        raise ValueError("invalid key: '.' and '..' are not GCS object names")
    if key.startswith(RESERVED_PREFIX):
        raise ValueError(f"invalid key: keys under {RESERVED_PREFIX!r} are reserved for uploads in progress")
    return key


def _md5_hex(md5_base64: str | None) -> str | None:
    return base64.b64decode(md5_base64).hex() if md5_base64 else None


def _millis(moment: datetime | None) -> int:
    return int(moment.timestamp() * 1000) if moment else 0


def _head(blob: storage.Blob) -> ObjectHead:
    created = blob.time_created or blob.updated
    return ObjectHead(
        key=blob.name, size=int(blob.size or 0), last_modified_ms=_millis(created), md5=_md5_hex(blob.md5_hash)
    )


def _describe(exc: BaseException) -> str:
    """Class and HTTP status only: the SDK's own message embeds request URLs and object names."""
    code = getattr(exc, "code", None)
    text = f"{exc.__class__.__name__}{f' (HTTP {code})' if isinstance(code, int) else ''}"
    cause = exc.cause if isinstance(exc, api_exceptions.RetryError) else None
    return f"{text} after {_describe(cause)}" if isinstance(cause, BaseException) else text


@contextlib.contextmanager
def _mapped(what: str) -> Iterator[None]:
    """Translate SDK failures: transient ones to StoreUnavailable (503, retry), the rest to StoreError."""
    try:
        yield
    except (StoreError, ValueError):
        raise
    except _TRANSIENT as exc:
        raise StoreUnavailable(f"Google Cloud Storage could not {what}: {_describe(exc)}") from exc
    except (api_exceptions.Unauthorized, api_exceptions.Forbidden, google.auth.exceptions.RefreshError) as exc:
        raise StoreError(
            f"Google Cloud Storage refused to {what}: {_describe(exc)}; check the service account's permissions"
        ) from exc
    except (api_exceptions.GoogleAPIError, google.auth.exceptions.GoogleAuthError) as exc:
        raise StoreError(f"Google Cloud Storage could not {what}: {_describe(exc)}") from exc


def load_credentials(config: GcsConfig) -> google.auth.credentials.Credentials:
    """The service account that signs URLs (and, on real GCS, authenticates API calls)."""
    if config.credentials_file:
        path = config.credentials_file
        try:
            with open(path, encoding="utf-8") as handle:
                info = json.load(handle)
        except OSError as exc:
            raise StoreMisconfigured(
                f"cannot read the GCS credentials file {path} ({exc.strerror or exc}); fix SCORE_GCS__CREDENTIALS_FILE"
            ) from exc
        except ValueError as exc:
            raise StoreMisconfigured(
                f"the GCS credentials file {path} is not JSON; SCORE_GCS__CREDENTIALS_FILE must name a "
                "service-account key file"
            ) from exc
        if not isinstance(info, dict) or info.get("type") != "service_account":
            kind = info.get("type") if isinstance(info, dict) else None
            raise StoreMisconfigured(
                f"the GCS credentials file {path} holds {kind or 'no'} credentials, not a service-account key: "
                "signed URLs need a service account's private key (SCORE_GCS__CREDENTIALS_FILE)"
            )
        try:
            return service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
        except (ValueError, KeyError, google.auth.exceptions.GoogleAuthError) as exc:
            raise StoreMisconfigured(
                f"the service-account key in {path} is incomplete or its private key is unreadable "
                f"({exc.__class__.__name__}); download a fresh key for SCORE_GCS__CREDENTIALS_FILE"
            ) from exc
    if _is_emulator(config.endpoint):
        raise StoreMisconfigured(
            f"the GCS endpoint {config.endpoint} is an emulator, which cannot sign URLs for us: set "
            "SCORE_GCS__CREDENTIALS_FILE to a service-account key file (any freshly generated key will do)"
        )
    try:
        credentials, _project = google.auth.default(scopes=SCOPES)
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise StoreMisconfigured(
            "no Google credentials found: set SCORE_GCS__CREDENTIALS_FILE to a service-account key file, or run "
            "where Application Default Credentials exist (GOOGLE_APPLICATION_CREDENTIALS, workload identity)"
        ) from exc
    return credentials


def _is_emulator(endpoint: str | None) -> bool:
    return bool(endpoint) and endpoint.lower().startswith("http://")  # type: ignore[union-attr]


class GcsStore:
    """ObjectStore over one GCS bucket; parts are objects of their own, composed at completion."""

    name = "gcs"
    etag_is_md5 = True  # a part object's md5Hash is the MD5 of its bytes
    min_part_size = 1  # compose has no minimum source size
    max_object_size = 5 * TiB  # GCS's maximum object size

    def __init__(self, config: GcsConfig, retry_timeout: float = RETRY_TIMEOUT) -> None:
        """``retry_timeout`` bounds the time spent retrying transient failures of one call (seconds)."""
        if not config.bucket:
            raise StoreMisconfigured("no GCS bucket configured: set SCORE_GCS__BUCKET")
        self.bucket_name = config.bucket
        self.endpoint = config.endpoint.rstrip("/") if config.endpoint else None
        self.emulated = _is_emulator(self.endpoint)
        self.signing_endpoint = self.endpoint or GOOGLE_ENDPOINT
        self._credentials = load_credentials(config)
        self._project = config.project or getattr(self._credentials, "project_id", None) or "<none>"
        self._local = threading.local()
        self._refresh_lock = threading.Lock()
        self._retry = DEFAULT_RETRY.with_timeout(retry_timeout)

    # -- plumbing ------------------------------------------------------------------------------------
    def _client(self) -> storage.Client:
        """One SDK client per thread: its HTTP session is not documented as thread-safe."""
        client: storage.Client | None = getattr(self._local, "client", None)
        if client is None:
            options = {"api_endpoint": self.endpoint} if self.endpoint else None
            credentials = AnonymousCredentials() if self.emulated else self._credentials
            client = storage.Client(project=self._project, credentials=credentials, client_options=options)
            self._local.client = client
        return client

    def _bucket(self) -> storage.Bucket:
        return self._client().bucket(self.bucket_name)

    def _signing_args(self) -> dict[str, Any]:
        """Sign locally with a key; otherwise through IAM signBlob as the ADC service account."""
        if isinstance(self._credentials, google.auth.credentials.Signing):
            return {"credentials": self._credentials}
        with self._refresh_lock:
            if not self._credentials.valid:
                self._credentials.refresh(AuthRequest())
        email = getattr(self._credentials, "service_account_email", None)
        if not email:
            raise StoreMisconfigured(
                "the Application Default Credentials are not a service account and cannot sign URLs: set "
                "SCORE_GCS__CREDENTIALS_FILE to a service-account key file"
            )
        return {"service_account_email": email, "access_token": self._credentials.token}

    def _sign(self, key: str, method: str, expires_in: int, headers: dict[str, str] | None = None) -> str:
        """A V4 signed URL that also carries, signed, ``expires`` (the expiry in epoch seconds, never later
        than the signature's): the Java client checks a stored URL's expiry before resuming a download and
        understands only ``expires`` or ``X-Amz-Date`` + ``X-Amz-Expires`` (S3PresignedUrlValidator.java:
        44-55); without it, its resume on this backend aborts. GCS keeps unknown signed parameters as part of
        the canonical query, so the URL is as valid as without it."""
        if expires_in <= 0:
            raise ValueError(f"expires_in must be positive, got {expires_in}")
        ttl = min(expires_in, MAX_SIGNED_TTL)
        expires_at = int(datetime.now(UTC).timestamp()) + ttl  # before signing: never after the real expiry
        with _mapped("sign a URL"):
            return (
                self._bucket()
                .blob(key)
                .generate_signed_url(
                    version="v4",
                    expiration=timedelta(seconds=ttl),
                    method=method,
                    api_access_endpoint=self.signing_endpoint,
                    headers=headers,
                    query_parameters={"expires": str(expires_at)},
                    **self._signing_args(),
                )
            )

    def _upload_record(self, key: str, upload_id: str) -> dict[str, Any]:
        """The upload's record; UploadNotFound if it is gone, malformed or for another key."""
        if not isinstance(upload_id, str) or not _UPLOAD_ID.match(upload_id):
            raise UploadNotFound(f"{upload_id!r} is not an upload id of this store; start a new upload")
        body = self._read(_record_name(upload_id), "read an upload record")
        if body is None:
            raise UploadNotFound(_gone(upload_id))
        try:
            record = json.loads(body)
            size = int(record["size"])
        except (ValueError, KeyError, TypeError) as exc:
            raise UploadNotFound(f"upload {upload_id} has a damaged record; start a new upload") from exc
        if record.get("key") != key:
            raise UploadNotFound(f"upload {upload_id} is for another object, not {key}; check the object id")
        return {**record, "size": size}

    def _read(self, name: str, what: str, start: int = 0, end: int | None = None) -> bytes | None:
        with _mapped(what):
            if end is not None and end <= start:
                return b"" if self._bucket().get_blob(name) is not None else None
            try:
                return (
                    self._bucket()
                    .blob(name)
                    .download_as_bytes(
                        start=start or None, end=None if end is None else end - 1, retry=self._retry, timeout=TIMEOUT
                    )
                )
            except api_exceptions.NotFound:
                return None

    def _write(self, name: str, body: bytes, what: str) -> None:
        blob = self._bucket().blob(name)
        with _mapped(what):
            # Rewriting the same bytes is idempotent, so the upload is retried without a precondition.
            blob.upload_from_string(body, content_type=CONTENT_TYPE, retry=self._retry, timeout=TIMEOUT)

    def _delete_names(self, names: list[str], what: str) -> None:
        """Delete objects a few at a time in parallel (finalize of a 1000-part upload stays quick)."""
        if len(names) <= 1:
            for name in names:
                self._delete_one(name, what)
            return
        with ThreadPoolExecutor(max_workers=min(DELETE_PARALLEL, len(names))) as pool:
            list(pool.map(lambda name: self._delete_one(name, what), names))

    def _delete_one(self, name: str, what: str) -> None:
        with _mapped(what), contextlib.suppress(api_exceptions.NotFound):
            self._bucket().blob(name).delete(retry=self._retry, timeout=TIMEOUT)

    def _list_names(self, prefix: str, what: str) -> list[storage.Blob]:
        with _mapped(what):
            return list(self._client().list_blobs(self.bucket_name, prefix=prefix, retry=self._retry, timeout=TIMEOUT))

    # -- start-up ------------------------------------------------------------------------------------
    def check_ready(self, sentinel_key: str) -> None:
        """Bucket reachable and listable with these credentials, sentinel present, URLs signable.

        Listing (not bucket GET) proves access: a service account holding only object roles on the
        bucket (the least privilege Score needs) may not read the bucket's own metadata.
        """
        where = f"GCS bucket {self.bucket_name!r} at {self.signing_endpoint}"
        try:
            pages = self._client().list_blobs(self.bucket_name, max_results=1, retry=READY_RETRY, timeout=READY_TIMEOUT)
            list(pages)
            sentinel = self._bucket().get_blob(sentinel_key, retry=READY_RETRY, timeout=READY_TIMEOUT)
        except api_exceptions.NotFound as exc:
            raise StoreMisconfigured(f"{where} does not exist: create it or fix SCORE_GCS__BUCKET") from exc
        except (api_exceptions.Unauthorized, api_exceptions.Forbidden, google.auth.exceptions.RefreshError) as exc:
            raise StoreMisconfigured(
                f"{where} refused our credentials ({_describe(exc)}): check SCORE_GCS__CREDENTIALS_FILE and grant "
                "the service account roles/storage.objectAdmin on the bucket"
            ) from exc
        except _TRANSIENT as exc:
            raise StoreMisconfigured(
                f"cannot reach {where} ({_describe(exc)}): check SCORE_GCS__ENDPOINT and the network"
            ) from exc
        except api_exceptions.GoogleAPIError as exc:
            raise StoreMisconfigured(f"{where} is not usable ({_describe(exc)})") from exc
        if sentinel is None:
            raise StoreMisconfigured(
                f"the sentinel object {sentinel_key!r} is missing from {where}: upload any small file there "
                f"(e.g. gcloud storage cp heliograph gs://{self.bucket_name}/{sentinel_key}); clients use it to "
                "check they can reach the store"
            )
        try:
            self.sign_read(sentinel_key, None, None, 60)
        except StoreError as exc:
            raise StoreMisconfigured(f"cannot sign URLs for {where}: {exc}") from exc

    # -- multipart upload ----------------------------------------------------------------------------
    def start_upload(self, key: str, size: int) -> str:
        validate_key(key)
        if size < 0:
            raise ValueError(f"upload size must be >= 0, got {size}")
        upload_id = uuid4().hex
        created = datetime.now(UTC).isoformat(timespec="milliseconds")
        record = json.dumps({"key": key, "size": size, "created": created}).encode()
        self._write(_record_name(upload_id), record, "start an upload")
        return upload_id

    def sign_upload_part(
        self, key: str, upload_id: str, part_number: int, offset: int, size: int, expires_in: int
    ) -> str:
        """A V4 signed PUT for the part's own object, binding only the Host header.

        The client's ``Content-Type``, ``Content-Length`` and ``Content-MD5`` are not x-goog-* headers,
        so GCS accepts them unsigned (and verifies ``Content-MD5``); leaving them out of the signature
        keeps every client working whatever content type it sends. No store round trip: initiate signs
        one URL per part.
        """
        validate_key(key)
        if not isinstance(upload_id, str) or not _UPLOAD_ID.match(upload_id):
            raise UploadNotFound(f"{upload_id!r} is not an upload id of this store; start a new upload")
        if part_number < 1 or offset < 0 or size < 1:
            raise ValueError(f"invalid part: number {part_number} (>= 1), offset {offset} (>= 0), size {size} (>= 1)")
        return self._sign(part_object_name(upload_id, part_number), "PUT", expires_in)

    def _part_blobs(self, upload_id: str) -> dict[int, storage.Blob]:
        parts: dict[int, storage.Blob] = {}
        prefix = upload_prefix(upload_id)
        for blob in self._list_names(f"{prefix}part-", "list the parts of an upload"):
            match = _PART_NAME.match(blob.name[len(prefix) :])
            if match:
                parts[int(match.group(1))] = blob
        return parts

    def list_uploaded_parts(self, key: str, upload_id: str) -> list[UploadedPart]:
        self._upload_record(key, upload_id)
        return [
            UploadedPart(number, _md5_hex(blob.md5_hash) or "", int(blob.size or 0))
            for number, blob in sorted(self._part_blobs(upload_id).items())
        ]

    def uploaded_part(self, key: str, upload_id: str, part_number: int) -> UploadedPart | None:
        """The record, then the part's own object: two requests, however many parts the upload has."""
        self._upload_record(key, upload_id)
        with _mapped("read a part's metadata"):
            blob = self._bucket().get_blob(part_object_name(upload_id, part_number), retry=self._retry, timeout=TIMEOUT)
        return None if blob is None else UploadedPart(part_number, _md5_hex(blob.md5_hash) or "", int(blob.size or 0))

    def complete_upload(self, key: str, upload_id: str, parts: list[UploadedPart]) -> None:
        """Verify the parts, compose them (32 at a time, recursively) into ``key``, then clean up.

        The final compose writes ``key`` in one step, so readers never see a partial object. The upload
        record is deleted right after it, so a retry after a crash finds the upload completed (the
        caller then checks the object's size); part and intermediate objects are removed last, best
        effort (an ``abort_upload`` or a bucket lifecycle rule on ``multipart/`` removes leftovers).
        """
        validate_key(key)
        size = self._upload_record(key, upload_id)["size"]
        stored = self._part_blobs(upload_id)
        sources = _check_parts(parts, stored, size)
        prefix = upload_prefix(upload_id)
        with _mapped("assemble an upload"):
            try:
                level = 0
                while len(sources) > MAX_COMPOSE_SOURCES:
                    grouped = []
                    for index in range(0, len(sources), MAX_COMPOSE_SOURCES):
                        group = sources[index : index + MAX_COMPOSE_SOURCES]
                        name = f"{prefix}compose-{level:02d}-{index // MAX_COMPOSE_SOURCES:06d}"
                        grouped.append(group[0] if len(group) == 1 else self._compose(name, group))
                    sources = grouped
                    level += 1
                final = self._compose(key, sources)
            except api_exceptions.NotFound as exc:
                self._upload_record(key, upload_id)  # UploadNotFound if a concurrent call completed it
                raise ValueError(
                    f"a part of upload {upload_id} changed or vanished while it was being assembled: upload it again"
                ) from exc
        if int(final.size or 0) != size:
            self._delete_one(key, "remove a wrongly assembled object")
            raise StoreError(
                f"assembling upload {upload_id} produced {final.size} bytes instead of {size}; nothing was stored, "
                "upload the parts again"
            )
        self._delete_one(_record_name(upload_id), "finish an upload")
        try:
            leftovers = [b.name for b in self._list_names(prefix, "list an upload's part objects")]
            self._delete_names(leftovers, "delete an upload's part objects")
        except StoreError as exc:
            log.warning("upload %s completed, but its part objects remain (%s)", upload_id, exc)

    def _compose(self, name: str, sources: list[storage.Blob]) -> storage.Blob:
        """Compose ``sources`` (the exact generations listed, so a part re-PUT since is not picked up)."""
        target = self._bucket().blob(name)
        target.content_type = CONTENT_TYPE
        # Composing the same source generations again yields the same bytes: safe to retry.
        target.compose(sources, retry=self._retry, timeout=COMPOSE_TIMEOUT)
        return target

    def abort_upload(self, key: str, upload_id: str) -> None:
        if not isinstance(upload_id, str) or not _UPLOAD_ID.match(upload_id):
            return
        prefix = upload_prefix(upload_id)
        self._delete_one(_record_name(upload_id), "abort an upload")  # the upload is gone from here on
        names = [b.name for b in self._list_names(prefix, "list an upload's part objects")]
        self._delete_names(names, "delete an upload's part objects")

    def list_uploads(self) -> Iterator[StoreUpload]:
        """Every upload folder under ``multipart/``: with its record (key, start time), or without one (an
        abort that died after deleting the record but before the part objects)."""
        folders: dict[str, list[storage.Blob]] = {}
        for blob in self._list_names(RESERVED_PREFIX, "list the uploads in progress"):
            upload_id = blob.name[len(RESERVED_PREFIX) :].partition("/")[0]
            if _UPLOAD_ID.match(upload_id):
                folders.setdefault(upload_id, []).append(blob)
        for upload_id, blobs in sorted(folders.items()):
            record = next((b for b in blobs if b.name == _record_name(upload_id)), None)
            key = ""
            if record is not None:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    key = str(json.loads(self._read(record.name, "read an upload record") or b"{}")["key"])
            started = min(_millis(b.time_created) for b in blobs)
            yield StoreUpload(key, upload_id, started)

    def put_empty(self, key: str) -> None:
        self._write(validate_key(key), b"", "create an empty object")

    # -- reads ---------------------------------------------------------------------------------------
    def sign_read(self, key: str, offset: int | None, length: int | None, expires_in: int) -> str:
        """V4 signed GET; with offset/length the ``Range`` header is signed: ``bytes=a-b`` (or ``bytes=a-``
        when ``length`` is None or negative), exactly what a client sends for that part."""
        validate_key(key)
        byte_range = range_header(offset, length)
        return self._sign(key, "GET", expires_in, {"Range": byte_range} if byte_range else None)

    def head(self, key: str) -> ObjectHead | None:
        validate_key(key)
        with _mapped("read an object's metadata"):
            blob = self._bucket().get_blob(key, retry=self._retry, timeout=TIMEOUT)
        return _head(blob) if blob is not None else None

    # -- documents -----------------------------------------------------------------------------------
    def read_document(self, key: str, start: int = 0, end: int | None = None) -> bytes | None:
        return self._read(validate_key(key), "read a document", start, end)

    def write_document(self, key: str, body: bytes) -> None:
        """One upload request: GCS makes the new object visible atomically, never half-written."""
        self._write(validate_key(key), body, "write a document")

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectHead]:
        """Lazily, page by page, in GCS's lexicographic (UTF-8 byte) order; uploads' internals hidden."""
        if not isinstance(prefix, str):
            raise ValueError("invalid prefix: it must be a string")
        hide_internal = not prefix.startswith(RESERVED_PREFIX)
        return keys_after(self._walk(prefix, start_after, hide_internal), start_after)

    def _walk(self, prefix: str, start_after: str, hide_internal: bool) -> Iterator[ObjectHead]:
        with _mapped("list objects"):
            blobs = self._client().list_blobs(
                self.bucket_name, prefix=prefix, start_offset=start_after or None, retry=self._retry, timeout=TIMEOUT
            )
            for blob in blobs:
                if hide_internal and blob.name.startswith(RESERVED_PREFIX):
                    continue
                yield _head(blob)

    def delete(self, key: str) -> None:
        self._delete_one(validate_key(key), "delete an object")


def _check_parts(parts: list[UploadedPart], stored: dict[int, storage.Blob], size: int) -> list[storage.Blob]:
    """The stored part objects to compose, after ``check_part_list`` (the given parts tile the object)."""
    held = {n: UploadedPart(n, _md5_hex(blob.md5_hash) or "", int(blob.size or 0)) for n, blob in stored.items()}
    check_part_list(parts, held, size)
    return [stored[part.part_number] for part in parts]
