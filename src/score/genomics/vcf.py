"""VCF header parsing for BGZF-compressed VCF: where the ``#`` lines end and which contigs are declared."""

from __future__ import annotations

import re

from score.genomics.bgzf import BgzfStream, BlockReader
from score.genomics.errors import MalformedData
from score.genomics.model import HeaderInfo

_CONTIG_ID = re.compile(rb"^##contig=<(?:.*?,)?ID=([^,>]+)")
_IDX = re.compile(rb"[<,]IDX=(\d+)")


def contig_names(lines: list[bytes]) -> tuple[str, ...]:
    """Contig names in dictionary order: ``IDX=`` when given (BCF writers add it), else order of appearance."""
    by_idx: dict[int, str] = {}
    for line in lines:
        m = _CONTIG_ID.match(line)
        if not m:
            continue
        name = m.group(1).decode()
        if name in by_idx.values():
            continue
        idx_m = _IDX.search(line)
        idx = int(idx_m.group(1)) if idx_m else len(by_idx)
        while idx in by_idx:  # a clash would be a broken header; keep every name rather than lose one
            idx += 1
        by_idx[idx] = name
    return tuple(by_idx[i] for i in sorted(by_idx))


def parse_vcf_header(blocks: BlockReader) -> HeaderInfo:
    """Read ``#`` lines from the start of a VCF.gz; ``end`` is the virtual offset of the first data line.

    Parsing the text (rather than taking the smallest chunk start in the index) also works for a VCF without a
    single record. Contig names here complement the index's: a contig declared but without records is a valid,
    empty query rather than an unknown reference.
    """
    stream = BgzfStream(blocks, 0)
    lines = []
    while True:
        end = stream.tell()
        first = stream.peek_byte()
        if first is None or first != ord("#"):
            break
        line = stream.readline()
        lines.append(line.rstrip(b"\r\n"))
    if not lines or not lines[0].startswith(b"##fileformat=VCF"):
        raise MalformedData("not a VCF file (no ##fileformat line)")
    return HeaderInfo(contig_names(lines), end)
