"""CSI parser (CSIv1): the generalised binning index used for BAM, BCF and (via tabix) VCF.gz.

CSI files are BGZF-compressed. For text formats tabix stores its configuration and the sequence names in the
``aux`` field (same layout as the TBI header); BAM and BCF CSIs have no names, the data file's header has them.
"""

from __future__ import annotations

from score.genomics.bgzf import gunzip_all
from score.genomics.binning import BinningIndex, IndexCursor, RefBins, read_bins, read_tabix_meta
from score.genomics.errors import MalformedIndex

CSI_MAGIC = b"CSI\x01"


def parse_csi(data: bytes) -> BinningIndex:
    """Parse CSI bytes (compressed as written by htslib, or already decompressed)."""
    raw = data if data[:4] == CSI_MAGIC else gunzip_all(data, "CSI index", MalformedIndex)
    cur = IndexCursor(raw, "CSI index")
    if cur.take(4) != CSI_MAGIC:
        raise MalformedIndex("not a CSI index (bad magic)")
    min_shift, depth = cur.unpack("<ii")
    if not (0 < min_shift < 32 and 0 <= depth <= 10 and min_shift + 3 * depth <= 62):
        raise MalformedIndex(f"CSI index has impossible min_shift={min_shift} depth={depth}")
    l_aux = cur.count("aux length")
    aux = cur.take(l_aux)
    tabix = names = None
    if l_aux >= 28:  # tabix configuration; anything else in aux is opaque to us and ignored
        try:
            tabix, names = read_tabix_meta(IndexCursor(aux, "CSI aux data"))
        except (MalformedIndex, UnicodeDecodeError):
            tabix = names = None
    n_ref = cur.count("reference count", len(raw))
    refs = []
    for _ in range(n_ref):
        bins, loffsets, meta = read_bins(cur, depth, with_loffset=True)
        refs.append(RefBins(bins=bins, loffsets=loffsets, linear=(), meta=meta))
    if names is not None and len(names) != n_ref:
        raise MalformedIndex(f"CSI index names {len(names)} sequences but indexes {n_ref}")
    n_no_coor = cur.unpack("<Q")[0] if cur.remaining() >= 8 else None
    return BinningIndex("csi", min_shift, depth, tuple(refs), names=names, n_no_coor=n_no_coor, tabix=tabix)
