"""The ``view`` and ``samtools`` commands: options, checks and messages; the work is in view.py/samtools.py."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import click

from score.client.errors import ClientError
from score.client.genomics import samtools as samtools_ops
from score.client.genomics.regions import RegionError, read_bed
from score.client.genomics.resolve import Source, is_url, resolve_input, resolve_object
from score.client.genomics.sandbox import private_workdir, redacted_stderr
from score.client.genomics.view import ViewRequest, output_format, output_name, view

if TYPE_CHECKING:
    from score.client.session import Session

FORMATS = ("sam", "bam", "cram", "vcf", "vcf.gz", "bcf")
VIEWABLE = (".bam", ".sam", ".cram", ".vcf", ".vcf.gz", ".vcf.bgz", ".bcf")


def _absolute(value: str | None) -> str | None:
    """Paths are resolved before htslib runs in its private directory; URLs are left alone."""
    if value is None or is_url(value):
        return value
    return str(Path(value).expanduser().resolve())


def _absolute_path(path: Path | None) -> Path | None:
    return path.expanduser().resolve() if path is not None else None


def _require_pysam() -> None:
    try:
        import pysam  # noqa: F401
    except ImportError as exc:
        raise ClientError("this command needs pysam: install the client with the 'genomics' extra") from exc


def _check_reference(reference: Path | None) -> None:
    """htslib needs ``<fasta>.fai``; build it when missing (as samtools would) or say how."""
    if reference is None:
        return
    if not reference.is_file():
        raise ClientError(f"reference file {reference} does not exist")
    if reference.with_name(reference.name + ".fai").exists():
        return
    import pysam

    try:
        pysam.faidx(str(reference))
    except pysam.SamtoolsError as exc:
        raise ClientError(
            f"reference {reference} has no .fai index and it could not be built ({exc}); run `samtools faidx` on it"
        ) from exc


@click.command("view", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--object-id", help="Object to view (its index is found through the metadata server).")
@click.option("--input-file", help="Local file or URL to view instead of an object.")
@click.option("--input-file-index", help="Index of --input-file or --object-id (local file or URL).")
@click.option("--manifest", help="Song download manifest: view every BAM/CRAM/SAM/VCF/BCF in it (needs --output-dir).")
@click.option("--query", "queries", multiple=True, help="Region chr, chr:beg, chr:beg-end or {name}:beg-end (1-based).")
@click.argument("more_queries", nargs=-1, metavar="[REGION]...")
@click.option("--bed-query", type=click.Path(dir_okay=False, path_type=Path), help="BED file of regions.")
@click.option("--contained", is_flag=True, help="Only records wholly inside a region (default: overlapping).")
@click.option("--header-only", is_flag=True, help="Only the header.")
@click.option(
    "--output-original-header/--rewrite-header",
    "original_header",
    default=True,
    show_default=True,
    help="Header as it is (default), or Score's rewrite: read groups in use only, SO:coordinate, @PG score.",
)
@click.option("--no-header", is_flag=True, help="Records only, no header (SAM and VCF output).")
@click.option("--output-format", type=click.Choice(FORMATS), help="Output format [sam for reads, vcf for variants].")
@click.option(
    "--output-type",
    type=click.Choice(["trimmed", "merged", "cross"]),
    default="trimmed",
    show_default=True,
    help="Score's option; only trimmed (records as stored) exists.",
)
@click.option("--reference-file", type=click.Path(dir_okay=False, path_type=Path), help="FASTA for CRAM in/out.")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), help="Write files here (Score names).")
@click.option("--output-file", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file.")
@click.option("--output-index", is_flag=True, help="Index the output file (.bai/.crai/.tbi/.csi).")
@click.option("--stdout", "to_stdout", is_flag=True, help="Write to standard output (the default without a file).")
@click.option("--whole-file", is_flag=True, help="Without an index and without regions: read every record.")
@click.option(
    "--verify-connection",
    type=click.BOOL,
    default=False,
    show_default=True,
    help="First read the object store's sentinel through a signed URL, so that a store this machine cannot "
    "reach is reported before anything is read (Score's option).",
)
@click.pass_obj
def view_command(
    session: Session,
    object_id: str | None,
    input_file: str | None,
    input_file_index: str | None,
    manifest: str | None,
    queries: tuple[str, ...],
    more_queries: tuple[str, ...],
    bed_query: Path | None,
    contained: bool,
    header_only: bool,
    original_header: bool,
    no_header: bool,
    output_format: str | None,
    output_type: str,
    reference_file: Path | None,
    output_dir: Path | None,
    output_file: Path | None,
    output_index: bool,
    to_stdout: bool,
    whole_file: bool,
    verify_connection: bool,
) -> None:
    """Slice SAM/BAM/CRAM or VCF/BCF objects by region, streaming only the blocks the index points at.

    The object may be given as this server's drs://HOST/ID URI too.

    Regions are 1-based and inclusive like samtools': chr1, chr1:100 (to the end), chr1:100-200; a contig
    whose name contains ':' is written verbatim or in braces ({HLA-A*01:01}:1-100). Several regions
    (--query, extra arguments, --bed-query) are sorted and merged like `samtools view -M`: records come
    out once each, in file order.
    """
    from score.client import drs
    from score.client.session import Selection, download_manifest_entries

    ids, remote = drs.split_targets((object_id,) if object_id else (), session.config.storage_url)
    if remote:  # a slice reads the blocks an index points at, through this server's signed ranges
        raise click.UsageError(
            f"view reads objects of the configured server ({session.config.storage_url}); "
            "download it (score-client download drs://...) first to slice another server's objects"
        )
    selection = Selection.of(ids, manifest, others={"--input-file": input_file})
    if output_type != "trimmed":
        raise click.UsageError(f"--output-type {output_type} is not implemented (nor is it in Score); use trimmed")
    if to_stdout and (output_dir or output_file):
        raise click.UsageError("--stdout writes to standard output; drop --output-dir/--output-file")
    if manifest and (not output_dir or output_file or to_stdout):
        raise click.UsageError("--manifest writes one file per entry: give --output-dir (and no --output-file)")
    if input_file_index and manifest:
        raise click.UsageError("--input-file-index is the index of one file: use it with --input-file or --object-id")
    if output_index and not (output_dir or output_file):
        raise click.UsageError("--output-index needs a file to index: give --output-dir or --output-file")
    all_queries = tuple(queries) + tuple(more_queries)
    if whole_file and (all_queries or bed_query):
        raise click.UsageError("--whole-file reads every record; it cannot be combined with regions")
    if header_only and (contained or whole_file):
        raise click.UsageError("--header-only writes no records; drop --contained/--whole-file")
    _require_pysam()

    reference = _absolute_path(reference_file)
    _check_reference(reference)
    bed = _absolute_path(bed_query)
    try:
        bed_regions = read_bed(bed) if bed else []
    except RegionError as exc:
        raise ClientError(str(exc)) from exc
    request = ViewRequest(
        queries=all_queries,
        bed=bed,
        contained=contained,
        header_only=header_only,
        original_header=original_header,
        with_header=not no_header,
        output_format=output_format,
        reference=reference,
        output_index=output_index,
        whole_file=whole_file,
        command_line=shlex.join(["score-client", "view", *_redacted_argv()]),
        bed_regions=bed_regions,
    )
    out_dir = _absolute_path(output_dir)
    if out_dir is not None and output_file is not None and not output_file.is_absolute():
        out_file: Path | None = out_dir / output_file  # --output-dir D --output-file x.bam: D/x.bam
    else:
        out_file = _absolute_path(output_file)

    jobs: list[tuple[str, str | None]] = []  # (object id, index object id from the manifest)
    if selection.object_ids:
        jobs = [(selection.object_ids[0], None)]
    elif manifest:
        for entry in download_manifest_entries(manifest):
            if entry.file_name.lower().endswith(VIEWABLE):
                jobs.append((entry.object_id.lower(), entry.index_object_id.lower() or None))
            else:
                session.say(f"skipping {entry.object_id} ({entry.file_name}): not a BAM/CRAM/SAM/VCF/BCF file")
        if not jobs:
            raise ClientError(f"manifest {manifest} lists no BAM, CRAM, SAM, VCF or BCF files")
    if jobs and verify_connection:
        session.verify_connection()
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)

    input_location = _absolute(input_file)
    index_location = _absolute(input_file_index)
    failures = 0
    with private_workdir() as workdir, redacted_stderr():
        sources: list[Callable[[], Source]]
        if input_location:
            sources = [partial(resolve_input, input_location, index_location, workdir, not header_only)]
        else:
            sources = [
                partial(resolve_object, session, oid, workdir, idx, not header_only, index_location)
                for oid, idx in jobs
            ]
        for make_source in sources:
            try:
                source = make_source()
                _view_one(session, source, request, out_dir, out_file, workdir)
            except BrokenPipeError:
                _stdout_gone()
            except ClientError as exc:
                if not manifest:
                    raise
                failures += 1
                session.say(f"error: {exc}")
    if failures:
        raise ClientError(f"{failures} of {len(jobs)} manifest entries failed (see above)")


def _view_one(
    session: Session,
    source: Source,
    request: ViewRequest,
    out_dir: Path | None,
    out_file: Path | None,
    workdir: Path,
) -> None:
    fmt = output_format(source, request.output_format)
    target = out_file or (out_dir / output_name(source.name, request, fmt) if out_dir else None)
    if target is None and fmt in ("bam", "cram", "bcf", "vcf.gz") and sys.stdout.isatty():
        raise ClientError(f"refusing to write {fmt} to a terminal: redirect standard output or give --output-dir")
    result = view(source, request, target, workdir, session.say)
    if result.output is not None:
        index = f", index {result.index}" if result.index else ""
        session.say(f"wrote {result.records} records of {source.label} to {result.output}{index}")


def _stdout_gone() -> None:
    """Whoever read our output stopped (``| head``): end quietly, like samtools, without a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    sys.exit(0)


