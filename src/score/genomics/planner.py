"""htsget ticket planning: which byte ranges (and inline blocks) of a stored object answer a reads/variants query.

Parse once, plan many: ``prepare()`` parses the index and the data file's header (a few ranged reads) into a
``PreparedObject`` that holds no I/O handle and can be cached per object version; ``plan()`` turns regions into
``Piece`` lists. Output order is what the client concatenates: header piece(s), body pieces in file order
(overlapping regions merged), then the EOF marker.

Record boundaries vs block boundaries. A client decodes the *concatenation* of the pieces, so every seam between
two pieces must fall on a record boundary. htslib writes BAM so that records never straddle blocks, but bgzip'd
VCF, BCF, htsjdk/Picard BAM and any record over 64 KiB do straddle them. So by default a body range is cut at the
exact record boundaries the index (or a scan) gives: when a chunk starts or ends inside a block, that block's
wanted part is re-compressed into an inline BGZF piece and the ranged URL covers only the whole blocks between
(``whole_blocks=True`` restores plain block-granular ranges, correct only for record-aligned files).
The header works the same way: if it does not end on a block boundary the ticket carries the whole header blocks as
a range plus the header's part of the shared block inline, and the body never repeats header bytes.

Economy. Index granularity (16 kbp windows, whole chunks) can make a small region's ranges many times larger than
the blocks that hold its records; with ``refine=True`` (default) the planner reads records (``refine``): every
record of a small region's chunks, or the two edges of a large one, bounded by ``scan_budget``.

Module map: ``bgzf`` (blocks, virtual offsets), ``bai``/``csi``/``tabix``/``crai`` (index parsers), ``binning``
(reg2bins, chunk selection), ``bam``/``cram``/``vcf``/``bcf`` (headers), ``records`` (record spans), ``refine``
(scanning), ``assemble`` (chunks → pieces), this module (API, validation, CRAM container ranges).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from score.genomics import bgzf
from score.genomics.assemble import body_pieces, group_chunks, limit_groups
from score.genomics.bai import parse_bai
from score.genomics.bam import parse_bam_header
from score.genomics.bcf import parse_bcf_header
from score.genomics.bgzf import BlockCache, BlockReader, ReadFn, split_voffset
from score.genomics.binning import BinningIndex, Chunk, all_chunks_end, query_chunks
from score.genomics.crai import CraiIndex, parse_crai
from score.genomics.cram import CramLayout, parse_cram_layout
from score.genomics.csi import parse_csi
from score.genomics.errors import (
    InvalidInput,
    InvalidRange,
    MalformedData,
    MalformedIndex,
    UnknownReference,
    UnsupportedFormat,
)
from score.genomics.model import UNPLACED, HeaderInfo, Piece, Region
from score.genomics.records import RecordIterator, iter_bam_records, iter_bcf_records, vcf_records
from score.genomics.refine import refine_chunks
from score.genomics.tabix import parse_tbi
from score.genomics.vcf import parse_vcf_header

Format = Literal["BAM", "CRAM", "VCF", "BCF"]
IndexKind = Literal["bai", "csi", "crai", "tbi"]
ParsedIndex = BinningIndex | CraiIndex

ALLOWED_INDEXES: dict[str, frozenset[str]] = {
    "BAM": frozenset({"bai", "csi"}),
    "CRAM": frozenset({"crai"}),
    "VCF": frozenset({"tbi", "csi"}),
    "BCF": frozenset({"csi"}),
}
READS_FORMATS = frozenset({"BAM", "CRAM"})
MAX_COORDINATE = (1 << 32) - 1
"""htsget coordinates are 32-bit unsigned."""

DEFAULT_SCAN_BUDGET = 8 * 1024 * 1024
"""Decompressed bytes one region may read while refining; past it we fall back to index-only bounds."""

DEFAULT_MAX_GROUPS = 128
"""Most separate body runs a ticket may have (each costs up to one range and two inline blocks); nearest runs are
joined beyond this, trading a few extra bytes for a ticket of bounded size."""

_PARSERS: dict[str, Callable[[bytes], ParsedIndex]] = {
    "bai": parse_bai,
    "csi": parse_csi,
    "tbi": parse_tbi,
    "crai": parse_crai,
}


def parse_index(index: bytes, index_kind: IndexKind) -> ParsedIndex:
    """Parse raw index bytes of the given kind (cacheable, independent of the data object)."""
    if index_kind not in _PARSERS:
        raise UnsupportedFormat(f"unknown index kind {index_kind!r}")
    if not index:
        raise MalformedIndex(f"empty {index_kind} index")
    try:
        return _PARSERS[index_kind](index)
    except (MalformedData, UnicodeDecodeError) as exc:
        raise MalformedIndex(f"{index_kind} index is unreadable: {exc}") from exc


@dataclass(frozen=True)
class PreparedObject:
    """Everything ``plan`` needs about one object version, without any I/O handle: safe to cache and pickle.

    ``tids`` maps reference names to the ids the index uses; ``known`` adds names declared in the header but
    absent from the index (valid queries with empty results). ``data_end`` is where records stop (the BGZF EOF
    block or CRAM EOF container start, or the object size). For a header not ending on a block boundary,
    ``header_tail`` is the header's part of the shared block, BGZF-compressed for an inline piece.
    """

    fmt: Format
    size: int
    index: ParsedIndex
    header: HeaderInfo
    tids: dict[str, int]
    known: frozenset[str]
    data_end: int
    cram: CramLayout | None = None
    header_tail: bytes = field(default=b"", repr=False)

    @property
    def header_aligned(self) -> bool:
        """True when the header ends exactly at a block (or container) boundary."""
        return self.cram is not None or split_voffset(self.header.end)[1] == 0

    def plan(
        self,
        read: ReadFn,
        regions: list[Region] | None,
        header_only: bool = False,
        *,
        refine: bool = True,
        whole_blocks: bool = False,
        scan_budget: int = DEFAULT_SCAN_BUDGET,
        max_groups: int = DEFAULT_MAX_GROUPS,
        cache: BlockCache | None = None,
    ) -> list[Piece]:
        """Plan a ticket for this object; see ``plan``. ``cache``: blocks of this object version kept between
        plans (the same pieces, with fewer reads)."""
        opts = _Options(refine, whole_blocks, scan_budget, max_groups)
        return _plan(self, read, regions, header_only, opts, cache)


def prepare(
    fmt: Format,
    read: ReadFn,
    size: int,
    index: bytes | ParsedIndex,
    index_kind: IndexKind | None = None,
) -> PreparedObject:
    """Parse the index (unless already parsed) and the object's header into a cacheable ``PreparedObject``."""
    if fmt not in ALLOWED_INDEXES:
        raise UnsupportedFormat(f"format {fmt!r} is not one of {sorted(ALLOWED_INDEXES)}")
    if isinstance(index, bytes | bytearray | memoryview):
        if index_kind is None:
            raise InvalidInput("index_kind is required with raw index bytes")
        parsed: ParsedIndex = parse_index(bytes(index), index_kind)
    else:
        parsed = index
    kind = "crai" if isinstance(parsed, CraiIndex) else parsed.kind
    if kind not in ALLOWED_INDEXES[fmt]:
        raise UnsupportedFormat(f"a {kind} index cannot serve {fmt}")
    if size <= 0:
        raise MalformedData("the data object is empty")
    read = _checked(read, size)
    if fmt == "CRAM":
        layout = parse_cram_layout(read, size)
        names = layout.header.names
        return PreparedObject(
            fmt, size, parsed, layout.header, _ids(names), frozenset(names), layout.eof_start, cram=layout
        )
    assert isinstance(parsed, BinningIndex)
    blocks = BlockReader(read, size)
    header = {"BAM": parse_bam_header, "VCF": parse_vcf_header, "BCF": parse_bcf_header}[fmt](blocks)
    if fmt == "VCF" and parsed.names is not None:
        tids = _ids(parsed.names)
        known = frozenset(parsed.names) | frozenset(header.names)
    else:
        tids = _ids(header.names)
        known = frozenset(header.names)
        if len(parsed.refs) > len(header.names):
            raise MalformedIndex(f"index covers {len(parsed.refs)} references, the header names {len(header.names)}")
    data_end = size - len(bgzf.BGZF_EOF) if read(size - 28, size) == bgzf.BGZF_EOF else size
    hc, hu = split_voffset(header.end)
    tail = bgzf.compress(blocks.block_at(hc)[1][:hu]) if hu else b""
    return PreparedObject(fmt, size, parsed, header, tids, known, data_end, None, tail)


