"""TBI parser (tabix spec): BGZF-compressed, BAI-like bins plus the sequence names of the indexed text file."""

from __future__ import annotations

from score.genomics.bgzf import gunzip_all
from score.genomics.binning import BinningIndex, IndexCursor, read_linear_refs, read_tabix_meta
from score.genomics.errors import MalformedIndex

TBI_MAGIC = b"TBI\x01"
TBI_MIN_SHIFT = 14
TBI_DEPTH = 5


def parse_tbi(data: bytes) -> BinningIndex:
    """Parse TBI bytes (compressed as written by tabix, or already decompressed)."""
    raw = data if data[:4] == TBI_MAGIC else gunzip_all(data, "TBI index", MalformedIndex)
    cur = IndexCursor(raw, "TBI index")
    if cur.take(4) != TBI_MAGIC:
        raise MalformedIndex("not a TBI index (bad magic)")
    n_ref = cur.count("reference count", len(raw))
    tabix, names = read_tabix_meta(cur)
    if len(names) != n_ref:
        raise MalformedIndex(f"TBI index names {len(names)} sequences but indexes {n_ref}")
    refs, n_no_coor = read_linear_refs(cur, n_ref, TBI_DEPTH)
    return BinningIndex("tbi", TBI_MIN_SHIFT, TBI_DEPTH, refs, names=names, n_no_coor=n_no_coor, tabix=tabix)
