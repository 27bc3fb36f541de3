"""``score-client mount`` and ``score-client unmount``: options, the mount point's checks, the daemon.

Daemon: ``--daemonize`` starts the same command again as a new session in the background (never a
``fork`` of a process that already runs threads, which is why the original could not daemonize reliably,
GitHub #118), writes its output to a log file and its pid to a pid file, and returns once the mount is up
(or says why it did not come up). SIGTERM or SIGINT unmount cleanly: libfuse ends its loop on them.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import click

from score.client.errors import ClientError, ServerError
from score.client.mount.listing import (
    Listing,
    Scope,
    build_listing,
    identity,
    load_cached,
    manifest_scope,
    save_cached,
)
from score.client.mount.reader import DEFAULT_CACHE_BYTES, ByteCache, MiB, ObjectReader
from score.client.mount.tree import LAYOUTS, Tree
from score.client.session import Session, shown

log = logging.getLogger("score.mount")
DAEMON_CHILD = "SCORE_MOUNT_DAEMON_CHILD"  # set in the background copy's environment by --daemonize
CACHE_FILE = ".score-mount.cache"  # in the current directory, as the original's .entities.cache
READY_SECONDS = 120.0  # how long --daemonize waits for the background mount to come up
_FILE = click.Path(dir_okay=False, path_type=Path)
# No checks by click (a stale mount point fails them with "not readable"): ``check_mount_point`` says more.
_UNCHECKED = click.Path(path_type=Path, readable=False)
_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]i?B?|B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    match = _SIZE.match(text)
    if not match:
        raise click.BadParameter(f"{shown(text)} is not a size; write e.g. 192MiB, 1GiB or 65536")
    number, unit = int(match.group(1)), (match.group(2) or "B").upper()[:1]
    return number * {"B": 1, "K": 1024, "M": MiB, "G": 1024 * MiB}[unit]


def state_file(mount_point: Path, suffix: str) -> Path:
    """Where a mount's pid or log file goes by default: one per mount point, in the user's state folder."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "score"
    digest = hashlib.sha256(str(mount_point.resolve()).encode()).hexdigest()[:12]
    return base / f"mount-{digest}.{suffix}"


def check_mount_point(mount_point: Path) -> None:
    """Score's rules (an empty directory), and a clear word on the mount a killed process left behind."""
    if _stale(mount_point):
        raise ClientError(
            f"{mount_point} is a stale mount: the process that served it has died. Clear it with "
            f"`score-client unmount {mount_point}`, then mount again"
        )
    try:
        mount_point.stat()
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise ClientError(f"mount point {mount_point} does not exist; create an empty directory there") from None
        raise ClientError(f"cannot use mount point {mount_point}: {exc.strerror}") from None
    if not mount_point.is_dir():
        raise ClientError(f"mount point {mount_point} is not a directory")
    if os.path.ismount(mount_point):
        raise ClientError(f"{mount_point} is already a mount point; `score-client unmount {mount_point}` first")
    if not os.access(mount_point, os.W_OK | os.X_OK):
        raise ClientError(f"mount point {mount_point} is not writable and searchable by you")
    if any(mount_point.iterdir()):
        raise ClientError(f"mount point {mount_point} is not empty; mount on an empty directory")


def _stale(mount_point: Path) -> bool:
    """A FUSE mount whose process is gone: listing it fails with ENOTCONN (``stat`` of its root may not)."""
    try:
        os.listdir(mount_point)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def fuse_options(text: str) -> dict[str, str | bool]:
    """``--options k=v,k2``: extra FUSE options (``ro`` and the mount's own are applied after them)."""
    options: dict[str, str | bool] = {}
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        key, _, value = item.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise click.BadParameter(
                f"{shown(item)} is not a FUSE option (write key=value or key)", param_hint="--options"
            )
        options[key] = value if value else True
    return options


