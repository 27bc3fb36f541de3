"""Bounded ranged reads of one signed object URL: every GET names its first and last byte.

htslib reads a remote file with open-ended GETs (no ``Range``, or ``bytes=N-``) and hangs up once it has
what it wants; by then the store has pushed megabytes into socket buffers, all counted as sent. The
planned view path (:mod:`.planned`) reads through this class instead, so the store never sends a byte
that was not asked for:

* ``read(start, end)`` is one ``Range: bytes=start-(end-1)`` GET on a connection reused across calls,
  checked for status 206 (or 200 when the range is the whole object), the exact ``Content-Range`` and
  length; transport errors, 5xx and short bodies are retried (resuming where the body broke off).
* What was read is kept (up to ``READ_CACHE_LIMIT`` bytes, oldest dropped first) and served again without
  a request: the planner reads header blocks and region edges, and the same bytes are part of the pieces
  it then returns. A read that is partly cached fetches only the missing gaps.
* ``copy(start, end, handle)`` streams a range to a file in chunks (cached parts from memory, gaps with one
  GET each), so a large piece never sits in memory.
* The object size comes from the first read's ``Content-Range`` (``bytes 0-N/SIZE``) when not given.

Messages never contain the URL (it is a credential while it is valid).
"""

from __future__ import annotations

import bisect
import logging
import re
import time
from collections.abc import Callable
from typing import IO

import httpx

from score.client.errors import ClientError
from score.client.tls import api_context

log = logging.getLogger("score.client")

READ_CACHE_LIMIT = 64 * 1024 * 1024
"""Most bytes of earlier reads kept in memory to answer later reads of the same span."""

PROBE_BYTES = 256 * 1024
"""First read when the size is unknown: the start of the file, which holds the header the planner reads first."""

STREAM_CHUNK = 1024 * 1024
ATTEMPTS = 3
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*\Z", re.IGNORECASE)


class RangesUnavailable(Exception):
    """The URL cannot be read by bounded ranges (ranges ignored, refused, or the object is empty)."""


class _Transient(Exception):
    """A failure worth another attempt: 5xx/429 answers, bodies cut short."""


