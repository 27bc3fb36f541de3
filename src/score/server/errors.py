"""API errors: every failure answers JSON with a ``message`` that says what was wrong and what to do.

The shape is Spring Boot's default error body (what existing clients may parse) plus the ``message``
the original dropped (its issue #496).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from score.core.models import ErrorBody
from score.server.observability.request_ids import current_request_id

_log = logging.getLogger("score.server")


class ApiError(Exception):
    status = 500

    def __init__(self, message: str, status: int | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers = headers or {}


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401

    def __init__(self, message: str):
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="score"'})


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class RangeNotSatisfiable(ApiError):
    status = 416


class Unavailable(ApiError):
    status = 503


def error_response(status: int, message: str, path: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(
        timestamp=datetime.now(UTC).isoformat(timespec="milliseconds"),
        status=status,
        error=HTTPStatus(status).phrase,
        message=message,
        path=path,
        requestId=current_request_id(),
    )
    return JSONResponse(body.to_wire(), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, request.url.path, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}" for err in exc.errors()
        )
        return error_response(400, f"invalid request: {problems}", request.url.path)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> Response:
        """The client left while sending its body (or was timed out): nobody reads an answer; not an error."""
        _log.debug("client left during %s %s", request.method, request.url.path)
        return Response(status_code=400)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        """A defect, not a refusal: still JSON with a message (Starlette would answer plain text). Starlette
        re-raises it after this answer, so the server logs the traceback once."""
        return error_response(
            500, f"internal error ({exc.__class__.__name__}); it was logged, please report it", request.url.path
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}; see /docs for the API"
        if exc.status_code == 405:
            allowed = _allowed_methods(request)
            headers["Allow"] = ", ".join(allowed)
            message = f"{request.method} is not allowed on {request.url.path}; use {' or '.join(allowed)}"
        return error_response(exc.status_code, message, request.url.path, headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's 405 names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)
