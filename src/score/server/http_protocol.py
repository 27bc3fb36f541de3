"""uvicorn's httptools protocol with the limits a public server needs against slow or abusive clients.

uvicorn alone arms no timer until a first response: a connection that sends nothing, or half a request line,
stays open forever; so does a keep-alive connection that starts a next request and stalls, a request whose body
stops arriving, and a refused request (401, 413) whose client goes on trickling its unread body. Each holds a file
descriptor, and a few hundred of them exhaust the process's descriptors: accepting then fails and even health checks
are refused. This protocol adds, per connection:

* a header timeout: a request's headers must be complete ``header_timeout`` seconds after the connection opened,
  or after the first byte of a later request on a keep-alive connection (408, then close);
* a body idle timeout: no body byte for ``body_timeout`` seconds closes the connection (the app sees
  ``http.disconnect``), except while uvicorn itself paused reading because the app is slow to consume the body;
* a lingering close when a response completes before its request body was read: stop parsing, half-close, discard
  what still arrives and close when the client hangs up or after ``LINGER_SECONDS`` (a close with unread data sends
  a reset, which can destroy the response before the client reads it);
* a connection limit below the descriptor limit: a connection beyond it evicts the oldest connection that is not
  running a request (waiting for headers, idle keep-alive, lingering), or is closed at once if there is none.

Settings come from ``ServerSettings`` (``SCORE_*`` environment), read once per process, so ``--workers N`` works.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import resource
from asyncio import TimerHandle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

logger = logging.getLogger("score.server.connections")

RESERVED_FDS = 64  # descriptors kept for all but client connections: listener, files, store, logs, a few accepts
LINGER_SECONDS = 2.0  # how long a refused request's unread body is discarded before the connection is closed
_TIMEOUT_BODY = b"Request Timeout"
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)
_serials = itertools.count()


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (best effort); return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def connection_limit(max_connections: int, soft_limit: int | None = None) -> int:
    """``max_connections``, lowered to stay ``RESERVED_FDS`` below the descriptor limit.

    uvloop accepts one connection per loop iteration, and an evicted connection's descriptor is released before
    the next accept (seen with strace: accept, close, accept, close), so the limit holds without a burst margin.
    """
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0] if soft_limit is None else soft_limit
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, soft - RESERVED_FDS))


@dataclass(frozen=True)
class Limits:
    header_timeout: float
    body_timeout: float
    max_connections: int


@functools.cache
def _limits() -> Limits:
    from score.server.settings import ServerSettings

    settings = ServerSettings()
    return Limits(settings.header_timeout, settings.body_timeout, connection_limit(settings.max_connections))


class _ResponseTransport:
    """The transport as one request's cycle sees it: a close after a response to an unread body lingers.

    uvicorn's cycle closes the transport itself when the response ends the connection (``connection: close``,
    HTTP/1.0, shutdown); this is where that close can still become a lingering one.
    """

    def __init__(self, protocol: ScoreHttpProtocol, cycle: RequestResponseCycle) -> None:
        self._protocol = protocol
        self._cycle = cycle
        self._transport = protocol.transport

    def close(self) -> None:
        if self._cycle.response_complete and self._cycle.more_body:
            self._protocol.linger()
        else:
            self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _closing_early_refusals(cycle: RequestResponseCycle) -> Callable[[Any], Any]:
    """The cycle's ``send``, announcing ``connection: close`` on a response that starts before the request
    body was read (a refusal: this app never reads a body after answering). The connection will linger
    and close instead of carrying another request, and the client, told so, does not reuse it."""
    send = cycle.send

    async def send_closing(message: Any) -> None:
        if message["type"] == "http.response.start" and cycle.more_body:
            cycle.keep_alive = False
        await send(message)

    return send_closing


class ScoreHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol plus header/body timeouts, lingering close of unread bodies and a connection limit."""

    _last_limit_warning = float("-inf")

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = _limits()
        self.header_timeout = limits.header_timeout
        self.body_timeout = limits.body_timeout
        self.max_connections = limits.max_connections
        self.serial = next(_serials)  # connection age, for eviction
        self.lingering = False
        self._timer: TimerHandle | None = None
        self._received_any = False
        self._body_activity = 0.0

    # Connection limit and header deadline of the first request
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self._make_room():
            self.connections.discard(self)
            transport.abort()
            return
        self._arm(self.header_timeout, self._header_timed_out)

    def _make_room(self) -> bool:
        """Keep live connections within the limit: evict the oldest one not running a request, if needed."""
        if len(self.connections) <= self.max_connections:
            return True
        live = [c for c in self.connections if c is not self and not c.transport.is_closing()]
        if len(live) < self.max_connections:
            return True
        idle = [c for c in live if isinstance(c, ScoreHttpProtocol) and not c.running_request()]
        self._warn_limit(evicting=bool(idle))
        if not idle:
            return False
        min(idle, key=lambda c: c.serial).transport.abort()
        return True

    def _warn_limit(self, evicting: bool) -> None:
        now = self.loop.time()
        if now - ScoreHttpProtocol._last_limit_warning >= 60:
            ScoreHttpProtocol._last_limit_warning = now
            what = "closing the oldest idle connection" if evicting else "refusing new connections (all busy)"
            logger.warning("connection limit of %d reached: %s", self.max_connections, what)

    def running_request(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # Timers: one per connection, for the phase it is in (headers, body, lingering)
    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _time_out(self, what: str) -> None:
        """Answer 408 if no response has started on this connection yet, then close."""
        if self.transport.is_closing():
            return
        logger.debug("%s timed out for %s", what, self.client)
        cycle = self.cycle if self.running_request() else None
        if self._received_any and (cycle is None or not cycle.response_started):
            self.transport.write(_TIMEOUT_RESPONSE)
        if cycle is not None:  # the app sees http.disconnect and its late sends are dropped
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    def _header_timed_out(self) -> None:
        self._timer = None
        self._time_out("request headers")

    def _check_body(self) -> None:
        """Close if the client sent no body byte for body_timeout; a paused read is the app's doing, not its."""
        self._timer = None
        cycle = self.cycle
        now = self.loop.time()
        if self.flow.read_paused or cycle.waiting_for_100_continue:
            self._body_activity = now
        remaining = self._body_activity + self.body_timeout - now
        if remaining > 0:
            self._timer = self.loop.call_later(remaining, self._check_body)
        else:
            self._time_out("request body")

    # Parser and transport callbacks
    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # the rest of a refused body: discarded
        self._received_any = True
        if self._timer is None and not self.running_request():
            self._arm(self.header_timeout, self._header_timed_out)  # first byte of a next request
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm()
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not previous:  # a request (not an upgrade) starts: watch its body
            self.cycle.transport = _ResponseTransport(self, self.cycle)  # type: ignore[assignment]
            self.cycle.send = _closing_early_refusals(self.cycle)  # type: ignore[method-assign]
            self._body_activity = self.loop.time()
            self._arm(self.body_timeout, self._check_body)

    def on_body(self, body: bytes) -> None:
        self._body_activity = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if self.lingering:  # the response closed the connection and linger() took over
            self.server_state.total_requests += 1
            return
        body_unread = not self.pipeline and self.cycle is not None and self.cycle.more_body
        super().on_response_complete()
        if body_unread:
            self.linger()

    def linger(self) -> None:
        """Stop reading the request: half-close after the response, discard what arrives, close soon after.

        The connection closes as soon as the client hangs up too (eof_received returns None, so the transport
        closes itself), at the latest after LINGER_SECONDS.
        """
        if self.lingering or self.transport.is_closing():
            return
        self.lingering = True
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        with contextlib.suppress(NotImplementedError, RuntimeError, OSError):
            self.transport.write_eof()
        self._arm(LINGER_SECONDS, self.transport.close)

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the websocket protocol owns the transport from now on
        super().handle_websocket_upgrade()
