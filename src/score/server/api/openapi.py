"""The OpenAPI document, made true and complete: what each operation accepts and every answer it gives.

FastAPI documents what it validates itself; the rest is declared here and used by the routers:

* error answers per operation, in each API's own shape: Score's ``ErrorBody`` (``score_errors``), Song's
  ``SongError`` (``song_errors``) and htsget's error object with its media type (``htsget_errors``);
* the JSON bodies and query parameters that routers parse themselves, to give Song's and htsget's error
  shapes (``json_body``, ``query_parameter``), so a client generator or a fuzzer gets past them;
* who may call: the bearer-token security scheme (``bearerAuth``, the JWTs of ``score-server token`` or a
  configured provider), required (``token_required``) or optional (``token_optional``: open-access files are
  anonymous) per operation, with the scopes it needs in the operation's description, so Swagger UI at /docs
  has an Authorize button and "Try it out" sends the token; operations that never look at a token (ping,
  health, Song's reads, htsget's service-info) declare none;
* examples of the main calls' bodies and answers (``json_examples``), and of every error answer;
* ``install_openapi`` post-processes the generated document: FastAPI's 422 validation answer becomes
  the 400 this server gives, path ids carry the pattern the server enforces, and each error example gets
  the operation's own path.
"""

from __future__ import annotations

import copy
from http import HTTPStatus
from typing import Annotated, Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

from score.core.ids import SAFE_ID_PATTERN
from score.core.models import ErrorBody
from score.server.metadata.song_schemas import REGISTRATION_META_SCHEMA

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
_ID_PARAMETERS = ("object_id", "studyId", "analysisId", "objectId")
ID_LIST_MARK = "x-score-id-list"  # a path parameter's schema key: comma-separated ids (Song's {ids})
_SAFE_ID_CORE = SAFE_ID_PATTERN.removeprefix("^").removesuffix("$")
ID_LIST_PATTERN = f"^{_SAFE_ID_CORE}(?:,{_SAFE_ID_CORE})*$"

BEARER_AUTH = "bearerAuth"
SECURITY_SCHEMES = {
    BEARER_AUTH: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": 'An access token: `score-server token --scopes "..."` prints one signed by this server '
        "(ES256 JWT); configured providers' JWTs and API keys work too. Scopes are Score's (as configured): "
        "`score.READ`, `score.WRITE`, `PROGRAMDATA-<study>.READ`, `PROGRAMDATA-<study>.WRITE`, `song.WRITE`. "
        "Paste the token alone, without `Bearer `.",
    }
}
# Who may make an operation, appended to its description (scope names as configured; Score's by default).
UPLOAD_SCOPES = "required, with `score.WRITE` or `PROGRAMDATA-<study>.WRITE` for the object's study."
DOWNLOAD_SCOPES = (
    "optional for open-access files; controlled-access files need `score.READ` or `PROGRAMDATA-<study>.READ` "
    "for the object's study."
)
BATCH_UPLOAD_SCOPES = (
    "each object needs `score.WRITE` or `PROGRAMDATA-<study>.WRITE` for its study; without a token every "
    "object is refused (401) in `errors`."
)
ANY_SCOPE = "required; any valid token will do."
REGISTRY_SCOPES = "required, with `song.WRITE` or `PROGRAMDATA-<study>.WRITE` for the study."
REGISTRY_SYSTEM_SCOPE = "song.WRITE"  # Song's systemSecurity scope: analysis types belong to no study
_SCOPES_NOTE = "x-score-scopes"  # carries the scope text to ``_complete_operation``; not left in the document

