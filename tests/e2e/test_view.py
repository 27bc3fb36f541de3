"""``score-client view`` and ``score-client samtools`` end to end, against samtools and bcftools on local copies.

One server for the module: BAM, CRAM, a BAM with colons in its contig names and a tabixed VCF are
registered, uploaded and published through the real server and client; every slice the client prints
is compared, record line by record line, with what samtools/bcftools print for the same local file.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pysam
import pytest

from tests.conftest import Client, Registry, ScoreServer
from tests.genomics_data import make_bam_and_cram

pytestmark = pytest.mark.e2e

HTS = Path("/usr/share/htslib-test/test")
STUDY = "VIEW01"
STEMS = {"range.bam", "range.cram", "colons.bam", "index.vcf.gz", "noindex.bam", "stemmed.bam", "notes.txt"}

# No skip when they are missing: a skipped genomics suite would hide a broken feature. .ci/run installs them.
assert (HTS / "range.bam").exists() and shutil.which("samtools") and shutil.which("bcftools"), (
    "the genomics tests need: apt-get install samtools bcftools tabix htslib-test samtools-test (.ci/run does it)"
)


@dataclass
class Published:
    client: Client
    ids: dict[str, str]  # file name -> object id
    local: Path  # directory holding the same files
    reference: Path

    def path(self, name: str) -> str:
        return str(self.local / name)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    root = tmp_path_factory.mktemp("view")
    local = root / "files"
    local.mkdir()
    for name in ["range.bam", "range.bam.bai", "range.cram", "range.cram.crai", "colons.bam", "colons.bam.bai"]:
        shutil.copy(HTS / name, local / name)
    if not (local / "colons.bam.bai").exists():
        pysam.index(str(local / "colons.bam"))
    shutil.copy(HTS / "index.vcf", local / "index.vcf")
    pysam.tabix_index(str(local / "index.vcf"), preset="vcf", force=True)  # -> index.vcf.gz + .tbi
    shutil.copy(HTS / "range.bam", local / "noindex.bam")
    shutil.copy(HTS / "range.bam", local / "stemmed.bam")
    shutil.copy(HTS / "range.bam.bai", local / "stemmed.bai")  # x.bai beside x.bam
    (local / "notes.txt").write_text("not genomic\n")
    reference = root / "ce.fa"
    shutil.copy(HTS / "ce.fa", reference)
    shutil.copy(HTS / "ce.fa.fai", root / "ce.fa.fai")

    server = ScoreServer(root / "server-data").start()
    try:
        token = server.token("score.WRITE score.READ song.WRITE")
        registry = Registry(server, token)
        work = root / "work"
        work.mkdir()
        client = Client(server, token, work)
        files = sorted(p for p in local.iterdir())
        analysis_id, ids = registry.submit(STUDY, files)
        upload = client.run("upload", "--analysis-id", analysis_id, "--study-id", STUDY, "--input-dir", str(local))
        assert upload.returncode == 0, upload.stderr
        assert registry.publish(STUDY, analysis_id).status_code == 200
        yield Published(client, ids, local, reference)
    finally:
        server.stop()


def run(*args: str) -> str:
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return out.stdout


def records(text: str) -> list[str]:
    """Record lines only: SAM and VCF headers start with '@' or '#'."""
    return [line for line in text.splitlines() if line and not line.startswith(("@", "#"))]


def view(p: Published, name: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return p.client.run("view", "--object-id", p.ids[name], *args, **env)


def view_bytes(p: Published, name: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """For binary output on stdout (BAM, CRAM, BCF)."""
    command = p.client.command("view", "--object-id", p.ids[name], *args)
    return subprocess.run(command, cwd=p.client.workdir, env=p.client.env(), capture_output=True, timeout=60)


# (file, region for score-client, region for samtools/bcftools: the same except where samtools needs braces)
SLICES = [
    ("range.bam", "CHROMOSOME_I", "CHROMOSOME_I"),
    ("range.bam", "CHROMOSOME_I:1000-1200", "CHROMOSOME_I:1000-1200"),
    ("range.bam", "CHROMOSOME_I:914-914", "CHROMOSOME_I:914-914"),
    ("range.bam", "CHROMOSOME_II:1-1", "CHROMOSOME_II:1-1"),
    ("range.bam", "CHROMOSOME_II:4900-99999", "CHROMOSOME_II:4900-99999"),  # past the contig end
    ("range.bam", "CHROMOSOME_II:6000-7000", "CHROMOSOME_II:6000-7000"),  # wholly past the end: empty
    ("range.bam", "CHROMOSOME_V", "CHROMOSOME_V"),  # contig without reads
    ("range.bam", "CHROMOSOME_III:2,000-2,500", "CHROMOSOME_III:2,000-2,500"),
    ("range.bam", "CHROMOSOME_IV:3000", "CHROMOSOME_IV:3000"),
    ("range.bam", "CHROMOSOME_II:-500", "CHROMOSOME_II:-500"),
    ("stemmed.bam", "CHROMOSOME_III:1000-1500", "CHROMOSOME_III:1000-1500"),  # index registered as stemmed.bai
    ("range.cram", "CHROMOSOME_I:1000-1200", "CHROMOSOME_I:1000-1200"),
    ("range.cram", "CHROMOSOME_III", "CHROMOSOME_III"),
    ("range.cram", "CHROMOSOME_IV:100-2000", "CHROMOSOME_IV:100-2000"),
    ("range.cram", "CHROMOSOME_X", "CHROMOSOME_X"),
    ("colons.bam", "chr1", "chr1"),
    ("colons.bam", "chr1:100", "{chr1:100}"),  # the verbatim contig name wins
    ("colons.bam", "chr1:100-200", "{chr1:100-200}"),
    ("colons.bam", "{chr1}:100", "{chr1}:100"),
    ("colons.bam", "{chr1}:1-50", "{chr1}:1-50"),
    ("colons.bam", "chr2:100-200", "chr2:100-200"),
    ("colons.bam", "{chr1:100-200}:1-150", "{chr1:100-200}:1-150"),
    ("colons.bam", "chr1:100-200:101-150", "{chr1:100-200}:101-150"),  # after the name: nothing there
    ("colons.bam", "chr1,chr3", "chr1,chr3"),
    ("colons.bam", "chr3", "chr3"),
    ("index.vcf.gz", "1", "1"),
    ("index.vcf.gz", "1:10000000-10000010", "1:10000000-10000010"),
    ("index.vcf.gz", "2:5000000", "2:5000000-"),  # samtools' meaning (to the end); bcftools' is one position
    ("index.vcf.gz", "10:3000000-3000000", "10:3000000-3000000"),
    ("index.vcf.gz", "3", "3"),  # in the header, no records
    ("index.vcf.gz", "1:1-100", "1:1-100"),  # before the first record
    ("index.vcf.gz", "MT:1-16569", "MT:1-16569"),
]


def expected(p: Published, name: str, region: str) -> list[str]:
    if name.endswith(".vcf.gz"):
        return records(run("bcftools", "view", "-H", "-r", region, p.path(name)))
    reference = ["-T", str(p.reference)] if name.endswith(".cram") else []
    return records(run("samtools", "view", *reference, p.path(name), region))


def test_slices_are_identical_to_samtools_and_bcftools(published: Published) -> None:
    nonempty = 0
    for name, ours, theirs in SLICES:
        reference = ["--reference-file", str(published.reference)] if name.endswith(".cram") else []
        fmt = "vcf" if name.endswith(".vcf.gz") else "sam"
        result = view(published, name, "--query", ours, "--output-format", fmt, "--stdout", *reference)
        assert result.returncode == 0, f"{name} {ours}: {result.stderr}"
        want = expected(published, name, theirs)
        assert records(result.stdout) == want, f"{name} {ours}"
        nonempty += bool(want)
    assert nonempty >= 15  # the comparison is not between empty outputs


def test_several_regions_come_out_once_each_in_file_order(published: Published) -> None:
    regions = ["CHROMOSOME_III:100-200", "CHROMOSOME_I:1000-1200", "CHROMOSOME_I:1100-1300", "CHROMOSOME_II"]
    result = view(published, "range.bam", "--query", regions[0], "--query", regions[1], regions[2], regions[3])
    assert result.returncode == 0, result.stderr
    ours = records(result.stdout)
    assert ours == records(run("samtools", "view", "-M", published.path("range.bam"), *regions))
    assert len(ours) == len(set(ours)) > 30
    # a read spanning two disjoint regions (934-1034 over 1000-1010 and 1030-1040) is written once
    apart = ["CHROMOSOME_I:1000-1010", "CHROMOSOME_I:1030-1040"]
    result = view(published, "range.bam", *apart)
    want = records(run("samtools", "view", "-M", published.path("range.bam"), *apart))
    assert records(result.stdout) == want and len(want) == 3

    vcf = ["1:10000000-10000004", "1:10000002-10000008", "2:5000000-5000003"]
    result = view(published, "index.vcf.gz", *vcf)
    assert result.returncode == 0, result.stderr
    assert records(result.stdout) == records(
        run("bcftools", "view", "-H", "-r", ",".join(vcf), published.path("index.vcf.gz"))
    )
    assert len(records(result.stdout)) == 13


def test_bed_query_and_contained(published: Published, tmp_path: Path) -> None:
    bed = tmp_path / "regions.bed"
    bed.write_text("track name=test\nCHROMOSOME_I\t999\t1200\nCHROMOSOME_IV\t0\t500\nCHROMOSOME_I\t1150\t1300\n")
    result = view(published, "range.bam", "--bed-query", str(bed))
    assert result.returncode == 0, result.stderr
    want = records(run("samtools", "view", "-M", "-L", str(bed), published.path("range.bam")))
    assert records(result.stdout) == want and len(want) > 5

    colons_bed = tmp_path / "colons.bed"
    colons_bed.write_text("chr1:100\t0\t1000\nchr1\t100\t120\n")
    result = view(published, "colons.bam", "--bed-query", str(colons_bed))
    assert result.returncode == 0, result.stderr
    want = records(run("samtools", "view", "-M", "-L", str(colons_bed), published.path("colons.bam")))
    assert records(result.stdout) == want and len(want) == 2

    # --contained: only reads wholly inside 1000-1200 (computed independently from the local file)
    with pysam.AlignmentFile(published.path("range.bam")) as local:
        overlapping = [r for r in local.fetch("CHROMOSOME_I", 999, 1200)]
        inside = [r.to_string() for r in overlapping if r.reference_start >= 999 and r.reference_end <= 1200]
    result = view(published, "range.bam", "--query", "CHROMOSOME_I:1000-1200", "--contained")
    assert result.returncode == 0, result.stderr
    assert records(result.stdout) == inside
    assert 0 < len(inside) < len(overlapping)


def test_header_only_and_rewritten_header(published: Published) -> None:
    for name, theirs in [
        ("range.bam", ["samtools", "view", "-H", "--no-PG"]),
        ("range.cram", ["samtools", "view", "-H", "--no-PG"]),
        ("index.vcf.gz", ["bcftools", "view", "-h", "--no-version"]),
    ]:
        result = view(published, name, "--header-only")
        assert result.returncode == 0, result.stderr
        assert result.stdout == run(*theirs, published.path(name)), name

    result = view(published, "range.bam", "CHROMOSOME_II:1000-1200", "--rewrite-header")
    assert result.returncode == 0, result.stderr
    header = [line for line in result.stdout.splitlines() if line.startswith("@")]
    assert header[0] == "@HD\tVN:1.4\tSO:coordinate"
    assert any(line.startswith("@RG\tID:1\t") for line in header)  # the one read group is in use
    program = [line for line in header if line.startswith("@PG") and "ID:score" in line]
    assert len(program) == 1 and "PN:Score Client" in program[0] and "PP:scramble" in program[0]
    assert published.client.token not in result.stdout  # the command line is recorded, never the token
    assert records(result.stdout) == expected(published, "range.bam", "CHROMOSOME_II:1000-1200")
    empty = view(published, "range.bam", "CHROMOSOME_V", "--rewrite-header")
    assert not any(line.startswith("@RG") for line in empty.stdout.splitlines())  # no read in use: no @RG


def test_bam_and_cram_files_with_indexes(published: Published, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = view(
        published, "range.bam", "--query", "CHROMOSOME_I:1000-1200", "--query", "CHROMOSOME_III",
        "--output-format", "bam", "--output-dir", str(out), "--output-index",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    bam = out / "range.CHROMOSOME_I_1000-1200__CHROMOSOME_III.bam"  # Score's output name
    assert sorted(p.name for p in out.iterdir()) == [bam.name, bam.name + ".bai"]
    subprocess.run(["samtools", "quickcheck", str(bam)], check=True)
    assert records(run("samtools", "view", str(bam))) == records(
        run("samtools", "view", "-M", published.path("range.bam"), "CHROMOSOME_I:1000-1200", "CHROMOSOME_III")
    )
    assert records(run("samtools", "view", str(bam), "CHROMOSOME_III:100-200")) == expected(
        published, "range.bam", "CHROMOSOME_III:100-200"
    )  # the written index works

    cram = tmp_path / "slice.cram"
    result = view(
        published, "range.bam", "CHROMOSOME_II:1000-3000", "--output-format", "cram",
        "--reference-file", str(published.reference), "--output-file", str(cram), "--output-index",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert cram.read_bytes()[:4] == b"CRAM" and (tmp_path / "slice.cram.crai").exists()
    assert records(run("samtools", "view", "-T", str(published.reference), str(cram))) == expected(
        published, "range.bam", "CHROMOSOME_II:1000-3000"
    )

    cram_to_cram = view_bytes(
        published, "range.cram", "CHROMOSOME_IV", "--output-format", "cram", "--stdout",
        "--reference-file", str(published.reference),
    )  # fmt: skip
    assert cram_to_cram.returncode == 0, cram_to_cram.stderr
    assert cram_to_cram.stdout[:4] == b"CRAM"
    decoded = subprocess.run(
        ["samtools", "view", "-T", str(published.reference), "-"], input=cram_to_cram.stdout, capture_output=True
    )
    assert records(decoded.stdout.decode()) == expected(published, "range.cram", "CHROMOSOME_IV")
    needs_reference = view(published, "range.cram", "CHROMOSOME_IV")
    assert needs_reference.returncode == 1 and "--reference-file" in needs_reference.stderr


def test_vcf_gz_and_bcf_files_with_indexes(published: Published, tmp_path: Path) -> None:
    want = expected(published, "index.vcf.gz", "1:10000000-10000020")
    for fmt, index in [("vcf.gz", ".tbi"), ("bcf", ".csi")]:
        target = tmp_path / f"slice.{fmt}"
        result = view(
            published, "index.vcf.gz", "1:10000000-10000020", "--output-format", fmt,
            "--output-file", str(target), "--output-index",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert target.with_name(target.name + index).exists()
        assert records(run("bcftools", "view", "-H", str(target))) == want
        assert records(run("bcftools", "view", "-H", "-r", "1:10000005-10000006", str(target))) == want[5:7]


def test_missing_index_unknown_contig_and_no_leftovers(published: Published, tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    missing = view(published, "noindex.bam", "CHROMOSOME_I", TMPDIR=str(temp))
    assert missing.returncode == 1 and missing.stdout == ""
    assert f"object {published.ids['noindex.bam']} (noindex.bam) has no index" in missing.stderr
    assert "looked for noindex.bam.bai, noindex.bai" in missing.stderr and "--input-file-index" in missing.stderr
    assert "signature=" not in missing.stderr

    whole = view(published, "noindex.bam", TMPDIR=str(temp))
    assert whole.returncode == 1 and "--whole-file" in whole.stderr
    whole = view(published, "noindex.bam", "--whole-file", TMPDIR=str(temp))
    assert whole.returncode == 0, whole.stderr
    assert records(whole.stdout) == records(run("samtools", "view", published.path("noindex.bam")))
    with_index = view(
        published, "noindex.bam", "CHROMOSOME_IV:1-1000", "--input-file-index", published.path("range.bam.bai")
    )
    assert records(with_index.stdout) == expected(published, "range.bam", "CHROMOSOME_IV:1-1000")

    unknown = view(published, "range.bam", "--query", "CHROMOSOME_II:1-10", "--query", "chrZ:1-100")
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert "unknown contig 'chrZ' in region 'chrZ:1-100'" in unknown.stderr
    assert "CHROMOSOME_I, CHROMOSOME_II" in unknown.stderr
    near = view(published, "index.vcf.gz", "chr1:1-10", TMPDIR=str(temp))
    assert near.returncode == 1 and "did you mean 1?" in near.stderr
    bad = view(published, "range.bam", "CHROMOSOME_I:20-10")
    assert bad.returncode == 1 and "end (10) is before the start (20)" in bad.stderr

    assert list(temp.iterdir()) == []  # every private working directory was removed
    assert list(published.client.workdir.iterdir()) == []  # htslib cached nothing where the user runs it


def test_local_files_urls_and_manifests(published: Published, tmp_path: Path) -> None:
    client = published.client
    shutil.copy(published.path("colons.bam"), client.workdir / "c.bam")
    shutil.copy(published.path("colons.bam.bai"), client.workdir / "c.bam.bai")
    try:
        local = client.run("view", "--input-file", "c.bam", "chr1:100-200", "--no-header")  # relative to the cwd
        assert local.returncode == 0, local.stderr
        assert local.stdout.splitlines() == expected(published, "colons.bam", "{chr1:100-200}")
    finally:
        (client.workdir / "c.bam").unlink()
        (client.workdir / "c.bam.bai").unlink()

    url = client.run("url", "--object-id", published.ids["range.cram"]).stdout.strip()
    index_url = client.run("url", "--object-id", published.ids["range.cram.crai"]).stdout.strip()
    remote = client.run(
        "view", "--input-file", url, "--input-file-index", index_url, "--reference-file", str(published.reference),
        "CHROMOSOME_I:900-1000",
    )  # fmt: skip
    assert remote.returncode == 0, remote.stderr
    assert records(remote.stdout) == expected(published, "range.cram", "CHROMOSOME_I:900-1000")

    columns = "repo_code file_id object_id file_format file_name file_size md5_sum index_object_id donor project study"
    rows = [
        f"local\tFI{i}\t{published.ids[name]}\tX\t{name}\t1\tmd5\t{index}\tDO1\tP\t{STUDY}"
        for i, (name, index) in enumerate(
            [("range.bam", ""), ("index.vcf.gz", published.ids["index.vcf.gz.tbi"]), ("notes.txt", "")]
        )
    ]
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text("\n".join([columns.replace(" ", "\t"), *rows]) + "\n")
    out = tmp_path / "from-manifest"
    result = client.run("view", "--manifest", str(manifest), "--header-only", "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["index.header.vcf", "range.header.sam"]
    assert "skipping" in result.stderr and "notes.txt" in result.stderr
    assert (out / "range.header.sam").read_text() == run(
        "samtools", "view", "-H", "--no-PG", published.path("range.bam")
    )


def test_object_views_fetch_only_bounded_planned_ranges(published: Published, tmp_path: Path) -> None:
    """An object id with an index is read by bounded ranged GETs planned from the index, never by htslib's
    open-ended ones: every GET for the data object is answered with a partial range, none but the read of the
    EOF marker (BGZF block or CRAM container) reaches the end of the object, and a small region costs a small
    part of the file."""
    client = published.client
    bam, cram = make_bam_and_cram(tmp_path / "sample")
    files = [bam, Path(f"{bam}.bai"), cram, Path(f"{cram}.crai")]
    registry = Registry(client.server, client.token)
    analysis, ids = registry.submit("VIEW02", files)
    for path in files:
        result = client.run("upload", "--file", str(path), "--object-id", ids[path.name])
        assert result.returncode == 0, result.stderr
    assert registry.publish("VIEW02", analysis).status_code == 200

    def gets(name: str, *args: str) -> tuple[subprocess.CompletedProcess[str], list[dict[str, object]]]:
        key = f"data/{ids[name]}"
        before = len(client.server.access_events())
        result = client.run("view", "--object-id", ids[name], *args)
        assert result.returncode == 0, result.stderr
        events = [e for e in client.server.access_events()[before:] if e.get("key") == key]
        return result, events

    region = "CHROMOSOME_I:500001-510000"
    for path, extra, share in [(bam, (), 0.25), (cram, ("--reference-file", str(published.reference)), 0.5)]:
        size = path.stat().st_size
        result, events = gets(path.name, region, *extra)
        reference = ["-T", str(published.reference)] if path.suffix == ".cram" else []
        want = records(run("samtools", "view", *reference, str(path), region))
        assert records(result.stdout) == want and len(want) > 100
        assert events and all(e["event"] == "get" and e["status"] == 206 for e in events), events
        for event in events:
            first, last = (int(v) for v in str(event["range"]).split("-"))
            assert last < size - 1 or size - first <= 38, (path.name, event)  # only the EOF marker (28/38 B)
        fetched = sum(int(e["bytes"]) for e in events)  # type: ignore[call-overload]
        print(f"\n{path.name} {region}: {len(events)} GETs, {fetched} B of {size} B ({fetched / size:.1%})")
        assert fetched < share * size, (path.name, fetched, size)

    header, events = gets(bam.name, "--header-only")
    assert header.stdout == run("samtools", "view", "-H", "--no-PG", str(bam))
    assert events and all(e["status"] == 206 for e in events)
    assert sum(int(e["bytes"]) for e in events) < bam.stat().st_size / 4  # type: ignore[call-overload]


def test_samtools_commands_match_local_samtools(published: Published) -> None:
    bam = published.path("range.bam")
    for args in [
        ["flagstat"],
        ["idxstats"],
        ["view", "-c", "CHROMOSOME_I:1000-1200"],
        ["view", "CHROMOSOME_III:1000-1100"],
        ["depth", "-r", "CHROMOSOME_II:1140-1170"],
        ["quickcheck", "-v"],
    ]:
        result = published.client.run("samtools", args[0], "--object-id", published.ids["range.bam"], *args[1:])
        assert result.returncode == 0, f"{args}: {result.stderr}"
        assert result.stdout == run("samtools", args[0], bam, *args[1:]), args
    depth = published.client.run(
        "samtools", "depth", "--object-id", published.ids["range.bam"], "-r", "CHROMOSOME_II:1140-1170"
    )
    assert len(depth.stdout.splitlines()) == 31

    # the id where samtools expects the file; CRAM with samtools' own reference option
    cram = published.ids["range.cram"]
    result = published.client.run(
        "samtools", "view", "--object-id", cram, "-T", str(published.reference), cram, "CHROMOSOME_I:1000-1010"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == run(
        "samtools", "view", "-T", str(published.reference), published.path("range.cram"), "CHROMOSOME_I:1000-1010"
    )

    bad = published.client.run("samtools", "quickcheck", "-v", "--object-id", published.ids["notes.txt"])
    assert bad.returncode != 0
    assert bad.stdout.strip() == published.ids["notes.txt"]  # named by its id, never by its signed URL
