"""Region parsing for ``score-client view``: samtools' syntax, including contig names with ':' and '-'."""

from __future__ import annotations

from pathlib import Path

import pytest

from score.client.genomics.regions import (
    Region,
    RegionError,
    UnknownContig,
    parse_range,
    parse_region,
    plan_windows,
    read_bed,
)

COLONS = ["chr1", "chr1:100", "chr1:100-200", "chr2:100-200", "chr3", "chr1,chr3"]
HLA = ["chr6", "HLA-A*01:01:01:01", "HLA-B*07:02:01", "chrUn_KI270742v1"]


@pytest.mark.parametrize(
    ("text", "contig", "start", "end"),
    [
        ("chr1", "chr1", 0, None),
        ("chr1:100-200", "chr1", 99, 200),
        ("chr1:100", "chr1", 99, None),
        ("chr1:100-", "chr1", 99, None),
        ("chr1:-200", "chr1", 0, 200),
        ("chr1:1,000-2,000", "chr1", 999, 2000),
        ("chr1:0-10", "chr1", 0, 10),  # position 0 reads as 1, as in htslib
        ("chr1:1k-1.5k", "chr1", 999, 1500),
        ("chr1:", "chr1", 0, None),
        ("  chr1:5-5 ", "chr1", 4, 5),
        ("{chr1:100}", "chr1:100", 0, None),
        ("{chr1:100}:5-6", "chr1:100", 4, 6),
        ("{chr1}:100-200", "chr1", 99, 200),
    ],
)
def test_samtools_syntax_without_a_header(text: str, contig: str, start: int, end: int | None) -> None:
    region = parse_region(text)
    assert (region.contig, region.start, region.end) == (contig, start, end)


@pytest.mark.parametrize(
    ("text", "contig", "start", "end"),
    [
        ("chr1", "chr1", 0, None),
        ("chr1:100", "chr1:100", 0, None),  # the verbatim name wins over chr1 from 100
        ("chr1:100-200", "chr1:100-200", 0, None),
        ("chr2:100-200", "chr2:100-200", 0, None),  # chr2 is no contig: only the verbatim reading is left
        ("chr1:100-200:1-50", "chr1:100-200", 0, 50),
        ("{chr1}:100", "chr1", 99, None),
        ("{chr1}:100-200", "chr1", 99, 200),
        ("{chr1:100-200}:1-150", "chr1:100-200", 0, 150),
        ("chr1,chr3", "chr1,chr3", 0, None),  # a comma in a name is not a list separator
        ("chr1,chr3:5-9", "chr1,chr3", 4, 9),
        ("chr1:2,000", "chr1", 1999, None),
    ],
)
def test_names_with_colons_resolved_against_the_header(text: str, contig: str, start: int, end: int | None) -> None:
    region = parse_region(text, COLONS)
    assert (region.contig, region.start, region.end) == (contig, start, end)


@pytest.mark.parametrize(
    ("text", "contig", "start", "end"),
    [
        ("HLA-A*01:01:01:01", "HLA-A*01:01:01:01", 0, None),
        ("HLA-A*01:01:01:01:100-200", "HLA-A*01:01:01:01", 99, 200),
        ("{HLA-A*01:01:01:01}:3", "HLA-A*01:01:01:01", 2, None),
        ("HLA-B*07:02:01:1-10", "HLA-B*07:02:01", 0, 10),
        ("chrUn_KI270742v1:10-20", "chrUn_KI270742v1", 9, 20),
    ],
)
def test_hla_alleles_and_dashes(text: str, contig: str, start: int, end: int | None) -> None:
    region = parse_region(text, HLA)
    assert (region.contig, region.start, region.end) == (contig, start, end)


def test_an_ambiguous_string_says_how_it_was_read() -> None:
    region = parse_region("chr1:100", COLONS)
    assert region.contig == "chr1:100"
    assert "{chr1}:100" in region.note
    assert parse_region("chr1:100-200:1-50", COLONS).note == ""
    assert parse_region("chr3", COLONS).note == ""


