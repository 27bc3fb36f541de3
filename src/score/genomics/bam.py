"""BAM header parsing (SAMv1 §4.2): reference names in id order and the virtual offset where records begin."""

from __future__ import annotations

import struct

from score.genomics.bgzf import BgzfStream, BlockReader
from score.genomics.errors import MalformedData
from score.genomics.model import HeaderInfo

BAM_MAGIC = b"BAM\x01"


def parse_bam_header(blocks: BlockReader) -> HeaderInfo:
    """Inflate blocks from offset 0 until the binary header (text and reference list) is fully read.

    The reference list, not the ``@SQ`` text, defines ids: the two normally agree but only the binary list is what
    records' refID point into.
    """
    stream = BgzfStream(blocks, 0)
    if stream.read(4) != BAM_MAGIC:
        raise MalformedData("not a BAM file (bad magic)")
    (l_text,) = struct.unpack("<i", stream.read_exact(4, "BAM header"))
    if l_text < 0:
        raise MalformedData("negative BAM header text length")
    stream.read_exact(l_text, "BAM header text")
    (n_ref,) = struct.unpack("<i", stream.read_exact(4, "BAM header"))
    if n_ref < 0:
        raise MalformedData("negative BAM reference count")
    names = []
    for _ in range(n_ref):
        (l_name,) = struct.unpack("<i", stream.read_exact(4, "BAM reference list"))
        if l_name <= 0:
            raise MalformedData("bad BAM reference name length")
        name = stream.read_exact(l_name, "BAM reference name").rstrip(b"\0").decode()
        stream.read_exact(4, "BAM reference length")
        names.append(name)
    return HeaderInfo(tuple(names), stream.tell())
