"""BGZF (blocked gzip, SAMv1 §4.1) primitives the planner needs without touching a local file.

Why these and nothing more: htsget tickets are byte ranges, and BGZF is what makes byte ranges meaningful for
BAM, VCF.gz and BCF. Indexes speak in *virtual offsets* (compressed block offset << 16 | offset inside the
decompressed block); turning one into a byte range needs the size of the block it points into, which is only
written in that block's gzip header (the ``BC`` extra subfield). Everything here works through a
``read(start, end_exclusive) -> bytes`` callable so the same code runs against a ranged object-store read.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from isal import isal_zlib

from score.genomics.errors import MalformedData

ReadFn = Callable[[int, int], bytes]
"""Ranged read of the data object: ``read(start, end_exclusive)`` returns exactly those bytes (fewer only at EOF)."""

BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
"""The 28-byte empty block every BGZF stream should end with (SAMv1 §4.1.2); readers use it to detect truncation."""

MAX_BLOCK_SIZE = 65536
"""A BGZF block, header and trailer included, is never larger than this (BSIZE is a uint16 of size - 1)."""

MAX_BLOCK_DATA = 0xFF00
INLINE_LEVEL = 1  # ISA-L level of the blocks we write (see ``compress``)
"""Uncompressed bytes htslib puts in one block: the compressed block stays under 64 KiB even if incompressible."""

MIN_HEADER_SIZE = 18
"""gzip member header with exactly the 6-byte ``BC`` extra field: what every BGZF writer we know produces."""

_GZIP_MAGIC = b"\x1f\x8b\x08"
_FEXTRA = 0x04


def split_voffset(voffset: int) -> tuple[int, int]:
    """Split a virtual offset into (compressed offset of the block, offset inside its decompressed data)."""
    return voffset >> 16, voffset & 0xFFFF


def make_voffset(coffset: int, uoffset: int) -> int:
    """Build a virtual offset; ``uoffset`` must fit in 16 bits (a block never decompresses to more than 64 KiB)."""
    if not 0 <= uoffset <= 0xFFFF:
        raise ValueError(f"uoffset {uoffset} does not fit in a virtual offset")
    return (coffset << 16) | uoffset


def parse_block_header(buf: bytes | memoryview, pos: int = 0) -> tuple[int, int] | None:
    """Return (total block size, header size) of the BGZF block starting at ``buf[pos]``.

    ``None`` means ``buf`` holds too few bytes to tell (the caller should fetch more). Raises ``MalformedData`` if
    the bytes are not a gzip member carrying a ``BC`` subfield, because without it the block size is unknowable
    without inflating, and a byte range computed from a guess would cut a block in half.
    """
    if len(buf) - pos < 12:
        return None
    if bytes(buf[pos : pos + 3]) != _GZIP_MAGIC or not buf[pos + 3] & _FEXTRA:
        raise MalformedData(f"no BGZF block header at offset {pos}")
    (xlen,) = struct.unpack_from("<H", buf, pos + 10)
    if len(buf) - pos < 12 + xlen:
        return None
    i = pos + 12
    stop = i + xlen
    while i + 4 <= stop:
        si1, si2, slen = buf[i], buf[i + 1], struct.unpack_from("<H", buf, i + 2)[0]
        if si1 == 66 and si2 == 67 and slen == 2 and i + 6 <= stop:
            (bsize,) = struct.unpack_from("<H", buf, i + 4)
            total = bsize + 1
            if total < 12 + xlen + 8:
                raise MalformedData(f"BGZF block at offset {pos} declares an impossible size {total}")
            return total, 12 + xlen
        i += 4 + slen
    raise MalformedData(f"gzip member at offset {pos} has no BGZF 'BC' extra subfield")


def read_block_size(read: ReadFn, coffset: int) -> int:
    """Size of the block starting at ``coffset`` in the data object, costing one small ranged read."""
    head = read(coffset, coffset + MIN_HEADER_SIZE)
    parsed = parse_block_header(head)
    if parsed is None:  # unusual extra fields: fetch the whole gzip header
        if len(head) < 12:
            raise MalformedData(f"truncated BGZF block header at offset {coffset}")
        (xlen,) = struct.unpack_from("<H", head, 10)
        head = read(coffset, coffset + 12 + xlen)
        parsed = parse_block_header(head)
        if parsed is None:
            raise MalformedData(f"truncated BGZF block header at offset {coffset}")
    return parsed[0]


def inflate_block(block: bytes | memoryview, offset: int = 0) -> bytes:
    """Decompress one complete BGZF block, checking its CRC32 and ISIZE (``offset`` only labels errors)."""
    parsed = parse_block_header(block)
    if parsed is None or parsed[0] != len(block):
        raise MalformedData(f"incomplete BGZF block at offset {offset}")
    total, header_size = parsed
    crc, isize = struct.unpack_from("<II", block, total - 8)
    try:
        data = isal_zlib.decompress(block[header_size : total - 8], -15)
    except isal_zlib.error as exc:
        raise MalformedData(f"corrupt deflate data in BGZF block at offset {offset}: {exc}") from exc
    if len(data) != isize or isal_zlib.crc32(data) != crc:
        raise MalformedData(f"BGZF block at offset {offset} fails its CRC/size check")
    return data


def _one_block(chunk: bytes) -> bytes:
    compressor = isal_zlib.compressobj(INLINE_LEVEL, isal_zlib.DEFLATED, -15)
    cdata = compressor.compress(chunk) + compressor.flush()
    total = len(cdata) + 26
    if total > MAX_BLOCK_SIZE:  # pragma: no cover - deflate overhead on 0xFF00 bytes is far below the margin
        raise ValueError("BGZF block would exceed 64 KiB")
    header = b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\x06\x00BC\x02\x00" + struct.pack("<H", total - 1)
    return header + cdata + struct.pack("<II", zlib.crc32(chunk), len(chunk))


def compress(data: bytes) -> bytes:
    """BGZF-compress ``data`` (no EOF block appended), for inline ``data:`` pieces of a ticket.

    With ISA-L's deflate (``isal``) at level 1: on BAM blocks it is ~10x faster than zlib's default level 6 and its
    output is no larger (measured 0.46 against 4.7 ms per 64 KiB block, 1.19 MB against 1.20 MB for 40 blocks),
    so a region ticket re-compressing its two trimmed edge blocks costs well under a millisecond.
    Empty input gives empty output: an empty block would read as an early EOF marker to some tools.
    The output is valid but not byte-deterministic (ISA-L leaves part of its hash table uninitialised; about one
    compression in 10,000 differs): compare what it inflates to, never the compressed bytes.
    """
    return b"".join(_one_block(data[i : i + MAX_BLOCK_DATA]) for i in range(0, len(data), MAX_BLOCK_DATA))


def gunzip_all(data: bytes, what: str = "data", error: type[Exception] = MalformedData) -> bytes:
    """Decompress a concatenation of gzip members (BGZF-compressed TBI/CSI indexes, gzipped CRAI).

    Plain gzip (not only BGZF) is accepted on purpose: indexes are read whole, so block boundaries do not matter.
    ``error`` is the exception class to raise, so index parsers can report ``MalformedIndex``.
    """
    out: list[bytes] = []
    rest = data
    try:
        while rest:
            d = zlib.decompressobj(31)
            out.append(d.decompress(rest))
            if not d.eof:
                raise error(f"{what} is truncated (incomplete gzip member)")
            rest = d.unused_data
    except zlib.error as exc:
        raise error(f"{what} is not valid gzip: {exc}") from exc
    return b"".join(out)


class BlockCache:
    """Inflated blocks of ONE object version, and the BGZF-compressed slices of them that tickets inline, kept
    between requests (least recently used dropped first, within ``max_bytes``; thread-safe).

    Why: a region ticket reads and inflates the blocks around the region's edges from the store, and re-compresses
    the trimmed edges, on every request; neighbouring and repeated regions (a genome browser, a workflow's
    scatter) ask for the same blocks again. The owner keys the cache by the object's version, so a changed object
    is never served from it."""

    def __init__(self, max_bytes: int = 8 * 1024 * 1024) -> None:
        self._max = max_bytes
        self._used = 0
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        """Bytes held (never more than ``max_bytes``)."""
        return self._used

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Hashable, value: Any, size: int) -> None:
        with self._lock:
            if key in self._items or size > self._max:
                return
            self._items[key] = (value, size)
            self._used += size
            while self._used > self._max:
                _, (_, dropped) = self._items.popitem(last=False)
                self._used -= dropped

    def compressed(self, coffset: int, start: int, end: int, raw: bytes) -> bytes:
        """``compress(raw)``, where ``raw`` is ``[start, end)`` of the inflated block at ``coffset``."""
        key = ("slice", coffset, start, end)
        found = self.get(key)
        if found is None:
            found = compress(raw)
            self.put(key, found, len(found))
        return found  # type: ignore[no-any-return]


class BlockReader:
    """Fetch and inflate BGZF blocks of an object through ``read``, batching small requests.

    The store is remote, so reading block after block with one request each would be slow; we fetch ``batch``
    compressed bytes at a time and serve blocks out of that window, or out of ``cache`` (kept across requests).
    ``inflated`` counts decompressed bytes, cached ones too (so a plan does the same work whatever is cached),
    so callers can cap how much work a plan may do.
    """

    def __init__(self, read: ReadFn, size: int, batch: int = 256 * 1024, cache: BlockCache | None = None) -> None:
        self._read = read
        self.cache = cache
        self.size = size
        self._batch = max(batch, MAX_BLOCK_SIZE)
        self._buf = b""
        self._buf_start = 0
        self.inflated = 0
        self.fetched = 0

    def _window(self, start: int, end: int) -> memoryview:
        end = min(end, self.size)
        if not (self._buf_start <= start and end <= self._buf_start + len(self._buf)):
            stop = min(self.size, max(end, start + self._batch))
            data = self._read(start, stop)
            self.fetched += len(data)
            self._buf, self._buf_start = data, start
        return memoryview(self._buf)[start - self._buf_start : end - self._buf_start]

    def block_at(self, coffset: int) -> tuple[int, bytes]:
        """Return (compressed size, decompressed data) of the block at ``coffset``."""
        if coffset >= self.size:
            raise MalformedData(f"BGZF block offset {coffset} is past the end of the object ({self.size})")
        cached = self.cache.get(("block", coffset)) if self.cache is not None else None
        if cached is not None:
            self.inflated += len(cached[1])
            return cached  # type: ignore[no-any-return]
        head = self._window(coffset, coffset + MIN_HEADER_SIZE)
        parsed = parse_block_header(head)
        if parsed is None:
            head = self._window(coffset, coffset + 12 + 0xFFFF)
            parsed = parse_block_header(head)
            if parsed is None:
                raise MalformedData(f"truncated BGZF block header at offset {coffset}")
        total = parsed[0]
        block = self._window(coffset, coffset + total)
        if len(block) != total:
            raise MalformedData(f"truncated BGZF block at offset {coffset}")
        data = inflate_block(block, coffset)
        self.inflated += len(data)
        if self.cache is not None:
            self.cache.put(("block", coffset), (total, data), len(data))
        return total, data


class BgzfStream:
    """Sequential reader of the decompressed stream starting at a virtual offset.

    ``tell()`` follows htslib: at the end of a block it reports the *next* block with offset 0, which is how index
    chunk ends are written, so offsets we compute compare equal to the index's.
    """

    def __init__(self, blocks: BlockReader, voffset: int) -> None:
        self._blocks = blocks
        coffset, uoffset = split_voffset(voffset)
        self._coffset = coffset
        self._csize, self._data = (0, b"") if coffset >= blocks.size else blocks.block_at(coffset)
        if uoffset > len(self._data):
            raise MalformedData(f"virtual offset {coffset}:{uoffset} points past the end of its block")
        self._pos = uoffset

    def _advance(self) -> bool:
        """Move to the next non-empty block; False at the end of the object."""
        while self._pos >= len(self._data):
            nxt = self._coffset + self._csize
            if self._csize == 0 or nxt >= self._blocks.size:
                self._coffset, self._csize, self._data, self._pos = max(nxt, self._coffset), 0, b"", 0
                return False
            self._coffset = nxt
            self._csize, self._data = self._blocks.block_at(nxt)
            self._pos = 0
        return True

    def block(self) -> tuple[int, bytes, int] | None:
        """``(compressed offset, inflated bytes, read position)`` of the current block, moving to the next
        non-empty one first; None at the end. For decoders that parse a record in place when it lies inside
        one block (no copy, no per-field reads), then ``consume`` it; the position is < the block's length."""
        if not self._advance():
            return None
        return self._coffset, self._data, self._pos

    def consume(self, n: int) -> None:
        """Move past ``n`` bytes of the current block (``block`` gave them)."""
        self._pos += n

    def tell(self) -> int:
        """Virtual offset of the next unread byte (normalised to the next block at a block end)."""
        if self._pos >= len(self._data) and self._csize:
            return make_voffset(self._coffset + self._csize, 0)
        return make_voffset(self._coffset, self._pos)

    def read(self, n: int) -> bytes:
        """Read up to ``n`` bytes; fewer only at the end of the object."""
        pos = self._pos
        if pos + n <= len(self._data):  # fast path: inside the current block
            self._pos = pos + n
            return self._data[pos : pos + n]
        parts: list[bytes] = []
        while n > 0 and self._advance():
            take = self._data[self._pos : self._pos + n]
            self._pos += len(take)
            n -= len(take)
            parts.append(take)
        return b"".join(parts)

    def read_exact(self, n: int, what: str = "record") -> bytes:
        """Read exactly ``n`` bytes or raise ``MalformedData`` (a truncated record or header)."""
        data = self.read(n)
        if len(data) != n:
            raise MalformedData(f"unexpected end of data while reading {what}")
        return data

    def readline(self) -> bytes:
        """Read through the next ``\\n`` (included); the remainder at the end of the object."""
        parts: list[bytes] = []
        while self._advance():
            nl = self._data.find(b"\n", self._pos)
            if nl >= 0:
                parts.append(self._data[self._pos : nl + 1])
                self._pos = nl + 1
                break
            parts.append(self._data[self._pos :])
            self._pos = len(self._data)
        return b"".join(parts)

    def peek_byte(self) -> int | None:
        """Next byte without consuming it; ``None`` at the end of the object."""
        if not self._advance():
            return None
        return self._data[self._pos]
