"""Planner contract: error mapping, parse-once/plan-many caching, and how much the planner reads."""

from __future__ import annotations

import pickle

import pytest

from score.genomics import (
    InvalidInput,
    InvalidRange,
    MalformedData,
    MalformedIndex,
    Piece,
    PreparedObject,
    Region,
    UnknownReference,
    UnsupportedFormat,
    materialize,
    parse_index,
    plan,
    prepare,
)
from score.genomics.bgzf import BGZF_EOF
from score.genomics.vcf import contig_names
from tests.unit.genomics.helpers import HTSLIB_TEST, Sample, meaning, reader

RANGE_BAM = (HTSLIB_TEST / "range.bam").read_bytes()
RANGE_BAI = (HTSLIB_TEST / "range.bam.bai").read_bytes()


def _plan_bam(regions: list[Region] | None, **kwargs: object) -> list[Piece]:
    return plan("BAM", reader(RANGE_BAM), len(RANGE_BAM), RANGE_BAI, "bai", regions, **kwargs)


def test_unknown_reference_is_not_found() -> None:
    with pytest.raises(UnknownReference):
        _plan_bam([Region("chr1")])
    with pytest.raises(UnknownReference):
        _plan_bam([Region("CHROMOSOME_I"), Region("nope", 0, 10)])


@pytest.mark.parametrize(
    ("region", "error"),
    [
        (Region("CHROMOSOME_I", 10, 5), InvalidRange),
        (Region("CHROMOSOME_I", -1, 5), InvalidRange),
        (Region("CHROMOSOME_I", 0, 1 << 32), InvalidRange),
        (Region("*", 0, 10), InvalidInput),
        (Region("", 0, 10), InvalidInput),
    ],
)
def test_bad_regions(region: Region, error: type[Exception]) -> None:
    with pytest.raises(error):
        _plan_bam([region])


def test_empty_region_list_and_empty_interval() -> None:
    with pytest.raises(InvalidInput):
        _plan_bam([])
    pieces = _plan_bam([Region("CHROMOSOME_I", 100, 100)])  # start == end: valid, nothing to send
    assert [(p.kind, p.class_) for p in pieces] == [("range", "header"), ("inline", "body")]


def test_unplaced_reads_only_for_reads(samples: dict[str, Sample]) -> None:
    vcf = samples["vcf_tbi"]
    data = vcf.data()
    with pytest.raises(InvalidInput):
        plan("VCF", reader(data), len(data), vcf.index.read_bytes(), "tbi", [Region("*")])


def test_format_and_index_mismatches() -> None:
    with pytest.raises(UnsupportedFormat):
        plan("BAM", reader(RANGE_BAM), len(RANGE_BAM), (HTSLIB_TEST / "index.vcf.gz.tbi").read_bytes(), "tbi")
    with pytest.raises(UnsupportedFormat):
        plan("SAM", reader(RANGE_BAM), len(RANGE_BAM), RANGE_BAI, "bai")  # type: ignore[arg-type]
    with pytest.raises(UnsupportedFormat):
        parse_index(RANGE_BAI, "gzi")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        plan("BAM", reader(RANGE_BAM), len(RANGE_BAM), RANGE_BAI)  # raw bytes need their kind
    with pytest.raises(MalformedData):  # a VCF.gz is not a BAM
        vcf = (HTSLIB_TEST / "bgziptest.txt.gz").read_bytes()
        plan("BAM", reader(vcf), len(vcf), RANGE_BAI, "bai")


def test_truncated_index_through_plan() -> None:
    with pytest.raises(MalformedIndex):
        _plan_bam_index(RANGE_BAI[:100])
    with pytest.raises(MalformedIndex):
        _plan_bam_index(b"")


def _plan_bam_index(index: bytes) -> list[Piece]:
    return plan("BAM", reader(RANGE_BAM), len(RANGE_BAM), index, "bai", [Region("CHROMOSOME_I")])