class RangedReader:
    """Bounded ranged reads of ``url`` with a read cache; ``size`` is learned on the first read if not given."""

    def __init__(
        self,
        url: str,
        size: int | None = None,
        cache_limit: int = READ_CACHE_LIMIT,
        timeout: float = 60,
        transport: httpx.BaseTransport | None = None,  # tests: httpx.MockTransport
    ) -> None:
        self._url = url
        self._client = httpx.Client(follow_redirects=True, timeout=timeout, transport=transport, verify=api_context())
        self._size = size
        self._cache_limit = cache_limit
        self._spans: dict[int, bytes] = {}  # start -> bytes; never overlapping; insertion order = age
        self._starts: list[int] = []  # sorted keys of _spans
        self._cached = 0
        self.requests = 0  # GETs sent (retries included)
        self.fetched = 0  # body bytes received

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RangedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- size --------------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """The object's size; the first call may read (and cache) the start of the object to learn it."""
        if self._size is None:
            data = bytearray()
            self._transfer(0, PROBE_BYTES, data.extend)
            self._remember(0, bytes(data))
        assert self._size is not None
        return self._size

    # -- reads -------------------------------------------------------------------------------------
    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the object (clamped to its size), from the cache where possible."""
        start, end = max(0, start), min(end, self.size)
        if start >= end:
            return b""
        parts: list[bytes] = []
        for s, e, cached in self._segments(start, end):
            if cached is None:
                data = bytearray()
                self._transfer(s, e, data.extend)
                cached = bytes(data)
                self._remember(s, cached)
            parts.append(cached)
        return b"".join(parts)

    def copy(self, start: int, end: int, handle: IO[bytes]) -> int:
        """Write bytes [start, end) to ``handle`` without holding them in memory; return the count written."""
        start, end = max(0, start), min(end, self.size)
        written = 0
        for s, e, cached in self._segments(start, end):
            if cached is None:
                self._transfer(s, e, handle.write)
            else:
                handle.write(cached)
            written += e - s
        return written

    # -- cache -------------------------------------------------------------------------------------
    def _segments(self, start: int, end: int) -> list[tuple[int, int, bytes | None]]:
        """[start, end) cut into cached spans (with their bytes) and gaps (``None``), in order.

        A list, not a generator: filling the gaps changes the cache (and may evict) while it is walked.
        """
        out: list[tuple[int, int, bytes | None]] = []
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        position = start
        while position < end:
            while i < len(self._starts) and self._starts[i] + len(self._spans[self._starts[i]]) <= position:
                i += 1
            if i < len(self._starts) and self._starts[i] < end:
                s = self._starts[i]
                if s > position:
                    out.append((position, s, None))
                    position = s
                data = self._spans[s]
                stop = min(end, s + len(data))
                out.append((position, stop, data[position - s : stop - s]))
                position = stop
                i += 1
            else:
                out.append((position, end, None))
                position = end
        return out

    def _remember(self, start: int, data: bytes) -> None:
        if not data or len(data) > self._cache_limit:
            return
        self._spans[start] = data
        bisect.insort(self._starts, start)
        self._cached += len(data)
        while self._cached > self._cache_limit:
            oldest = next(iter(self._spans))
            self._cached -= len(self._spans.pop(oldest))
            self._starts.remove(oldest)

    # -- HTTP --------------------------------------------------------------------------------------
    def _transfer(self, start: int, end: int, sink: Callable[[bytes], object]) -> None:
        """GET bytes [start, end) with a bounded Range and pass them to ``sink``; retry transient failures.

        A retry asks only for what has not arrived yet. With the size still unknown (the probe), an object
        shorter than ``end`` is fine: the ``Content-Range`` says where it ends.
        """
        position, stop = start, end
        delay = 0.2
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self._client.stream("GET", self._url, headers={"Range": f"bytes={position}-{stop - 1}"}) as r:
                    self.requests += 1
                    stop = self._check(r, position, stop)
                    for chunk in r.iter_bytes(STREAM_CHUNK):
                        take = chunk[: stop - position]
                        if take:
                            sink(take)
                            position += len(take)
                            self.fetched += len(take)
                        if position >= stop:
                            break
                if position < stop:
                    raise _Transient(f"the object store sent {position - start} of {stop - start} bytes")
                return
            except (httpx.TransportError, _Transient) as exc:
                if attempt == ATTEMPTS:
                    raise ClientError(f"cannot read from the object store ({_describe(exc)})") from exc
                log.debug("ranged read failed (%s); retry %d/%d", _describe(exc), attempt, ATTEMPTS - 1)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def _check(self, response: httpx.Response, start: int, end: int) -> int:
        """Validate the answer to ``bytes=start-(end-1)``; return the exclusive end the body will reach."""
        status = response.status_code
        if status in (429, 500, 502, 503, 504):
            raise _Transient(f"HTTP {status}")
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
            if not match:
                raise RangesUnavailable("a 206 answer without a usable Content-Range")
            first, last, total = int(match.group(1)), int(match.group(2)), match.group(3)
            if total != "*":
                self._learn_size(int(total))
            expected_end = end if self._size is None else min(end, self._size)
            if first != start or last + 1 != expected_end:
                raise RangesUnavailable(f"asked for bytes {start}-{end - 1}, the store sent {first}-{last}")
            return expected_end
        if status == 200:
            # The whole object: acceptable only if that is no more than was asked for.
            length = response.headers.get("content-length")
            whole = int(length) if length is not None and length.isdigit() else None
            if start == 0 and whole is not None and whole <= end and self._size in (None, whole):
                self._learn_size(whole)
                return whole
            raise RangesUnavailable("the store ignored the Range header")
        if status == 416:
            raise RangesUnavailable("the store found the range unsatisfiable (empty object?)")
        raise RangesUnavailable(f"the object store answered HTTP {status}")

    def _learn_size(self, total: int) -> None:
        if self._size is None:
            if total <= 0:
                raise RangesUnavailable("the object is empty")
            self._size = total
        elif total != self._size:
            raise ClientError(f"the object changed while it was read (its size went from {self._size} to {total})")


def _describe(exc: Exception) -> str:
    """An error without the URL (httpx puts the request URL in some messages)."""
    return exc.__class__.__name__ if isinstance(exc, httpx.TransportError) else str(exc)