def plan(
    fmt: Format,
    read: ReadFn,
    size: int,
    index: bytes | ParsedIndex | PreparedObject,
    index_kind: IndexKind | None = None,
    regions: list[Region] | None = None,
    header_only: bool = False,
    *,
    refine: bool = True,
    whole_blocks: bool = False,
    scan_budget: int = DEFAULT_SCAN_BUDGET,
    max_groups: int = DEFAULT_MAX_GROUPS,
) -> list[Piece]:
    """Pieces of an htsget ticket for ``regions`` (``None``: the whole file) of one object.

    ``index`` may be raw bytes (then ``index_kind`` is required), a parsed index, or a ``PreparedObject`` from
    ``prepare`` (the cheap path for a server that caches). ``refine`` lets the planner read the blocks at the edges
    of each region to drop whole blocks that only hold records outside it (BAM, VCF.gz, BCF). ``whole_blocks``
    sends edge blocks whole instead of trimming them inline: fewer reads and no inline data, but only correct when
    no record straddles a block boundary (htslib-written BAM with records under 64 KiB). ``scan_budget`` caps the
    decompressed bytes one region may read while refining; ``max_groups`` bounds the number of separate body runs.

    Raises ``UnknownReference`` (htsget NotFound), ``InvalidRange``, ``InvalidInput``, ``UnsupportedFormat``,
    ``MalformedIndex`` or ``MalformedData``.
    """
    if isinstance(index, PreparedObject):
        prep = index
        if prep.fmt != fmt or prep.size != size:
            raise InvalidInput("prepared object does not match the requested format/size")
    else:
        prep = prepare(fmt, read, size, index, index_kind)
    return _plan(prep, read, regions, header_only, _Options(refine, whole_blocks, scan_budget, max_groups))


