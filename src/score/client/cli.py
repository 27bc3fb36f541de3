"""``score-client``: the command line only — options, messages, exit codes. The work is in ``transfer``."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import click
import httpx

from score import __version__
from score.client import drs
from score.client.api import token_claims, token_expiry, unreachable_reason
from score.client.config import ClientConfig
from score.client.errors import ClientError
from score.client.library import target_path
from score.client.session import (
    Selection,
    Session,
    download_entities,
    exists,
    read_manifest,
    shown,
    upload_items,
)
from score.client.session import object_id as object_id_of
from score.client.tls import api_context
from score.client.transfer.download import DownloadJob, DownloadTarget, missing_dirs, remove_empty_dirs
from score.client.transfer.jobs import FileOutcome, JobProgress, JobReport
from score.client.transfer.upload import UploadItem, UploadJob

BOOL = click.BOOL


pass_session = click.make_pass_decorator(Session)
COMPLETION_SHELLS = ("bash", "zsh", "fish")
COMPLETE_VARIABLE = "_SCORE_CLIENT_COMPLETE"  # what the printed script sets when it asks score-client for words

VERIFY_HELP = (
    "First read the object store's sentinel through a signed URL, so that a store this machine cannot reach "
    "is reported before any transfer starts; false skips the check."
)


class _ClientGroup(click.Group):
    """Loads the genomics commands (``view``, ``samtools``: region planner, index parsers) only when one
    of them runs or help is listed, so ``upload`` and ``download`` do not pay ~50 ms of imports to start."""

    _LAZY = ("mount", "samtools", "unmount", "view")

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in ("samtools", "view") and cmd_name not in self.commands:
            from score.client.genomics.commands import samtools_command, view_command

            self.add_command(view_command)
            self.add_command(samtools_command)
        if cmd_name in ("mount", "unmount") and cmd_name not in self.commands:
            from score.client.mount.command import mount_command, unmount_command  # libfuse loads on mount only

            self.add_command(mount_command)
            self.add_command(unmount_command)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_ClientGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="score-client")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--verbose", is_flag=True, help="Log what the client does (never tokens or URLs).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML configuration file.")
@click.option("--parallel", type=click.IntRange(1, 64), help="Parts transferred at once [4].")
@click.pass_context
def main(ctx: click.Context, quiet: bool, verbose: bool, config_file: str | None, parallel: int | None) -> None:
    """Upload and download files through a Score server, verified and resumable."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # httpx logs full URLs, signatures included
    ctx.obj = Session(lambda: ClientConfig.load(config_file, parallel=parallel), quiet)


# -- upload ----------------------------------------------------------------------------------------
@main.command()
@click.option("--file", "file_path", type=click.Path(path_type=Path), help="File to upload (with --object-id).")
@click.option("--object-id", help="Object id the file is registered under.")
@click.option("--md5", help="Expected MD5 of the file (default: the registered MD5).")
@click.option("--manifest", help="Song upload manifest (file or URL): object id, path, md5 per line.")
@click.option("--analysis-id", help="Upload every file registered in this analysis ...")
@click.option("--study-id", help="... of this study ...")
@click.option(
    "--input-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="... found by registered file name in this directory.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace existing objects, and discard uploads in progress started elsewhere. Without it an object "
    "that already holds the file is skipped, one holding other content is refused, and an upload started "
    "elsewhere is continued (its recorded parts checked against the file; only those that differ are sent).",
)
@click.option("--verify-connection", type=BOOL, default=True, show_default=True, help=VERIFY_HELP)
@pass_session
def upload(
    session: Session,
    file_path: Path | None,
    object_id: str | None,
    md5: str | None,
    manifest: str | None,
    analysis_id: str | None,
    study_id: str | None,
    input_dir: Path,
    force: bool,
    verify_connection: bool,
) -> None:
    """Upload files: parallel parts, MD5-verified, resumable after any interruption."""
    selection = Selection.of((object_id,) if object_id else (), manifest, analysis_id, study_id)
    if object_id:
        if file_path is None:
            raise click.UsageError("--file must be specified if --object-id is specified")
        items = [UploadItem(file_path, selection.object_ids[0], md5)]
    else:
        items = upload_items(session, selection, input_dir)

    if verify_connection:
        session.verify_connection()
    board = CountedProgress(session.job_progress("uploaded"))
    report = JobReport(listener=lambda outcome: _say_upload(session, board, outcome))
    job = UploadJob(session.config, session.score, board)
    # An object that already holds the file is skipped; one holding something else needs --force.
    _finish(session, job.run(items, force, report), "uploaded", board.moved)