@click.command("mount")
@click.option("--mount-point", required=True, type=_UNCHECKED, help="Empty directory.")
@click.option("--manifest", help="Mount only this download manifest's files and their index files.")
@click.option("--analysis-id", help="Mount only this analysis (with --study-id).")
@click.option("--study-id", "--program-id", "study_id", help="Mount only this study.")
@click.option("--layout", type=click.Choice(LAYOUTS), default="bundle", show_default=True)
@click.option("--cache-metadata", is_flag=True, help=f"Start from, and keep, the listing in ./{CACHE_FILE}.")
@click.option(
    "--metadata-ttl", type=click.IntRange(5), default=60, show_default=True, help="Seconds between listing refreshes."
)
@click.option(
    "--cache-size",
    default=f"{DEFAULT_CACHE_BYTES // MiB}MiB",
    show_default=True,
    help="Memory for fetched and read-ahead data.",
)
@click.option("--daemonize", is_flag=True, help="Run in the background once mounted.")
@click.option(
    "--log-file", type=click.Path(dir_okay=False, path_type=Path), help="Log file (default with --daemonize)."
)
@click.option(
    "--pid-file", type=click.Path(dir_okay=False, path_type=Path), help="Pid file (default with --daemonize)."
)
@click.option(
    "--verify-connection",
    type=click.BOOL,
    default=True,
    show_default=True,
    help="First read the object store's sentinel through a signed URL, so that a store this machine cannot "
    "reach is reported before mounting; false skips the check.",
)
@click.option("--options", "extra_options", default="", help="Extra FUSE options: k=v,k2,...")
@click.pass_obj
def mount_command(
    session: Session,
    mount_point: Path,
    manifest: str | None,
    analysis_id: str | None,
    study_id: str | None,
    layout: str,
    cache_metadata: bool,
    metadata_ttl: int,
    cache_size: str,
    daemonize: bool,
    log_file: Path | None,
    pid_file: Path | None,
    verify_connection: bool,
    extra_options: str,
) -> None:
    """Mount the repository read-only (FUSE): tools read remote files by path, without downloading them."""
    if manifest and (analysis_id or study_id):
        raise click.UsageError("give --manifest, or --analysis-id/--study-id, not both")
    if analysis_id and not study_id:
        raise click.UsageError("--analysis-id needs --study-id")
    cache_bytes = parse_size(cache_size)
    options = fuse_options(extra_options)
    check_mount_point(mount_point)
    child = os.environ.get(DAEMON_CHILD) == "1"
    if daemonize and not child:
        _start_daemon(
            mount_point, log_file or state_file(mount_point, "log"), pid_file or state_file(mount_point, "pid")
        )
        return
    if child:
        pid_file = pid_file or state_file(mount_point, "pid")
    _log_to(log_file, session.quiet)
    if verify_connection:
        session.verify_connection()
    scope = manifest_scope(manifest) if manifest else Scope(analysis_id=analysis_id, study_id=study_id)
    _serve(session, mount_point, scope, layout, cache_metadata, metadata_ttl, cache_bytes, options, pid_file)


def _log_to(log_file: Path | None, quiet: bool) -> None:
    handler: logging.Handler
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    verbose = logging.getLogger().level == logging.DEBUG  # score-client --verbose
    log.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet and log_file is None else logging.INFO)
    log.propagate = False


def _serve(
    session: Session,
    mount_point: Path,
    scope: Scope,
    layout: str,
    cache_metadata: bool,
    ttl: int,
    cache_bytes: int,
    options: dict[str, str | bool],
    pid_file: Path | None,
) -> None:
    from score.client.mount.fs import FUSE, ScoreFs, raise_read_ahead
    from score.client.transfer.data import DataClient

    origin, who = session.config.storage_url, identity(session.config.access_token)
    cache_path = Path.cwd() / CACHE_FILE
    listing = load_cached(cache_path, origin, scope, who) if cache_metadata else None
    from_cache = listing is not None
    if listing is None:
        listing = build_listing(session, scope)
        if cache_metadata:
            save_cached(cache_path, origin, scope, who, listing)
    config = session.config
    data = DataClient(config.parallel, min(config.timeout, 30.0), config.chunk_size)
    reader = ObjectReader(session.score, data, ByteCache(cache_bytes), config.parallel)
    fs = ScoreFs(Tree(listing, layout), reader, time.time_ns())
    stop = threading.Event()
    refresher = threading.Thread(
        target=_refresh,
        args=(session, scope, layout, fs, listing, ttl, stop, cache_path if cache_metadata else None, from_cache),
        name="listing-refresh",
        daemon=True,
    )
    refresher.start()
    if pid_file is not None:
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{os.getpid()}\n")
    log.info(
        "mounting %d files (%s%s) at %s, layout %s; stop with `score-client unmount %s` or Ctrl-C",
        len(listing.files),
        scope.describe(),
        ", from the cached listing" if from_cache else "",
        mount_point,
        layout,
        mount_point,
    )
    fuse_settings: dict[str, str | bool | int] = {**options, "fsname": "score", "subtype": "score", "ro": True}
    fuse_settings.update(kernel_cache=True, entry_timeout=ttl, attr_timeout=ttl, negative_timeout=min(ttl, 10))
    threading.Thread(target=raise_read_ahead, args=(str(mount_point),), name="read-ahead", daemon=True).start()
    try:
        FUSE(fs, str(mount_point), foreground=True, **fuse_settings)
    except RuntimeError as exc:
        # libfuse 3.14 ends a loop stopped by SIGTERM/SIGINT with error 8: after mounting, the end asked for
        if not fs.mounted:
            raise ClientError(f"could not mount at {mount_point} (libfuse error {exc}); see the lines above") from None
    finally:
        stop.set()
        reader.close()
        data.close()
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
    log.info(
        "unmounted %s: %d bytes read from the store in %d requests", mount_point, reader.bytes_fetched, reader.requests
    )


