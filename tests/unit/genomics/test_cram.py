"""CRAM structure: ITF8/LTF8, the header container, the EOF container, and a CRAM without its EOF marker."""

from __future__ import annotations

from pathlib import Path

import pytest

from score.genomics import MalformedData, Region, UnsupportedFormat, plan, prepare
from score.genomics.cram import (
    CRAM3_EOF,
    parse_cram_layout,
    read_itf8,
    read_ltf8,
    sam_header_names,
    write_itf8,
    write_ltf8,
)
from tests.unit.genomics.helpers import CE_FA, HTSLIB_TEST, reader, reconstruct, run

RANGE_CRAM = HTSLIB_TEST / "range.cram"


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, "00"), (127, "7f"), (128, "8080"), (449, "81c1"), (16384, "c04000"), (-1, "ffffffff0f"), (-2, "ffffffff0e")],
)
def test_itf8_known_encodings(value: int, encoded: str) -> None:
    raw = bytes.fromhex(encoded)
    assert write_itf8(value) == raw
    assert read_itf8(raw, 0) == (value, len(raw))


def test_itf8_ltf8_round_trip() -> None:
    for v in [0, 1, 127, 128, 2**14 - 1, 2**14, 2**21, 2**28 - 1, 2**28, 2**31 - 1, -1, -(2**31)]:
        assert read_itf8(write_itf8(v), 0) == (v, len(write_itf8(v)))
    for v in [0, 127, 128, 2**14, 2**21, 2**28, 2**35, 2**42, 2**49, 2**56 - 1, 2**56, 2**63 - 1, -1, -(2**63)]:
        assert read_ltf8(write_ltf8(v), 0) == (v, len(write_ltf8(v)))
    with pytest.raises(MalformedData):
        read_itf8(b"\xe0\x01", 0)


def test_layout_of_range_cram() -> None:
    data = RANGE_CRAM.read_bytes()
    layout = parse_cram_layout(reader(data), len(data))
    assert (layout.major, layout.minor) == (3, 0)
    assert layout.header.end == 729  # the first CRAI container offset
    assert layout.has_eof and layout.eof_start == len(data) - 38 and data[-38:] == CRAM3_EOF
    assert layout.header.names[:2] == ("CHROMOSOME_I", "CHROMOSOME_II") and len(layout.header.names) == 7


def test_sam_header_names_use_sq_order() -> None:
    text = "@HD\tVN:1.6\n@SQ\tLN:5\tSN:b\n@RG\tID:x\n@SQ\tSN:a\tLN:9\n"
    assert sam_header_names(text) == ("b", "a")


def test_cram_without_eof_gets_an_inline_one(tmp_path: Path) -> None:
    original = RANGE_CRAM.read_bytes()
    assert original[-76:] == CRAM3_EOF * 2  # this test file happens to end with two EOF containers
    data = original[:-76]
    index = (HTSLIB_TEST / "range.cram.crai").read_bytes()
    pieces = plan("CRAM", reader(data), len(data), index, "crai", None)
    assert pieces[-1].kind == "inline" and pieces[-1].data == CRAM3_EOF
    assert pieces[-2].end == len(data)
    out = reconstruct(pieces, data, tmp_path / "fixed.cram")
    assert out.read_bytes() == original[:-38]
    run("samtools", "quickcheck", out)


def test_not_a_cram_or_unsupported_version() -> None:
    index = (HTSLIB_TEST / "range.cram.crai").read_bytes()
    bam = (HTSLIB_TEST / "range.bam").read_bytes()
    with pytest.raises(MalformedData):
        prepare("CRAM", reader(bam), len(bam), index, "crai")
    cram4 = bytearray(RANGE_CRAM.read_bytes())
    cram4[4] = 4
    with pytest.raises(UnsupportedFormat):
        prepare("CRAM", reader(bytes(cram4)), len(cram4), index, "crai")


def test_reference_is_not_needed_to_plan(tmp_path: Path) -> None:
    """Planning reads container headers only; decoding the result is where the reference comes in."""
    data = RANGE_CRAM.read_bytes()
    pieces = plan("CRAM", reader(data), len(data), (HTSLIB_TEST / "range.cram.crai").read_bytes(), "crai", None)
    out = reconstruct(pieces, data, tmp_path / "copy.cram")
    assert run("samtools", "view", "-c", "-T", CE_FA, out).stdout.strip() == "112"


@pytest.mark.parametrize("version", ["2.1", "3.0", "3.1"])
def test_cram_versions_plan_correctly(version: str, tmp_path: Path) -> None:
    cram = tmp_path / f"v{version}.cram"
    run(
        "samtools", "view", "-C", "-T", CE_FA, "--output-fmt-option", f"version={version}",
        "--output-fmt-option", "seqs_per_slice=10", "-o", cram, HTSLIB_TEST / "range.bam",
    )  # fmt: skip
    run("samtools", "index", cram)
    data = cram.read_bytes()
    prepared = prepare("CRAM", reader(data), len(data), Path(f"{cram}.crai").read_bytes(), "crai")
    assert prepared.cram is not None and f"{prepared.cram.major}.{prepared.cram.minor}" == version
    assert prepared.cram.has_eof and data.endswith(prepared.cram.eof_bytes)
    for name, region in (("CHROMOSOME_II", "CHROMOSOME_II:2000-3000"), ("CHROMOSOME_III", "CHROMOSOME_III")):
        start = 1999 if ":" in region else None
        end = 3000 if ":" in region else None
        out = reconstruct(prepared.plan(reader(data), [Region(name, start, end)]), data, tmp_path / "out.cram")
        run("samtools", "index", out)
        got = run("samtools", "view", "-T", CE_FA, out, region).stdout
        assert got == run("samtools", "view", "-T", CE_FA, cram, region).stdout and got
