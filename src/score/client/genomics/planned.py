"""Planned views of remote objects: fetch only the byte ranges the index points at, then view a local slice.

Given to htslib, a signed whole-object URL is read with open-ended GETs that the client abandons once it
has enough, after the store has already sent megabytes (8% of a 226 MB BAM for one 1 Mb region). Here the
project's own htsget planner (:mod:`score.genomics`) decides instead, from the local copy of the index and a
few bounded reads of the header and the regions' edges, which pieces make up a valid file holding every
record of the regions: the header, the body ranges (edge blocks trimmed and re-compressed inline where records
straddle them) and the EOF marker. Those pieces are fetched with bounded ranged GETs (:mod:`.ranged`),
written in order to a slice file in the private working directory and indexed there; the usual view logic
then reads the slice, so output, filtering and headers are exactly what reading the remote file gives.

``stage`` returns ``None`` whenever this is not possible or not worth it, and the caller reads the remote
object with htslib as before: not an http(s) URL, SAM or plain VCF, no local index, an index kind or file
the planner cannot use, a store that ignores ranges, no regions (the whole file is read anyway), or a planned
slice over ``PLANNED_SLICE_LIMIT`` bytes (streaming beats staging such a file on disk).
``--header-only`` needs no index: the header is located by parsing it, the same way the planner does.
"""

from __future__ import annotations

import logging
import tempfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from score.client.errors import ClientError
from score.client.genomics.ranged import RangedReader, RangesUnavailable
from score.client.genomics.regions import Region, unknown_contig_message
from score.client.genomics.resolve import Source
from score.genomics import (
    Format,
    IndexKind,
    InvalidInput,
    InvalidRange,
    MalformedData,
    MalformedIndex,
    Piece,
    UnknownReference,
    UnsupportedFormat,
    prepare,
)
from score.genomics import Region as PlannerRegion
from score.genomics.bgzf import BGZF_EOF, BlockReader, compress, split_voffset
from score.genomics.naming import PLANNED_FORMATS

log = logging.getLogger("score.client")

PLANNED_SLICE_LIMIT = 512 * 1024 * 1024
"""Largest planned slice (sum of the pieces' lengths) staged on disk; beyond it htslib streams the object."""

MAX_COORDINATE = (1 << 32) - 1  # the planner's (htsget's) coordinate limit
_SLICE_INDEX = {"bam": ".csi", "cram": ".crai", "vcf.gz": ".csi", "bcf": ".csi"}

RegionsFor = Callable[[Sequence[str]], list[Region]]
"""Parse the user's regions against the file's contig names (raises ClientError for unknown contigs)."""


@dataclass
class Staged:
    """A local slice standing in for a remote object, and what it cost."""

    source: Source
    files: list[Path]
    pieces: int
    fetched: int  # bytes received from the store
    requests: int

    def remove(self) -> None:
        for path in self.files:
            path.unlink(missing_ok=True)


def index_kind(data: bytes, fmt: Format) -> IndexKind | None:
    """The kind of an index from its bytes (names of index objects are not always telling)."""
    head = data[:4]
    if head == b"BAI\x01":
        return "bai"
    if data[:2] == b"\x1f\x8b":
        try:
            head = zlib.decompressobj(31).decompress(data[:65536], 4)
        except zlib.error:
            return None
    if head == b"CSI\x01":
        return "csi"
    if head == b"TBI\x01":
        return "tbi"
    return "crai" if fmt == "CRAM" else None


def to_planner_region(region: Region) -> PlannerRegion:
    """A view region (0-based half-open, ``end`` None = to the contig end) as the planner takes it."""
    if region.start == 0 and region.end is None:
        return PlannerRegion(region.contig)
    end = None if region.end is None else min(region.end, MAX_COORDINATE)
    return PlannerRegion(region.contig, region.start, end)


def header_pieces(fmt: Format, read: Callable[[int, int], bytes], size: int) -> list[Piece]:
    """Header and EOF of the object, as ``plan(..., header_only=True)`` gives them, without needing an index."""
    if fmt == "CRAM":
        from score.genomics.cram import parse_cram_layout

        layout = parse_cram_layout(read, size)
        eof = Piece("range", layout.eof_start, size) if layout.has_eof else Piece("inline", data=layout.eof_bytes)
        return [Piece("range", 0, layout.header.end, class_="header"), eof]
    from score.genomics.bam import parse_bam_header
    from score.genomics.bcf import parse_bcf_header
    from score.genomics.vcf import parse_vcf_header

    blocks = BlockReader(read, size)
    header = {"BAM": parse_bam_header, "VCF": parse_vcf_header, "BCF": parse_bcf_header}[fmt](blocks)
    hc, hu = split_voffset(header.end)
    pieces = [Piece("range", 0, hc, class_="header")] if hc else []
    if hu:
        pieces.append(Piece("inline", data=compress(blocks.block_at(hc)[1][:hu]), class_="header"))
    pieces.append(Piece("inline", data=BGZF_EOF))
    return pieces


