"""GET, HEAD and PUT of S3 keys, and pre-signed URLs, on the hot path without botocore's per-call machinery.

A job of small files costs the server a few store calls per file (``.meta`` reads and writes, a HEAD),
and a boto3 call spends ~1.8 ms of CPU on its event hooks, endpoint rules, parameter validation and
response parsing around a request that needs ~0.5 ms (measured on SeaweedFS: bench notes, issue 12).
These three calls are simple enough to make directly: the request is signed by botocore's own SigV4
signer with the session's (refreshable) credentials and sent on keep-alive connections of the standard
library's (``S3Connections``: the client's endpoint, proxy, TLS verification and timeouts; 0.26 ms of CPU
for a HEAD, where the client's urllib3 pool took 0.42). A job of small files makes three such requests
per file. Failures come back as botocore ``ClientError``s shaped as boto3 would raise them, so the store
maps them as for any call; a HEAD of a missing key is None, without one (it is the usual answer to the
check that an upload does not overwrite an object). URLs are pre-signed by botocore's query signer the
way ``generate_presigned_url`` does (0.35 ms each there: a 1,600-part specification spent half a second
on it). Everything else (listings, multipart calls) stays on boto3.
"""

from __future__ import annotations

import random
import time
import xml.etree.ElementTree as ET
from datetime import datetime
from email.utils import parsedate_to_datetime
from http.client import HTTPException
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

from score.server.storage.s3_connections import S3Connections

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF_BASE = 0.1  # seconds, doubled per attempt, with full jitter (as botocore's "standard" mode)
BACKOFF_MAX = 20.0


class _Answer(NamedTuple):
    status_code: int
    headers: Any  # case-insensitive (http.client's HTTPMessage)
    content: bytes


class S3Documents:
    """Signed single requests for one boto3 client's endpoint (path-style addressing, SigV4)."""

    def __init__(self, client: Any, session: Any, attempts: int, connections: S3Connections) -> None:
        self._endpoint = str(client.meta.endpoint_url).rstrip("/")
        self._region = client.meta.region_name or "us-east-1"
        self._session = session
        self._attempts = attempts
        self._connections = connections

    @classmethod
    def for_client(cls, client: Any, session: Any, attempts: int) -> S3Documents | None:
        """None where the direct path cannot be the same as boto3's: no SigV4, no credentials, or connection
        settings ``S3Connections`` does not offer (the store then makes these calls through boto3)."""
        if client.meta.config.signature_version != "s3v4" or session.get_credentials() is None:
            return None
        connections = S3Connections.for_client(client)
        return None if connections is None else cls(client, session, attempts, connections)

    def get(self, bucket: str, key: str, byte_range: str | None = None) -> bytes:
        headers = {"Range": byte_range} if byte_range else {}
        response = self._send("GET", bucket, key, headers, b"")
        assert response is not None  # only a HEAD's 404 is None
        return response.content

    def head(self, bucket: str, key: str) -> dict[str, Any] | None:
        """What boto3's ``head_object`` answers, in the parts the store reads: size, ETag, time, headers; None
        for a 404 (no such key, or no such bucket: a HEAD's answer has no body to tell them apart)."""
        response = self._send("HEAD", bucket, key, {}, b"")
        if response is None:
            return None
        headers = {k.lower(): v for k, v in response.headers.items()}
        metadata = {k[len("x-amz-meta-") :]: v for k, v in headers.items() if k.startswith("x-amz-meta-")}
        return {
            "ContentLength": int(headers.get("content-length", 0)),
            "ETag": headers.get("etag", ""),
            "LastModified": _http_date(headers.get("last-modified")),
            "Metadata": metadata,
            "ResponseMetadata": {"HTTPHeaders": headers, "HTTPStatusCode": response.status_code},
        }

    def put(self, bucket: str, key: str, body: bytes, content_md5: str) -> None:
        headers = {"Content-MD5": content_md5, "Content-Length": str(len(body))}
        self._send("PUT", bucket, key, headers, body)

    def presign(
        self,
        method: str,
        bucket: str,
        key: str,
        expires_in: int,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> str:
        """A pre-signed URL as boto3's ``generate_presigned_url`` makes it (SigV4 query auth, unsigned
        payload): ``headers`` are signed, so the client must send exactly them (a Range, a Content-MD5)."""
        from botocore.auth import S3SigV4QueryAuth
        from botocore.awsrequest import AWSRequest

        url = self._endpoint + self._path(bucket, key) + (f"?{urlencode(query)}" if query else "")
        request = AWSRequest(method=method, url=url, headers=dict(headers or {}))
        credentials = self._session.get_credentials().get_frozen_credentials()
        S3SigV4QueryAuth(credentials, "s3", self._region, expires=expires_in).add_auth(request)
        return str(request.url)

    @staticmethod
    def _path(bucket: str, key: str) -> str:
        return f"/{quote(bucket)}/{quote(key, safe='/~')}"

    def _send(self, method: str, bucket: str, key: str, headers: dict[str, str], body: bytes) -> _Answer | None:
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.exceptions import HTTPClientError

        path = self._path(bucket, key)
        url = self._endpoint + path
        headers = {"Host": self._connections.host_header, **headers}  # signed as sent
        for attempt in range(1, self._attempts + 1):
            request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
            credentials = self._session.get_credentials().get_frozen_credentials()
            S3SigV4Auth(credentials, "s3", self._region).add_auth(request)
            try:
                response = _Answer(*self._connections.exchange(method, path, dict(request.headers.items()), body))
            except (OSError, HTTPException) as exc:  # as the session raises it: the store maps it as any boto3 call
                if attempt == self._attempts:
                    raise HTTPClientError(error=exc) from exc
                _back_off(attempt)
                continue
            if response.status_code < 300:
                return response
            if response.status_code == 404 and method == "HEAD":
                return None
            if response.status_code in RETRY_STATUSES and attempt < self._attempts:
                _back_off(attempt)
                continue
            raise _client_error(method, response)
        raise AssertionError("unreachable")  # pragma: no cover


def _http_date(value: str | None) -> datetime | None:
    try:
        return parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        return None


def _back_off(attempt: int) -> None:
    time.sleep(random.uniform(0, min(BACKOFF_MAX, BACKOFF_BASE * 2**attempt)))


def _client_error(method: str, response: Any) -> Exception:
    """The ``ClientError`` boto3 raises for this answer: the XML error's code, or (HEAD: no body) the status."""
    from botocore.exceptions import ClientError

    code, message = str(response.status_code), ""
    if method != "HEAD" and response.content:
        try:
            root = ET.fromstring(response.content)  # noqa: S314 - the store's own error document
            code = root.findtext("Code") or code
            message = root.findtext("Message") or ""
        except ET.ParseError:
            pass
    error = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": response.status_code},
    }
    operation = {"GET": "GetObject", "HEAD": "HeadObject", "PUT": "PutObject"}[method]
    return ClientError(error, operation)  # type: ignore[arg-type]
