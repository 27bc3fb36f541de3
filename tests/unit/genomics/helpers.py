"""Test helpers: build sample files with the real tools, reconstruct tickets, and ask samtools/bcftools for truth."""

from __future__ import annotations

import os
import random
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

from score.genomics import Piece, Region, materialize
from score.genomics.bgzf import gunzip_all

HTSLIB_TEST = Path("/usr/share/htslib-test/test")
SAMTOOLS_TEST = Path("/usr/share/samtools/test")
CE_FA = HTSLIB_TEST / "ce.fa"
# Never let htslib fetch a CRAM reference over the network: -T is always given where one is needed.
TOOL_ENV = {**os.environ, "REF_PATH": "/nonexistent", "REF_CACHE": "/nonexistent"}


@dataclass(frozen=True)
class Sample:
    """A data file with its index, as the server would store them."""

    name: str
    fmt: str
    path: Path
    index: Path
    index_kind: str
    lengths: dict[str, int]
    reference: Path | None = None

    def data(self) -> bytes:
        return self.path.read_bytes()


def run(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=check, env=TOOL_ENV)


def run_bytes(*args: str | Path) -> bytes:
    return subprocess.run([str(a) for a in args], capture_output=True, check=True, env=TOOL_ENV).stdout


def reader(data: bytes):
    """A ``read(start, end)`` over bytes that fails loudly on out-of-bounds use (as a strict store would)."""

    def read(start: int, end: int) -> bytes:
        assert 0 <= start <= end <= len(data), (start, end, len(data))
        return data[start:end]

    return read


def reconstruct(pieces: list[Piece], data: bytes, out: Path) -> Path:
    out.write_bytes(materialize(pieces, reader(data)))
    return out


def meaning(pieces: list[Piece]) -> list[tuple[str, int, int, str, bytes]]:
    """What each piece contributes once a client decodes it: byte ranges as they are, inline BGZF pieces inflated.

    Why not compare pieces directly: ISA-L's deflate (``bgzf.compress``) is not byte-deterministic (it leaves part
    of its hash table uninitialised), so the same edge re-compressed twice can differ in its compressed bytes
    while inflating to the same records. Inline data that is not gzip (CRAM) is compared as is.
    """
    out = []
    for p in pieces:
        data = gunzip_all(p.data) if p.data[:3] == b"\x1f\x8b\x08" else p.data
        out.append((p.kind, p.start, p.end, p.class_, data))
    return out


def region_arg(region: Region, fmt: str = "BAM") -> str:
    """samtools/bcftools region string (1-based inclusive), braces around names that contain ':'.

    Open-ended: samtools reads ``chr:100`` as "from 100 on", bcftools as the single position, so VCF gets ``chr:100-``.
    """
    name = f"{{{region.reference_name}}}" if ":" in region.reference_name else region.reference_name
    if region.reference_name == "*":
        return "*"
    if region.start is None and region.end is None:
        return name
    start = (region.start or 0) + 1
    if region.end is None:
        return f"{name}:{start}" if fmt in ("BAM", "CRAM") else f"{name}:{start}-"
    return f"{name}:{start}-{region.end}"


def region_records(sample: Sample, path: Path, regions: list[Region], index_it: bool) -> list[str]:
    """Records of ``regions`` in ``path`` according to samtools / bcftools (the reference implementation)."""
    regions = [r for r in regions if r.start is None or r.end is None or r.start < r.end]
    if not regions:
        return []  # an empty interval has no records; the tools reject "chr:11-10"
    args = [region_arg(r, sample.fmt) for r in regions]
    if sample.fmt in ("BAM", "CRAM"):
        if index_it:
            run("samtools", "index", path)
        ref = ["-T", sample.reference] if sample.reference else []
        out = run("samtools", "view", *ref, path, *args).stdout
    else:
        if index_it:
            run("bcftools", "index", "-f", path)
        out = run("bcftools", "view", "-H", "-r", ",".join(args), path).stdout
    return out.splitlines()


def all_records(sample: Sample, path: Path) -> list[str]:
    if sample.fmt in ("BAM", "CRAM"):
        ref = ["-T", sample.reference] if sample.reference else []
        return run("samtools", "view", *ref, path).stdout.splitlines()
    return run("bcftools", "view", "-H", path).stdout.splitlines()


