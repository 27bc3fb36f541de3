"""GA4GH DRS 1.4 at ``/ga4gh/drs/v1``: files as objects, analyses as bundles, signed URLs as access methods.

Every object is checked exactly as ``GET /download/{id}`` checks it (``authorize_object``: the same policy,
the same audit lines, written whenever a URL is issued) and only published files are served (htsget's
404). Open files carry their signed URL inline; every file has the ``access_id`` a token exchanges at
``/access``. Every failure answers DRS's error JSON (``msg``, ``status_code``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from score.server.api.bodies import InvalidJson, parse_json
from score.server.api.deps import audited_principal, get_context
from score.server.api.drs_schemas import (
    AccessURL,
    Authorizations,
    BulkAccessURLs,
    BulkObjectAccessIds,
    BulkObjectIds,
    BulkObjects,
    DrsError,
    DrsObject,
    DrsServiceInfo,
    PassportsBody,
    PostObjectBody,
)
from score.server.api.guards import analysis_state, authorize_object, registered_entity, request_memo, valid_object_id
from score.server.api.openapi import DOWNLOAD_SCOPES, json_body, query_parameter, token_optional
from score.server.auth.policy import Action
from score.server.errors import ApiError, BadRequest, NotFound, Unavailable
from score.server.metadata.base import PUBLISHED, Entity, MetadataUnavailable, decision_scope
from score.server.services import drs
from score.server.services.drs import ACCESS_ID, MAX_BULK, StoredFile

PREFIX = "/ga4gh/drs/v1"
MAX_BODY = 256 * 1024
_log = logging.getLogger("score.drs")

router = APIRouter(prefix=PREFIX, tags=["drs"])


_ERROR_EXAMPLES = {
    400: "invalid object id 'a b': expected a UUID such as 3f2a...-...",
    401: "downloading a controlled-access file needs an access token; pass a valid access token",
    403: "the token lacks the scope to download controlled-access files of study ABC123",
    404: "object bf9a81ff-e126-53c1-9003-c70efb9dd8aa is in analysis 978ebcaa-617e-4bf0-879f-3ab94a6018c9, "
    "which is UNPUBLISHED: only published files are served",
    413: "bulk_object_ids names 101 items; at most 100 per request",
    500: "internal error; it was logged, please report it",
    503: "the metadata server is unavailable (connection refused); try again shortly",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """DRS's error answers for ``codes``, each with an example."""
    return {
        code: {
            "model": DrsError,
            "description": f"DRS error ({code})",
            "content": {"application/json": {"example": {"msg": _ERROR_EXAMPLES[code], "status_code": code}}},
        }
        for code in codes
    }


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"msg": message, "status_code": status}, status_code=status, headers=headers)


def _answer(handler: Callable[[], Any]) -> Response:
    """Run ``handler``; every refusal, and any defect, in DRS's error shape."""
    try:
        return JSONResponse(handler())
    except ApiError as exc:
        return _error(exc.status, exc.message, exc.headers)
    except Exception:
        _log.exception("DRS request failed")
        return _error(500, "internal error; it was logged, please report it")


# ---- resolution (the /download checks, then the document) -------------------------------------------


def _is_open(entity: Entity) -> bool:
    return entity.access.strip().lower() == "open"


def _require_published(request: Request, entity: Entity) -> None:
    state = analysis_state(request, entity)
    if state != PUBLISHED:
        raise NotFound(
            f"object {entity.id} is in analysis {entity.gnosId}, which is {state}: only published files are served"
        )


def _stored(request: Request, entity: Entity) -> StoredFile:
    uploads = get_context(request).uploads
    spec = uploads.stored_spec(entity.id)
    head = uploads.data_head(entity.id)
    return StoredFile(entity, spec.objectSize, spec.objectMd5, head.last_modified_ms if head else None)


def _signed_url(request: Request, object_id: str) -> str:
    """The unranged signed read ``/download?external=true`` hands out: usable with or without a Range."""
    spec = get_context(request).downloads.specification(object_id, 0, -1, True, False)
    url = spec.parts[0].url
    assert url is not None  # exclude_urls is False
    return url


def _lookup(request: Request, object_id: str) -> Entity | None:
    try:
        with decision_scope(request_memo(request)):
            return get_context(request).metadata.entity(object_id)
    except MetadataUnavailable as exc:
        raise Unavailable(f"the metadata server is unavailable ({exc}); try again shortly") from exc


def _analysis_files(request: Request, analysis_id: str) -> list[Entity]:
    try:
        with decision_scope(request_memo(request)):
            return get_context(request).metadata.analysis_entities(analysis_id)
    except MetadataUnavailable as exc:
        raise Unavailable(f"the metadata server is unavailable ({exc}); try again shortly") from exc


