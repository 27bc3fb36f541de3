"""A tiny real HTTP server answering JSON from Python handlers, for providers that cannot run here.

Keycloak (its UMA permission endpoint) and Ego (its API-key check) cannot be installed on this
machine, so tests stand in for them with handlers written from their documented request and answer
shapes. Each handler sees the method, path, headers and form body; every request is recorded so tests
can count round trips (caching) and check what was sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]


Handler = Callable[[Seen], tuple[int, Any]]


def _form(content_type: str, raw: bytes) -> dict[str, str]:
    """The fields of a urlencoded or multipart/form-data body (the original Score posts API keys as the latter)."""
    if not content_type.startswith("multipart/form-data"):
        return {k: v[0] for k, v in parse_qs(raw.decode()).items()}
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    return {
        str(part.get_param("name", header="content-disposition")): part.get_payload(decode=True).decode()
        for part in message.iter_parts()
    }


class JsonServer:
    def __init__(self, routes: dict[str, Handler]) -> None:
        self.routes = routes
        self.requests: list[Seen] = []
        server = self

        class _Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                form = _form(headers.get("content-type", ""), raw)
                seen = Seen(self.command, self.path.split("?")[0], headers, form)
                server.requests.append(seen)
                handler = server.routes.get(seen.path)
                status, payload = handler(seen) if handler else (404, {"error": "not found"})
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> JsonServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def count(self, path: str) -> int:
        return sum(1 for seen in self.requests if seen.path == path)
