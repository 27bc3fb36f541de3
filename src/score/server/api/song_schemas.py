"""Song's ``/schemas`` routes: register, list and read analysis types (SONG ``AnalysisTypeController``).

Paths, parameters and answers follow ``AnalysisTypeController.java`` and ``AnalysisTypePageableResolver.java``:
``GET /schemas`` answers a ``PageDTO`` (``limit``, ``offset``, ``count``, ``resultSet``) sorted by version,
newest first, 20 at a time; ``GET /schemas/{name}`` the latest version (``?version=N`` another one);
``POST /schemas`` needs the system write scope (Song's ``systemSecurity``: a study scope is not enough).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool

from score.server.api.deps import authorize
from score.server.api.openapi import (
    REGISTRY_SYSTEM_SCOPE,
    SongRegisterAnalysisType,
    json_body,
    json_examples,
    query_parameter,
    song_errors,
    token_required,
)
from score.server.api.song_common import (
    SPRING_BOOLEAN,
    bad,
    bool_param,
    int_param,
    is_java_int,
    json_body_of,
    registry_of,
    spring_int,
)
from score.server.auth.policy import Action
from score.server.errors import ApiError
from score.server.metadata.analysis_types import DEFAULT_LIMIT, DEFAULT_OFFSET, REGISTRATION, SORT_VARIABLES
from score.server.metadata.registry import MALFORMED_PARAMETER, SCHEMA_VIOLATION
from score.server.metadata.song_schemas import REGISTRATION_META_SCHEMA

EXAMPLE_TYPE_SCHEMA = {
    "type": "object",
    "required": ["experiment"],
    "properties": {"experiment": {"type": "object", "required": ["platform"]}},
}
_BOOL = SPRING_BOOLEAN
_COUNT = spring_int(minimum=0)
_VERSION = "[1-9][0-9]{0,8}"  # a positive Java int (at most 999999999 here)
_LIST_PARAMETERS = [
    query_parameter("names", {"type": "string"}, "Comma-separated analysis type names"),
    query_parameter(
        "versions", {"type": "string", "pattern": f"^({_VERSION}(,{_VERSION})*)?$"}, "Comma-separated versions"
    ),
    query_parameter("hideSchema", _BOOL, "Leave the schema out of each type (default false)"),
    query_parameter("unrenderedOnly", _BOOL, "The schema as registered, not merged into Song's base (default false)"),
    query_parameter("offset", _COUNT, f"Index of the first type (default {DEFAULT_OFFSET})"),
    query_parameter("limit", _COUNT, f"Number of types (default {DEFAULT_LIMIT})"),
    query_parameter(
        "sort", {"type": "string", "pattern": "^((version|name)(,(version|name))*)?$"}, "Sort fields (empty: version)"
    ),
    query_parameter("sortOrder", {"type": "string", "enum": ["ASC", "DESC", "asc", "desc"]}, "Default DESC"),
]


def _csv(request: Request, name: str) -> list[str]:
    """A Spring ``List<String>`` parameter: comma-separated and/or repeated."""
    return [item for value in request.query_params.getlist(name) for item in value.split(",") if item]


def _non_negative(request: Request, name: str, default: int) -> int:
    value = int_param(request, name, default)
    if value < 0:
        raise bad(MALFORMED_PARAMETER, f"The parameter '{name}' with value '{value}' but must be greater than 0")
    return value


def _list_query(request: Request) -> dict[str, Any]:
    """``listAnalysisTypes``' parameters as ``AnalysisTypePageableResolver`` parses them."""
    versions: list[int] = []
    for raw in _csv(request, "versions"):
        if not is_java_int(raw):  # not str.isdigit(): it also takes '¹', which int() refuses
            raise bad(MALFORMED_PARAMETER, f"The versions value '{raw[:40]}' is not an integer")
        versions.append(int(raw))
    sort = _csv(request, "sort") or ["version"]
    for variable in sort:
        if variable not in SORT_VARIABLES:
            raise bad(
                MALFORMED_PARAMETER,
                f"The sort variable '{variable}' is not one or more of [{','.join(SORT_VARIABLES)}]",
            )
    order = request.query_params.get("sortOrder", "DESC")  # Song's Direction.fromString refuses "" too
    if order not in ("ASC", "asc", "DESC", "desc"):
        raise bad(MALFORMED_PARAMETER, f"The sortOrder value '{order[:40]}' is not one of [ASC,asc,DESC,desc]")
    return {
        "names": _csv(request, "names"),
        "versions": versions,
        "hide_schema": bool_param(request, "hideSchema", default=False),
        "unrendered_only": bool_param(request, "unrenderedOnly", default=False),
        "limit": _non_negative(request, "limit", DEFAULT_LIMIT),
        "offset": _non_negative(request, "offset", DEFAULT_OFFSET),
        "sort": sort,
        "descending": order.upper() == "DESC",
    }