def _object(request: Request, object_id: str) -> dict[str, Any]:
    """A file's DrsObject, or an analysis' bundle, for this caller."""
    valid_object_id(object_id)
    settings = get_context(request).settings
    entity = _lookup(request, object_id)
    if entity is None:
        return _bundle(request, object_id)
    _, entity = authorize_object(request, Action.DOWNLOAD, object_id, audit=_is_open(entity), byte_range="drs")
    _require_published(request, entity)
    stored = _stored(request, entity)
    return drs.blob(settings, stored, _signed_url(request, object_id) if _is_open(entity) else None)


def _bundle(request: Request, analysis_id: str) -> dict[str, Any]:
    """An analysis, served when the caller may read every one of its files (no URLs are issued)."""
    files = _analysis_files(request, analysis_id)
    if not files:
        raise NotFound(f"no file or analysis {analysis_id} is registered in the metadata server")
    entities = [authorize_object(request, Action.DOWNLOAD, f.id)[1] for f in files]
    _require_published(request, entities[0])
    return drs.bundle(get_context(request).settings, analysis_id, [_stored(request, e) for e in entities])


def _access(request: Request, object_id: str, access_id: str) -> dict[str, Any]:
    """The signed URL behind ``access_id``: the checks of ``/download`` again, audited as a URL issued."""
    valid_object_id(object_id)
    if _lookup(request, object_id) is None and _analysis_files(request, object_id):
        raise NotFound(f"{object_id} is a bundle (an analysis), which has no access methods: use its contents'")
    if access_id != ACCESS_ID:  # before the audited check: an "allow" line means a URL was asked for
        raise NotFound(f"object {object_id} has no access method {access_id!r}; its access_id is {ACCESS_ID!r}")
    _, entity = authorize_object(request, Action.DOWNLOAD, object_id, audit=True, byte_range="drs")
    _require_published(request, entity)
    return {"url": _signed_url(request, object_id)}


# ---- request parsing ------------------------------------------------------------------------------------


def _expand(request: Request) -> bool:
    raw = request.query_params.get("expand")
    if raw is None or raw.lower() == "false":
        return False
    if raw.lower() == "true":
        return True
    raise BadRequest(f"expand must be true or false, not {raw[:20]!r}")


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = parse_json(raw)
    except InvalidJson as exc:
        raise BadRequest(f"the request body is not JSON this server accepts ({exc})") from exc
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    passports = body.get("passports")
    if passports is not None and not (isinstance(passports, list) and all(isinstance(p, str) for p in passports)):
        raise BadRequest("passports must be a list of strings")
    return body


def _string_list(value: Any, name: str) -> list[str]:
    if not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
        raise BadRequest(f"{name} must be a non-empty list of strings")
    if len(value) > MAX_BULK:
        raise ApiError(f"{name} names {len(value)} items; at most {MAX_BULK} per request", status=413)
    return value


def _bulk_answer(request: Request, calls: list[tuple[str, Callable[[], Any]]], resolved_key: str) -> dict[str, Any]:
    """A bulk request's answer. A token that is refused refuses the request whole (401, audited), not item by
    item; otherwise each item is resolved on its own and the refusals are grouped by status as DRS's
    ``unresolved_drs_objects``."""
    audited_principal(request, Action.DOWNLOAD.value, request.url.path)
    resolved, failed = [], {}
    for object_id, resolve in calls:
        try:
            resolved.append(resolve())
        except ApiError as exc:
            failed.setdefault(exc.status, []).append(object_id)
    unresolved = len(calls) - len(resolved)
    return {
        "summary": {"requested": len(calls), "resolved": len(resolved), "unresolved": unresolved},
        "unresolved_drs_objects": [{"error_code": code, "object_ids": ids} for code, ids in sorted(failed.items())],
        resolved_key: resolved,
    }


# ---- routes -----------------------------------------------------------------------------------------------

_EXPAND = query_parameter("expand", {"type": "boolean"}, "Bundles: list nested contents too (analyses do not nest)")
_TOKEN = token_optional(DOWNLOAD_SCOPES)


@router.get("/service-info", summary="DRS service-info", response_model=DrsServiceInfo)
def service_info(request: Request) -> Response:
    return JSONResponse(drs.service_info(get_context(request).settings))


@router.post(
    "/objects",
    summary="DrsObjects of several ids (bulk)",
    response_model=BulkObjects,
    responses=_errors(400, 401, 403, 404, 413, 500, 503),
    openapi_extra={"parameters": [_EXPAND], **json_body(BulkObjectIds), **_TOKEN},
)
async def bulk_objects(request: Request) -> Response:
    try:
        ids = _string_list((await _body(request)).get("bulk_object_ids"), "bulk_object_ids")
        _expand(request)
    except ApiError as exc:
        return _error(exc.status, exc.message)

    calls = [(i, lambda i=i: _object(request, i)) for i in ids]
    return await run_in_threadpool(_answer, lambda: _bulk_answer(request, calls, "resolved_drs_object"))


