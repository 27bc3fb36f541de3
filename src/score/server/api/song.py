"""A Song-compatible REST subset over the embedded registry, mounted at ``/song``.

Existing Song clients (song-client, Score's own metadata lookups, scripts) should not be able to tell it
from Song for the calls it covers, so paths, JSON field names, status codes and the error body follow
Song: errors answer Song's ``SongError`` JSON (``errorId`` such as ``study.id.does.not.exist``), and
create-study and the state-change endpoints answer Song's ``{"message": ...}``. Reads are public, as in
Song; every write needs the ``REGISTRY_WRITE`` permission. The routes are split by job: ``song_schemas``
(analysis types), ``song_reads`` (paging, search, export), ``song_updates`` (updates), this module (the
rest); ``song_common`` holds the error shape they all answer in.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from score.server.api import song_reads, song_schemas, song_updates
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
from score.server.api.song_common import SPRING_BOOLEAN, SongRoute, song_error_response, spring_int
from score.server.api.song_common import bad as _bad
from score.server.api.song_common import bool_param as _bool_param
from score.server.api.song_common import int_param as _int_param
from score.server.api.song_common import json_body_of as _json_body
from score.server.api.song_common import registry_of as _registry
from score.server.auth.policy import Action
from score.server.errors import ApiError
from score.server.metadata.base import PUBLISHED
from score.server.metadata.registry import (
    ENTITY_FILTERS,
    ID_NOT_FOUND,
    ILLEGAL_FILTER_PARAMETER,
    ILLEGAL_QUERY_PARAMETER,
    LEGACY_ENTITY_NOT_FOUND,
    NOT_IMPLEMENTED_YET,
    SCHEMA_VIOLATION,
    EntityPage,
)

DEFAULT_PAGE_SIZE = 10  # Spring Data's @PageableDefault size, which Song's entity endpoint uses
MAX_PAGE_SIZE = 2000  # Spring Data's default max-page-size; larger requests are clamped, as in Song
_PAGING_PARAMS = {"page", "size", "sort", "fields"}


def message_response(message: str) -> JSONResponse:
    """Song 5.2+ answers create-study and publish/unpublish/suppress with ``GenericMessage`` JSON
    (``{"message": ...}``, SONG ``model/dto/GenericMessage.java``), not a plain sentence."""
    return JSONResponse({"message": message})


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
    SPRING_BOOLEAN,
    "Publish files stored without an MD5 too (default false; Spring's spellings: on/off, yes/no, 1/0)",
)
_FIELD_NAMES = "|".join(sorted(ENTITY_FILTERS))
_JAVA_INT_OR_EMPTY = spring_int()
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
    song_schemas.add_routes(router)
    song_reads.add_routes(router)  # before /studies/{studyId}/analysis/{analysisId}: "paginated" is no id
    _add_study_routes(router)
    _add_analysis_routes(router)
    _add_state_routes(router)
    song_updates.add_routes(router)
    _add_entity_routes(router)
    _add_unknown_route(router)  # last: it matches every path
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

    async def create_study(studyId: str, request: Request) -> JSONResponse:
        """Song's CreateStudy: ``{"message": "Successfully created study '<id>'"}`` (StudyController.saveStudy,
        StudyService.saveStudy)."""
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
        return message_response(f"Successfully created study '{study['studyId']}'")

    # Song maps "/{studyId}/"; Spring also matched it without the slash, so both are served.
    documented = {
        "response_class": JSONResponse,
        "responses": {
            200: {"content": json_examples(created={"message": f"Successfully created study '{EXAMPLE_STUDY}'"})},
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
        response_class=JSONResponse,
        responses={
            200: {
                "content": json_examples(
                    published={"message": f"AnalysisId {EXAMPLE_ANALYSIS_ID} successfully published"}
                )
            },
            **song_errors(400, 401, 403, 404, 409, 503, 507),
        },
        openapi_extra={"parameters": [_IGNORE_MD5_PARAMETER], **token_required(REGISTRY_SCOPES)},
    )
    def publish(studyId: str, analysisId: str, request: Request) -> JSONResponse:
        """Song's PublishAnalysis: only once every file is stored in Score with matching size and MD5."""
        authorize(request, Action.REGISTRY_WRITE, study_id=studyId)
        ignore = _bool_param(request, "ignoreUndefinedMd5", default=False)
        _registry(request).publish(studyId, analysisId, ignore_undefined_md5=ignore)
        return message_response(f"AnalysisId {analysisId} successfully published")

    @router.put(
        "/studies/{studyId}/analysis/unpublish/{analysisId}",
        response_class=JSONResponse,
        responses=song_errors(400, 401, 403, 404, 503, 507),
        openapi_extra=token_required(REGISTRY_SCOPES),
    )
    def unpublish(studyId: str, analysisId: str, request: Request) -> JSONResponse:
        authorize(request, Action.REGISTRY_WRITE, study_id=studyId)
        _registry(request).unpublish(studyId, analysisId)
        return message_response(f"AnalysisId {analysisId} successfully unpublished")

    @router.put(
        "/studies/{studyId}/analysis/suppress/{analysisId}",
        response_class=JSONResponse,
        responses=song_errors(400, 401, 403, 404, 503, 507),
        openapi_extra=token_required(REGISTRY_SCOPES),
    )
    def suppress(studyId: str, analysisId: str, request: Request) -> JSONResponse:
        authorize(request, Action.REGISTRY_WRITE, study_id=studyId)
        _registry(request).suppress(studyId, analysisId)
        return message_response(f"AnalysisId {analysisId} was suppressed")


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


def _add_unknown_route(router: APIRouter) -> None:
    """Any other path under /song answers Song's error shape, so Song's clients raise their ``SongError``
    (the Python SDK otherwise raises "[UNKNOWN_REST_ERROR] Not a song error"). A path that exists with
    other methods answers 405 with ``Allow``."""

    async def unknown(request: Request, path: str) -> JSONResponse:
        # The methods of the first route whose template matches (routes are declared most specific first),
        # so Allow lists what the OpenAPI document says of that one path.
        routes = [r for r in router.routes if isinstance(r, APIRoute) and r is not unknown_route]
        template = next((r.path for r in routes if r.path_regex.match("/" + path)), None)
        allowed = sorted({m for r in routes if r.path == template for m in r.methods})
        if allowed:
            return song_error_response(
                request,
                NOT_IMPLEMENTED_YET.error_id,
                405,
                f"{request.method} is not supported on this path; use {', '.join(allowed)}",
                headers={"Allow": ", ".join(allowed)},
            )
        return song_error_response(
            request,
            ID_NOT_FOUND.error_id,
            404,
            f"There is no Song endpoint {request.method} /{path}; see /docs for the registry's endpoints",
        )

    router.add_api_route(
        "/{path:path}",
        unknown,
        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        include_in_schema=False,
    )
    unknown_route = router.routes[-1]