def _say_upload(session: Session, board: JobProgress, outcome: FileOutcome) -> None:
    if outcome.status == "failed":
        line = f"error: upload of {shown(outcome.name)} failed: {outcome.detail}"
    elif outcome.status == "skipped":
        line = f"skipped {outcome.name} ({outcome.object_id}): {outcome.detail}"
    else:
        already = f", {outcome.parts_skipped} already done" if outcome.parts_skipped else ""
        line = (
            f"uploaded {outcome.name} as {outcome.object_id}: {outcome.size} bytes, md5 {outcome.md5}, "
            f"{_count(outcome.parts_moved, 'part')} sent{already}"
        )
    session.say(line, board)


# -- download --------------------------------------------------------------------------------------
@main.command()
@click.option("--object-id", "object_ids", multiple=True, help="Object id(s) to download (repeatable).")
@click.argument("more_object_ids", nargs=-1, metavar="[OBJECT_ID]...")
@click.option("--manifest", help="Song download manifest (file or URL, 11 columns).")
@click.option("--analysis-id", help="Download every file of this analysis ...")
@click.option("--study-id", "--program-id", "study_id", help="... of this study.")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), help="Where the files go.")
@click.option(
    "--archive",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Save the whole download as this one tar file instead (names by --output-layout, MD5SUMS last).",
)
@click.option("--output-layout", type=click.Choice(["bundle", "filename", "id"]), default="filename", show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@click.option("--length", type=int, default=-1, show_default=True, help="-1 reads to the end.")
@click.option("--index", type=BOOL, default=True, show_default=True, help="Also download index files (.bai ...).")
@click.option(
    "--force",
    is_flag=True,
    help="Replace existing files. Without it a file already there with the registered size and MD5 is skipped, "
    "any other is refused.",
)
@click.option("--validate", type=BOOL, default=True, show_default=True, help="Verify MD5s.")
@click.option("--verify-connection", type=BOOL, default=True, show_default=True, help=VERIFY_HELP)
@pass_session
def download(
    session: Session,
    object_ids: tuple[str, ...],
    more_object_ids: tuple[str, ...],
    manifest: str | None,
    analysis_id: str | None,
    study_id: str | None,
    output_dir: Path | None,
    archive: Path | None,
    output_layout: str,
    offset: int,
    length: int,
    index: bool,
    force: bool,
    validate: bool,
    verify_connection: bool,
) -> None:
    """Download objects: parallel parts, MD5-verified, resumable; files appear only when complete.

    Object ids may be given as arguments (score-client download ID ... --output-dir DIR) or with --object-id,
    also as drs://HOST/ID URIs (another DRS server's are fetched through DRS, MD5-verified)."""
    ids, remote = drs.split_targets(object_ids + more_object_ids, session.config.storage_url)
    if remote:
        if output_dir is None or archive is not None or (offset, length) != (0, -1):
            raise click.UsageError("another server's drs:// URIs are downloaded whole, with --output-dir")
        output_dir.mkdir(parents=True, exist_ok=True)
        for uri in remote:
            session.say(f"downloaded {drs.download(uri, session.config.access_token, output_dir, force)}")
        if not (ids or manifest or analysis_id):
            return
    selection = Selection.of(ids, manifest, analysis_id, study_id)
    if length < -1 or length == 0:
        raise click.UsageError("--length must be -1 (to the end) or a positive byte count")
    if archive is not None:
        _check_archive(archive, output_dir, offset, length, force)
    elif output_dir is None:
        raise click.UsageError("give --output-dir (or --archive FILE.tar to save the download as one tar file)")

    # The store's reachability is checked beside the metadata lookups (two independent round trips).
    checking = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify-connection")
    reachable = checking.submit(session.verify_connection) if verify_connection else None
    made: list[Path] = []  # the folders this command creates: removed again if nothing is written in them
    try:
        entities, claims = download_entities(session, selection, index and (offset, length) == (0, -1))
        folder = output_dir or (archive or Path()).parent
        made = missing_dirs(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if reachable is not None:
            reachable.result()
    except BaseException:
        remove_empty_dirs(made)
        raise
    finally:
        checking.shutdown(wait=True, cancel_futures=True)

    targets = []
    seen_targets: set[Path] = set()
    for entity in entities:
        # In an archive, a file's member name is its path under the output directory.
        target = target_path(output_dir if archive is None else Path(), output_layout, entity)
        if target in seen_targets:
            where = "saved as" if archive is None else f"in {archive} as"
            session.say(f"warning: skipping {entity.object_id}: another file is already {where} {target}")
            continue
        seen_targets.add(target)
        targets.append(DownloadTarget(entity.object_id, target, claims.get(entity.object_id)))
    board = CountedProgress(session.job_progress("downloaded"))
    report = JobReport(listener=lambda outcome: _say_download(session, board, outcome, validate, archive))
    sink = None
    if archive is not None:
        from score.client.transfer.archive_sink import ArchiveSink

        sink = ArchiveSink(archive, notify=session.say)
    job = DownloadJob(session.config, session.score, board, sink)
    try:
        job.run(targets, offset, length, validate, force, report)
    finally:
        remove_empty_dirs(made)
    _finish(session, report, "downloaded", board.moved)


def _check_archive(archive: Path, output_dir: Path | None, offset: int, length: int, force: bool) -> None:
    """``--archive`` saves whole files, in one place, and replaces an existing archive only when told to."""
    if output_dir is not None:
        raise click.UsageError("--archive saves the download as one file: give its path alone, without --output-dir")
    if (offset, length) != (0, -1):
        raise click.UsageError("--archive saves whole files: it cannot be combined with --offset or --length")
    if archive.name.lower().endswith((".gz", ".tgz", ".bz2", ".xz", ".zst", ".zip")):
        raise click.UsageError(f"--archive writes an uncompressed tar file: name it .tar, not {archive.name}")
    if archive.is_dir():
        raise click.UsageError(f"--archive {archive} is a directory: give the path of the tar file to write")
    if exists(archive) and not force:
        raise ClientError(f"{archive} already exists; use --force to replace it")


def _say_download(
    session: Session, board: JobProgress, outcome: FileOutcome, validate: bool, archive: Path | None = None
) -> None:
    if outcome.status == "skipped":
        line = f"skipped {outcome.object_id}: {outcome.name} is {outcome.detail}"
    elif outcome.status == "failed":
        where = f" ({outcome.name} in {archive})" if archive is not None else ""
        line = f"error: download of {outcome.object_id}{where} failed: {outcome.detail}"
    else:
        check = "verified" if outcome.verified else "NOT verified (--validate false)" if not validate else "unverified"
        already = f", {_count(outcome.parts_skipped, 'part')} already done" if outcome.parts_skipped else ""
        where = f"to {outcome.name}" if archive is None else f"into {archive} as {outcome.name}"
        line = f"downloaded {outcome.object_id} {where}: {outcome.size} bytes, {check}{already}"
    session.say(line, board)


def _finish(session: Session, report: JobReport, verb: str, moved: int | None = None) -> None:
    """The job's summary; exit 130 if it was stopped, 1 (listing the failed files) if any failed."""
    session.say(report.summary(verb, moved))
    if report.cancelled:
        done = len(report.of("done")) + len(report.of("skipped"))
        session.say(f"stopped: {done} files done before the interruption; run the same command to resume")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)  # in-flight requests are abandoned: every journal is already consistent
    if report.failed:
        names = ", ".join(shown(o.name, 80) for o in report.failed[:10]) + (" ..." if len(report.failed) > 10 else "")
        raise ClientError(
            f"{len(report.failed)} of {len(report.outcomes)} files failed ({names}); {_next_step(report)}"
        )


def _next_step(report: JobReport) -> str:
    """What to do about the failed files. Running the same command again is advice only where it helps: after
    a failure of the server or the store (what was transferred is kept), or to finish a job of several files
    once the reported problems are fixed (the files done are not transferred again); after a refusal of the
    only file (a wrong MD5, an object that exists, an expired token) it would fail the same way."""
    if any(o.rerun_helps for o in report.failed):
        return "run the same command again once the server and the store answer: what was transferred is kept"
    finished = len(report.outcomes) - len(report.failed)
    if finished:
        return f"fix what is reported above and run the same command again: the files done ({finished}) are skipped"
    return "see the errors above for what to fix"


class CountedProgress:
    """The job's progress, passed on to the display, counting the bytes this run really moved: a resumed
    file's earlier parts arrive as ``done`` in ``file_started``, not through ``advance``, so the summary's
    rate is of transferred bytes, not of bytes found on disk or in the store."""

    def __init__(self, inner: JobProgress) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.moved = 0
        say = getattr(inner, "say", None)
        if say is not None:
            self.say = say  # lines go above the bars

    def job_started(self, files: int, total_bytes: int) -> None:
        self._inner.job_started(files, total_bytes)

    def more_bytes(self, nbytes: int) -> None:
        self._inner.more_bytes(nbytes)

    def file_started(self, key: str, name: str, size: int, done: int = 0) -> None:
        self._inner.file_started(key, name, size, done)

    def advance(self, key: str, nbytes: int) -> None:
        with self._lock:
            self.moved += nbytes
        self._inner.advance(key, nbytes)

    def file_finished(self, key: str, ok: bool) -> None:
        self._inner.file_finished(key, ok)

    def job_finished(self) -> None:
        self._inner.job_finished()


def _count(n: int, noun: str) -> str:
    """``1 part``, ``2 parts``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


# -- small commands --------------------------------------------------------------------------------
@main.command()
@click.option("--object-id", required=True, help="Object to get a URL for.")
@pass_session
def url(session: Session, object_id: str) -> None:
    """Print a signed URL of the whole object (usable with curl, samtools, any Range); also of a drs:// URI."""
    ids, remote = drs.split_targets((object_id,), session.config.storage_url)
    if remote:
        click.echo(drs.resolve(remote[0], session.config.access_token)[1])
        return
    spec = session.score.download_spec(object_id_of(ids[0]), external=True)
    click.echo(spec.parts[0].url)


@main.command()
@click.option("--manifest", required=True, help="Manifest file or URL.")
def manifest(manifest: str) -> None:
    """Print a manifest's content."""
    text, _ = read_manifest(manifest)
    click.echo(text, nl=not text.endswith("\n"))


@main.command()
@click.option("--verbose", is_flag=True, help="Also show the configuration file and transfer settings.")
@pass_session
def info(session: Session, verbose: bool) -> None:
    """Show the configuration and whether the servers answer (the access token itself is never printed)."""
    config = session.config
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="info") as pool:
        storage = pool.submit(_answers, config.storage_url, STORAGE_PROBES)
        metadata = pool.submit(_answers, config.metadata_url, METADATA_PROBES)
        click.echo(f"version:        {__version__}")
        click.echo(f"storage url:    {config.storage_url} ({storage.result()})")
        click.echo(f"metadata url:   {config.metadata_url} ({metadata.result()})")
    click.echo(f"access token:   {_describe_token(config.access_token)}")
    if verbose:
        click.echo(f"config file:    {config.config_file or '(none)'}")
        click.echo(f"parallel parts: {config.parallel}")
        click.echo(f"retries:        {config.retries}")
        click.echo(f"timeout:        {config.timeout}s")


