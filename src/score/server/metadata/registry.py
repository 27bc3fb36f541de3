"""The embedded metadata registry: Song's data model (studies, analyses, files) in one SQLite file, or in a
PostgreSQL database that several replicas share (``registry_url``).

It lets a laptop or a small site run Score without a separate Song deployment, while answering the same
questions Score asks Song (``MetadataSource``) and backing a Song-compatible REST subset
(``score.server.api.song``). Behaviour follows Song where Song is explicit:

* analysis ids are random UUIDs; file object ids and sample/specimen/donor ids are Song's local id
  service's name-based UUIDs (``song_id``), so a payload gets the same ids here as in Song and data can
  move between the two;
* new analyses are ``UNPUBLISHED``; publishing checks that every file is stored in Score with the
  registered size and MD5 (Song's ``MISSING_STORAGE_OBJECTS`` / ``MISMATCHING_STORAGE_OBJECT_*``);
* ``SUPPRESSED`` is final: such an analysis can be neither published nor unpublished again;
* analysis types (``/schemas``) are versioned and enforced as Song enforces them once the first one is
  registered (``analysis_types``); updates, search, export and the study tree follow Song's services
  (``registry_views``); the payload rules and Song's id derivation live in ``payload``.

Concurrency: FastAPI runs handlers in a thread pool and several server processes may share the database,
so every call is one transaction on a connection of its own: a read is one snapshot, and writes queue one
at a time (SQLite: WAL mode and ``BEGIN IMMEDIATE``; PostgreSQL: a pooled connection and an advisory lock).
The queries are written once, in SQLite's SQL; ``dialect`` adapts them to PostgreSQL and maps both
drivers' errors to the registry's own. The schema is versioned: ``migrations`` runs at start-up.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from score.core.ids import is_safe_id
from score.server.metadata import analysis_types, migrations, registry_views
from score.server.metadata.base import (
    PUBLISHED,
    SUPPRESSED,
    UNPUBLISHED,
    Entity,
    MetadataUnavailable,
    ObjectCatalog,
    StoredObject,
)
from score.server.metadata.dialect import Db, Dialect, PoolLimits, open_dialect
from score.server.metadata.payload import ACCESS_LEVELS as ACCESS_LEVELS
from score.server.metadata.payload import MAX_FILE_SIZE as MAX_FILE_SIZE
from score.server.metadata.payload import RESERVED_ANALYSIS_FIELDS as RESERVED_ANALYSIS_FIELDS
from score.server.metadata.payload import SONG_ID_NAMESPACE as SONG_ID_NAMESPACE
from score.server.metadata.payload import object_id_for as object_id_for
from score.server.metadata.payload import parse_submission as parse_submission
from score.server.metadata.payload import song_id as song_id
from score.server.metadata.song_errors import *  # noqa: F403  (Song's catalogue, re-exported for callers)
from score.server.metadata.song_errors import (
    ANALYSIS_ID_NOT_FOUND,
    ENTITY_NOT_RELATED_TO_STUDY,
    FILE_NOT_FOUND,
    ILLEGAL_FILE_UPDATE_REQUEST,
    ILLEGAL_QUERY_PARAMETER,
    INVALID_FILE_UPDATE_REQUEST,
    MALFORMED_PARAMETER,
    MISMATCHING_STORAGE_OBJECT_CHECKSUMS,
    MISMATCHING_STORAGE_OBJECT_SIZES,
    MISSING_STORAGE_OBJECTS,
    PAYLOAD_PARSING,
    SCHEMA_VIOLATION,
    SERVICE_UNAVAILABLE,
    STUDY_ALREADY_EXISTS,
    STUDY_ID_DOES_NOT_EXIST,
    STUDY_ID_MISMATCH,
    SUPPRESSED_STATE_TRANSITION,
    RegistryError,
    SongErrorCode,
)

ANALYSIS_STATES = (PUBLISHED, UNPUBLISHED, SUPPRESSED)
ENTITY_FILTERS = {  # legacy entity field -> file column
    "id": "object_id",
    "gnosId": "analysis_id",
    "fileName": "file_name",
    "projectCode": "study_id",
    "access": "file_access",
}


# --------------------------------------------------------------------------------------------------
# Value objects


@dataclass(frozen=True)
class FileRecord:
    """One file of an analysis, as Song's FileEntity carries it."""

    objectId: str
    studyId: str
    analysisId: str
    fileName: str
    fileSize: int
    fileType: str
    fileMd5sum: str
    fileAccess: str
    dataType: str
    info: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "objectId": self.objectId,
            "studyId": self.studyId,
            "analysisId": self.analysisId,
            "fileName": self.fileName,
            "fileSize": self.fileSize,
            "fileType": self.fileType,
            "fileMd5sum": self.fileMd5sum,
            "fileAccess": self.fileAccess,
            "dataType": self.dataType,
            "info": self.info if self.info is not None else {},
        }

    def to_entity(self) -> Entity:
        return Entity(
            id=self.objectId,
            gnosId=self.analysisId,
            fileName=self.fileName,
            projectCode=self.studyId,
            access=self.fileAccess,
            fileSize=self.fileSize,
            fileMd5sum=self.fileMd5sum,
        )


