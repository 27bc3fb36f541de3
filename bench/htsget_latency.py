#!/usr/bin/env python3
"""htsget ticket latency: a region ticket against a header ticket of the same file (issue 18).

    .venv/bin/python bench/htsget_latency.py [--requests 200] [--quick]

One score-server on its embedded default store; a sorted BAM (40,000 reads, with .bai), the same reads as
CRAM (.crai) and a synthetic VCF.gz of 150,000 records (.tbi) are registered, uploaded with score-client and
published. Then, for each file, over one keep-alive connection, one request at a time:

- ``header``: ``?class=header`` tickets;
- ``region, cold``: tickets for ``--requests`` different regions (20 kbp for reads, 200 kbp for variants), none
  asked twice, so no block the server keeps between requests is reused;
- ``region, warm``: the first 20 of those regions again, in turn (a genome browser, a scatter of a workflow).

Reported: p50 and p99 per kind and the ratio of each region median to the header median (target: cold
region p50 <= 1.5x header p50). Every ticket is checked: 200, and the assembled pieces of the first cold region of
each file decode with samtools/bcftools to exactly the records samtools/bcftools find locally.
"""

from __future__ import annotations

import argparse
import base64
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import pysam  # noqa: E402
from tests.conftest import Client, Registry, ScoreServer  # noqa: E402
from tests.genomics_data import REFERENCE, make_bam_and_cram  # noqa: E402

STUDY = "HTSGETBENCH"
VCF_CONTIGS = {"1": 50_000_000, "2": 50_000_000, "3": 50_000_000}
WARM = 20


def synthetic_vcf(folder: Path, records: int, seed: int = 3) -> Path:
    """A bgzipped, tabix-indexed VCF of ``records`` SNVs spread evenly over three contigs."""
    rng = random.Random(seed)
    plain = folder / "synthetic.vcf"
    per_contig = records // len(VCF_CONTIGS)
    with open(plain, "w") as out:
        out.write("##fileformat=VCFv4.2\n")
        for name, length in VCF_CONTIGS.items():
            out.write(f"##contig=<ID={name},length={length}>\n")
        out.write('##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">\n')
        out.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for name, length in VCF_CONTIGS.items():
            positions = sorted(rng.sample(range(1, length), per_contig))
            for pos in positions:
                ref, alt = rng.sample("ACGT", 2)
                out.write(f"{name}\t{pos}\t.\t{ref}\t{alt}\t{rng.randint(10, 99)}\tPASS\tDP={rng.randint(5, 80)}\n")
    pysam.tabix_index(str(plain), preset="vcf", force=True)  # bgzips to synthetic.vcf.gz and writes .tbi
    return folder / "synthetic.vcf.gz"


def timed(http: httpx.Client, url: str, params: dict[str, object]) -> tuple[float, dict]:
    start = time.perf_counter()
    response = http.get(url, params=params)
    elapsed = (time.perf_counter() - start) * 1000
    if response.status_code != 200:
        raise SystemExit(f"ticket failed: {response.status_code} {response.text[:300]}")
    return elapsed, response.json()


def assemble(ticket: dict, http: httpx.Client) -> bytes:
    out = bytearray()
    for block in ticket["htsget"]["urls"]:
        url = block["url"]
        if url.startswith("data:"):
            out += base64.b64decode(url.split(",", 1)[1])
        else:
            out += http.get(url, headers=block.get("headers", {})).content
    return bytes(out)


