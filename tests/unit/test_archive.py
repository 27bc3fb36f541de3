"""The archive layout (``--archive``): offsets, headers that ``tarfile`` and GNU tar read back, the manifest."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from score.client.transfer.archive import (
    BLOCK,
    RECORD,
    Entry,
    Layout,
    lay_out,
    manifest_line,
    member_header,
    pick_manifest_name,
)

MTIME = 1_700_000_000


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - integrity, not security


def _build(layout: Layout, contents: list[bytes]) -> bytes:
    """The archive's bytes as the download leaves them: headers, data and manifest at their offsets."""
    archive = bytearray(layout.size)
    for member, data in zip(layout.files, contents, strict=True):
        archive[member.header_offset : member.data_offset] = member.header
        archive[member.data_offset : member.data_offset + member.size] = data
    manifest = layout.manifest
    archive[manifest.header_offset : manifest.data_offset] = manifest.header
    body = layout.manifest_bytes()
    archive[manifest.data_offset : manifest.data_offset + len(body)] = body
    return bytes(archive)


def _files() -> dict[str, bytes]:
    return {
        "empty.txt": b"",
        "one.bin": b"x",
        "small.txt": os.urandom(1000),
        "block.bin": os.urandom(BLOCK),
        "big.bam": os.urandom((1 << 20) + 777),  # aligned for direct I/O
        "analysis-1/" + "long-" * 40 + "name.bam": os.urandom(3000),  # past ustar's 100 + 155
        "naïve résumé.txt": b"unicode",
        "back\\slash and\nnewline": b"odd",
    }


def test_members_follow_each_other_on_block_boundaries_and_parse_back() -> None:
    files = _files()
    layout = lay_out([Entry(name, len(data), _md5(data)) for name, data in files.items()], mtime=MTIME)
    offset = 0
    for member in layout.members:
        assert member.header_offset == offset
        assert member.header_offset % BLOCK == 0 and member.data_offset % BLOCK == 0
        assert len(member.header) % BLOCK == 0
        offset = member.end
    assert layout.size % RECORD == 0 and layout.size >= offset + 2 * BLOCK
    assert layout.manifest.name == "MD5SUMS" and layout.members[-1] is layout.manifest

    archive = _build(layout, list(files.values()))
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        infos = tar.getmembers()
        assert [i.name for i in infos] == [*files, "MD5SUMS"]
        for info, member in zip(infos, layout.members, strict=True):
            assert info.offset == member.header_offset and info.offset_data == member.data_offset
            assert info.size == member.size and info.mtime == MTIME and info.mode == 0o644 and info.isreg()
        for name, data in files.items():
            assert tar.extractfile(name).read() == data  # type: ignore[union-attr]
        manifest = tar.extractfile("MD5SUMS").read()  # type: ignore[union-attr]
    assert manifest == layout.manifest_bytes()
    assert manifest.splitlines()[0] == f"{_md5(b'')}  empty.txt".encode()


def test_large_members_start_on_4096_byte_boundaries() -> None:
    for prefix in range(0, 40):  # members before it shift the big one to every block offset
        entries = [Entry(f"f{i}", 100, None) for i in range(prefix)] + [Entry("big", 5 << 20, None)]
        big = lay_out(entries).files[-1]
        assert big.data_offset % 4096 == 0, prefix
        assert len(big.header) <= 512 + 4096 + 512  # at most one pax header, one record block and the padding
    small = lay_out([Entry("a", 10), Entry("b", 1000)]).files[1]
    assert small.data_offset == 1024 + 512  # small ones are not padded


@pytest.mark.parametrize("name_length", [1, 99, 100, 101, 155, 156, 255, 256, 1000, 4000])
@pytest.mark.parametrize("offset", [0, 512, 1536, 3584, 4096])
def test_aligned_headers_for_any_name_length_and_offset(name_length: int, offset: int) -> None:
    name = "d/" + "n" * name_length
    header = member_header(name, 1 << 30, MTIME, offset, 4096)
    assert (offset + len(header)) % 4096 == 0
    info = tarfile.TarInfo.frombuf(header[:BLOCK], "utf-8", "surrogateescape")
    stream = io.BytesIO(header + b"\0" * 4096)
    with tarfile.open(fileobj=stream, mode="r:") as tar:
        parsed = tar.next()
    assert parsed is not None and parsed.name == name and parsed.size == 1 << 30
    assert info.type in (tarfile.XHDTYPE, tarfile.REGTYPE)


