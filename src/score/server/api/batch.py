"""Batch endpoints: one request for many objects, each object answered on its own (additions to Score's API).

Score's API costs at least one round trip per object and call; a job of thousands of small files paid
them one after another. These endpoints take up to ``MAX_ITEMS`` objects and run exactly the checks of
the single-object calls for each (authorisation, audit, analysis state, registered size and MD5), several
objects at a time, answering ``200`` with every object's outcome: a ``specs`` (or ``finalized``) list and
an ``errors`` list of ``{objectId, status, message}`` with the status the single call would have given.
The whole request is refused only for what concerns all of it: a bad token (401), a malformed body (400).

* ``POST /batch/download/specs``: ``GET /download/{id}?offset=0&length=-1`` for many ids;
* ``POST /batch/upload/initiate``: ``POST /upload/{id}/uploads`` for many files;
* ``POST /batch/upload/finalize``: ``POST /upload/{id}`` for many uploads, each with its parts
  (``partNumber``, ``md5``, ``etag``) instead of one ``POST /upload/{id}/parts`` call per part.

Bodies are read after the caller's token is verified, within ``BodyLimit``'s bound for ``/batch``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from score.core.ids import SAFE_ID_PATTERN
from score.core.models import CompletedPart, ObjectSpecification
from score.server.api.bodies import InvalidJson, parse_json
from score.server.api.deps import audited_principal, get_context
from score.server.api.guards import authorize_object, require_state
from score.server.api.openapi import (
    BATCH_UPLOAD_SCOPES,
    DOWNLOAD_SCOPES,
    DOWNLOAD_SPEC_EXAMPLE,
    EXAMPLE_MD5,
    EXAMPLE_OBJECT_ID,
    EXAMPLE_OTHER_ID,
    EXAMPLE_UPLOAD_ID,
    NOT_REGISTERED_EXAMPLE,
    UPLOAD_SPEC_EXAMPLE,
    json_body,
    json_examples,
    score_errors,
    token_optional,
)
from score.server.auth.policy import Action
from score.server.errors import ApiError, BadRequest
from score.server.metadata.base import PUBLISHED, UNPUBLISHED
from score.server.observability.metrics import counted

MAX_ITEMS = 1000  # objects per request: a bounded body, a bounded answer, a bounded time
WORKERS = 8  # objects handled at once: store round trips overlap, the registry and CPU are not flooded
WAITED = 0.002  # seconds: an object that took longer waited on a round trip; the rest go to WORKERS threads
MAX_BODY = 4 * 1024 * 1024  # 1,000 finalizes of a few parts each fit with room to spare

router = APIRouter(prefix="/batch", tags=["batch"])

_ObjectId = Field(pattern=SAFE_ID_PATTERN, max_length=128)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BatchError(BaseModel):
    objectId: str
    status: int = Field(description="What the single-object call would have answered")
    message: str


class SpecsRequest(_Strict):
    objectIds: list[str] = Field(min_length=1, max_length=MAX_ITEMS)
    excludeUrls: bool = Field(False, description="Sizes and MD5s only (no URLs, no PUBLISHED check)")


class SpecsAnswer(BaseModel):
    specs: list[ObjectSpecification]
    errors: list[BatchError]


class InitiateItem(_Strict):
    objectId: str = _ObjectId
    fileSize: int = Field(ge=0, le=2**63 - 1)
    md5: str | None = Field(None, pattern=r"^[0-9a-fA-F]{32}$")
    overwrite: bool = False
    replaceInProgress: bool = Field(
        True, description="Abort an upload of the object already in progress (as the single call does); false: 409"
    )
    wholePut: bool = Field(
        False,
        description=(
            "The client can send a one-part file in one PUT with its Content-MD5. The server may then answer "
            "a whole-object upload (uploadId starting with '~put.'): one part whose URL creates the object only "
            "with the registered bytes; no part records; finalize as usual"
        ),
    )


class InitiateRequest(_Strict):
    uploads: list[InitiateItem] = Field(min_length=1, max_length=MAX_ITEMS)


class InitiateAnswer(BaseModel):
    specs: list[ObjectSpecification]
    errors: list[BatchError]


class FinalizeItem(_Strict):
    objectId: str = _ObjectId
    uploadId: str = Field(min_length=1, max_length=200)
    md5: str | None = Field(None, pattern=r"^[0-9a-fA-F]{32}$", description="MD5 the client computed")
    parts: list[CompletedPart] | None = Field(
        None, description="Every part with its MD5 and ETag; absent: the parts recorded with /upload/{id}/parts"
    )


class FinalizeRequest(_Strict):
    uploads: list[FinalizeItem] = Field(min_length=1, max_length=MAX_ITEMS)


class FinalizeAnswer(BaseModel):
    finalized: list[str] = Field(description="Object ids now finalized (or finalized before by this upload)")
    errors: list[BatchError]


_ERRORS = score_errors(400, 401, 413, 503)
# Examples: one object answered, one refused (not registered), as a job of several objects sees it.
_IDS = [EXAMPLE_OBJECT_ID, EXAMPLE_OTHER_ID]
_PARTS = [
    {"partNumber": 1, "md5": "8a1c4f9b3e2d7a6c5b4e3f2a1d0c9b8a", "etag": "8a1c4f9b3e2d7a6c5b4e3f2a1d0c9b8a"},
    {"partNumber": 2, "md5": "1f2e3d4c5b6a79881726354453627181", "etag": "1f2e3d4c5b6a79881726354453627181"},
]


def _answer_example(key: str, done: Any) -> dict[int | str, Any]:
    return {200: {"content": json_examples(one_done_one_refused={key: done, "errors": [NOT_REGISTERED_EXAMPLE]})}}


async def _body(request: Request, model: type[BaseModel]) -> Any:
    """The caller's token is checked first; then the bounded body, parsed as ``model`` (400 if it is not).

    Strictly: JSON types are the documented ones (``"wholePut": 0`` or ``"partNumber": false`` is refused, not
    coerced), so the OpenAPI schema of these bodies is exactly what the server accepts."""
    await run_in_threadpool(audited_principal, request, "batch", request.url.path)
    try:
        return model.model_validate(parse_json(await request.body()), strict=True)
    except InvalidJson as exc:
        raise BadRequest(f"the body is not JSON this server accepts ({exc})") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}" for err in exc.errors()
        )
        raise BadRequest(f"invalid request: {problems[:2000]}") from exc


def handled_in_turn(items: list[Any], handle: Callable[[Any], Any]) -> list[Any]:
    """``handle(item)`` for every item, in order: in this thread while items answer without waiting (a
    download specification from the registry's record: ~0.5 ms of CPU); from the first one that waited
    longer than ``WAITED`` (a store or a remote Song round trip), the rest on ``WORKERS`` threads, so the
    waits overlap. Threads gain nothing for work that holds the GIL: 250 recorded specifications cost 1.0 ms
    of CPU each on 8 threads and 0.35 ms in turn (a call took 230 ms, then 88 ms)."""
    results: list[Any] = []
    remaining = iter(items)
    for item in remaining:
        started = time.perf_counter()
        results.append(handle(item))
        if time.perf_counter() - started > WAITED:
            break
    rest = list(remaining)
    if rest:
        with ThreadPoolExecutor(max_workers=min(WORKERS, len(rest)), thread_name_prefix="batch") as pool:
            results.extend(pool.map(handle, rest))
    return results


async def _answer(
    key: str, items: list[Any], handle: Callable[[Any], Any], object_id: Callable[[Any], str]
) -> JSONResponse:
    """``handle(item)`` for every item off the event loop (``handled_in_turn``); the results under ``key``, and
    each item refused with an ``ApiError`` as that item's BatchError under ``errors``."""

    def one(item: Any) -> Any:
        try:
            return handle(item)
        except ApiError as exc:
            return BatchError(objectId=object_id(item), status=exc.status, message=exc.message)

    results = await run_in_threadpool(handled_in_turn, items, one)
    errors = [r.model_dump() for r in results if isinstance(r, BatchError)]
    return JSONResponse({key: [r for r in results if not isinstance(r, BatchError)], "errors": errors})


@router.post(
    "/download/specs",
    response_model=SpecsAnswer,
    summary="Download specifications of many objects (each as GET /download/{id}?offset=0&length=-1)",
    responses={**_answer_example("specs", [DOWNLOAD_SPEC_EXAMPLE]), **_ERRORS},
    openapi_extra={
        **json_body(SpecsRequest, two_objects={"objectIds": _IDS}, sizes_only={"objectIds": _IDS, "excludeUrls": True}),
        **token_optional(DOWNLOAD_SCOPES),
    },
)
async def download_specs(request: Request) -> JSONResponse:
    body: SpecsRequest = await _body(request, SpecsRequest)
    context = get_context(request)

    def spec(object_id: str) -> dict[str, Any]:
        _, entity = authorize_object(request, Action.DOWNLOAD, object_id, audit=not body.excludeUrls)
        if not body.excludeUrls:
            require_state(request, entity, PUBLISHED)
        return counted("download", context.downloads.specification(object_id, 0, -1, False, body.excludeUrls)).to_wire()

    return await _answer("specs", list(dict.fromkeys(body.objectIds)), spec, str)


@router.post(
    "/upload/initiate",
    response_model=InitiateAnswer,
    summary="Start many uploads (each as POST /upload/{id}/uploads)",
    responses={**_answer_example("specs", [UPLOAD_SPEC_EXAMPLE]), **_ERRORS},
    openapi_extra={
        **json_body(
            InitiateRequest,
            two_files={
                "uploads": [
                    {"objectId": EXAMPLE_OBJECT_ID, "fileSize": 31457280, "md5": EXAMPLE_MD5},
                    {"objectId": EXAMPLE_OTHER_ID, "fileSize": 6, "md5": "b1946ac92492d2347c6235b4d2611184"},
                ]
            },
        ),
        **token_optional(BATCH_UPLOAD_SCOPES),
    },
)
async def initiate(request: Request) -> JSONResponse:
    body: InitiateRequest = await _body(request, InitiateRequest)
    uploads = get_context(request).uploads

    def start(item: InitiateItem) -> dict[str, Any]:
        _, entity = authorize_object(request, Action.UPLOAD, item.objectId, audit=True)
        require_state(request, entity, UNPUBLISHED)
        started = uploads.initiate(
            item.objectId, item.fileSize, item.md5, item.overwrite, entity, item.replaceInProgress, item.wholePut
        )
        return counted("upload", started).to_wire()

    _unique(item.objectId for item in body.uploads)
    return await _answer("specs", body.uploads, start, lambda i: i.objectId)


@router.post(
    "/upload/finalize",
    response_model=FinalizeAnswer,
    summary="Finalize many uploads (each as POST /upload/{id}, with its parts)",
    responses={**_answer_example("finalized", [EXAMPLE_OBJECT_ID]), **_ERRORS},
    openapi_extra={
        **json_body(
            FinalizeRequest,
            with_parts={
                "uploads": [
                    {"objectId": EXAMPLE_OBJECT_ID, "uploadId": EXAMPLE_UPLOAD_ID, "md5": EXAMPLE_MD5, "parts": _PARTS},
                    {"objectId": EXAMPLE_OTHER_ID, "uploadId": "7c9e6679742540de944be07fc1f90ae7"},
                ]
            },
        ),
        **token_optional(BATCH_UPLOAD_SCOPES),
    },
)
async def finalize(request: Request) -> JSONResponse:
    body: FinalizeRequest = await _body(request, FinalizeRequest)
    uploads = get_context(request).uploads

    def finish(item: FinalizeItem) -> str:
        _, entity = authorize_object(request, Action.UPLOAD, item.objectId)
        require_state(request, entity, UNPUBLISHED)
        uploads.finalize(item.objectId, item.uploadId, item.md5, entity, item.parts)
        return item.objectId

    _unique(item.objectId for item in body.uploads)
    return await _answer("finalized", body.uploads, finish, lambda i: i.objectId)


def _unique(object_ids: Any) -> None:
    seen: set[str] = set()
    for object_id in object_ids:
        if object_id in seen:
            raise BadRequest(f"object {object_id} appears twice in the request; name each object once")
        seen.add(object_id)
