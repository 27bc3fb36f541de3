"""The data plane: PUT and GET of byte ranges on pre-signed URLs, hashing while streaming.

No Authorization header ever goes to a pre-signed URL (the signature is the credential), and no URL
is ever logged (its query string is a credential too).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import mmap
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import httpx

from score.client.errors import IntegrityError, ServerError
from score.client.tls import api_context
from score.client.transfer.connections import Route, open_route


class UrlExpired(ServerError):
    """The store refused the signature (403): ask the server for fresh URLs and try again."""


def _store_error_from(status: int, body: bytes, what: str) -> ServerError:
    """The store's refusal as a client error; its JSON ``message`` (or text) says why, never the URL."""
    text = body[:4000].decode("utf-8", "replace")
    try:
        detail = str(json.loads(body).get("message", ""))
    except (ValueError, AttributeError):
        # S3/Azure/GCS answer XML; keep only its Code and Message (S3's SignatureDoesNotMatch body also
        # echoes the string to sign and the signature, which must not reach a terminal or a log).
        found = dict(re.findall(r"<(Code|Message)>([^<]*)</\1>", text))
        detail = f"{found.get('Code', '')}: {found.get('Message', '')}" if found else text[:200].strip()
    if status == 403:
        return UrlExpired(f"{what}: the store refused the signed URL ({detail or 'forbidden'})", 403)
    return ServerError(f"{what}: the store answered {status} {detail}".rstrip(), status)


# A keep-alive connection idle this long is not reused: servers close idle connections after a few seconds
# (score-server: 5 s), and a request sent as the server closes fails with "remote end closed connection".
KEEPALIVE_EXPIRY = 4.0
# What the receive buffers of all workers may hold ahead of the whole-object hash (see ``_ThreadBuffers``).
RING_BYTES = 64 * 1024 * 1024


class _ThreadBuffers:
    """One worker thread's ring of receive buffers, kept across the parts and retries it fetches, with
    how far the consumer (the whole-object hash) must have got before each may be refilled.

    Without a consumer only the first buffer is used. With one, the worker moves round the ring after
    each piece it hands over, so it can run up to a ring ahead of the hash; the ring is what lets the
    hash find the next part's first bytes already received when it gets there. The buffers are
    anonymous ``mmap`` memory: page-aligned, as direct I/O requires of what it writes, and not resident
    until first used.
    """

    def __init__(self, size: int, count: int) -> None:
        size = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
        self.views = tuple(memoryview(mmap.mmap(-1, size)) for _ in range(max(count, 2)))
        self.in_use_until = [0] * len(self.views)
        self.turn = 0
        self.owner: ChunkConsumer | None = None

    def serve(self, consumer: ChunkConsumer | None) -> None:
        """Switch the ring to ``consumer`` (the hasher of another file or another attempt, or none): first
        wait until the one before has hashed every buffer it was handed, then start the ring afresh."""
        if consumer is self.owner:
            return
        if self.owner is not None:
            for position in self.in_use_until:
                self.owner.wait_hashed(position)
        self.in_use_until = [0] * len(self.views)
        self.turn = 0
        self.owner = consumer


class ByteSink(Protocol):
    """Where ``get_range`` writes what it receives: a file (``OutputFile``) or memory (the mount's cache)."""

    def write(self, data: memoryview, position: int) -> None: ...


class ChunkConsumer(Protocol):
    """Takes each written piece of a download (the whole-object hasher, ``InOrderHasher``)."""

    def feed(self, position: int, data: memoryview) -> None: ...

    def wait_hashed(self, position: int) -> None: ...


class _Body:
    __slots__ = ("received", "response")

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.response = response
        self.received = 0


