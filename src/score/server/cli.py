"""``score-server``: run the service, mint built-in tokens, sweep stale uploads, verify stored objects."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic import ValidationError

from score import __version__

if TYPE_CHECKING:
    from score.server.services.uploads import UploadService
    from score.server.settings import ServerSettings
    from score.server.storage.base import ObjectStore

F = TypeVar("F", bound=Callable[..., Any])

_DURATION = re.compile(r"^(\d+)([smhd]?)\Z")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def settings_problem(exc: Exception) -> str:
    """What is wrong with the settings, without the values given (a database URL holds its password)."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors(include_input=False)
    )


def parse_duration(text: str) -> int:
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration: use e.g. 3600, 90s, 30m, 12h or 7d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def data_dir_option(help_text: str = "Data dir [the running server's, else ./score-data].") -> Callable[[F], F]:
    """The ``--data-dir`` option of the commands that work on a server's data."""
    return click.option("--data-dir", type=click.Path(path_type=Path), default=None, help=help_text)


@click.group()
@click.version_option(__version__, prog_name="score-server")
def main() -> None:
    """Score server: brokers verified, authorised transfers between clients and object storage."""


@main.command()
@click.option("--host", default=None, help="Interface to listen on [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to listen on [default: 8087].")
@click.option(
    "--data-dir", type=click.Path(path_type=Path), default=None, help="Where data and state live [./score-data]."
)
@click.option("--config", type=click.Path(exists=True, dir_okay=False), default=None, help="TOML settings file.")
@click.option("--public-url", default=None, help="URL clients use to reach this server (for signed URLs).")
@click.option("--part-size", type=int, default=None, help="Upload part size in bytes [20 MiB].")
@click.option("--workers", type=int, default=1, show_default=True, help="Server processes (state is shared on disk).")
def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    config: str | None,
    public_url: str | None,
    part_size: int | None,
    workers: int,
) -> None:
    """Run the server on its embedded default (local disk, built-in tokens, embedded registry)."""
    import uvicorn

    from score.server.settings import ServerSettings

    overrides = {
        "HOST": host,
        "PORT": port,
        "DATA_DIR": data_dir,
        "PUBLIC_URL": public_url,
        "PART_SIZE": part_size,
        "CONFIG": config,
    }
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"SCORE_{name}"] = str(Path(value).resolve() if name in ("DATA_DIR", "CONFIG") else value)
    try:
        settings = ServerSettings()
    except (ValidationError, ValueError) as exc:
        raise click.ClickException(f"invalid settings: {settings_problem(exc)}") from exc
    from score.server.storage.backends import build_store
    from score.server.storage.base import StoreError
    from score.server.storage.layout import data_key

    try:
        build_store(settings).check_ready(data_key(settings.sentinel))
    except (StoreError, ValueError) as exc:
        raise click.ClickException(f"storage backend {settings.storage!r} is not ready: {exc}") from exc
    click.echo(
        f"score-server {__version__}: storage={settings.storage} data-dir={settings.data_dir} "
        f"listening on {settings.host}:{settings.port} (docs at {settings.base_url}/docs)",
        err=True,
    )
    from score.server.http_protocol import connection_limit, raise_fd_limit

    fd_limit = raise_fd_limit()
    click.echo(
        f"connections: at most {connection_limit(settings.max_connections, fd_limit)} per process "
        f"(file descriptors: {fd_limit}), headers within {settings.header_timeout:g}s, "
        f"body idle {settings.body_timeout:g}s, keep-alive {settings.keep_alive_timeout:g}s",
        err=True,
    )
    recorded = _record_instance(settings.base_url, settings.data_dir)
    if workers > 1:
        _share_metrics(settings.data_dir)
    try:
        uvicorn.run(
            "score.server.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=workers,
            log_level=settings.log_level,
            access_log=False,  # uvicorn's access log would print signed URLs' query strings
            http="score.server.http_protocol:ScoreHttpProtocol",  # timeouts and connection limit, see that module
            timeout_keep_alive=settings.keep_alive_timeout,  # seconds between requests (a float works)
            timeout_graceful_shutdown=settings.shutdown_timeout,  # SIGTERM: refuse new, finish these, then cut
            proxy_headers=False,
        )
    finally:
        if recorded:
            _forget_instance()


