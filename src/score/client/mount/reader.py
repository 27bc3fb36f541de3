"""Reads of mounted files: ranged GETs straight to the store, through a bounded read-ahead cache.

Why a cache of our own: the original left everything to the kernel's read-ahead (1 MiB at most), which is
one store round trip per MiB — far too little for an object store's latency. Here each open file is
watched: a reader moving forward through a file (``cat``, ``md5sum``, a BAM scan) is *sequential*, and
gets whole upload parts fetched ahead of it, several at once; any other reader (samtools jumping by its
index) is *random*, and gets small blocks, with nothing fetched that it did not ask for.

Integrity: the store's bytes are checked against the MD5 of each upload part, which only a whole part can
be checked against. So whole parts are what sequential readers get, and what every reader gets of a part
no larger than ``WHOLE_PART_MAX``; a part that does not match is never served (``EIO`` and a log line,
and it is not cached, so a repaired object reads again). Blocks of larger parts given to random readers
are checked only for their length: there is nothing smaller than a part to check them against.

Memory: what the cache holds (verified parts, blocks) and what is being fetched into it is bounded by
``cache_bytes``; read-ahead takes only room that is free or held by what was used longest ago, and is
skipped rather than waited for. A read that must be served may go over the bound by what it fetches.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor

from score.client.api import ScoreApi
from score.client.errors import ClientError, ServerError
from score.client.mount.listing import MountedFile, PartLayout
from score.client.transfer.data import DataClient, UrlExpired

log = logging.getLogger("score.mount")
Buffer = mmap.mmap | bytes
KiB, MiB = 1024, 1024 * 1024

# Parts this small are always fetched whole (and verified), whoever reads them. A random reader pays up to
# this much for a few bytes: samtools reading a BAM's end-of-file block fetched a whole 4.8 MiB last part
# when this was 8 MiB (2.9% of a 285 MiB BAM for one region query, against 1.2% for the blocks it needed).
WHOLE_PART_MAX = 4 * MiB
BLOCK = 256 * KiB  # what a random reader's read fetches of a larger part: a few BGZF blocks
SEQUENTIAL_AFTER = 4 * MiB  # forward reads spanning this much make a reader sequential
READ_AHEAD = 64 * MiB  # how far ahead of a sequential reader parts are fetched (budget permitting)
URL_RENEW_SECONDS = 600  # signed URLs are renewed this often: a revoked token shows within minutes
ATTEMPTS = 3  # per fetch; a store that stays away turns reads into EIO until it returns
DEFAULT_CACHE_BYTES = 192 * MiB


class MountReadError(OSError):
    """A read that cannot be served: its errno (EIO, EACCES, ENOENT) and why, for the log."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)