@router.post(
    "/objects/access",
    summary="Signed URLs of several objects (bulk)",
    response_model=BulkAccessURLs,
    responses=_errors(400, 401, 403, 404, 413, 500, 503),
    openapi_extra={**json_body(BulkObjectAccessIds), **_TOKEN},
)
async def bulk_access(request: Request) -> Response:
    try:
        body = await _body(request)
        entries = body.get("bulk_object_access_ids")
        if not (isinstance(entries, list) and entries and all(isinstance(e, dict) for e in entries)):
            raise BadRequest("bulk_object_access_ids must be a non-empty list of {bulk_object_id, bulk_access_ids}")
        pairs = []
        for entry in entries:
            object_id = entry.get("bulk_object_id")
            if not isinstance(object_id, str):
                raise BadRequest("each bulk_object_access_ids item needs a bulk_object_id string")
            pairs += [(object_id, a) for a in _string_list(entry.get("bulk_access_ids"), "bulk_access_ids")]
        if len(pairs) > MAX_BULK:
            raise ApiError(f"{len(pairs)} accesses requested; at most {MAX_BULK} per request", status=413)
    except ApiError as exc:
        return _error(exc.status, exc.message)

    def one(object_id: str, access_id: str) -> dict[str, Any]:
        return {"drs_object_id": object_id, "drs_access_id": access_id, **_access(request, object_id, access_id)}

    calls = [(o, lambda o=o, a=a: one(o, a)) for o, a in pairs]
    return await run_in_threadpool(_answer, lambda: _bulk_answer(request, calls, "resolved_drs_object_access_urls"))


@router.options(
    "/objects/{object_id}",
    summary="How to authorise requests for an object",
    response_model=Authorizations,
    responses=_errors(400, 404, 500, 503),
)
def object_authorizations(request: Request, object_id: str) -> Response:
    def handler() -> dict[str, Any]:
        valid_object_id(object_id)
        entity = _lookup(request, object_id)
        if entity is None:
            files = _analysis_files(request, object_id)
            if not files:
                registered_entity(request, object_id)  # the 404 /download gives
            access = "open" if all(_is_open(f) for f in files) else "controlled"
            return drs.authorizations(get_context(request).settings, object_id, access)
        return drs.authorizations(get_context(request).settings, object_id, entity.access)

    return _answer(handler)


@router.get(
    "/objects/{object_id}",
    summary="A DrsObject: a file, or an analysis as a bundle",
    response_model=DrsObject,
    responses=_errors(400, 401, 403, 404, 500, 503),
    openapi_extra={"parameters": [_EXPAND], **_TOKEN},
)
def get_object(request: Request, object_id: str) -> Response:
    def handler() -> dict[str, Any]:
        _expand(request)
        return _object(request, object_id)

    return _answer(handler)


@router.post(
    "/objects/{object_id}",
    summary="A DrsObject (passports in the body are not used: send a bearer token)",
    response_model=DrsObject,
    responses=_errors(400, 401, 403, 404, 413, 500, 503),
    openapi_extra={**json_body(PostObjectBody), **_TOKEN},
)
async def post_object(request: Request, object_id: str) -> Response:
    try:
        expand = (await _body(request)).get("expand")
        if expand is not None and not isinstance(expand, bool):
            raise BadRequest("expand must be true or false")
    except ApiError as exc:
        return _error(exc.status, exc.message)
    return await run_in_threadpool(_answer, lambda: _object(request, object_id))


@router.get(
    "/objects/{object_id}/access/{access_id}",
    summary="A signed URL for an object's access method",
    response_model=AccessURL,
    responses=_errors(400, 401, 403, 404, 500, 503),
    openapi_extra=_TOKEN,
)
def get_access(request: Request, object_id: str, access_id: str) -> Response:
    return _answer(lambda: _access(request, object_id, access_id))


@router.post(
    "/objects/{object_id}/access/{access_id}",
    summary="A signed URL for an object's access method (passports in the body are not used)",
    response_model=AccessURL,
    responses=_errors(400, 401, 403, 404, 413, 500, 503),
    openapi_extra={**json_body(PassportsBody), **_TOKEN},
)
async def post_access(request: Request, object_id: str, access_id: str) -> Response:
    try:
        await _body(request)
    except ApiError as exc:
        return _error(exc.status, exc.message)
    return await run_in_threadpool(_answer, lambda: _access(request, object_id, access_id))
