"""A Song-compatible REST subset over the embedded registry, mounted at ``/song``.

Existing Song clients (song-client, Score's own metadata lookups, scripts) should not be able to tell it
from Song for the calls it covers, so paths, JSON field names, status codes and the error body follow
Song: errors answer Song's ``SongError`` JSON (``errorId`` such as ``study.id.does.not.exist``), and the
state-change endpoints answer Song's plain-text sentence. Reads are public, as in Song; every write needs
the ``REGISTRY_WRITE`` permission.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from score.server.api.bodies import InvalidJson, parse_json
from score.server.api.deps import authorize
from score.server.api.openapi import (
    EXAMPLE_ANALYSIS_ID,
    EXAMPLE_STUDY,
    REGISTRY_SCOPES,
    SongPayload,
    SongStudy,
    json_body,
    json_examples,
    query_parameter,
    song_errors,
    token_required,
)
from score.server.auth.policy import Action
from score.server.errors import ApiError
from score.server.metadata.base import PUBLISHED, MetadataUnavailable
from score.server.metadata.registry import (
    ENTITY_FILTERS,
    ILLEGAL_FILTER_PARAMETER,
    ILLEGAL_QUERY_PARAMETER,
    INSUFFICIENT_STORAGE,
    LEGACY_ENTITY_NOT_FOUND,
    MALFORMED_PARAMETER,
    PAYLOAD_PARSING,
    SCHEMA_VIOLATION,
    SERVICE_UNAVAILABLE,
    EntityPage,
    Registry,
    RegistryError,
    SongErrorCode,
)

DEFAULT_PAGE_SIZE = 10  # Spring Data's @PageableDefault size, which Song's entity endpoint uses
MAX_PAGE_SIZE = 2000  # Spring Data's default max-page-size; larger requests are clamped, as in Song
_PAGING_PARAMS = {"page", "size", "sort", "fields"}
JAVA_INT_MIN, JAVA_INT_MAX = -(2**31), 2**31 - 1
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_TRUE = {"true", "on", "yes", "1"}
_FALSE = {"false", "off", "no", "0", ""}
# Spring's HttpStatus names (Python's differ for some codes, e.g. 422 on newer versions).
_STATUS_NAMES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    422: "UNPROCESSABLE_ENTITY",
    500: "INTERNAL_SERVER_ERROR",
    503: "SERVICE_UNAVAILABLE",
    507: "INSUFFICIENT_STORAGE",
}


# --------------------------------------------------------------------------------------------------
# Song's error body


def song_error_body(request: Request, error_id: str, status: int, message: str, debug: str = "") -> dict[str, Any]:
    """Song's SongError JSON (song-core ``SongError``) for this request."""
    now = time.time()
    return {
        "errorId": error_id,
        "httpStatusCode": status,
        "httpStatusName": _STATUS_NAMES.get(status, HTTPStatus(status).name),
        "requestUrl": str(request.url),
        "datetime": datetime.fromtimestamp(now).astimezone().isoformat(),
        "timestamp": int(now * 1000),
        "message": message,
        "debugMessage": debug,
        "stackTrace": [],
    }


def song_error_response(
    request: Request, error_id: str, status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(song_error_body(request, error_id, status, message), status_code=status, headers=headers)


def _api_error_id(status: int) -> str:
    """Song's error id for errors raised outside the registry (auth from deps, bad input)."""
    if status == 401:
        return "unauthorized.token"  # Song's UNAUTHORIZED_TOKEN
    if status == 400:
        return MALFORMED_PARAMETER.error_id
    return _STATUS_NAMES.get(status, HTTPStatus(status).name).lower().replace("_", ".")


def _validation_message(exc: RequestValidationError) -> str:
    return "invalid request: " + "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}" for err in exc.errors()
    )


