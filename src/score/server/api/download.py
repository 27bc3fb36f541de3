"""Download endpoints (reference §2.4): ping and download specifications with signed URLs."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from score.core.models import ObjectSpecification
from score.server.api.deps import get_context, run_blocking
from score.server.api.guards import authorize_object, require_state
from score.server.api.openapi import (
    DOWNLOAD_SCOPES,
    DOWNLOAD_SPEC_EXAMPLE,
    json_examples,
    score_errors,
    token_optional,
)
from score.server.auth.policy import Action
from score.server.metadata.base import PUBLISHED
from score.server.observability.metrics import counted

router = APIRouter(prefix="/download", tags=["download"])
MAX_OFFSET = 2**63 - 1  # a Java long, as Score's


@router.get(
    "/ping",
    response_class=PlainTextResponse,
    summary="A signed URL of the sentinel object",
    responses=score_errors(503),
)
def ping(request: Request) -> str:
    return get_context(request).downloads.sentinel_url()


@router.get(
    "/{object_id}",
    response_model=ObjectSpecification,
    summary="Signed URLs to read an object or a range",
    responses={
        200: {
            "content": json_examples(
                whole_object=DOWNLOAD_SPEC_EXAMPLE,
                exclude_urls={
                    **DOWNLOAD_SPEC_EXAMPLE,
                    "parts": [{**part, "url": None} for part in DOWNLOAD_SPEC_EXAMPLE["parts"]],
                },
            )
        },
        **score_errors(400, 401, 403, 404, 503),
    },
    openapi_extra=token_optional(DOWNLOAD_SCOPES),
)
async def download(
    request: Request,
    object_id: str,
    offset: int = Query(0, ge=0, le=MAX_OFFSET, description="First byte of the range"),
    length: int = Query(-1, ge=-1, le=MAX_OFFSET, description="Bytes to read; -1 reads to the end"),
    external: bool = Query(False, description="One unranged URL usable with any Range (curl, htslib)"),
    exclude_urls: bool = Query(False, alias="exclude-urls", description="Sizes and MD5s only, no URLs"),
) -> Response:
    spec = await run_blocking(request, _specification, request, object_id, offset, length, external, exclude_urls)
    return JSONResponse(counted("download", spec).to_wire())


def _specification(
    request: Request, object_id: str, offset: int, length: int, external: bool, exclude_urls: bool
) -> ObjectSpecification:
    """The checks and the signed URLs of a download specification: a few reads of the registry and the store."""
    byte_range = None if (offset == 0 and length == -1) else f"{offset}+{length}"
    _, entity = authorize_object(request, Action.DOWNLOAD, object_id, audit=not exclude_urls, byte_range=byte_range)
    if not exclude_urls:
        require_state(request, entity, PUBLISHED)
    return get_context(request).downloads.specification(object_id, offset, length, external, exclude_urls)
