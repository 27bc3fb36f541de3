"""The UCSC binning scheme shared by BAI, CSI and tabix (SAMv1 §5.3, CSIv1), and region → chunk selection.

BAI and TBI are the CSI scheme fixed at ``min_shift=14, depth=5`` plus a 16 kbp linear index, so one data model
(``BinningIndex``) and one query (``query_chunks``) serve all three. The query mirrors htslib's ``hts_itr_query``
(bins from reg2bins, a lower bound from the linear index / ``loffset``, an upper bound from the first bin to the
right of the region) because htslib is what clients will read our byte ranges with: matching its choices means
we never omit a record it would return.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

from score.genomics.errors import MalformedIndex

Chunk = tuple[int, int]
"""A [start, end) pair of virtual offsets."""

UNBOUNDED = (1 << 64) - 1


@dataclass(frozen=True)
class RefBins:
    """Index data for one reference sequence.

    ``loffsets`` holds CSI's per-bin lower offsets; BAI/TBI have ``linear`` (one virtual offset per 16 kbp window)
    instead. ``meta`` is the pseudo-bin's content when present: (first offset, end offset, mapped, unmapped).
    """

    bins: dict[int, tuple[Chunk, ...]]
    loffsets: dict[int, int]
    linear: tuple[int, ...]
    meta: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class TabixMeta:
    """The tabix configuration block (TBI header, or CSI aux data written by tabix/bcftools for text files)."""

    format: int
    col_seq: int
    col_beg: int
    col_end: int
    meta_char: str
    skip: int


@dataclass(frozen=True)
class BinningIndex:
    """A parsed BAI, CSI or TBI index: everything needed to plan, nothing tied to the bytes it came from."""

    kind: Literal["bai", "csi", "tbi"]
    min_shift: int
    depth: int
    refs: tuple[RefBins, ...]
    names: tuple[str, ...] | None = None
    n_no_coor: int | None = None
    tabix: TabixMeta | None = None

    @property
    def max_position(self) -> int:
        """Exclusive upper bound of coordinates this index can address (2^29 for BAI/TBI)."""
        return max_position(self.min_shift, self.depth)

    @property
    def meta_bin(self) -> int:
        """Bin number of the pseudo-bin holding per-reference statistics (37450 for BAI)."""
        return bin_limit(self.depth) + 1


def max_position(min_shift: int, depth: int) -> int:
    """Exclusive upper bound on positions for a (min_shift, depth) scheme."""
    return 1 << (min_shift + 3 * depth)


def bin_limit(depth: int) -> int:
    """Number of real bins in a scheme of ``depth`` levels below the root: ((1 << 3(depth+1)) - 1) / 7."""
    return ((1 << (3 * (depth + 1))) - 1) // 7


def level_first_bin(level: int) -> int:
    """Number of the first bin at ``level`` (0 is the root)."""
    return ((1 << (3 * level)) - 1) // 7


def bin_parent(b: int) -> int:
    """The bin one level up that contains ``b``."""
    return (b - 1) >> 3


def bin_level(b: int, depth: int) -> int:
    """Level of bin ``b`` (0 = root, ``depth`` = smallest bins)."""
    for level in range(depth, -1, -1):
        if b >= level_first_bin(level):
            return level
    raise ValueError(f"negative bin {b}")


def bin_span(b: int, min_shift: int, depth: int) -> tuple[int, int]:
    """0-based half-open [start, end) of reference positions covered by bin ``b``."""
    level = bin_level(b, depth)
    shift = min_shift + 3 * (depth - level)
    start = (b - level_first_bin(level)) << shift
    return start, start + (1 << shift)


def reg2bins(beg: int, end: int, min_shift: int, depth: int) -> list[tuple[int, int]]:
    """The spec's reg2bins, as one inclusive (first, last) bin range per level instead of a flat list.

    Bins of a level whose numbers fall in its range are exactly the bins that may hold records overlapping
    [beg, end). Returning ranges keeps this O(depth) even for a whole chromosome, where the flat list of a deep CSI
    would be enormous; ``reg2bins_flat`` gives the literal list for callers (and tests) that want it.
    """
    if beg >= end:
        return []
    end -= 1
    out = []
    shift = min_shift + 3 * depth
    first = 0
    for level in range(depth + 1):
        out.append((first + (beg >> shift), first + (end >> shift)))
        shift -= 3
        first += 1 << (3 * level)
    return out


def reg2bins_flat(beg: int, end: int, min_shift: int = 14, depth: int = 5) -> list[int]:
    """Literal reg2bins list of bins overlapping [beg, end) (SAMv1 §5.3 / CSIv1 code, generalised)."""
    return [b for lo, hi in reg2bins(beg, end, min_shift, depth) for b in range(lo, hi + 1)]


def _min_offset(index: BinningIndex, ref: RefBins, beg: int) -> int:
    """Lower bound on the virtual offset of any record overlapping ``beg`` or later (htslib's ``min_off``)."""
    if ref.linear:
        window = beg >> index.min_shift
        return ref.linear[min(window, len(ref.linear) - 1)]
    if not ref.loffsets:
        return 0
    # CSI: nearest existing bin at the bottom level, walking left among siblings then up (as htslib does).
    b = level_first_bin(index.depth) + (beg >> index.min_shift)
    while b > 0:
        if b in ref.loffsets:
            return ref.loffsets[b]
        first_sibling = (bin_parent(b) << 3) + 1
        b = b - 1 if b > first_sibling else bin_parent(b)
    return ref.loffsets.get(0, 0)


def _max_offset(index: BinningIndex, ref: RefBins, end: int, min_off: int) -> int:
    """Upper bound: first record of the nearest bin to the right of the region (htslib's ``max_off``).

    Records binned to the right of ``end`` start at or after ``end``; in a coordinate-sorted file anything that
    overlaps the region comes before them.
    """
    if end >= index.max_position:
        return UNBOUNDED
    b = level_first_bin(index.depth) + ((end - 1) >> index.min_shift) + 1
    if b >= bin_limit(index.depth):
        b = 0
    while True:
        while b % 8 == 1:
            b = bin_parent(b)
        if b == 0:
            return UNBOUNDED
        chunks = ref.bins.get(b)
        if chunks:
            first = min(c[0] for c in chunks)
            if first >= min_off:
                return first
        b += 1


def merge_chunks(chunks: list[Chunk]) -> list[Chunk]:
    """Sort and merge overlapping or touching [start, end) chunks."""
    out: list[Chunk] = []
    for start, end in sorted(chunks):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def query_chunks(index: BinningIndex, tid: int, beg: int, end: int) -> tuple[list[Chunk], int]:
    """Chunks that may hold records of reference ``tid`` overlapping [beg, end), merged and clipped.

    Returns (chunks, min_off) where ``min_off`` is the lower bound used (a known record boundary the caller may scan
    from to tighten the first chunk).
    """
    if tid < 0 or tid >= len(index.refs):
        return [], 0
    ref = index.refs[tid]
    end = min(end, index.max_position)
    if beg >= end or not ref.bins:
        return [], 0
    min_off = _min_offset(index, ref, beg)
    max_off = _max_offset(index, ref, end, min_off)
    ranges = reg2bins(beg, end, index.min_shift, index.depth)
    n_candidates = sum(hi - lo + 1 for lo, hi in ranges)
    if n_candidates <= len(ref.bins):  # small region: look the reg2bins bins up
        candidates = [ref.bins[b] for lo, hi in ranges for b in range(lo, hi + 1) if b in ref.bins]
    else:  # large region: cheaper to test each bin of the reference against the per-level ranges
        limit = bin_limit(index.depth)
        candidates = []
        for b, chunks in ref.bins.items():
            if b < limit:
                lo, hi = ranges[bin_level(b, index.depth)]
                if lo <= b <= hi:
                    candidates.append(chunks)
    selected: list[Chunk] = []
    for chunks in candidates:
        for c_start, c_end in chunks:
            start, end_ = max(c_start, min_off), min(c_end, max_off)
            if start < end_:
                selected.append((start, end_))
    return merge_chunks(selected), min_off


def lower_bound(index: BinningIndex, tid: int, pos: int) -> int:
    """Public form of the linear-index / loffset lower bound for records overlapping ``pos`` on ``tid``."""
    if tid < 0 or tid >= len(index.refs):
        return 0
    return _min_offset(index, index.refs[tid], pos)


def all_chunks_end(index: BinningIndex) -> int | None:
    """Largest chunk end over every reference: where placed records stop and unplaced unmapped reads begin.

    Uses the pseudo-bin's end offset when present (as htslib does for ``HTS_IDX_NOCOOR``), else real chunks.
    """
    best: int | None = None
    for ref in index.refs:
        if ref.meta is not None:
            candidate = ref.meta[1]
        else:
            ends = [c[1] for b, chunks in ref.bins.items() if b < bin_limit(index.depth) for c in chunks]
            if not ends:
                continue
            candidate = max(ends)
        best = candidate if best is None else max(best, candidate)
    return best


class IndexCursor:
    """Little-endian reader over index bytes that turns truncation into ``MalformedIndex``."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise MalformedIndex(f"{self.what} is truncated at byte {self.pos}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> tuple[int, ...]:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise MalformedIndex(f"{self.what} is truncated at byte {self.pos}")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def count(self, what: str, limit: int = 1 << 31) -> int:
        (n,) = self.unpack("<i")
        if n < 0 or n > limit:
            raise MalformedIndex(f"{self.what}: impossible {what} {n} at byte {self.pos - 4}")
        return n


def read_bins(
    cur: IndexCursor, depth: int, with_loffset: bool
) -> tuple[dict[int, tuple[Chunk, ...]], dict[int, int], tuple[int, int, int, int] | None]:
    """Read ``n_bin`` bins (BAI/TBI layout, or CSI's with a ``loffset`` per bin); split off the pseudo-bin."""
    meta_bin = bin_limit(depth) + 1
    n_bin = cur.count("bin count", 1 << 30)
    bins: dict[int, tuple[Chunk, ...]] = {}
    loffsets: dict[int, int] = {}
    meta = None
    for _ in range(n_bin):
        if with_loffset:
            b, loff = cur.unpack("<IQ")
        else:
            (b,), loff = cur.unpack("<I"), None
        n_chunk = cur.count("chunk count", cur.remaining() // 16)
        raw = cur.take(16 * n_chunk)
        flat = struct.unpack(f"<{2 * n_chunk}Q", raw)
        chunks = tuple(sorted(zip(flat[0::2], flat[1::2], strict=True)))
        if b == meta_bin:
            if n_chunk == 2:  # (first offset, end offset), (n_mapped, n_unmapped)
                meta = (flat[0], flat[1], flat[2], flat[3])
            continue
        if b > meta_bin:
            raise MalformedIndex(f"{cur.what}: bin number {b} is out of range")
        if any(s > e for s, e in chunks):
            raise MalformedIndex(f"{cur.what}: chunk with start after end in bin {b}")
        bins[b] = chunks
        if loff is not None:
            loffsets[b] = loff
    return bins, loffsets, meta


def read_linear_refs(cur: IndexCursor, n_ref: int, depth: int) -> tuple[tuple[RefBins, ...], int | None]:
    """BAI/TBI's per-reference bins + 16 kbp linear index, then the optional trailing ``n_no_coor``."""
    refs = []
    for _ in range(n_ref):
        bins, _loff, meta = read_bins(cur, depth, with_loffset=False)
        n_intv = cur.count("linear index length", cur.remaining() // 8)
        linear = cur.unpack(f"<{n_intv}Q") if n_intv else ()
        refs.append(RefBins(bins=bins, loffsets={}, linear=tuple(linear), meta=meta))
    n_no_coor = cur.unpack("<Q")[0] if cur.remaining() >= 8 else None
    return tuple(refs), n_no_coor


def read_tabix_meta(cur: IndexCursor) -> tuple[TabixMeta, tuple[str, ...]]:
    """Read the tabix configuration and the NUL-separated sequence names that follow it."""
    fmt, col_seq, col_beg, col_end, meta, skip = cur.unpack("<iiiiii")
    l_nm = cur.count("name block length")
    raw = cur.take(l_nm)
    names = tuple(n.decode() for n in raw.split(b"\0")[:-1]) if raw else ()
    if raw and not raw.endswith(b"\0"):
        raise MalformedIndex(f"{cur.what}: sequence names are not NUL-terminated")
    return TabixMeta(fmt, col_seq, col_beg, col_end, chr(meta & 0xFF) if meta else "", skip), names
