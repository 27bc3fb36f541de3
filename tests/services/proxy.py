"""A small HTTP proxy between clients and an object store: it counts requests and can damage bodies.

Signed URLs are issued for the proxy's address (the store's endpoint in the server's settings is the
proxy), and requests are forwarded with their Host header unchanged, so SigV4 signatures still match.
Tests read ``events`` to prove which parts crossed the wire, set ``corrupt`` to flip one byte of a
matching request body, as a faulty network or store would, and set ``refuse`` to answer one matching
request with a 400 of the proxy's own (put in front of score-server's API: a call the server turns down);
``missing`` answers 404 to every request whose path it matches (an older server, or Java Score's, which has no
such endpoint).
``hold_matching`` keeps every matching request waiting (its body read, nothing forwarded) until ``release()``,
which drops them unforwarded: a test freezes a transfer at a chosen point, then kills or interrupts the client
with exactly those requests in flight (``held``), none of which ever reaches the store.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.services.process import free_port

# Not passed on; Proxy-Authorization is meant for the proxy alone (the forward proxy's clients send it).
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
}


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request's body, whether sent with a Content-Length or chunked."""
    if handler.headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("content-length") or 0)
    return handler.rfile.read(length) if length else b""


def fetch_upstream(
    handler: BaseHTTPRequestHandler, host: str, port: int, target: str, body: bytes
) -> tuple[http.client.HTTPResponse, bytes]:
    """The handler's request (its method, headers less hop-by-hop ones, ``body``) sent to ``host:port`` as
    ``target``: the upstream's response and its whole body. Connection errors are the caller's."""
    headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
    if body or handler.command in ("PUT", "POST"):
        headers["Content-Length"] = str(len(body))
    upstream = http.client.HTTPConnection(host, port, timeout=120)
    try:
        upstream.request(handler.command, target, body=body, headers=headers)
        response = upstream.getresponse()
        return response, response.read()
    finally:
        upstream.close()


def pass_back(handler: BaseHTTPRequestHandler, response: http.client.HTTPResponse, payload: bytes) -> None:
    """Answer the handler's client with the upstream's status, headers and body. A HEAD answer has no body but
    tells the object's length: the upstream's is passed on."""
    handler.send_response(response.status, response.reason)
    for key, value in response.getheaders():
        if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
            handler.send_header(key, value)
    length = response.getheader("content-length") if handler.command == "HEAD" else None
    handler.send_header("Content-Length", length or str(len(payload)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a client opens a connection per worker at once: 5 (the default) drops SYNs


@dataclass(frozen=True)
class ProxyEvent:
    method: str
    path: str
    query: dict[str, list[str]]
    status: int
    request_bytes: int
    response_bytes: int
    range: str | None = None  # the request's Range header (S3 signs it; a part GET is known by it)


class StoreProxy:
    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self.upstream_host = target.hostname or "127.0.0.1"
        self.upstream_port = target.port or 80
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.events: list[ProxyEvent] = []
        self.corrupt: Callable[[str, str, dict[str, list[str]]], bool] | None = None
        self.corrupted = 0
        self.refuse: Callable[[str, str, dict[str, list[str]]], bool] | None = None
        self.missing: Callable[[str], bool] | None = None
        self.hold: Callable[[ProxyEvent], bool] | None = None  # sees the request (status 0) before it is forwarded
        self.held: list[ProxyEvent] = []
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> StoreProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def hold_matching(self, predicate: Callable[[ProxyEvent], bool]) -> None:
        """Hold every request ``predicate`` matches from now on (``held`` starts empty) until ``release()``."""
        with self._lock:
            self._released = threading.Event()
            self.held = []
            self.hold = predicate

    def release(self) -> None:
        """Stop holding; the requests held so far are dropped (each connection closed), never forwarded."""
        with self._lock:
            self.hold = None
            self._released.set()

    def _should_hold(self, request: ProxyEvent) -> threading.Event | None:
        """The event a matching request waits for, or None to go on."""
        with self._lock:
            if self.hold is not None and self.hold(request):
                self.held.append(request)
                return self._released
            return None

    def requests(self, method: str, predicate: Callable[[ProxyEvent], bool] = lambda e: True) -> list[ProxyEvent]:
        with self._lock:
            return [e for e in self.events if e.method == method and predicate(e)]

    def _should_corrupt(self, method: str, path: str, query: dict[str, list[str]]) -> bool:
        with self._lock:
            if self.corrupt is not None and self.corrupt(method, path, query):
                self.corrupt = None  # one damaged request; the retry goes through intact
                self.corrupted += 1
                return True
            return False

    def _should_refuse(self, method: str, path: str, query: dict[str, list[str]]) -> bool:
        with self._lock:
            if self.refuse is not None and self.refuse(method, path, query):
                self.refuse = None  # one refusal; the next matching request goes through
                return True
            return False

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                body = read_body(self)
                split = urlsplit(self.path)
                query = parse_qs(split.query, keep_blank_values=True)
                byte_range = self.headers.get("range")
                released = proxy._should_hold(ProxyEvent(self.command, split.path, query, 0, len(body), 0, byte_range))
                if released is not None:
                    released.wait()
                    self.close_connection = True
                    return
                if proxy.missing is not None and proxy.missing(split.path):
                    self._answer_refusal(split.path, query, 404, b'{"message": "no such endpoint"}')
                    return
                if proxy._should_refuse(self.command, split.path, query):
                    self._answer_refusal(split.path, query, 400, b'{"message": "refused by the test proxy"}')
                    return
                if body and proxy._should_corrupt(self.command, split.path, query):
                    body = body[: len(body) // 2] + bytes([body[len(body) // 2] ^ 0xFF]) + body[len(body) // 2 + 1 :]
                response, payload = fetch_upstream(self, proxy.upstream_host, proxy.upstream_port, self.path, body)
                pass_back(self, response, payload)
                with proxy._lock:
                    proxy.events.append(
                        ProxyEvent(
                            self.command, split.path, query, response.status, len(body), len(payload), byte_range
                        )
                    )

            def _answer_refusal(self, path: str, query: dict[str, list[str]], status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                with proxy._lock:
                    proxy.events.append(ProxyEvent(self.command, path, query, status, 0, len(payload)))

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        return Handler
