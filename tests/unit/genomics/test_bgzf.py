"""BGZF primitives against real htslib output and an independent block walker."""

from __future__ import annotations

import gzip
import os

import pytest

from score.genomics import MalformedData
from score.genomics.bgzf import (
    BGZF_EOF,
    MAX_BLOCK_SIZE,
    BgzfStream,
    BlockReader,
    compress,
    gunzip_all,
    inflate_block,
    make_voffset,
    parse_block_header,
    read_block_size,
    split_voffset,
)
from tests.unit.genomics.helpers import HTSLIB_TEST, bgzf_blocks, inflate_blocks, reader, write_bgzf


def test_virtual_offsets_round_trip() -> None:
    assert split_voffset(make_voffset(123456789, 65535)) == (123456789, 65535)
    assert make_voffset(1, 0) == 1 << 16
    with pytest.raises(ValueError):
        make_voffset(0, 1 << 16)


def test_eof_constant_is_htslibs() -> None:
    data = (HTSLIB_TEST / "range.bam").read_bytes()
    assert len(BGZF_EOF) == 28
    assert data.endswith(BGZF_EOF)
    assert gzip.decompress(BGZF_EOF) == b""


def test_block_sizes_match_an_independent_walk() -> None:
    data = (HTSLIB_TEST / "index.vcf.gz.tbi").read_bytes() + (HTSLIB_TEST / "range.bam").read_bytes()
    for offset, size in bgzf_blocks(data):
        assert parse_block_header(data, offset) == (size, 18)
        assert read_block_size(reader(data), offset) == size


def test_parse_block_header_needs_enough_bytes_and_rejects_non_bgzf() -> None:
    assert parse_block_header(BGZF_EOF[:11]) is None
    assert parse_block_header(BGZF_EOF[:15]) is None
    assert parse_block_header(BGZF_EOF) == (28, 18)
    with pytest.raises(MalformedData):
        parse_block_header(b"BAM\x01" + bytes(20))
    with pytest.raises(MalformedData):
        parse_block_header(gzip.compress(b"plain gzip has no BC field"))


def test_compress_round_trips_and_respects_block_limits() -> None:
    payload = os.urandom(200_000) + b"A" * 100_000
    packed = compress(payload)
    assert gzip.decompress(packed) == payload
    blocks = bgzf_blocks(packed)
    assert len(blocks) > 4 and all(size <= MAX_BLOCK_SIZE for _, size in blocks)
    assert b"".join(inflate_block(packed[o : o + s]) for o, s in blocks) == payload
    assert compress(b"") == b""


def test_inflate_block_checks_crc() -> None:
    block = bytearray(compress(b"hello world"))
    block[-8] ^= 0xFF
    with pytest.raises(MalformedData):
        inflate_block(bytes(block))


def test_stream_tell_and_readline_across_blocks() -> None:
    raw = b"".join(b"line %d\n" % i for i in range(5000))
    data = write_bgzf(raw, chunk=1000)  # lines straddle blocks
    blocks = bgzf_blocks(data)
    stream = BgzfStream(BlockReader(reader(data), len(data), batch=4096), 0)
    assert stream.read(1000) == raw[:1000]
    assert stream.tell() == make_voffset(blocks[1][0], 0)  # htslib's normalisation at a block end
    lines = [stream.readline() for _ in range(3)]
    assert b"".join(lines) == raw[1000 : 1000 + sum(map(len, lines))]
    rest = stream.read(len(raw))
    assert raw.endswith(rest) and stream.read(10) == b"" and stream.peek_byte() is None
    assert inflate_blocks(data)[0] == raw[:1000]


def test_stream_from_a_virtual_offset() -> None:
    raw = bytes(range(256)) * 100
    data = write_bgzf(raw, chunk=3000)
    second = bgzf_blocks(data)[1][0]
    stream = BgzfStream(BlockReader(reader(data), len(data)), make_voffset(second, 10))
    assert stream.read(5) == raw[3010:3015]
    with pytest.raises(MalformedData):
        BgzfStream(BlockReader(reader(data), len(data)), make_voffset(second, 5000))


def test_gunzip_all_reports_truncation() -> None:
    data = (HTSLIB_TEST / "index.vcf.gz.tbi").read_bytes()
    assert gunzip_all(data)[:4] == b"TBI\x01"
    with pytest.raises(MalformedData):
        gunzip_all(data[: len(data) // 2])
