"""Turn what the user names (an object id, a local file, a URL) into something htslib can open, plus its index.

For an object id, the index is another file of the same analysis named ``<file>.bai`` (or ``.crai``,
``.csi``, ``.tbi``; also ``<stem>.bai`` for ``x.bam``), as Score's client finds it through the metadata
server. The index object is downloaded into the private working directory and handed to htslib as a
local path, so htslib never fetches (and caches) an index by itself. The data is read through a signed
URL of the whole object: ``view`` fetches only the byte ranges it plans from the index (:mod:`.planned`),
with bounded HTTP ranges; htslib (``samtools``, and ``view``'s fallback) reads it with its own ranges.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from score.client.api import FileEntity, with_retries
from score.client.errors import ClientError
from score.genomics.naming import format_from_name, index_names

if TYPE_CHECKING:
    from score.client.session import Session

ALIGNMENT_FORMATS = ("sam", "bam", "cram")
VARIANT_FORMATS = ("vcf", "vcf.gz", "bcf")
URL_SCHEMES = ("http://", "https://", "ftp://", "s3://", "gs://")


@dataclass
class Source:
    """One input for htslib: where to read it, its format, and its index (a local path) if there is one."""

    label: str  # for messages: "object <id> (<file name>)" or the path
    name: str  # file name, for output file names
    location: str  # URL or absolute path, as htslib opens it
    format: str  # sam | bam | cram | vcf | vcf.gz | bcf
    index: str | None = None
    looked_for: list[str] = field(default_factory=list)  # index names tried, for the "no index" message
    looked_in: str = ""  # where they were looked for
    remote: bool = False
    # Contigs the data's index names, when not the index htslib opens: a planned slice's own index lacks
    # contigs without records in the slice (VCF need not declare contigs in its header).
    index_contigs: tuple[str, ...] | None = None

    @property
    def kind(self) -> str:
        return "alignments" if self.format in ALIGNMENT_FORMATS else "variants"

    def no_index_message(self, fix: str) -> str:
        where = f" {self.looked_in}" if self.looked_in else ""
        looked = f" (looked for {', '.join(self.looked_for)}{where})" if self.looked_for else ""
        return f"{self.label} has no index{looked}; {fix}"


def is_url(value: str) -> bool:
    return value.lower().startswith(URL_SCHEMES)


def sniff_format(head: bytes) -> str | None:
    """The format from a file's first bytes (BGZF is inflated): for objects registered without an extension."""
    data = head
    if head[:2] == b"\x1f\x8b":
        try:
            data = zlib.decompressobj(31).decompress(head)
        except zlib.error:
            return None
        if data.startswith(b"BAM\x01"):
            return "bam"
        if data.startswith(b"BCF\x02"):
            return "bcf"
        if data.startswith(b"##fileformat=VCF"):
            return "vcf.gz"
        if data[:1] == b"@":
            return "sam"
        return None
    if data.startswith(b"CRAM"):
        return "cram"
    if data.startswith(b"##fileformat=VCF"):
        return "vcf"
    if data[:3] in (b"@HD", b"@SQ", b"@RG", b"@PG", b"@CO"):
        return "sam"
    return None


def _format(name: str, read_head: Callable[[], bytes], label: str, required: bool = True) -> str:
    fmt = format_from_name(name)
    if fmt is None:
        fmt = sniff_format(read_head())
    if fmt is None and not required:
        return "unknown"
    if fmt is None:
        raise ClientError(
            f"{label} is not a SAM, BAM, CRAM, VCF or BCF file (judged by its name and first bytes); "
            "view reads only those"
        )
    return fmt


def _get(url: str, target: Path | None = None, head: int | None = None, attempts: int = 3) -> bytes:
    """GET a signed URL (whole, or its first ``head`` bytes); write to ``target`` if given."""

    def once() -> bytes:
        headers = {"Range": f"bytes=0-{head - 1}"} if head else {}
        with httpx.stream("GET", url, headers=headers, timeout=60, follow_redirects=True) as response:
            if response.status_code not in (200, 206):
                raise ClientError(f"the object store answered HTTP {response.status_code}")
            if target is None:
                return response.read()[: head or None]
            with open(target, "wb") as handle:
                for chunk in response.iter_bytes(1 << 20):
                    handle.write(chunk)
            return b""

    try:
        return with_retries(once, attempts, "reading from the object store", (httpx.TransportError,))
    except httpx.TransportError as exc:
        raise ClientError(f"cannot read from the object store ({exc.__class__.__name__})") from exc