# Example values, consistent across the examples (a 30 MiB file in 20 MiB parts, the tour's study).
EXAMPLE_OBJECT_ID = "bf9a81ff-e126-53c1-9003-c70efb9dd8aa"
EXAMPLE_OTHER_ID = "0b5e6d4e-0000-4000-8000-000000000000"
EXAMPLE_UPLOAD_ID = "d41590abf7fa4c7eb3d1391737bfe24d"
EXAMPLE_MD5 = "5f363e0e58a95f06cbe9bbc662c5dfb6"
EXAMPLE_STUDY = "ABC123"
EXAMPLE_ANALYSIS_ID = "978ebcaa-617e-4bf0-879f-3ab94a6018c9"
_EXAMPLE_PATH_VALUES = {
    "{object_id}": EXAMPLE_OBJECT_ID,
    "{entityId}": EXAMPLE_OBJECT_ID,
    "{studyId}": EXAMPLE_STUDY,
    "{analysisId}": EXAMPLE_ANALYSIS_ID,
}
_EXAMPLE_TIME = "2025-06-02T09:30:00.000+00:00"
_MiB = 1024 * 1024
_STORE = f"http://localhost:8087/_store/data/{EXAMPLE_OBJECT_ID}"


def _parts(op: str) -> list[dict[str, Any]]:
    parts = []
    for number, (offset, size) in enumerate(((0, 20 * _MiB), (20 * _MiB, 10 * _MiB)), start=1):
        if op == "put":
            query = f"op=put&uploadId={EXAMPLE_UPLOAD_ID}&partNumber={number}&offset={offset}&size={size}"
        else:
            query = f"op=get&range={offset}-{offset + size - 1}"
        url = f"{_STORE}?{query}&expires=1749461400&signature=0e028db9ed891e0acd1b9c03496f5256972a949d"
        part: dict[str, Any] = {"partNumber": number, "partSize": size, "offset": offset, "url": url, "md5": None}
        if op == "get":
            part["sourceMd5"] = ("8a1c4f9b3e2d7a6c5b4e3f2a1d0c9b8a", "1f2e3d4c5b6a79881726354453627181")[number - 1]
        parts.append(part)
    return parts


def _spec(op: str) -> dict[str, Any]:
    return {
        "objectKey": f"data/{EXAMPLE_OBJECT_ID}",
        "objectId": EXAMPLE_OBJECT_ID,
        "uploadId": EXAMPLE_UPLOAD_ID,
        "parts": _parts(op),
        "objectSize": 30 * _MiB,
        "objectMd5": EXAMPLE_MD5,
    }


