"""``GET /listing`` and ``GET /profile``: any authenticated caller (reference §2.5)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from score.core.models import ObjectInfo
from score.server.api.deps import authorize, get_context
from score.server.api.openapi import ANY_SCOPE, EXAMPLE_OBJECT_ID, json_examples, score_errors, token_required
from score.server.auth.policy import Action
from score.server.storage.base import SignsBlobUploads

router = APIRouter(tags=["listing"])
_LISTED = [{"id": EXAMPLE_OBJECT_ID, "lastModified": 1748856600000, "size": 31457280}]


@router.get(
    "/listing",
    response_model=list[ObjectInfo],
    summary="Every finished object: id, size, mtime",
    responses={
        200: {"content": json_examples(one_object=_LISTED)},
        **score_errors(401, 503),
    },
    openapi_extra=token_required(ANY_SCOPE),
)
def listing(request: Request) -> Response:
    authorize(request, Action.LIST)
    # As Score does: every UUID-named blob under data/ (blobs written by other tools too), and the objects
    # the Java server left in legacy places (Azure: the container root). An object is listed only once its
    # upload was verified (in-progress parts live elsewhere; a blob upload's blob is checked first).
    infos = [
        ObjectInfo(id=h.key, lastModified=h.last_modified_ms, size=h.size).to_wire()
        for h in get_context(request).uploads.listing()
    ]
    return JSONResponse(infos)


@router.get(
    "/profile",
    response_class=PlainTextResponse,
    summary="Which upload protocol clients should use",
    responses=score_errors(401),
    openapi_extra=token_required(ANY_SCOPE),
)
def profile(request: Request) -> str:
    """``s3`` for every backend that takes part PUTs with ETags (local included), ``az`` where the store signs
    blob uploads (Azure): the Java client then writes the whole blob with the Azure SDK."""
    authorize(request, Action.LIST, doing="reading the upload profile")
    return "az" if isinstance(get_context(request).store, SignsBlobUploads) else "s3"
