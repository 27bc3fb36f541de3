"""Minimal record decoding for BAM, BCF and VCF text: just (reference id, start, end) of each record.

Why the planner decodes records at all: index granularity (16 kbp linear-index windows, whole 64 KiB blocks) can
make a small region's ranges many times larger than the blocks that really hold its records. Reading a few blocks
at the edges of a region server-side, and locating the first and last records that overlap it, lets the ticket
start and end at the right blocks. The overlap rules copy htslib's so the records a client extracts are the same.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple

from score.genomics.bgzf import BgzfStream
from score.genomics.errors import MalformedData


class RecordSpan(NamedTuple):
    """A record's location in the stream (virtual offsets) and on the reference (0-based half-open)."""

    vstart: int
    vend: int
    tid: int
    beg: int
    end: int


RecordIterator = Callable[[BgzfStream], Iterator[RecordSpan]]

_REF_CONSUMING = frozenset({0, 2, 3, 7, 8})  # M, D, N, =, X
_BAM_CORE = struct.Struct("<iiBBHHHi")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")


def _bam_reference_length(data: bytes, off: int, n_cigar: int, stop: int) -> int:
    """Reference bases a CIGAR consumes (htslib's ``bam_cigar2rlen``), the CIGAR at ``data[off:]``."""
    if off + 4 * n_cigar > stop:
        raise MalformedData("BAM record CIGAR runs past the record")
    rlen = 0
    for op in struct.unpack_from(f"<{n_cigar}I", data, off):
        if op & 0xF in _REF_CONSUMING:
            rlen += op >> 4
    return rlen


def iter_bam_records(stream: BgzfStream) -> Iterator[RecordSpan]:
    """BAM alignment records from the stream's position; end follows htslib's ``bam_endpos``.

    Records inside one block (all of them in htslib's BAMs) are decoded in place, block by block; one that
    straddles blocks is read through the stream. Ticket planning decodes thousands per region: its hot loop."""
    while True:
        current = stream.block()
        if current is None:
            return
        coffset, data, pos = current
        size, base, first = len(data), coffset << 16, pos
        while pos + 36 <= size:
            (block_size,) = _I32.unpack_from(data, pos)
            stop = pos + 4 + block_size
            if block_size < 32 or stop > size:
                break
            tid, beg, l_read_name, _mapq, _bin, n_cigar, flag, _l_seq = _BAM_CORE.unpack_from(data, pos + 4)
            if n_cigar == 1 and not flag & 4 and pos + 40 + l_read_name <= stop:  # one CIGAR op: most reads
                (op,) = _U32.unpack_from(data, pos + 36 + l_read_name)
                rlen = op >> 4 if op & 0xF in _REF_CONSUMING else 0
            elif n_cigar and not flag & 4:
                rlen = _bam_reference_length(data, pos + 36 + l_read_name, n_cigar, stop)
            else:
                rlen = 0
            stream.consume(stop - pos)
            yield RecordSpan(base | pos, base | stop if stop < size else stream.tell(), tid, beg, beg + (rlen or 1))
            pos = stop
        if pos != first:
            continue  # the block's whole records are done: on to the next block, or a straddling record
        vstart = stream.tell()
        head = stream.read(4)
        if not head:
            return
        if len(head) != 4:
            raise MalformedData("truncated BAM record length")
        (block_size,) = _I32.unpack(head)
        if block_size < 32:
            raise MalformedData(f"impossible BAM record size {block_size}")
        body = stream.read_exact(block_size, "BAM record")
        tid, beg, l_read_name, _mapq, _bin, n_cigar, flag, _l_seq = _BAM_CORE.unpack_from(body)
        rlen = _bam_reference_length(body, 32 + l_read_name, n_cigar, block_size) if n_cigar and not flag & 4 else 0
        yield RecordSpan(vstart, stream.tell(), tid, beg, beg + (rlen or 1))


def iter_bcf_records(stream: BgzfStream) -> Iterator[RecordSpan]:
    """BCF2 records from the stream's position; end is ``pos + rlen`` as in htslib's ``bcf_readrec``."""
    while True:
        vstart = stream.tell()
        head = stream.read(8)
        if not head:
            return
        if len(head) != 8:
            raise MalformedData("truncated BCF record lengths")
        l_shared, l_indiv = struct.unpack("<II", head)
        if l_shared < 24:
            raise MalformedData(f"impossible BCF record size {l_shared}")
        body = stream.read_exact(l_shared + l_indiv, "BCF record")
        chrom, pos, rlen = struct.unpack_from("<iii", body)
        yield RecordSpan(vstart, stream.tell(), chrom, pos, pos + max(rlen, 1))


def vcf_record_span(line: bytes, names: Mapping[str, int]) -> tuple[int, int, int]:
    """(tid, beg, end) of a VCF data line; unknown CHROM gives tid -1.

    The end is the larger of POS+len(REF) and INFO/END, never less than POS+1: erring long only keeps a record we
    could have dropped, never drops one a tabix reader would return.
    """
    fields = line.rstrip(b"\r\n").split(b"\t", 8)
    if len(fields) < 5:
        raise MalformedData("VCF data line has fewer than 5 columns")
    tid = names.get(fields[0].decode(errors="replace"), -1)
    try:
        beg = int(fields[1]) - 1
    except ValueError as exc:
        raise MalformedData("VCF data line has a non-numeric POS") from exc
    end = beg + max(len(fields[3]), 1)
    if len(fields) > 7:
        for item in fields[7].split(b";"):
            if item.startswith(b"END="):
                with contextlib.suppress(ValueError):  # a malformed END is ignored, as htslib does
                    end = max(end, int(item[4:]))
    return tid, beg, end


def vcf_records(names: Mapping[str, int]) -> RecordIterator:
    """Build an iterator over VCF text records; comment lines are skipped."""

    def iterate(stream: BgzfStream) -> Iterator[RecordSpan]:
        while True:
            vstart = stream.tell()
            line = stream.readline()
            if not line:
                return
            if line.startswith(b"#") or not line.strip():
                continue
            tid, beg, end = vcf_record_span(line, names)
            yield RecordSpan(vstart, stream.tell(), tid, beg, end)

    return iterate
