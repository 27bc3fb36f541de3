"""The streaming slicer behind ``score-client view``: regions of a BAM/CRAM/SAM or VCF/BCF, record by record.

What differs from Score's client (reference §6.3, §8 items 20 and 24), and why:

* Records are written as they are fetched; nothing is collected in memory (Score buffered every record).
  The one exception is ``--rewrite-header`` (Score's reduced header), which must know the read groups in
  use before it writes the header: records are spooled to an uncompressed BAM in the private directory.
* Regions are parsed here (:mod:`.regions`) and passed to pysam as (contig, start, stop), so contig names
  with ``:`` or ``-`` work, and a contig the file does not have is an error naming it, not a silent drop.
* Several regions are sorted into file order and merged, as ``samtools view -M`` does: every record is
  written once, in stored order, and sorted input gives sorted (indexable) output. (``bcftools view -r``
  keeps the contigs in the order the regions name them instead; positions within a contig agree.)
* ``--contained`` keeps records that lie wholly inside one of the regions as given (not the merged span).
* CRAM is read and written with the reference FASTA given, so slices are decoded rather than reduced to
  a header, and ``--output-format cram`` writes real CRAM.
* No index means an error that says what was looked for; never a silent header-only output.
* A remote object with a local index is not handed to htslib: only the byte ranges planned from the index
  are fetched, with bounded ranged GETs, into a slice file that is indexed and viewed locally
  (:mod:`.planned`); htslib reads the remote object itself only when planning is impossible or not worth it.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from score import __version__
from score.client.errors import ClientError
from score.client.genomics.planned import Staged, stage
from score.client.genomics.regions import (
    Region,
    RegionError,
    Window,
    check_contigs,
    parse_region,
    plan_windows,
)
from score.client.genomics.resolve import ALIGNMENT_FORMATS, VARIANT_FORMATS, Source
from score.client.genomics.sandbox import redact

if TYPE_CHECKING:
    import pysam

Say = Callable[[str], None]
EXTENSIONS = {"sam": "sam", "bam": "bam", "cram": "cram", "vcf": "vcf", "vcf.gz": "vcf.gz", "bcf": "bcf"}
_SOURCE_SUFFIXES = (".bam", ".cram", ".sam.gz", ".sam", ".vcf.gz", ".vcf.bgz", ".vcf", ".bcf")
MAX_NAME = 128


@dataclass
class ViewRequest:
    """What to extract and how to write it (paths already absolute: htslib runs in another directory)."""

    queries: Sequence[str] = ()
    bed: Path | None = None
    contained: bool = False
    header_only: bool = False
    original_header: bool = True
    with_header: bool = True  # False: records only (SAM and VCF text)
    output_format: str | None = None
    reference: Path | None = None
    output_index: bool = False
    whole_file: bool = False
    command_line: str = ""
    bed_regions: list[Region] = field(default_factory=list)


@dataclass(frozen=True)
class ViewResult:
    records: int
    output: Path | None  # None: standard output
    index: Path | None


def output_format(source: Source, requested: str | None) -> str:
    """The output format: as asked if it suits the input's kind, else the kind's text format."""
    if requested is None:
        return "sam" if source.kind == "alignments" else "vcf"
    allowed = ALIGNMENT_FORMATS if source.kind == "alignments" else VARIANT_FORMATS
    if requested not in allowed:
        raise ClientError(
            f"{source.label} holds {source.kind}; --output-format {requested} does not apply "
            f"(use one of {', '.join(allowed)})"
        )
    return requested


def output_name(source_name: str, request: ViewRequest, fmt: str) -> str:
    """Score's output file name: ``X.bam`` + ``chr1:1-2``, ``chr5`` as BAM -> ``X.chr1_1-2__chr5.bam``.

    The tag is ``header`` for ``--header-only``, the BED file's name for ``--bed-query``; names longer
    than 128 characters are cut to 127 plus ``~`` before the extension. Path separators never survive.
    """
    stem = source_name
    for suffix in _SOURCE_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    if request.header_only:
        tag = "header"
    else:
        parts = [q.replace(":", "_") for q in request.queries]
        if request.bed is not None:
            parts.append(request.bed.name.removesuffix(".bed"))
        tag = "__".join(parts)
    base = f"{stem}.{tag}" if tag else stem
    base = base.replace("/", "_").replace("\\", "_").replace("\0", "_")
    ext = EXTENSIONS[fmt]
    name = f"{base}.{ext}"
    if len(name) > MAX_NAME:
        name = f"{base[:127]}~.{ext}"
    return name


def view(source: Source, request: ViewRequest, target: Path | None, workdir: Path, say: Say) -> ViewResult:
    """Write the requested part of ``source`` to ``target`` (None: standard output); return what was written."""
    fmt = output_format(source, request.output_format)
    if target is not None:
        if target.exists() and target.resolve() == Path(source.location).resolve():
            raise ClientError(f"refusing to overwrite the input {target}; choose another --output-dir/--output-file")
        partial = target.with_name(f".{target.name}.partial")
    else:
        partial = None
        sys.stdout.flush()
    run = _view_alignments if source.kind == "alignments" else _view_variants
    staged: Staged | None = None
    try:
        staged = _stage(source, request, fmt, workdir)
        count = run(staged.source if staged is not None else source, request, fmt, partial, workdir, say)
    except BaseException:
        if partial is not None:
            partial.unlink(missing_ok=True)
        raise
    finally:
        if staged is not None:
            staged.remove()
    index = None
    if target is not None and partial is not None:
        os.replace(partial, target)
        if request.output_index:
            index = _index(target, fmt)
    return ViewResult(count, target, index)


# -- planned ranges ----------------------------------------------------------------------------------
def _stage(source: Source, request: ViewRequest, fmt: str, workdir: Path) -> Staged | None:
    """For a remote object: fetch only the planned byte ranges into a local slice (None: read it remotely).

    Not for ``--whole-file`` or a view without regions (every record is read: htslib streams it), nor when
    the view is bound to fail before reading (CRAM without its reference).
    """
    if not source.remote or request.whole_file:
        return None
    if not request.header_only and not (request.queries or request.bed_regions):
        return None
    if source.kind == "alignments":
        _need_reference(source, fmt, request)

    def regions_for(contigs: Sequence[str]) -> list[Region]:
        try:
            regions = [parse_region(q, contigs) for q in request.queries]
            check_contigs(request.bed_regions, contigs)
        except RegionError as exc:
            raise ClientError(str(exc)) from exc
        return regions + list(request.bed_regions)

    return stage(source, workdir, request.header_only, regions_for)


# -- regions -----------------------------------------------------------------------------------------
def _regions(request: ViewRequest, contigs: Sequence[str], say: Say) -> list[Region]:
    try:
        regions = [parse_region(q, contigs) for q in request.queries]
        check_contigs(request.bed_regions, contigs)
    except RegionError as exc:
        raise ClientError(str(exc)) from exc
    for region in regions:
        if region.note:
            say(f"note: {region.note}")
    return regions + list(request.bed_regions)


@contextmanager
def _quiet_unless(index_known: bool) -> Iterator[None]:
    """Without a known index htslib probes ``<file>.bai`` and friends and logs each miss as an error.

    Those probes are expected to fail (we report a missing index ourselves, clearly), so htslib's log
    is silenced while the file is opened; real failures still raise with their message.
    """
    import pysam

    if index_known:
        yield
        return
    previous = pysam.set_verbosity(0)
    try:
        yield
    finally:
        pysam.set_verbosity(previous)


def _need_index(source: Source, request: ViewRequest, regions: Sequence[Region], has_index: bool) -> None:
    if request.header_only or has_index:
        return
    if regions:
        raise ClientError(
            source.no_index_message(
                "pass --input-file-index, or use `score-client download` to read it whole"
                if source.remote
                else "index it (samtools index / bcftools index) or pass --input-file-index"
            )
        )
    if not request.whole_file:
        raise ClientError(
            source.no_index_message(
                "pass --input-file-index, or --whole-file to read every record from start to end, or use "
                "`score-client download` to fetch the file"
            )
        )


def _unique_windows(
    windows: Sequence[Window],
    contained: bool,
    fetch: Callable[[Window], Iterator[Any]],
    span: Callable[[Any], tuple[int, int]],
) -> Iterator[Any]:
    """Records of each window, each record once, filtered by ``--contained`` against the regions as given.

    A record fetched for a window that starts before the previous window's end (same contig) overlaps
    that window too, so it has already been written: skip it (what ``samtools view -M`` does).
    """
    previous: tuple[str, int] | None = None
    for window in windows:
        floor = previous[1] if previous is not None and previous[0] == window.contig else None
        for record in fetch(window):
            start, end = span(record)
            if floor is not None and start < floor:
                continue
            if contained and not any(m.contains(start, end) for m in window.members):
                continue
            yield record
        if window.end is not None:
            previous = (window.contig, window.end)


# -- alignments ----------------------------------------------------------------------------------------
def _alignment_span(record: pysam.AlignedSegment) -> tuple[int, int]:
    """[start, end) on the reference as htslib's overlap test sees it (unmapped/zero-length: one base)."""
    start = record.reference_start
    end = record.reference_end
    if end is None or end <= start:
        end = start + 1
    return start, end


