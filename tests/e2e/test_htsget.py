"""GA4GH htsget through the real server: tickets read by samtools, the ``htsget`` PyPI client and pysam.

For every region, the records each real client gets from the ticket, filtered to the region by samtools
or bcftools themselves (htsget may legitimately return more), must equal what samtools/bcftools print for
that region of the local file. Byte economy is measured on a generated BAM of more than 200 MB.
"""

from __future__ import annotations

import base64
import io
import os
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import htsget
import httpx
import pysam
import pytest

from tests.conftest import Client, ScoreServer, upload_analysis
from tests.genomics_data import REFERENCE, copy_test_file, make_bam_and_cram, make_big_bam, make_vcf_and_bcf

pytestmark = pytest.mark.e2e

STUDY = "HTSGET"
CONTROLLED = "HTSGETC"
ENV = {**os.environ, "REF_PATH": str(REFERENCE.parent), "REF_CACHE": "/nonexistent/%s"}


@dataclass
class Hts:
    server: ScoreServer
    ids: dict[str, str]  # file name -> object id
    local: dict[str, Path]
    controlled_id: str
    admin: str


@pytest.fixture(scope="module")
def hts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hts]:
    tmp = tmp_path_factory.mktemp("htsget")
    data = tmp / "files"
    bam, cram = make_bam_and_cram(data)
    vcf, bcf = make_vcf_and_bcf(data)
    files = [bam, Path(f"{bam}.bai"), cram, Path(f"{cram}.crai"), vcf, Path(f"{vcf}.tbi"), bcf, Path(f"{bcf}.csi")]
    for name in ("range.bam", "range.bam.bai", "range.cram", "range.cram.crai", "colons.bam", "colons.bam.bai"):
        files.append(copy_test_file(name, data))
    server = ScoreServer(tmp / "data", part_size=16 * 1024 * 1024).start()  # the big BAM: 14 parts, not 3000
    try:
        admin = server.token("score.WRITE score.READ song.WRITE")
        _, ids = upload_analysis(server, admin, STUDY, files, "open", tmp)
        private = tmp / "private"
        private.mkdir()
        secret = [Path(os.link(bam, private / bam.name) or private / bam.name)]
        secret.append(Path(os.link(f"{bam}.bai", private / f"{bam.name}.bai") or private / f"{bam.name}.bai"))
        _, controlled = upload_analysis(server, admin, CONTROLLED, secret, "controlled", tmp)
        yield Hts(server, ids, {f.name: f for f in files}, controlled[bam.name], admin)
    finally:
        server.stop()


# (file, referenceName, start, end): 0-based half-open, as htsget.
REGIONS = [
    ("sampled.bam", "CHROMOSOME_I", None, None),
    ("sampled.bam", "CHROMOSOME_I", 0, 1000),
    ("sampled.bam", "CHROMOSOME_I", 500_000, 500_001),
    ("sampled.bam", "CHROMOSOME_I", 1_009_700, 2_000_000),  # past the contig's end
    ("sampled.bam", "CHROMOSOME_I", 1_000_000, None),
    ("sampled.bam", "CHROMOSOME_II", None, None),
    ("sampled.bam", "CHROMOSOME_MtDNA", 100, 200),
    ("sampled.bam", "*", None, None),  # unplaced unmapped reads
    ("range.bam", "CHROMOSOME_V", None, None),  # a contig with no reads: an empty result
    ("range.bam", "CHROMOSOME_I", 0, 50_000),
    ("colons.bam", "chr1:100", None, None),
    ("colons.bam", "chr1:100-200", 10, 500),
    ("colons.bam", "chr1,chr3", None, None),
    ("sampled.cram", "CHROMOSOME_I", 200_000, 300_000),
    ("sampled.cram", "CHROMOSOME_III", None, None),
    ("sampled.cram", "CHROMOSOME_X", 4_990, 6_000),
    ("sampled.cram", "CHROMOSOME_I", 0, 1),
    ("range.cram", "CHROMOSOME_II", None, None),
    ("variants.vcf.gz", "1", None, None),
    ("variants.vcf.gz", "2", 4_999_900, 4_999_990),
    ("variants.vcf.gz", "10", 0, 100),  # no variants there
    ("variants.vcf.gz", "10", 2_999_990, 3_000_010),
    ("variants.bcf", "1", 9_999_999, 10_000_005),
    ("variants.bcf", "2", None, None),
]