def materialize(pieces: Iterable[Piece], read: ReadFn) -> bytes:
    """Concatenate pieces the way an htsget client does (for tests, debugging and small responses)."""
    return b"".join(read(p.start, p.end) if p.kind == "range" else p.data for p in pieces)


# --- internals -------------------------------------------------------------------------------------------------


def _ids(names: Iterable[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for i, name in enumerate(names):
        ids.setdefault(name, i)
    return ids


def _checked(read: ReadFn, size: int) -> ReadFn:
    """Wrap ``read`` so out-of-bounds requests are clamped and short answers become ``MalformedData``."""

    def checked(start: int, end: int) -> bytes:
        start, end = max(0, start), min(end, size)
        if start >= end:
            return b""
        data = read(start, end)
        if len(data) != end - start:
            raise MalformedData(f"read of [{start}, {end}) returned {len(data)} bytes")
        return data

    return checked


@dataclass(frozen=True)
class _Query:
    """A validated region: reference id (or ``None`` for a declared contig absent from the index)."""

    name: str
    tid: int | None
    beg: int
    end: int


def _validate(prep: PreparedObject, regions: list[Region]) -> list[_Query]:
    if not regions:
        raise InvalidInput("regions must not be empty (use None for the whole file)")
    out = []
    for r in regions:
        if not isinstance(r.reference_name, str) or not r.reference_name:
            raise InvalidInput("a region needs a reference name")
        for v in (r.start, r.end):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise InvalidInput("region coordinates must be integers")
            if v is not None and not 0 <= v <= MAX_COORDINATE:
                raise InvalidRange(f"coordinate {v} is outside 0..2^32-1")
        if r.start is not None and r.end is not None and r.start > r.end:
            raise InvalidRange(f"start {r.start} is greater than end {r.end}")
        if r.reference_name == UNPLACED and r.reference_name not in prep.known:
            if prep.fmt not in READS_FORMATS:
                raise InvalidInput("referenceName '*' (unplaced reads) only applies to reads")
            if r.start is not None or r.end is not None:
                raise InvalidInput("start/end cannot be given with referenceName '*'")
            out.append(_Query(UNPLACED, -1, 0, 0))
            continue
        if r.reference_name not in prep.known:
            raise UnknownReference(f"reference {r.reference_name!r} is not in this file")
        beg = r.start or 0
        end = MAX_COORDINATE if r.end is None else r.end
        out.append(_Query(r.reference_name, prep.tids.get(r.reference_name), beg, end))
    return out


@dataclass(frozen=True)
class _Options:
    refine: bool
    whole_blocks: bool
    scan_budget: int
    max_groups: int = DEFAULT_MAX_GROUPS


def _plan(
    prep: PreparedObject,
    read: ReadFn,
    regions: list[Region] | None,
    header_only: bool,
    opts: _Options,
    cache: BlockCache | None = None,
) -> list[Piece]:
    read = _checked(read, prep.size)
    queries = None if header_only or regions is None else _validate(prep, regions)
    if prep.cram is not None:
        return _plan_cram(prep, prep.cram, queries, header_only)
    hc, hu = split_voffset(prep.header.end)
    pieces: list[Piece] = []
    if hc:
        pieces.append(Piece("range", 0, hc, class_="header"))
    if hu:
        pieces.append(Piece("inline", data=prep.header_tail, class_="header"))
    if not header_only:
        blocks = BlockReader(read, prep.size, cache=cache)
        if queries is None:
            chunks = [(prep.header.end, prep.data_end << 16)] if prep.data_end > hc else []
        else:
            chunks = []
            for q in queries:
                chunks.extend(_region_chunks(prep, blocks, q, opts))
        groups = limit_groups(group_chunks(chunks), opts.max_groups)
        pieces.extend(body_pieces(blocks, read, groups, prep.header.end, opts.whole_blocks))
    pieces.append(Piece("inline", data=bgzf.BGZF_EOF, class_="body"))
    return pieces


def _record_iterator(prep: PreparedObject) -> RecordIterator:
    if prep.fmt == "BAM":
        return iter_bam_records
    if prep.fmt == "BCF":
        return iter_bcf_records
    return vcf_records(prep.tids)


def _region_chunks(prep: PreparedObject, blocks: BlockReader, q: _Query, opts: _Options) -> list[Chunk]:
    """Virtual-offset chunks holding the records of one query, tightened by scanning when ``refine``."""
    index = prep.index
    assert isinstance(index, BinningIndex)
    header_end = prep.header.end
    if q.tid == -1:  # unplaced unmapped reads: everything after the last placed record
        if index.n_no_coor == 0:
            return []
        start = all_chunks_end(index)
        start = header_end if start is None else max(start, header_end)
        end = prep.data_end << 16
        return [(start, end)] if start < end else []
    if q.tid is None:
        return []
    chunks, _min_off = query_chunks(index, q.tid, q.beg, q.end)
    chunks = [(max(s, header_end), e) for s, e in chunks if e > header_end]
    if not chunks or not opts.refine:
        return chunks
    end = min(q.end, index.max_position)
    return refine_chunks(index, blocks, _record_iterator(prep), chunks, q.tid, q.beg, end, opts.scan_budget)


def _plan_cram(
    prep: PreparedObject, layout: CramLayout, queries: list[_Query] | None, header_only: bool
) -> list[Piece]:
    index = prep.index
    assert isinstance(index, CraiIndex)
    header_end = layout.header.end
    pieces = [Piece("range", 0, header_end, class_="header")]
    if not header_only:
        if queries is None:
            ranges = [(header_end, layout.eof_start)] if layout.eof_start > header_end else []
        else:
            offsets: set[int] = set()
            for q in queries:
                if q.tid == -1:
                    offsets.update(index.unmapped_containers())
                elif q.tid is not None:
                    offsets.update(index.containers(q.tid, q.beg, q.end))
            ranges = []
            for off in sorted(offsets):
                if off < header_end or off >= layout.eof_start:
                    raise MalformedIndex(f"CRAI container offset {off} is outside the data containers")
                end = index.container_end(off, layout.eof_start)
                if ranges and off <= ranges[-1][1]:
                    ranges[-1] = (ranges[-1][0], max(end, ranges[-1][1]))
                else:
                    ranges.append((off, end))
        pieces.extend(Piece("range", s, e, class_="body") for s, e in ranges)
    if layout.has_eof:
        pieces.append(Piece("range", layout.eof_start, prep.size, class_="body"))
    else:
        pieces.append(Piece("inline", data=layout.eof_bytes, class_="body"))
    return pieces


__all__ = [
    "ALLOWED_INDEXES",
    "Format",
    "IndexKind",
    "ParsedIndex",
    "PreparedObject",
    "materialize",
    "parse_index",
    "plan",
    "prepare",
]
