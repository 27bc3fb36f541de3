"""GET, HEAD and PUT of S3 keys, and pre-signed URLs, on the hot path without botocore's per-call machinery.

A job of small files costs the server a few store calls per file (``.meta`` reads and writes, a HEAD),
and a boto3 call spends ~1.8 ms of CPU on its event hooks, endpoint rules, parameter validation and
response parsing around a request that needs ~0.5 ms (measured on SeaweedFS: bench notes, issue 12).
These three calls are simple enough to make directly: the request is signed by botocore's own SigV4
signer with the session's (refreshable) credentials and sent on the boto3 client's own connection pool,
found once through its HTTP session, so the endpoint, TLS verification, proxies and connection pool are
exactly the client's. (Sent through the session's ``send``, which works out the proxy, the pool and the
TLS settings again for every request and wraps the answer, a HEAD cost 0.46 ms of CPU; through the pool,
0.39. A job of small files makes three such requests per file.) Failures come back
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
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF_BASE = 0.1  # seconds, doubled per attempt, with full jitter (as botocore's "standard" mode)
BACKOFF_MAX = 20.0


# What the direct path uses of botocore's HTTP session (``URLLib3Session``) to find the client's pool.
_SESSION_METHODS = ("_get_connection_manager", "_setup_ssl_cert", "_get_request_target", "_verify")


class _Answer(NamedTuple):
    status_code: int
    headers: Any  # case-insensitive (urllib3's HTTPHeaderDict)
    content: bytes


class S3Documents:
    """Signed single requests for one boto3 client's endpoint (path-style addressing, SigV4)."""

    def __init__(self, client: Any, session: Any, attempts: int) -> None:
        self._endpoint = str(client.meta.endpoint_url).rstrip("/")
        self._region = client.meta.region_name or "us-east-1"
        self._session = session
        self._attempts = attempts
        # The client's own pool, through its proxy if one applies, with its TLS settings: as its session's
        # ``send`` finds them for every request, found once (every request goes to this one endpoint).
        http = client._endpoint.http_session
        url = self._endpoint + "/"
        self._proxy_url = http._proxy_config.proxy_url_for(url)
        self._pool = http._get_connection_manager(url, self._proxy_url).connection_from_url(url)
        http._setup_ssl_cert(self._pool, url, http._verify)
        self._target = http._get_request_target

    @classmethod
    def for_client(cls, client: Any, session: Any, attempts: int) -> S3Documents | None:
        """None where the direct path cannot be the same as boto3's: no SigV4, no credentials, or a botocore
        whose HTTP session lacks what it uses (the store then makes these calls through boto3)."""
        if client.meta.config.signature_version != "s3v4" or session.get_credentials() is None:
            return None
        http = getattr(getattr(client, "_endpoint", None), "http_session", None)
        proxies = getattr(http, "_proxy_config", None)
        if not hasattr(proxies, "proxy_url_for") or not all(hasattr(http, name) for name in _SESSION_METHODS):
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

    def _send(self, method: str, bucket: str, key: str, headers: dict[str, str], body: bytes) -> _Answer:
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.exceptions import HTTPClientError

        url = self._url(bucket, key)
        for attempt in range(1, self._attempts + 1):
            request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
            credentials = self._session.get_credentials().get_frozen_credentials()
            S3SigV4Auth(credentials, "s3", self._region).add_auth(request)
            try:
                response = self._exchange(method, url, dict(request.headers.items()), body)
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

    def _exchange(self, method: str, url: str, headers: dict[str, str], body: bytes) -> _Answer:
        """One request on the pool, read whole; a failure to get an answer is botocore's ``HTTPClientError``,
        as the session raises it (so the store maps it as for any boto3 call)."""
        import urllib3
        from botocore.exceptions import HTTPClientError

        try:
            response = self._pool.urlopen(
                method,
                self._target(url, self._proxy_url),
                body=body or None,
                headers=headers,
                retries=False,
                assert_same_host=False,
                preload_content=True,
                decode_content=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise HTTPClientError(error=exc) from exc
        return _Answer(response.status, response.headers, response.data)


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