@dataclass(frozen=True)
class EntityPage:
    """One page of legacy entities plus the counts Spring Data's page JSON needs."""

    entities: list[Entity]
    page: int
    size: int
    total: int


def _now() -> str:
    """UTC time as Song's ``LocalDateTime`` serialises it (ISO-8601, no offset)."""
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _require_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not is_safe_id(value):
        raise RegistryError(
            MALFORMED_PARAMETER,
            f"invalid {what} {value!r}: use 1-128 letters, digits, '_', '.' or '-' (no '..', no '/')",
        )
    return value


def _storage_problems(
    files: Sequence[FileRecord], stored: Mapping[str, StoredObject | None], ignore_undefined_md5: bool
) -> dict[SongErrorCode, list[str]]:
    """What keeps each file from being published, grouped by Song's error code."""
    problems: dict[SongErrorCode, list[str]] = {}
    for f in files:
        obj = stored.get(f.objectId)
        label = f"{f.fileName} (objectId {f.objectId})"
        if obj is None:
            problems.setdefault(MISSING_STORAGE_OBJECTS, []).append(f"{label} is not uploaded")
        elif obj.size != f.fileSize:
            problems.setdefault(MISMATCHING_STORAGE_OBJECT_SIZES, []).append(
                f"{label} is registered with {f.fileSize} bytes but stored with {obj.size}"
            )
        elif obj.md5 is None:
            if not ignore_undefined_md5:
                problems.setdefault(MISMATCHING_STORAGE_OBJECT_CHECKSUMS, []).append(
                    f"{label} has no MD5 in storage (pass ignoreUndefinedMd5=true to accept it)"
                )
        elif obj.md5.lower() != f.fileMd5sum.lower():
            problems.setdefault(MISMATCHING_STORAGE_OBJECT_CHECKSUMS, []).append(
                f"{label} is registered with MD5 {f.fileMd5sum} but stored with {obj.md5}"
            )
    return problems


def _publish_refusal(analysis_id: str, problems: dict[SongErrorCode, list[str]]) -> RegistryError:
    """One error naming every file that blocks publishing; its id is Song's for the first check failed."""
    order = (MISSING_STORAGE_OBJECTS, MISMATCHING_STORAGE_OBJECT_SIZES, MISMATCHING_STORAGE_OBJECT_CHECKSUMS)
    code = next(c for c in order if c in problems)
    details = "; ".join(p for c in order for p in problems.get(c, []))
    return RegistryError(
        code,
        f"The analysisId '{analysis_id}' cannot be published until every file is uploaded "
        f"to Score with its registered size and MD5: {details}. Upload the missing or corrected files "
        "(score-client upload) and publish again.",
    )


# --------------------------------------------------------------------------------------------------
# The registry


