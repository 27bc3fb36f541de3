"""``GET /listing`` and ``GET /profile``: any authenticated caller (reference §2.5)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from score.core.ids import is_uuid
from score.core.models import ObjectInfo
from score.server.api.deps import authorize, get_context
from score.server.api.openapi import ANY_SCOPE, EXAMPLE_OBJECT_ID, json_examples, score_errors, token_required
from score.server.auth.policy import Action
from score.server.services.uploads import DATA_DIR, guard

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
    store = get_context(request).store
    # As Score does: every UUID-named blob under data/. A blob exists only once its upload was verified
    # and completed (in-progress parts live elsewhere), and blobs written by other tools are listed too.
    infos = [
        ObjectInfo(id=name, lastModified=h.last_modified_ms, size=h.size).to_wire()
        for h in guard(lambda: list(store.list(f"{DATA_DIR}/")))
        for name in [h.key[len(DATA_DIR) + 1 :]]
        if is_uuid(name)
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
    """``s3`` for every backend that takes part PUTs with ETags (local included), ``az`` for Azure."""
    authorize(request, Action.LIST, doing="reading the upload profile")
    return "az" if get_context(request).store.name == "azure" else "s3"
