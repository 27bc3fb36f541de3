"""Turn record-boundary chunks (virtual offsets) into ticket pieces: ranged whole blocks and inline edge blocks.

Why inline edges: a client decodes the concatenation of the pieces, so each seam must fall on a record boundary.
Chunk boundaries are record boundaries; block boundaries are only record boundaries in files whose writer never
lets a record straddle two blocks (htslib BAM). Re-compressing just the wanted part of an edge block keeps every
seam on a record boundary for any writer, and sends fewer bytes than the whole block.
"""

from __future__ import annotations

from score.genomics.bgzf import BlockReader, ReadFn, compress, read_block_size, split_voffset
from score.genomics.binning import Chunk, merge_chunks
from score.genomics.errors import MalformedIndex
from score.genomics.model import Piece


def group_chunks(chunks: list[Chunk]) -> list[Chunk]:
    """Merge chunks that overlap or share a block: the records between them in that block are whole records."""
    out: list[Chunk] = []
    for vs, ve in merge_chunks(chunks):
        if out and vs >> 16 <= out[-1][1] >> 16:
            out[-1] = (out[-1][0], max(out[-1][1], ve))
        else:
            out.append((vs, ve))
    return out


def limit_groups(groups: list[Chunk], max_groups: int) -> list[Chunk]:
    """Join the runs separated by the smallest gaps until at most ``max_groups`` remain.

    Joining is always valid: both ends are record boundaries and everything between them is whole records.
    """
    if len(groups) <= max(max_groups, 1):
        return groups
    gaps = sorted(range(len(groups) - 1), key=lambda i: (groups[i + 1][0] >> 16) - (groups[i][1] >> 16))
    joined = set(gaps[: len(groups) - max(max_groups, 1)])
    out: list[Chunk] = []
    for i, g in enumerate(groups):
        if i - 1 in joined:
            out[-1] = (out[-1][0], g[1])
        else:
            out.append(g)
    return out


def body_pieces(
    blocks: BlockReader, read: ReadFn, groups: list[Chunk], header_end: int, whole_blocks: bool
) -> list[Piece]:
    """Record-boundary chunks → body pieces: ranged whole blocks plus inline trimmed edge blocks.

    A chunk ending at in-block offset 0 ends at that block's start. In ``whole_blocks`` mode a chunk ending inside a
    block includes the whole block, whose size comes from its 18-byte header; the header's shared block is still
    trimmed so header bytes are never sent twice.
    """
    hc, hu = split_voffset(header_end)
    size = blocks.size
    out: list[Piece] = []

    def add_range(start: int, end: int) -> None:
        if start >= end:
            return
        if out and out[-1].kind == "range" and out[-1].end >= start:
            out[-1] = Piece("range", out[-1].start, max(end, out[-1].end), class_="body")
        else:
            out.append(Piece("range", start, end, class_="body"))

    def add_inline(coffset: int, data: bytes, start: int, end: int) -> None:
        raw = data[start:end]
        if raw:
            packed = compress(raw) if blocks.cache is None else blocks.cache.compressed(coffset, start, end, raw)
            out.append(Piece("inline", data=packed, class_="body"))

    for vs, ve in groups:
        if vs >= ve:
            continue
        sc, su = split_voffset(vs)
        ec, eu = split_voffset(ve)
        if ec > size or (ec == size and eu) or sc >= size:
            raise MalformedIndex(f"index chunk [{sc}, {ec}] points past the end of the object ({size})")
        trim_start = su and (not whole_blocks or (sc == hc and hu))
        if trim_start:
            csize, data = blocks.block_at(sc)
            if sc == ec:
                add_inline(sc, data, su, eu)
                continue
            add_inline(sc, data, su, len(data))
            start = sc + csize
        else:
            start = sc
        if not eu:
            add_range(start, ec)
        elif whole_blocks:
            add_range(start, ec + read_block_size(read, ec))
        else:
            csize, data = blocks.block_at(ec)
            if eu >= len(data):
                add_range(start, ec + csize)
            else:
                add_range(start, ec)
                add_inline(ec, data, 0, eu)
    return out