class SongRoute(APIRoute):
    """Answers every failure of a /song route in Song's error shape, whatever raised it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def song_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except RegistryError as exc:
                return song_error_response(request, exc.code.error_id, exc.code.status, exc.message)
            except ApiError as exc:
                return song_error_response(request, _api_error_id(exc.status), exc.status, exc.message, exc.headers)
            except RequestValidationError as exc:
                return song_error_response(request, MALFORMED_PARAMETER.error_id, 400, _validation_message(exc))
            except sqlite3.OperationalError as exc:
                if "full" in str(exc):  # SQLITE_FULL: "database or disk is full"
                    return song_error_response(
                        request,
                        INSUFFICIENT_STORAGE.error_id,
                        507,
                        "the registry's disk is full, so nothing can be changed; reads still work. Free space "
                        "on the server (or ask its operator), then retry",
                    )
                return song_error_response(
                    request,
                    SERVICE_UNAVAILABLE.error_id,
                    503,
                    f"the metadata registry database is unavailable ({exc}); retry shortly",
                )
            except MetadataUnavailable as exc:
                return song_error_response(request, SERVICE_UNAVAILABLE.error_id, 503, f"{exc}; retry shortly")

        return song_errors


# --------------------------------------------------------------------------------------------------
# Request helpers


def _registry(request: Request) -> Registry:
    return request.app.state.context.metadata


def _bad(code: SongErrorCode, message: str) -> RegistryError:
    return RegistryError(code, message)


def _bool_param(request: Request, name: str, default: bool) -> bool:
    """Spring's boolean conversion: true/false, on/off, yes/no, 1/0, case-insensitive; empty is the default.
    Nothing is trimmed (Java's ``trim`` also drops control characters, which this API refuses)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    value = raw.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _bad(MALFORMED_PARAMETER, f"the query parameter {name}={raw!r} must be true or false")


def _int_param(request: Request, name: str, default: int) -> int:
    """An integer query parameter as Spring binds a Java ``int``: anything else is MALFORMED_PARAMETER."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not _INTEGER.fullmatch(raw):  # Java's parseInt: no spaces, no '_', no '+', ASCII digits
        raise _bad(MALFORMED_PARAMETER, f"the query parameter {name}={raw[:40]!r} must be an integer")
    value = int(raw)
    if not JAVA_INT_MIN <= value <= JAVA_INT_MAX:
        raise _bad(MALFORMED_PARAMETER, f"the query parameter {name} must be from {JAVA_INT_MIN} to {JAVA_INT_MAX}")
    return value


async def _json_body(request: Request) -> Any:
    """The request's JSON, read within the route's body limit (``BodyLimit``) after the caller was
    authorised, and refused unless it can be stored and served back (``parse_json``)."""
    body = await request.body()
    try:
        return parse_json(body)
    except InvalidJson as exc:
        raise _bad(
            PAYLOAD_PARSING,
            f"Unable to read the input payload as JSON ({exc}); send a JSON "
            "document with Content-Type: application/json",
        ) from None


def _state_change_response(message: str) -> PlainTextResponse:
    """Song answers publish/unpublish/suppress with a plain sentence (``ResponseEntity<String>``)."""
    return PlainTextResponse(message)


# --------------------------------------------------------------------------------------------------
# Legacy entity paging


def _entity_query(request: Request) -> tuple[dict[str, str], list[str], int, int]:
    """Filters, field selection, page and size from the query, refusing what Song refuses."""
    params = request.query_params
    unknown = sorted(set(params.keys()) - set(ENTITY_FILTERS) - _PAGING_PARAMS)
    if unknown:
        raise _bad(
            ILLEGAL_QUERY_PARAMETER,
            f"unknown query parameter(s) {', '.join(unknown)}; use "
            f"{', '.join(sorted(ENTITY_FILTERS))}, fields, page and size",
        )
    fields = [f for value in params.getlist("fields") for f in value.split(",") if f]
    bad_fields = sorted(set(fields) - set(ENTITY_FILTERS))
    if bad_fields:
        raise _bad(
            ILLEGAL_FILTER_PARAMETER,
            f"unknown field(s) {', '.join(bad_fields)} in 'fields'; choose from {', '.join(sorted(ENTITY_FILTERS))}",
        )
    filters = {k: params[k] for k in ENTITY_FILTERS if k in params}
    page = max(_int_param(request, "page", 0), 0)
    size = _int_param(request, "size", DEFAULT_PAGE_SIZE)
    size = DEFAULT_PAGE_SIZE if size < 1 else min(size, MAX_PAGE_SIZE)
    return filters, fields, page, size


def spring_page(result: EntityPage, fields: list[str]) -> dict[str, Any]:
    """Spring Data's serialised ``Page``: the shape Score's client pages through (``content``, ``last``)."""
    content = [e.to_wire() for e in result.entities]
    if fields:
        content = [{k: v for k, v in item.items() if k in fields} for item in content]
    total_pages = -(-result.total // result.size) if result.size else 0
    sort = {"sorted": True, "unsorted": False, "empty": False}
    return {
        "content": content,
        "pageable": {
            "sort": sort,
            "offset": result.page * result.size,
            "pageNumber": result.page,
            "pageSize": result.size,
            "paged": True,
            "unpaged": False,
        },
        "totalPages": total_pages,
        "totalElements": result.total,
        "last": result.page + 1 >= total_pages,
        "size": result.size,
        "number": result.page,
        "sort": sort,
        "numberOfElements": len(content),
        "first": result.page == 0,
        "empty": not content,
    }


# --------------------------------------------------------------------------------------------------
# Query parameters the handlers read themselves, for the OpenAPI document

_STATE = "(PUBLISHED|UNPUBLISHED|SUPPRESSED)"
_STATES_PARAMETER = query_parameter(
    "analysisStates",
    {"type": "string", "pattern": f"^( *{_STATE} *(, *{_STATE} *)*)?$"},
    "Comma-separated analysis states to list (default, and when empty: PUBLISHED)",
)
_IGNORE_MD5_PARAMETER = query_parameter(
    "ignoreUndefinedMd5",
    {"anyOf": [{"type": "boolean"}, {"type": "string", "enum": sorted(_TRUE | _FALSE)}]},
    "Publish files stored without an MD5 too (default false; Spring's spellings: on/off, yes/no, 1/0)",
)
_FIELD_NAMES = "|".join(sorted(ENTITY_FILTERS))
# Spring's pageable binding: a Java int, and an empty value means the default
_JAVA_INT_OR_EMPTY = {
    "anyOf": [{"type": "integer", "minimum": JAVA_INT_MIN, "maximum": JAVA_INT_MAX}, {"type": "string", "maxLength": 0}]
}
_ENTITY_PARAMETERS = [
    *(
        query_parameter(name, {"type": "string"}, f"Only entities whose {name} is exactly this")
        for name in ENTITY_FILTERS
    ),
    query_parameter("page", _JAVA_INT_OR_EMPTY, "Page number from 0 (below, or empty: 0)"),
    query_parameter(
        "size",
        _JAVA_INT_OR_EMPTY,
        f"Page size, {DEFAULT_PAGE_SIZE} below 1 or empty, at most {MAX_PAGE_SIZE} (larger asks are clamped, as in "
        "Song)",
    ),
    query_parameter(
        "fields",
        {"type": "string", "pattern": f"^(({_FIELD_NAMES})(,({_FIELD_NAMES}))*)?$"},
        "Only these fields of each entity (comma-separated, or the parameter repeated)",
    ),
]


_PAYLOAD_EXAMPLE = {
    "studyId": EXAMPLE_STUDY,
    "analysisType": {"name": "demo"},
    "files": [
        {
            "fileName": "reads.txt",
            "fileSize": 6,
            "fileMd5sum": "b1946ac92492d2347c6235b4d2611184",
            "fileType": "TXT",
            "fileAccess": "controlled",
            "dataType": "demo",
        }
    ],
}


# --------------------------------------------------------------------------------------------------
# Router


def build_song_router() -> APIRouter:
    """The /song routes (mounted with ``prefix="/song"``); the registry comes from the app's context."""
    router = APIRouter(route_class=SongRoute, tags=["song"])
    _add_health_routes(router)
    _add_study_routes(router)
    _add_analysis_routes(router)
    _add_state_routes(router)
    _add_entity_routes(router)
    return router


def _add_health_routes(router: APIRouter) -> None:
    @router.get("/isAlive")
    def is_alive() -> bool:
        """Song's liveness probe: ``true``."""
        return True


def _add_study_routes(router: APIRouter) -> None:
    # /studies/all is declared before /studies/{studyId} so "all" is never read as a study id.
    @router.get("/studies/all", responses=song_errors(503))
    def all_studies(request: Request) -> list[str]:
        return _registry(request).study_ids()

    @router.get("/studies/{studyId}", responses=song_errors(400, 404, 503))
    def get_study(studyId: str, request: Request) -> dict[str, Any]:
        return _registry(request).get_study(studyId)

    async def create_study(studyId: str, request: Request) -> PlainTextResponse:
        """Song's CreateStudy; like Song it answers the new study id as plain text."""
        if studyId == "all":  # the path of GET /studies/all, which takes no POST
            raise ApiError(
                "POST is not allowed on /studies/all; create a study at /studies/{studyId}/", 405, {"Allow": "GET"}
            )
        authorize(request, Action.REGISTRY_WRITE, study_id=studyId)
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise _bad(
                SCHEMA_VIOLATION,
                "the body must be Song's Study JSON object: "
                '{"studyId", "name", "organization", "description", "info"}',
            )
        study = await run_in_threadpool(_registry(request).create_study, studyId, body)
        return PlainTextResponse(study["studyId"])

    # Song maps "/{studyId}/"; Spring also matched it without the slash, so both are served.
    documented = {
        "response_class": PlainTextResponse,
        "responses": {
            200: {"content": {"text/plain": {"example": EXAMPLE_STUDY}}},
            **song_errors(400, 401, 403, 409, 413, 422, 503, 507),
        },
        "openapi_extra": {
            **json_body(SongStudy, demo={"studyId": EXAMPLE_STUDY, "name": "demo"}),
            **token_required(REGISTRY_SCOPES),
        },
    }
    router.add_api_route("/studies/{studyId}/", create_study, methods=["POST"], **documented)
    router.add_api_route(
        "/studies/{studyId}", create_study, methods=["POST"], name="create_study_no_slash", **documented
    )


def _add_analysis_routes(router: APIRouter) -> None:
    @router.post(
        "/submit/{studyId}",
        responses={
            200: {"content": json_examples(registered={"analysisId": EXAMPLE_ANALYSIS_ID, "status": "OK"})},
            **song_errors(400, 401, 403, 404, 409, 413, 422, 503, 507),
        },
        openapi_extra={**json_body(SongPayload, one_file=_PAYLOAD_EXAMPLE), **token_required(REGISTRY_SCOPES)},
    )
    async def submit(studyId: str, request: Request) -> dict[str, str]:
        """Song's Submit: registers the payload as an UNPUBLISHED analysis."""
        authorize(request, Action.REGISTRY_WRITE, study_id=studyId)
        payload = await _json_body(request)
        analysis_id = await run_in_threadpool(_registry(request).submit, studyId, payload)
        return {"analysisId": analysis_id, "status": "OK"}

    @router.get(
        "/studies/{studyId}/analysis",
        responses=song_errors(400, 404, 503),
        openapi_extra={"parameters": [_STATES_PARAMETER]},
    )
    def list_analyses(studyId: str, request: Request) -> list[dict[str, Any]]:
        raw = request.query_params.get("analysisStates") or PUBLISHED
        states = [s.strip(" ") for s in raw.split(",")]  # only spaces: str.strip also eats control characters
        return _registry(request).list_analyses(studyId, states)

    @router.get("/studies/{studyId}/analysis/{analysisId}", responses=song_errors(400, 404, 503))
    def get_analysis(studyId: str, analysisId: str, request: Request) -> dict[str, Any]:
        return _registry(request).get_analysis(studyId, analysisId)

    @router.get("/studies/{studyId}/analysis/{analysisId}/files", responses=song_errors(400, 404, 503))
    def analysis_files(studyId: str, analysisId: str, request: Request) -> list[dict[str, Any]]:
        return [f.to_wire() for f in _registry(request).analysis_files(studyId, analysisId)]


def _add_state_routes(router: APIRouter) -> None:
    @router.put(
        "/studies/{studyId}/analysis/publish/{analysisId}",
        response_class=PlainTextResponse,
        responses={
            200: {"content": {"text/plain": {"example": f"AnalysisId {EXAMPLE_ANALYSIS_ID} successfully published"}}},
            **song_errors(400, 401, 403, 404, 409, 503, 507),
        },
        openapi_extra={"parameters": [_IGNORE_MD5_PARAMETER], **token_required(REGISTRY_SCOPES)},
    )
    def publish(studyId: str, analysisId: str, request: Request) -> PlainTextResponse:
        """Song's PublishAnalysis: only once every file is stored in Score with matching size and MD5."""
        authorize(request, Action.REGISTRY_WRITE, study_id=studyId)
        ignore = _bool_param(request, "ignoreUndefinedMd5", default=False)
        _registry(request).publish(studyId, analysisId, ignore_undefined_md5=ignore)
        return _state_change_response(f"AnalysisId {analysisId} successfully published")

    @router.put(
        "/studies/{studyId}/analysis/unpublish/{analysisId}",
        response_class=PlainTextResponse,
        responses=song_errors(400, 401, 403, 404, 503, 507),
        openapi_extra=token_required(REGISTRY_SCOPES),
    )
    def unpublish(studyId: str, analysisId: str, request: Request) -> PlainTextResponse:
        authorize(request, Action.REGISTRY_WRITE, study_id=studyId)
        _registry(request).unpublish(studyId, analysisId)
        return _state_change_response(f"AnalysisId {analysisId} successfully unpublished")

    @router.put(
        "/studies/{studyId}/analysis/suppress/{analysisId}",
        response_class=PlainTextResponse,
        responses=song_errors(400, 401, 403, 404, 503, 507),
        openapi_extra=token_required(REGISTRY_SCOPES),
    )
    def suppress(studyId: str, analysisId: str, request: Request) -> PlainTextResponse:
        authorize(request, Action.REGISTRY_WRITE, study_id=studyId)
        _registry(request).suppress(studyId, analysisId)
        return _state_change_response(f"AnalysisId {analysisId} was suppressed")


def _add_entity_routes(router: APIRouter) -> None:
    def find_entities(request: Request) -> dict[str, Any]:
        """Song's legacy FindLegacyEntities: a Spring Data page of file entities, ordered by id."""
        filters, fields, page, size = _entity_query(request)
        return spring_page(_registry(request).find_entities(filters, page, size), fields)

    # Score's `mount` calls "/entities/?..." with the trailing slash; other callers omit it.
    router.add_api_route(
        "/entities",
        find_entities,
        methods=["GET"],
        responses=song_errors(400, 503),
        openapi_extra={"parameters": _ENTITY_PARAMETERS},
    )
    router.add_api_route("/entities/", find_entities, methods=["GET"], include_in_schema=False)

    @router.get("/entities/{entityId}", responses=song_errors(404, 503))
    def get_entity(entityId: str, request: Request) -> dict[str, Any]:
        entity = _registry(request).entity(entityId)
        if entity is None:
            raise _bad(
                LEGACY_ENTITY_NOT_FOUND,
                f"The LegacyEntity with id '{entityId}' does not exist; "
                "check the object id (GET /entities?gnosId=<analysisId> lists an analysis' files)",
            )
        return entity.to_wire()
