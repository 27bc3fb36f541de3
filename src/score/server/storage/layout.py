"""Score's key layout in a bucket, written and parsed here and nowhere else.

Score-compatible, so a bucket written by the Java server is read as is::

    data/{id}                                   the object's bytes
    data/{id}.meta                              its permanent ObjectSpecification, written at finalize
    upload/{id}_{uploadId}/.meta                an upload in progress (its specification, without URLs)
    upload/{id}_{uploadId}/part-NNNNNNNN|{json}  zero-byte completion markers: the state is in the key name
    upload/{id}_{uploadId}/committed            the verified MD5, written when finalize passed its checks
    upload/{id}_{uploadId}/blocks               Azure: the blob the upload's parts are staged on as blocks

The upload service builds keys with these functions; the S3 store routes keys to buckets and partitions
with ``object_id_of`` and ``is_data_blob``; the sweep groups state keys with ``parse_state_key``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from score.core.models import CompletedPart
from score.server.storage.base import ObjectHead

DATA_PREFIX = "data/"
UPLOAD_PREFIX = "upload/"
META_SUFFIX = ".meta"
STATE_DOCUMENT = ".meta"  # the name of an upload's specification in its state folder
MARKER_PREFIX = "part-"
COMMITTED = "committed"
STAGING = "blocks"  # the name of an upload's staging blob in its state folder (Azure)


def data_key(object_id: str) -> str:
    return f"{DATA_PREFIX}{object_id}"


def meta_key(object_id: str) -> str:
    return f"{DATA_PREFIX}{object_id}{META_SUFFIX}"


def uploads_prefix(object_id: str) -> str:
    """The prefix of every upload state folder of one object."""
    return f"{UPLOAD_PREFIX}{object_id}_"


def state_prefix(object_id: str, upload_id: str) -> str:
    """The state folder of one upload (the caller has checked ``upload_id``'s form)."""
    return f"{uploads_prefix(object_id)}{upload_id}/"


def staging_key(object_id: str, upload_id: str) -> str:
    """Where a store that cannot stage parts beside the object itself keeps an upload's parts (Azure: the block
    blob whose uncommitted blocks are the parts). In the upload's state folder, so that nothing signed for
    a part can write ``data/{id}``; parse_marker ignores it, and the sweep removes it with the folder."""
    return f"{state_prefix(object_id, upload_id)}{STAGING}"


def marker_prefix(object_id: str, upload_id: str, part_number: int) -> str:
    """The prefix of every marker of one part (there is one, but a crash may leave a stale one)."""
    return f"{state_prefix(object_id, upload_id)}{MARKER_PREFIX}{part_number:08x}|"


def marker_key(object_id: str, upload_id: str, part: CompletedPart) -> str:
    body = json.dumps(part.to_wire(), separators=(",", ":"))
    return f"{marker_prefix(object_id, upload_id, part.partNumber)}{body}"


def parse_marker(key: str) -> CompletedPart | None:
    """The CompletedPart encoded in a marker key, or None for other keys in the state folder."""
    name = key.rsplit("/", 1)[-1]
    if not name.startswith(MARKER_PREFIX) or "|" not in name:
        return None
    try:
        return CompletedPart.model_validate_json(name.split("|", 1)[1])
    except ValueError:
        return None


@dataclass(frozen=True)
class StateKey:
    """``upload/{object_id}_{upload_id}/{name}``, taken apart."""

    object_id: str
    upload_id: str
    name: str

    @property
    def folder(self) -> str:
        return f"{self.object_id}_{self.upload_id}"


def parse_state_key(key: str, object_id: str | None = None) -> StateKey | None:
    """The parts of an upload state key, or None for any other key (or another object's, with ``object_id``).

    Upload ids may hold ``_`` (SeaweedFS's do: ``<hex>_<hex>``), object ids are UUIDs, so without
    ``object_id`` the folder is split at its first ``_``; with it, whatever follows ``{object_id}_``."""
    if not key.startswith(UPLOAD_PREFIX):
        return None
    folder, _, name = key[len(UPLOAD_PREFIX) :].partition("/")
    if object_id is not None:
        upload_id = folder[len(object_id) + 1 :] if folder.startswith(f"{object_id}_") else ""
    else:
        object_id, _, upload_id = folder.partition("_")
    if not object_id or not upload_id or not name:
        return None
    return StateKey(object_id, upload_id, name)


def object_id_of(key: str) -> str | None:
    """The object id a key belongs to, or None for keys of no object.

    ``data/{id}`` and ``data/{id}.meta`` -> id; ``upload/{id}_{uploadId}/...`` -> the text before the
    first ``_`` (only its leading characters matter for partitioning, and ids are UUIDs in practice).
    """
    if key.startswith(DATA_PREFIX):
        name = key[len(DATA_PREFIX) :]
        if "/" in name:
            return None
        return name.removesuffix(META_SUFFIX) or None
    if key.startswith(UPLOAD_PREFIX):
        folder = key[len(UPLOAD_PREFIX) :].split("/", 1)[0]
        object_id = folder.split("_", 1)[0]
        return object_id or None
    return None


def is_data_blob(key: str) -> bool:
    """``data/{id}``: the one kind of key stored in the object bucket rather than the state bucket."""
    return key.startswith(DATA_PREFIX) and "/" not in key[len(DATA_PREFIX) :] and not key.endswith(META_SUFFIX)


def data_name(key: str) -> str | None:
    """``{id}`` of a ``data/{id}`` key (None for keys elsewhere or deeper)."""
    return key[len(DATA_PREFIX) :] if is_data_blob(key) else None


@dataclass(frozen=True)
class DataEntry:
    """One name under ``data/``: the head of its bytes (``data/{name}``) if any, and whether it has a ``.meta``."""

    name: str
    data: ObjectHead | None
    has_meta: bool


def data_entries(heads: Iterable[ObjectHead]) -> Iterator[DataEntry]:
    """A key-ordered listing of ``data/`` read back as objects: each name once, with its bytes and ``.meta``
    paired. ``data/{id}`` sorts before ``data/{id}.meta``, but other keys extending ``{id}`` (``{id}-copy``)
    may sort between them, so the names still waiting for their ``.meta`` are kept while they are prefixes of
    the current key: a stack as deep as such names nest, not the listing. Names of one length (UUIDs) come
    out in key order."""
    pending: list[tuple[str, ObjectHead]] = []
    for head in heads:
        name = head.key[len(DATA_PREFIX) :] if head.key.startswith(DATA_PREFIX) else "/"
        if "/" in name:
            continue
        while pending and not name.startswith(pending[-1][0]):
            yield DataEntry(*pending.pop(), has_meta=False)
        if name.endswith(META_SUFFIX):
            object_id = name[: -len(META_SUFFIX)]
            data = next((h for n, h in pending if n == object_id), None)
            pending = [(n, h) for n, h in pending if n != object_id]
            yield DataEntry(object_id, data, has_meta=True)
        else:
            pending.append((name, head))
    while pending:
        yield DataEntry(*pending.pop(), has_meta=False)