class Registry:
    """Song's metadata model in SQLite or PostgreSQL; implements ``MetadataSource`` for Score's own checks."""

    def __init__(
        self, location: Path | str, catalog: ObjectCatalog | None = None, pool: PoolLimits | None = None
    ) -> None:
        """``location``: the SQLite file's path, or a ``postgresql://user:pass@host:port/db`` URL (``pool``: its
        connection limits)."""
        self.catalog = catalog  # set later by the app: the upload service is built after the registry
        self._db: Dialect = open_dialect(location, pool)
        try:
            self.migrations_applied = migrations.migrate(self._db)
            self._db.keep_files_open()
        except BaseException:
            self._db.close()
            raise

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._db.name

    def describe(self) -> str:
        return self._db.describe()

    def schema_version(self) -> int | None:
        """The schema's version (``migrations``)."""
        with self._read() as db:
            return migrations.current_version(self._db, db)

    def close(self) -> None:
        self._db.close()

    # ---- transactions ----------------------------------------------------------------------------

    def _read(self) -> AbstractContextManager[Db]:
        """A read transaction: one consistent snapshot for all the queries inside it."""
        return self._db.transaction(write=False)

    def _write(self) -> AbstractContextManager[Db]:
        """A write transaction taken up front, so concurrent writers queue instead of deadlocking."""
        return self._db.transaction(write=True)

    # ---- MetadataSource ---------------------------------------------------------------------------

    @contextmanager
    def _source_errors(self) -> Iterator[None]:
        """Score's guards expect MetadataUnavailable (-> 503) when the metadata cannot be read."""
        try:
            yield
        except self._db.errors as exc:
            raise MetadataUnavailable(f"the metadata registry database cannot be read ({exc})") from exc

    def check(self) -> None:
        """Raise if the registry cannot be read (the health endpoint's probe; on PostgreSQL within a second)."""
        with self._source_errors():
            self._db.probe()

    def entity(self, object_id: str) -> Entity | None:
        """The file entity for an object id (with registered size and MD5), or None."""
        with self._source_errors():
            row = self._db.fetch_one("SELECT * FROM file WHERE object_id = ?", (object_id,))
        return None if row is None else _file_from_row(row).to_entity()

    def sibling_files(self, entity: Entity) -> list[Entity]:
        with self._source_errors(), self._read() as db:
            records = _files_of(db, entity.gnosId)
        return [record.to_entity() for record in records if record.studyId == entity.projectCode]

    def analysis_entities(self, analysis_id: str) -> list[Entity]:
        with self._source_errors(), self._read() as db:
            records = _files_of(db, analysis_id)
        return [record.to_entity() for record in records]

    def analysis_state(self, study_id: str, analysis_id: str) -> str | None:
        """The analysis state, or None when the analysis is unknown or belongs to another study."""
        with self._source_errors():
            row = self._db.fetch_one(
                "SELECT state FROM analysis WHERE analysis_id = ? AND study_id = ?", (analysis_id, study_id)
            )
        return None if row is None else str(row["state"])

    # ---- object specifications (migration 2; UploadService._show_final) ---------------------------

    def recorded_spec(self, object_id: str) -> str | None:
        """The ``.meta`` document recorded when the object was finished, or None when none is recorded."""
        with self._source_errors():
            row = self._db.fetch_one("SELECT document FROM object_spec WHERE object_id = ?", (object_id,))
        return None if row is None or row["document"] is None else str(row["document"])

    def spec_generation(self, object_id: str) -> int:
        """How many times the object's ``.meta`` was hidden or replaced (0: never)."""
        with self._source_errors():
            row = self._db.fetch_one("SELECT generation FROM object_spec WHERE object_id = ?", (object_id,))
        return 0 if row is None else int(row["generation"])

    def record_spec(self, object_id: str, document: str, generation: int) -> bool:
        """Record the ``.meta`` just written, unless it was hidden again since ``generation`` was read (then a
        later finalize's ``.meta`` may be the store's, and it records its own). True when recorded."""
        with self._source_errors(), self._write() as db:
            cursor = db.execute(
                "INSERT INTO object_spec (object_id, document, generation) VALUES (?, ?, ?) "
                "ON CONFLICT (object_id) DO UPDATE SET document = excluded.document "
                "WHERE object_spec.generation = excluded.generation",
                (object_id, document, generation),
            )
            return bool(cursor.rowcount)

    def forget_spec(self, object_id: str) -> None:
        """Drop the record, and count a generation, before the object's ``.meta`` is hidden or replaced."""
        with self._source_errors(), self._write() as db:
            db.execute(
                "INSERT INTO object_spec (object_id, document, generation) VALUES (?, NULL, 1) "
                "ON CONFLICT (object_id) DO UPDATE SET document = NULL, generation = object_spec.generation + 1",
                (object_id,),
            )

    # ---- studies ----------------------------------------------------------------------------------

    def create_study(self, study_id: str, study: Mapping[str, Any]) -> dict[str, Any]:
        """Create a study from Song's Study JSON; the body's studyId, if given, must match the path."""
        _require_id(study_id, "studyId")
        if study_id == "all":
            raise RegistryError(
                MALFORMED_PARAMETER, "'all' is reserved (GET /studies/all lists studies); choose another studyId"
            )
        body_id = study.get("studyId")
        if body_id is not None and body_id != study_id:
            raise RegistryError(
                STUDY_ID_MISMATCH,
                f"The studyId in the URL path '{study_id}' should match the studyId '{body_id}' in the body",
            )
        fields = {k: study.get(k) for k in ("name", "organization", "description")}
        for key, value in fields.items():
            if value is not None and not isinstance(value, str):
                raise RegistryError(SCHEMA_VIOLATION, f"the study field '{key}' must be a string")
        info = study.get("info")
        if info is not None and not isinstance(info, Mapping):
            raise RegistryError(SCHEMA_VIOLATION, "the study field 'info' must be a JSON object")
        with self._write() as db:
            if _study_exists(db, study_id):
                raise RegistryError(
                    STUDY_ALREADY_EXISTS, f"The studyId '{study_id}' already exists; it was not changed"
                )
            db.execute(
                "INSERT INTO study (study_id, name, organization, description, info, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (study_id, fields["name"], fields["organization"], fields["description"], _dumps(info), _now()),
            )
        return self.get_study(study_id)

    def get_study(self, study_id: str) -> dict[str, Any]:
        """Song's Study JSON; like Song, empty fields are left out."""
        _require_id(study_id, "studyId")
        with self._read() as db:
            row = db.execute("SELECT * FROM study WHERE study_id = ?", (study_id,)).fetchone()
        if row is None:
            raise _no_study(study_id)
        study = {
            "studyId": row["study_id"],
            "name": row["name"],
            "organization": row["organization"],
            "description": row["description"],
            "info": _loads(row["info"]),
        }
        return {k: v for k, v in study.items() if v not in (None, "", {})}

    def study_ids(self) -> list[str]:
        with self._read() as db:
            return [r["study_id"] for r in db.execute("SELECT study_id FROM study ORDER BY study_id")]

    # ---- analyses ---------------------------------------------------------------------------------

    def submit(self, study_id: str, payload: Any) -> str:
        """Register a Song payload as a new UNPUBLISHED analysis; returns the new analysis id."""
        _require_id(study_id, "studyId")
        with self._read() as db:
            if not _study_exists(db, study_id):
                raise _no_study(study_id)
        submission = parse_submission(study_id, payload)
        analysis_type = submission.analysis_type
        with self._read() as db:  # validated outside the write lock: a payload may be megabytes
            if analysis_types.is_enforcing(db):
                analysis_type = analysis_types.resolve_for_submit(db, analysis_type, payload)
        analysis_id = str(uuid.uuid4())
        now = _now()
        with self._write() as db:
            if not _study_exists(db, study_id):
                raise _no_study(study_id)
            db.execute(
                "INSERT INTO analysis (analysis_id, study_id, state, analysis_type, data, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    analysis_id,
                    study_id,
                    UNPUBLISHED,
                    _dumps(analysis_type),
                    _dumps(submission.data),
                    now,
                    now,
                ),
            )
            db.executemany(
                "INSERT INTO file (object_id, analysis_id, study_id, position, file_name, file_size, "
                "file_md5sum, file_type, file_access, data_type, info) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        object_id_for(analysis_id, f.file_name),
                        analysis_id,
                        study_id,
                        i,
                        f.file_name,
                        f.file_size,
                        f.file_md5sum,
                        f.file_type,
                        f.file_access,
                        f.data_type,
                        _dumps(f.info),
                    )
                    for i, f in enumerate(submission.files)
                ],
            )
        return analysis_id

    def get_analysis(self, study_id: str, analysis_id: str) -> dict[str, Any]:
        """Song's analysis JSON: registry fields, files, state history and every other payload field."""
        with self._read() as db:
            row = _related_analysis(db, study_id, analysis_id)
            return _analysis_json(db, row)

    def analysis_files(self, study_id: str, analysis_id: str) -> list[FileRecord]:
        with self._read() as db:
            _related_analysis(db, study_id, analysis_id)
            return _files_of(db, analysis_id)

    def list_analyses(self, study_id: str, states: Iterable[str] = (PUBLISHED,)) -> list[dict[str, Any]]:
        """All analyses of a study in the given states (Song's default: PUBLISHED only)."""
        wanted = _check_states(states)
        _require_id(study_id, "studyId")
        with self._read() as db:
            if not _study_exists(db, study_id):
                raise _no_study(study_id)
            marks = ",".join("?" * len(wanted))
            rows = db.execute(
                # Only '?' placeholders are interpolated; the values are bound.
                f"SELECT * FROM analysis WHERE study_id = ? AND state IN ({marks}) "  # noqa: S608
                "ORDER BY created_at, analysis_id",
                (study_id, *wanted),
            ).fetchall()
            return [_analysis_json(db, row) for row in rows]

    def list_analyses_page(self, study_id: str, states: Iterable[str], limit: int, offset: int) -> dict[str, Any]:
        """GET .../analysis/paginated: Song's ``GetAnalysisResponse``, analyses ordered by id."""
        wanted = _check_states(states)
        if limit < 0 or offset < 0:
            raise RegistryError(MALFORMED_PARAMETER, "limit and offset must not be negative")
        _require_id(study_id, "studyId")
        with self._read() as db:
            if not _study_exists(db, study_id):
                raise _no_study(study_id)
            marks = ",".join("?" * len(wanted))
            where = f"study_id = ? AND state IN ({marks})"
            total = db.execute(f"SELECT COUNT(*) FROM analysis WHERE {where}", (study_id, *wanted)).fetchone()[0]  # noqa: S608
            rows = db.execute(
                f"SELECT * FROM analysis WHERE {where} ORDER BY analysis_id LIMIT ? OFFSET ?",  # noqa: S608
                (study_id, *wanted, limit, offset),
            ).fetchall()
            analyses = [_analysis_json(db, row) for row in rows]
        return {"analyses": analyses, "totalAnalyses": total, "currentTotalAnalyses": len(analyses)}

    def id_search(self, study_id: str, search: registry_views.IdSearch) -> list[dict[str, Any]]:
        """GET .../analysis/search/id: every analysis of the study (any state) whose ids match."""
        _require_id(study_id, "studyId")
        with self._read() as db:
            if not _study_exists(db, study_id):
                raise _no_study(study_id)
            rows = db.execute(
                "SELECT * FROM analysis WHERE study_id = ? ORDER BY created_at, analysis_id", (study_id,)
            ).fetchall()
            analyses = [_analysis_json(db, row) for row in rows]
        return [a for a in analyses if search.matches(a)]

    def study_with_donors(self, study_id: str) -> dict[str, Any]:
        """GET /studies/{studyId}/all: Song's ``StudyWithDonors``."""
        study = self.get_study(study_id)
        return registry_views.study_tree(study, self.list_analyses(study_id, ANALYSIS_STATES))

    def export_study(self, study_id: str) -> list[dict[str, Any]]:
        """GET /export/studies/{studyId}: one ``ExportedPayload`` with every analysis, whatever its state."""
        analyses = self.list_analyses(study_id, ANALYSIS_STATES)
        return [{"studyId": study_id, "payloads": [self._exported(a) for a in analyses]}]

    def export_analyses(self, analysis_ids: Sequence[str]) -> list[dict[str, Any]]:
        """GET /export/analysis/{ids}: ``ExportedPayload`` per study, in the order studies first appear."""
        grouped: dict[str, list[dict[str, Any]]] = {}
        with self._read() as db:
            for analysis_id in analysis_ids:
                _require_id(analysis_id, "analysisId")
                row = db.execute("SELECT * FROM analysis WHERE analysis_id = ?", (analysis_id,)).fetchone()
                if row is None:
                    raise RegistryError(ANALYSIS_ID_NOT_FOUND, f"The analysisId '{analysis_id}' was not found")
                grouped.setdefault(row["study_id"], []).append(self._exported(_analysis_json(db, row)))
        return [{"studyId": study, "payloads": payloads} for study, payloads in grouped.items()]

    @staticmethod
    def _exported(analysis: Mapping[str, Any]) -> dict[str, Any]:
        return registry_views.export_payload(analysis, RESERVED_ANALYSIS_FIELDS)

    # ---- updates ----------------------------------------------------------------------------------

    def update_analysis(self, study_id: str, analysis_id: str, request: Any) -> None:
        """PUT .../analysis/{id}: replace the analysis' dynamic data (``AnalysisServiceImpl.updateAnalysis``).

        Samples and files are not part of the request (Song's update schema forbids them) and are kept.
        """
        with self._write() as db:
            row = _related_analysis(db, study_id, analysis_id)
            if not isinstance(request, Mapping) or request.get("analysisType") is None:
                raise RegistryError(
                    MALFORMED_PARAMETER, "The updateAnalysisRequest does not contain the field 'analysisType'"
                )
            type_id = self._validated_update(db, request)
            self._store_update(db, row, type_id, request)

    def patch_analysis(self, study_id: str, analysis_id: str, patch: Any) -> None:
        """PATCH .../analysis/{id}: RFC 7386 merge into the dynamic data, validated against the analysis'
        own type (``patchUpdateAnalysis``)."""
        with self._write() as db:
            row = _related_analysis(db, study_id, analysis_id)
            if not isinstance(patch, Mapping):
                raise RegistryError(PAYLOAD_PARSING, "Unable to read the input payload")
            data = {k: v for k, v in (_loads(row["data"]) or {}).items() if k != "samples"}
            current_type = _loads(row["analysis_type"])
            merged = registry_views.merge_patch({**data, "analysisType": current_type}, patch)
            if not isinstance(merged, Mapping):
                raise RegistryError(PAYLOAD_PARSING, "Unable to read the input payload")
            self._validated_update(db, {**merged, "analysisType": current_type})
            self._store_update(db, row, current_type, merged)

    @staticmethod
    def _validated_update(db: Db, request: Mapping[str, Any]) -> dict[str, Any]:
        if analysis_types.is_enforcing(db):
            return analysis_types.validate_update(db, request)
        return analysis_types.validate_update_open(request)

    @staticmethod
    def _store_update(db: Db, row: Any, type_id: Mapping[str, Any], request: Mapping[str, Any]) -> None:
        old = _loads(row["data"]) or {}
        data = {k: v for k, v in request.items() if k not in RESERVED_ANALYSIS_FIELDS}
        if "samples" in old:
            data["samples"] = old["samples"]
        db.execute(
            "UPDATE analysis SET analysis_type = ?, data = ?, updated_at = ? WHERE analysis_id = ?",
            (_dumps(dict(type_id)), _dumps(data), _now(), row["analysis_id"]),
        )

    def read_file(self, study_id: str, object_id: str) -> FileRecord:
        """GET /studies/{studyId}/files/{objectId} (``FileService.securedRead``)."""
        with self._read() as db:
            return _related_file(db, study_id, object_id)

    def update_file(self, study_id: str, object_id: str, request: Any) -> dict[str, Any]:
        """PUT /studies/{studyId}/files/{objectId}: Song's ``FileUpdateResponse``
        (``FileModificationService.securedFileWithAnalysisUpdate``).

        Size or MD5 (content) may change only while the analysis is UNPUBLISHED; access, data type and
        info (metadata) may change in any state but SUPPRESSED.
        """
        problems = registry_views.file_update_problems(request)
        if problems:
            raise RegistryError(
                INVALID_FILE_UPDATE_REQUEST,
                f"The file update request for objectId '{object_id}' failed with the following errors: "
                + ",".join(problems),
            )
        with self._write() as db:
            original = _related_file(db, study_id, object_id)
            state = db.execute("SELECT state FROM analysis WHERE analysis_id = ?", (original.analysisId,)).fetchone()[
                "state"
            ]
            where = f"The file with objectId '{object_id}' and analysisId '{original.analysisId}' cannot be updated"
            if state == SUPPRESSED:
                raise RegistryError(ILLEGAL_FILE_UPDATE_REQUEST, f"{where} since its analysisState is '{state}'")
            wire = original.to_wire()
            update_type = registry_views.file_update_type(wire, request)
            if update_type == registry_views.CONTENT_UPDATE and state != UNPUBLISHED:
                raise RegistryError(
                    ILLEGAL_FILE_UPDATE_REQUEST,
                    f"{where} since its analysisState is '{state}' and '{UNPUBLISHED}' is required",
                )
            if update_type != registry_views.NO_UPDATE:
                merged = {k: request[k] if request.get(k) is not None else wire[k] for k in _FILE_UPDATE_COLUMNS}
                db.execute(
                    "UPDATE file SET file_size = ?, file_md5sum = ?, file_access = ?, data_type = ?, info = ? "
                    "WHERE object_id = ?",
                    (
                        merged["fileSize"],
                        merged["fileMd5sum"],
                        merged["fileAccess"],
                        merged["dataType"],
                        _dumps(merged["info"]),
                        object_id,
                    ),
                )
        verb = "No update for" if update_type == registry_views.NO_UPDATE else "Updated"
        original_file = {k: v for k, v in wire.items() if k != "info"}
        return {
            "fileUpdateType": update_type,
            "originalAnalysisState": state,
            "unpublishedAnalysis": False,
            "message": f"{verb} file with objectId '{object_id}' and analysisId '{original.analysisId}'",
            "originalFile": {**original_file, "info": wire["info"]},
        }

    def delete_files(self, study_id: str, object_ids: Sequence[str]) -> str:
        """DELETE /studies/{studyId}/files/{ids}: Song's ``FileService.securedDelete``, answering ``OK``.

        Unlike Song, a file of a PUBLISHED analysis is not deleted (Score would keep serving an analysis
        whose file list changed under its readers); unpublish it first.
        """
        with self._write() as db:
            for object_id in object_ids:
                record = _related_file(db, study_id, object_id)
                state = db.execute("SELECT state FROM analysis WHERE analysis_id = ?", (record.analysisId,)).fetchone()[
                    "state"
                ]
                if state == PUBLISHED:
                    raise RegistryError(
                        ILLEGAL_FILE_UPDATE_REQUEST,
                        f"The file with objectId '{object_id}' cannot be deleted while its analysis "
                        f"'{record.analysisId}' is PUBLISHED; unpublish the analysis first",
                    )
                db.execute("DELETE FROM file WHERE object_id = ?", (object_id,))
        return "OK"

    # ---- analysis types ---------------------------------------------------------------------------

    def register_analysis_type(self, name: Any, schema: Any, options: Any) -> dict[str, Any]:
        with self._write() as db:
            return analysis_types.register(db, name, schema, options)

    def get_analysis_type(self, name: str, version: int | None, unrendered_only: bool) -> dict[str, Any]:
        with self._read() as db:
            return analysis_types.get(db, name, version, unrendered_only)

    def list_analysis_types(self, **query: Any) -> dict[str, Any]:
        with self._read() as db:
            return analysis_types.list_page(db, **query)

    # ---- state changes ----------------------------------------------------------------------------

    def publish(self, study_id: str, analysis_id: str, ignore_undefined_md5: bool = False) -> None:
        """Mark PUBLISHED once every file is stored in Score with the registered size and MD5."""
        with self._read() as db:
            row = _related_analysis(db, study_id, analysis_id)
            files = _files_of(db, analysis_id)
        _refuse_if_suppressed(analysis_id, row["state"], PUBLISHED)
        # Storage is asked outside any transaction: it may be slow and must not hold the write lock.
        problems = _storage_problems(files, self._stored_objects(files), ignore_undefined_md5)
        if problems:
            raise _publish_refusal(analysis_id, problems)
        self._change_state(study_id, analysis_id, PUBLISHED)

    def unpublish(self, study_id: str, analysis_id: str) -> None:
        self._change_state(study_id, analysis_id, UNPUBLISHED)

    def suppress(self, study_id: str, analysis_id: str) -> None:
        self._change_state(study_id, analysis_id, SUPPRESSED)

    def _stored_objects(self, files: Sequence[FileRecord]) -> dict[str, StoredObject | None]:
        catalog = self.catalog
        if catalog is None:
            raise RegistryError(
                SERVICE_UNAVAILABLE,
                "the registry cannot reach Score's object catalog, so "
                "it cannot check the files before publishing; retry once the server has "
                "finished starting",
            )
        try:
            return {f.objectId: catalog.stored_object(f.objectId) for f in files}
        except Exception as exc:
            raise RegistryError(
                SERVICE_UNAVAILABLE,
                f"could not check the files in storage ({exc}); retry when the object store is reachable",
            ) from exc

    def _change_state(self, study_id: str, analysis_id: str, target: str) -> None:
        """Move an analysis to ``target`` in one transaction, recording the change as Song does."""
        now = _now()
        with self._write() as db:
            row = _related_analysis(db, study_id, analysis_id)
            current = row["state"]
            if target != SUPPRESSED:
                _refuse_if_suppressed(analysis_id, current, target)
            if current == target:
                return
            if target == PUBLISHED:
                db.execute(
                    "UPDATE analysis SET state = ?, updated_at = ?, published_at = ?, "
                    "first_published_at = COALESCE(first_published_at, ?) WHERE analysis_id = ?",
                    (target, now, now, now, analysis_id),
                )
            else:
                db.execute(
                    "UPDATE analysis SET state = ?, updated_at = ? WHERE analysis_id = ?", (target, now, analysis_id)
                )
            db.execute(
                "INSERT INTO state_change (analysis_id, initial_state, updated_state, updated_at) VALUES (?, ?, ?, ?)",
                (analysis_id, current, target, now),
            )

    # ---- legacy entities --------------------------------------------------------------------------

    def find_entities(self, filters: Mapping[str, str], page: int, size: int) -> EntityPage:
        """A page of legacy entities matching every given filter exactly, ordered by id like Song."""
        unknown = sorted(set(filters) - set(ENTITY_FILTERS))
        if unknown:
            raise RegistryError(
                ILLEGAL_QUERY_PARAMETER,
                f"unknown entity filter(s) {', '.join(unknown)}; filter by {', '.join(ENTITY_FILTERS)}",
            )
        # Column names come from the fixed ENTITY_FILTERS map, never from the caller; values are bound.
        where = " AND ".join(f"{ENTITY_FILTERS[k]} = ?" for k in filters) or "1 = 1"
        values = list(filters.values())
        with self._read() as db:
            total = db.execute(f"SELECT COUNT(*) FROM file WHERE {where}", values).fetchone()[0]  # noqa: S608
            rows = db.execute(
                f"SELECT * FROM file WHERE {where} ORDER BY object_id LIMIT ? OFFSET ?",  # noqa: S608
                [*values, size, page * size],
            ).fetchall()
        return EntityPage([_file_from_row(r).to_entity() for r in rows], page=page, size=size, total=total)