class ByteCache:
    """Fetched ranges by key within a byte budget; one fetch per key at a time (the kernel sends a file's
    reads from several threads at once, often for the same range).

    Three kinds of entry, let go in this order when room is needed: parts a reader has moved past
    (``passed``), read-ahead nobody has read yet (the latest first: it is the furthest ahead), and what
    readers are reading (least recently used first). Read-ahead may push out only passed entries: with
    four sequential readers, read-ahead and reads that pushed out the others' next and current parts made
    the mount fetch every byte about twice.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._passed: OrderedDict[Hashable, Buffer] = OrderedDict()
        self._unread: OrderedDict[Hashable, Buffer] = OrderedDict()
        self._reading: OrderedDict[Hashable, Buffer] = OrderedDict()
        self._fetching: dict[Hashable, Future[Buffer]] = {}
        self._used = 0  # bytes held by entries and by fetches under way

    @property
    def used(self) -> int:
        return self._used

    def has(self, key: Hashable) -> bool:
        with self._lock:
            return any(key in kind for kind in (self._reading, self._unread, self._passed, self._fetching))

    def peek(self, key: Hashable) -> Buffer | None:
        """The bytes under ``key`` if held, now counted as being read."""
        with self._lock:
            return self._take(key)

    def passed(self, key: Hashable) -> None:
        """A reader has moved past these bytes: they are the first to go when room is needed."""
        with self._lock:
            data = self._reading.pop(key, None)
            if data is not None:
                self._passed[key] = data

    def get(self, key: Hashable, size: int, fetch: Callable[[], Buffer], needed: bool) -> Buffer | None:
        """The bytes under ``key``, fetched with ``fetch`` if no one has them or is fetching them. Not
        ``needed`` (read-ahead): None at once when there is no room, or when another thread is fetching."""
        with self._lock:
            data = self._take(key) if needed else self._held(key)
            if data is not None:
                return data
            pending = self._fetching.get(key)
            if pending is None:
                if not self._make_room(size, needed):
                    return None
                pending = self._fetching[key] = Future()
                owner = True
            else:
                owner = False
        if not owner:
            if not needed:
                return None
            try:
                return pending.result()
            except MountReadError:
                return self.get(key, size, fetch, needed)  # the fetcher gave up (it may have been read-ahead)
        try:
            data = fetch()
        except BaseException as exc:
            with self._lock:
                del self._fetching[key]
                self._used -= size
            pending.set_exception(exc)
            raise
        with self._lock:
            del self._fetching[key]
            (self._reading if needed else self._unread)[key] = data
            self._used += len(data) - size
        pending.set_result(data)
        return data

    def _held(self, key: Hashable) -> Buffer | None:
        return self._reading.get(key, self._unread.get(key, self._passed.get(key)))

    def _take(self, key: Hashable) -> Buffer | None:
        for kind in (self._unread, self._passed):
            data = kind.pop(key, None)
            if data is not None:
                self._reading[key] = data
                return data
        data = self._reading.get(key)
        if data is not None:
            self._reading.move_to_end(key)
        return data

    def _make_room(self, size: int, needed: bool) -> bool:
        """Hold ``size`` bytes, letting entries go in the order the class docstring gives. Read-ahead that
        would not fit even with every passed entry gone is refused before anything is let go."""
        if not needed and self._used - _total(self._passed) + size > self.limit:
            return False
        while self._used + size > self.limit:
            if self._passed:
                _, old = self._passed.popitem(last=False)
            elif needed and self._unread:
                _, old = self._unread.popitem(last=True)
            elif needed and self._reading:
                _, old = self._reading.popitem(last=False)
            else:
                break
            self._used -= len(old)
        self._used += size
        return True


def _total(entries: OrderedDict[Hashable, Buffer]) -> int:
    return sum(len(data) for data in entries.values())


class _SignedUrl:
    __slots__ = ("fetched", "url")

    def __init__(self, url: str) -> None:
        self.url = url
        self.fetched = time.monotonic()


class ObjectReader:
    """The data plane of a mount: signed URLs per object, the cache, the read-ahead pool."""

    def __init__(self, score: ScoreApi, data: DataClient, cache: ByteCache, parallel: int) -> None:
        self._score = score
        self._data = data
        self.cache = cache
        self._ahead = ThreadPoolExecutor(max_workers=max(parallel, 1), thread_name_prefix="read-ahead")
        self._urls: dict[str, _SignedUrl] = {}
        self._urls_lock = threading.Lock()
        self.bytes_fetched = 0
        self.requests = 0

    def close(self) -> None:
        self._ahead.shutdown(wait=False, cancel_futures=True)

    # -- URLs ----------------------------------------------------------------------------------
    def url(self, f: MountedFile, renew: bool = False) -> str:
        """A signed URL for the whole object, valid for any Range (``external=true``); asking for it is
        also the access check: what ``/download`` refuses, the mount refuses (EACCES)."""
        with self._urls_lock:
            known = self._urls.get(f.object_id)
        if known is not None and not renew and time.monotonic() - known.fetched < URL_RENEW_SECONDS:
            return known.url
        try:
            spec = self._score.download_spec(f.object_id, 0, -1, external=True)
        except ServerError as exc:
            raise _refusal(exc, f) from None
        url = spec.parts[0].url if spec.parts and spec.parts[0].url else None
        if url is None:
            raise MountReadError(errno.EIO, f"the server gave no URL for object {f.object_id}")
        with self._urls_lock:
            self._urls[f.object_id] = _SignedUrl(url)
        return url

    # -- reads ---------------------------------------------------------------------------------
    def read(self, f: MountedFile, offset: int, size: int, reader: Sequence) -> memoryview | bytes:
        """Bytes ``[offset, offset + size)`` of ``f`` (fewer at its end) for one open file's ``reader``: a view
        of the cached bytes when one span holds them all (no copy; the view keeps them alive even if the
        cache lets them go)."""
        sequential = reader.see(offset, size)
        end = min(offset + size, f.size)
        pieces: list[memoryview] = []
        position = offset
        while position < end:
            data, start = self._span_at(f, position, reader if sequential else None)
            taken = memoryview(data)[position - start : end - start]
            pieces.append(taken)
            position += len(taken)
        if len(pieces) == 1:
            return pieces[0]
        return b"".join(pieces)

    def _span_at(self, f: MountedFile, position: int, sequential: Sequence | None) -> tuple[Buffer, int]:
        """Cached bytes holding ``position`` and where they start: its whole part, or a block of it. A
        ``sequential`` reader also has the parts after it fetched ahead."""
        index, part = _part_at(f, position)
        if sequential is not None:
            if index > 0 and sequential.ahead_from == index - 1:
                self.cache.passed((f.object_id, "part", index - 1))
            self._read_ahead(f, index, sequential)
        whole = self.cache.peek((f.object_id, "part", index))
        if whole is not None:
            return whole, part.offset
        if sequential is not None or part.size <= WHOLE_PART_MAX:
            data = self._part(f, index, part, needed=True)
            assert data is not None
            return data, part.offset
        block = position // BLOCK
        start = block * BLOCK
        length = min(BLOCK, f.size - start)
        data = self.cache.get(
            (f.object_id, "block", block), length, lambda: self._fetch(f, start, length, None, None), needed=True
        )
        assert data is not None
        return data, start

    def _part(self, f: MountedFile, index: int, part: PartLayout, needed: bool) -> Buffer | None:
        return self.cache.get(
            (f.object_id, "part", index),
            part.size,
            lambda: self._fetch(f, part.offset, part.size, part.md5, index + 1),
            needed,
        )

    def _read_ahead(self, f: MountedFile, index: int, reader: Sequence) -> None:
        """Start fetching, in the background, the parts after ``index`` within ``READ_AHEAD`` bytes that this
        reader has not asked for yet (each part once, however small the parts and many the reads)."""
        if index <= reader.ahead_from:
            return
        reader.ahead_from = index
        ahead = 0
        for following in range(index + 1, len(f.parts)):
            part = f.parts[following]
            if ahead >= READ_AHEAD:
                break
            ahead += part.size
            if following > reader.ahead_until:
                reader.ahead_until = following
                if not self.cache.has((f.object_id, "part", following)):
                    self._ahead.submit(self._quietly, f, following, part, reader)

    def _quietly(self, f: MountedFile, index: int, part: PartLayout, reader: Sequence) -> None:
        """One part of read-ahead; when there was no room for it, the reader's next part asks again."""
        with contextlib.suppress(MountReadError):  # said in the log; the reader that needs the part tries again
            if self._part(f, index, part, needed=False) is None:
                reader.ahead_until = min(reader.ahead_until, index - 1)

    def _fetch(self, f: MountedFile, offset: int, size: int, md5: str | None, part_number: int | None) -> Buffer:
        """GET ``[offset, offset + size)``, retried, its MD5 checked when it is a whole part with one."""
        what = f"reading object {f.object_id} ({f.file_name})"
        renewed = False
        for attempt in range(1, ATTEMPTS + 1):
            memory = _memory(size)
            try:
                url = self.url(f)
                self.requests += 1
                log.debug("GET %s bytes %d-%d (part %s)", f.object_id, offset, offset + size - 1, part_number)
                digest = self._data.get_into(url, offset, memoryview(memory), md5 is not None, what)
            except UrlExpired:
                if renewed:
                    raise MountReadError(errno.EACCES, f"{what}: the store refuses the signed URL") from None
                self.url(f, renew=True)
                renewed = True
                continue
            except ClientError as exc:  # refused, failed, short, or more bytes than asked for
                if attempt == ATTEMPTS or not isinstance(exc, ServerError) or (exc.status and not exc.retryable):
                    log.error("%s failed: %s", what, exc)
                    raise MountReadError(errno.EIO, str(exc)) from None
                time.sleep(0.2 * attempt)
                continue
            self.bytes_fetched += size
            if md5 is not None and digest != md5.lower():
                message = (
                    f"{what}: part {part_number} (bytes {offset}-{offset + size - 1}) has MD5 {digest}, not the "
                    f"{md5} it was uploaded with; the object is damaged in the store, and is not served"
                )
                log.error(message)
                raise MountReadError(errno.EIO, message)
            return memory
        raise MountReadError(errno.EIO, f"{what}: the signed URL was refused twice")


