"""What every client command shares: the session (configuration, API clients, messages) and the resolution
of what a command is asked for (``--object-id``, ``--manifest``, ``--analysis-id``).

Why one module: ``upload``, ``download``, ``view`` (and ``mount``) each choose files the same three ways and
must agree on how a manifest is read, how an object id is checked and how an analysis is looked up; the
genomics commands use these without importing the command-line module, and it without importing them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import click
import httpx

from score.client.api import FileEntity, MetadataApi, ScoreApi
from score.client.config import ClientConfig
from score.client.errors import ClientError, ServerError
from score.client.transfer.data import DataClient
from score.client.transfer.download import Claim
from score.client.transfer.jobs import JobProgress, NoJobProgress
from score.client.transfer.upload import UploadItem
from score.core import md5 as md5s
from score.core.ids import is_uuid
from score.core.manifest import (
    DownloadEntry,
    ManifestError,
    parse_download_manifest,
    parse_upload_manifest,
)

INDEX_EXTENSIONS = (".bai", ".crai", ".csi", ".tbi", ".idx")


def index_names(file_name: str) -> list[str]:
    """The names an index of ``file_name`` goes by beside it (``x.bam`` -> ``x.bam.bai`` ...), lower-cased:
    how ``download``, ``view`` and ``mount`` all find a file's index among its analysis's files."""
    return [(file_name + ext).lower() for ext in INDEX_EXTENSIONS]


class Session:
    """What every command needs: configuration, API clients and the progress display."""

    def __init__(self, config: ClientConfig | Callable[[], ClientConfig], quiet: bool) -> None:
        """``config`` may be given as the function that loads it: then it is loaded when a command first needs
        it, so that ``--help``, ``version`` and ``completion`` work even while the configuration is wrong."""
        self._config = config if isinstance(config, ClientConfig) else None
        self._load = config if not isinstance(config, ClientConfig) else None
        self._lock = threading.Lock()
        self.quiet = quiet
        self._score: ScoreApi | None = None
        self._metadata: MetadataApi | None = None

    @property
    def config(self) -> ClientConfig:
        with self._lock:
            if self._config is None:
                assert self._load is not None
                self._config = self._load()
            return self._config

    @property
    def score(self) -> ScoreApi:
        if self._score is None:
            self._score = ScoreApi(self.config, notify=self.say)
        return self._score

    @property
    def metadata(self) -> MetadataApi:
        if self._metadata is None:
            self._metadata = MetadataApi(self.config, notify=self.say)
        return self._metadata

    def close(self) -> None:
        """Close the connections to the servers that were opened."""
        for service in (self._score, self._metadata):
            if service is not None:
                service.close()

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
    """The files to upload of a manifest (paths as Score resolves them; each file remembers its line, which
    its failures name) or of an analysis (found by registered name in ``input_dir``, every one of which
    must exist)."""
    if selection.manifest:
        location = selection.manifest
        text, base = read_manifest(location)
        try:
            entries = parse_upload_manifest(text, location)
        except ManifestError as exc:
            raise ClientError(str(exc)) from exc
        problems = _Problems(location)
        for e in entries:
            problems.check_id(e.line, e.object_id, 1, "object id")
            problems.check_md5(e.line, e.md5, 3)
        problems.raise_any()
        return [
            UploadItem(_beside(Path(e.file_path), base), e.object_id.lower(), e.md5, _origin(location, e.line))
            for e in entries
        ]
    assert selection.analysis_id and selection.study_id
    try:
        files = session.metadata.analysis_files(selection.study_id, selection.analysis_id)
    except ServerError as exc:
        if exc.status == 404:
            raise ClientError(_not_found(session, selection.study_id, selection.analysis_id, str(exc))) from exc
        raise
    if not files:
        raise ClientError(f"analysis {selection.analysis_id} of study {selection.study_id} has no registered files")
    items = [UploadItem(input_dir / f.file_name, f.object_id, f.md5) for f in files]
    missing = [str(i.path) for i in items if not (exists(i.path) and i.path.is_file())]
    if missing:
        raise ClientError(f"registered files not found in {input_dir}: {', '.join(missing)}")
    return items


def download_manifest_entries(location: str, claims: bool = False) -> list[DownloadEntry]:
    """A Song download manifest's entries, object ids checked, and with ``claims`` (a download, which checks
    them against the server) sizes and MD5s too: every bad line is named."""
    text, _ = read_manifest(location)
    try:
        entries = parse_download_manifest(text, location)
    except ManifestError as exc:
        raise ClientError(str(exc)) from exc
    problems = _Problems(location)
    for e in entries:
        problems.check_id(e.line, e.object_id, 3, "object id")
        if e.index_object_id:
            problems.check_id(e.line, e.index_object_id, 8, "index object id")
        if claims and e.file_size and not e.file_size.isdigit():
            problems.add(e.line, f"file size {shown(e.file_size)} (column 6) is not a number of bytes")
        if claims:
            problems.check_md5(e.line, e.md5, 7)
    problems.raise_any()
    return entries


def download_entities(
    session: Session, selection: Selection, with_index: bool
) -> tuple[list[FileEntity], dict[str, Claim]]:
    """The metadata of every file to download; with ``with_index``, also the index files (``x.bam.bai`` ...)
    of each chosen file, looked up once per analysis however many of its files are chosen. With a manifest,
    also what each of its lines claims (size, MD5), by object id, for the download to check."""
    if selection.analysis_id:
        assert selection.study_id
        entities = session.metadata.analysis_entities(selection.analysis_id, selection.study_id)
        if not entities:
            found = f"analysis {selection.analysis_id} of study {selection.study_id} has no files"
            raise ClientError(_not_found(session, selection.study_id, selection.analysis_id, found))
        return entities, {}  # an analysis holds its index files already
    ids = selection.object_ids
    claims: dict[str, Claim] = {}
    if selection.manifest:
        for e in download_manifest_entries(selection.manifest, claims=True):
            claims.setdefault(e.object_id.lower(), _claim(selection.manifest, e))
        ids = tuple(claims)
    entities = _registered(session, ids, claims)
    if with_index:
        chosen = {e.object_id for e in entities}
        siblings: dict[str, list[FileEntity]] = {}
        for entity in list(entities):
            names = set(index_names(entity.file_name))
            if entity.analysis_id not in siblings:
                siblings[entity.analysis_id] = session.metadata.analysis_entities(entity.analysis_id)
            for sibling in siblings[entity.analysis_id]:
                if sibling.file_name.lower() in names and sibling.object_id not in chosen:
                    entities.append(sibling)
                    chosen.add(sibling.object_id)
    return entities, claims


def _registered(session: Session, ids: tuple[str, ...], claims: dict[str, Claim]) -> list[FileEntity]:
    """Each object's metadata; the objects the metadata server does not know are named all at once, with
    their manifest lines (not in Song's internal terms), before anything is downloaded."""
    entities, unknown = [], []
    for i in ids:
        try:
            entities.append(session.metadata.entity(i))
        except ServerError as exc:
            if exc.status != 404:
                raise
            unknown.append(f"object {i}" + (f" ({claims[i].origin})" if i in claims else ""))
    if unknown:
        which = "; ".join(unknown[:10]) + (f"; and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        fix = "fix those lines of the manifest" if claims else "check the object id"
        raise ClientError(
            f"{which} {'is' if len(unknown) == 1 else 'are'} not registered in the metadata server; {fix}"
        )
    return entities


def _claim(location: str, entry: DownloadEntry) -> Claim:
    return Claim(
        _origin(location, entry.line),
        int(entry.file_size) if entry.file_size else None,
        md5s.normalize(entry.md5) if entry.md5 else None,
    )


def _not_found(session: Session, study_id: str, analysis_id: str, found: str) -> str:
    """Why an analysis lookup found nothing (``found``), in the user's terms: a study that does not exist (and
    how to see the ones that do) rather than the metadata server's advice to create it; else how to see the
    study's analyses."""
    metadata_url = session.config.metadata_url
    try:
        studies = sorted(session.metadata.studies())
    except ServerError:
        return f"{found}; check --study-id and --analysis-id"
    if study_id not in studies:
        some = ", ".join(studies[:10]) + (f" and {len(studies) - 10} more" if len(studies) > 10 else "")
        known = f"the studies it has: {some}" if studies else "it has no studies yet"
        return (
            f"study {study_id} does not exist in the metadata server ({known}); check --study-id "
            f"(list the studies with: curl {metadata_url}/studies/all)"
        )
    return (
        f"{found}; check --analysis-id (list the analyses of study {study_id} with: "
        f"curl '{metadata_url}/studies/{study_id}/analysis?analysisStates=PUBLISHED,UNPUBLISHED')"
    )


def _origin(location: str, line: int) -> str:
    return f"manifest {location}, line {line}"


class _Problems:
    """Every bad line of a manifest, reported together (a user fixes them all at once, not one per run)."""

    LIMIT = 10

    def __init__(self, location: str) -> None:
        self.location = location
        self.found: list[str] = []

    def add(self, line: int, problem: str) -> None:
        self.found.append(f"{_origin(self.location, line)}: {problem}")

    def check_id(self, line: int, value: str, column: int, what: str) -> None:
        if not is_uuid(value):
            self.add(line, f"{what} {shown(value)} (column {column}) is not a valid UUID")

    def check_md5(self, line: int, value: str, column: int) -> None:
        if value:
            try:
                md5s.normalize(value)
            except ValueError:
                self.add(line, f"md5 {shown(value)} (column {column}) is not an MD5 (32 hex digits)")

    def raise_any(self) -> None:
        if not self.found:
            return
        shown_lines = self.found[: self.LIMIT]
        more = f"\n({len(self.found) - self.LIMIT} more)" if len(self.found) > self.LIMIT else ""
        raise ClientError("\n".join(shown_lines) + more + "\nfix the manifest and run the command again")


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