# --------------------------------------------------------------------------------------------------
# Row helpers (run inside a transaction)


def _study_exists(db: Db, study_id: str) -> bool:
    return db.execute("SELECT 1 FROM study WHERE study_id = ?", (study_id,)).fetchone() is not None


def _no_study(study_id: str) -> RegistryError:
    return RegistryError(
        STUDY_ID_DOES_NOT_EXIST,
        f"The studyId '{study_id}' does not exist; create it with POST /studies/{study_id}/ first",
    )


def _related_analysis(db: Db, study_id: str, analysis_id: str) -> Any:
    """The analysis row, checked the way Song checks it: study exists, analysis exists, they belong."""
    _require_id(study_id, "studyId")
    _require_id(analysis_id, "analysisId")
    row = db.execute("SELECT * FROM analysis WHERE analysis_id = ?", (analysis_id,)).fetchone()
    if row is not None and row["study_id"] == study_id:
        return row
    if not _study_exists(db, study_id):
        raise _no_study(study_id)
    if row is None:
        raise RegistryError(
            ANALYSIS_ID_NOT_FOUND, f"The analysisId '{analysis_id}' was not found in study '{study_id}'"
        )
    raise RegistryError(
        ENTITY_NOT_RELATED_TO_STUDY,
        f"The analysisId '{analysis_id}' is not related to the input studyId '{study_id}'. "
        f"It is actually related to studyId '{row['study_id']}'",
    )