def _need_reference(source: Source, fmt: str, request: ViewRequest) -> str | None:
    if request.reference is not None:
        return str(request.reference)
    if source.format == "cram" and not request.header_only:
        raise ClientError(
            f"{source.label} is CRAM: pass --reference-file with the FASTA it was written against "
            "(htslib looks references up only locally here)"
        )
    if fmt == "cram":
        raise ClientError("--output-format cram needs --reference-file (the FASTA to encode against)")
    return None


def _view_alignments(
    source: Source, request: ViewRequest, fmt: str, target: Path | None, workdir: Path, say: Say
) -> int:
    import pysam

    reference = _need_reference(source, fmt, request)
    kwargs: dict[str, Any] = {"check_sq": False}
    if reference:
        kwargs["reference_filename"] = reference
    if source.index:
        kwargs["index_filename"] = source.index
    mode = {"bam": "rb", "cram": "rc", "sam": "r"}[source.format]
    with _quiet_unless(source.index is not None):
        try:
            infile = pysam.AlignmentFile(source.location, mode, **kwargs)
        except (OSError, ValueError) as exc:
            raise ClientError(f"cannot open {source.label}: {redact(str(exc))}") from exc
    with infile:
        contigs = list(infile.references)
        regions = _regions(request, contigs, say)
        _need_index(source, request, regions, infile.has_index())
        windows = plan_windows(regions, contigs)

        def records() -> Iterator[pysam.AlignedSegment]:
            if request.header_only:
                return iter(())
            if not windows:
                return infile.fetch(until_eof=True)
            return _unique_windows(
                windows,
                request.contained,
                lambda w: infile.fetch(contig=w.contig, start=w.start, stop=w.end),
                _alignment_span,
            )

        try:
            if request.original_header:
                with _alignment_writer(target, fmt, infile.header, reference, request.with_header) as out:
                    return _copy(records(), out.write)
            # Score's header names only the read groups in use: spool first (to disk, not memory).
            spool_path = workdir / "spool.bam"
            used: set[str] = set()
            with pysam.AlignmentFile(str(spool_path), "wbu", header=infile.header) as spool:
                for record in records():
                    if record.has_tag("RG"):
                        used.add(str(record.get_tag("RG")))
                    spool.write(record)
            header = pysam.AlignmentHeader.from_dict(score_header(infile.header.to_dict(), used, request.command_line))
            with (
                pysam.AlignmentFile(str(spool_path), "rb", check_sq=False) as spooled,
                _alignment_writer(target, fmt, header, reference, request.with_header) as out,
            ):
                count = _copy(spooled.fetch(until_eof=True), out.write)
            spool_path.unlink()
            return count
        except BrokenPipeError:
            raise  # the reader of our output has gone (e.g. `| head`): not an error of the input
        except (OSError, ValueError) as exc:
            raise ClientError(f"reading {source.label} failed: {redact(str(exc))}") from exc


