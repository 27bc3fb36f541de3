"""End to end against the reference tools: a reconstructed ticket holds exactly the records samtools/bcftools find.

For every sample and region, the planned pieces are concatenated the way an htsget client does (ranges read from
the local file, inline data as is); the result must be a valid file (quickcheck / indexable) whose records in
the region equal the original's. Extra records outside the region are allowed (htsget may return more).
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import pytest

from score.genomics import Piece, Region, plan, prepare
from score.genomics.bgzf import BGZF_EOF, BlockCache
from tests.unit.genomics.helpers import (
    CE_FA,
    Sample,
    all_records,
    bgzf_blocks,
    meaning,
    reader,
    reconstruct,
    region_records,
    run,
)

SAMPLES = [
    "range",
    "range_csi",
    "mpileup",
    "colons",
    "big",
    "big_csi",
    "big_reblocked",
    "range_cram",
    "big_cram",
    "vcf_tbi",
    "vcf_csi",
    "vcf_z",
    "bcf",
    "big_vcf",
    "big_bcf",
]


@functools.cache
def _positions(path: Path, fmt: str) -> dict[str, list[int]]:
    """0-based start of every record, per reference, from the tools' own output."""
    sample = Sample("", fmt, path, path, "", {}, CE_FA if fmt == "CRAM" else None)
    out: dict[str, list[int]] = {}
    ref_col, pos_col = (2, 3) if fmt in ("BAM", "CRAM") else (0, 1)
    for line in all_records(sample, path):
        f = line.split("\t")
        if f[ref_col] != "*":
            out.setdefault(f[ref_col], []).append(int(f[pos_col]) - 1)
    return out


