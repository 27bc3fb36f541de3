"""GA4GH htsget 1.3: ``/htsget/reads/{id}`` and ``/htsget/variants/{id}`` (GET and POST), and service-info.

Same authorisation as ``GET /download/{id}`` (open/controlled, study scopes, published only), one audit
line per ticket. Every failure answers htsget's error JSON (``{"htsget": {"error", "message"}}``) with the
spec's status, including authentication and permission refusals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from score import __version__
from score.genomics import UNPLACED, Region
from score.server.api.bodies import InvalidJson, parse_json
from score.server.api.deps import get_context
from score.server.api.guards import analysis_state, authorize_object, request_memo
from score.server.api.openapi import (
    DOWNLOAD_SCOPES,
    HTSGET_MEDIA_TYPE,
    HtsgetRequest,
    htsget_errors,
    json_body,
    query_parameter,
    token_optional,
)
from score.server.auth.policy import Action
from score.server.errors import ApiError
from score.server.metadata.base import PUBLISHED, MetadataUnavailable, decision_scope
from score.server.services.htsget import READS_FORMATS, VARIANTS_FORMATS, HtsgetError

MEDIA_TYPE = HTSGET_MEDIA_TYPE
MAX_BODY = 256 * 1024  # a ticket request; BodyLimit enforces it while the body streams
MAX_COORDINATE = 2**32 - 1
FIELDS = ("QNAME", "FLAG", "RNAME", "POS", "MAPQ", "CIGAR", "RNEXT", "PNEXT", "TLEN", "SEQ", "QUAL")
_STATUS_NAMES = {401: "InvalidAuthentication", 403: "PermissionDenied", 404: "NotFound", 413: "PayloadTooLarge"}
DATATYPES = {"reads": READS_FORMATS, "variants": VARIANTS_FORMATS}

router = APIRouter(prefix="/htsget", tags=["htsget"])


class HtsgetResponse(JSONResponse):
    """JSON in htsget's media type (also how the OpenAPI document declares every htsget answer)."""

    media_type = MEDIA_TYPE


def _respond(request: Request, body: dict[str, Any], status: int = 200) -> JSONResponse:
    headers = {}
    origin = request.headers.get("origin")
    if origin:  # CORS: browsers (igv.js) call htsget directly
        headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return HtsgetResponse(body, status_code=status, headers=headers)


def _error(request: Request, name: str, status: int, message: str) -> JSONResponse:
    return _respond(request, {"htsget": {"error": name, "message": message}}, status)


def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    name = _STATUS_NAMES.get(exc.status, "InvalidInput" if exc.status < 500 else "ServiceUnavailable")
    response = _error(request, name, exc.status, exc.message)
    response.headers.update(exc.headers)
    return response


def _htsget_errors(request: Request, handler: Callable[[], dict[str, Any]]) -> JSONResponse:
    """Run ``handler``, turning every refusal into htsget's error JSON."""
    try:
        return _respond(request, handler())
    except HtsgetError as exc:
        return _error(request, exc.name, exc.status, exc.message)
    except ApiError as exc:
        return _api_error(request, exc)


def _refusal(request: Request, object_id: str) -> JSONResponse | None:
    """htsget's error answer if the caller may not read the object (refusals are audited), else None."""
    try:
        authorize_object(request, Action.DOWNLOAD, object_id)
    except ApiError as exc:
        return _api_error(request, exc)
    return None


def _invalid(message: str) -> HtsgetError:
    return HtsgetError("InvalidInput", 400, message)


def _coordinate(raw: Any, name: str) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise _invalid(f"{name} must be an unsigned 32-bit integer")
    try:
        value = int(raw)
    except ValueError as exc:
        raise _invalid(f"{name} must be an unsigned 32-bit integer, not {str(raw)[:40]!r}") from exc
    if not 0 <= value <= MAX_COORDINATE:
        raise HtsgetError("InvalidRange", 400, f"{name} {value} is outside 0..{MAX_COORDINATE}")
    return value


def _region(reference: Any, start_raw: Any, end_raw: Any, post: bool) -> Region:
    start, end = _coordinate(start_raw, "start"), _coordinate(end_raw, "end")
    if reference is None or reference == "":
        if start is not None or end is not None:
            raise _invalid("start and end need a referenceName")
        raise _invalid("a region needs a referenceName")
    if not isinstance(reference, str):
        raise _invalid("referenceName must be a string")
    if reference == UNPLACED and (start is not None or end is not None):
        raise _invalid("referenceName=* (unplaced unmapped reads) takes no start or end")
    if start is not None and end is not None and (start > end or (post and start == end)):
        raise HtsgetError("InvalidRange", 400, f"start {start} is after end {end}")
    return Region(reference, start, end)