def _alignment_writer(
    target: Path | None, fmt: str, header: pysam.AlignmentHeader, reference: str | None, with_header: bool
) -> pysam.AlignmentFile:
    import pysam

    kwargs: dict[str, Any] = {}
    if fmt == "cram":
        kwargs["reference_filename"] = reference
    if fmt == "sam" and not with_header:
        kwargs["add_sam_header"] = False
    mode = {"sam": "w", "bam": "wb", "cram": "wc"}[fmt]
    return pysam.AlignmentFile(str(target) if target is not None else "-", mode, header=header, **kwargs)


def score_header(header: dict[str, Any], used_read_groups: set[str], command_line: str) -> dict[str, Any]:
    """Score's rewritten header: @SQ and @PG kept, @RG reduced to those used, SO:coordinate, a new @PG.

    Unlike Score, an existing @PG ``score`` gets a numbered sibling (``score.1``) instead of a crash on
    short @PG ids, and the new @PG chains (``PP``) to the last existing one as samtools does.
    """
    hd = dict(header.get("HD") or {})
    hd.setdefault("VN", "1.6")
    hd["SO"] = "coordinate"
    result: dict[str, Any] = {"HD": hd, "SQ": list(header.get("SQ", []))}
    groups = [rg for rg in header.get("RG", []) if str(rg.get("ID")) in used_read_groups]
    if groups:
        result["RG"] = groups
    programs = [dict(pg) for pg in header.get("PG", [])]
    ids = {str(pg.get("ID")) for pg in programs}
    program_id, n = "score", 0
    while program_id in ids:
        n += 1
        program_id = f"score.{n}"
    entry: dict[str, Any] = {"ID": program_id, "PN": "Score Client", "VN": __version__}
    if programs:
        pointed = {str(pg.get("PP")) for pg in programs if pg.get("PP")}
        leaves = [str(pg["ID"]) for pg in programs if "ID" in pg and str(pg["ID"]) not in pointed]
        if leaves:
            entry["PP"] = leaves[-1]
    if command_line:
        entry["CL"] = command_line
    result["PG"] = [*programs, entry]
    return result


