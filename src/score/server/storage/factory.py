"""Builds the configured ObjectStore and checks it is ready, so misconfiguration fails at start-up."""

from __future__ import annotations

from score.server.settings import ServerSettings
from score.server.storage.base import ObjectStore


def build_store(settings: ServerSettings) -> ObjectStore:
    """The backend named by ``settings.storage``; cloud SDKs are imported only when chosen."""
    if settings.storage == "s3":
        from score.server.storage.s3 import S3Store

        return S3Store(settings.s3)
    if settings.storage == "azure":
        from score.server.storage.azure import AzureStore

        return AzureStore(settings.azure)
    if settings.storage == "gcs":
        from score.server.storage.gcs import GcsStore

        return GcsStore(settings.gcs)
    from score.server.storage.local import LocalStore

    return LocalStore(settings.data_dir / "store", settings.base_url, min_free_bytes=settings.min_free_space)