def bgzf_blocks(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of every BGZF block, parsed independently of the library under test."""
    blocks = []
    pos = 0
    while pos < len(data):
        assert data[pos : pos + 4] == b"\x1f\x8b\x08\x04"
        (xlen,) = struct.unpack_from("<H", data, pos + 10)
        extra = data[pos + 12 : pos + 12 + xlen]
        i = extra.find(b"BC\x02\x00")
        (bsize,) = struct.unpack_from("<H", extra, i + 4)
        blocks.append((pos, bsize + 1))
        pos += bsize + 1
    return blocks


def write_bgzf(raw: bytes, chunk: int, level: int = 1) -> bytes:
    """BGZF-compress ``raw`` in ``chunk``-byte pieces with plain zlib (independent of the library), plus EOF.

    Used to build files whose records straddle blocks and whose header ends mid-block, as htsjdk writes them.
    """
    out = []
    for i in range(0, len(raw), chunk):
        piece = raw[i : i + chunk]
        comp = zlib.compressobj(level, zlib.DEFLATED, -15)
        cdata = comp.compress(piece) + comp.flush()
        header = b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\x06\x00BC\x02\x00"
        out.append(
            header + struct.pack("<H", len(cdata) + 25) + cdata + struct.pack("<II", zlib.crc32(piece), len(piece))
        )
    out.append(bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000"))
    return b"".join(out)


def inflate_blocks(data: bytes) -> list[bytes]:
    return [zlib.decompress(data[o : o + s][18:-8], -15) for o, s in bgzf_blocks(data)]


# --- sample generation ----------------------------------------------------------------------------------------


def fasta(path: Path) -> dict[str, str]:
    seqs: dict[str, list[str]] = {}
    name = ""
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            name = line[1:].split()[0]
            seqs[name] = []
        else:
            seqs[name].append(line.strip())
    return {k: "".join(v) for k, v in seqs.items()}


def make_big_sam(path: Path, n_reads: int = 200_000, seed: int = 7) -> dict[str, int]:
    """Coordinate-sorted SAM text over the ce.fa contigs: plain, spliced, indel, placed-unmapped, unplaced reads."""
    rng = random.Random(seed)
    ref = fasta(CE_FA)
    names = list(ref)
    lengths = {n: len(s) for n, s in ref.items()}
    total = sum(lengths.values())
    rows: list[tuple[int, int, str]] = []
    for i in range(n_reads):
        x = rng.randrange(total)
        tid = 0
        while x >= lengths[names[tid]]:
            x -= lengths[names[tid]]
            tid += 1
        name = names[tid]
        length = lengths[name]
        kind = rng.random()
        pos = min(x, length - 120)
        if kind < 0.002 and length > 30_000:
            cigar, qlen, rlen = "50M20000N50M", 100, 20100  # spliced: lands in a high-level bin
        elif kind < 0.05:
            cigar, qlen, rlen = "40M3D60M", 100, 103
        elif kind < 0.1:
            cigar, qlen, rlen = "10S85M5I", 100, 85
        else:
            cigar, qlen, rlen = "100M", 100, 100
        pos = max(0, min(pos, length - rlen))
        flag = 16 if rng.random() < 0.5 else 0
        seq = ref[name][pos : pos + qlen]
        seq = seq + "A" * (qlen - len(seq))
        if kind > 0.995:  # placed unmapped: has a position, no CIGAR
            flag, cigar = 4, "*"
        rows.append((tid, pos, f"r{i}\t{flag}\t{name}\t{pos + 1}\t60\t{cigar}\t*\t0\t0\t{seq}\t*"))
    rows.sort(key=lambda r: (r[0], r[1]))
    with path.open("w") as fh:
        fh.write("@HD\tVN:1.6\tSO:coordinate\n")
        for n in names:
            fh.write(f"@SQ\tSN:{n}\tLN:{lengths[n]}\n")
        for _tid, _pos, line in rows:
            fh.write(line + "\n")
        for i in range(500):  # unplaced unmapped reads sort last
            seq = "".join(rng.choice("ACGT") for _ in range(50))
            fh.write(f"u{i}\t4\t*\t0\t0\t*\t*\t0\t0\t{seq}\t*\n")
    return lengths


def make_big_vcf(path: Path, n_records: int = 40_000, seed: int = 11) -> dict[str, int]:
    """Sorted VCF over three contigs with SNVs, indels and symbolic deletions carrying INFO/END."""
    rng = random.Random(seed)
    lengths = {"1": 3_000_000, "2": 2_000_000, "X": 1_000_000}
    lines = [
        "##fileformat=VCFv4.2",
        '##INFO=<ID=END,Number=1,Type=Integer,Description="End position">',
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        '##ALT=<ID=DEL,Description="Deletion">',
        *(f"##contig=<ID={n},length={n_}>" for n, n_ in lengths.items()),
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2",
    ]
    per = {n: sorted(rng.sample(range(1, lengths[n] - 100_000), n_records // 3)) for n in lengths}
    for chrom, positions in per.items():
        for pos in positions:
            k = rng.random()
            if k < 0.01:
                ref, alt, info = "N", "<DEL>", f"END={pos + rng.randrange(1000, 50_000)};DP=9"
            elif k < 0.1:
                ref, alt, info = "ACGTACGTAC"[: rng.randrange(2, 10)], "A", "DP=12"
            else:
                ref, alt, info = rng.choice("ACGT"), rng.choice("ACGT"), f"DP={rng.randrange(5, 60)}"
            gts = "\t".join(rng.choice(["0/0", "0/1", "1/1"]) for _ in range(2))
            lines.append(f"{chrom}\t{pos}\t.\t{ref}\t{alt}\t50\tPASS\t{info}\tGT\t{gts}")
    path.write_text("\n".join(lines) + "\n")
    return lengths