def standard_regions(sample: Sample) -> list[tuple[str, list[Region]]]:
    """At least ten regions per sample: whole contigs, tiny, edges, past the end, empty, open-ended, several."""
    pos = _positions(sample.path, sample.fmt)
    by_count = sorted(pos, key=lambda n: -len(pos[n]))
    a = by_count[0]
    b = by_count[1] if len(by_count) > 1 else a
    length = sample.lengths.get(a) or (max(pos[a]) + 1000)
    mid = sorted(pos[a])[len(pos[a]) // 2]
    empty_contigs = [n for n in sample.lengths if n not in pos]
    regions = [
        ("whole", [Region(a)]),
        ("tiny-1bp", [Region(a, mid, mid + 1)]),
        ("tiny-100bp", [Region(a, mid, mid + 100)]),
        ("mid-20kb", [Region(a, max(0, mid - 10_000), mid + 10_000)]),
        ("contig-start", [Region(a, 0, 500)]),
        ("spans-end", [Region(a, max(0, length - 1000), length + 5000)]),
        ("past-end", [Region(a, length + 10, length + 1000)]),
        ("empty", [Region(a, mid, mid)]),
        ("start-only", [Region(a, start=mid)]),
        ("end-only", [Region(a, end=mid)]),
        ("other-contig", [Region(b)]),
        ("several", [Region(a, mid, mid + 1000), Region(a, mid + 500, mid + 3000), Region(b, 0, 2000)]),
    ]
    if empty_contigs:
        regions.append(("contig-without-records", [Region(empty_contigs[-1])]))
    if sample.fmt in ("BAM", "CRAM"):
        regions.append(("unplaced", [Region("*")]))
    return regions


def _check_structure(sample: Sample, data: bytes, pieces: list[Piece]) -> None:
    """Header first, EOF last, body ranges sorted, disjoint and (for BGZF) on block boundaries."""
    classes = [p.class_ for p in pieces]
    assert classes == sorted(classes, key=lambda c: c != "header"), classes
    body = [p for p in pieces if p.class_ == "body"]
    if sample.fmt == "CRAM":
        assert data[body[-1].start : body[-1].end] == data[-38:]
    else:
        assert body[-1].kind == "inline" and body[-1].data == BGZF_EOF
    ranges = [(p.start, p.end) for p in pieces if p.kind == "range"]
    assert all(s < e for s, e in ranges)
    assert all(e1 <= s2 for (_, e1), (s2, _) in itertools.pairwise(ranges))  # sorted, disjoint
    body_ranges = [(p.start, p.end) for p in body[:-1] if p.kind == "range"]  # [:-1]: a CRAM EOF range may touch
    assert all(e1 < s2 for (_, e1), (s2, _) in itertools.pairwise(body_ranges))  # touching ones are merged
    if sample.fmt != "CRAM":
        starts = {o for o, _ in bgzf_blocks(data)} | {len(data)}
        for s, e in ranges:
            assert s in starts and e in starts, (s, e)


def _check_regions(sample: Sample, tmp_path: Path, labels: set[str] | None = None, **options: object) -> None:
    data = sample.data()
    read = reader(data)
    prepared = prepare(sample.fmt, read, len(data), sample.index.read_bytes(), sample.index_kind)
    suffix = {"BAM": ".bam", "CRAM": ".cram", "VCF": ".vcf.gz", "BCF": ".bcf"}[sample.fmt]
    for label, regions in standard_regions(sample):
        if labels is not None and label not in labels:
            continue
        pieces = prepared.plan(read, regions, **options)
        _check_structure(sample, data, pieces)
        out = reconstruct(pieces, data, tmp_path / f"{label}{suffix}")
        if sample.fmt in ("BAM", "CRAM"):
            run("samtools", "quickcheck", out)
        expected = region_records(sample, sample.path, regions, index_it=False)
        got = region_records(sample, out, regions, index_it=True)
        assert sorted(got) == sorted(expected), (sample.name, label, options, len(got), len(expected))
        if label in ("empty", "past-end", "contig-without-records") and sample.fmt != "CRAM":
            assert [p.class_ for p in pieces if p.class_ == "body"] == ["body"], label  # just the EOF block


LARGE_REGIONS = {"whole", "start-only", "end-only"}


@pytest.mark.parametrize("name", SAMPLES)
def test_regions_match_reference_tools(samples: dict[str, Sample], name: str, tmp_path: Path) -> None:
    labels = None
    if name in ("big_csi", "big_reblocked"):  # same records as "big": skip the multi-megabyte reconstructions
        labels = {label for label, _ in standard_regions(samples[name])} - LARGE_REGIONS
    _check_regions(samples[name], tmp_path, labels)


SMALL_REGIONS = {"tiny-1bp", "tiny-100bp", "mid-20kb", "contig-start", "spans-end", "several", "unplaced"}


@pytest.mark.parametrize("name", [n for n in SAMPLES if "cram" not in n])
def test_regions_without_refinement(samples: dict[str, Sample], name: str, tmp_path: Path) -> None:
    """Index-only planning (no record scanning) is larger but must be just as correct."""
    _check_regions(samples[name], tmp_path, SMALL_REGIONS, refine=False)


@pytest.mark.parametrize("name", ["range", "mpileup", "big", "big_csi"])
def test_whole_block_mode_on_htslib_bams(samples: dict[str, Sample], name: str, tmp_path: Path) -> None:
    """htslib never splits a BAM record across blocks, so untrimmed whole-block ranges are valid there."""
    _check_regions(samples[name], tmp_path, SMALL_REGIONS, whole_blocks=True)
    _check_regions(samples[name], tmp_path, SMALL_REGIONS, whole_blocks=True, refine=False)


@pytest.mark.parametrize("name", ["big", "big_vcf", "big_bcf"])
def test_group_limit_keeps_records(samples: dict[str, Sample], name: str, tmp_path: Path) -> None:
    """Joining runs to bound the ticket size never loses a record."""
    _check_regions(samples[name], tmp_path, {"tiny-1bp", "several", "mid-20kb"}, max_groups=1)


@pytest.mark.parametrize("name", SAMPLES)
def test_whole_file_and_header_only(samples: dict[str, Sample], name: str, tmp_path: Path) -> None:
    sample = samples[name]
    data = sample.data()
    read = reader(data)
    pieces = plan(sample.fmt, read, len(data), sample.index.read_bytes(), sample.index_kind, None)
    out = reconstruct(pieces, data, tmp_path / "whole")
    prepared = prepare(sample.fmt, read, len(data), sample.index.read_bytes(), sample.index_kind)
    if prepared.header_aligned:
        assert out.read_bytes() == data  # nothing re-encoded: byte-identical
    else:
        assert all_records(sample, out) == all_records(sample, sample.path)

    header = prepared.plan(read, None, header_only=True)
    assert [p.class_ for p in header][:-1] == ["header"] * (len(header) - 1)
    out = reconstruct(header, data, tmp_path / "header")
    assert all_records(sample, out) == []
    if sample.fmt in ("BAM", "CRAM"):
        ref = ["-T", str(sample.reference)] if sample.reference else []
        run("samtools", "quickcheck", out)
        got = run("samtools", "view", "-H", "--no-PG", *ref, out).stdout
        assert got == run("samtools", "view", "-H", "--no-PG", *ref, sample.path).stdout
    else:
        assert (
            run("bcftools", "view", "--no-version", "-h", out).stdout
            == run("bcftools", "view", "--no-version", "-h", sample.path).stdout
        )


@pytest.mark.parametrize("name", ["big", "big_vcf", "big_bcf", "range"])
@pytest.mark.parametrize("cache_bytes", [256 * 1024, 16 * 1024 * 1024])
def test_a_block_cache_kept_between_plans_changes_no_piece(
    samples: dict[str, Sample], name: str, cache_bytes: int
) -> None:
    """The server keeps inflated blocks and compressed edges of an object version between tickets: every plan,
    the first and the repeated ones, small cache (evicting) or large, has exactly the uncached plan's pieces (by
    what they decode to: re-compressed edges may differ in their compressed bytes, see ``meaning``)."""
    sample = samples[name]
    data = sample.data()
    read = reader(data)
    prepared = prepare(sample.fmt, read, len(data), sample.index.read_bytes(), sample.index_kind)
    cache = BlockCache(cache_bytes)
    for _round in range(2):
        for _label, regions in standard_regions(sample):
            assert meaning(prepared.plan(read, regions, cache=cache)) == meaning(prepared.plan(read, regions))
    assert 0 < cache.used <= cache_bytes
