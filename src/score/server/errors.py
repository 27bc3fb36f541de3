"""API errors: every failure answers JSON with a ``message`` that says what was wrong and what to do.

The shape is Spring Boot's default error body (what existing clients may parse) plus the ``message``
the original dropped (its issue #496).
"""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from score.core.models import ErrorBody


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

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}; see /docs for the API"
        return error_response(exc.status_code, message, request.url.path, getattr(exc, "headers", None))