def _redacted_argv() -> list[str]:
    """This command's arguments for the @PG CL field (query strings of URLs, i.e. signatures, removed)."""
    from score.client.genomics.sandbox import redact

    args = sys.argv[1:]
    if "view" in args:
        args = args[args.index("view") + 1 :]
    return [redact(a) for a in args]


class _SamtoolsCommand(click.Command):
    """``-h`` is samtools' own option (``view -h``: include the header), passed through with the rest; only
    in a command line that names no object, which could not run anyway, does it ask for this help."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "-h" in args and not any(a == "--object-id" or a.startswith("--object-id=") for a in args):
            args = ["--help"]
        return super().parse_args(ctx, args)


@click.command(
    "samtools",
    cls=_SamtoolsCommand,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": ["--help"]},
)
@click.argument("operation", type=click.Choice(samtools_ops.OPERATIONS), metavar="OPERATION")
@click.option("--object-id", "object_ids", multiple=True, required=True, help="Object(s) to run on (repeatable).")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def samtools_command(session: Session, operation: str, object_ids: tuple[str, ...], args: tuple[str, ...]) -> None:
    """Run a read-only samtools command on remote objects: samtools' own flags, output and exit status.

    OPERATION is one of: view, flagstat, idxstats, depth, quickcheck, coverage, stats, mpileup, bedcov.

    Example: score-client samtools view --object-id ID -c chr1:100-200. The object id may appear among
    the arguments where samtools expects the file; otherwise it is put first. Indexes are found as for
    `view` and used locally. CRAM needs samtools' own --reference option. Without --object-id, -h shows
    this help; with it, -h is samtools' own (view -h: include the header)."""
    from score.client.session import object_id

    _require_pysam()
    ids = [object_id(i) for i in object_ids]
    cwd = Path.cwd()
    with private_workdir() as workdir, redacted_stderr():
        inputs = []
        for oid in ids:
            source = resolve_object(session, oid, workdir, require_format=False)
            inputs.append(samtools_ops.Input(oid, source.location, source.index))
        arguments = samtools_ops.build_arguments(operation, args, inputs, cwd)
        status = samtools_ops.run(operation, arguments, inputs, workdir)
    sys.exit(status)
