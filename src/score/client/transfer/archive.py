"""The layout of a download saved as one tar archive: every member at an offset known before any byte arrives.

The download specifications give every file's size, so the whole archive is laid out first: each member's
header (``tarfile``'s own, POSIX pax format, so long and non-ASCII names and sizes past 8 GiB work), its
data, and the zeros up to the next 512-byte block. The download then writes every part of every file in
place, in any order. The last member is an MD5 manifest in ``md5sum`` format (``tar -xf`` then
``md5sum -c MD5SUMS``), whose length is known up front as well: a line is 32 hex digits, two spaces and
the name, whatever the digests turn out to be.

A large member's data is made to start at a multiple of 4096 bytes (a pax ``comment`` record, which
readers ignore, pads its header), so its parts can be written with direct I/O as a file of its own is.

Pure: no I/O here. The download writes the archive through ``archive_sink``.
"""

from __future__ import annotations

import tarfile
from collections.abc import Sequence
from dataclasses import dataclass

BLOCK = tarfile.BLOCKSIZE  # 512: headers and data start on block boundaries
RECORD = tarfile.RECORDSIZE  # 10240: the archive's length is a whole number of records, as tar writes it
DIRECT_ALIGN = 4096  # where a large member's data starts (see output.ALIGN)
ALIGN_MIN_SIZE = 1 << 20  # members this large are aligned (the padding costs at most 4.5 KiB)
MANIFEST_NAME = "MD5SUMS"
MODE = 0o644
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"


@dataclass(frozen=True)
class Entry:
    """One file of the archive: its member name (``/``-separated, relative), size and MD5 if known."""

    name: str
    size: int
    md5: str | None = None


@dataclass(frozen=True)
class Member:
    """Where one member lies in the archive: its header at ``header_offset``, then ``size`` bytes of data."""

    name: str
    size: int
    md5: str | None
    header_offset: int
    header: bytes

    @property
    def data_offset(self) -> int:
        return self.header_offset + len(self.header)

    @property
    def end(self) -> int:
        """Where the next member's header starts (the data padded to a whole block)."""
        return self.data_offset + _padded(self.size)


@dataclass(frozen=True)
class Layout:
    """The whole archive: the files' members in the order given, then the manifest; ``size`` bytes in all
    (the end-of-archive blocks and the padding to a whole record included, all zeros)."""

    members: tuple[Member, ...]
    size: int

    @property
    def files(self) -> tuple[Member, ...]:
        return self.members[:-1]

    @property
    def manifest(self) -> Member:
        return self.members[-1]

    def manifest_bytes(self, md5s: Sequence[str | None] | None = None) -> bytes:
        """The manifest's content: one ``md5sum`` line per file, in archive order. ``md5s`` (one per file,
        None = the entry's own) gives the digests not known when the archive was laid out."""
        given = list(md5s) if md5s is not None else [None] * len(self.files)
        if len(given) != len(self.files):
            raise ValueError(f"{len(given)} MD5s for {len(self.files)} files")
        lines = []
        for member, md5 in zip(self.files, given, strict=True):
            digest = md5 or member.md5
            if digest is None:
                raise ValueError(f"no MD5 for {member.name!r}")
            lines.append(manifest_line(member.name, digest))
        content = b"".join(lines)
        if len(content) != self.manifest.size:  # pragma: no cover - the lines' lengths never depend on the digests
            raise AssertionError("manifest length differs from its layout")
        return content