def _check_states(states: Iterable[str]) -> list[str]:
    """``resolveSelectedAnalysisStates``: Song's default (PUBLISHED) when empty, else only real states."""
    wanted = sorted(set(states)) or [PUBLISHED]
    unknown = [s for s in wanted if s not in ANALYSIS_STATES]
    if unknown:
        raise RegistryError(
            MALFORMED_PARAMETER,
            "The following are not AnalysisStates: '" + "', '".join(unknown) + "'; use " + ", ".join(ANALYSIS_STATES),
        )
    return wanted


_FILE_UPDATE_COLUMNS = ("fileSize", "fileMd5sum", "fileAccess", "dataType", "info")


def _related_file(db: Db, study_id: str, object_id: str) -> FileRecord:
    """``FileService.checkFileAndStudyRelated`` + ``unsecuredRead``: study, then file, then that they belong."""
    _require_id(study_id, "studyId")
    _require_id(object_id, "objectId")
    row = db.execute("SELECT * FROM file WHERE object_id = ?", (object_id,)).fetchone()
    if row is not None and row["study_id"] == study_id:
        return _file_from_row(row)
    if not _study_exists(db, study_id):
        raise _no_study(study_id)
    if row is None:
        raise RegistryError(FILE_NOT_FOUND, f"The File with objectId '{object_id}' does not exist")
    raise RegistryError(
        ENTITY_NOT_RELATED_TO_STUDY,
        f"The objectId '{object_id}' is not related to the input studyId '{study_id}'. "
        f"It is actually related to studyId '{row['study_id']}'",
    )


