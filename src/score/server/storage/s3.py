"""The S3 ObjectStore (AWS and S3-compatible stores) over boto3, in Score's bucket layout (reference §3).

Bulk bytes never pass through the server: clients PUT parts to pre-signed UploadPart URLs and GET
pre-signed (range-signed) URLs. The server itself only starts, inspects, completes and aborts
multipart uploads and reads/writes the small state documents.

Buckets (reference §3.2, §3.3):

* ``data/{id}`` (the data blob) and the sentinel ``data/{sentinel}`` live in the object bucket
  ``config.bucket``; every other key (``data/{id}.meta``, ``upload/...`` state and markers) lives in the
  state bucket ``config.state_bucket`` (default: the object bucket).
* With ``partition_pool > 0`` a key's bucket is ``<base>.<index>``, the index being the first
  ``partition_key`` hex digits of its object id modulo the pool. Writes always go to the partition
  bucket; reads of ``data/`` keys fall back to the base bucket on 404, so objects written before the
  store was partitioned ("relocated") stay readable; listings merge the base and every partition bucket.
  The sentinel and ids whose leading characters are not hex always live in the base bucket.

Error mapping: connection failures, timeouts, throttling and 5xx become ``StoreUnavailable`` (503, the
caller retries) after botocore's own retries; other refusals become ``StoreError`` with the S3 error
code. Messages name the bucket and key, never credentials or signed URLs.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from score.core import md5 as md5s
from score.server.storage.backends import S3Config
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
from score.server.storage.layout import DATA_PREFIX, META_SUFFIX, UPLOAD_PREFIX, is_data_blob, object_id_of
from score.server.storage.s3_documents import S3Documents

MiB = 1024 * 1024
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4's limit for pre-signed URLs
DEFAULT_PAGE_SIZE = 1000  # S3's maximum for ListObjectsV2 and ListParts
MAX_ATTEMPTS = 5  # botocore "standard" retries: the original's s3.retryLimit
CONNECT_TIMEOUT = 15.0  # the original's s3.connectionTimeout
READ_TIMEOUT = 120.0  # CompleteMultipartUpload of a large object answers slowly (keep-alive whitespace)
PROBE_ATTEMPTS = 2  # start-up checks fail fast instead of retrying for long against a wrong endpoint
MAX_POOL_CONNECTIONS = 64  # request handlers run in a thread pool and share one client
RESOLVE_TTL = 5.0  # seconds a "which bucket holds data/{id}" answer is reused while signing many parts
RESOLVE_CACHE_MAX = 10_000

DEFAULT_SENTINEL_KEY = "data/heliograph"

NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
NO_BUCKET_CODES = frozenset({"NoSuchBucket"})
CREDENTIAL_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "InvalidSecurity", "403"}
)
TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "TooManyRequestsException",
        "RequestTimeout",
        "ServiceUnavailable",
        "InternalError",
        "OperationAborted",
    }
)
BAD_PARTS_CODES = frozenset({"InvalidPart", "InvalidPartOrder", "EntityTooSmall", "MalformedXML"})

_HEX = re.compile(r"^[0-9a-fA-F]+\Z")
T = TypeVar("T")

ENV_ENDPOINT = "s3.endpoint (SCORE_S3__ENDPOINT)"
ENV_KEYS = "s3.access_key and s3.secret_key (SCORE_S3__ACCESS_KEY, SCORE_S3__SECRET_KEY)"
ENV_BUCKET = "s3.bucket (SCORE_S3__BUCKET)"
ENV_STATE_BUCKET = "s3.state_bucket (SCORE_S3__STATE_BUCKET)"
ENV_POOL = "s3.partition_pool (SCORE_S3__PARTITION_POOL)"


# -- bucket naming (pure) ---------------------------------------------------------------------------


def partition_index(object_id: str, key_chars: int, pool: int) -> int:
    """The partition of an object: its first ``key_chars`` characters read as hex, modulo ``pool``.

    Same arithmetic as Score's BucketNamingService, so a partitioned bucket set written by the Java
    server is found. If the id is given as a path only its last segment counts. Raises ValueError
    when those characters are not hex (Java fails the same way) or the id is too short.
    """
    if pool <= 0:
        raise ValueError(f"partition pool must be positive, got {pool}")
    if key_chars < 1:
        raise ValueError(f"partition key length must be at least 1, got {key_chars}")
    name = object_id.rsplit("/", 1)[-1]
    head = name[:key_chars]
    if len(head) < key_chars or not _HEX.match(head):
        raise ValueError(
            f"object id {name!r} cannot be partitioned: its first {key_chars} characters must be hexadecimal"
        )
    return int(head, 16) % pool


def partition_bucket(base: str, object_id: str, key_chars: int, pool: int) -> str:
    """``<base>.<index>`` with no zero padding (``oicr.icgc.6``), or ``base`` when not partitioned."""
    if pool <= 0:
        return base
    return f"{base}.{partition_index(object_id, key_chars, pool)}"


def partition_buckets(base: str, pool: int) -> list[str]:
    """Every partition bucket of a base bucket, ``<base>.0 .. <base>.(pool-1)``."""
    return [f"{base}.{index}" for index in range(max(pool, 0))]


class BucketRouter:
    """Which bucket(s) hold a key or may hold keys under a prefix (pure: no I/O).

    ``write_bucket`` is where a key is written (the partition bucket when partitioned); ``read_buckets``
    lists where to look, in order (partition first, then the base bucket for ``data/`` keys, so
    relocated objects are found); ``list_buckets`` covers every bucket a prefix can reach.
    """

    def __init__(
        self, bucket: str, state_bucket: str | None, pool: int, key_chars: int, sentinel_key: str = DEFAULT_SENTINEL_KEY
    ) -> None:
        self.object_base = bucket
        self.state_base = state_bucket or bucket
        self.pool = pool
        self.key_chars = key_chars
        self.sentinel_key = sentinel_key

    @property
    def partitioned(self) -> bool:
        return self.pool > 0

    def base_of(self, key: str) -> str:
        return self.object_base if is_data_blob(key) else self.state_base

    def _partition_of(self, key: str) -> str | None:
        """The partition bucket of ``key``, or None when the key lives in its base bucket."""
        if not self.partitioned or key == self.sentinel_key:
            return None
        object_id = object_id_of(key)
        if object_id is None:
            return None
        try:
            return partition_bucket(self.base_of(key), object_id, self.key_chars, self.pool)
        except ValueError:
            return None  # non-hex ids (e.g. the sentinel's name) are not partitioned: base bucket

    def write_bucket(self, key: str) -> str:
        return self._partition_of(key) or self.base_of(key)

    def read_buckets(self, key: str) -> list[str]:
        """Where to look for ``key``, in order; only ``data/`` keys fall back (relocated objects)."""
        partition = self._partition_of(key)
        if partition is None:
            return [self.base_of(key)]
        if key.startswith(DATA_PREFIX):
            return [partition, self.base_of(key)]
        return [partition]

    def base_buckets(self) -> list[str]:
        return list(dict.fromkeys([self.object_base, self.state_base]))

    def list_buckets(self, prefix: str) -> list[str]:
        """Every bucket that may hold keys starting with ``prefix``, partition buckets first."""
        state_only = prefix.startswith(UPLOAD_PREFIX) or (
            prefix.startswith(DATA_PREFIX) and prefix.endswith(META_SUFFIX)
        )
        bases = [self.state_base] if state_only else self.base_buckets()
        if not self.partitioned:
            return list(dict.fromkeys(bases))
        narrowed = self._narrowed_partition(prefix)
        if narrowed is not None:
            index, keep_base = narrowed
            partitions = [f"{base}.{index}" for base in bases]
            return list(dict.fromkeys([*partitions, *(bases if keep_base else [])]))
        partitions = [b for base in bases for b in partition_buckets(base, self.pool)]
        return list(dict.fromkeys([*partitions, *bases]))

    def _narrowed_partition(self, prefix: str) -> tuple[int, bool] | None:
        """(partition index, whether the base bucket may also hold matches) when the prefix fixes it."""
        for top, keep_base in ((DATA_PREFIX, True), (UPLOAD_PREFIX, False)):
            if prefix.startswith(top):
                head = prefix[len(top) : len(top) + self.key_chars]
                if len(head) == self.key_chars and _HEX.match(head):
                    return int(head, 16) % self.pool, keep_base
        return None


# -- helpers ----------------------------------------------------------------------------------------


def md5_from_head(headers: Mapping[str, str], metadata: Mapping[str, str], custom_property: str) -> str | None:
    """The hex MD5 a HEAD reveals (reference §2.4 step 4), or None.

    First a ``Content-MD5`` header (some S3-compatible stores return the one given at PUT time), then
    the user metadata ``x-amz-meta-<custom_property>`` (rclone's ``md5chksum``), which holds base64.
    Hex is accepted too; malformed values count as unknown rather than failing the download.
    """
    lowered_headers = {k.lower(): v for k, v in headers.items()}
    lowered_meta = {k.lower(): v for k, v in metadata.items()}
    candidates = (lowered_headers.get("content-md5"), lowered_meta.get(custom_property.lower()))
    for value in candidates:
        if value:
            try:
                return md5s.normalize(value)
            except ValueError:
                continue
    return None


def safe_endpoint(url: str | None) -> str:
    """The endpoint without user-info or query, fit for messages."""
    if not url:
        return "(AWS default)"
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _millis(value: datetime | None) -> int:
    return int(value.timestamp() * 1000) if value is not None else 0


def _quoted(etag: str) -> str:
    bare = etag.strip().strip('"').lower()  # as check_part_list compares them: S3's own ETags are lower-case
    return f'"{bare}"'


def _error_code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _http_status(exc: Any) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


# What each pre-signed operation is on the wire: method, query parameters and signed headers.
_Fields = Callable[[dict[str, Any]], dict[str, str]]
_SIGNED_REQUESTS: dict[str, tuple[str, _Fields, _Fields]] = {
    "get_object": ("GET", lambda p: {}, lambda p: {"Range": p["Range"]} if "Range" in p else {}),
    "upload_part": (
        "PUT",
        lambda p: {"uploadId": p["UploadId"], "partNumber": str(p["PartNumber"])},
        lambda p: {},
    ),
    "put_object": ("PUT", lambda p: {}, lambda p: {"Content-MD5": p["ContentMD5"]} if "ContentMD5" in p else {}),
}


# -- the store --------------------------------------------------------------------------------------


class S3Store:
    """ObjectStore over S3 in Score's layout; one thread-safe boto3 client for calls, one for presigning."""

    name = "s3"
    min_part_size = 5 * MiB  # S3's minimum for every part but the last
    max_object_size = 5 * TiB  # S3's maximum object size

    def __init__(self, config: S3Config, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        if not 1 <= page_size <= DEFAULT_PAGE_SIZE:
            raise ValueError(f"page_size must be within 1..{DEFAULT_PAGE_SIZE}, got {page_size}")
        self.config = config
        self.page_size = page_size
        self.etag_is_md5 = not config.kms_key_id  # under SSE-KMS a part's ETag is not its MD5
        self.router = BucketRouter(config.bucket, config.state_bucket, config.partition_pool, config.partition_key)
        self._session = self._make_session(config)
        self._client = self._make_client(config.endpoint, MAX_ATTEMPTS)
        self._presigner = (
            self._make_client(config.presign_endpoint, MAX_ATTEMPTS) if config.presign_endpoint else self._client
        )
        # GET, HEAD and PUT of keys without boto3's per-call overhead where that path is the same (SigV4).
        self._documents = S3Documents.for_client(self._client, self._session, MAX_ATTEMPTS)
        self._signer = S3Documents.for_client(self._presigner, self._session, MAX_ATTEMPTS)
        self._probe: Any = None  # a client with few retries, made on first check_ready
        self._resolved: dict[str, tuple[str, float]] = {}
        self._resolved_lock = threading.Lock()

    # -- construction ----------------------------------------------------------------------------
    @staticmethod
    def _make_session(config: S3Config) -> Any:
        import boto3.session

        has_key = bool(config.access_key)
        has_secret = config.secret_key is not None and bool(config.secret_key.get_secret_value())
        if has_key != has_secret:
            raise StoreMisconfigured(
                f"only one of {ENV_KEYS} is set: set both for static credentials, or neither to use the AWS "
                "credential chain (environment, profile, instance role)"
            )
        if has_key and config.secret_key is not None:
            return boto3.session.Session(
                aws_access_key_id=config.access_key,
                aws_secret_access_key=config.secret_key.get_secret_value(),
                region_name=config.region,
            )
        return boto3.session.Session(region_name=config.region)

    def _make_client(self, endpoint: str | None, attempts: int, connect_timeout: float = CONNECT_TIMEOUT) -> Any:
        from botocore.config import Config

        # SSE-KMS requires SigV4 (as in the original); otherwise SigV2 only when asked for (old Ceph).
        signature = "s3" if self.config.sigv2 and not self.config.kms_key_id else "s3v4"
        botocore_config = Config(
            region_name=self.config.region,
            signature_version=signature,
            s3={"addressing_style": "path"},
            retries={"mode": "standard", "max_attempts": attempts},
            connect_timeout=connect_timeout,
            read_timeout=READ_TIMEOUT,
            max_pool_connections=MAX_POOL_CONNECTIONS,
            tcp_keepalive=True,
            # Newer botocore adds CRC32 checksums to every upload by default; many S3-compatible stores
            # refuse them, and parts carry Content-MD5 instead.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        try:
            return self._session.client("s3", endpoint_url=endpoint or None, config=botocore_config)
        except ValueError as exc:
            raise StoreMisconfigured(
                f"invalid S3 endpoint {safe_endpoint(endpoint)!r}: give a URL such as https://s3.amazonaws.com "
                f"in {ENV_ENDPOINT} (or s3.presign_endpoint)"
            ) from exc

    # -- error mapping ---------------------------------------------------------------------------
    def _call(self, what: str, call: Callable[[], T]) -> T:
        """Run one S3 call, turning botocore failures into the protocol's errors (no secrets in messages)."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return call()
        except ClientError as exc:
            code, status = _error_code(exc), _http_status(exc)
            if status >= 500 or status == 429 or code in TRANSIENT_CODES:
                raise StoreUnavailable(f"S3 {what}: the store answered {code or status}, try again") from None
            raise StoreError(f"S3 {what} failed: {code or status}") from exc
        except NoCredentialsError:
            raise StoreMisconfigured(
                f"S3 {what}: no AWS credentials found; set {ENV_KEYS} or configure the AWS credential chain"
            ) from None
        except BotoCoreError as exc:
            # Connection refused/reset, timeouts, DNS: botocore already retried.
            raise StoreUnavailable(
                f"S3 {what}: cannot reach {safe_endpoint(self.config.endpoint)} ({exc.__class__.__name__})"
            ) from None

    @staticmethod
    def _is_missing(exc: StoreError) -> bool:
        cause = exc.__cause__
        return cause is not None and hasattr(cause, "response") and _error_code(cause) in NOT_FOUND_CODES

    @staticmethod
    def _code_of(exc: StoreError) -> str:
        cause = exc.__cause__
        return _error_code(cause) if cause is not None and hasattr(cause, "response") else ""

    # -- start-up --------------------------------------------------------------------------------
    def check_ready(self, sentinel_key: str) -> None:
        """Endpoint reachable, credentials accepted, buckets present, sentinel present: or say what to fix."""
        self.router.sentinel_key = sentinel_key
        if self._probe is None:
            self._probe = self._make_client(self.config.endpoint, PROBE_ATTEMPTS, connect_timeout=5.0)
        self._probe_base_bucket(self.router.object_base, ENV_BUCKET, required=True)
        if self.router.state_base != self.router.object_base:
            # When partitioned, a missing base state bucket only means no relocated objects.
            self._probe_base_bucket(self.router.state_base, ENV_STATE_BUCKET, required=not self.router.partitioned)
        if self.router.partitioned:
            self._probe_partition_buckets()
        self._probe_sentinel(sentinel_key)

    def _probe_base_bucket(self, bucket: str, setting: str, required: bool) -> None:
        """A one-key listing: unlike HEAD it carries an error code, so bad credentials are told apart."""
        from botocore.exceptions import ClientError

        try:
            self._probe_call(lambda: self._probe.list_objects_v2(Bucket=bucket, Prefix=DATA_PREFIX, MaxKeys=1))
        except ClientError as exc:
            code = _error_code(exc)
            if code in NO_BUCKET_CODES:
                if required:
                    raise StoreMisconfigured(
                        f"bucket {bucket!r} does not exist at {safe_endpoint(self.config.endpoint)}: create it "
                        f"or fix {setting}"
                    ) from None
                return
            raise self._refusal(code or str(_http_status(exc)), f"listing bucket {bucket!r}") from None

    def _probe_partition_buckets(self) -> None:
        from botocore.exceptions import ClientError

        buckets = [b for base in self.router.base_buckets() for b in partition_buckets(base, self.router.pool)]

        def probe(bucket: str) -> str | None:
            try:
                self._probe_call(lambda: self._probe.head_bucket(Bucket=bucket))
            except ClientError as exc:
                code = _error_code(exc)
                if code in NOT_FOUND_CODES or code in NO_BUCKET_CODES:
                    return bucket
                raise self._refusal(code or str(_http_status(exc)), f"checking bucket {bucket!r}") from None
            return None

        with ThreadPoolExecutor(max_workers=min(16, len(buckets))) as pool:
            missing = [b for b in pool.map(probe, buckets) if b is not None]
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise StoreMisconfigured(
                f"{len(missing)} partition bucket(s) are missing: {shown}. With {ENV_POOL} = {self.router.pool}, "
                f"buckets <base>.0 .. <base>.{self.router.pool - 1} must exist for {ENV_BUCKET}"
                + (f" and {ENV_STATE_BUCKET}" if self.router.state_base != self.router.object_base else "")
                + ": create them or fix the pool size"
            )

    def _probe_sentinel(self, sentinel_key: str) -> None:
        from botocore.exceptions import ClientError

        bucket = self.router.object_base
        try:
            self._probe_call(lambda: self._probe.head_object(Bucket=bucket, Key=sentinel_key))
        except ClientError as exc:
            code = _error_code(exc)
            if code in NOT_FOUND_CODES:
                raise StoreMisconfigured(
                    f"the sentinel object {sentinel_key!r} is missing from bucket {bucket!r}: clients probe it "
                    f"(GET /download/ping) to prove they reach the store. Create it, e.g. "
                    f"`echo heliograph | aws s3 cp - s3://{bucket}/{sentinel_key}`, or set the sentinel name "
                    "(SCORE_SENTINEL) to an existing object under data/"
                ) from None
            raise self._refusal(code or str(_http_status(exc)), f"reading {bucket}/{sentinel_key}") from None

    def _probe_call(self, call: Callable[[], T]) -> T:
        """Probe calls: transport failures become StoreMisconfigured naming the endpoint setting."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return call()
        except NoCredentialsError:
            raise StoreMisconfigured(
                f"no AWS credentials found: set {ENV_KEYS}, or configure the AWS credential chain"
            ) from None
        except ClientError:
            raise
        except BotoCoreError as exc:
            raise StoreMisconfigured(
                f"cannot reach the S3 endpoint {safe_endpoint(self.config.endpoint)} ({exc.__class__.__name__}): "
                f"check {ENV_ENDPOINT} and that the store is running and reachable from this server"
            ) from None

    def _refusal(self, code: str, doing: str) -> StoreMisconfigured:
        if code in CREDENTIAL_CODES:
            return StoreMisconfigured(
                f"the S3 store rejected the credentials ({code}) when {doing}: check {ENV_KEYS}"
                + (" and the signature setting s3.sigv2 (SCORE_S3__SIGV2)" if code == "SignatureDoesNotMatch" else "")
            )
        if code == "AccessDenied":
            return StoreMisconfigured(
                f"the S3 store denied access ({code}) when {doing}: grant these credentials read, write and list "
                f"on the bucket(s), or fix {ENV_KEYS}"
            )
        return StoreMisconfigured(
            f"the S3 store answered {code} when {doing} at {safe_endpoint(self.config.endpoint)}: check {ENV_ENDPOINT}"
        )

    # -- multipart upload ------------------------------------------------------------------------
    def _sse(self) -> dict[str, str]:
        if not self.config.kms_key_id:
            return {}
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.config.kms_key_id}

    def start_upload(self, key: str, size: int) -> str:
        if size < 0:
            raise ValueError(f"upload size must be >= 0, got {size}")
        bucket = self.router.write_bucket(key)
        response = self._call(
            f"CreateMultipartUpload {bucket}/{key}",
            lambda: self._client.create_multipart_upload(Bucket=bucket, Key=key, **self._sse()),
        )
        return str(response["UploadId"])

    def sign_upload_part(
        self, key: str, upload_id: str, part_number: int, offset: int, size: int, expires_in: int
    ) -> str:
        """A pre-signed UploadPart PUT; ``Content-MD5`` and ``Content-Length`` are sent unsigned (SigV4)."""
        if part_number < 1 or part_number > 10_000 or offset < 0 or size < 1:
            raise ValueError(f"invalid part: number {part_number} (1..10000), offset {offset}, size {size} (>= 1)")
        bucket = self.router.write_bucket(key)
        params = {"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": part_number}
        return self._presign("upload_part", params, expires_in)

    def sign_whole_put(self, key: str, md5: str, expires_in: int) -> str | None:
        """A pre-signed PutObject whose signature covers ``Content-MD5``: S3 stores the body only if it
        hashes to ``md5`` (BadDigest otherwise), atomically, and its ETag is then that MD5 -- but not
        under SSE-KMS, where the ETag is no MD5, so none is offered there."""
        if not self.etag_is_md5:
            return None
        digest = base64.b64encode(bytes.fromhex(md5)).decode("ascii")
        params = {"Bucket": self.router.write_bucket(key), "Key": key, "ContentMD5": digest}
        return self._presign("put_object", params, expires_in)

    def list_uploaded_parts(self, key: str, upload_id: str) -> list[UploadedPart]:
        bucket = self.router.write_bucket(key)
        parts: list[UploadedPart] = []
        marker = 0
        while True:
            page = self._upload_call(
                f"ListParts {bucket}/{key}",
                lambda m=marker: self._client.list_parts(
                    Bucket=bucket, Key=key, UploadId=upload_id, MaxParts=self.page_size, PartNumberMarker=m
                ),
                upload_id,
            )
            for part in page.get("Parts", []):
                parts.append(UploadedPart(int(part["PartNumber"]), str(part["ETag"]).strip('"'), int(part["Size"])))
            next_marker = int(page.get("NextPartNumberMarker") or 0)
            if not page.get("IsTruncated") or next_marker <= marker:
                break
            marker = next_marker
        return sorted(parts, key=lambda p: p.part_number)

    def complete_upload(self, key: str, upload_id: str, parts: list[UploadedPart]) -> None:
        if not parts:
            raise ValueError("no parts given: S3 cannot complete a multipart upload without parts")
        check_part_list(parts, self._held_versions(key, upload_id, parts), None)
        bucket = self.router.write_bucket(key)
        body = {"Parts": [{"PartNumber": p.part_number, "ETag": _quoted(p.etag)} for p in parts]}
        try:
            self._upload_call(
                f"CompleteMultipartUpload {bucket}/{key}",
                lambda: self._client.complete_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload=body
                ),
                upload_id,
            )
        except StoreError as exc:
            code = self._code_of(exc)
            if code in BAD_PARTS_CODES and not isinstance(exc, UploadNotFound):
                raise ValueError(_bad_parts_message(code)) from None
            raise
        self._forget(key)

    def _held_versions(self, key: str, upload_id: str, parts: list[UploadedPart]) -> dict[int, UploadedPart]:
        """Each part as listed, for ``check_part_list``: the listed version with the ETag given where there is
        one (SeaweedFS lists a re-sent part once per PUT, and completes with the version named). S3 does not
        know the upload's total, so a part left out is the caller's to notice (the upload service checks its
        own specification)."""
        wanted = {p.part_number: _quoted(p.etag) for p in parts}
        held: dict[int, UploadedPart] = {}
        for part in self.list_uploaded_parts(key, upload_id):
            if part.part_number not in held or _quoted(part.etag) == wanted.get(part.part_number):
                held[part.part_number] = part
        return held

    def abort_upload(self, key: str, upload_id: str) -> None:
        bucket = self.router.write_bucket(key)
        try:
            self._upload_call(
                f"AbortMultipartUpload {bucket}/{key}",
                lambda: self._client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id),
                upload_id,
            )
        except UploadNotFound:
            return

    def list_uploads(self) -> Iterator[StoreUpload]:
        """ListMultipartUploads of ``data/`` in every bucket that may hold data, page by page (the
        original listed one page of 1000, so older uploads past it were never swept)."""

        def following(page: dict[str, Any]) -> dict[str, str] | None:
            key, upload = page.get("NextKeyMarker"), page.get("NextUploadIdMarker")
            return {"KeyMarker": key or "", "UploadIdMarker": upload or ""} if key or upload else None

        for bucket in self.router.list_buckets(DATA_PREFIX):
            tolerant = self.router.partitioned and bucket in self.router.base_buckets()
            first = {"Bucket": bucket, "Prefix": DATA_PREFIX, "MaxUploads": self.page_size}
            pages = self._pages(f"ListMultipartUploads {bucket}", self._client.list_multipart_uploads, first, following)
            for page in pages if not tolerant else self._tolerating_no_bucket(pages):
                for item in page.get("Uploads", []):
                    yield StoreUpload(str(item["Key"]), str(item["UploadId"]), _millis(item.get("Initiated")))

    def _pages(
        self,
        what: str,
        call: Callable[..., dict[str, Any]],
        first: dict[str, Any],
        following: Callable[[dict[str, Any]], dict[str, Any] | None],
    ) -> Iterator[dict[str, Any]]:
        """Every page of a paginated S3 listing: ``following(page)`` gives the next request's markers."""
        arguments = first
        while True:
            page = self._call(what, lambda a=arguments: call(**a))
            yield page
            more = following(page) if page.get("IsTruncated") else None
            if not more:
                return
            arguments = {**first, **more}

    def _tolerating_no_bucket(self, pages: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """``pages``, ending quietly if the bucket does not exist (a partitioned store's base bucket)."""
        try:
            yield from pages
        except StoreUnavailable:
            raise
        except StoreError as exc:
            if self._code_of(exc) not in NO_BUCKET_CODES:
                raise

    def _upload_call(self, what: str, call: Callable[[], T], upload_id: str) -> T:
        try:
            return self._call(what, call)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            if self._code_of(exc) in ("NoSuchUpload", "404"):
                raise UploadNotFound(
                    f"upload {upload_id} does not exist in the store (never started, already completed or "
                    "aborted); ask the server for the upload's status or start a new upload"
                ) from exc
            raise

    def put_empty(self, key: str) -> None:
        bucket = self.router.write_bucket(key)
        self._call(
            f"PutObject {bucket}/{key}",
            lambda: self._client.put_object(Bucket=bucket, Key=key, Body=b"", ContentLength=0, **self._sse()),
        )
        self._forget(key)

    # -- reads -----------------------------------------------------------------------------------
    def sign_read(self, key: str, offset: int | None, length: int | None, expires_in: int) -> str:
        """A pre-signed GET. With a range, the Range header is signed (SigV4): the client sends exactly it."""
        byte_range = range_header(offset, length)
        params: dict[str, Any] = {"Bucket": self._resolve_read_bucket(key), "Key": key}
        if byte_range is not None:
            params["Range"] = byte_range
        return self._presign("get_object", params, expires_in)

    def _presign(self, operation: str, params: dict[str, Any], expires_in: int) -> str:
        if expires_in <= 0:
            raise ValueError(f"expires_in must be positive, got {expires_in}")
        expiry = min(int(expires_in), MAX_PRESIGN_SECONDS)
        signer = self._signer
        if signer is not None and operation in _SIGNED_REQUESTS:
            method, query_of, headers_of = _SIGNED_REQUESTS[operation]
            bucket, key = params["Bucket"], params["Key"]
            query, headers = query_of(params), headers_of(params)
            return self._call(
                f"presigning {operation} {bucket}/{key}",
                lambda: signer.presign(method, bucket, key, expiry, query, headers),
            )
        return self._call(
            f"presigning {operation} {params['Bucket']}/{params['Key']}",
            lambda: str(self._presigner.generate_presigned_url(operation, Params=params, ExpiresIn=expiry)),
        )

    def _resolve_read_bucket(self, key: str) -> str:
        """The bucket holding ``key`` for a signed read: partition bucket, or base if relocated there.

        Only partitioned stores need the HEAD; its answer is reused for a few seconds because one
        download specification signs a URL per part of the same object.
        """
        buckets = self.router.read_buckets(key)
        if len(buckets) == 1:
            return buckets[0]
        now = time.monotonic()
        with self._resolved_lock:
            cached = self._resolved.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        found = next((b for b in buckets if self._head_in(b, key, tolerate_no_bucket=True) is not None), buckets[0])
        with self._resolved_lock:
            if len(self._resolved) >= RESOLVE_CACHE_MAX:
                self._resolved.clear()
            self._resolved[key] = (found, now + RESOLVE_TTL)
        return found

    def _forget(self, key: str) -> None:
        with self._resolved_lock:
            self._resolved.pop(key, None)

    def head(self, key: str) -> ObjectHead | None:
        return self._first_found(key, self._head_in)

    def _first_found(self, key: str, read: Callable[[str, str, bool], T | None]) -> T | None:
        """Read ``key`` from its partition bucket, then (relocated objects) the base bucket, whose absence
        is tolerated."""
        for index, bucket in enumerate(self.router.read_buckets(key)):
            found = read(bucket, key, index > 0)
            if found is not None:
                return found
        return None

    def _head_in(self, bucket: str, key: str, tolerate_no_bucket: bool) -> ObjectHead | None:
        """HEAD ``key`` in one bucket. HEAD has no error body: a missing bucket also reads as 404."""
        try:
            documents = self._documents
            response = self._call(
                f"HeadObject {bucket}/{key}",
                lambda: documents.head(bucket, key) if documents else self._client.head_object(Bucket=bucket, Key=key),
            )
        except StoreUnavailable:
            raise
        except StoreError as exc:
            if self._is_missing(exc) or (tolerate_no_bucket and self._code_of(exc) in NO_BUCKET_CODES):
                return None
            raise
        if response is None:  # the direct path's 404
            return None
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return ObjectHead(
            key=key,
            size=int(response.get("ContentLength", 0)),
            last_modified_ms=_millis(response.get("LastModified")),
            md5=md5_from_head(headers, response.get("Metadata", {}), self.config.custom_md5_property),
            etag=str(response.get("ETag", "")).strip('"') or None,
        )

    # -- documents -------------------------------------------------------------------------------
    def read_document(self, key: str, start: int = 0, end: int | None = None) -> bytes | None:
        if start == 0 and end is None:
            return self._first_found(key, self._get_in)
        if end is not None and end <= start:  # S3 has no empty range: bytes=10-9 is refused
            return b"" if self.head(key) is not None else None
        byte_range = f"bytes={start}-{'' if end is None else end - 1}"
        return self._first_found(key, lambda bucket, k, tolerate: self._get_in(bucket, k, tolerate, byte_range))

    def _get_in(self, bucket: str, key: str, tolerate_no_bucket: bool, byte_range: str | None = None) -> bytes | None:
        def get() -> bytes:
            if self._documents is not None:
                return self._documents.get(bucket, key, byte_range)
            extra = {"Range": byte_range} if byte_range else {}
            response = self._client.get_object(Bucket=bucket, Key=key, **extra)
            with response["Body"] as stream:
                return bytes(stream.read())

        try:
            return self._call(f"GetObject {bucket}/{key}", get)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            if self._is_missing(exc) or (tolerate_no_bucket and self._code_of(exc) in NO_BUCKET_CODES):
                return None
            raise

    def write_document(self, key: str, body: bytes) -> None:
        """One PutObject: S3 PUTs are atomic (readers see the old or the new body), Content-MD5 checked."""
        bucket = self.router.write_bucket(key)
        digest = base64.b64encode(hashlib.md5(body).digest()).decode("ascii")  # noqa: S324 - integrity only
        documents = self._documents
        self._call(
            f"PutObject {bucket}/{key}",
            lambda: (
                documents.put(bucket, key, body, digest)
                if documents
                else self._client.put_object(Bucket=bucket, Key=key, Body=body, ContentMD5=digest)
            ),
        )
        self._forget(key)

    def delete(self, key: str) -> None:
        """Delete everywhere a read would find ``key`` (a relocated copy too), so it is really gone."""
        for index, bucket in enumerate(self.router.read_buckets(key)):
            try:
                self._call(
                    f"DeleteObject {bucket}/{key}", lambda b=bucket: self._client.delete_object(Bucket=b, Key=key)
                )
            except StoreUnavailable:
                raise
            except StoreError as exc:
                if self._is_missing(exc) or (index > 0 and self._code_of(exc) in NO_BUCKET_CODES):
                    continue
                raise
        self._forget(key)

    # -- listing ---------------------------------------------------------------------------------
    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectHead]:
        """Every key under ``prefix`` across the buckets it may live in, in key order, duplicates once.

        Each bucket's listing is sorted before merging: S3 lists in UTF-8 byte order but some
        S3-compatible stores do not (SeaweedFS walks its directory tree, listing ``a/b`` before ``a-b``).
        """
        buckets = self.router.list_buckets(prefix)
        tolerant = self.router.partitioned
        streams = [
            self._sorted_listing(b, prefix, start_after, tolerant and b in self.router.base_buckets()) for b in buckets
        ]
        return _unique_by_key(heapq.merge(*streams, key=lambda head: head.key))

    def _sorted_listing(self, bucket: str, prefix: str, start_after: str, tolerate_no_bucket: bool) -> list[ObjectHead]:
        heads = self._list_bucket(bucket, prefix, start_after, tolerate_no_bucket)
        return sorted(keys_after(heads, start_after), key=lambda head: head.key)

    def _list_bucket(
        self, bucket: str, prefix: str, start_after: str, tolerate_no_bucket: bool
    ) -> Iterable[ObjectHead]:
        def following(page: dict[str, Any]) -> dict[str, str] | None:
            token = page.get("NextContinuationToken")
            return {"ContinuationToken": token} if token else None

        first: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": self.page_size}
        if start_after:
            first["StartAfter"] = start_after
        pages = self._pages(f"ListObjectsV2 {bucket}/{prefix}", self._client.list_objects_v2, first, following)
        for page in self._tolerating_no_bucket(pages) if tolerate_no_bucket else pages:
            for item in page.get("Contents", []):
                yield ObjectHead(
                    key=str(item["Key"]),
                    size=int(item.get("Size", 0)),
                    last_modified_ms=_millis(item.get("LastModified")),
                )


def _unique_by_key(heads: Iterable[ObjectHead]) -> Iterator[ObjectHead]:
    """Drop later duplicates of a key (the partition copy comes first and wins, as reads prefer it)."""
    previous: str | None = None
    for head in heads:
        if head.key != previous:
            yield head
            previous = head.key


def _bad_parts_message(code: str) -> str:
    return {
        "InvalidPart": "the store does not hold one of the parts with the given ETag (it was never uploaded, "
        "or uploaded again since)",
        "InvalidPartOrder": "the parts were not given in ascending part-number order",
        "EntityTooSmall": "a part other than the last is smaller than S3's 5 MiB minimum",
        "MalformedXML": "the part list was empty or malformed",
    }.get(code, f"the store refused the part list ({code})")
