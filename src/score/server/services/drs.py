"""GA4GH DRS 1.4 documents: a file as a DrsObject (a blob), an analysis as a bundle, service-info, authorizations.

Only the shapes live here: who may see what, and the publish gate, are the API layer's (``api/drs.py``),
which applies ``/download``'s own checks before anything is built.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from score import __version__
from score.server.auth.builtin import ISSUER as BUILTIN_ISSUER
from score.server.metadata.base import Entity
from score.server.settings import ServerSettings

ACCESS_ID = "https"  # one access method per object, so one access id: the unranged signed read
MAX_BULK = 100  # ids in one bulk request (service-info's maxBulkRequestLength)
_MIME_TYPES = {  # genomic types mimetypes does not know
    ".bam": "application/octet-stream",
    ".cram": "application/octet-stream",
    ".bai": "application/octet-stream",
    ".crai": "application/octet-stream",
    ".vcf": "text/plain",
    ".fastq": "text/plain",
}


@dataclass(frozen=True)
class StoredFile:
    """One published file as DRS describes it: its entity plus what the store holds for it."""

    entity: Entity
    size: int
    md5: str | None
    modified_ms: int | None


def drs_host(settings: ServerSettings) -> str:
    """The host (and port) of ``drs://`` URIs: the server's public URL's, so the URIs resolve for clients."""
    return urlsplit(settings.base_url).netloc


def self_uri(settings: ServerSettings, object_id: str) -> str:
    return f"drs://{drs_host(settings)}/{object_id}"


def _rfc3339(ms: int | None) -> str:
    moment = datetime.fromtimestamp((ms or 0) / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _mime_type(name: str) -> str | None:
    lowered = name.lower()
    for suffix, kind in _MIME_TYPES.items():
        if lowered.endswith(suffix):
            return kind
    guessed, encoding = mimetypes.guess_type(name)
    return "application/gzip" if encoding == "gzip" else guessed


def _checksums(md5: str | None) -> list[dict[str, str]]:
    # The spec asks for at least one checksum; an object uploaded without an MD5 has none to give.
    return [{"type": "md5", "checksum": md5}] if md5 else [{"type": "md5", "checksum": ""}]


def authorizations(settings: ServerSettings, object_id: str, access: str) -> dict[str, Any]:
    """How to authorise ``/access`` (and the object itself): a bearer token of an issuer this server trusts;
    open-access files need none."""
    issuers = ([BUILTIN_ISSUER] if settings.auth.builtin else []) + [p.issuer for p in settings.auth.jwt]
    kinds = ["None", "BearerAuth"] if access.strip().lower() == "open" else ["BearerAuth"]
    body: dict[str, Any] = {"drs_object_id": object_id, "supported_types": kinds}
    if issuers:
        body["bearer_auth_issuers"] = issuers
    return body


def blob(settings: ServerSettings, stored: StoredFile, access_url: str | None) -> dict[str, Any]:
    """The DrsObject of one file. ``access_url`` (open files) is given inline; every file also has the
    ``access_id`` a token exchanges for a fresh URL at ``/access``."""
    entity = stored.entity
    method: dict[str, Any] = {
        "type": "https",
        "access_id": ACCESS_ID,
        "authorizations": authorizations(settings, entity.id, entity.access),
    }
    if access_url is not None:
        method["access_url"] = {"url": access_url}
    body: dict[str, Any] = {
        "id": entity.id,
        "name": entity.fileName,
        "self_uri": self_uri(settings, entity.id),
        "size": stored.size,
        "created_time": _rfc3339(stored.modified_ms),
        "updated_time": _rfc3339(stored.modified_ms),
        "checksums": _checksums(stored.md5),
        "access_methods": [method],
        "aliases": [entity.fileName, entity.gnosId],
        "description": f"file {entity.fileName} of analysis {entity.gnosId}, study {entity.projectCode}",
    }
    mime = _mime_type(entity.fileName)
    if mime:
        body["mime_type"] = mime
    return body


def bundle(settings: ServerSettings, analysis_id: str, files: list[StoredFile]) -> dict[str, Any]:
    """An analysis as a DRS bundle: its files as contents (analyses do not nest, so ``expand`` changes
    nothing); size and checksum as the spec defines them for bundles."""
    md5s = sorted(f.md5 for f in files if f.md5)
    times = [f.modified_ms or 0 for f in files]
    study = files[0].entity.projectCode if files else ""
    return {
        "id": analysis_id,
        "name": analysis_id,
        "self_uri": self_uri(settings, analysis_id),
        "size": sum(f.size for f in files),
        "created_time": _rfc3339(min(times, default=0)),
        "updated_time": _rfc3339(max(times, default=0)),
        "checksums": [{"type": "md5", "checksum": hashlib.md5("".join(md5s).encode()).hexdigest()}],  # noqa: S324
        "contents": [
            {"name": f.entity.fileName, "id": f.entity.id, "drs_uri": [self_uri(settings, f.entity.id)]} for f in files
        ],
        "aliases": [analysis_id],
        "description": f"analysis {analysis_id} of study {study}",
    }


def service_info(settings: ServerSettings) -> dict[str, Any]:
    return {
        "id": "org.overture.score.drs",
        "name": "Score DRS",
        "type": {"group": "org.ga4gh", "artifact": "drs", "version": "1.4.0"},
        "description": "Score's published files as DRS objects and its analyses as bundles, read by signed URLs",
        "organization": {"name": "Score", "url": "https://github.com/overture-stack/score"},
        "version": __version__,
        "maxBulkRequestLength": MAX_BULK,
        "drs": {"maxBulkRequestLength": MAX_BULK},
        "documentationUrl": f"{settings.base_url}/docs",
    }
