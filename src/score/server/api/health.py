"""Health endpoints, open to anyone: load balancers and orchestrators poll them.

Spring Boot's shape (``status`` plus ``details``): UP only when the store answers with its sentinel, the
store's disk (the local store) has its reserve free, and the embedded registry can be read. A full disk
is reported as DOWN with the figures (Spring's ``diskSpace`` indicator), not hidden behind UP. With the fixity
scrub on, ``details.fixity`` reports its last run and any damaged object (status ``MISMATCH``) without changing
the overall status: see ``services/fixity.health_component``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from score.server.api.deps import get_context
from score.server.services.fixity import health_component
from score.server.storage.layout import data_key

router = APIRouter(tags=["health"])


def _disk_space(store: Any) -> dict[str, Any] | None:
    """The store's disk, where it has one (the local store's optional ``disk_space``)."""
    report = getattr(store, "disk_space", None)
    if report is None:
        return None
    space = report()
    return {
        "status": "DOWN" if space.low else "UP",
        "total": space.total,
        "free": space.free,
        "threshold": space.threshold,
    }


def _registry(metadata: Any) -> dict[str, Any] | None:
    """The embedded registry's readability (its optional ``check``); a remote Song is not polled here. On
    PostgreSQL an unreachable server reads as DOWN within a second (``dialect.PROBE_WAIT_SECONDS``)."""
    check = getattr(metadata, "check", None)
    if check is None:
        return None
    try:
        check()
    except Exception as exc:  # any failure to read it means the registry cannot serve
        return {"status": "DOWN", "error": str(exc)}
    return {"status": "UP"}


class HealthReport(BaseModel):
    status: str = Field(description="UP, DOWN or OUT_OF_SERVICE (the store's sentinel is missing)")
    details: dict[str, Any]


_DOWN = {"model": HealthReport, "description": "Not serving: details say which part is DOWN and why"}


@router.get(
    "/actuator/health/liveness",
    response_model=HealthReport,
    summary="UP while the process answers at all (restart it when this fails)",
)
def liveness() -> JSONResponse:
    """Liveness asks nothing of the store or the registry: an outage of either is no reason to restart the
    server (it would not fix them), only to take it out of the balancer, which is what readiness is for."""
    return JSONResponse({"status": "UP", "details": {}})


@router.get(
    "/actuator/health",
    response_model=HealthReport,
    summary="UP when the store, its disk and the registry can serve",
    responses={503: _DOWN},
)
@router.get(
    "/actuator/health/readiness",
    response_model=HealthReport,
    summary="Readiness for a load balancer: the same checks as /actuator/health",
    responses={503: _DOWN},
)
@router.get("/health", include_in_schema=False)
def health(request: Request) -> JSONResponse:
    context = get_context(request)
    try:
        found = context.store.head(data_key(context.settings.sentinel)) is not None
        disk = _disk_space(context.store)
    except Exception as exc:  # any failure of the store means we are not serving
        return JSONResponse({"status": "DOWN", "details": {"store": str(exc)}}, status_code=503)
    details: dict[str, Any] = {"store": context.store.name, "foundSentinel": found}
    if disk is not None:
        details["diskSpace"] = disk
    registry = _registry(context.metadata)
    if registry is not None:
        details["registry"] = registry
    fixity = health_component(context.settings)  # reported, never counted in the status (its docstring)
    if fixity is not None:
        details["fixity"] = fixity
    if not found:
        status = "OUT_OF_SERVICE"
    elif any(part.get("status") == "DOWN" for part in (disk or {}, registry or {})):
        status = "DOWN"
    else:
        status = "UP"
    return JSONResponse({"status": status, "details": details}, status_code=200 if status == "UP" else 503)