@main.command()
def version() -> None:
    """Print the client version."""
    click.echo(f"score-client {__version__}")


@main.command()
@click.argument("shell", type=click.Choice(COMPLETION_SHELLS))
def completion(shell: str) -> None:
    """Print the script that makes SHELL complete score-client's commands and options.

    \b
    bash: add to ~/.bashrc    eval "$(score-client completion bash)"
    zsh:  add to ~/.zshrc     eval "$(score-client completion zsh)"
    fish: run once            score-client completion fish > ~/.config/fish/completions/score-client.fish
    """
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None  # every name in COMPLETION_SHELLS is one of click's
    click.echo(completer(main, {}, "score-client", COMPLETE_VARIABLE).source())


# -- helpers ---------------------------------------------------------------------------------------
PROBE_SECONDS = 2.0  # `info` answers quickly: a server that takes longer is reported as not answering
STORAGE_PROBES = ("/openapi.json", "/download/ping")  # the API's name and version; else Score's (Java) ping
METADATA_PROBES = ("/isAlive",)  # Song's liveness call


def _answers(base_url: str, paths: tuple[str, ...]) -> str:
    """Whether the server at ``base_url`` answers, for ``info``: its name and version when it says them. No
    token is sent (these calls are open) and no retry is made: this is a look, not a transfer."""
    status = 0
    try:
        with httpx.Client(base_url=base_url, timeout=PROBE_SECONDS, verify=api_context()) as http:
            for path in paths:
                response = http.get(path)
                status = response.status_code
                if status == 200:
                    return f"answers{_named(response)}"
    except httpx.TransportError as exc:
        return f"not reachable: {unreachable_reason(exc, PROBE_SECONDS)[0]}"
    return f"answers, but {paths[-1]} gave HTTP {status}: is this the right URL?"


