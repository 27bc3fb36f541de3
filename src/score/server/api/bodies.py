"""Request bodies, bounded while they stream and checked before anything is stored.

``BodyLimit`` (ASGI middleware) caps every request body by route: a declared ``Content-Length`` over the
cap, or a stream that grows past it, fails the handler's first read (or the read that crosses it) with
``PayloadTooLarge``, an ``ApiError`` each router answers in its own error shape. Nothing is buffered
beyond the cap, and handlers read bodies only after authenticating the caller, so an anonymous client
cannot make the server hold more than the smallest cap. The local store's data plane (``/_store``) is
exempt: a part PUT must declare exactly the size its URL was signed for and is streamed to disk.

``parse_json`` turns a bounded body into JSON that can always be served back: nesting depth is bounded
(a payload nested 300 deep was stored once and then broke every read of its study), numbers are finite,
and every string is valid Unicode (a lone surrogate cannot be encoded as UTF-8 on the way out).
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from score.server.errors import ApiError

KiB = 1024
MiB = 1024 * KiB
DEFAULT_LIMIT = 64 * KiB  # every endpoint without a bigger need (most take no body at all)
MAX_JSON_DEPTH = 64  # Song payloads nest ~6 deep; serialisers give up a few hundred levels down


class PayloadTooLarge(ApiError):
    status = 413


class BodyLimit:
    """Caps request bodies per route prefix while they stream (see the module docstring)."""

    def __init__(self, app: ASGIApp, limits: dict[str, int | None], default: int = DEFAULT_LIMIT) -> None:
        self.app = app
        # longest prefix first, so "/song/submit" can differ from "/song"
        self.limits = sorted(limits.items(), key=lambda item: len(item[0]), reverse=True)
        self.default = default

    def limit_for(self, path: str) -> int | None:
        return next((limit for prefix, limit in self.limits if path.startswith(prefix)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        if limit is None:
            await self.app(scope, receive, send)
            return
        await self.app(scope, _bounded_receive(scope, receive, limit), send)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None
    return None


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is larger than this endpoint accepts ({limit} bytes); send less")


def _bounded_receive(scope: Scope, receive: Receive, limit: int) -> Callable[[], Awaitable[Message]]:
    declared = _declared_length(scope)
    received = 0

    async def bounded() -> Message:
        nonlocal received
        if declared is not None and declared > limit:
            raise _too_large(limit)  # refused before a byte of the body is read
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _too_large(limit)
        return message

    return bounded


class InvalidJson(ValueError):
    """A body that is not JSON this server can store and serve back; the message says why."""


def _reject_constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not a JSON number; use a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidJson(f"the number {text[:40]} is too large to store; use a finite number")
    return value


def parse_json(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse ``raw`` as JSON that can be stored and served back, or raise InvalidJson saying why."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJson(f"the body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        value = json.loads(text, parse_float=_finite_float, parse_constant=_reject_constant)
    except RecursionError:
        raise InvalidJson(f"the JSON is nested too deeply (at most {max_depth} levels)") from None
    except InvalidJson:
        raise
    except ValueError as exc:  # JSONDecodeError, and integers longer than Python converts
        raise InvalidJson(f"not valid JSON ({exc})") from None
    _check_servable(value, max_depth)
    return value


def _check_servable(value: Any, max_depth: int) -> None:
    """Depth and Unicode checks, iteratively (a recursive walk would fail on the very input it guards)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise InvalidJson(f"the JSON is nested too deeply (at most {max_depth} levels)")
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                if isinstance(key, str):
                    _check_text(key)
                stack.append((child, depth + 1))
        elif isinstance(item, str):
            _check_text(item)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidJson(
            f"the string {text[:40]!r} holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not "
            "Unicode text; fix the escape sequence"
        ) from None