def _memory(size: int) -> mmap.mmap | bytes:
    """A fetch's memory: its own anonymous mapping, returned to the system as soon as it is let go (freed
    ``bytearray``s of this size stay in glibc's heap, and the mount's RSS grew past its budget with them)."""
    return mmap.mmap(-1, size) if size else b""


def _refusal(exc: ServerError, f: MountedFile) -> MountReadError:
    """The server's refusal to hand out a URL, as the errno a reader gets, and a log line saying what to do."""
    if exc.status == 401:
        log.error("%s; then remount (score-client unmount, then mount) with the new token", exc)
        return MountReadError(errno.EACCES, str(exc))
    if exc.status == 403:
        log.warning("%s", exc)
        return MountReadError(errno.EACCES, str(exc))
    if exc.status == 404:
        log.warning("object %s (%s) is no longer in the repository: %s", f.object_id, f.file_name, exc)
        return MountReadError(errno.ENOENT, str(exc))
    log.error("could not get a URL for object %s (%s): %s", f.object_id, f.file_name, exc)
    return MountReadError(errno.EIO, str(exc))


def _part_at(f: MountedFile, position: int) -> tuple[int, PartLayout]:
    """The upload part holding byte ``position`` (a file without a known layout is one part)."""
    parts = f.parts or (PartLayout(0, f.size, f.md5),)
    low, high = 0, len(parts) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if parts[middle].offset <= position:
            low = middle
        else:
            high = middle - 1
    return low, parts[low]


class Sequence:
    """Whether one open file's reader is moving forward through it. The kernel sends a sequential
    reader's requests from several threads, slightly out of order, so "forward" allows some slack."""

    SLACK = 4 * MiB

    def __init__(self) -> None:
        self._start = -1
        self._high = -1
        self.ahead_from = -1  # the part read-ahead last started from
        self.ahead_until = -1  # the last part read-ahead was asked for

    def see(self, offset: int, size: int) -> bool:
        """Note a read; True if the reader is (now) sequential."""
        if self._start <= offset <= self._high + self.SLACK and self._start >= 0:
            self._high = max(self._high, offset + size)
        else:
            self._start, self._high = offset, offset + size
            self.ahead_from = self.ahead_until = -1  # a jump: read-ahead starts afresh from the new place
        return self._high - self._start >= SEQUENTIAL_AFTER
