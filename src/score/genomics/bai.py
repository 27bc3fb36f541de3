"""BAI parser (SAMv1 §5.2): the uncompressed BAM index with bins, chunks and a 16 kbp linear index."""

from __future__ import annotations

from score.genomics.binning import BinningIndex, IndexCursor, RefBins, read_bins
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
    refs = []
    for _ in range(n_ref):
        bins, _loff, meta = read_bins(cur, BAI_DEPTH, with_loffset=False)
        n_intv = cur.count("linear index length", cur.remaining() // 8)
        linear = cur.unpack(f"<{n_intv}Q") if n_intv else ()
        refs.append(RefBins(bins=bins, loffsets={}, linear=tuple(linear), meta=meta))
    n_no_coor = cur.unpack("<Q")[0] if cur.remaining() >= 8 else None
    return BinningIndex("bai", BAI_MIN_SHIFT, BAI_DEPTH, tuple(refs), names=None, n_no_coor=n_no_coor)