def _kind(name: str) -> tuple[str, str]:
    """(endpoint, format) for a file name."""
    if name.endswith(".cram"):
        return "reads", "CRAM"
    if name.endswith(".bam"):
        return "reads", "BAM"
    return "variants", "BCF" if name.endswith(".bcf") else "VCF"


def _samtools_region(reference: str, start: int | None, end: int | None) -> str:
    """samtools' 1-based inclusive region, braced so names with ':' and '-' stay whole."""
    if reference == "*":
        return "*"
    if start is None and end is None:
        return f"{{{reference}}}"
    return f"{{{reference}}}:{(start or 0) + 1}-{'' if end is None else end}"


def _run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, f"{' '.join(argv)}: {result.stderr[-1500:]}"
    return result.stdout


def _records_in_region(path: Path, name: str, region: str) -> list[str]:
    """The records of ``path`` in ``region``, as samtools/bcftools print them (indexing ``path`` first)."""
    if _kind(name)[0] == "reads":
        if not Path(f"{path}.bai").exists() and not Path(f"{path}.crai").exists():
            _run("samtools", "index", str(path))
        return _run("samtools", "view", "-T", str(REFERENCE), str(path), region).splitlines()
    if not Path(f"{path}.csi").exists() and not Path(f"{path}.tbi").exists():
        _run("bcftools", "index", str(path))
    return _run("bcftools", "view", "-H", "-r", region.replace("{", "").replace("}", ""), str(path)).splitlines()


def _ticket_url(hts: Hts, name: str, reference: str, start: int | None, end: int | None) -> str:
    endpoint, fmt = _kind(name)
    query = httpx.QueryParams(
        {
            k: v
            for k, v in {"format": fmt, "referenceName": reference, "start": start, "end": end}.items()
            if v is not None
        }
    )
    return f"{hts.server.url}/htsget/{endpoint}/{hts.ids[name]}?{query}"


def _suffix(name: str) -> str:
    return {
        "reads": ".cram" if name.endswith(".cram") else ".bam",
        "variants": ".bcf" if name.endswith(".bcf") else ".vcf.gz",
    }[_kind(name)[0]]


@pytest.mark.parametrize(
    ("name", "reference", "start", "end"), REGIONS, ids=[f"{r[0]}:{r[1]}:{r[2]}-{r[3]}" for r in REGIONS]
)
def test_every_client_gets_the_regions_records(
    hts: Hts, tmp_path: Path, name: str, reference: str, start: int | None, end: int | None
) -> None:
    region = _samtools_region(reference, start, end)
    expected = _records_in_region(hts.local[name], name, region)
    url = _ticket_url(hts, name, reference, start, end)
    endpoint, fmt = _kind(name)

    # 1. samtools / bcftools read the ticket URL themselves (they follow data: URIs and Range headers).
    via_tool = tmp_path / f"tool{_suffix(name)}"
    if endpoint == "reads":
        _run("samtools", "view", "-T", str(REFERENCE), "-O", fmt.lower(), "-o", str(via_tool), url)
    else:
        _run("bcftools", "view", "-O", "b" if fmt == "BCF" else "z", "-o", str(via_tool), url)
    assert _records_in_region(via_tool, name, region) == expected

    # 2. The htsget PyPI client writes the concatenated blocks: a valid file as served.
    via_client = tmp_path / f"client{_suffix(name)}"
    with open(via_client, "wb") as out:
        htsget.get(
            f"{hts.server.url}/htsget/{endpoint}/{hts.ids[name]}",
            out,
            reference_name=reference,
            start=start,
            end=end,
            data_format=fmt,
        )
    if endpoint == "reads":
        _run("samtools", "quickcheck", str(via_client))
    assert _records_in_region(via_client, name, region) == expected

    # 3. pysam opens the ticket URL through htslib; its records, re-written and filtered, match too.
    via_pysam = tmp_path / f"pysam{_suffix(name)}"
    if endpoint == "reads":
        with pysam.AlignmentFile(url, reference_filename=str(REFERENCE)) as source:
            mode = "wc" if fmt == "CRAM" else "wb"
            with pysam.AlignmentFile(str(via_pysam), mode, template=source, reference_filename=str(REFERENCE)) as out:
                for record in source.fetch(until_eof=True):
                    out.write(record)
    else:
        with pysam.VariantFile(url) as source:
            text = str(source.header) + "".join(str(record) for record in source.fetch())
        plain = tmp_path / "pysam.vcf"
        plain.write_text(text)
        _run("bcftools", "view", "-O", "b" if fmt == "BCF" else "z", "-o", str(via_pysam), str(plain))
    assert _records_in_region(via_pysam, name, region) == expected