def _format(raw: Any, datatype: str) -> str:
    allowed = DATATYPES[datatype]
    if raw is None:
        return allowed[0]
    if not isinstance(raw, str) or raw.upper() not in allowed:
        raise HtsgetError(
            "UnsupportedFormat",
            400,
            f"format {str(raw)[:20]!r} is not served for {datatype}: use {' or '.join(allowed)}",
        )
    return raw.upper()


def _check_encryption(scheme: Any) -> None:
    """htsget 1.3's ``encryptionScheme``: none is served yet, so asking for one is refused as the spec says
    (UnsupportedFormat), never answered with plaintext the client would take for Crypt4GH."""
    if scheme is not None:
        raise HtsgetError(
            "UnsupportedFormat",
            400,
            f"encryptionScheme {str(scheme)[:20]!r} is not supported by this server: leave it out for plain data",
        )


def _check_tags(fields: Any, tags: Any, notags: Any) -> None:
    for name, value in (("fields", fields), ("tags", tags), ("notags", notags)):
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise _invalid(f"{name} must be a list of strings")
    unknown = sorted(set(fields or []) - set(FIELDS))
    if unknown:
        raise _invalid(f"unknown fields {unknown}: use {', '.join(FIELDS)}")
    both = sorted(set(tags or []) & set(notags or []))
    if both:
        raise _invalid(f"tags {both} are both included and excluded")


def _split(value: str | None) -> list[str] | None:
    return None if value is None else [v for v in value.split(",") if v]


def _get_request(request: Request, datatype: str) -> tuple[str, list[Region] | None, bool]:
    query = request.query_params
    _check_encryption(query.get("encryptionScheme"))
    fmt = _format(query.get("format"), datatype)
    klass = query.get("class")
    if klass not in (None, "header"):
        raise _invalid(f"class must be 'header' (or absent), not {klass[:20]!r}")
    header_only = klass == "header"
    others = [name for name in query if name not in ("format", "class")]
    if header_only and others:
        raise _invalid(f"class=header takes no other parameter than format (got {', '.join(sorted(others))})")
    _check_tags(_split(query.get("fields")), _split(query.get("tags")), _split(query.get("notags")))
    reference = query.get("referenceName")
    if reference is None and query.get("start") is None and query.get("end") is None:
        return fmt, None, header_only
    return fmt, [_region(reference, query.get("start"), query.get("end"), post=False)], header_only


async def _post_request(request: Request, datatype: str) -> tuple[str, list[Region] | None, bool]:
    """The ticket request in a POST body, read (within ``MAX_BODY``, see ``BodyLimit``) only once the
    caller has been authorised for the object."""
    if request.query_params:
        raise _invalid("a POST request carries its parameters in the JSON body, not in the URL query")
    raw = await request.body()
    try:
        body = parse_json(raw or b"{}")
    except InvalidJson as exc:
        raise _invalid(f"the request body is not JSON this server accepts ({exc})") from exc
    if not isinstance(body, dict):
        raise _invalid("the request body must be a JSON object")
    _check_encryption(body.get("encryptionScheme"))
    fmt = _format(body.get("format"), datatype)
    klass = body.get("class")
    if klass not in (None, "header"):
        raise _invalid("class must be 'header' (or absent)")
    _check_tags(body.get("fields"), body.get("tags"), body.get("notags"))
    header_only = klass == "header"
    if "regions" not in body or body["regions"] is None:
        return fmt, None, header_only
    regions = body["regions"]
    if header_only:
        raise _invalid("class=header takes no regions")
    if not isinstance(regions, list) or not regions or not all(isinstance(r, dict) for r in regions):
        raise _invalid("regions must be a non-empty list of {referenceName, start, end} objects")
    return fmt, [_region(r.get("referenceName"), r.get("start"), r.get("end"), post=True) for r in regions], header_only


def _ticket(
    request: Request, object_id: str, fmt: str, regions: list[Region] | None, header_only: bool
) -> dict[str, Any]:
    context = get_context(request)
    described = (
        "header"
        if header_only
        else ";".join(f"{r.reference_name}:{r.start or 0}-{'' if r.end is None else r.end}" for r in regions or [])
        or "all"
    )
    _, entity = authorize_object(
        request, Action.DOWNLOAD, object_id, audit=True, byte_range=f"htsget {fmt} {described}"
    )
    state = analysis_state(request, entity)
    if state != PUBLISHED:
        raise HtsgetError(
            "NotFound",
            404,
            f"object {object_id} is in analysis {entity.gnosId}, which is {state}: only published files are served",
        )
    try:
        with decision_scope(request_memo(request)):  # the analysis answer the state check just fetched
            siblings = context.metadata.sibling_files(entity)
    except MetadataUnavailable as exc:
        raise HtsgetError(
            "ServiceUnavailable", 503, f"the metadata server is unavailable ({exc}); try again shortly"
        ) from exc
    return context.htsget.ticket(entity, siblings, fmt, regions, header_only)