UPLOAD_SPEC_EXAMPLE = _spec("put")
DOWNLOAD_SPEC_EXAMPLE = _spec("get")
NOT_REGISTERED_EXAMPLE = {
    "objectId": EXAMPLE_OTHER_ID,
    "status": 404,
    "message": f"object {EXAMPLE_OTHER_ID} is not registered in the metadata server; submit its analysis to Song first",
}
_SCORE_MESSAGES = {
    400: "invalid request: query.fileSize: Field required",  # /upload; see _FAMILY_MESSAGES for the others
    401: "the access token has expired; get a new one",
    403: f"the token lacks the scope to upload to study {EXAMPLE_STUDY}: needs PROGRAMDATA-{EXAMPLE_STUDY}.WRITE "
    "or score.WRITE",
    404: NOT_REGISTERED_EXAMPLE["message"].replace(EXAMPLE_OTHER_ID, EXAMPLE_OBJECT_ID),
    409: f"object {EXAMPLE_OBJECT_ID} already exists; use --force (overwrite=true) to replace it",
    413: "the request body is larger than this endpoint accepts (65536 bytes); send less",
    416: "the range starts at or past the end of the object (31457280 bytes)",
    503: "the object store is unavailable (connection refused); try again shortly",
    507: "the store is full: 12 MiB free, 64 MiB must stay free",
}
_READ_MESSAGES = {
    400: "invalid request: query.offset: Input should be a valid integer, unable to parse string as an integer",
    401: "downloading a controlled-access file needs an access token: pass one with 'Authorization: Bearer <token>'",
    403: f"the token lacks the scope to download controlled-access files of study {EXAMPLE_STUDY}: needs "
    f"PROGRAMDATA-{EXAMPLE_STUDY}.READ or score.READ",
}
# Messages that differ by family of operation (path prefix), over _SCORE_MESSAGES.
_FAMILY_MESSAGES = {
    ("/download", "/batch/download"): _READ_MESSAGES,
    ("/batch",): {400: "invalid request: uploads.0.fileSize: Field required"},
}
_SONG_ERRORS = {
    400: ("malformed.parameter", "invalid studyId 'a b': use 1-128 letters, digits, '_', '.' or '-' (no '..', no '/')"),
    401: (
        "unauthorized.token",
        "changing the metadata registry needs an access token: pass one with 'Authorization: Bearer <token>'",
    ),
    403: (
        "forbidden.token",
        f"the token lacks the scope to change study {EXAMPLE_STUDY}: needs song.WRITE or "
        f"PROGRAMDATA-{EXAMPLE_STUDY}.WRITE",
    ),
    404: (
        "study.id.does.not.exist",
        f"The studyId '{EXAMPLE_STUDY}' does not exist; create it with POST /studies/{EXAMPLE_STUDY}/ first",
    ),
    409: ("study.already.exists", f"The studyId '{EXAMPLE_STUDY}' already exists"),
    413: ("payload.too.large", "the request body is larger than this endpoint accepts (8388608 bytes); send less"),
    422: ("payload.parsing", "Unable to read the input payload as JSON (Expecting value: line 1 column 1 (char 0))"),
    503: ("service.unavailable", "the metadata registry database is unavailable (database is locked); retry shortly"),
    507: ("insufficient.storage", "the registry's disk is full, so nothing can be changed; reads still work"),
}
_HTSGET_ERRORS = {
    400: ("InvalidInput", "start and end need a referenceName"),
    401: ("InvalidAuthentication", "the access token has expired; get a new one"),
    403: ("PermissionDenied", _READ_MESSAGES[403]),
    404: ("NotFound", NOT_REGISTERED_EXAMPLE["message"].replace(EXAMPLE_OTHER_ID, EXAMPLE_OBJECT_ID)),
    413: ("PayloadTooLarge", "the request body is larger than this endpoint accepts (262144 bytes); send less"),
    503: ("ServiceUnavailable", "the object store is unavailable (connection refused); try again shortly"),
}


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


# Song's registration meta-schema, as the document's schema of a registered schema (no $schema/$id/default)
_REGISTRATION_DOC = {
    k: v for k, v in REGISTRATION_META_SCHEMA.items() if k not in ("$schema", "$id", "default", "title", "type")
}


class SongAnalysisTypeOptions(BaseModel):
    """Song's AnalysisTypeOptions; other keys are ignored, as Spring ignores unknown properties."""

    model_config = ConfigDict(extra="allow")
    fileTypes: list[str] | None = Field(None, description="The file types a payload's files may have")


class SongRegisterAnalysisType(BaseModel):
    """Song's RegisterAnalysisTypeRequest (POST /schemas): the schema must declare an ``experiment`` object."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(json_schema_extra={"pattern": r"^(?!registration$)[a-zA-Z0-9\._-]+$"})
    schema_: dict[str, Any] = Field(
        alias="schema",
        description="A JSON schema (draft-07) of the type's fields; Song's registration meta-schema applies",
        json_schema_extra=_REGISTRATION_DOC,
    )
    options: SongAnalysisTypeOptions | None = None


def _forbid_registry_fields(schema: dict[str, Any]) -> None:
    """analysisUpdate.json: ids, state, samples and files are not part of an update."""
    for name in ("analysisId", "studyId", "analysisState", "analysisTypeId", "samples", "files"):
        schema["properties"][name] = {"not": {}}


class SongUpdateAnalysisType(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=r"^[a-zA-Z0-9\._-]+$")
    version: int | None = Field(None, ge=1, le=2**31 - 1)


class SongAnalysisUpdate(BaseModel):
    """Song's update request (PUT .../analysis/{id}): the analysis' own fields and its analysisType; no
    ids, state, samples or files."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_forbid_registry_fields)
    analysisType: SongUpdateAnalysisType