def test_whole_file_and_header_only_tickets(hts: Hts, tmp_path: Path) -> None:
    name = "sampled.bam"
    whole = tmp_path / "whole.bam"
    with open(whole, "wb") as out:
        htsget.get(f"{hts.server.url}/htsget/reads/{hts.ids[name]}", out)
    assert whole.read_bytes() == hts.local[name].read_bytes()  # no region: the file itself, byte for byte
    inline: list[str] = []
    for fmt, file in (("BAM", "sampled.bam"), ("CRAM", "sampled.cram"), ("VCF", "variants.vcf.gz")):
        endpoint = "variants" if fmt == "VCF" else "reads"
        response = httpx.get(
            f"{hts.server.url}/htsget/{endpoint}/{hts.ids[file]}", params={"class": "header", "format": fmt}
        )
        assert response.status_code == 200, response.text
        inline += [u["url"] for u in response.json()["htsget"]["urls"] if u["url"].startswith("data:")]
        header_only = tmp_path / f"header-{file}"
        header_only.write_bytes(_assemble(response.json()))
        if endpoint == "reads":
            _run("samtools", "quickcheck", str(header_only))
            tool = ["samtools", "view", "--no-PG", "-T", str(REFERENCE), "-H"]
        else:
            tool = ["bcftools", "view", "--no-version", "-h"]  # bcftools' -h is samtools' -H: header only
        assert _run(*tool, str(header_only)) == _run(*tool, str(hts.local[file]))
        records = ["samtools", "view"] if endpoint == "reads" else ["bcftools", "view", "-H"]
        assert _run(*records, str(header_only)) == ""
    assert inline and all(u.startswith("data:;base64,") for u in inline)  # the form every client decodes


def _error(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"htsget"} and set(body["htsget"]) == {"error", "message"}, body
    assert body["htsget"]["message"]
    assert response.headers["content-type"].startswith("application/vnd.ga4gh.htsget")
    return response.status_code, body["htsget"]["error"]


def test_errors_use_the_specs_names_and_codes(hts: Hts) -> None:
    url = f"{hts.server.url}/htsget/reads/{hts.ids['sampled.bam']}"
    unknown = f"{hts.server.url}/htsget/reads/00000000-0000-4000-8000-000000000000"
    assert _error(httpx.get(unknown)) == (404, "NotFound")
    assert _error(httpx.get(url, params={"format": "VCF"})) == (400, "UnsupportedFormat")
    assert _error(httpx.get(url, params={"format": "CRAM"})) == (400, "UnsupportedFormat")  # this file is BAM
    assert _error(httpx.get(url, params={"referenceName": "CHROMOSOME_I", "start": 500, "end": 100})) == (
        400,
        "InvalidRange",
    )
    assert _error(httpx.get(url, params={"class": "header", "referenceName": "CHROMOSOME_I"})) == (400, "InvalidInput")
    assert _error(httpx.get(url, params={"start": 5})) == (400, "InvalidInput")  # coordinates without a reference
    assert _error(httpx.get(url, params={"referenceName": "*", "start": 5})) == (400, "InvalidInput")
    assert _error(httpx.get(url, params={"referenceName": "chrNope"})) == (404, "NotFound")
    assert _error(httpx.get(url, params={"tags": "NM", "notags": "NM"})) == (400, "InvalidInput")
    assert _error(httpx.post(url, params={"format": "BAM"}, json={})) == (400, "InvalidInput")  # POST + query
    assert _error(httpx.post(url, json={"regions": []})) == (400, "InvalidInput")
    assert _error(httpx.post(url, json={"regions": [{"referenceName": "CHROMOSOME_I", "start": 9, "end": 9}]})) == (
        400,
        "InvalidRange",
    )
    assert _error(httpx.post(url, content=b"x" * (2 << 20))) == (413, "PayloadTooLarge")
    # Crypt4GH is not served: asking for it is refused, never answered with plaintext.
    assert _error(httpx.get(url, params={"encryptionScheme": "C4GH"})) == (400, "UnsupportedFormat")
    assert _error(httpx.post(url, json={"encryptionScheme": "C4GH"})) == (400, "UnsupportedFormat")
    # Same authorisation as downloads: a controlled file needs a token, and READ on its study.
    controlled = f"{hts.server.url}/htsget/reads/{hts.controlled_id}"
    assert _error(httpx.get(controlled)) == (401, "InvalidAuthentication")
    other_study = hts.server.token("PROGRAMDATA-ELSEWHERE.READ")
    assert _error(httpx.get(controlled, headers={"Authorization": f"Bearer {other_study}"})) == (
        403,
        "PermissionDenied",
    )
    reader = hts.server.token(f"PROGRAMDATA-{CONTROLLED}.READ")
    allowed = httpx.get(
        controlled, headers={"Authorization": f"Bearer {reader}"}, params={"referenceName": "CHROMOSOME_II"}
    )
    assert allowed.status_code == 200 and allowed.json()["htsget"]["format"] == "BAM"


