"""Builds the ASGI app from settings: wiring only, no behaviour."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from score import __version__
from score.server.api import batch, download, health, htsget, listing, upload
from score.server.api.bodies import BodyLimit
from score.server.api.openapi import install_openapi
from score.server.api.song import build_song_router
from score.server.api.store_data import build_store_data_router
from score.server.audit import AuditLog
from score.server.auth.factory import build_verifier
from score.server.context import ServerContext
from score.server.errors import install_error_handlers
from score.server.metadata.base import MetadataSource
from score.server.metadata.registry import Registry
from score.server.metadata.song import SongMetadata
from score.server.services.cleanup import clean_stale_uploads
from score.server.services.downloads import DownloadService
from score.server.services.htsget import HtsgetService
from score.server.services.uploads import UploadService, data_key
from score.server.settings import ServerSettings
from score.server.storage.factory import build_store

DESCRIPTION = (
    "Score brokers authenticated access to object storage: it checks who is asking and hands out "
    "short-lived signed URLs for multipart upload and ranged download. Wire-compatible with Overture Score; "
    "the embedded metadata registry under /song speaks Song's API."
)


def build_context(settings: ServerSettings) -> ServerContext:
    data_dir = settings.data_dir
    # Controlled-access data, the registry and the audit log are the server user's alone: files it
    # creates are 0600 and folders 0700, and the data dir itself is closed to other users.
    os.umask(0o077)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    store = build_store(settings)
    store.check_ready(data_key(settings.sentinel))
    uploads = UploadService(store, settings)
    metadata: MetadataSource = (
        SongMetadata(settings.metadata_url, cache_ttl=settings.metadata_cache_ttl)
        if settings.metadata_url
        else Registry(data_dir / "registry.sqlite", catalog=uploads)
    )
    return ServerContext(
        settings=settings,
        store=store,
        metadata=metadata,
        verifier=build_verifier(settings.auth, data_dir),
        uploads=uploads,
        downloads=DownloadService(store, settings),
        audit=AuditLog(data_dir / "logs" / "audit.log", settings.trusted_proxies),
        htsget=HtsgetService(store, settings),
    )


def build_app(settings: ServerSettings) -> FastAPI:
    context = build_context(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sweeper = asyncio.create_task(_sweep_stale_uploads(context)) if settings.cleanup_interval else None
        yield
        if sweeper is not None:
            sweeper.cancel()

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
        },
    )
    for router in (upload.router, download.router, batch.router, listing.router, health.router, htsget.router):
        app.include_router(router)
    if not settings.metadata_url:  # the embedded registry's Song API; a remote Song serves its own
        app.include_router(build_song_router(), prefix="/song")
    if settings.storage == "local":
        app.include_router(build_store_data_router())  # the local store serves its own signed URLs
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
    configure_logging(settings.log_level)
    return build_app(settings)


def configure_logging(level: str) -> None:
    """Score's own loggers (audit, store access) write plain lines to stderr; tokens never reach them."""
    logger = logging.getLogger("score")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
