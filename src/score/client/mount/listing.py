"""What a mount shows: the published files the token may read, with sizes, times and part layouts.

Where the original listed every Song entity and every object in the bucket on each start (reference §8,
bug 17), a listing here is built from the analyses in scope only (one analysis, one study, the analyses of a
manifest's files, or every study), and the server decides access: one ``POST /batch/download/specs`` per
1,000 files, without URLs, answers each file's size and part MD5s or its refusal. A refused file (no
access, not uploaded) is not listed. A refresh asks Song again but the server only about files it has not
seen, so keeping a mount current costs one Song call per study, not one call per file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from score.client.api import token_claims
from score.client.errors import ClientError, ServerError
from score.client.session import Session, download_manifest_entries, index_names
from score.client.wire import ObjectSpecification

log = logging.getLogger("score.mount")
CACHE_FORMAT = 1


@dataclass(frozen=True)
class PartLayout:
    """One upload part: where it is and, when known, the MD5 its bytes must have."""

    offset: int
    size: int
    md5: str | None


@dataclass(frozen=True)
class MountedFile:
    object_id: str
    study_id: str
    analysis_id: str
    file_name: str
    size: int
    md5: str | None
    mtime_ns: int
    parts: tuple[PartLayout, ...] = ()


@dataclass(frozen=True)
class Scope:
    """What to mount: a manifest's files (with their index files), one analysis, one study, or everything."""

    object_ids: tuple[str, ...] = ()
    analysis_id: str | None = None
    study_id: str | None = None

    def describe(self) -> str:
        if self.object_ids:
            return f"{len(self.object_ids)} manifest objects"
        if self.analysis_id:
            return f"analysis {self.analysis_id} of study {self.study_id}"
        return f"study {self.study_id}" if self.study_id else "every study"

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def manifest_scope(location: str) -> Scope:
    """The files of a download manifest and their index files (columns 3 and 8, as Score's mount)."""
    ids: list[str] = []
    for entry in download_manifest_entries(location):
        ids.append(entry.object_id.lower())
        if entry.index_object_id:
            ids.append(entry.index_object_id.lower())
    return Scope(object_ids=tuple(dict.fromkeys(ids)))


@dataclass
class Listing:
    files: dict[str, MountedFile] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # object id -> why the server will not serve it


def build_listing(session: Session, scope: Scope, previous: Listing | None = None) -> Listing:
    """The files in ``scope`` the server will serve to this token; ``previous`` saves asking the server
    again about files whose registered size and MD5 have not changed."""
    registered = {f["objectId"].lower(): (f, a) for a in _analyses(session, scope) for f in a.get("files", [])}
    if scope.object_ids:
        registered = {i: registered[i] for i in _with_index_files(scope.object_ids, registered) if i in registered}
    known = previous.files if previous else {}
    listing = Listing()
    unknown: list[str] = []
    for object_id, (song_file, _) in registered.items():
        before = known.get(object_id)
        if before is not None and _same(before, song_file):
            listing.files[object_id] = before
        else:
            unknown.append(object_id)
    answers = session.score.download_specs(unknown, exclude_urls=True) if unknown else {}
    for object_id, answer in answers.items():
        if isinstance(answer, str):
            listing.refused[object_id] = answer
            continue
        song_file, analysis = registered[object_id]
        listing.files[object_id] = _mounted(song_file, analysis, answer)
    if listing.refused:
        log.info("%d files in scope are not listed (no access, or not uploaded)", len(listing.refused))
    return listing


def _with_index_files(object_ids: tuple[str, ...], registered: dict[str, tuple[dict[str, Any], Any]]) -> list[str]:
    """The chosen files and, as ``download`` does, the index files beside them (``x.bam`` -> ``x.bam.bai`` ...
    in the same analysis), whether or not the manifest names them in its index column."""
    by_name = {
        (str(a.get("analysisId")), str(f.get("fileName", "")).lower()): object_id
        for object_id, (f, a) in registered.items()
    }
    chosen = dict.fromkeys(object_ids)
    for object_id in object_ids:
        if object_id in registered:
            f, a = registered[object_id]
            for name in index_names(str(f.get("fileName", ""))):
                index = by_name.get((str(a.get("analysisId")), name))
                if index is not None:
                    chosen.setdefault(index)
    return list(chosen)


def _same(known: MountedFile, song_file: dict[str, Any]) -> bool:
    """Registered as it was when listed: the server need not be asked about it again."""
    md5 = str(song_file.get("fileMd5sum") or "").lower() or None
    return known.size == song_file.get("fileSize") and (known.md5 or None) == md5