def test_index_of_another_object_is_detected() -> None:
    mpileup = (HTSLIB_TEST.parent.parent / "samtools/test/mpileup/mpileup.1.bam.bai").read_bytes()
    with pytest.raises((MalformedIndex, MalformedData)):
        _plan_bam_index(mpileup)  # 86 references in the index, 7 in the header


def test_short_reads_from_the_store_are_errors() -> None:
    def flaky(start: int, end: int) -> bytes:
        return RANGE_BAM[start : end - 1]

    with pytest.raises(MalformedData):
        plan("BAM", flaky, len(RANGE_BAM), RANGE_BAI, "bai", None)


def test_parse_once_plan_many_and_pickle() -> None:
    prepared = prepare("BAM", reader(RANGE_BAM), len(RANGE_BAM), parse_index(RANGE_BAI, "bai"))
    restored = pickle.loads(pickle.dumps(prepared))  # noqa: S301 - our own bytes; a server may cache these
    assert isinstance(restored, PreparedObject)
    for regions in (None, [Region("CHROMOSOME_II", 1000, 2000)], [Region("CHROMOSOME_III")]):
        direct = meaning(_plan_bam(regions))
        assert meaning(prepared.plan(reader(RANGE_BAM), regions)) == direct
        assert meaning(restored.plan(reader(RANGE_BAM), regions)) == direct
        assert meaning(plan("BAM", reader(RANGE_BAM), len(RANGE_BAM), prepared, None, regions)) == direct
    with pytest.raises(InvalidInput):
        plan("CRAM", reader(RANGE_BAM), len(RANGE_BAM), prepared, None, None)


def test_plan_reads_little(samples: dict[str, Sample]) -> None:
    """Index-only, whole-block planning of a cached object reads only 18-byte block headers."""
    sample = samples["big"]
    data = sample.data()
    log: list[tuple[int, int]] = []

    def logged(start: int, end: int) -> bytes:
        log.append((start, end))
        return data[start:end]

    prepared = prepare("BAM", logged, len(data), sample.index.read_bytes(), "bai")
    assert sum(e - s for s, e in log) < 300_000  # header blocks (batched) and the EOF check
    log.clear()
    prepared.plan(logged, [Region("CHROMOSOME_I", 500_000, 600_000)], refine=False, whole_blocks=True)
    assert log and all(e - s == 18 for s, e in log)
    log.clear()
    prepared.plan(logged, [Region("CHROMOSOME_I", 500_000, 500_100)])
    assert sum(e - s for s, e in log) < 1_500_000  # refinement reads a bounded neighbourhood


def test_materialize_and_whole_file_identity() -> None:
    pieces = _plan_bam(None)
    assert materialize(pieces, reader(RANGE_BAM)) == RANGE_BAM
    assert pieces[-1] == Piece("inline", data=BGZF_EOF, class_="body")
    assert [p.class_ for p in pieces] == ["header", "body", "body"]


def test_header_only_ignores_regions() -> None:
    pieces = _plan_bam([Region("CHROMOSOME_I")], header_only=True)
    assert [(p.kind, p.class_) for p in pieces] == [("range", "header"), ("inline", "body")]


def test_bcf_contig_dictionary_honours_idx() -> None:
    lines = [
        b"##fileformat=VCFv4.2",
        b"##contig=<ID=chrB,length=10,IDX=1>",
        b"##contig=<ID=chrA,length=10,IDX=0>",
        b"##contig=<ID=chrC,length=10>",
        b"##contig=<ID=chrA,length=10>",
    ]
    assert contig_names(lines) == ("chrA", "chrB", "chrC")
    assert contig_names([b"##contig=<length=5,ID=x>", b"##contig=<ID=y>"]) == ("x", "y")


def test_index_pointing_past_the_object_is_malformed(samples: dict[str, Sample]) -> None:
    sample = samples["big"]
    data = sample.data()[:1_000_000]  # an index for a longer object than the one stored
    for refine in (False, True):
        with pytest.raises(MalformedIndex):
            plan(
                "BAM",
                reader(data),
                len(data),
                sample.index.read_bytes(),
                "bai",
                [Region("CHROMOSOME_X")],
                refine=refine,
            )