class DataClient:
    def __init__(
        self, parallel: int, timeout: float, chunk_size: int, *, connect: Callable[[str, float], Route] = open_route
    ) -> None:
        """``connect`` opens the route to a store host (``open_route``); unit tests pass one whose connection
        plays the store's answers from a script (short bodies, 403s, broken connections), with no server."""
        self._chunk = chunk_size
        self._parallel = max(parallel, 1)
        self._timeout = timeout
        self._connect = connect
        self._local = threading.local()  # per worker thread: one keep-alive connection per host, one buffer
        self._open: set[Route] = set()  # every thread's routes, so that ``close`` reaches them all
        self._open_lock = threading.Lock()

    def close(self) -> None:
        with self._open_lock:
            routes, self._open = self._open, set()
        for route in routes:
            route.close()

    def put_part(
        self, url: str, path: Path, offset: int, size: int, md5: str, on_bytes: Callable[[int], None], what: str
    ) -> str:
        """Send ``size`` bytes of ``path`` from ``offset``, whose MD5 is ``md5``; return the store's ETag or "".

        The part goes with ``Content-MD5``, so the store itself refuses bytes damaged in transit (S3,
        Azure, GCS and the local store check it); the ETag is returned for the caller's own comparison
        where the store's ETag is an MD5.
        """

        headers = {"Content-Length": str(size)}
        if not _is_sigv2(url):  # a SigV2 signature covers Content-MD5 and Content-Type: send neither
            headers["Content-Type"] = "application/octet-stream"
            headers["Content-MD5"] = base64.b64encode(bytes.fromhex(md5)).decode("ascii")
        with self._exchange(url, what) as (connection, target, route_headers):
            connection.putrequest("PUT", target, skip_accept_encoding=True)
            for name, value in {**route_headers, **headers}.items():
                connection.putheader(name, value)
            connection.endheaders()
            try:
                self._send_file(connection, path, offset, size, on_bytes)
            except OSError as exc:
                response = _early_answer(connection, exc)  # the store may have refused before the body ended
            else:
                response = connection.getresponse()
            payload = response.read()
        if response.will_close:
            self._drop(url)
        if response.status not in (200, 201):
            raise _store_error_from(response.status, payload, what)
        etag = (response.getheader("etag") or "").strip().strip('"')
        if response.getheader("x-amz-server-side-encryption") == "aws:kms":
            etag = ""  # under SSE-KMS the ETag is not an MD5; Content-MD5 was checked by the store
        return etag

    def _send_file(
        self,
        connection: http.client.HTTPConnection,
        path: Path,
        offset: int,
        size: int,
        on_bytes: Callable[[int], None],
    ) -> None:
        """The body straight from the file to the socket (``sendfile``: no copy through Python on plain HTTP)."""
        sock = connection.sock
        assert sock is not None
        step = max(self._chunk, 4 << 20)
        with open(path, "rb", buffering=0) as handle:
            position, end = offset, offset + size
            while position < end:
                sent = sock.sendfile(handle, position, min(step, end - position))
                if not sent:
                    raise IntegrityError(f"{path} became shorter while it was being uploaded; upload it again")
                position += sent
                on_bytes(sent)

    def get_range(
        self,
        url: str,
        offset: int,
        size: int,
        out: ByteSink,
        write_at: int,
        skip: int,
        keep: int,
        hashing: bool,
        on_bytes: Callable[[int], None],
        what: str,
        consumer: ChunkConsumer | None = None,
    ) -> str | None:
        """GET ``[offset, offset+size)`` and write bytes ``[skip, skip+keep)`` of it at ``write_at``.

        Returns the MD5 of everything fetched (when ``hashing``), so a part fetched whole to verify
        it against its ``sourceMd5`` can still contribute only a slice to a ranged download. The buffer
        is filled before each write, so whole parts reach the file in aligned, buffer-sized writes
        (what direct I/O needs). A ``consumer`` (the whole-object hasher) is handed each piece once it
        is written, and the thread goes round a ring of buffers, receiving into one while the consumer
        may still read the others.
        """
        md5 = hashlib.md5() if hashing else None  # noqa: S324
        buffers = self._buffers()
        buffers.serve(consumer)
        with self._ranged_body(url, offset, size, what) as body:
            while body.received < size:
                received = body.received
                buffer = buffers.views[buffers.turn]
                if consumer is not None:
                    consumer.wait_hashed(buffers.in_use_until[buffers.turn])
                n = _fill(body.response, buffer[: min(len(buffer), size - received)])
                if not n:
                    break
                data = buffer[:n]
                if md5 is not None:
                    md5.update(data)
                lo, hi = max(skip - received, 0), min(skip + keep - received, n)
                if lo < hi:
                    position = write_at + received + lo - skip
                    out.write(data[lo:hi], position)
                    if consumer is not None:
                        consumer.feed(position, data[lo:hi])
                        buffers.in_use_until[buffers.turn] = position + hi - lo
                        buffers.turn = (buffers.turn + 1) % len(buffers.views)
                body.received += n
                on_bytes(max(hi - lo, 0))
        return md5.hexdigest() if md5 is not None else None

    def get_into(self, url: str, offset: int, into: memoryview, hashing: bool, what: str) -> str | None:
        """GET ``[offset, offset + len(into))`` straight into ``into`` (memory the caller keeps: the mount's
        cache), with no copy on the way; the MD5 of the bytes when ``hashing``."""
        md5 = hashlib.md5() if hashing else None  # noqa: S324
        size = len(into)
        with self._ranged_body(url, offset, size, what) as body:
            while body.received < size:
                start = body.received
                n = _fill(body.response, into[start : min(size, start + self._chunk)])
                if not n:
                    break
                if md5 is not None:
                    md5.update(into[start : start + n])
                body.received += n
        return md5.hexdigest() if md5 is not None else None

    @contextmanager
    def _ranged_body(self, url: str, offset: int, size: int, what: str) -> Iterator[_Body]:
        """The store's answer to a GET of ``[offset, offset + size)``, for the caller to read ``size`` bytes
        of, counting them in ``received``; then neither fewer nor more than ``size`` may have come."""
        headers = {"Range": f"bytes={offset}-{offset + size - 1}"} if size > 0 else {}
        with self._exchange(url, what) as (connection, target, route_headers):
            connection.request("GET", target, headers={**route_headers, **headers})
            response = connection.getresponse()
            if response.status not in (200, 206):
                raise _store_error_from(response.status, response.read(), what)
            body = _Body(response)
            yield body
            if body.received == size and response.read(1):
                raise IntegrityError(f"{what}: the store sent more bytes than asked for")
        if body.received != size:
            self._drop(url)
            raise ServerError(f"{what}: the store sent {body.received} of {size} bytes", 0)

    # Reads go through http.client: ``readinto`` a reused 1 MiB+ buffer costs one Python step per MiB,
    # where httpx hands over 64 KiB pieces (16x the per-chunk overhead on the hottest loop).
    def _buffers(self) -> _ThreadBuffers:
        buffers = getattr(self._local, "buffers", None)
        if buffers is None:
            size = max(self._chunk, 1 << 20)
            buffers = self._local.buffers = _ThreadBuffers(size, RING_BYTES // self._parallel // size)
        return buffers

    @contextmanager
    def _exchange(self, url: str, what: str) -> Iterator[tuple[http.client.HTTPConnection, str, dict[str, str]]]:
        """One request on this thread's keep-alive connection; any failure drops the connection, and
        socket or protocol errors become a retryable ``ServerError``."""
        try:
            yield self._connection(url)
            self._local.__dict__.setdefault("used", {})[_pool_key(url)] = time.monotonic()  # idle from now
        except (OSError, http.client.HTTPException) as exc:
            self._drop(url)
            raise ServerError(f"{what}: connection to the store failed ({exc.__class__.__name__})", 0) from exc
        except BaseException:
            self._drop(url)
            raise

    def _connection(self, url: str) -> tuple[http.client.HTTPConnection, str, dict[str, str]]:
        """This thread's keep-alive connection for the URL's host (through the environment's proxy, if any),
        the request target and the headers the proxy needs."""
        pool: dict[tuple[str, str], Route] = self._local.__dict__.setdefault("pool", {})
        used: dict[tuple[str, str], float] = self._local.__dict__.setdefault("used", {})
        key = _pool_key(url)
        route = pool.get(key)
        if route is not None and time.monotonic() - used.get(key, 0.0) > KEEPALIVE_EXPIRY:
            self._forget(route)  # idle long enough for the server to have closed it: do not race its close
            route = None
        if route is None:
            try:
                route = pool[key] = self._connect(url, self._timeout)
                with self._open_lock:
                    self._open.add(route)
            except ValueError as exc:
                raise ServerError(str(exc), 0) from None
        return route.connection, route.target(url), route.headers

    def _drop(self, url: str) -> None:
        pooled = self._local.__dict__.get("pool", {}).pop(_pool_key(url), None)
        if pooled is not None:
            self._forget(pooled)

    def _forget(self, route: Route) -> None:
        with self._open_lock:
            self._open.discard(route)
        route.close()

    def get_text(self, url: str, timeout: float = 5.0) -> int:
        """Status of a plain GET (used to check that the store is reachable)."""
        try:
            return httpx.get(url, timeout=timeout, verify=api_context()).status_code
        except httpx.TransportError:
            return 0


def _pool_key(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def _is_sigv2(url: str) -> bool:
    """S3 SigV2 presigned URLs (old Ceph/RadosGW) carry ``Signature`` and ``AWSAccessKeyId``."""
    query = parse_qs(urlsplit(url).query)
    return "Signature" in query and "AWSAccessKeyId" in query and "X-Amz-Signature" not in query


def _early_answer(connection: http.client.HTTPConnection, failure: OSError) -> http.client.HTTPResponse:
    """The answer a store sent before closing the connection on a body it had refused (S3 does so on a bad
    signature): a 403 must renew the URL, not be retried as a broken connection. No answer: the failure."""
    try:
        return connection.getresponse()
    except (OSError, http.client.HTTPException):
        raise failure from None


def _fill(response: http.client.HTTPResponse, buffer: memoryview) -> int:
    """Read until ``buffer`` is full or the body ends; the number of bytes read."""
    filled = 0
    while filled < len(buffer):
        n = response.readinto(buffer[filled:])
        if not n:
            break
        filled += n
    return filled