def records(tool: list[str], path: Path, *region: str) -> list[str]:
    return subprocess.run([*tool, str(path), *region], capture_output=True, text=True, check=True).stdout.splitlines()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="tickets per kind and file")
    parser.add_argument("--quick", action="store_true", help="40 tickets per kind: a smoke test")
    args = parser.parse_args()
    count = 40 if args.quick else args.requests
    work = Path(tempfile.mkdtemp(prefix="score-htsget-bench-"))
    server = ScoreServer(work / "server").start()
    try:
        folder = work / "in"
        folder.mkdir()
        bam, cram = make_bam_and_cram(work / "genomics", reads=40_000)
        vcf = synthetic_vcf(work / "genomics", 150_000)
        files = [bam, Path(f"{bam}.bai"), cram, Path(f"{cram}.crai"), vcf, Path(f"{vcf}.tbi")]
        for path in files:
            shutil.copy(path, folder / path.name)
        admin = server.token("score.WRITE score.READ song.WRITE", ttl="2h")
        registry = Registry(server, admin)
        analysis, ids = registry.submit(STUDY, [folder / p.name for p in files], access="open")
        (work / "client").mkdir()
        done = Client(server, admin, work / "client").run(
            "upload", "--analysis-id", analysis, "--study-id", STUDY, "--input-dir", str(folder), timeout=600
        )
        if done.returncode != 0 or registry.publish(STUDY, analysis).status_code != 200:
            raise SystemExit(f"could not upload and publish the files: {done.stderr[-1000:]}")

        with pysam.AlignmentFile(str(bam)) as alignments:
            bam_refs = dict(zip(alignments.references, alignments.lengths, strict=True))
        rng = random.Random(11)
        rows = []
        with httpx.Client(timeout=60) as http:
            for name, endpoint, fmt, contigs, width, tool in (
                (bam.name, "reads", "BAM", bam_refs, 20_000, ["samtools", "view"]),
                (cram.name, "reads", "CRAM", bam_refs, 20_000, ["samtools", "view"]),
                (vcf.name, "variants", "VCF", VCF_CONTIGS, 200_000, ["bcftools", "view", "-H"]),
            ):
                url = f"{server.url}/htsget/{endpoint}/{ids[name]}"
                header = [timed(http, url, {"class": "header", "format": fmt})[0] for _ in range(count)]
                regions = []
                for _ in range(count):
                    contig = rng.choice(list(contigs))
                    start = rng.randrange(0, max(1, contigs[contig] - width))
                    regions.append({"referenceName": contig, "start": start, "end": start + width, "format": fmt})
                cold = []
                for n, region in enumerate(regions):
                    elapsed, ticket = timed(http, url, region)
                    cold.append(elapsed)
                    if n == 0:
                        check(ticket, http, work, folder / name, region, tool, fmt)
                warm = [timed(http, url, regions[n % WARM])[0] for n in range(count)]
                for kind, values in (("header", header), ("region, cold", cold), ("region, warm", warm)):
                    p50 = statistics.median(values)
                    ratio = p50 / statistics.median(header)
                    rows.append((fmt, kind, f"{p50:.2f}", f"{percentile(values, 0.99):.2f}", f"{ratio:.2f}x"))
        print(f"\nhtsget tickets, {count} per kind, one keep-alive connection, local store (ms)")
        print(f"{'format':8}{'kind':16}{'p50':>8}{'p99':>8}{'p50 / header p50':>20}")
        for fmt, kind, p50, p99, ratio in rows:
            print(f"{fmt:8}{kind:16}{p50:>8}{p99:>8}{ratio:>20}")
        print("\ntarget: region, cold p50 <= 1.5x header p50 for BAM, CRAM and VCF.gz")
        return 0
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def check(ticket: dict, http: httpx.Client, work: Path, local: Path, region: dict, tool: list[str], fmt: str) -> None:
    """The ticket's pieces decode to exactly the records the local file holds in the region."""
    got = work / f"ticket.{fmt.lower()}"
    got.write_bytes(assemble(ticket, http))
    text = f"{region['referenceName']}:{region['start'] + 1}-{region['end']}"
    if fmt == "CRAM":
        tool = [*tool, "-T", str(REFERENCE)]
    served = records(tool, got)
    expected = records(tool, local, text)
    if not set(expected) <= set(served):
        raise SystemExit(f"{fmt}: the ticket for {text} misses records")


if __name__ == "__main__":
    sys.exit(main())
