"""BCF2 header parsing: the embedded VCF header text, its contig dictionary, and where records begin."""

from __future__ import annotations

import struct

from score.genomics.bgzf import BgzfStream, BlockReader
from score.genomics.errors import MalformedData
from score.genomics.model import HeaderInfo
from score.genomics.vcf import contig_names

BCF_MAGICS = (b"BCF\x02\x01", b"BCF\x02\x02")


def parse_bcf_header(blocks: BlockReader) -> HeaderInfo:
    """Read magic, ``l_text`` and the text; contig ids follow the contig dictionary (``IDX=`` aware)."""
    stream = BgzfStream(blocks, 0)
    if stream.read(5) not in BCF_MAGICS:
        raise MalformedData("not a BCF2 file (bad magic)")
    (l_text,) = struct.unpack("<I", stream.read_exact(4, "BCF header"))
    text = stream.read_exact(l_text, "BCF header text")
    lines = text.rstrip(b"\0").split(b"\n")
    return HeaderInfo(contig_names(lines), stream.tell())
