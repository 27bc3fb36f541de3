"""Tighten index chunks by reading records: keep only what holds records of the region.

Why: index granularity (16 kbp linear-index windows, bins whose chunks run across long reads) can make a small
region's byte ranges several times larger than the blocks that really hold its records. The file is
coordinate-sorted, so a scan can prove where a region's records start and stop. Every scan is bounded by a budget
of decompressed bytes; when it runs out, or a record cannot be decoded, we keep the index's bounds (never less).
"""

from __future__ import annotations

from score.genomics.bgzf import BgzfStream, BlockReader
from score.genomics.binning import BinningIndex, Chunk, lower_bound
from score.genomics.errors import GenomicsError
from score.genomics.records import RecordIterator

EXACT_SCAN_LIMIT = 1024 * 1024
"""Largest compressed span of index chunks we read record by record to keep only blocks holding the region (about
15-30k BAM records, ~0.1 s); larger regions only get their two edges refined, where index waste concentrates."""


def refine_chunks(
    index: BinningIndex,
    blocks: BlockReader,
    iterate: RecordIterator,
    chunks: list[Chunk],
    tid: int,
    beg: int,
    end: int,
    budget: int,
) -> list[Chunk]:
    """Chunks holding exactly (small regions) or at least (large ones) the records overlapping [beg, end) on ``tid``.

    ``chunks`` come from ``query_chunks`` and start on record boundaries; so do all results.
    """
    if not chunks:
        return chunks
    span = sum((e >> 16) - (s >> 16) for s, e in chunks)  # compressed bytes the index points at
    if span <= min(EXACT_SCAN_LIMIT, budget // 4):  # small: read records, keep only blocks holding the region
        found, resume = _scan_exact(index, blocks, iterate, chunks, tid, beg, end, budget)
        if resume is None:
            return found
        rest = [(max(s, resume), e) for s, e in chunks if e > resume]
        return found + _clip_last(index, blocks, iterate, rest, tid, beg, end, budget)
    first = _scan_first(blocks, iterate, chunks, tid, beg, end, budget)
    if first is None:
        return []
    if first >= 0:
        chunks = [(max(s, first), e) for s, e in chunks if e > first]
    return _clip_last(index, blocks, iterate, chunks, tid, beg, end, budget)


def _clip_last(
    index: BinningIndex,
    blocks: BlockReader,
    iterate: RecordIterator,
    chunks: list[Chunk],
    tid: int,
    beg: int,
    end: int,
    budget: int,
) -> list[Chunk]:
    """Cut ``chunks`` after the last record overlapping the region, when a bounded scan can prove where it is."""
    if not chunks:
        return chunks
    bound = max(lower_bound(index, tid, end - 1), chunks[0][0])
    last = _scan_last(blocks, iterate, chunks, bound, tid, beg, end, budget)
    if last is not None:
        chunks = [(s, min(e, last)) for s, e in chunks if s < last]
    return chunks


def _scan_exact(
    index: BinningIndex,
    blocks: BlockReader,
    iterate: RecordIterator,
    chunks: list[Chunk],
    tid: int,
    beg: int,
    end: int,
    budget: int,
) -> tuple[list[Chunk], int | None]:
    """The spans of ``chunks`` holding records that overlap the region, exactly.

    Records before the region's start are read one by one (a long read ahead of them may overlap while they do
    not). From the first record starting inside the region, every record up to the last one overlapping it
    overlaps too (coordinate order), so that run is one span whose end ``_scan_last`` finds from the index's
    lower bound for ``end - 1``, without decoding the records in between (a 200 kbp BAM region: ~8,000 records
    fewer). Returns ``(found, None)`` when complete, or ``(found, resume)`` when the budget ran out or a record
    could not be decoded: ``found`` is exact up to the record boundary ``resume`` and the caller falls back to the
    index after it.
    """
    limit = blocks.inflated + budget
    found: list[Chunk] = []
    jumped = False  # tried once: if the jump cannot be proven, every record is read as before

    def add(start: int, stop: int) -> None:
        if found and found[-1][1] == start:
            found[-1] = (found[-1][0], stop)
        else:
            found.append((start, stop))

    for c_start, c_end in chunks:
        position = c_start
        try:
            for rec in iterate(BgzfStream(blocks, c_start)):
                if rec.vstart >= c_end:
                    break
                if rec.tid != tid or rec.beg >= end:
                    return found, None
                if rec.beg >= beg and not jumped:  # inside from here on: jump to the last overlapping record
                    jumped = True
                    bound = max(lower_bound(index, tid, end - 1), rec.vstart)
                    rest = [(max(s, rec.vstart), e) for s, e in chunks if e > rec.vstart]
                    last = _scan_last(blocks, iterate, rest, bound, tid, beg, end, budget)
                    if last is not None:
                        add(rec.vstart, last)
                        return found, None
                if rec.end > beg:
                    add(rec.vstart, rec.vend)
                position = rec.vend
                if blocks.inflated > limit:
                    return found, position
        except GenomicsError:
            return found, position
    return found, None


def _scan_first(
    blocks: BlockReader, iterate: RecordIterator, chunks: list[Chunk], tid: int, beg: int, end: int, budget: int
) -> int | None:
    """Virtual offset of the first record overlapping the region; ``None`` if none; -1 if the scan gave up."""
    limit = blocks.inflated + budget
    try:
        for rec in iterate(BgzfStream(blocks, chunks[0][0])):
            if rec.vstart >= chunks[-1][1] or rec.tid != tid or rec.beg >= end:
                return None
            if rec.end > beg:
                return rec.vstart
            if blocks.inflated > limit:
                return -1
    except GenomicsError:
        return -1  # a record we cannot decode: keep the index's bounds rather than guess
    return None


def _scan_last(
    blocks: BlockReader,
    iterate: RecordIterator,
    chunks: list[Chunk],
    start: int,
    tid: int,
    beg: int,
    end: int,
    budget: int,
) -> int | None:
    """Virtual offset just past the last record overlapping the region, or ``None`` when it cannot be proven.

    Scanning from a lower bound for records at ``end - 1`` (a record boundary), the first record that is past the
    region ends the search: the file is coordinate-sorted, so nothing after it overlaps. The bound is only trusted
    if the first record read there is still inside the region (otherwise the stop may lie before it).
    """
    limit = blocks.inflated + budget
    last: int | None = None
    first_record = True
    try:
        for rec in iterate(BgzfStream(blocks, start)):
            stop = rec.tid != tid or rec.beg >= end
            if stop or rec.vstart >= chunks[-1][1]:
                if first_record and stop:
                    return None
                return last if last is not None else start
            first_record = False
            if rec.end > beg:
                last = rec.vend
            if blocks.inflated > limit:
                return None
    except GenomicsError:
        return None
    return last if last is not None else start
