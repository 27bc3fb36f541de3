"""Index parsers (BAI, CSI, TBI, CRAI) and the binning arithmetic, on indexes written by samtools/tabix/bcftools."""

from __future__ import annotations

import gzip
import random

import pysam
import pytest

from score.genomics import MalformedIndex, parse_index
from score.genomics.bai import parse_bai
from score.genomics.binning import (
    bin_limit,
    bin_span,
    merge_chunks,
    query_chunks,
    reg2bins_flat,
)
from score.genomics.crai import parse_crai
from score.genomics.csi import parse_csi
from score.genomics.tabix import parse_tbi
from tests.unit.genomics.helpers import HTSLIB_TEST, Sample, run


def spec_reg2bins_bai(beg: int, end: int) -> list[int]:
    """SAMv1 §5.3 reg2bins, transcribed literally."""
    end -= 1
    out = [0]
    for first, shift in ((1, 26), (9, 23), (73, 20), (585, 17), (4681, 14)):
        out.extend(range(first + (beg >> shift), first + (end >> shift) + 1))
    return out


def spec_reg2bins_csi(beg: int, end: int, min_shift: int, depth: int) -> list[int]:
    """CSIv1 reg2bins, transcribed literally."""
    out = []
    end -= 1
    s, t = min_shift + depth * 3, 0
    for level in range(depth + 1):
        out.extend(range(t + (beg >> s), t + (end >> s) + 1))
        s -= 3
        t += 1 << (level * 3)
    return out


def test_reg2bins_matches_the_specs() -> None:
    rng = random.Random(1)
    for _ in range(300):
        beg = rng.randrange(0, 1 << 29)
        end = min(1 << 29, beg + rng.choice([1, 100, 20_000, 3_000_000]))
        assert reg2bins_flat(beg, end) == spec_reg2bins_bai(beg, end)
        assert reg2bins_flat(beg, end, 14, 6) == spec_reg2bins_csi(beg, end, 14, 6)
    assert reg2bins_flat(5, 5) == []


def test_bin_spans_tile_the_coordinate_space() -> None:
    assert bin_span(0, 14, 5) == (0, 1 << 29)
    assert bin_span(4681, 14, 5) == (0, 1 << 14)
    assert bin_span(4682, 14, 5) == (1 << 14, 2 << 14)
    assert bin_limit(5) == 37449
    for b in (1, 9, 73, 585, 4681, 37448):
        start, end = bin_span(b, 14, 5)
        assert b in reg2bins_flat(start, end) and b in reg2bins_flat(end - 1, end)


def test_merge_chunks() -> None:
    assert merge_chunks([(10, 20), (0, 5), (5, 8), (15, 30), (40, 50)]) == [(0, 8), (10, 30), (40, 50)]


def _idxstats(path: str) -> list[tuple[int, int]]:
    rows = [line.split("\t") for line in run("samtools", "idxstats", path).stdout.splitlines()]
    return [(int(r[2]), int(r[3])) for r in rows if r[0] != "*"]


def test_bai_and_csi_agree_with_samtools(samples: dict[str, Sample]) -> None:
    bai = parse_bai(samples["big"].index.read_bytes())
    csi = parse_csi(samples["big_csi"].index.read_bytes())
    expected = _idxstats(str(samples["big"].path))
    assert (bai.min_shift, bai.depth) == (14, 5)
    # samtools sizes CSI to the longest contig (1 Mbp): depth 2 addresses 2^20 positions
    assert (csi.min_shift, csi.depth, csi.max_position) == (14, 2, 1 << 20)
    assert csi.meta_bin == bin_limit(2) + 1 == 74
    for index in (bai, csi):
        assert [(r.meta[2], r.meta[3]) if r.meta else (0, 0) for r in index.refs] == expected
        assert index.n_no_coor == 500
    assert bai.kind == "bai" and len(bai.refs[0].linear) > 60 and not csi.refs[0].linear
    assert csi.refs[0].loffsets and set(csi.refs[0].loffsets) == set(csi.refs[0].bins)
    # the BAI linear index is the tighter lower bound; CSI's per-bin loffset can only be looser
    # (htslib folds small bins into their parent), never past the first record of the region
    first_record = _first_overlapping_voffset(samples["big"], 250_000, 250_100)
    assert query_chunks(csi, 0, 250_000, 250_100)[1] <= query_chunks(bai, 0, 250_000, 250_100)[1] <= first_record