def test_sizes_past_ustar_limit_use_pax() -> None:
    size = 9 * 1024**3  # past ustar's 8 GiB
    layout = lay_out([Entry("huge.bam", size, "0" * 32)], mtime=MTIME)
    member = layout.files[0]
    with tarfile.open(fileobj=io.BytesIO(member.header + b"\0" * BLOCK), mode="r:") as tar:
        info = tar.next()
    assert info is not None and info.size == size and info.pax_headers["size"] == str(size)
    assert layout.manifest.header_offset == member.data_offset + size + (-size) % BLOCK


def test_empty_files_and_an_empty_job() -> None:
    layout = lay_out([Entry("a", 0, _md5(b"")), Entry("b", 0, _md5(b""))])
    a, b = layout.files
    assert (a.header_offset, a.data_offset, a.end) == (0, 512, 512)
    assert (b.header_offset, b.data_offset, b.end) == (512, 1024, 1024)
    assert layout.manifest.header_offset == 1024
    nothing = lay_out([])
    assert nothing.manifest.size == 0 and nothing.manifest_bytes() == b"" and nothing.size == RECORD


def test_layout_is_deterministic_and_md5s_may_come_later() -> None:
    entries = [Entry("a", 10), Entry("b", 20, "ab" * 16)]
    first, second = lay_out(entries, mtime=MTIME), lay_out(entries, mtime=MTIME)
    assert first == second
    with pytest.raises(ValueError, match="no MD5 for 'a'"):
        first.manifest_bytes()
    body = first.manifest_bytes(["cd" * 16, None])
    assert body == b"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd  a\n" + b"ab" * 16 + b"  b\n"
    with pytest.raises(ValueError):
        first.manifest_bytes(["cd" * 16])


def test_manifest_lines_escape_as_md5sum_does() -> None:
    assert manifest_line("plain.txt", "A" * 32) == b"a" * 32 + b"  plain.txt\n"
    assert manifest_line("a\\b\nc\rd", "0" * 32) == b"\\" + b"0" * 32 + b"  a\\\\b\\nc\\rd\n"
    assert manifest_line("é", "0" * 32) == ("0" * 32 + "  é\n").encode()


def test_manifest_name_avoids_the_files_names() -> None:
    assert pick_manifest_name(["a"]) == "MD5SUMS"
    assert pick_manifest_name(["MD5SUMS", "MD5SUMS.1"]) == "MD5SUMS.2"
    layout = lay_out([Entry("MD5SUMS", 3, "0" * 32)])
    assert layout.manifest.name == "MD5SUMS.1"


@pytest.mark.parametrize("name", ["", "/etc/passwd", "../up", "a/../../b", "a//b", "./a", "a/.", "nul\0"])
def test_names_that_would_not_extract_inside_the_folder_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        lay_out([Entry(name, 1)])


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="two files"):
        lay_out([Entry("a", 1), Entry("a", 2)])
    with pytest.raises(ValueError, match="manifest"):
        lay_out([Entry("x", 1)], manifest_name="x")


def test_gnu_tar_extracts_and_md5sum_checks(tmp_path: Path) -> None:
    files = _files()
    layout = lay_out([Entry(name, len(data), _md5(data)) for name, data in files.items()], mtime=MTIME)
    archive = tmp_path / "job.tar"
    archive.write_bytes(_build(layout, list(files.values())))
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(out)], check=True, capture_output=True)
    for name, data in files.items():
        assert (out / name).read_bytes() == data
    check = subprocess.run(["md5sum", "-c", "MD5SUMS"], cwd=out, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == len(files)