# -- variants ------------------------------------------------------------------------------------------
def _variant_span(record: pysam.VariantRecord) -> tuple[int, int]:
    start, end = record.start, record.stop
    return start, max(end, start + 1)


def _view_variants(source: Source, request: ViewRequest, fmt: str, target: Path | None, workdir: Path, say: Say) -> int:
    """VCF/BCF records are written as htslib formats them (``str(record)``), never through pysam's writer:
    ``VariantFile.write`` adds INFO/END to records with symbolic alleles (and to the header), so its output
    would differ from the input's and from ``bcftools view``. BCF output is converted by bcftools itself.
    """
    import pysam
    from pysam import bcftools

    kwargs: dict[str, Any] = {}
    if source.index:
        kwargs["index_filename"] = source.index
    with _quiet_unless(source.index is not None):
        try:
            infile = pysam.VariantFile(source.location, "r", **kwargs)
        except (OSError, ValueError) as exc:
            raise ClientError(f"cannot open {source.label}: {redact(str(exc))}") from exc
    if not request.original_header:
        say("note: --rewrite-header applies to alignments only; the VCF header is written as it is")
    with infile:
        indexed = set(infile.index) if infile.index is not None else set()
        contigs = list(infile.header.contigs)
        index_contigs = source.index_contigs if source.index_contigs is not None else (infile.index or ())
        contigs += [c for c in index_contigs if c not in set(contigs)]
        regions = _regions(request, contigs, say)
        _need_index(source, request, regions, infile.index is not None)
        windows = plan_windows(regions, contigs)

        def fetch(window: Window) -> Iterator[pysam.VariantRecord]:
            if window.contig not in indexed:  # declared in the header, no records: nothing to read
                return iter(())
            return infile.fetch(window.contig, window.start, window.end)

        def records() -> Iterator[pysam.VariantRecord]:
            if request.header_only:
                return iter(())
            if not windows:
                return iter(infile)
            return _unique_windows(windows, request.contained, fetch, _variant_span)

        header = str(infile.header).encode()

        def write(stream: IO[bytes], with_header: bool) -> int:
            if with_header:
                stream.write(header)
            return _copy(records(), lambda r: stream.write(str(r).encode()))

        try:
            if fmt == "vcf":
                with _text_output(target) as stream:
                    return write(stream, request.with_header)
            compressed = target if fmt == "vcf.gz" and target is not None else workdir / "records.vcf.gz"
            with pysam.BGZFile(str(compressed), "wb") as stream:
                count = write(stream, True)
            if fmt == "bcf":
                converted = target if target is not None else workdir / "records.bcf"
                bcftools.view("--no-version", "-O", "b", "-o", str(converted), str(compressed), catch_stdout=False)
                compressed = converted
            if target is None:
                with open(compressed, "rb") as handle:
                    shutil.copyfileobj(handle, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            return count
        except BrokenPipeError:
            raise  # the reader of our output has gone (e.g. `| head`): not an error of the input
        except (OSError, ValueError, pysam.SamtoolsError) as exc:
            raise ClientError(f"reading {source.label} failed: {redact(str(exc))}") from exc


class _text_output:
    """A binary stream to ``target`` or to standard output (not closed: it belongs to the process)."""

    def __init__(self, target: Path | None) -> None:
        self.target = target
        self.handle: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        self.handle = open(self.target, "wb") if self.target is not None else sys.stdout.buffer
        return self.handle

    def __exit__(self, *exc: object) -> None:
        assert self.handle is not None
        if self.target is not None:
            self.handle.close()
        else:
            self.handle.flush()


def _copy(records: Iterator[Any], write: Callable[[Any], Any]) -> int:
    count = 0
    for record in records:
        write(record)
        count += 1
    return count


def _index(path: Path, fmt: str) -> Path:
    """Index a written BAM/CRAM (.bai/.crai) or bgzipped VCF/BCF (.tbi/.csi) with samtools/bcftools."""
    import pysam
    from pysam import bcftools, samtools

    try:
        if fmt in ("bam", "cram"):
            samtools.index(str(path))
            return path.with_name(path.name + (".bai" if fmt == "bam" else ".crai"))
        if fmt == "vcf.gz":
            bcftools.index("-t", "-f", str(path))
            return path.with_name(path.name + ".tbi")
        if fmt == "bcf":
            bcftools.index("-f", str(path))
            return path.with_name(path.name + ".csi")
    except pysam.SamtoolsError as exc:
        raise ClientError(f"indexing {path} failed: {exc}") from exc
    raise ClientError(f"--output-index needs bam, cram, vcf.gz or bcf output, not {fmt}")
