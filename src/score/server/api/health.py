"""Health endpoints, open to anyone: load balancers and orchestrators poll them."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from score.server.api.deps import get_context
from score.server.services.uploads import data_key

router = APIRouter(tags=["health"])


@router.get("/actuator/health", summary="UP when the object store answers")
@router.get("/health", include_in_schema=False)
def health(request: Request) -> JSONResponse:
    context = get_context(request)
    try:
        found = context.store.head(data_key(context.settings.sentinel)) is not None
    except Exception as exc:  # any failure of the store means we are not serving
        return JSONResponse({"status": "DOWN", "details": {"store": str(exc)}}, status_code=503)
    status = "UP" if found else "OUT_OF_SERVICE"
    return JSONResponse(
        {"status": status, "details": {"store": context.store.name, "foundSentinel": found}},
        status_code=200 if found else 503,
    )
