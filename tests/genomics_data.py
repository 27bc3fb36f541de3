"""Genomics test data: Debian's htslib/samtools test files, and larger BAM/CRAM/VCF made at test time.

Generated files are written as SAM text by Python (reads drawn from ``ce.fa``, so CRAM can compress them
against the reference) and converted, sorted and indexed by the real samtools/bcftools/tabix.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

HTSLIB_TEST = Path("/usr/share/htslib-test/test")
REFERENCE = HTSLIB_TEST / "ce.fa"
READ_LENGTH = 100


def copy_test_file(name: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(HTSLIB_TEST / name, folder / name))


def read_fasta(path: Path = REFERENCE) -> dict[str, str]:
    contigs: dict[str, list[str]] = {}
    name = ""
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            name = line[1:].split()[0]
            contigs[name] = []
        elif name:
            contigs[name].append(line.strip().upper())
    return {n: "".join(parts) for n, parts in contigs.items()}


def _sam_lines(contigs: dict[str, str], reads: int, seed: int, unplaced: int) -> list[str]:
    rng = random.Random(seed)
    names = list(contigs)
    weights = [len(contigs[n]) for n in names]
    placed: list[tuple[int, int, str]] = []
    for number in range(reads):
        tid = rng.choices(range(len(names)), weights)[0]
        sequence = contigs[names[tid]]
        pos = rng.randrange(0, len(sequence) - READ_LENGTH)
        bases = list(sequence[pos : pos + READ_LENGTH])
        for _ in range(rng.randrange(3)):  # a few mismatches, so records differ from the reference
            bases[rng.randrange(READ_LENGTH)] = rng.choice("ACGT")
        quality = "".join(chr(33 + rng.randrange(20, 41)) for _ in range(READ_LENGTH))
        flag = 16 if rng.random() < 0.5 else 0
        line = (
            f"r{number:07d}\t{flag}\t{names[tid]}\t{pos + 1}\t60\t{READ_LENGTH}M\t*\t0\t0\t"
            f"{''.join(bases)}\t{quality}\tNM:i:0"
        )
        placed.append((tid, pos, line))
    placed.sort()
    lines = [line for _, _, line in placed]
    for number in range(unplaced):
        bases = "".join(rng.choice("ACGT") for _ in range(READ_LENGTH))
        lines.append(f"u{number:07d}\t4\t*\t0\t0\t*\t*\t0\t0\t{bases}\t{'I' * READ_LENGTH}")
    return lines


def make_bam_and_cram(folder: Path, reads: int = 40_000, seed: int = 1, unplaced: int = 50) -> tuple[Path, Path]:
    """A sorted, indexed BAM (``.bam.bai``) and CRAM (``.cram.crai``) of reads sampled from ``ce.fa``."""
    folder.mkdir(parents=True, exist_ok=True)
    contigs = read_fasta()
    header = "".join(f"@SQ\tSN:{name}\tLN:{len(seq)}\n" for name, seq in contigs.items())
    sam = folder / "sampled.sam"
    sam.write_text(
        "@HD\tVN:1.6\tSO:coordinate\n" + header + "\n".join(_sam_lines(contigs, reads, seed, unplaced)) + "\n"
    )
    bam, cram = folder / "sampled.bam", folder / "sampled.cram"
    _run("samtools", "view", "-b", "-o", str(bam), str(sam))
    _run("samtools", "index", str(bam))
    _run("samtools", "view", "-C", "-T", str(REFERENCE), "-o", str(cram), str(bam))
    _run("samtools", "index", str(cram))
    sam.unlink()
    return bam, cram


def make_vcf_and_bcf(folder: Path) -> tuple[Path, Path]:
    """``index.vcf`` from htslib's tests, bgzipped with a ``.tbi``, and as BCF with a ``.csi``."""
    folder.mkdir(parents=True, exist_ok=True)
    vcf = folder / "variants.vcf.gz"
    with open(vcf, "wb") as out:
        subprocess.run(["bgzip", "-c", str(HTSLIB_TEST / "index.vcf")], stdout=out, check=True)
    _run("tabix", "-p", "vcf", str(vcf))
    bcf = folder / "variants.bcf"
    _run("bcftools", "view", "-Ob", "-o", str(bcf), str(vcf))
    _run("bcftools", "index", str(bcf))
    return vcf, bcf


def make_big_bam(path: Path, target_bytes: int, contig_length: int = 100_000_000, seed: int = 7) -> Path:
    """A sorted, indexed BAM of at least ``target_bytes`` over one long contig (random reads, for byte counts).

    The contig is synthetic (``BIG``, ``contig_length`` bases) so that a 1 Mb region is a small slice of
    the file; random bases and qualities keep BGZF from compressing it below the size wanted.
    """
    rng = random.Random(seed)
    bases = bytes.maketrans(bytes(range(256)), b"ACGT" * 64)
    quals = bytes.maketrans(bytes(range(256)), bytes(33 + 20 + (i % 21) for i in range(256)))
    per_read = 95  # compressed bytes per read are ~102 for this shape: aim a little over the target
    reads = target_bytes // per_read + 1
    starts = sorted(rng.randrange(0, contig_length - READ_LENGTH) for _ in range(reads))
    sam = path.with_suffix(".sam")
    with open(sam, "wb") as out:
        out.write(f"@HD\tVN:1.6\tSO:coordinate\n@SQ\tSN:BIG\tLN:{contig_length}\n".encode())
        for number, start in enumerate(starts):
            seq = rng.randbytes(READ_LENGTH).translate(bases)
            qual = rng.randbytes(READ_LENGTH).translate(quals)
            out.write(b"b%d\t0\tBIG\t%d\t60\t100M\t*\t0\t0\t%s\t%s\n" % (number, start + 1, seq, qual))
    _run("samtools", "view", "-@", "2", "-b", "-o", str(path), str(sam))
    sam.unlink()
    _run("samtools", "index", str(path))
    return path


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr[-2000:]}")
