"""htsget tickets: which byte ranges of a stored BAM/CRAM/VCF/BCF a client needs for some regions.

The bytes never pass through Score. The server reads only the object's index (another file of the same
analysis, ``<name>.bai`` and the like) and a few header/edge blocks of the object, plans the ranges with
``score.genomics``, and answers with the store's own signed ranged URLs. Parsed indexes and headers are
cached per object version (size, mtime, MD5 of both object and index), so a changed object or index is
never planned from a stale parse.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from score.genomics import (
    ALLOWED_INDEXES,
    GenomicsError,
    InvalidInput,
    InvalidRange,
    MalformedData,
    MalformedIndex,
    PreparedObject,
    Region,
    UnknownReference,
    UnsupportedFormat,
    prepare,
)
from score.genomics.bgzf import BlockCache
from score.genomics.naming import PLANNED_FORMATS, format_from_name, index_kind_of_name, index_names
from score.server.metadata.base import Entity
from score.server.services.uploads import UploadService, guard
from score.server.settings import ServerSettings
from score.server.storage.base import ObjectHead, ObjectStore
from score.server.ttl_cache import TtlCache

BLOCK_CACHE_BYTES = 4 * 1024 * 1024  # per cached object version (at most ``cache_entries`` of them: 128 MiB)
READS_FORMATS = ("BAM", "CRAM")
VARIANTS_FORMATS = ("VCF", "BCF")
FILE_KINDS = {planned: kind for kind, planned in PLANNED_FORMATS.items()}  # "BAM" -> "bam", "VCF" -> "vcf.gz"


class HtsgetError(Exception):
    """An htsget error: ``name`` and ``status`` as the spec lists them, and a message for the user."""

    def __init__(self, name: str, status: int, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.status = status
        self.message = message


_ERRORS: dict[type[GenomicsError], tuple[str, int]] = {
    UnknownReference: ("NotFound", 404),
    InvalidRange: ("InvalidRange", 400),
    InvalidInput: ("InvalidInput", 400),
    UnsupportedFormat: ("UnsupportedFormat", 400),
}


@dataclass(frozen=True)
class _Index:
    entity: Entity
    kind: str
    head: ObjectHead


def _version(head: ObjectHead) -> tuple[int, int, str | None]:
    return head.size, head.last_modified_ms, head.md5


class HtsgetService:
    def __init__(
        self, store: ObjectStore, settings: ServerSettings, objects: UploadService, cache_entries: int = 32
    ) -> None:
        self._store = store
        self._settings = settings
        self._objects = objects  # where an object's bytes are (Java layouts too)
        self._prepared = TtlCache(ttl=3600.0, max_entries=cache_entries, name="htsget_prepared")

    def ticket(
        self, entity: Entity, siblings: list[Entity], fmt: str, regions: list[Region] | None, header_only: bool
    ) -> dict[str, Any]:
        """The ticket JSON (``{"htsget": {...}}``) for ``regions`` of the object ``entity``."""
        self._check_format(entity, fmt)
        head = self._objects.data_head(entity.id)
        if head is None:
            raise HtsgetError("NotFound", 404, f"object {entity.id} is registered but has not been uploaded yet")
        key = head.key
        index = self._find_index(entity, siblings, fmt)

        def read(start: int, end: int) -> bytes:
            data = guard(lambda: self._store.read_document(key, start, end))
            if data is None:
                raise HtsgetError("NotFound", 404, f"object {entity.id} disappeared while being read")
            return data

        try:
            prepared, blocks = self._prepare(entity, head, index, fmt, read)
            pieces = prepared.plan(read, regions, header_only, cache=blocks)
        except MalformedIndex as exc:
            raise HtsgetError(
                "NotFound", 404, f"the index {index.entity.fileName} of object {entity.id} is unusable ({exc})"
            ) from exc
        except MalformedData as exc:
            raise HtsgetError(
                "UnsupportedFormat", 400, f"object {entity.id} is not a valid {fmt} file ({exc})"
            ) from exc
        except GenomicsError as exc:
            name, status = _ERRORS.get(type(exc), ("InvalidInput", 400))
            raise HtsgetError(name, status, str(exc)) from exc

        ttl = self._settings.download_url_ttl
        urls: list[dict[str, Any]] = []
        for piece in pieces:
            if piece.kind == "inline":
                data = base64.b64encode(piece.data).decode("ascii")
                # The media-type-less form the spec's examples use: some clients decode only "data:;base64,"
                # and send any other data URI over HTTP.
                urls.append({"url": f"data:;base64,{data}", "class": piece.class_})
                continue
            length = piece.end - piece.start
            url = guard(lambda p=piece, n=length: self._store.sign_read(key, p.start, n, ttl))
            urls.append(
                {"url": url, "headers": {"Range": f"bytes={piece.start}-{piece.end - 1}"}, "class": piece.class_}
            )
        return {"htsget": {"format": fmt, "urls": urls}}

    @staticmethod
    def _check_format(entity: Entity, fmt: str) -> None:
        """A file whose name says what it holds is served only in that format."""
        actual = PLANNED_FORMATS.get(format_from_name(entity.fileName) or "")
        if actual is not None and actual != fmt:
            raise HtsgetError(
                "UnsupportedFormat", 400, f"object {entity.id} ({entity.fileName}) is {actual}; ask for format={actual}"
            )

    def _find_index(self, entity: Entity, siblings: list[Entity], fmt: str) -> _Index:
        """The analysis file with one of the index names ``naming.index_names`` gives (as the client looks)."""
        by_name = {sibling.fileName: sibling for sibling in siblings if sibling.id != entity.id}
        wanted = index_names(entity.fileName, FILE_KINDS[fmt])
        for name in wanted:
            candidate = by_name.get(name)
            kind = index_kind_of_name(name)
            if candidate is None or kind not in ALLOWED_INDEXES[fmt]:  # type: ignore[index]
                continue
            head = self._objects.data_head(candidate.id)
            if head is not None:
                return _Index(candidate, kind, head)
        names = ", ".join(wanted)
        raise HtsgetError(
            "NotFound",
            404,
            f"object {entity.id} ({entity.fileName}) has no uploaded index: looked for {names} in analysis "
            f"{entity.gnosId}; upload the index to serve regions of this file",
        )

    def _prepare(
        self, entity: Entity, head: ObjectHead, index: _Index, fmt: str, read: Any
    ) -> tuple[PreparedObject, BlockCache]:
        """The parsed header and index of this version of the object and its index, with the cache of its blocks
        (both dropped together when either changes)."""
        cache_key = (entity.id, fmt, _version(head), index.entity.id, _version(index.head))
        found = self._prepared.get(cache_key)
        if found is None:
            raw = guard(lambda: self._store.read_document(index.head.key))
            if raw is None:
                raise HtsgetError("NotFound", 404, f"the index {index.entity.fileName} disappeared; try again")
            prepared = prepare(fmt, read, head.size, raw, index.kind)  # type: ignore[arg-type]
            found = (prepared, BlockCache(BLOCK_CACHE_BYTES))
            self._prepared.put(cache_key, found)
        return found  # type: ignore[no-any-return]