def test_post_merges_regions_and_service_info_describes_the_service(hts: Hts, tmp_path: Path) -> None:
    url = f"{hts.server.url}/htsget/reads/{hts.ids['sampled.bam']}"
    body = {
        "format": "BAM",
        "regions": [{"referenceName": "CHROMOSOME_II"}, {"referenceName": "CHROMOSOME_I", "start": 0, "end": 5000}],
    }
    ticket = httpx.post(url, json=body)
    assert ticket.status_code == 200, ticket.text
    assembled = tmp_path / "post.bam"
    assembled.write_bytes(_assemble(ticket.json()))
    for region in ("{CHROMOSOME_II}", "{CHROMOSOME_I}:1-5000"):
        assert _records_in_region(assembled, "post.bam", region) == _records_in_region(
            hts.local["sampled.bam"], "sampled.bam", region
        )
    for datatype, formats in (("reads", ["BAM", "CRAM"]), ("variants", ["VCF", "BCF"])):
        info = httpx.get(f"{hts.server.url}/htsget/{datatype}/service-info").json()
        assert info["type"] == {"group": "org.ga4gh", "artifact": "htsget", "version": "1.3.0"}
        assert info["htsget"]["datatype"] == datatype and info["htsget"]["formats"] == formats


def _assemble(ticket: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    for block in ticket["htsget"]["urls"]:
        if block["url"].startswith("data:"):
            out.write(base64.b64decode(block["url"].split(",", 1)[1]))
        else:
            response = httpx.get(block["url"], headers=block.get("headers", {}))
            assert response.status_code in (200, 206), response.text
            out.write(response.content)
    return out.getvalue()


def _minimal_block_bytes(path: Path, reference: str, start: int, end: int) -> int:
    """Bytes of the BGZF blocks holding any byte of a record that overlaps the region: the least a ticket needs.

    Records are read front to back (no index, no seek), so ``tell()`` before and after each is exact. A block
    at ``c`` whose uncompressed size is ``u`` holds bytes of a record spanning virtual offsets ``[b, a)`` iff
    ``(c, 0) < a`` and ``(c, u) > b`` (a tell() at a block's very end names that block, not the next one).
    """
    spans: list[tuple[int, int]] = []
    with pysam.AlignmentFile(str(path)) as bam:
        before = bam.tell()
        for record in bam.fetch(until_eof=True):
            after = bam.tell()
            overlaps = record.reference_start < end and (record.reference_end or 0) > start
            if record.reference_name == reference and overlaps:
                if spans and before <= spans[-1][1]:
                    spans[-1] = (spans[-1][0], after)  # records come in file order: merge neighbours
                else:
                    spans.append((before, after))
            before = after
    total = 0
    with open(path, "rb") as raw:
        position, stop = spans[0][0] >> 16, spans[-1][1] >> 16
        while position <= stop:
            raw.seek(position)
            header = raw.read(18)
            assert header[:4] == b"\x1f\x8b\x08\x04", f"no BGZF block at {position}"
            length = struct.unpack("<H", header[16:18])[0] + 1
            raw.seek(position + length - 4)
            inflated = struct.unpack("<I", raw.read(4))[0]
            if any((position, 0) < divmod(a, 1 << 16) and (position, inflated) > divmod(b, 1 << 16) for b, a in spans):
                total += length
            position += length
    return total


def _inline_bytes(block: dict[str, Any]) -> int:
    return len(base64.b64decode(block["url"].split(",", 1)[1]))


def _range_bytes(block: dict[str, Any]) -> int:
    first, last = block["headers"]["Range"].removeprefix("bytes=").split("-")
    return int(last) - int(first) + 1


def test_byte_economy_on_a_big_bam(hts: Hts, tmp_path: Path) -> None:
    """A 1 Mb region of a > 200 MB BAM: the ticket's ranges stay within 1.1x the BGZF blocks that hold it."""
    big = make_big_bam(tmp_path / "big.bam", 210_000_000)
    size = big.stat().st_size
    assert size >= 200_000_000
    _, ids = upload_analysis(hts.server, hts.admin, "HTSBIG", [big, Path(f"{big}.bai")], "open", tmp_path)
    start, end = 50_000_000, 51_000_000
    minimal = _minimal_block_bytes(big, "BIG", start, end)
    ticket = httpx.get(
        f"{hts.server.url}/htsget/reads/{ids['big.bam']}", params={"referenceName": "BIG", "start": start, "end": end}
    ).json()["htsget"]
    # Body bytes: signed ranges plus the region's edge blocks, which the planner may trim and inline.
    ranged = sum(_range_bytes(u) for u in ticket["urls"] if u.get("class") == "body" and "headers" in u)
    inline = sum(_inline_bytes(u) for u in ticket["urls"] if u.get("class") == "body" and "headers" not in u)
    body = ranged + inline
    ratio = body / minimal
    print(
        f"\nbyte economy: file {size} B, 1 Mb region, minimal blocks {minimal} B, ticket body {body} B "
        f"({ranged} B ranged + {inline} B inline edges), {ratio:.3f}x the minimum, {body / size:.2%} of the file"
    )
    assert ratio <= 1.1, (body, minimal)
    assert body / size < 0.02
    assembled = tmp_path / "slice.bam"
    assembled.write_bytes(_assemble({"htsget": ticket}))
    region = f"{{BIG}}:{start + 1}-{end}"
    expected = _records_in_region(big, "big.bam", region)
    assert _records_in_region(assembled, "slice.bam", region) == expected

    # score-client view reads the same region through htslib on a signed URL: count what the store sent.
    key = f"data/{ids['big.bam']}"

    def sent() -> int:
        events = hts.server.access_events()
        return sum(
            int(e.get("bytes") or 0) for e in events if e.get("key") == key and str(e["event"]).startswith("get")
        )

    before = sent()
    client = Client(hts.server, hts.admin, tmp_path)
    view = client.run(
        "view", "--object-id", ids["big.bam"], "--query", f"BIG:{start + 1}-{end}", "--no-header", "--stdout"
    )
    assert view.returncode == 0, view.stderr
    assert view.stdout.splitlines() == expected
    fetched = sent() - before
    print(f"score-client view fetched {fetched} B of {size} B ({fetched / size:.2%})")
    assert fetched / size < 0.02


def test_view_takes_this_servers_drs_uri_and_refuses_another_servers(hts: Hts, tmp_path: Path) -> None:
    """``score-client view --object-id drs://HOST/ID`` slices the object as its id would; another DRS server's
    URI is refused with what to do (view reads through this server's signed ranges)."""
    host = hts.server.url.split("://", 1)[1]
    client = Client(hts.server, hts.admin, tmp_path)
    region = "CHROMOSOME_I:1000-60000"
    out = tmp_path / "slice.sam"
    sliced = client.run(
        "view",
        "--object-id",
        f"drs://{host}/{hts.ids['sampled.bam']}",
        "--query",
        region,
        "--output-format",
        "sam",
        "--no-header",
        "--output-file",
        str(out),
    )
    assert sliced.returncode == 0, sliced.stderr
    assert out.read_text().splitlines() == _run("samtools", "view", str(hts.local["sampled.bam"]), region).splitlines()
    elsewhere = client.run("view", "--object-id", f"drs://elsewhere.example.org/{hts.ids['sampled.bam']}")
    assert elsewhere.returncode != 0 and "download it" in elsewhere.stderr, elsewhere.stderr
