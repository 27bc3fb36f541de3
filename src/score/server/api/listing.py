"""``GET /listing`` and ``GET /profile``: any authenticated caller (reference §2.5)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from score.core.models import ObjectInfo
from score.server.api.deps import authorize, get_context
from score.server.api.openapi import ANY_SCOPE, EXAMPLE_OBJECT_ID, json_examples, score_errors, token_required
from score.server.auth.policy import Action
from score.server.storage.base import SignsBlobUploads

router = APIRouter(tags=["listing"])
MAX_PAGE = 10_000
_HEX = "[0-9a-fA-F]"
_UUID = f"^{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}$"
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
def listing(
    request: Request,
    limit: int | None = Query(
        None,
        ge=1,
        le=MAX_PAGE,
        description='At most this many objects, in id order; a `Link: <...>; rel="next"` header then gives the '
        "next page. Without it, every object (as the Java server answers)",
    ),
    after: str | None = Query(None, pattern=_UUID, description="Only objects whose id sorts after this one"),
) -> Response:
    authorize(request, Action.LIST)
    # As Score does: every UUID-named blob under data/ (blobs written by other tools too), and the objects
    # the Java server left in legacy places (Azure: the container root). An object is listed only once its
    # upload was verified (in-progress parts live elsewhere; a blob upload's blob is checked first).
    heads = get_context(request).uploads.listing(after=after or "", limit=limit)
    infos = [ObjectInfo(id=h.key, lastModified=h.last_modified_ms, size=h.size).to_wire() for h in heads]
    response = JSONResponse(infos)
    if limit is not None and len(heads) == limit:
        following = f"{request.url.path}?{urlencode({'limit': limit, 'after': heads[-1].key})}"
        response.headers["Link"] = f'<{following}>; rel="next"'  # relative: right behind any proxy
    return response


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