def lay_out(
    entries: Sequence[Entry],
    mtime: int = 0,
    manifest_name: str | None = None,
    align: int = DIRECT_ALIGN,
    align_min: int = ALIGN_MIN_SIZE,
) -> Layout:
    """Lay out ``entries`` (in this order) and their MD5 manifest; ``mtime`` is every member's time.

    Raises ValueError for a name a tar archive cannot safely hold (empty, absolute, ``.``/``..``, NUL)
    or held twice, and for a negative size.
    """
    names = [e.name for e in entries]
    for entry in entries:
        check_name(entry.name)
        if entry.size < 0:
            raise ValueError(f"{entry.name!r}: negative size {entry.size}")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"two files would be saved as {name!r}")
        seen.add(name)
    manifest = manifest_name or pick_manifest_name(names)
    check_name(manifest)
    if manifest in seen:
        raise ValueError(f"the manifest name {manifest!r} is also a file's name")

    members = []
    offset = 0
    for entry in entries:
        aligned = align if align and entry.size >= align_min else 0
        header = member_header(entry.name, entry.size, mtime, offset, aligned)
        member = Member(entry.name, entry.size, entry.md5, offset, header)
        members.append(member)
        offset = member.end
    manifest_size = sum(len(manifest_line(name, "0" * 32)) for name in names)
    manifest_member = Member(manifest, manifest_size, None, offset, member_header(manifest, manifest_size, mtime))
    members.append(manifest_member)
    end = manifest_member.end + 2 * BLOCK  # two zero blocks end the archive
    return Layout(tuple(members), end + (-end) % RECORD)


def member_header(name: str, size: int, mtime: int, offset: int = 0, align: int = 0) -> bytes:
    """The header of a regular file (a pax extended header first when the name or size needs one).

    With ``align``, the header is padded so that the data, for a header at ``offset``, starts at a multiple
    of ``align``: a pax ``comment`` record (which every reader ignores) of the length that takes it there.
    """
    header = _header(name, size, mtime, None)
    if not align or (offset + len(header)) % align == 0:
        return header
    target = len(header) + (-(offset + len(header))) % align
    smallest = len(_header(name, size, mtime, "x"))
    while target < smallest:
        target += align
    # A comment n characters longer makes the pax records n bytes longer (a few more when the record's
    # length field gains digits), and the header is the records rounded up to whole blocks plus two blocks:
    # a comment longer by the missing bytes lands on the target, or one block past it by those few bytes.
    for wanted in (target, target + align):
        length = 1 + wanted - smallest
        for candidate in (length, length - 1, length - 2, length - 3, length - 4, length + 1, length + 2):
            header = _header(name, size, mtime, "x" * max(candidate, 1))
            if len(header) == wanted:
                return header
    raise AssertionError(f"could not align the header of {name!r}")  # pragma: no cover


def _header(name: str, size: int, mtime: int, comment: str | None) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = MODE
    info.type = tarfile.REGTYPE
    if comment is not None:
        info.pax_headers = {"comment": comment}
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding=_ENCODING, errors=_ERRORS)


def manifest_line(name: str, md5: str) -> bytes:
    """One line of ``md5sum`` output for ``name``, escaped as GNU md5sum escapes it (a name holding a
    backslash, a newline or a carriage return: the line starts with a backslash)."""
    if len(md5) != 32:
        raise ValueError(f"not an MD5: {md5!r}")
    escaped = name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    prefix = "\\" if escaped != name else ""
    return f"{prefix}{md5.lower()}  {escaped}\n".encode(_ENCODING, _ERRORS)


def pick_manifest_name(names: Sequence[str]) -> str:
    """``MD5SUMS``, or ``MD5SUMS.1``, ``MD5SUMS.2`` ... when a file already has that name."""
    taken = set(names)
    candidate, n = MANIFEST_NAME, 0
    while candidate in taken:
        n += 1
        candidate = f"{MANIFEST_NAME}.{n}"
    return candidate


def check_name(name: str) -> None:
    """Raise ValueError unless ``name`` is a relative member name that extracts inside the current folder."""
    if not name or "\0" in name:
        raise ValueError(f"{name!r} cannot be a file name in an archive")
    if name.startswith("/"):
        raise ValueError(f"{name!r}: names in an archive are relative")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise ValueError(f"{name!r}: a name in an archive may not have empty, '.' or '..' components")
    try:
        name.encode(_ENCODING, _ERRORS)
    except UnicodeEncodeError as exc:
        raise ValueError(f"{name!r} cannot be written as UTF-8") from exc


def _padded(size: int) -> int:
    return size + (-size) % BLOCK