def _named(response: httpx.Response) -> str:
    """``: Score API 0.1.0`` from an OpenAPI document, else nothing."""
    try:
        described = response.json()["info"]
        return f": {described['title']} {described['version']}"
    except (ValueError, KeyError, TypeError):
        return ""


def _describe_token(token: str) -> str:
    if not token:
        return "not set (set ACCESSTOKEN or access_token in the config file)"
    claims = token_claims(token)
    expiry = token_expiry(token, claims) if claims is not None else None
    if claims is None or expiry is None:
        return f"set ({len(token)} characters, not a JWT)"
    remaining = int(expiry - time.time())
    state = f"expires in {remaining // 60} min" if remaining > 0 else f"EXPIRED {-remaining // 60} min ago"
    return f"set (JWT for {claims.get('sub', '?')}, scopes: {claims.get('scope', '')}; {state})"


@contextmanager
def _exit_codes() -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def run() -> None:
    """Entry point: Score's exit codes (1 for bad parameters as well as failures). A defect still ends with
    one line that says what happened (the traceback with --verbose), never a bare traceback."""
    with _exit_codes():
        try:
            main.main(standalone_mode=False)
        except click.UsageError as exc:
            exc.show()
            sys.exit(1)
        except click.ClickException as exc:
            exc.show()
            sys.exit(1)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(130)
        except (ClientError, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            if "--verbose" in sys.argv:
                logging.getLogger("score.client").exception("unexpected error")
            click.echo(
                f"error: unexpected {exc.__class__.__name__}: {str(exc)[:300]}; this is a defect of score-client: "
                "please report it with the output of the same command run with --verbose",
                err=True,
            )
            sys.exit(1)
