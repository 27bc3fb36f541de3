"""CRAM 2.1/3.x structure the planner needs: file definition, container headers, the SAM header, the EOF container.

A CRAM byte range can only start at a container, and the header is the file definition plus the first container
(the SAM header container, padding included). Its length field tells where the first data container begins, so
the header range is known without reading anything past it.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from score.genomics.errors import MalformedData, UnsupportedFormat
from score.genomics.model import HeaderInfo

ReadFn = Callable[[int, int], bytes]

FILE_DEFINITION_SIZE = 26
CRAM_MAGIC = b"CRAM"

CRAM3_EOF = bytes.fromhex("0f000000ffffffff0fe0454f4600000000010005bdd94f0001000606010001000100ee63014b")
"""The 38-byte EOF container of CRAM 3.x (an empty container with ref id -1 and start 4542278)."""

CRAM21_EOF = bytes.fromhex("0b000000ffffffff0fe0454f460000000001000001000606010001000100")
"""The 30-byte EOF container of CRAM 2.1 (no CRC32 fields)."""

_FILE_HEADER_CONTENT_TYPE = 0


def read_itf8(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode an ITF8 integer (1-5 bytes, signed 32-bit) at ``pos``; returns (value, next position)."""
    try:
        b0 = buf[pos]
        if b0 < 0x80:
            return b0, pos + 1
        if b0 < 0xC0:
            return ((b0 & 0x3F) << 8) | buf[pos + 1], pos + 2
        if b0 < 0xE0:
            return ((b0 & 0x1F) << 16) | (buf[pos + 1] << 8) | buf[pos + 2], pos + 3
        if b0 < 0xF0:
            return ((b0 & 0x0F) << 24) | (buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3], pos + 4
        value = ((b0 & 0x0F) << 28) | (buf[pos + 1] << 20) | (buf[pos + 2] << 12) | (buf[pos + 3] << 4)
        value |= buf[pos + 4] & 0x0F
    except IndexError as exc:
        raise MalformedData("truncated ITF8 integer") from exc
    return (value - (1 << 32) if value & 0x80000000 else value), pos + 5