class SongAnalysisPatch(BaseModel):
    """Song's patch (PATCH .../analysis/{id}): a JSON merge patch of the analysis' own fields."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_forbid_registry_fields)


class SongFileUpdate(BaseModel):
    """Song's FileUpdateRequest (PUT /studies/{studyId}/files/{objectId}): every field optional."""

    model_config = ConfigDict(extra="allow")
    fileSize: int | None = Field(None, gt=0, le=2**63 - 1)
    fileMd5sum: str | None = Field(None, pattern=r"^[0-9a-fA-F]{32}$")
    fileAccess: Literal["open", "controlled"] | None = None
    dataType: str | None = None
    info: dict[str, Any] | None = None


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
    SongRegisterAnalysisType,
    SongAnalysisUpdate,
    SongAnalysisPatch,
    SongFileUpdate,
    HtsgetRequest,
)


_BODY_MODELS: dict[str, type[BaseModel]] = {}  # the models of ``json_body``, by name


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _score_error(code: int) -> dict[str, Any]:
    """An ``ErrorBody`` example; ``path`` is made the operation's own by ``_complete_operation``."""
    phrase = HTTPStatus(code).phrase
    return {
        "timestamp": _EXAMPLE_TIME,
        "status": code,
        "error": phrase,
        "message": _SCORE_MESSAGES[code],
        "path": "/",
        "requestId": "5d41402abc4b2a76b9719d911017c592",
    }


def _song_error(code: int) -> dict[str, Any]:
    error_id, message = _SONG_ERRORS[code]
    status_name = "PAYLOAD_TOO_LARGE" if code == 413 else HTTPStatus(code).name
    return {
        "errorId": error_id,
        "httpStatusCode": code,
        "httpStatusName": "UNPROCESSABLE_ENTITY" if code == 422 else status_name,
        "requestUrl": "http://localhost:8087/song/",
        "datetime": _EXAMPLE_TIME,
        "timestamp": 1748856600000,
        "message": message,
        "debugMessage": "",
        "stackTrace": [],
    }


def _htsget_error(code: int) -> dict[str, Any]:
    name, message = _HTSGET_ERRORS[code]
    return {"htsget": {"error": name, "message": message}}


_EXAMPLES: dict[type[BaseModel], Any] = {ErrorBody: _score_error, SongError: _song_error, HtsgetError: _htsget_error}


def _errors(model: type[BaseModel], media_type: str, codes: tuple[int, ...]) -> dict[int | str, dict[str, Any]]:
    return {
        code: {
            "description": _REASONS[code],
            "content": {media_type: {"schema": _ref(model), "example": _EXAMPLES[model](code)}},
        }
        for code in codes
    }


def score_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Score's JSON error answers (Spring Boot's error body plus ``message``) for ``codes``."""
    return _errors(ErrorBody, "application/json", codes)


def song_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Song's ``SongError`` answers for ``codes``."""
    return _errors(SongError, "application/json", codes)


def htsget_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """htsget's error answers, in htsget's media type, for ``codes``."""
    return _errors(HtsgetError, HTSGET_MEDIA_TYPE, codes)


def token_required(scopes: str) -> dict[str, Any]:
    """``openapi_extra`` of an operation refused (401) without a token; ``scopes`` says what it must hold
    (one of the ``*_SCOPES`` sentences)."""
    return {"security": [{BEARER_AUTH: []}], _SCOPES_NOTE: scopes}


def token_optional(scopes: str) -> dict[str, Any]:
    """``openapi_extra`` of an operation some callers may make without a token (open-access files)."""
    return {"security": [{BEARER_AUTH: []}, {}], _SCOPES_NOTE: scopes}


