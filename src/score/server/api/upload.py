"""Upload endpoints (reference §2.3): thin HTTP layer over the UploadService."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from score.core.ids import UPLOAD_ID_PATTERN
from score.core.md5 import MD5_PATTERN
from score.core.models import ObjectSpecification, UploadProgress
from score.server.api.deps import get_context
from score.server.api.guards import authorize_object, require_state
from score.server.api.openapi import UPLOAD_SCOPES, UPLOAD_SPEC_EXAMPLE, json_examples, score_errors, token_required
from score.server.auth.policy import Action
from score.server.metadata.base import UNPUBLISHED
from score.server.observability.metrics import counted

router = APIRouter(prefix="/upload", tags=["upload"])
MAX_FILE_SIZE = 2**63 - 1  # a Java long, as Score's; each store has its own, lower limit (checked at initiate)
MAX_PARTS = 10_000  # S3's limit, which the part calculator keeps to
# Documented, not enforced by FastAPI: the service refuses these with messages that say what to send.
UPLOAD_ID_SCHEMA = {"pattern": UPLOAD_ID_PATTERN}
MD5_SCHEMA = {"pattern": MD5_PATTERN}


@router.post(
    "/{object_id}/uploads",
    response_model=ObjectSpecification,
    summary="Initiate a multipart upload",
    description=(
        "On Azure, as the Java server answers there: one part covering the file, whose URL is a blob SAS the "
        "client's Azure SDK writes the whole blob with (no part records, no finalize). The object becomes "
        "visible once its blob has the declared size and the expected MD5. Clients that want parallel parts "
        "on every store use POST /batch/upload/initiate."
    ),
    responses={
        200: {"content": json_examples(two_parts=UPLOAD_SPEC_EXAMPLE)},
        **score_errors(400, 401, 403, 404, 409, 503, 507),
    },
    openapi_extra=token_required(UPLOAD_SCOPES),
)
def initiate(
    request: Request,
    object_id: str,
    fileSize: int = Query(..., ge=0, le=MAX_FILE_SIZE, description="Size of the file in bytes"),
    md5: str | None = Query(
        None, json_schema_extra=MD5_SCHEMA, description="MD5 (hex) of the whole file, checked at finalize"
    ),
    overwrite: bool = Query(False, description="Replace an existing object"),
) -> Response:
    _, entity = authorize_object(request, Action.UPLOAD, object_id, audit=True)
    require_state(request, entity, UNPUBLISHED)
    # The Java client's call: on a store that signs blob uploads (Azure) it writes the whole blob itself.
    spec = get_context(request).uploads.initiate(object_id, fileSize, md5, overwrite, entity, blob=True)
    return JSONResponse(counted("upload", spec).to_wire())


@router.post(
    "/{object_id}/parts",
    summary="Record a part as uploaded (after its PUT succeeded)",
    response_class=Response,
    responses=score_errors(400, 401, 403, 404, 503, 507),
    openapi_extra=token_required(UPLOAD_SCOPES),
)
def finalize_part(
    request: Request,
    object_id: str,
    partNumber: int = Query(..., ge=1, le=MAX_PARTS),
    uploadId: str = Query(..., json_schema_extra=UPLOAD_ID_SCHEMA),
    md5: str = Query(..., json_schema_extra=MD5_SCHEMA),
    etag: str = Query(..., min_length=1, max_length=256),
) -> Response:
    authorize_object(request, Action.UPLOAD, object_id)
    get_context(request).uploads.finalize_part(object_id, uploadId, partNumber, md5, etag)
    return Response(status_code=200)


@router.delete(
    "/{object_id}/parts",
    summary="Forget a part's completion marker",
    response_class=Response,
    responses=score_errors(400, 401, 403, 404, 503),
    openapi_extra=token_required(UPLOAD_SCOPES),
)
def delete_part(
    request: Request,
    object_id: str,
    partNumber: int = Query(..., ge=1, le=MAX_PARTS),
    uploadId: str = Query(..., json_schema_extra=UPLOAD_ID_SCHEMA),
) -> Response:
    authorize_object(request, Action.UPLOAD, object_id)
    get_context(request).uploads.delete_part(object_id, uploadId, partNumber)
    return Response(status_code=200)


@router.post(
    "/{object_id}",
    summary="Finalize an upload: verify and make the object visible",
    response_class=Response,
    responses=score_errors(400, 401, 403, 404, 503, 507),
    openapi_extra=token_required(UPLOAD_SCOPES),
)
def finalize(
    request: Request,
    object_id: str,
    uploadId: str = Query(..., json_schema_extra=UPLOAD_ID_SCHEMA),
    md5: str | None = Query(
        None, json_schema_extra=MD5_SCHEMA, description="MD5 (hex) the client computed over the whole file"
    ),
) -> Response:
    _, entity = authorize_object(request, Action.UPLOAD, object_id)
    require_state(request, entity, UNPUBLISHED)
    get_context(request).uploads.finalize(object_id, uploadId, md5, entity)
    return Response(status_code=200)


@router.get(
    "/{object_id}/status",
    response_model=UploadProgress,
    summary="Progress of the upload in progress",
    responses=score_errors(400, 401, 403, 404, 503),
    openapi_extra=token_required(UPLOAD_SCOPES),
)
def status(request: Request, object_id: str, fileSize: int = Query(..., ge=0, le=MAX_FILE_SIZE)) -> Response:
    _, entity = authorize_object(request, Action.UPLOAD, object_id, audit=True)
    require_state(request, entity, UNPUBLISHED)
    return JSONResponse(counted("upload", get_context(request).uploads.status(object_id, fileSize)).to_wire())


@router.post(
    "/{object_id}/recovery",
    summary="Can the upload in progress be resumed for this file size?",
    response_class=Response,
    responses=score_errors(400, 401, 403, 404, 503),
    openapi_extra=token_required(UPLOAD_SCOPES),
)
def recovery(request: Request, object_id: str, fileSize: int = Query(..., ge=0, le=MAX_FILE_SIZE)) -> Response:
    authorize_object(request, Action.UPLOAD, object_id)
    get_context(request).uploads.recovery(object_id, fileSize)
    return Response(status_code=200)


@router.get(
    "/test/{object_id}",
    response_class=PlainTextResponse,
    summary="Am I allowed to upload this object?",
    responses=score_errors(400, 401, 403, 404, 503),
    openapi_extra=token_required(UPLOAD_SCOPES),
)
def upload_test(request: Request, object_id: str) -> str:
    authorize_object(request, Action.UPLOAD, object_id)
    return "Upload Test Operation executed"


@router.get(
    "/{object_id}",
    response_model=bool,
    summary="Does the object exist (finalized)?",
    responses=score_errors(400, 401, 403, 404, 503),
    openapi_extra=token_required(UPLOAD_SCOPES),
)
def exists(request: Request, object_id: str) -> bool:
    authorize_object(request, Action.UPLOAD, object_id)
    return get_context(request).uploads.exists(object_id)


@router.delete(
    "/{object_id}",
    summary="Cancel the upload in progress",
    responses=score_errors(400, 401, 403, 404, 503),
    openapi_extra=token_required(UPLOAD_SCOPES),
)
def cancel(request: Request, object_id: str) -> Response:
    authorize_object(request, Action.UPLOAD, object_id)
    get_context(request).uploads.cancel(object_id)
    return Response(status_code=200)
