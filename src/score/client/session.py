"""What every client command shares: the session (configuration, API clients, messages) and the resolution
of what a command is asked for (``--object-id``, ``--manifest``, ``--analysis-id``).

Why one module: ``upload``, ``download``, ``view`` (and ``mount``) each choose files the same three ways and
must agree on how a manifest is read, how an object id is checked and how an analysis is looked up; the
genomics commands use these without importing the command-line module, and it without importing them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import click
import httpx

from score.client.api import FileEntity, MetadataApi, ScoreApi
from score.client.config import ClientConfig
from score.client.errors import ClientError
from score.client.transfer.data import DataClient
from score.client.transfer.jobs import JobProgress, NoJobProgress
from score.client.transfer.upload import UploadItem
from score.core.ids import is_uuid
from score.core.manifest import (
    DownloadEntry,
    ManifestError,
    parse_download_manifest,
    parse_upload_manifest,
)

INDEX_EXTENSIONS = (".bai", ".crai", ".csi", ".tbi", ".idx")


class Session:
    """What every command needs: configuration, API clients and the progress display."""

    def __init__(self, config: ClientConfig, quiet: bool) -> None:
        self.config = config
        self.quiet = quiet
        self._score: ScoreApi | None = None
        self._metadata: MetadataApi | None = None

    @property
    def score(self) -> ScoreApi:
        if self._score is None:
            self._score = ScoreApi(self.config)
        return self._score

    @property
    def metadata(self) -> MetadataApi:
        if self._metadata is None:
            self._metadata = MetadataApi(self.config)
        return self._metadata

    def say(self, message: str, board: object = None) -> None:
        """A line on stderr (above the progress bars when a job draws them)."""
        say = getattr(board, "say", None)
        if say is not None:
            say(message)
        else:
            click.echo(message, err=True)

    def job_progress(self, verb: str) -> JobProgress:
        if self.quiet:
            return NoJobProgress()
        from score.client.progress import JobBoard  # rich loads only when bars are drawn

        return JobBoard(verb)

    def verify_connection(self) -> None:
        """Score's ``--verify-connection``: the object store must be reachable from this machine."""
        url = self.score.ping()
        data = DataClient(1, 10.0, 65536)
        try:
            status = data.get_text(url)
        finally:
            data.close()
        if status not in (200, 206):
            raise ClientError(
                "the object store is not reachable from this machine (sentinel read failed"
                f"{f' with HTTP {status}' if status else ''}); run the client where the store is reachable, "
                "or pass --verify-connection false"
            )


# -- what a command is asked for ------------------------------------------------------------------
@dataclass(frozen=True)
class Selection:
    """The files a command is asked for, chosen exactly one way: object ids, a manifest, or an analysis."""

    object_ids: tuple[str, ...] = ()
    manifest: str | None = None
    analysis_id: str | None = None
    study_id: str | None = None

    @classmethod
    def of(
        cls,
        object_ids: tuple[str, ...] = (),
        manifest: str | None = None,
        analysis_id: str | None = None,
        study_id: str | None = None,
        others: Mapping[str, object] | None = None,
    ) -> Selection:
        """Check the options: exactly one way of choosing (``others``: a command's further ways, such as
        ``view --input-file``, by option name), and an analysis only with its study."""
        ways = {"--object-id": object_ids, "--manifest": manifest, "--analysis-id": analysis_id, **(others or {})}
        if sum(1 for value in ways.values() if value) != 1:
            raise click.UsageError(f"give exactly one of {_one_of(list(ways))}")
        if analysis_id and not study_id:
            raise click.UsageError("--analysis-id needs --study-id")
        ids = tuple(dict.fromkeys(object_id(i) for raw in object_ids for i in raw.split(",") if i.strip()))
        return cls(ids, manifest, analysis_id, study_id)


def _one_of(names: list[str]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}"