def add_routes(router: APIRouter) -> None:
    @router.get(
        "/schemas",
        responses=song_errors(400, 503),
        openapi_extra={"parameters": _LIST_PARAMETERS},
    )
    def list_analysis_types(request: Request) -> dict[str, Any]:
        """Song's ListAnalysisTypes: a page of registered types, newest version first."""
        return registry_of(request).list_analysis_types(**_list_query(request))

    # Declared before /schemas/{name}: "registration" is reserved and never an analysis type's name.
    @router.get(f"/schemas/{REGISTRATION}")
    def registration_schema() -> dict[str, Any]:
        """Song's GetRegistrationSchema: the meta-schema every registered schema must satisfy."""
        return REGISTRATION_META_SCHEMA

    @router.get(
        "/schemas/{name}",
        responses=song_errors(400, 404, 503),
        openapi_extra={
            "parameters": [
                query_parameter("version", spring_int(minimum=1), "A version (default, and when empty: latest)"),
                query_parameter("unrenderedOnly", _BOOL, "The schema as registered (default false)"),
            ]
        },
    )
    def get_analysis_type(
        name: Annotated[str, Path(json_schema_extra={"pattern": r"^[a-zA-Z0-9\._-]+$"})], request: Request
    ) -> dict[str, Any]:
        """Song's GetAnalysisTypeVersion: the latest version of a type, or ``?version=N``."""
        raw = request.query_params.get("version")
        version = None if raw in (None, "") else int_param(request, "version", 0)
        unrendered = bool_param(request, "unrenderedOnly", default=False)
        return registry_of(request).get_analysis_type(name, version, unrendered)

    @router.post(
        "/schemas",
        responses={
            200: {
                "content": json_examples(
                    registered={
                        "name": "variantCall",
                        "version": 1,
                        "createdAt": "2026-01-01T12:00:00.000",
                        "options": None,
                        "schema": {"...": "the schema merged into Song's base payload schema"},
                    }
                )
            },
            **song_errors(400, 401, 403, 413, 422, 503, 507),
        },
        openapi_extra={
            **json_body(SongRegisterAnalysisType, variant_call={"name": "variantCall", "schema": EXAMPLE_TYPE_SCHEMA}),
            **token_required(f"required, with `{REGISTRY_SYSTEM_SCOPE}` (a study scope is not enough)."),
        },
    )
    async def register_analysis_type(request: Request) -> dict[str, Any]:
        """Song's RegisterAnalysisType: a new version of the named type (1 for a new name)."""
        try:
            authorize(request, Action.REGISTRY_WRITE)
        except ApiError as exc:
            if exc.status != 403:
                raise
            raise ApiError(
                f"registering an analysis type needs the system scope {REGISTRY_SYSTEM_SCOPE}; study scopes "
                "only change their study",
                403,
            ) from None
        body = await json_body_of(request)
        if not isinstance(body, dict):
            raise bad(SCHEMA_VIOLATION, 'the body must be {"name": ..., "schema": {...}, "options": {...}}')
        return await run_in_threadpool(
            registry_of(request).register_analysis_type, body.get("name"), body.get("schema"), body.get("options")
        )
