"""Upload endpoints (reference §2.3): thin HTTP layer over the UploadService."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from score.core.models import ObjectSpecification, UploadProgress
from score.server.api.deps import get_context
from score.server.api.guards import authorize_object, require_state
from score.server.auth.policy import Action
from score.server.metadata.base import UNPUBLISHED

router = APIRouter(prefix="/upload", tags=["upload"])


@router.post("/{object_id}/uploads", response_model=ObjectSpecification, summary="Initiate a multipart upload")
def initiate(
    request: Request,
    object_id: str,
    fileSize: int = Query(..., ge=0, description="Size of the file in bytes"),
    md5: str | None = Query(None, description="MD5 (hex) of the whole file, checked at finalize"),
    overwrite: bool = Query(False, description="Replace an existing object"),
) -> Response:
    _, entity = authorize_object(request, Action.UPLOAD, object_id, audit=True)
    require_state(request, entity, UNPUBLISHED)
    spec = get_context(request).uploads.initiate(object_id, fileSize, md5, overwrite, entity)
    return JSONResponse(spec.to_wire())


@router.post("/{object_id}/parts", summary="Record a part as uploaded (after its PUT succeeded)")
def finalize_part(
    request: Request,
    object_id: str,
    partNumber: int = Query(..., ge=1),
    uploadId: str = Query(...),
    md5: str = Query(...),
    etag: str = Query(...),
) -> Response:
    authorize_object(request, Action.UPLOAD, object_id)
    get_context(request).uploads.finalize_part(object_id, uploadId, partNumber, md5, etag)
    return Response(status_code=200)


@router.delete("/{object_id}/parts", summary="Forget a part's completion marker")
def delete_part(
    request: Request,
    object_id: str,
    partNumber: int = Query(..., ge=1),
    uploadId: str = Query(...),
) -> Response:
    authorize_object(request, Action.UPLOAD, object_id)
    get_context(request).uploads.delete_part(object_id, uploadId, partNumber)
    return Response(status_code=200)


@router.post("/{object_id}", summary="Finalize an upload: verify and make the object visible")
def finalize(
    request: Request,
    object_id: str,
    uploadId: str = Query(...),
    md5: str | None = Query(None, description="MD5 (hex) the client computed over the whole file"),
) -> Response:
    _, entity = authorize_object(request, Action.UPLOAD, object_id)
    require_state(request, entity, UNPUBLISHED)
    get_context(request).uploads.finalize(object_id, uploadId, md5, entity)
    return Response(status_code=200)


@router.get("/{object_id}/status", response_model=UploadProgress, summary="Progress of the upload in progress")
def status(request: Request, object_id: str, fileSize: int = Query(..., ge=0)) -> Response:
    _, entity = authorize_object(request, Action.UPLOAD, object_id, audit=True)
    require_state(request, entity, UNPUBLISHED)
    return JSONResponse(get_context(request).uploads.status(object_id, fileSize).to_wire())


@router.post("/{object_id}/recovery", summary="Can the upload in progress be resumed for this file size?")
def recovery(request: Request, object_id: str, fileSize: int = Query(..., ge=0)) -> Response:
    authorize_object(request, Action.UPLOAD, object_id)
    get_context(request).uploads.recovery(object_id, fileSize)
    return Response(status_code=200)


@router.get("/test/{object_id}", response_class=PlainTextResponse, summary="Am I allowed to upload this object?")
def upload_test(request: Request, object_id: str) -> str:
    authorize_object(request, Action.UPLOAD, object_id)
    return "Upload Test Operation executed"


@router.get("/{object_id}", response_model=bool, summary="Does the object exist (finalized)?")
def exists(request: Request, object_id: str) -> bool:
    authorize_object(request, Action.UPLOAD, object_id)
    return get_context(request).uploads.exists(object_id)


@router.delete("/{object_id}", summary="Cancel the upload in progress")
def cancel(request: Request, object_id: str) -> Response:
    authorize_object(request, Action.UPLOAD, object_id)
    get_context(request).uploads.cancel(object_id)
    return Response(status_code=200)
