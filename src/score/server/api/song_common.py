"""What every /song route shares: Song's error body, the route class that answers in it, request parsing.

Song's clients tell a Song error from any other by its fields (the Python SDK's ``SongError.is_song_error``
needs all of ``errorId``, ``httpStatusName``, ``httpStatusCode``, ``message``, ``requestUrl``,
``debugMessage``, ``timestamp``, ``stackTrace``), so every failure under /song, whatever raised it, is
answered in song-core's ``SongError`` shape with an id from Song's catalogue (``ServerErrors``).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from http import HTTPStatus
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from score.server.api.bodies import InvalidJson, parse_json
from score.server.errors import ApiError
from score.server.metadata.base import MetadataUnavailable
from score.server.metadata.registry import (
    FORBIDDEN_TOKEN,
    ID_NOT_FOUND,
    MALFORMED_PARAMETER,
    NOT_IMPLEMENTED_YET,
    PAYLOAD_PARSING,
    SERVICE_UNAVAILABLE,
    UNAUTHORIZED_TOKEN,
    UNKNOWN_ERROR,
    Registry,
    RegistryError,
    SongErrorCode,
)

JAVA_INT_MIN, JAVA_INT_MAX = -(2**31), 2**31 - 1
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_TRUE = {"true", "on", "yes", "1"}
_FALSE = {"false", "off", "no", "0", ""}


def _any_case(word: str) -> str:
    """An ECMA-262 pattern (no inline flags there) matching ``word`` in any letter case."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


# Spring binds a query parameter from these spellings, so the document says so (and an empty value means
# the default): a schema stricter than the server makes every fuzzer's "invalid" value an accepted one.
SPRING_BOOLEAN: dict[str, Any] = {
    "anyOf": [
        {"type": "boolean"},
        {"type": "string", "pattern": "^(" + "|".join(_any_case(w) for w in sorted(_TRUE | _FALSE) if w) + ")?$"},
    ]
}


def spring_int(minimum: int = JAVA_INT_MIN, maximum: int = JAVA_INT_MAX) -> dict[str, Any]:
    """A Java ``int`` query parameter's schema: within the bounds, or empty for the default."""
    return {"anyOf": [{"type": "integer", "minimum": minimum, "maximum": maximum}, {"type": "string", "maxLength": 0}]}


# Spring's HttpStatus names (Python's differ for some codes, e.g. 422 on newer versions).
_STATUS_NAMES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    422: "UNPROCESSABLE_ENTITY",
    500: "INTERNAL_SERVER_ERROR",
    503: "SERVICE_UNAVAILABLE",
    507: "INSUFFICIENT_STORAGE",
}


# --------------------------------------------------------------------------------------------------
# Song's error body


def song_error_body(request: Request, error_id: str, status: int, message: str, debug: str = "") -> dict[str, Any]:
    """Song's SongError JSON (song-core ``SongError``) for this request."""
    now = time.time()
    return {
        "errorId": error_id,
        "httpStatusCode": status,
        "httpStatusName": _STATUS_NAMES.get(status, HTTPStatus(status).name),
        "requestUrl": str(request.url),
        "datetime": datetime.fromtimestamp(now).astimezone().isoformat(),
        "timestamp": int(now * 1000),
        "message": message,
        "debugMessage": debug,
        "stackTrace": [],
    }


def song_error_response(
    request: Request, error_id: str, status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(song_error_body(request, error_id, status, message), status_code=status, headers=headers)


def api_error_id(status: int) -> str:
    """Song's error id for errors raised outside the registry (auth from deps, bad input, limits).

    401 and 403 are Song's ``UNAUTHORIZED_TOKEN`` and ``FORBIDDEN_TOKEN``; 413 (``payload.too.large``) and
    507 (``insufficient.storage``) have no entry in Song's catalogue, whose server has neither limit.
    """
    known = {
        401: UNAUTHORIZED_TOKEN,
        403: FORBIDDEN_TOKEN,
        400: MALFORMED_PARAMETER,
        404: ID_NOT_FOUND,
        405: NOT_IMPLEMENTED_YET,
        422: PAYLOAD_PARSING,
        500: UNKNOWN_ERROR,
    }
    if status in known:
        return known[status].error_id
    return _STATUS_NAMES.get(status, HTTPStatus(status).name).lower().replace("_", ".")


def _validation_message(exc: RequestValidationError) -> str:
    return "invalid request: " + "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}" for err in exc.errors()
    )


