"""Song's error catalogue (song-core ``ServerErrors``) as the registry uses it.

Clients branch on ``errorId`` (the Python SDK's ``StudyClient.has`` compares it with
``study.id.does.not.exist``), so every refusal carries an id from Song's catalogue with the status Song
pairs with it; the few deliberate departures are marked where they are defined.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SongErrorCode:
    """One entry of Song's error catalogue: the enum name and the HTTP status Song pairs with it."""

    name: str
    status: int

    @property
    def error_id(self) -> str:
        """Song's wire id: the enum name lower-cased with ``_`` replaced by ``.``."""
        return self.name.lower().replace("_", ".")


STUDY_ID_DOES_NOT_EXIST = SongErrorCode("STUDY_ID_DOES_NOT_EXIST", 404)
STUDY_ALREADY_EXISTS = SongErrorCode("STUDY_ALREADY_EXISTS", 409)
STUDY_ID_MISSING = SongErrorCode("STUDY_ID_MISSING", 400)
STUDY_ID_MISMATCH = SongErrorCode("STUDY_ID_MISMATCH", 409)
ANALYSIS_ID_NOT_FOUND = SongErrorCode("ANALYSIS_ID_NOT_FOUND", 404)
ENTITY_NOT_RELATED_TO_STUDY = SongErrorCode("ENTITY_NOT_RELATED_TO_STUDY", 400)
LEGACY_ENTITY_NOT_FOUND = SongErrorCode("LEGACY_ENTITY_NOT_FOUND", 404)
MALFORMED_PARAMETER = SongErrorCode("MALFORMED_PARAMETER", 400)
SCHEMA_VIOLATION = SongErrorCode("SCHEMA_VIOLATION", 400)
PAYLOAD_PARSING = SongErrorCode("PAYLOAD_PARSING", 422)
ILLEGAL_QUERY_PARAMETER = SongErrorCode("ILLEGAL_QUERY_PARAMETER", 400)
ILLEGAL_FILTER_PARAMETER = SongErrorCode("ILLEGAL_FILTER_PARAMETER", 400)
SUPPRESSED_STATE_TRANSITION = SongErrorCode("SUPPRESSED_STATE_TRANSITION", 400)
MISSING_STORAGE_OBJECTS = SongErrorCode("MISSING_STORAGE_OBJECTS", 409)
MISMATCHING_STORAGE_OBJECT_SIZES = SongErrorCode("MISMATCHING_STORAGE_OBJECT_SIZES", 409)
MISMATCHING_STORAGE_OBJECT_CHECKSUMS = SongErrorCode("MISMATCHING_STORAGE_OBJECT_CHECKSUMS", 409)
SERVICE_UNAVAILABLE = SongErrorCode("SERVICE_UNAVAILABLE", 503)
# Song answers these with 500; a payload carrying a wrong id is the client's error, so 400 here.
DONOR_ID_IS_CORRUPTED = SongErrorCode("DONOR_ID_IS_CORRUPTED", 400)
SPECIMEN_ID_IS_CORRUPTED = SongErrorCode("SPECIMEN_ID_IS_CORRUPTED", 400)
SAMPLE_ID_IS_CORRUPTED = SongErrorCode("SAMPLE_ID_IS_CORRUPTED", 400)
ANALYSIS_TYPE_NOT_FOUND = SongErrorCode("ANALYSIS_TYPE_NOT_FOUND", 404)
ILLEGAL_ANALYSIS_TYPE_NAME = SongErrorCode("ILLEGAL_ANALYSIS_TYPE_NAME", 400)
MALFORMED_JSON_SCHEMA = SongErrorCode("MALFORMED_JSON_SCHEMA", 400)
FILE_NOT_FOUND = SongErrorCode("FILE_NOT_FOUND", 404)
INVALID_FILE_UPDATE_REQUEST = SongErrorCode("INVALID_FILE_UPDATE_REQUEST", 400)
ILLEGAL_FILE_UPDATE_REQUEST = SongErrorCode("ILLEGAL_FILE_UPDATE_REQUEST", 400)
UNAUTHORIZED_TOKEN = SongErrorCode("UNAUTHORIZED_TOKEN", 401)
FORBIDDEN_TOKEN = SongErrorCode("FORBIDDEN_TOKEN", 403)
# Song has no id for an unknown path (Spring answers its own error page); ID_NOT_FOUND is its generic 404.
ID_NOT_FOUND = SongErrorCode("ID_NOT_FOUND", 404)
UNKNOWN_ERROR = SongErrorCode("UNKNOWN_ERROR", 500)
# Song answers a method a path does not take with an empty 405; this id is the nearest in its catalogue.
NOT_IMPLEMENTED_YET = SongErrorCode("NOT_IMPLEMENTED_YET", 405)
INSUFFICIENT_STORAGE = SongErrorCode("INSUFFICIENT_STORAGE", 507)  # not Song's: its database is elsewhere


class RegistryError(Exception):
    """A request the registry refuses; carries Song's error code so the API can answer in Song's shape."""

    def __init__(self, code: SongErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
