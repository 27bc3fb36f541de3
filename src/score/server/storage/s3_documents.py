"""GET, HEAD and PUT of S3 keys, and pre-signed URLs, on the hot path without botocore's per-call machinery.

A job of small files costs the server a few store calls per file (``.meta`` reads and writes, a HEAD),
and a boto3 call spends ~1.8 ms of CPU on its event hooks, endpoint rules, parameter validation and
response parsing around a request that needs ~0.5 ms (measured on SeaweedFS: bench notes, issue 12).
These three calls are simple enough to make directly: the request is signed by botocore's own SigV4
signer with the session's (refreshable) credentials and sent on the boto3 client's own HTTP session, so
the endpoint, TLS verification, proxies and connection pool are exactly the client's. Failures come back
as botocore ``ClientError``s shaped as boto3 would raise them, so the store maps them as for any call.
URLs are pre-signed by botocore's query signer the way ``generate_presigned_url`` does (0.35 ms each
there: a 1,600-part specification spent half a second on it). Everything else (listings, multipart
calls) stays on boto3.
"""

from __future__ import annotations

import random
import time
import xml.etree.ElementTree as ET
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF_BASE = 0.1  # seconds, doubled per attempt, with full jitter (as botocore's "standard" mode)
BACKOFF_MAX = 20.0


class S3Documents:
    """Signed single requests for one boto3 client's endpoint (path-style addressing, SigV4)."""

    def __init__(self, client: Any, session: Any, attempts: int) -> None:
        self._endpoint = str(client.meta.endpoint_url).rstrip("/")
        self._region = client.meta.region_name or "us-east-1"
        self._http = client._endpoint.http_session  # the client's own pool, proxies and TLS settings
        self._session = session
        self._attempts = attempts

    @classmethod
    def for_client(cls, client: Any, session: Any, attempts: int) -> S3Documents | None:
        """None where the direct path cannot be the same as boto3's: no SigV4, no credentials, or a botocore
        without the HTTP session attribute it shares."""
        if client.meta.config.signature_version != "s3v4" or session.get_credentials() is None:
            return None
        if getattr(getattr(client, "_endpoint", None), "http_session", None) is None:
            return None
        return cls(client, session, attempts)

    def get(self, bucket: str, key: str, byte_range: str | None = None) -> bytes:
        headers = {"Range": byte_range} if byte_range else {}
        return self._send("GET", bucket, key, headers, b"").content

    def head(self, bucket: str, key: str) -> dict[str, Any]:
        """What boto3's ``head_object`` answers, in the parts the store reads: size, ETag, time, headers."""
        response = self._send("HEAD", bucket, key, {}, b"")
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

        url = self._url(bucket, key) + (f"?{urlencode(query)}" if query else "")
        request = AWSRequest(method=method, url=url, headers=dict(headers or {}))
        credentials = self._session.get_credentials().get_frozen_credentials()
        S3SigV4QueryAuth(credentials, "s3", self._region, expires=expires_in).add_auth(request)
        return str(request.url)

    def _url(self, bucket: str, key: str) -> str:
        return f"{self._endpoint}/{quote(bucket)}/{quote(key, safe='/~')}"

    def _send(self, method: str, bucket: str, key: str, headers: dict[str, str], body: bytes) -> Any:
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.exceptions import HTTPClientError

        url = self._url(bucket, key)
        for attempt in range(1, self._attempts + 1):
            request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
            credentials = self._session.get_credentials().get_frozen_credentials()
            S3SigV4Auth(credentials, "s3", self._region).add_auth(request)
            try:
                response = self._http.send(request.prepare())
            except HTTPClientError:
                if attempt == self._attempts:
                    raise
                _back_off(attempt)
                continue
            if response.status_code < 300:
                return response
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