def _share_metrics(data_dir: Path) -> None:
    """Workers keep their metrics in files of one fresh folder, so that ``/metrics`` from any worker sums them
    all (prometheus-client's multiprocess mode; the variable must be set before the workers start)."""
    import shutil

    from score.server.observability.metrics import MULTIPROCESS_ENV

    folder = data_dir / "metrics"
    shutil.rmtree(folder, ignore_errors=True)  # a previous run's counts are not this run's
    folder.mkdir(mode=0o700, parents=True)
    os.environ[MULTIPROCESS_ENV] = str(folder.resolve())


def _record_instance(url: str, data_dir: Path) -> bool:
    """Note this server's URL and data dir for ``token`` and ``cleanup`` run elsewhere (``instances``); a
    server that cannot write the note still serves, they then need ``--data-dir``."""
    from score.server import instances

    try:
        path = instances.record(url, data_dir)
    except OSError as exc:
        click.echo(
            f"note: cannot record this server in {instances.describe()} ({exc.strerror or exc}); "
            f"`score-server token` run elsewhere needs --data-dir {data_dir.resolve()}",
            err=True,
        )
        return False
    click.echo(f"recorded in {path}: `score-server token` run from any directory uses this server's key", err=True)
    return True


def _forget_instance() -> None:
    from score.server import instances

    with suppress(OSError):  # the entry of a process that is gone is ignored and pruned anyway
        instances.forget()


def _load_settings() -> ServerSettings:
    from score.server.settings import ServerSettings

    try:
        return ServerSettings()
    except (ValidationError, ValueError) as exc:
        raise click.ClickException(f"invalid settings: {settings_problem(exc)}") from exc


def locate_data_dir(explicit: Path | None, settings: ServerSettings | None) -> tuple[Path, str]:
    """The data dir a command run beside the server acts on, and a phrase saying why that one.

    In order: ``--data-dir``; ``SCORE_DATA_DIR`` or the config file's ``data_dir``; the data dir of the
    ``score-server serve`` recorded as running (``instances``); ``./score-data``. Several running servers on
    different data dirs are ambiguous: the caller is asked to choose rather than given a guess.
    """
    from score.server import instances

    if explicit is not None:
        return explicit.resolve(), "--data-dir"
    if settings is not None and "data_dir" in settings.model_fields_set:
        config = os.environ.get("SCORE_CONFIG")
        source = "SCORE_DATA_DIR" if os.environ.get("SCORE_DATA_DIR") else f"data_dir in {config}"
        return settings.data_dir.resolve(), source
    servers = instances.running()
    if len({server.data_dir for server in servers}) > 1:
        listed = "; ".join(f"{s.url} (pid {s.pid}): {s.data_dir}" for s in servers)
        raise click.ClickException(
            f"several score-server processes are running on different data dirs ({listed}); "
            "say which with --data-dir DIR or SCORE_DATA_DIR=DIR"
        )
    if servers:
        server = servers[-1]
        return server.data_dir, f"the score-server running at {server.url}, pid {server.pid}"
    return (
        Path("score-data").resolve(),
        f"./score-data of the current directory, as no running score-server is recorded in {instances.describe()}",
    )