def read_ltf8(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode an LTF8 integer (1-9 bytes, signed 64-bit) at ``pos``; returns (value, next position)."""
    try:
        b0 = buf[pos]
        extra = 0
        mask = 0x80
        while extra < 8 and b0 & mask:  # count leading one bits: each adds a following byte
            extra += 1
            mask >>= 1
        value = b0 & (mask - 1) if extra < 8 else 0
        for i in range(1, extra + 1):
            value = (value << 8) | buf[pos + i]
    except IndexError as exc:
        raise MalformedData("truncated LTF8 integer") from exc
    return (value - (1 << 64) if value & (1 << 63) else value), pos + 1 + extra


def write_itf8(value: int) -> bytes:
    """Encode an ITF8 integer (used by tests and for building containers)."""
    v = value & 0xFFFFFFFF
    if v < 0x80:
        return bytes([v])
    if v < 0x4000:
        return bytes([0x80 | (v >> 8), v & 0xFF])
    if v < 0x200000:
        return bytes([0xC0 | (v >> 16), (v >> 8) & 0xFF, v & 0xFF])
    if v < 0x10000000:
        return bytes([0xE0 | (v >> 24), (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF])
    return bytes([0xF0 | (v >> 28), (v >> 20) & 0xFF, (v >> 12) & 0xFF, (v >> 4) & 0xFF, v & 0x0F])


def write_ltf8(value: int) -> bytes:
    """Encode an LTF8 integer: n leading one bits announce n following bytes."""
    v = value & 0xFFFFFFFFFFFFFFFF
    for n in range(8):
        if v < 1 << (7 * n + 7):
            raw = v.to_bytes(n + 1, "big")
            return bytes([((0xFF << (8 - n)) & 0xFF) | raw[0]]) + raw[1:]
    return b"\xff" + v.to_bytes(8, "big")


@dataclass(frozen=True)
class ContainerHeader:
    """The fields of a container header we use; ``data_offset`` is where its blocks start."""

    offset: int
    length: int
    ref_seq_id: int
    n_records: int
    n_blocks: int
    data_offset: int

    @property
    def end(self) -> int:
        """Offset of the next container."""
        return self.data_offset + self.length


def parse_container_header(buf: bytes | memoryview, offset: int, major: int) -> ContainerHeader | None:
    """Parse a container header at ``buf[0]`` (which is file offset ``offset``); ``None`` if ``buf`` is too short."""
    try:
        if len(buf) < 4:
            return None
        (length,) = struct.unpack_from("<i", buf, 0)
        pos = 4
        ref_seq_id, pos = read_itf8(buf, pos)
        _start, pos = read_itf8(buf, pos)
        _span, pos = read_itf8(buf, pos)
        n_records, pos = read_itf8(buf, pos)
        _counter, pos = read_ltf8(buf, pos) if major >= 3 else read_itf8(buf, pos)
        _bases, pos = read_ltf8(buf, pos)
        n_blocks, pos = read_itf8(buf, pos)
        n_landmarks, pos = read_itf8(buf, pos)
        if n_landmarks < 0 or n_landmarks > len(buf):
            raise MalformedData(f"impossible CRAM container landmark count at offset {offset}")
        for _ in range(n_landmarks):
            _lm, pos = read_itf8(buf, pos)
        if major >= 3:
            pos += 4  # CRC32
        if pos > len(buf):
            return None
    except MalformedData as exc:
        if "truncated" in str(exc):
            return None
        raise
    if length < 0:
        raise MalformedData(f"negative CRAM container length at offset {offset}")
    return ContainerHeader(offset, length, ref_seq_id, n_records, n_blocks, offset + pos)


def _decompress_block(method: int, data: bytes, raw_size: int) -> bytes:
    try:
        if method == 0:
            return data
        if method == 1:
            return zlib.decompress(data, 47)
        if method == 2:
            return bz2.decompress(data)
        if method == 3:
            return lzma.decompress(data)
    except (zlib.error, OSError, lzma.LZMAError, ValueError) as exc:
        raise MalformedData(f"CRAM header block does not decompress: {exc}") from exc
    raise UnsupportedFormat(f"CRAM header block uses compression method {method}, which we do not decode")


@dataclass(frozen=True)
class CramLayout:
    """Where things are in a CRAM file: header end, data end (EOF container start) and the EOF bytes to send."""

    major: int
    minor: int
    header: HeaderInfo
    eof_start: int
    has_eof: bool

    @property
    def eof_bytes(self) -> bytes:
        """The EOF container for this version (sent inline when the file lacks one)."""
        return CRAM3_EOF if self.major >= 3 else CRAM21_EOF


def sam_header_names(text: str) -> tuple[str, ...]:
    """Reference names from ``@SQ`` lines in order: their position is the reference id."""
    names = []
    for line in text.splitlines():
        if line.startswith("@SQ\t"):
            for field in line.split("\t")[1:]:
                if field.startswith("SN:"):
                    names.append(field[3:])
                    break
    return tuple(names)


def parse_cram_layout(read: ReadFn, size: int) -> CramLayout:
    """Read the file definition and SAM header container; locate the EOF container."""
    head = read(0, min(size, 64 * 1024))
    if len(head) < FILE_DEFINITION_SIZE or head[:4] != CRAM_MAGIC:
        raise MalformedData("not a CRAM file (bad magic)")
    major, minor = head[4], head[5]
    if (major, minor) < (2, 1) or major > 3:
        raise UnsupportedFormat(f"CRAM {major}.{minor} is not supported (2.1, 3.0 and 3.1 are)")
    container = parse_container_header(memoryview(head)[FILE_DEFINITION_SIZE:], FILE_DEFINITION_SIZE, major)
    if container is None:
        head = read(0, min(size, FILE_DEFINITION_SIZE + 1024 * 1024))
        container = parse_container_header(memoryview(head)[FILE_DEFINITION_SIZE:], FILE_DEFINITION_SIZE, major)
        if container is None:
            raise MalformedData("truncated CRAM header container")
    if container.end > size:
        raise MalformedData("CRAM header container extends past the end of the file")
    if len(head) < container.end:
        head = read(0, container.end)
    text = _sam_text(head, container, major)
    eof = CRAM3_EOF if major >= 3 else CRAM21_EOF
    has_eof = size >= container.end + len(eof) and read(size - len(eof), size) == eof
    eof_start = size - len(eof) if has_eof else size
    return CramLayout(major, minor, HeaderInfo(sam_header_names(text), container.end), eof_start, has_eof)


def _sam_text(head: bytes, container: ContainerHeader, major: int) -> str:
    pos = container.data_offset
    try:
        method, content_type = head[pos], head[pos + 1]
    except IndexError as exc:
        raise MalformedData("truncated CRAM header block") from exc
    pos += 2
    _content_id, pos = read_itf8(head, pos)
    comp_size, pos = read_itf8(head, pos)
    raw_size, pos = read_itf8(head, pos)
    if content_type != _FILE_HEADER_CONTENT_TYPE:
        raise MalformedData("first CRAM container does not start with a file header block")
    if comp_size < 0 or pos + comp_size > container.end:
        raise MalformedData("CRAM header block runs past its container")
    data = _decompress_block(method, head[pos : pos + comp_size], raw_size)
    if len(data) < 4:
        raise MalformedData("CRAM header block is too short")
    (l_text,) = struct.unpack_from("<i", data)
    if l_text < 0 or 4 + l_text > len(data):
        raise MalformedData("CRAM SAM header text length is impossible")
    return data[4 : 4 + l_text].decode(errors="replace")