def _analyses(session: Session, scope: Scope) -> Iterable[dict[str, Any]]:
    """Song's JSON of every published analysis in scope."""
    metadata = session.metadata
    if scope.analysis_id and scope.study_id:
        analysis = metadata.analysis(scope.study_id, scope.analysis_id)
        if analysis.get("analysisState") != "PUBLISHED":
            raise ClientError(
                f"analysis {scope.analysis_id} of study {scope.study_id} is {analysis.get('analysisState')}, not "
                "PUBLISHED: only published analyses can be read; publish it, or mount another one"
            )
        return [analysis]
    if scope.object_ids:
        found: dict[str, dict[str, Any]] = {}
        seen: set[str] = set()
        for object_id in scope.object_ids:
            if object_id in seen:
                continue
            try:
                entity = metadata.entity(object_id)
            except ServerError as exc:
                if exc.status != 404:
                    raise
                log.warning("manifest object %s is not registered in the metadata server; not listed", object_id)
                continue
            if entity.analysis_id in found or not entity.study_id:
                continue
            analysis = metadata.analysis(entity.study_id, entity.analysis_id)
            found[entity.analysis_id] = analysis
            seen.update(str(f.get("objectId", "")).lower() for f in analysis.get("files", []))
        return [a for a in found.values() if a.get("analysisState") == "PUBLISHED"]
    studies = [scope.study_id] if scope.study_id else metadata.studies()
    return [a for study in studies for a in metadata.published_analyses(study)]


def _mounted(song_file: dict[str, Any], analysis: dict[str, Any], spec: ObjectSpecification) -> MountedFile:
    parts = tuple(PartLayout(p.offset, p.partSize, p.sourceMd5) for p in spec.parts if p.partSize > 0)
    if len(parts) == 1 and parts[0].md5 is None and spec.objectMd5:
        parts = (PartLayout(0, parts[0].size, spec.objectMd5),)  # one part: the object's MD5 is the part's
    return MountedFile(
        object_id=spec.objectId.lower(),
        study_id=str(analysis.get("studyId") or song_file.get("studyId") or ""),
        analysis_id=str(analysis.get("analysisId") or song_file.get("analysisId") or ""),
        file_name=str(song_file.get("fileName") or spec.objectId),
        size=spec.objectSize,
        md5=(spec.objectMd5 or song_file.get("fileMd5sum") or None),
        mtime_ns=_time_ns(analysis),
        parts=parts,
    )


def _time_ns(analysis: dict[str, Any]) -> int:
    """When the analysis's files last became what they are: its (last) publication, else its last change."""
    for name in ("publishedAt", "firstPublishedAt", "updatedAt", "createdAt"):
        value = analysis.get(name)
        if isinstance(value, str) and value:
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)  # Song and the registry write UTC without an offset
            return int(moment.timestamp() * 1e9)
    return time.time_ns()


# -- the listing saved between mounts (--cache-metadata) --------------------------------------------
def identity(token: str) -> str:
    """Who a listing was made for, without the token itself: a digest of a JWT's issuer, subject and scopes
    (the same for a renewed token), or of an opaque token. A listing cached for another identity may hold
    files this one may not read, so it is not used."""
    claims = token_claims(token)
    if claims is not None:
        who = {k: claims.get(k) for k in ("iss", "sub", "scope", "scp", "authorities", "context")}
        material = json.dumps(who, sort_keys=True, default=str)
    else:
        material = token
    return hashlib.sha256(material.encode()).hexdigest()


def load_cached(path: Path, origin: str, scope: Scope, who: str) -> Listing | None:
    """The listing saved by an earlier mount of the same server and scope for the same identity, or None."""
    try:
        body = json.loads(path.read_text())
        expected = {"format": CACHE_FORMAT, "origin": origin, "scope": scope.key(), "identity": who}
        if any(body.get(k) != v for k, v in expected.items()):
            return None
        files = {}
        for raw in body["files"]:
            parts = tuple(PartLayout(**p) for p in raw.pop("parts"))
            files[raw["object_id"]] = MountedFile(**raw, parts=parts)
        return Listing(files)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if not isinstance(exc, FileNotFoundError):
            log.warning("ignoring the metadata cache %s: %s", path, exc)
        return None


def save_cached(path: Path, origin: str, scope: Scope, who: str, listing: Listing) -> None:
    """Written whole to a temporary name, then renamed: a crash never leaves half a cache."""
    body = {
        "format": CACHE_FORMAT,
        "origin": origin,
        "scope": scope.key(),
        "identity": who,
        "files": [asdict(f) for f in listing.files.values()],
    }
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(json.dumps(body))
        temporary.replace(path)
    except OSError as exc:
        log.warning("could not save the metadata cache %s: %s", path, exc)