@main.command()
@click.option("--scopes", required=True, help='Space-separated scopes, e.g. "score.WRITE song.WRITE".')
@click.option("--ttl", default="1h", show_default=True, help="Lifetime: seconds or 30m, 12h, 7d.")
@click.option("--subject", default="score-admin", show_default=True, help="Who the token identifies.")
@data_dir_option("Data dir holding the signing key [the running server's, else ./score-data].")
def token(scopes: str, ttl: str, subject: str, data_dir: Path | None) -> None:
    """Print a token signed with the running server's key (or the key in --data-dir).

    Without --data-dir it uses the key of the score-server this user runs (recorded by `serve`), wherever
    it is run from; SCORE_DATA_DIR or the config file's data_dir choose another. The token alone goes to
    stdout (for `$(...)`); which data dir's key signed it goes to stderr.
    """
    from score.server.auth.builtin import KEY_FILE, BuiltinIssuer

    lifetime = parse_duration(ttl)
    directory, source = locate_data_dir(data_dir, None if data_dir else _load_settings())
    key = directory / KEY_FILE
    created = False
    if not key.exists():
        if data_dir is None:  # a key made here would sign tokens no running server accepts
            raise click.ClickException(
                f"no signing key at {key}: looked in {directory} ({source}). Start the server first "
                "(`score-server serve` makes the key in its data dir), or say where the server's data dir is: "
                "--data-dir DIR or SCORE_DATA_DIR=DIR"
            )
        if not directory.is_dir():
            raise click.ClickException(
                f"--data-dir {directory} does not exist; give the data dir of the server (`serve --data-dir`)"
            )
        created = True
    try:
        issuer = BuiltinIssuer(directory, create=created)
    except (OSError, ValueError, RuntimeError) as exc:
        raise click.ClickException(f"cannot use the signing key {key}: {exc}") from exc
    if created:
        click.echo(
            f"no signing key in {directory}: made a new one ({key}); only a server on this data dir accepts the token",
            err=True,
        )
    click.echo(f"signed with the key of data dir {directory} ({source})", err=True)
    _warn_if_another_server(directory)
    click.echo(issuer.issue(scopes.split(), lifetime, subject=subject))


def _warn_if_another_server(directory: Path) -> None:
    """An explicit data dir that no running server uses is probably a mistake: say so, but still answer."""
    from score.server import instances

    servers = instances.running()
    if servers and all(server.data_dir != directory for server in servers):
        running = "; ".join(f"{s.url} uses {s.data_dir}" for s in servers)
        click.echo(f"note: no running score-server uses this data dir ({running}); they refuse this token", err=True)


def _data_dir_settings(
    data_dir: Path | None, doing: str, refusal: type[click.ClickException] = click.ClickException
) -> ServerSettings:
    """The settings of the server whose data a command works on (``--data-dir``, else the running server's),
    said on stderr; ``refusal`` (with its exit status) when they are invalid or the local data dir is missing."""
    from score.server.settings import ServerSettings

    try:
        directory, source = locate_data_dir(data_dir, None if data_dir else ServerSettings())
        settings = ServerSettings(data_dir=directory)
    except (ValidationError, ValueError) as exc:
        raise refusal(f"invalid settings: {settings_problem(exc)}") from exc
    if settings.storage == "local" and not directory.is_dir():
        # A data dir that is not there would make an empty store and report nothing to do.
        raise refusal(
            f"data dir {directory} ({source}) does not exist; give the server's: --data-dir DIR or SCORE_DATA_DIR=DIR"
        )
    click.echo(f"{doing} data dir {directory} ({source}), storage {settings.storage}", err=True)
    return settings


@contextmanager
def _offline_uploads(data_dir: Path | None, doing: str, what: str) -> Iterator[tuple[ObjectStore, UploadService]]:
    """The store, and the upload service with the embedded registry's records of finished objects' ``.meta``
    (a finalize the sweep finishes may replace one), for a command run beside the server; not the identity
    providers. A full disk still opens the registry: migrations only read when the schema is current. Store
    and registry failures end the command with "<what> failed: <why>"."""
    from score.server.app import open_registry
    from score.server.metadata.base import MetadataUnavailable
    from score.server.metadata.song_errors import RegistryError
    from score.server.services.uploads import UploadService
    from score.server.storage.backends import build_store
    from score.server.storage.base import StoreError

    settings = _data_dir_settings(data_dir, doing)
    try:
        store = build_store(settings)
        uploads = UploadService(store, settings)
        registry = None if settings.metadata_url else open_registry(settings)
        uploads.spec_records = registry
        try:
            yield store, uploads
        finally:
            if registry is not None:
                registry.close()
    except (StoreError, OSError, MetadataUnavailable, RegistryError) as exc:
        raise click.ClickException(f"{what} failed: {exc}") from exc