# FastAPI drops every null from the document (exclude_none), also inside examples, where Score's nulls
# ("url": null, "md5": null) are the answer's shape. Examples therefore name their value here, and
# ``_complete_operation`` puts the value itself back.
_EXAMPLE_VALUES: list[Any] = []
_EXAMPLE_KEY = "x-score-example"


def _examples(examples: dict[str, Any]) -> dict[str, Any]:
    named = {}
    for name, value in examples.items():
        _EXAMPLE_VALUES.append(value)
        named[name] = {"value": None, _EXAMPLE_KEY: len(_EXAMPLE_VALUES) - 1}
    return named


def json_examples(**examples: Any) -> dict[str, Any]:
    """The ``content`` of a JSON answer with named examples (Swagger UI lists them by name)."""
    return {"application/json": {"examples": _examples(examples)}}


def json_body(model: type[BaseModel], **examples: Any) -> dict[str, Any]:
    """``openapi_extra`` for an operation that parses a JSON body of ``model``'s shape itself; the first of
    ``examples`` is what Swagger UI's "Try it out" starts from."""
    _BODY_MODELS.setdefault(model.__name__, model)  # FastAPI never sees this body: its schema is added here
    media: dict[str, Any] = {"schema": _ref(model)}
    if examples:
        media["examples"] = _examples(examples)
    return {"requestBody": {"required": True, "content": {"application/json": media}}}


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
    document.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in (*_DOCUMENT_MODELS, *_BODY_MODELS.values()):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", by_alias=True)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            _complete_operation(path, operation)


def _complete_operation(path: str, operation: dict[str, Any]) -> None:
    """FastAPI's 422 is answered as 400 here (Song's operations answer it in Song's shape); the scopes an
    operation needs go to its description; error examples name the operation's path."""
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if "HTTPValidationError" in str(responses.get("422")) and responses.pop("422") and "400" not in responses:
        song = "song" in operation.get("tags", [])
        responses["400"] = (song_errors if song else score_errors)(400)[400]
    scopes = operation.pop(_SCOPES_NOTE, None)
    if scopes:
        note = f"**Token:** {scopes}"
        operation["description"] = f"{operation['description']}\n\n{note}" if operation.get("description") else note
    _example_paths(path, responses)
    bodies = [operation.get("requestBody", {}), *responses.values()]
    for media in (m for body in bodies for m in body.get("content", {}).values()):
        for example in media.get("examples", {}).values():
            if _EXAMPLE_KEY in example:
                example["value"] = copy.deepcopy(_EXAMPLE_VALUES[example.pop(_EXAMPLE_KEY)])
    for parameter in operation.get("parameters", []):
        if parameter.get("in") != "path":
            continue
        if parameter.get("schema", {}).pop(ID_LIST_MARK, False):
            parameter["schema"]["pattern"] = ID_LIST_PATTERN
        elif parameter.get("name") in _ID_PARAMETERS:
            parameter["schema"] = {**parameter.get("schema", {}), "pattern": SAFE_ID_PATTERN, "maxLength": 128}


def _example_paths(path: str, responses: dict[str, Any]) -> None:
    """Error examples name this operation's path (with example ids), and download-like operations say what
    a download refusal says. The document is FastAPI's fresh copy, so shared example dicts are not touched."""
    concrete = path
    for placeholder, value in _EXAMPLE_PATH_VALUES.items():
        concrete = concrete.replace(placeholder, value)
    messages = next((m for prefixes, m in _FAMILY_MESSAGES.items() if path.startswith(prefixes)), {})
    for status, response in responses.items():
        for media in response.get("content", {}).values():
            example = media.get("example")
            if not isinstance(example, dict):
                continue
            if example.keys() == _score_error(400).keys():
                example["path"] = concrete
                example["message"] = messages.get(int(status), example["message"])
            elif "requestUrl" in example:
                example["requestUrl"] = f"http://localhost:8087{concrete}"