class SongRoute(APIRoute):
    """Answers every failure of a /song route in Song's error shape, whatever raised it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def song_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except RegistryError as exc:
                return song_error_response(request, exc.code.error_id, exc.code.status, exc.message)
            except ApiError as exc:
                return song_error_response(request, api_error_id(exc.status), exc.status, exc.message, exc.headers)
            except RequestValidationError as exc:
                return song_error_response(request, MALFORMED_PARAMETER.error_id, 400, _validation_message(exc))
            except sqlite3.OperationalError as exc:  # a disk-full one is the dialect's RegistryError (507)
                return song_error_response(
                    request,
                    SERVICE_UNAVAILABLE.error_id,
                    503,
                    f"the metadata registry database is unavailable ({exc}); retry shortly",
                )
            except MetadataUnavailable as exc:
                return song_error_response(request, SERVICE_UNAVAILABLE.error_id, 503, f"{exc}; retry shortly")

        return song_errors


# --------------------------------------------------------------------------------------------------
# Request helpers


def registry_of(request: Request) -> Registry:
    return request.app.state.context.metadata


def bad(code: SongErrorCode, message: str) -> RegistryError:
    return RegistryError(code, message)


def bool_param(request: Request, name: str, default: bool) -> bool:
    """Spring's boolean conversion: true/false, on/off, yes/no, 1/0, case-insensitive; empty is the default.
    Nothing is trimmed (Java's ``trim`` also drops control characters, which this API refuses)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    value = raw.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise bad(MALFORMED_PARAMETER, f"the query parameter {name}={raw!r} must be true or false")


def id_list(text: str, name: str) -> list[str]:
    """Song's comma-separated ids in a path (``{ids}``): every one named, as the documented pattern says; an
    empty one (``a,,b``, a lone ``,``) is MALFORMED_PARAMETER rather than quietly dropped."""
    ids = text.split(",")
    if not all(ids):
        raise bad(MALFORMED_PARAMETER, f"{name} '{text[:80]}' has an empty id: separate ids with single commas")
    return ids


def is_java_int(text: str) -> bool:
    """What Java's ``Integer.parseInt`` takes: an optional '-' and ASCII digits, within an int's range."""
    return bool(_INTEGER.fullmatch(text)) and JAVA_INT_MIN <= int(text) <= JAVA_INT_MAX


def int_param(request: Request, name: str, default: int) -> int:
    """An integer query parameter as Spring binds a Java ``int``: anything else is MALFORMED_PARAMETER."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not _INTEGER.fullmatch(raw):  # Java's parseInt: no spaces, no '_', no '+', ASCII digits
        raise bad(MALFORMED_PARAMETER, f"the query parameter {name}={raw[:40]!r} must be an integer")
    value = int(raw)
    if not JAVA_INT_MIN <= value <= JAVA_INT_MAX:
        raise bad(MALFORMED_PARAMETER, f"the query parameter {name} must be from {JAVA_INT_MIN} to {JAVA_INT_MAX}")
    return value


async def json_body_of(request: Request) -> Any:
    """The request's JSON, read within the route's body limit (``BodyLimit``) after the caller was
    authorised, and refused unless it can be stored and served back (``parse_json``)."""
    body = await request.body()
    try:
        return parse_json(body)
    except InvalidJson as exc:
        raise bad(
            PAYLOAD_PARSING,
            f"Unable to read the input payload as JSON ({exc}); send a JSON "
            "document with Content-Type: application/json",
        ) from None
