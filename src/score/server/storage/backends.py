"""Every storage backend, registered in one place: its name, its settings model and how to build it.

Adding a backend is a module that implements ``ObjectStore`` (``base.py``) plus one ``Backend`` entry here;
the settings (``storage = "<name>"``, a ``[<name>]`` table, ``SCORE_<NAME>__*`` variables), the factory and
the start-up check follow from the entry. Cloud SDKs are imported only when their backend is chosen.
See CONTRIBUTING.md, "Adding a storage backend".
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, SecretStr, create_model
from pydantic_settings import BaseSettings

if TYPE_CHECKING:
    from score.server.settings import ServerSettings
    from score.server.storage.base import ObjectStore


class S3Config(BaseModel):
    """S3 and S3-compatible stores (reference §3.1 names in comments)."""

    endpoint: str = "https://s3.amazonaws.com"  # s3.endpoint; path-style addressing always
    region: str = "us-east-1"
    access_key: str | None = None  # s3.accessKey; unset: the AWS credential chain
    secret_key: SecretStr | None = None  # s3.secretKey
    bucket: str = "score.data"  # bucket.name.object
    state_bucket: str | None = None  # bucket.name.state; default: the object bucket
    sigv2: bool = False  # s3.sigV4Enabled=false (old Ceph/RadosGW)
    kms_key_id: str | None = None  # s3.masterEncryptionKeyId: SSE-KMS
    presign_endpoint: str | None = None  # s3.preSignedUrl.override.host: the endpoint clients use
    partition_pool: int = Field(0, ge=0)  # bucket.size.pool
    partition_key: int = Field(2, ge=1, le=7)  # bucket.size.key
    custom_md5_property: str = "md5chksum"  # s3.customMd5Property


class AzureConfig(BaseModel):
    account_name: str = ""
    account_key: SecretStr | None = None
    endpoint: str | None = None  # e.g. http://127.0.0.1:10000/devstoreaccount1 (Azurite); default: Azure's
    container: str = "data"


class GcsConfig(BaseModel):
    bucket: str = "score-data"
    project: str | None = None
    endpoint: str | None = None  # emulator base URL; default: Google's
    credentials_file: str | None = None  # service-account JSON, needed to sign V4 URLs


class PosixConfig(BaseModel):
    """A directory on a file system that every replica mounts (NFS, Lustre, GPFS): see ``storage/posix.py``."""

    root: Path | None = Field(None, description="The shared directory, the same path on every replica")
    create: bool = Field(
        False,
        description="Make the store in ``root`` if it holds none yet (the first start). Off by default so that an "
        "unmounted file system is refused at start-up instead of becoming an empty store on a local disk",
    )


@dataclass(frozen=True)
class Backend:
    """One storage backend: ``config`` is its settings table (None: it has none), ``store`` the
    ``module:Class`` of its ObjectStore, built by ``build`` from the whole settings."""

    name: str
    store: str
    config: type[BaseModel] | None
    build: Callable[[Any, ServerSettings], ObjectStore]  # (the store class, the settings) -> the store

    def store_class(self) -> Any:
        module, _, name = self.store.partition(":")
        return getattr(importlib.import_module(module), name)


def _from_its_table(name: str) -> Callable[[Any, ServerSettings], ObjectStore]:
    """The usual build: the store made from its own settings table."""
    return lambda cls, settings: cls(getattr(settings, name))


def _local(cls: Any, settings: ServerSettings) -> ObjectStore:
    return cls(settings.data_dir / "store", settings.base_url, min_free_bytes=settings.min_free_space)  # type: ignore[no-any-return]


def _posix(cls: Any, settings: ServerSettings) -> ObjectStore:
    return cls.shared(settings.posix, settings.base_url, settings.min_free_space)  # type: ignore[no-any-return]


BACKENDS: dict[str, Backend] = {
    backend.name: backend
    for backend in (
        Backend("local", "score.server.storage.local:LocalStore", None, _local),
        Backend("s3", "score.server.storage.s3:S3Store", S3Config, _from_its_table("s3")),
        Backend("azure", "score.server.storage.azure:AzureStore", AzureConfig, _from_its_table("azure")),
        Backend("gcs", "score.server.storage.gcs:GcsStore", GcsConfig, _from_its_table("gcs")),
        Backend("posix", "score.server.storage.posix:PosixStore", PosixConfig, _posix),
    )
}


def backend_settings() -> type[BaseSettings]:
    """The settings base class with one table per backend that has settings (``s3``, ``azure``, ...)."""
    fields: dict[str, Any] = {b.name: (b.config, b.config()) for b in BACKENDS.values() if b.config is not None}
    return create_model("BackendSettings", __base__=BaseSettings, **fields)


def build_store(settings: ServerSettings) -> ObjectStore:
    """The backend named by ``settings.storage``; its SDK is imported now, not before."""
    backend = BACKENDS[settings.storage]
    return backend.build(backend.store_class(), settings)
