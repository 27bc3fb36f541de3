"""Sample files for the planner tests, built once per session with samtools / bcftools / tabix."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from tests.unit.genomics.helpers import (
    CE_FA,
    HTSLIB_TEST,
    SAMTOOLS_TEST,
    Sample,
    make_big_sam,
    make_big_vcf,
    run,
    run_bytes,
    write_bgzf,
)

REQUIRED_TOOLS = ("samtools", "bcftools", "tabix", "bgzip")


def _lengths_from_bam(path: Path) -> dict[str, int]:
    out = run("samtools", "view", "-H", path).stdout
    lengths = {}
    for line in out.splitlines():
        if line.startswith("@SQ"):
            fields = dict(f.split(":", 1) for f in line.split("\t")[1:])
            lengths[fields["SN"]] = int(fields["LN"])
    return lengths


def _lengths_from_vcf(path: Path) -> dict[str, int]:
    lengths = {}
    for line in run("bcftools", "view", "-h", path).stdout.splitlines():
        if line.startswith("##contig=<"):
            fields = dict(f.split("=", 1) for f in line[len("##contig=<") : -1].split(","))
            lengths[fields["ID"]] = int(fields.get("length", 0))
    return lengths


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Sample]:
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    # Fail, not skip: a skipped genomics suite would hide a broken feature. .ci/run installs these.
    assert not missing and HTSLIB_TEST.is_dir(), (
        f"htslib test data or tools missing ({missing}): apt-get install samtools bcftools tabix htslib-test "
        "samtools-test (.ci/run does it)"
    )
    d = tmp_path_factory.mktemp("genomics")
    out: dict[str, Sample] = {}

    def bam(name: str, src: Path, csi: bool = False) -> None:
        path = src if src.parent == d else d / src.name
        if path != src:
            shutil.copy(src, path)
        index = Path(f"{path}.{'csi' if csi else 'bai'}")
        run("samtools", "index", *(["-c"] if csi else ["-b"]), path, index)
        out[name] = Sample(name, "BAM", path, index, "csi" if csi else "bai", _lengths_from_bam(path))

    bam("range", HTSLIB_TEST / "range.bam")
    bam("range_csi", HTSLIB_TEST / "range.bam", csi=True)  # same data file, CSI instead of BAI
    bam("mpileup", SAMTOOLS_TEST / "mpileup" / "mpileup.1.bam")
    bam("colons", HTSLIB_TEST / "colons.bam")

    sam = d / "big.sam"
    make_big_sam(sam)
    big = d / "big.bam"
    run("samtools", "view", "-b", "-o", big, sam)
    bam("big", big)
    bam("big_csi", big, csi=True)
    reblocked = d / "big_reblocked.bam"  # records straddle blocks, header ends mid-block (htsjdk-like)
    reblocked.write_bytes(write_bgzf(gzip.decompress(big.read_bytes()), chunk=20_011))
    bam("big_reblocked", reblocked)

    cram = d / "range.cram"
    shutil.copy(HTSLIB_TEST / "range.cram", cram)
    shutil.copy(HTSLIB_TEST / "range.cram.crai", d / "range.cram.crai")
    out["range_cram"] = Sample(
        "range_cram", "CRAM", cram, d / "range.cram.crai", "crai", _lengths_from_bam(cram), CE_FA
    )
    big_cram = d / "big.cram"
    run("samtools", "view", "-C", "-T", CE_FA, "--output-fmt-option", "seqs_per_slice=2000", "-o", big_cram, big)
    run("samtools", "index", big_cram)
    out["big_cram"] = Sample("big_cram", "CRAM", big_cram, d / "big.cram.crai", "crai", out["big"].lengths, CE_FA)

    vcf = d / "index.vcf.gz"  # bgzip: the header shares its last block with the first records
    vcf.write_bytes(run_bytes("bgzip", "-c", HTSLIB_TEST / "index.vcf"))
    run("tabix", "-p", "vcf", vcf)
    lengths = _lengths_from_vcf(vcf)
    out["vcf_tbi"] = Sample("vcf_tbi", "VCF", vcf, d / "index.vcf.gz.tbi", "tbi", lengths)
    vcf_csi = d / "index_csi.vcf.gz"
    shutil.copy(vcf, vcf_csi)
    run("tabix", "-C", "-p", "vcf", vcf_csi)
    out["vcf_csi"] = Sample("vcf_csi", "VCF", vcf_csi, d / "index_csi.vcf.gz.csi", "csi", lengths)
    vcf_z = d / "index_z.vcf.gz"  # bcftools -Oz: header on its own blocks
    run("bcftools", "view", "-Oz", "-o", vcf_z, HTSLIB_TEST / "index.vcf")
    run("bcftools", "index", "-t", vcf_z)
    out["vcf_z"] = Sample("vcf_z", "VCF", vcf_z, d / "index_z.vcf.gz.tbi", "tbi", lengths)
    bcf = d / "index.bcf"
    run("bcftools", "view", "-Ob", "-o", bcf, HTSLIB_TEST / "index.vcf")
    run("bcftools", "index", bcf)
    out["bcf"] = Sample("bcf", "BCF", bcf, d / "index.bcf.csi", "csi", lengths)

    big_vcf_text = d / "big.vcf"
    big_lengths = make_big_vcf(big_vcf_text)
    big_vcf = d / "big.vcf.gz"
    big_vcf.write_bytes(run_bytes("bgzip", "-c", big_vcf_text))
    run("tabix", "-p", "vcf", big_vcf)
    out["big_vcf"] = Sample("big_vcf", "VCF", big_vcf, d / "big.vcf.gz.tbi", "tbi", big_lengths)
    big_bcf = d / "big.bcf"
    run("bcftools", "view", "-Ob", "-o", big_bcf, big_vcf)
    run("bcftools", "index", big_bcf)
    out["big_bcf"] = Sample("big_bcf", "BCF", big_bcf, d / "big.bcf.csi", "csi", big_lengths)
    return out