def _refuse_if_suppressed(analysis_id: str, current: str, target: str) -> None:
    if current == SUPPRESSED and target != SUPPRESSED:
        raise RegistryError(
            SUPPRESSED_STATE_TRANSITION,
            f"Cannot change the analysis state for analysisId '{analysis_id}' from '{SUPPRESSED}' to "
            f"'{target}': a suppressed analysis is final; submit a new analysis instead",
        )


def _file_from_row(row: Any) -> FileRecord:
    return FileRecord(
        objectId=row["object_id"],
        studyId=row["study_id"],
        analysisId=row["analysis_id"],
        fileName=row["file_name"],
        fileSize=row["file_size"],
        fileType=row["file_type"],
        fileMd5sum=row["file_md5sum"],
        fileAccess=row["file_access"],
        dataType=row["data_type"],
        info=_loads(row["info"]),
    )


def _files_of(db: Db, analysis_id: str) -> list[FileRecord]:
    rows = db.execute("SELECT * FROM file WHERE analysis_id = ? ORDER BY position", (analysis_id,))
    return [_file_from_row(r) for r in rows]


def _state_history(db: Db, analysis_id: str) -> list[dict[str, str]]:
    rows = db.execute(
        "SELECT initial_state, updated_state, updated_at FROM state_change WHERE analysis_id = ? ORDER BY id",
        (analysis_id,),
    )
    return [
        {"initialState": r["initial_state"], "updatedState": r["updated_state"], "updatedAt": r["updated_at"]}
        for r in rows
    ]


def _analysis_json(db: Db, row: Any) -> dict[str, Any]:
    """Registry-owned fields first, then the other payload fields as submitted, then the files."""
    analysis_id = row["analysis_id"]
    core = {
        "analysisId": analysis_id,
        "studyId": row["study_id"],
        "analysisState": row["state"],
        "analysisType": _loads(row["analysis_type"]),
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
        "firstPublishedAt": row["first_published_at"],
        "publishedAt": row["published_at"],
        "analysisStateHistory": _state_history(db, analysis_id),
    }
    data = _loads(row["data"]) or {}
    return {**core, **data, "files": [f.to_wire() for f in _files_of(db, analysis_id)]}
