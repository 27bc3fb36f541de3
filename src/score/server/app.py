"""Builds the ASGI app from settings: wiring only, no behaviour."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from score import __version__
from score.server.api import batch, download, drs, health, htsget, listing, upload
from score.server.api.bodies import BodyLimit
from score.server.api.openapi import install_openapi
from score.server.api.song import build_song_router
from score.server.audit import AuditLog
from score.server.auth.factory import build_verifier
from score.server.context import ServerContext
from score.server.errors import install_error_handlers
from score.server.metadata.base import MetadataSource, ObjectCatalog
from score.server.metadata.dialect import PoolLimits
from score.server.metadata.registry import Registry
from score.server.metadata.song import SongMetadata
from score.server.observability.instrumented import Instrumented
from score.server.observability.logs import configure_logging
from score.server.observability.metrics import MetricsMiddleware, UploadsOpen, metrics_endpoint
from score.server.observability.request_ids import RequestIdMiddleware
from score.server.services.cleanup import clean_stale_uploads
from score.server.services.downloads import DownloadService
from score.server.services.fixity import Scrubber
from score.server.services.htsget import HtsgetService
from score.server.services.uploads import UploadService
from score.server.settings import ServerSettings
from score.server.storage.backends import build_store
from score.server.storage.base import ObjectStore, ServesDataPlane
from score.server.storage.layout import data_key

DESCRIPTION = (
    "Score brokers authenticated access to object storage: it checks who is asking and hands out "
    "short-lived signed URLs for multipart upload and ranged download. Wire-compatible with Overture Score; "
    "the embedded metadata registry under /song speaks Song's API."
)


def registry_location(settings: ServerSettings) -> str | Path:
    """The embedded registry's database: ``registry_url`` (PostgreSQL), else ``data_dir/registry.sqlite``."""
    return settings.registry_url.get_secret_value() if settings.registry_url else settings.data_dir / "registry.sqlite"


def registry_pool(settings: ServerSettings) -> PoolLimits:
    return PoolLimits(settings.registry_pool_size, settings.registry_pool_timeout)


def open_registry(settings: ServerSettings, catalog: ObjectCatalog | None = None) -> Registry:
    """The embedded registry (SQLite in the data dir, or PostgreSQL at ``registry_url``), migrated."""
    return Registry(registry_location(settings), catalog=catalog, pool=registry_pool(settings))


def answers_in_process(settings: ServerSettings) -> bool:
    """True on the embedded default (local store, SQLite registry, built-in tokens only). A download
    specification then costs a few local file and SQLite reads of tens of microseconds each, far less than the
    hop to a worker thread and the GIL hand-offs between 40 of them under load: on the event loop one process
    answers 1,380-1,412 specifications/s at 0.72-0.77 ms of CPU each instead of 441/s at 2.6 ms
    (bench/load.py). Anything that may wait on a network (S3, Azure, GCS, PostgreSQL, Song, JWKS,
    introspection) keeps the thread pool, so one slow call never stalls the event loop."""
    auth = settings.auth
    remote_tokens = bool(auth.jwt) or auth.introspection is not None
    remote_metadata = bool(settings.registry_url or settings.metadata_url)
    return settings.storage == "local" and not remote_metadata and not remote_tokens


