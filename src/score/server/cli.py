"""``score-server``: run the service, mint built-in tokens."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import click
from pydantic import ValidationError

from score import __version__

_DURATION = re.compile(r"^(\d+)([smhd]?)\Z")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration: use e.g. 3600, 90s, 30m, 12h or 7d")
    return int(match.group(1)) * _UNITS[match.group(2)]


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
        raise click.ClickException(f"invalid settings: {exc}") from exc
    from score.server.services.uploads import data_key
    from score.server.storage.base import StoreError
    from score.server.storage.factory import build_store

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
        proxy_headers=False,
    )


@main.command()
@click.option("--scopes", required=True, help='Space-separated scopes, e.g. "score.WRITE song.WRITE".')
@click.option("--ttl", default="1h", show_default=True, help="Lifetime: seconds or 30m, 12h, 7d.")
@click.option("--subject", default="score-admin", show_default=True, help="Who the token identifies.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Data dir holding the signing key.")
def token(scopes: str, ttl: str, subject: str, data_dir: Path | None) -> None:
    """Print a token signed by this server's built-in issuer."""
    from score.server.auth.builtin import BuiltinIssuer
    from score.server.settings import ServerSettings

    directory = data_dir or ServerSettings().data_dir
    issuer = BuiltinIssuer(directory)
    click.echo(issuer.issue(scopes.split(), parse_duration(ttl), subject=subject))


@main.command()
@click.option("--older-than", default="6d", show_default=True, help="Abort uploads started longer ago than this.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Data dir (embedded default).")
def cleanup(older_than: str, data_dir: Path | None) -> None:
    """Abort stale uploads once (the server also sweeps every cleanup_interval seconds)."""
    from score.server.services.cleanup import clean_stale_uploads
    from score.server.services.uploads import UploadService
    from score.server.settings import ServerSettings
    from score.server.storage.base import StoreError
    from score.server.storage.factory import build_store

    # Only the store: the sweep needs neither the registry nor the identity providers, so it also works
    # when they cannot be opened (a full disk).
    settings = ServerSettings(**({"data_dir": data_dir} if data_dir else {}))
    try:
        store = build_store(settings)
        report = clean_stale_uploads(store, UploadService(store, settings), parse_duration(older_than))
    except (StoreError, OSError) as exc:
        raise click.ClickException(f"cleanup failed: {exc}") from exc
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