@main.command()
@click.option("--older-than", default="6d", show_default=True, help="Abort uploads started longer ago than this.")
@data_dir_option()
def cleanup(older_than: str, data_dir: Path | None) -> None:
    """Abort stale uploads once (the server also sweeps every cleanup_interval seconds)."""
    from score.server.services.cleanup import clean_stale_uploads

    with _offline_uploads(data_dir, "cleaning", "cleanup") as (store, uploads):
        report = clean_stale_uploads(store, uploads, parse_duration(older_than))
    for object_id, upload_id in report.aborted:
        click.echo(f"aborted upload {upload_id} of object {object_id}")
    for object_id, upload_id in report.finished:
        click.echo(f"finished upload {upload_id} of object {object_id}")
    for object_id, upload_id in report.tidied:
        click.echo(f"removed the leftover state of finished upload {upload_id} of object {object_id}")
    for orphan in report.orphans:
        click.echo(f"removed orphan {orphan}")
    click.echo(
        f"{len(report.aborted)} of {report.examined} uploads aborted as stale, {len(report.finished)} committed "
        f"finalizes finished, {len(report.tidied) + len(report.orphans)} leftovers removed",
        err=True,
    )


@main.command("record-specs")
@data_dir_option()
def record_specs(data_dir: Path | None) -> None:
    """Record in the registry every finished object's .meta it has no record of (objects finished before
    schema version 2), so their download specifications stop reading the store. Safe beside running servers."""
    from score.server.services.spec_backfill import record_existing_specs

    with _offline_uploads(data_dir, "recording the objects of", "record-specs") as (store, uploads):
        if uploads.spec_records is None:
            raise click.ClickException("with metadata_url (a remote Song) there is no registry to record objects in")
        report = record_existing_specs(store, uploads)
    unreadable = f", {report.unreadable} with a .meta that is no specification" if report.unreadable else ""
    click.echo(
        f"{report.recorded} of {report.examined} objects recorded ({report.known} were already, "
        f"{report.changed} changed meanwhile and are left to their uploads{unreadable})",
        err=True,
    )


@main.command()
@data_dir_option(
    "Data dir holding the SQLite registry [the running server's, else ./score-data]; unused with registry_url."
)
def migrate(data_dir: Path | None) -> None:
    """Bring the embedded registry's schema up to date and print each migration applied.

    The registry is PostgreSQL when registry_url (SCORE_REGISTRY_URL) is set, else registry.sqlite in the
    data dir. The server also migrates at start-up; running this first (e.g. before rolling out replicas)
    is safe at any time: migrations are serialised, and a current schema is left untouched.
    """
    from score.server.metadata.base import MetadataUnavailable
    from score.server.metadata.registry import Registry

    settings = _load_settings()
    if settings.metadata_url:
        raise click.ClickException(
            f"metadata_url is set ({settings.metadata_url}): this server uses a remote Song, not the embedded "
            "registry, so there is nothing to migrate"
        )
    location: str | Path
    if settings.registry_url:
        location, source = settings.registry_url.get_secret_value(), "registry_url"
    else:
        directory, source = locate_data_dir(data_dir, None if data_dir else settings)
        if not directory.is_dir():
            raise click.ClickException(
                f"data dir {directory} ({source}) does not exist; "
                "give the server's: --data-dir DIR or SCORE_DATA_DIR=DIR"
            )
        location = directory / "registry.sqlite"
    try:
        registry = Registry(location)
    except (MetadataUnavailable, OSError) as exc:
        raise click.ClickException(f"cannot migrate the registry: {exc}") from exc
    try:
        click.echo(f"registry: {registry.describe()} ({source})", err=True)
        for line in registry.migrations_applied:
            click.echo(f"applied migration {line}")
        state = "now at" if registry.migrations_applied else "already at"
        click.echo(f"schema {state} version {registry.schema_version()}", err=True)
    finally:
        registry.close()