def build_context(settings: ServerSettings) -> ServerContext:
    data_dir = settings.data_dir
    # Controlled-access data, the registry and the audit log are the server user's alone: files it
    # creates are 0600 and folders 0700, and the data dir itself is closed to other users.
    os.umask(0o077)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    raw_store = build_store(settings)
    raw_store.check_ready(data_key(settings.sentinel))
    store: ObjectStore = Instrumented(raw_store, "store")  # type: ignore[assignment]  # same protocol, measured
    uploads = UploadService(store, settings)
    metadata: MetadataSource = Instrumented(  # type: ignore[assignment]
        SongMetadata(settings.metadata_url, cache_ttl=settings.metadata_cache_ttl)
        if settings.metadata_url
        else open_registry(settings, catalog=uploads),
        "song" if settings.metadata_url else "registry",
    )
    if not settings.metadata_url:
        uploads.spec_records = metadata  # type: ignore[assignment]  # the registry keeps finished objects' .meta
    return ServerContext(
        settings=settings,
        store=raw_store,
        metadata=metadata,
        verifier=build_verifier(settings.auth, data_dir),
        uploads=uploads,
        downloads=DownloadService(store, settings, uploads),
        audit=AuditLog(data_dir / "logs" / "audit.log", settings.trusted_proxies),
        htsget=HtsgetService(store, settings, uploads),
        in_process=answers_in_process(settings),
    )


def _uploads_open(store: ObjectStore) -> int:
    """Uploads in progress: one state document (``upload/<id>_<uploadId>/.meta``) each."""
    return sum(1 for head in store.list("upload/") if head.key.endswith("/.meta"))


def build_app(settings: ServerSettings) -> FastAPI:
    context = build_context(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sweeper = asyncio.create_task(_sweep_stale_uploads(context)) if settings.cleanup_interval else None
        scrubber = Scrubber(context.store, settings, context.audit) if settings.fixity_scrub_interval else None
        if scrubber is not None:
            scrubber.start()  # a thread of its own: hashing must not hold up the event loop (services/fixity.py)
        yield
        if sweeper is not None:
            sweeper.cancel()
        if scrubber is not None:
            await asyncio.to_thread(scrubber.stop)
        close = getattr(context.metadata, "close", None)  # the registry's (or Song client's) connections
        if close is not None:
            await asyncio.to_thread(close)

    app = FastAPIOffline(title="Score API", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.context = context
    install_error_handlers(app)
    install_openapi(app)
    app.add_middleware(
        BodyLimit,
        limits={
            "/_store/": None,
            "/song/": settings.max_json_body,
            "/htsget/": htsget.MAX_BODY,
            "/batch/": batch.MAX_BODY,
            drs.PREFIX + "/": drs.MAX_BODY,
        },
    )
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestIdMiddleware)  # outermost: every line below it, and the answer, carry the id
    if settings.metrics:
        endpoint = metrics_endpoint(UploadsOpen(lambda: _uploads_open(context.store)))
        app.add_api_route("/metrics", endpoint, methods=["GET"], include_in_schema=False)
    for router in (
        upload.router,
        download.router,
        batch.router,
        listing.router,
        health.router,
        htsget.router,
        drs.router,
    ):
        app.include_router(router)
    if not settings.metadata_url:  # the embedded registry's Song API; a remote Song serves its own
        app.include_router(build_song_router(), prefix="/song")
    if isinstance(context.store, ServesDataPlane):
        app.include_router(context.store.data_routes())  # a store that serves its own signed URLs (local)
    return app


async def _sweep_stale_uploads(context: ServerContext) -> None:
    """Every replica may run this: the sweep is idempotent (see services/cleanup.py). The first sweep runs
    soon after start, so a finalize a crash interrupted is finished (its object visible again) within
    about a minute of the restart, not a cleanup interval later."""
    settings = context.settings
    delay = random.uniform(5, 15)
    while True:
        await asyncio.sleep(delay)
        delay = settings.cleanup_interval * random.uniform(0.9, 1.1)
        try:
            await asyncio.to_thread(clean_stale_uploads, context.store, context.uploads, settings.upload_url_ttl)
        except Exception:  # a failed sweep is retried at the next interval
            logging.getLogger("score.cleanup").exception("stale-upload sweep failed")


def create_app() -> FastAPI:
    """Factory for uvicorn: settings come from ``SCORE_*`` environment variables and the config file."""
    settings = ServerSettings()
    configure_logging(settings.log_level, settings.log_format)
    return build_app(settings)
