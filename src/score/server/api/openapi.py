"""The OpenAPI document, made true and complete: what each operation accepts and every answer it gives.

FastAPI documents what it validates itself; the rest is declared here and used by the routers:

* error answers per operation, in each API's own shape: Score's ``ErrorBody`` (``score_errors``), Song's
  ``SongError`` (``song_errors``) and htsget's error object with its media type (``htsget_errors``);
* the JSON bodies and query parameters that routers parse themselves, to give Song's and htsget's error
  shapes (``json_body``, ``query_parameter``), so a client generator or a fuzzer gets past them;
* ``install_openapi`` post-processes the generated document: FastAPI's 422 validation answer becomes
  the 400 this server gives, and path ids carry the pattern the server enforces.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

from score.core.ids import SAFE_ID_PATTERN
from score.core.models import ErrorBody

HTSGET_MEDIA_TYPE = "application/vnd.ga4gh.htsget.v1.0.0+json; charset=utf-8"
_REASONS = {
    400: "Invalid request: the message says which parameter and why",
    401: "No token where one is needed, or a token that was refused (expired, tampered, unknown issuer)",
    403: "The token lacks the scope; the message names the scope needed",
    404: "Not found: the message says what (object, upload, study, analysis)",
    409: "Conflict with the current state (an existing object, a stored part, a study that exists)",
    413: "The request body is larger than this operation accepts",
    416: "The range starts past the end of the object",
    422: "Song's PAYLOAD_PARSING: the body is not JSON this registry can store",
    503: "A service this server needs (store, registry, identity provider) is briefly unavailable; retry",
    507: "The store or the registry's disk is full",
}
_ID_PARAMETERS = ("object_id", "studyId", "analysisId")


class SongError(BaseModel):
    """Song's error body (song-core ``SongError``)."""

    errorId: str = Field(description="Song's error id, e.g. study.id.does.not.exist")
    httpStatusCode: int
    httpStatusName: str
    requestUrl: str
    datetime: str
    timestamp: int
    message: str
    debugMessage: str
    stackTrace: list[str]


class HtsgetErrorDetail(BaseModel):
    error: str = Field(description="htsget's error name, e.g. InvalidInput, NotFound, PermissionDenied")
    message: str


class HtsgetError(BaseModel):
    htsget: HtsgetErrorDetail


class SongStudy(BaseModel):
    """Song's Study JSON (POST /studies/{studyId}/): every field optional; studyId, if given, = the path's."""

    model_config = ConfigDict(extra="allow")
    studyId: str | None = Field(None, pattern=SAFE_ID_PATTERN, max_length=128)
    name: str | None = None
    organization: str | None = None
    description: str | None = None
    info: dict[str, Any] | None = None


NON_BLANK = r"\S"  # at least one character that is not white space
FILE_NAME = r"^(?!.*\.\.)[^/\\\x00-\x1f\x7f\s](?:[^/\\\x00-\x1f\x7f]*[^/\\\x00-\x1f\x7f\s])?$"


class SongAnalysisType(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=NON_BLANK)
    version: int | None = None


class SongFile(BaseModel):
    """One file of a Song payload."""

    model_config = ConfigDict(extra="allow")
    fileName: str = Field(
        json_schema_extra={"pattern": FILE_NAME},  # look-ahead: documented only (these models never validate)
        description="A file name, not a path: no '/', '\\', '..', control characters, or white space at its ends",
    )
    fileSize: int = Field(ge=0, le=2**63 - 1)
    fileMd5sum: str = Field(pattern=r"^[0-9a-fA-F]{32}$")
    fileType: str = Field(pattern=NON_BLANK)
    fileAccess: Literal["open", "controlled"]
    dataType: str = Field(pattern=NON_BLANK)
    info: dict[str, Any] | None = None


class SongPayload(BaseModel):
    """Song's analysis payload (POST /submit/{studyId}): other fields are kept as submitted (at most 64 levels
    of nesting, finite numbers, Unicode text)."""

    model_config = ConfigDict(extra="allow")
    studyId: str = Field(pattern=SAFE_ID_PATTERN, max_length=128)
    analysisType: SongAnalysisType | Annotated[str, Field(pattern=NON_BLANK)] = Field(
        description="{name, version}; a bare name (Song 1.x) is taken too"
    )
    files: list[SongFile] = Field(min_length=1)


class HtsgetRegion(BaseModel):
    referenceName: str
    start: int | None = Field(None, ge=0, le=2**32 - 1)
    end: int | None = Field(None, ge=0, le=2**32 - 1)


class HtsgetRequest(BaseModel):
    """htsget's POST body."""

    format: str | None = None
    klass: Literal["header"] | None = Field(None, alias="class")
    fields: list[str] | None = None
    tags: list[str] | None = None
    notags: list[str] | None = None
    regions: list[HtsgetRegion] | None = Field(None, min_length=1)


_DOCUMENT_MODELS: tuple[type[BaseModel], ...] = (
    ErrorBody,
    SongError,
    HtsgetError,
    SongStudy,
    SongPayload,
    HtsgetRequest,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _errors(model: type[BaseModel], media_type: str, codes: tuple[int, ...]) -> dict[int | str, dict[str, Any]]:
    return {code: {"description": _REASONS[code], "content": {media_type: {"schema": _ref(model)}}} for code in codes}


def score_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Score's JSON error answers (Spring Boot's error body plus ``message``) for ``codes``."""
    return _errors(ErrorBody, "application/json", codes)


def song_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Song's ``SongError`` answers for ``codes``."""
    return _errors(SongError, "application/json", codes)


def htsget_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """htsget's error answers, in htsget's media type, for ``codes``."""
    return _errors(HtsgetError, HTSGET_MEDIA_TYPE, codes)


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for an operation that parses a JSON body of ``model``'s shape itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": _ref(model)}}}}


def query_parameter(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    """One query parameter an operation reads itself (for ``openapi_extra={"parameters": [...]}``)."""
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def install_openapi(app: FastAPI) -> None:
    """Replace ``app.openapi`` with the generated document, post-processed (see the module docstring)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _complete(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in _DOCUMENT_MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", by_alias=True)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            _complete_operation(operation)


def _complete_operation(operation: dict[str, Any]) -> None:
    """FastAPI's 422 is answered as 400 here (Song's operations answer it in Song's shape)."""
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if "HTTPValidationError" in str(responses.get("422")) and responses.pop("422") and "400" not in responses:
        song = "song" in operation.get("tags", [])
        responses["400"] = (song_errors if song else score_errors)(400)[400]
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "path" and parameter.get("name") in _ID_PARAMETERS:
            parameter["schema"] = {**parameter.get("schema", {}), "pattern": SAFE_ID_PATTERN, "maxLength": 128}