def _service_info(datatype: str) -> dict[str, Any]:
    return {
        "id": f"org.overture.score.htsget.{datatype}",
        "name": f"Score htsget ({datatype})",
        "type": {"group": "org.ga4gh", "artifact": "htsget", "version": "1.3.0"},
        "description": "Region slices of Score's objects: tickets of signed URLs straight to the object store",
        "organization": {"name": "Score", "url": "https://github.com/overture-stack/score"},
        "version": __version__,
        "htsget": {
            "datatype": datatype,
            "formats": list(DATATYPES[datatype]),
            "fieldsParameterEffective": False,
            "tagsParametersEffective": False,
        },
    }


def _ticket_parameters(datatype: str) -> list[dict[str, Any]]:
    """The query parameters of a GET ticket request (read by ``_get_request``), for the OpenAPI document."""
    coordinate = {"type": "integer", "minimum": 0, "maximum": MAX_COORDINATE}
    listed = {"type": "string", "description": "comma-separated"}
    return [
        query_parameter("format", {"type": "string", "enum": list(DATATYPES[datatype])}, "Default: the first listed"),
        query_parameter("class", {"type": "string", "enum": ["header"]}, "header: the header only, nothing else"),
        query_parameter("referenceName", {"type": "string", "minLength": 1}, "The region's reference; * = unplaced"),
        query_parameter("start", coordinate, "0-based start of the region (needs referenceName)"),
        query_parameter("end", coordinate, "0-based exclusive end of the region (needs referenceName)"),
        query_parameter("fields", listed, f"Fields to include: {', '.join(FIELDS)}"),
        query_parameter("tags", listed, "Tags to include"),
        query_parameter("notags", listed, "Tags to exclude"),
        query_parameter(
            "encryptionScheme", {"type": "string"}, "Not supported: any value is refused with UnsupportedFormat"
        ),
    ]


def _register(datatype: str) -> None:
    @router.get(
        f"/{datatype}/service-info",
        summary=f"htsget service-info for {datatype}",
        name=f"{datatype}_service_info",
        response_class=HtsgetResponse,
    )
    def service_info(request: Request) -> Response:
        return _respond(request, _service_info(datatype))

    @router.get(
        f"/{datatype}/{{object_id}}",
        summary=f"An htsget ticket for {datatype} (query parameters)",
        name=f"{datatype}_get",
        response_class=HtsgetResponse,
        responses=htsget_errors(400, 401, 403, 404, 503),
        openapi_extra={"parameters": _ticket_parameters(datatype), **token_optional(DOWNLOAD_SCOPES)},
    )
    def ticket_get(request: Request, object_id: str) -> Response:
        def handler() -> dict[str, Any]:
            fmt, regions, header_only = _get_request(request, datatype)
            return _ticket(request, object_id, fmt, regions, header_only)

        return _htsget_errors(request, handler)

    @router.post(
        f"/{datatype}/{{object_id}}",
        summary=f"An htsget ticket for {datatype} (JSON body)",
        name=f"{datatype}_post",
        response_class=HtsgetResponse,
        responses=htsget_errors(400, 401, 403, 404, 413, 503),
        openapi_extra={**json_body(HtsgetRequest), **token_optional(DOWNLOAD_SCOPES)},
    )
    async def ticket_post(request: Request, object_id: str) -> Response:
        # Authorise before reading the body, so an unauthorised caller cannot make the server read it;
        # the allowing audit line is written with the requested regions, by _ticket.
        refused = await run_in_threadpool(_refusal, request, object_id)
        if refused is not None:
            return refused
        try:
            fmt, regions, header_only = await _post_request(request, datatype)
        except HtsgetError as exc:
            return _error(request, exc.name, exc.status, exc.message)
        except ApiError as exc:  # the body limit
            return _api_error(request, exc)
        # The ticket itself does blocking store I/O: run it off the event loop.
        return await run_in_threadpool(
            _htsget_errors, request, lambda: _ticket(request, object_id, fmt, regions, header_only)
        )

    @router.options(f"/{datatype}/{{object_id}}", include_in_schema=False, name=f"{datatype}_preflight")
    def preflight(request: Request, object_id: str) -> Response:
        origin = request.headers.get("origin", "*")
        return Response(
            status_code=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": request.headers.get(
                    "access-control-request-headers", "authorization, content-type"
                ),
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            },
        )


for _datatype in DATATYPES:
    _register(_datatype)
