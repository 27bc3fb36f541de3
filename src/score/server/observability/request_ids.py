"""One id per request, in every log line, audit line and error body about it, and in the response.

A balancer or the client may send ``X-Request-ID``; it is kept when it is a plain token (so an operator can
follow one request through the balancer, the replicas and the store), else a fresh one is made: the header
is the caller's, and a log line must not carry whatever they put in it.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
_ACCEPTED = re.compile(r"[A-Za-z0-9._:-]{1,128}\Z")
_current: ContextVar[str | None] = ContextVar("score_request_id", default=None)
# A made id is 32 hex digits: 12 random per process, then a serial. Unique across replicas and workers
# without a system call per request (uuid4 reads the kernel's random source each time).
_PROCESS = os.urandom(6).hex()
_SERIAL = itertools.count(1)


def current_request_id() -> str | None:
    """The id of the request this code runs for (worker threads inherit it), or None outside requests."""
    return _current.get()


def _from_headers(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == HEADER.encode():
            text = value.decode("latin-1")
            if _ACCEPTED.match(text):
                return text
            break
    return f"{_PROCESS}{next(_SERIAL):020x}"


class RequestIdMiddleware:
    """Pure ASGI (no body buffering): sets the id for the request's context and echoes it in the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _from_headers(scope)
        # Not reset afterwards: each request runs in its own task (its own context), and the handler of an
        # unexpected error runs outside this middleware, after the exception left it, yet must name the id.
        _current.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER.encode()]
                message = {**message, "headers": [*headers, (HEADER.encode(), request_id.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_id)


class RequestIdFilter(logging.Filter):
    """Gives every record a ``request_id`` attribute ("-" outside requests) for the formatters."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        return True