def test_unknown_contig_is_named_with_suggestions_and_valid_names() -> None:
    with pytest.raises(UnknownContig) as caught:
        parse_region("chrZ:1-100", COLONS)
    message = str(caught.value)
    assert caught.value.contig == "chrZ"
    assert "unknown contig 'chrZ'" in message and "'chrZ:1-100'" in message
    assert "chr1, chr1:100" in message  # lists valid names

    with pytest.raises(UnknownContig) as caught:
        parse_region("1:5-10", ["chr1", "chr2", *[f"chrUn{i}" for i in range(20)]])
    assert "did you mean chr1" in str(caught.value)
    assert "(22 in all)" in str(caught.value)

    with pytest.raises(UnknownContig, match="unknown contig 'nope'"):
        parse_region("nope", COLONS)
    with pytest.raises(UnknownContig, match="unknown contig 'chr9'"):
        parse_region("{chr9}:1-2", COLONS)
    with pytest.raises(UnknownContig, match="unknown contig 'HLA-A\\*02:01'"):  # a range after the colon
        parse_region("HLA-A*02:01:5-10", HLA)
    with pytest.raises(UnknownContig, match="unknown contig 'HLA-A\\*02:01:x'"):  # no range: the whole string
        parse_region("HLA-A*02:01:x", HLA)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty region"),
        ("   ", "empty region"),
        ("{chr1", "mismatching braces"),
        ("{}:1-2", "empty contig name"),
        ("{chr1}x", "unexpected 'x'"),
        ("chr1:abc", "'abc' is not a position"),
        ("chr1:10-abc", "'abc' is not a position"),
        ("chr1:200-100", "the end (100) is before the start (200)"),
        ("chr1:1.5-10", "not a whole number"),
        ("chr1:1-2-3", "'2-3' is not a position"),
    ],
)
def test_bad_regions_are_explained(text: str, message: str) -> None:
    with pytest.raises(RegionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_region(text)


def test_parse_range_and_display_round_trip() -> None:
    assert parse_range("10-20") == (9, 20)
    assert parse_range("-5") == (0, 5)
    assert str(Region("chr1", 99, 200)) == "chr1:100-200"
    assert str(Region("chr1:100", 0, None)) == "{chr1:100}"
    assert str(Region("chr1", 9, None)) == "chr1:10-"
    for text, contigs in [("chr1:100-200", ["chr1"]), ("{chr1:100}:5-6", COLONS), ("HLA-B*07:02:01:1-10", HLA)]:
        region = parse_region(text, contigs)
        again = parse_region(str(region), contigs)
        assert (again.contig, again.start, again.end) == (region.contig, region.start, region.end)


def test_containment_and_overlap() -> None:
    region = Region("c", 10, 20)
    assert region.contains(10, 20) and not region.contains(9, 20) and not region.contains(10, 21)
    assert region.overlaps(19, 30) and not region.overlaps(20, 30) and not region.overlaps(0, 10)
    assert Region("c", 10, None).contains(10, 10**9)


def test_windows_sorted_by_header_order_and_merged() -> None:
    order = ["chrA", "chrB", "chrC"]
    regions = [
        parse_region("chrC:1-10", order),
        parse_region("chrA:50-60", order),
        parse_region("chrA:10-20", order),
        parse_region("chrA:15-30", order),  # overlaps the previous
        parse_region("chrA:31-40", order),  # abuts it (1-based 30 then 31)
        parse_region("chrB", order),
        parse_region("chrB:5-6", order),  # inside the whole contig
    ]
    windows = plan_windows(regions, order)
    assert [(w.contig, w.start, w.end, len(w.members)) for w in windows] == [
        ("chrA", 9, 40, 3),
        ("chrA", 49, 60, 1),
        ("chrB", 0, None, 2),
        ("chrC", 0, 10, 1),
    ]


def test_bed_files(tmp_path: Path) -> None:
    bed = tmp_path / "r.bed"
    bed.write_text("track name=x\n# comment\nchr1\t99\t200\textra\tcols\n\nchr1:100\t0\t10\nchr2 5 6\n")
    regions = read_bed(bed)
    assert [(r.contig, r.start, r.end) for r in regions] == [("chr1", 99, 200), ("chr1:100", 0, 10), ("chr2", 5, 6)]

    spaced = tmp_path / "spaced.bed"
    spaced.write_text("chr2 5 6\n")
    assert [(r.contig, r.start, r.end) for r in read_bed(spaced)] == [("chr2", 5, 6)]

    for content, message in [
        ("chr1\t5\n", "needs contig, start and end"),
        ("chr1\tx\t5\n", "whole numbers"),
        ("chr1\t9\t5\n", "0 <= start <= end"),
    ]:
        bed.write_text(content)
        with pytest.raises(RegionError, match=message):
            read_bed(bed)
    with pytest.raises(RegionError, match="cannot read BED file"):
        read_bed(tmp_path / "missing.bed")