def _read_head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(65536)


def _signed_url(session: Session, object_id: str) -> str:
    spec = session.score.download_spec(object_id, external=True)
    if not spec.parts or not spec.parts[0].url:
        raise ClientError(f"the server gave no URL for object {object_id}")
    return spec.parts[0].url


def _safe_name(name: str, fallback: str) -> str:
    base = Path(name).name if name else ""
    return base if base not in ("", ".", "..") else fallback


def resolve_object(
    session: Session,
    object_id: str,
    workdir: Path,
    index_object_id: str | None = None,
    with_index: bool = True,
    index_file: str | None = None,
    require_format: bool = True,
) -> Source:
    """An object through the metadata server: signed URL of the data, local copy of the index if one exists.

    ``index_object_id`` (a manifest's index column) or ``index_file`` (a local path or URL the user has)
    replace the search among the analysis' files.
    """
    entity = session.metadata.entity(object_id)
    name = entity.file_name or object_id
    label = f"object {object_id} ({name})" if entity.file_name else f"object {object_id}"
    url = _signed_url(session, object_id)
    fmt = _format(name, lambda: _get(url, head=65536), label, require_format)
    source = Source(label, name, url, fmt, remote=True)
    if not with_index:
        return source
    if index_file:
        source.index = user_index(index_file, workdir)
        return source
    source.looked_for = index_names(name, fmt)
    index_entity: FileEntity | None = None
    if index_object_id:
        index_entity = session.metadata.entity(index_object_id)
    elif source.looked_for and entity.analysis_id:
        siblings = session.metadata.analysis_entities(entity.analysis_id, entity.study_id or None)
        index_entity = find_index(source.looked_for, siblings, object_id)
        source.looked_in = f"among the files of analysis {entity.analysis_id}"
    if index_entity is not None:
        index_dir = workdir / "index"
        index_dir.mkdir(exist_ok=True)
        ext = next((e for e in (".bai", ".crai", ".csi", ".tbi") if index_entity.file_name.endswith(e)), ".idx")
        target = index_dir / _safe_name(index_entity.file_name, index_entity.object_id + ext)
        try:
            _get(_signed_url(session, index_entity.object_id), target)
        except ClientError as exc:
            raise ClientError(f"cannot download the index {index_entity.object_id} of {label}: {exc}") from exc
        source.index = str(target)
    return source


def find_index(candidates: Sequence[str], siblings: Sequence[FileEntity], object_id: str) -> FileEntity | None:
    """The first candidate name (case-insensitive) among the other files of the analysis."""
    by_name = {s.file_name.lower(): s for s in siblings if s.object_id != object_id and s.file_name}
    for candidate in candidates:
        if candidate.lower() in by_name:
            return by_name[candidate.lower()]
    return None


def user_index(index: str, workdir: Path) -> str:
    """``--input-file-index``: a local path (must exist) or a URL (downloaded into the private directory)."""
    if is_url(index):
        target = workdir / "index" / _safe_name(index.split("?", 1)[0].rsplit("/", 1)[-1], "input.idx")
        target.parent.mkdir(exist_ok=True)
        try:
            _get(index, target)
        except ClientError as exc:
            raise ClientError(f"cannot download the index {index.split('?', 1)[0]}: {exc}") from exc
        return str(target)
    if not Path(index).is_file():
        raise ClientError(f"index file {index} does not exist")
    return index


def resolve_input(location: str, index: str | None, workdir: Path, with_index: bool = True) -> Source:
    """A local file or a URL given with ``--input-file`` (paths must already be absolute)."""
    if is_url(location):
        name = location.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        fmt = _format(name, lambda: _get(location, head=65536), location)
        source = Source(location.split("?", 1)[0], name, location, fmt, remote=True)
    else:
        path = Path(location)
        if not path.is_file():
            raise ClientError(f"input file {location} does not exist")
        fmt = _format(path.name, lambda: _read_head(path), str(path))
        source = Source(str(path), path.name, str(path), fmt)
        source.looked_in = f"beside {path.name}"
    if not with_index:
        return source
    if index:
        source.index = user_index(index, workdir)
        return source
    source.looked_for = index_names(source.name, fmt)
    if not source.remote:
        for candidate in source.looked_for:
            beside = Path(location).with_name(candidate)
            if beside.is_file():
                source.index = str(beside)
                break
    # For a URL without --input-file-index htslib tries <url>.bai etc. itself (inside the private directory).
    return source
