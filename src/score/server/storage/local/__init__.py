"""The local store: objects in a folder of this machine, and the endpoint that serves its signed URLs.

A self-contained backend: ``store`` (the ObjectStore, with its signing of URLs), ``files`` (durable file
operations beneath one root), ``data_plane`` (the ``/_store`` routes its URLs point at, which the app mounts
because the store brings them: ``ServesDataPlane``).
"""

from score.server.storage.local.store import (
    BadDigest,
    LocalStore,
    OpenObject,
    PartBusy,
    PartImmutable,
    PartWriter,
    load_or_create_signing_key,
    validate_key,
)

__all__ = [
    "BadDigest",
    "LocalStore",
    "OpenObject",
    "PartBusy",
    "PartImmutable",
    "PartWriter",
    "load_or_create_signing_key",
    "validate_key",
]