def upload_items(session: Session, selection: Selection, input_dir: Path) -> list[UploadItem]:
    """The files to upload of a manifest (paths as Score resolves them) or of an analysis (found by registered
    name in ``input_dir``, every one of which must exist)."""
    if selection.manifest:
        text, base = read_manifest(selection.manifest)
        try:
            entries = parse_upload_manifest(text, selection.manifest)
        except ManifestError as exc:
            raise ClientError(str(exc)) from exc
        return [UploadItem(_beside(Path(e.file_path), base), object_id(e.object_id), e.md5) for e in entries]
    assert selection.analysis_id and selection.study_id
    files = session.metadata.analysis_files(selection.study_id, selection.analysis_id)
    if not files:
        raise ClientError(f"analysis {selection.analysis_id} of study {selection.study_id} has no registered files")
    items = [UploadItem(input_dir / f.file_name, f.object_id, f.md5) for f in files]
    missing = [str(i.path) for i in items if not (exists(i.path) and i.path.is_file())]
    if missing:
        raise ClientError(f"registered files not found in {input_dir}: {', '.join(missing)}")
    return items


def download_manifest_entries(location: str) -> list[DownloadEntry]:
    """A Song download manifest's entries, object ids checked."""
    text, _ = read_manifest(location)
    try:
        entries = parse_download_manifest(text, location)
    except ManifestError as exc:
        raise ClientError(str(exc)) from exc
    for entry in entries:
        object_id(entry.object_id)
        if entry.index_object_id:
            object_id(entry.index_object_id)
    return entries


def download_entities(session: Session, selection: Selection, with_index: bool) -> list[FileEntity]:
    """The metadata of every file to download; with ``with_index``, also the index files (``x.bam.bai`` ...)
    of each chosen file, looked up once per analysis however many of its files are chosen."""
    if selection.analysis_id:
        entities = session.metadata.analysis_entities(selection.analysis_id, selection.study_id)
        if not entities:
            raise ClientError(
                f"analysis {selection.analysis_id} of study {selection.study_id} has no files in the metadata server"
            )
        return entities  # an analysis holds its index files already
    ids = selection.object_ids
    if selection.manifest:
        ids = tuple(dict.fromkeys(object_id(e.object_id) for e in download_manifest_entries(selection.manifest)))
    entities = [session.metadata.entity(i) for i in ids]
    if with_index:
        chosen = {e.object_id for e in entities}
        siblings: dict[str, list[FileEntity]] = {}
        for entity in list(entities):
            names = {(entity.file_name + ext).lower() for ext in INDEX_EXTENSIONS}
            if entity.analysis_id not in siblings:
                siblings[entity.analysis_id] = session.metadata.analysis_entities(entity.analysis_id)
            for sibling in siblings[entity.analysis_id]:
                if sibling.file_name.lower() in names and sibling.object_id not in chosen:
                    entities.append(sibling)
                    chosen.add(sibling.object_id)
    return entities


# -- checks and inputs ----------------------------------------------------------------------------
def object_id(value: str) -> str:
    """A valid object id (a UUID), lower-cased; anything else is a usage error."""
    value = value.strip()
    if not is_uuid(value):
        raise click.BadParameter(f"{value} is not a valid UUID", param_hint="--object-id")
    return value.lower()


def shown(text: str, limit: int = 120) -> str:
    """A user's input quoted in a message, cut short (a 100,000-character path is not worth repeating)."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def read_manifest(location: str) -> tuple[str, Path]:
    """Manifest text from a URL or a file, and the directory relative paths in it may refer to."""
    if location.startswith(("http://", "https://")):
        try:
            response = httpx.get(location, timeout=30, follow_redirects=True)
            response.raise_for_status()
            return _manifest_text(response.content, location), Path.cwd()
        except httpx.HTTPError as exc:
            raise ClientError(f"could not read manifest from {shown(location)}: {exc}") from exc
    path = Path(location)
    if path.suffix.lower() == ".xml":
        raise ClientError(f"{shown(location)}: GNOS XML manifests are not supported; use Song's tab-separated one")
    try:
        return _manifest_text(path.read_bytes(), location), path.resolve().parent
    except OSError as exc:
        raise ClientError(f"could not read manifest from {shown(location)}: {exc.strerror or exc}") from exc


def _manifest_text(raw: bytes, location: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ClientError(
            f"manifest {shown(location)} is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); "
            "save it as UTF-8 (a tab-separated text file) and try again"
        ) from None


def _beside(path: Path, manifest_dir: Path) -> Path:
    """Paths are relative to the current directory (as in Score), else to the manifest's directory."""
    if path.is_absolute() or exists(path):
        return path
    other = manifest_dir / path
    return other if exists(other) else path


def exists(path: Path) -> bool:
    """``Path.exists`` that answers False for a path the system cannot even look up (too long, a loop)."""
    try:
        return path.exists()
    except OSError:
        return False
