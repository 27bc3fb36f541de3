"""BAI parser (SAMv1 §5.2): the uncompressed BAM index with bins, chunks and a 16 kbp linear index."""

from __future__ import annotations

from score.genomics.binning import BinningIndex, IndexCursor, read_linear_refs
from score.genomics.errors import MalformedIndex

BAI_MAGIC = b"BAI\x01"
BAI_MIN_SHIFT = 14
BAI_DEPTH = 5


def parse_bai(data: bytes) -> BinningIndex:
    """Parse BAI bytes; raises ``MalformedIndex`` on a bad magic number or truncation."""
    cur = IndexCursor(data, "BAI index")
    if cur.take(4) != BAI_MAGIC:
        raise MalformedIndex("not a BAI index (bad magic)")
    n_ref = cur.count("reference count", len(data))
    refs, n_no_coor = read_linear_refs(cur, n_ref, BAI_DEPTH)
    return BinningIndex("bai", BAI_MIN_SHIFT, BAI_DEPTH, refs, names=None, n_no_coor=n_no_coor)