def _first_overlapping_voffset(sample: Sample, beg: int, end: int) -> int:
    with pysam.AlignmentFile(str(sample.path)) as f:
        v = f.tell()
        for r in f.fetch(until_eof=True):
            if r.reference_id == 0 and r.reference_start < end and (r.reference_end or r.reference_start + 1) > beg:
                return v
            v = f.tell()
    raise AssertionError("no record")


def test_tbi_has_names_and_tabix_config(samples: dict[str, Sample]) -> None:
    tbi = parse_tbi(samples["vcf_tbi"].index.read_bytes())
    assert tbi.names == ("1", "2", "10")
    assert tbi.tabix is not None and tbi.tabix.format == 2 and tbi.tabix.meta_char == "#"
    csi = parse_csi(samples["vcf_csi"].index.read_bytes())
    assert csi.names == ("1", "2", "10") and csi.tabix == tbi.tabix
    bcf = parse_csi(samples["bcf"].index.read_bytes())
    assert bcf.names is None and len(bcf.refs) == 86  # BCF CSI: ids from the header's contig dictionary


def test_crai_parses_and_selects_containers() -> None:
    crai = parse_crai((HTSLIB_TEST / "range.cram.crai").read_bytes())
    assert crai.container_offsets == (729, 4893, 9247)
    assert len(crai.entries) == 6
    # CHROMOSOME_II (id 1) has slices in both the first and the second (multi-reference) container
    assert crai.containers(1, 0, 10_000) == [729, 4893]
    assert crai.containers(1, 2_975, 2_976) == [4893]  # 1-based start 2976 is 0-based 2975
    assert crai.containers(1, 2_953, 2_954) == [729]  # last base of the slice 1-based [1136, 2954]
    assert crai.containers(1, 2_954, 2_975) == []  # the gap between the two slices
    assert crai.containers(3, 0, 1) == []
    assert crai.container_end(4893, 11_144) == 9247 and crai.container_end(9247, 11_144) == 11_144
    assert crai.unmapped_containers() == []


INDEX_FILES = [
    ("bai", HTSLIB_TEST / "range.bam.bai"),
    ("csi", HTSLIB_TEST / "index.bam.csi"),
    ("tbi", HTSLIB_TEST / "index.vcf.gz.tbi"),
    ("csi", HTSLIB_TEST / "index.vcf.gz.csi"),
    ("crai", HTSLIB_TEST / "range.cram.crai"),
]


@pytest.mark.parametrize(("kind", "path"), INDEX_FILES)
def test_truncated_or_foreign_indexes_are_rejected(kind: str, path) -> None:
    data = path.read_bytes()
    parse_index(data, kind)  # the intact file parses
    for cut in (0, 3, 10, len(data) // 3, len(data) // 2, len(data) - 9):
        with pytest.raises(MalformedIndex):
            parse_index(data[:cut], kind)
    with pytest.raises(MalformedIndex):
        parse_index(b"\x00" * 64, kind)


@pytest.mark.parametrize("kind", ["tbi", "csi"])
def test_truncated_payload_inside_valid_gzip_is_rejected(kind: str) -> None:
    path = HTSLIB_TEST / ("index.vcf.gz.tbi" if kind == "tbi" else "index.vcf.gz.csi")
    raw = gzip.decompress(path.read_bytes())
    with pytest.raises(MalformedIndex):
        parse_index(gzip.compress(raw[: len(raw) - 40]), kind)


def test_crai_bad_lines_are_rejected() -> None:
    with pytest.raises(MalformedIndex):
        parse_index(b"0\t1\t2\n", "crai")
    with pytest.raises(MalformedIndex):
        parse_index(gzip.compress(b"0\t1\tx\t3\t4\t5\n"), "crai")
    with pytest.raises(MalformedIndex):
        parse_index(b"-3\t1\t2\t3\t4\t5\n", "crai")