def _refresh(
    session: Session,
    scope: Scope,
    layout: str,
    fs: object,
    listing: Listing,
    ttl: int,
    stop: threading.Event,
    cache_path: Path | None,
    now: bool,
) -> None:
    """Rebuild the listing every ``ttl`` seconds (at once when the mount started from a cached one), so new
    files appear without remounting; a failed refresh keeps the listing there is and says why."""
    origin = session.config.storage_url
    who = identity(session.config.access_token)
    while not stop.wait(0 if now else ttl):
        now = False
        try:
            listing = build_listing(session, scope, listing)
        except ServerError as exc:
            hint = "; remount with a new token" if exc.status == 401 else ""
            log.warning("could not refresh the listing (%s)%s; keeping the one there is", exc, hint)
            continue
        except ClientError as exc:
            log.warning("could not refresh the listing (%s); keeping the one there is", exc)
            continue
        fs.tree = Tree(listing, layout)  # type: ignore[attr-defined]
        if cache_path is not None:
            save_cached(cache_path, origin, scope, who, listing)


def _start_daemon(mount_point: Path, log_file: Path, pid_file: Path) -> None:
    """The same command in the background, its output to ``log_file``; back once the mount is up."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    arguments = [a for a in sys.argv[1:] if a != "--daemonize"]
    arguments += ["--log-file", str(log_file), "--pid-file", str(pid_file)] if "--log-file" not in arguments else []
    command = [sys.executable, "-c", "from score.client.launch import run; run()", *arguments]
    with open(log_file, "ab") as output, open(os.devnull, "rb") as nothing:
        child = subprocess.Popen(
            command,
            stdin=nothing,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, DAEMON_CHILD: "1"},
        )
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if os.path.ismount(mount_point):
            click.echo(f"mounted at {mount_point} (pid {child.pid}; log {log_file}; pid file {pid_file})", err=True)
            return
        if child.poll() is not None:
            tail = log_file.read_text(errors="replace").strip().splitlines()[-5:]
            raise ClientError("the background mount ended before mounting:\n  " + "\n  ".join(tail))
        time.sleep(0.1)
    child.terminate()
    raise ClientError(f"the background mount did not come up within {READY_SECONDS:.0f} s; see {log_file}")


@click.command("unmount")
@click.argument("mount_point", type=_UNCHECKED)
@click.option("--lazy", is_flag=True, help="Detach now even if files are open; the mount goes once they close.")
@click.option(
    "--pid-file", type=click.Path(dir_okay=False, path_type=Path), help="The mount's pid file, if not the default."
)
def unmount_command(mount_point: Path, lazy: bool, pid_file: Path | None) -> None:
    """Unmount a score-client mount (also one left behind by a killed process)."""
    pid_file = pid_file or state_file(mount_point, "pid")
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool is not None:
        command = [tool, "-u", *(["-z"] if lazy else []), str(mount_point)]
    elif os.geteuid() == 0:
        command = ["umount", *(["-l"] if lazy else []), str(mount_point)]
    else:
        raise ClientError("fusermount3 is not installed: install the fuse3 package (Debian: apt install fuse3)")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip()
        if not os.path.ismount(mount_point) and not _stale(mount_point):
            pid_file.unlink(missing_ok=True)
            raise ClientError(f"{mount_point} is not mounted")
        if "busy" in said.lower():
            raise ClientError(
                f"{mount_point} is in use (a shell or program has a file open there); close it, or use --lazy"
            )
        raise ClientError(f"could not unmount {mount_point}: {said}")
    _wait_for_exit(pid_file)
    click.echo(f"unmounted {mount_point}", err=True)


def _wait_for_exit(pid_file: Path, seconds: float = 10.0) -> None:
    """The mount's process ends by itself once unmounted; one that does not is sent SIGTERM."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        time.sleep(0.05)
    else:
        if _is_score(pid):  # not another program that got the pid of a mount long gone
            os.kill(pid, 15)
    pid_file.unlink(missing_ok=True)


def _is_score(pid: int) -> bool:
    try:
        return b"score" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (ended, not yet reaped by its parent) counts as ended
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
