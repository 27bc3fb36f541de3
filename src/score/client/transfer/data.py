"""The data plane: PUT and GET of byte ranges on pre-signed URLs, hashing while streaming.

No Authorization header ever goes to a pre-signed URL (the signature is the credential), and no URL
is ever logged (its query string is a credential too).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from score.client.errors import IntegrityError, ServerError


class UrlExpired(ServerError):
    """The store refused the signature (403): ask the server for fresh URLs and try again."""


def _store_error(response: httpx.Response, what: str) -> ServerError:
    try:
        detail = response.json().get("message", "")
    except (ValueError, AttributeError):
        detail = response.text[:200].strip()
    if response.status_code == 403:
        return UrlExpired(f"{what}: the store refused the signed URL ({detail or 'forbidden'})", 403)
    return ServerError(f"{what}: the store answered {response.status_code} {detail}".rstrip(), response.status_code)


class DataClient:
    def __init__(self, parallel: int, timeout: float, chunk_size: int) -> None:
        limits = httpx.Limits(max_connections=parallel * 2, max_keepalive_connections=parallel * 2)
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, connect=15.0), limits=limits)
        self._chunk = chunk_size

    def close(self) -> None:
        self._http.close()

    def put_part(
        self, url: str, path: Path, offset: int, size: int, md5: str, on_bytes: Callable[[int], None], what: str
    ) -> str:
        """Send ``size`` bytes of ``path`` from ``offset``, whose MD5 is ``md5``; return the store's ETag or "".

        The part goes with ``Content-MD5``, so the store itself refuses bytes damaged in transit (S3,
        Azure, GCS and the local store check it); the ETag is returned for the caller's own comparison
        where the store's ETag is an MD5.
        """

        def body() -> Iterator[bytes]:
            with open(path, "rb", buffering=0) as handle:
                handle.seek(offset)
                remaining = size
                while remaining:
                    data = handle.read(min(self._chunk, remaining))
                    if not data:
                        raise IntegrityError(f"{path} became shorter while it was being uploaded; upload it again")
                    remaining -= len(data)
                    on_bytes(len(data))
                    yield data

        headers = {"Content-Length": str(size)}
        if not _is_sigv2(url):  # a SigV2 signature covers Content-MD5 and Content-Type: send neither
            headers["Content-Type"] = "application/octet-stream"
            headers["Content-MD5"] = base64.b64encode(bytes.fromhex(md5)).decode("ascii")
        try:
            response = self._http.put(url, content=body(), headers=headers)
        except httpx.TransportError as exc:
            raise ServerError(f"{what}: connection to the store failed ({exc.__class__.__name__})", 0) from exc
        if response.status_code not in (200, 201):
            raise _store_error(response, what)
        etag = response.headers.get("etag", "").strip().strip('"')
        if response.headers.get("x-amz-server-side-encryption") == "aws:kms":
            etag = ""  # under SSE-KMS the ETag is not an MD5; Content-MD5 was checked by the store
        return etag

    def get_range(
        self,
        url: str,
        offset: int,
        size: int,
        fd: int,
        write_at: int,
        skip: int,
        keep: int,
        hashing: bool,
        on_bytes: Callable[[int], None],
        what: str,
    ) -> str | None:
        """GET ``[offset, offset+size)`` and write bytes ``[skip, skip+keep)`` of it at ``write_at``.

        Returns the MD5 of everything fetched (when ``hashing``), so a part fetched whole to verify
        it against its ``sourceMd5`` can still contribute only a slice to a ranged download.
        """
        md5 = hashlib.md5() if hashing else None  # noqa: S324
        headers = {"Range": f"bytes={offset}-{offset + size - 1}"} if size > 0 else {}
        received = 0
        try:
            with self._http.stream("GET", url, headers=headers) as response:
                if response.status_code not in (200, 206):
                    response.read()
                    raise _store_error(response, what)
                for data in response.iter_raw():
                    if received + len(data) > size:
                        raise IntegrityError(f"{what}: the store sent more bytes than asked for")
                    if md5 is not None:
                        md5.update(data)
                    lo, hi = max(skip - received, 0), min(skip + keep - received, len(data))
                    if lo < hi:
                        _pwrite_all(fd, memoryview(data)[lo:hi], write_at + received + lo - skip)
                    received += len(data)
                    on_bytes(max(hi - lo, 0))
        except httpx.TransportError as exc:
            raise ServerError(f"{what}: connection to the store failed ({exc.__class__.__name__})", 0) from exc
        if received != size:
            raise ServerError(f"{what}: the store sent {received} of {size} bytes", 0)
        return md5.hexdigest() if md5 is not None else None

    def get_text(self, url: str, timeout: float = 5.0) -> int:
        """Status of a plain GET (used to check that the store is reachable)."""
        try:
            return self._http.get(url, timeout=timeout).status_code
        except httpx.TransportError:
            return 0


def _is_sigv2(url: str) -> bool:
    """S3 SigV2 presigned URLs (old Ceph/RadosGW) carry ``Signature`` and ``AWSAccessKeyId``."""
    query = parse_qs(urlsplit(url).query)
    return "Signature" in query and "AWSAccessKeyId" in query and "X-Amz-Signature" not in query


def _pwrite_all(fd: int, data: memoryview, position: int) -> None:
    while data:
        written = os.pwrite(fd, data, position)
        data = data[written:]
        position += written
