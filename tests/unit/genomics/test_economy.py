"""Range economy: the body a ticket sends stays within 10% of the smallest set of whole BGZF blocks holding the
region's records. The minimal set is computed independently: pysam's ``tell()`` gives every record's virtual
offsets, a separate block walker gives block sizes, and overlap is decided from pysam's coordinates.
"""

from __future__ import annotations

import bisect
import functools
import zlib
from pathlib import Path

import pysam
import pytest

from score.genomics import Region, prepare
from tests.unit.genomics.helpers import Sample, bgzf_blocks, reader

ECONOMY_LIMIT = 1.1


@functools.cache
def _bam_records(path: Path) -> list[tuple[int, int, int, int, int]]:
    """(tid, start, end, vstart, vend) of every record, in file order."""
    out = []
    with pysam.AlignmentFile(str(path)) as f:
        v0 = f.tell()
        for r in f.fetch(until_eof=True):
            v1 = f.tell()
            start = r.reference_start
            end = r.reference_end if r.reference_end is not None and not r.is_unmapped else start + 1
            out.append((r.reference_id, start, max(end, start + 1), v0, v1))
            v0 = v1
    return out


@functools.cache
def _vcf_records(path: Path) -> list[tuple[str, int, int, int, int]]:
    """(chrom, start, end, vstart, vend) of every VCF data line, from an independent walk of the blocks."""
    data = path.read_bytes()
    blocks = bgzf_blocks(data)
    stream = bytearray()
    starts = []  # uncompressed offset where each block starts
    for off, size in blocks:
        starts.append((len(stream), off))
        stream += zlib.decompress(data[off : off + size][18:-8], -15)
    ustarts = [u for u, _ in starts]

    def voff(u: int) -> int:
        i = bisect.bisect_right(ustarts, u) - 1
        return (starts[i][1] << 16) | (u - starts[i][0])

    out = []
    pos = 0
    for line in bytes(stream).split(b"\n"):
        end_pos = pos + len(line) + 1
        if line and not line.startswith(b"#"):
            f = line.split(b"\t")
            beg = int(f[1]) - 1
            end = beg + len(f[3])
            for item in f[7].split(b";"):
                if item.startswith(b"END="):
                    end = max(end, int(item[4:]))
            out.append((f[0].decode(), beg, end, voff(pos), voff(min(end_pos, len(stream)))))
        pos = end_pos
    return out


@functools.cache
def _by_reference(path: Path, fmt: str) -> dict[object, tuple[list[int], list[tuple], int]]:
    """Records grouped per reference, with their starts for bisecting and the longest record span."""
    records = _bam_records(path) if fmt == "BAM" else _vcf_records(path)
    grouped: dict[object, list[tuple]] = {}
    for rec in records:
        grouped.setdefault(rec[0], []).append(rec)
    return {k: ([r[1] for r in v], v, max(r[2] - r[1] for r in v)) for k, v in grouped.items()}


def minimal_block_bytes(sample: Sample, regions: list[Region], tids: dict[str, int]) -> int:
    """Total size of the BGZF blocks that hold at least one byte of a record overlapping a region."""
    data = sample.path.read_bytes()
    blocks = bgzf_blocks(data)
    offsets = [o for o, _ in blocks]
    needed: set[int] = set()
    per_ref = _by_reference(sample.path, sample.fmt)
    for r in regions:
        key = tids[r.reference_name] if sample.fmt == "BAM" else r.reference_name
        if key not in per_ref:
            continue
        begs, records, longest = per_ref[key]
        r_beg, r_end = r.start or 0, r.end if r.end is not None else 1 << 40
        lo = bisect.bisect_left(begs, r_beg - longest)
        hi = bisect.bisect_left(begs, r_end)
        for _ref, beg, end, v0, v1 in records[lo:hi]:
            if beg < r_end and end > r_beg:
                first = bisect.bisect_left(offsets, v0 >> 16)
                last = bisect.bisect_left(offsets, v1 >> 16) - (0 if v1 & 0xFFFF else 1)
                needed.update(range(first, last + 1))
    return sum(blocks[i][1] for i in needed)


REGION_SIZES = [1, 100, 1_000, 10_000, 100_000, None]
MODES = {
    "trimmed": {},
    "whole-blocks": {"whole_blocks": True},
    "index-only": {"refine": False, "whole_blocks": True},
}


def economy_rows(sample: Sample, contig: str, centres: list[int], modes: list[str]) -> list[tuple]:
    """(sample, mode, centre, size, body bytes, minimal bytes, ratio) per region and planning mode."""
    data = sample.data()
    read = reader(data)
    prep = prepare(sample.fmt, read, len(data), sample.index.read_bytes(), sample.index_kind)
    rows = []
    for centre in centres:
        for size in REGION_SIZES:
            if size is None:
                region = Region(contig)
            else:
                region = Region(contig, max(0, centre - size // 2), centre + size - size // 2)
            minimal = minimal_block_bytes(sample, [region], prep.tids)
            for mode in modes:
                pieces = prep.plan(read, [region], **MODES[mode])
                body = sum(p.length for p in pieces if p.class_ == "body") - 28  # minus the EOF marker
                ratio = body / minimal if minimal else 0.0
                rows.append((sample.name, mode, centre, size or "contig", body, minimal, ratio))
    return rows


def _report(rows: list[tuple]) -> str:
    return "\n".join(
        f"{n:8s} {mode:12s} centre={c:>8} size={s!s:>7} body={b:>8} minimal={m:>8} ratio={r:.3f}"
        for n, mode, c, s, b, m, r in rows
    )


def _assert_economical(rows: list[tuple]) -> None:
    for row in rows:
        body, minimal = row[4], row[5]
        assert body <= ECONOMY_LIMIT * minimal or body == minimal == 0, _report([row])


@pytest.mark.parametrize(
    ("name", "centres"), [("big", [1_000, 250_000, 504_593, 1_009_000]), ("big_csi", [250_000, 1_009_000])]
)
def test_bam_economy(samples: dict[str, Sample], name: str, centres: list[int]) -> None:
    rows = economy_rows(samples[name], "CHROMOSOME_I", centres, ["trimmed", "whole-blocks"])
    print(_report(rows))
    _assert_economical(rows)


def test_vcf_economy(samples: dict[str, Sample]) -> None:
    rows = economy_rows(samples["big_vcf"], "2", [5_000, 700_000, 1_500_000], ["trimmed"])
    print(_report(rows))
    _assert_economical(rows)


def test_index_only_planning_is_less_economical(samples: dict[str, Sample]) -> None:
    """Why refinement exists: the index alone overshoots small regions (and the scan never makes things worse)."""
    rows = economy_rows(samples["big"], "CHROMOSOME_I", [250_000], ["index-only", "whole-blocks"])
    print(_report(rows))
    index_only = [r for r in rows if r[1] == "index-only"]
    refined = [r for r in rows if r[1] == "whole-blocks"]
    assert all(a[4] >= b[4] for a, b in zip(index_only, refined, strict=True))
    assert max(r[6] for r in index_only) > 1.5
