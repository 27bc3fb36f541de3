"""A recording forward HTTP proxy (what ``HTTP_PROXY`` names): requests in absolute form, to any host.

A client configured with ``HTTP_PROXY=http://127.0.0.1:<port>`` sends ``GET http://host:port/path`` here;
the proxy forwards it to ``host:port`` in origin form with its headers unchanged (so signed URLs and their
signed ``Host`` and ``Range`` headers still match) and records what it forwarded in ``events``. Only plain
HTTP is forwarded: a ``CONNECT`` (an ``https://`` URL tunnelled) or a request not in absolute form is
recorded and refused, so a test sees it rather than the proxy silently doing something else.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.services.process import free_port
from tests.services.proxy import fetch_upstream, pass_back, read_body


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a client opens a connection per worker at once: 5 (the default) drops SYNs


@dataclass(frozen=True)
class ForwardedRequest:
    method: str
    host: str  # host:port the request was for
    path: str
    query: dict[str, list[str]]
    range: str | None  # the Range header
    status: int  # the upstream's answer (the proxy's own refusal: 400 or 405; upstream unreachable: 502)
    error: str = ""  # why the proxy could not forward it


class ForwardProxy:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.events: list[ForwardedRequest] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> ForwardProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def snapshot(self) -> list[ForwardedRequest]:
        with self._lock:
            return list(self.events)

    def _record(self, event: ForwardedRequest) -> None:
        with self._lock:
            self.events.append(event)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self, status: int, message: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(message)))
                self.end_headers()
                self.wfile.write(message)

            def _forward(self) -> None:
                body = read_body(self)
                target = urlsplit(self.path)
                query = parse_qs(target.query, keep_blank_values=True)
                byte_range = self.headers.get("range")
                if target.scheme != "http" or not target.hostname:
                    proxy._record(ForwardedRequest(self.command, "", target.path, query, byte_range, 400))
                    self._answer(400, b"not a proxy request (absolute-form http:// URL expected)")
                    return
                host = f"{target.hostname}:{target.port or 80}"
                origin_form = target.path + (f"?{target.query}" if target.query else "")
                try:
                    response, payload = fetch_upstream(self, target.hostname, target.port or 80, origin_form, body)
                except OSError as exc:
                    proxy._record(ForwardedRequest(self.command, host, target.path, query, byte_range, 502, repr(exc)))
                    self._answer(502, f"upstream {host} unreachable: {exc}".encode())
                    return
                pass_back(self, response, payload)
                proxy._record(ForwardedRequest(self.command, host, target.path, query, byte_range, response.status))

            def do_CONNECT(self) -> None:
                proxy._record(ForwardedRequest("CONNECT", self.path, "", {}, None, 405))
                self._answer(405, b"CONNECT is not offered by this test proxy")
                self.close_connection = True

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        return Handler