def stage(source: Source, workdir: Path, header_only: bool, regions_for: RegionsFor) -> Staged | None:
    """Write the planned slice of a remote ``source`` into ``workdir``; ``None``: read it with htslib instead."""
    fmt = PLANNED_FORMATS.get(source.format)
    if not source.remote or fmt is None or not source.location.lower().startswith(("http://", "https://")):
        return None
    if not header_only and source.index is None:
        return None
    with RangedReader(source.location) as reader:
        try:
            return _stage(source, fmt, reader, workdir, header_only, regions_for)
        except (RangesUnavailable, MalformedIndex, MalformedData, UnsupportedFormat, InvalidRange, InvalidInput) as exc:
            log.debug("planned ranges not used for %s: %s", source.label, exc)
            return None


def _stage(
    source: Source, fmt: Format, reader: RangedReader, workdir: Path, header_only: bool, regions_for: RegionsFor
) -> Staged | None:
    size = reader.size
    index_contigs: tuple[str, ...] | None = None
    if header_only:
        pieces = header_pieces(fmt, reader.read, size)
    else:
        assert source.index is not None
        data = Path(source.index).read_bytes()
        kind = index_kind(data, fmt)
        if kind is None:
            raise UnsupportedFormat(f"{source.index} is not an index the planner reads")
        prepared = prepare(fmt, reader.read, size, data, kind)
        contigs = list(prepared.header.names)
        if fmt == "VCF":
            # pysam lists the header's contigs, then the index's others (a VCF need not declare its contigs).
            names = getattr(prepared.index, "names", None) or ()
            index_contigs = tuple(names)
            contigs += [c for c in names if c not in set(contigs)]
        regions = regions_for(contigs)
        if not regions:
            return None  # every record: htslib streams the object from start to end
        try:
            pieces = prepared.plan(reader.read, [to_planner_region(r) for r in regions])
        except UnknownReference as exc:
            missing = next((r for r in regions if r.contig not in prepared.known), None)
            if missing is None:
                raise ClientError(str(exc)) from exc
            message = unknown_contig_message(missing.contig, missing.text or str(missing), contigs)
            raise ClientError(message) from exc
    total = sum(p.length for p in pieces)
    if total > PLANNED_SLICE_LIMIT:
        log.debug("planned slice of %s is %d bytes: streaming instead", source.label, total)
        return None
    suffix = {"BAM": ".bam", "CRAM": ".cram", "VCF": ".vcf.gz", "BCF": ".bcf"}[fmt]
    descriptor, name = tempfile.mkstemp(dir=workdir, prefix="slice-", suffix=suffix)
    path = Path(name)
    files = [path]
    try:
        with open(descriptor, "wb") as handle:
            for piece in pieces:
                if piece.kind == "range":
                    reader.copy(piece.start, piece.end, handle)
                else:
                    handle.write(piece.data)
        index = None if header_only else _index_slice(path, source.format)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if index is not None:
        files.append(index)
    elif not header_only:
        path.unlink(missing_ok=True)
        return None
    log.debug(
        "%s: %d pieces, %d bytes in %d requests, for %s (%d bytes)",
        source.label, len(pieces), reader.fetched, reader.requests, path.name, total,
    )  # fmt: skip
    staged = Source(
        source.label,
        source.name,
        str(path),
        source.format,
        index=str(index) if index is not None else None,
        index_contigs=index_contigs,
    )
    return Staged(staged, files, len(pieces), reader.fetched, reader.requests)


def _index_slice(path: Path, fmt: str) -> Path | None:
    """Index the slice (CSI for BGZF formats: no contig length limit); ``None`` if that fails.

    The index is named so that htslib does not find it by itself (it is passed explicitly): on opening a
    VCF, htslib adds ``##contig`` lines for the contigs of an index it finds beside the file, which would
    make the header differ from the remote object's (where htslib finds no index by name).
    """
    import pysam
    from pysam import bcftools, samtools

    index = path.with_name(path.name.split(".", 1)[0] + "-index" + _SLICE_INDEX[fmt])
    try:
        if fmt == "bam":
            samtools.index("-c", str(path), str(index))
        elif fmt == "cram":
            samtools.index(str(path), str(index))
        else:
            bcftools.index("-c", "-f", "-o", str(index), str(path))
    except pysam.SamtoolsError as exc:
        log.debug("indexing the planned slice %s failed: %s", path.name, exc)
        return None
    return index if index.exists() else None