class _NotVerified(click.ClickException):
    """Checks that could not be made (store down, unknown ids): exit status 2, not 1 (damage found)."""

    exit_code = 2


@main.command()
@click.argument("object_ids", nargs=-1)
@click.option("--all", "check_all", is_flag=True, help="Check every object in the store.")
@data_dir_option()
@click.option("--rate", default=0, type=int, show_default=True, help="Bytes per second to read at most; 0 = no cap.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per object checked, then a summary object.")
def verify(object_ids: tuple[str, ...], check_all: bool, data_dir: Path | None, rate: int, as_json: bool) -> None:
    """Re-read stored objects and compare their size and MD5 with those recorded at upload (fixity).

    Exit status: 0 when every object checked holds its recorded bytes (objects with no recorded MD5 are
    reported and skipped), 1 when any is damaged (bytes differ or are missing; each is also written to the
    audit log), 2 when checks could not be made (bad ids, objects not in the store, the store failing).
    """
    import json

    from score.core.ids import is_safe_id
    from score.server.audit import AuditLog
    from score.server.services import fixity
    from score.server.storage.backends import build_store
    from score.server.storage.base import StoreError

    if check_all == bool(object_ids):
        raise click.UsageError("give object ids to check, or --all (not both)")
    bad = [object_id for object_id in object_ids if not is_safe_id(object_id)]
    if bad:
        raise click.BadParameter(
            f"{', '.join(repr(b) for b in bad)}: an object id is 1-128 letters, digits, '_', '.' or '-' "
            "(no '..', no '/'), e.g. a UUID",
            param_hint="OBJECT_ID",
        )
    settings = _data_dir_settings(data_dir, "verifying objects of", _NotVerified)
    directory = settings.data_dir
    try:
        store = build_store(settings)
    except (StoreError, ValueError, OSError) as exc:
        raise _NotVerified(f"cannot open the store: {exc}") from exc
    os.umask(0o077)  # the audit log (if this makes it) is the server user's alone, as the server makes it
    audit = AuditLog(directory / "logs" / "audit.log")
    damaged: list[str] = []

    def report(result: fixity.FixityResult) -> None:
        if result.damaged:
            damaged.append(result.object_id)
            audit.fixity(result, actor="score-server verify")
        click.echo(json.dumps(result.to_json()) if as_json else result.line())

    ids = fixity.stored_object_ids(store, exclude={settings.sentinel}) if check_all else object_ids
    summary = fixity.check_objects(store, ids, report, fixity.Pacer(rate))
    if as_json:
        totals = {"checked": summary.checked, "bytesRead": summary.bytes_read, **summary.counts}
        click.echo(json.dumps({"summary": {**totals, "stoppedBecause": summary.stopped_because}}))
    click.echo(summary.line(), err=True)
    if damaged:
        click.echo(
            f"{len(damaged)} damaged object(s): {' '.join(damaged)}. The store no longer holds the bytes recorded "
            f"at upload: {fixity.REPAIR_ADVICE}; their lines are in {directory}/logs/audit.log",
            err=True,
        )
        sys.exit(1)
    if summary.stopped_because:
        raise _NotVerified(f"verification stopped: {summary.stopped_because}")
    # With --all, an object gone between the listing and its check was deleted meanwhile: nothing to check.
    unchecked = summary.counts[fixity.Outcome.ERROR] + (0 if check_all else summary.counts[fixity.Outcome.ABSENT])
    if unchecked:
        raise _NotVerified(f"{unchecked} object(s) could not be checked (see above)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
