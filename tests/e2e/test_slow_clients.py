"""Slow and abusive clients against a real server: raw sockets that stall, trickle or never finish.

The server runs with one-second header and body timeouts so that every deadline shows within seconds; each test
asserts on what the socket reads (the status line, the end of the stream) and on when it happens.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import select
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from score.server import http_protocol
from tests.conftest import ScoreServer
from tests.services.process import free_port

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
KEEP_ALIVE_TIMEOUT = 3.0
SLACK = 1.5  # timers, scheduling and a loaded CI machine


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScoreServer]:
    env = {
        "SCORE_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "SCORE_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "SCORE_KEEP_ALIVE_TIMEOUT": str(KEEP_ALIVE_TIMEOUT),
    }
    instance = ScoreServer(tmp_path_factory.mktemp("slow-clients") / "server-data", extra_env=env).start()
    yield instance
    instance.stop()


def connect(server: ScoreServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def wait_closed(sock: socket.socket, within: float) -> tuple[bytes, float]:
    """Read until the server closes the connection; return what was read and when (seconds from now)."""
    start = time.monotonic()
    data = b""
    while True:
        remaining = start + within - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"the server kept the connection open for {within}s (read so far: {data[:200]!r})")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return data, time.monotonic() - start
        data += chunk


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One HTTP response with a Content-Length: its head and body."""
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-body: {data!r}"
        body += chunk
    return head, body


HEALTH = b"GET /actuator/health HTTP/1.1\r\nHost: localhost\r\n\r\n"


def test_connections_that_never_finish_their_headers_are_closed(server: ScoreServer) -> None:
    silent = connect(server)
    half_line = connect(server)
    half_line.sendall(b"GET /actuator/hea")
    half_headers = connect(server)
    half_headers.sendall(b"GET /actuator/health HTTP/1.1\r\nHost: localhost\r\nUser-Agent: sl")

    for sock, expected in ((silent, b""), (half_line, b"HTTP/1.1 408 "), (half_headers, b"HTTP/1.1 408 ")):
        data, elapsed = wait_closed(sock, HEADER_TIMEOUT + SLACK)
        assert data.startswith(expected), data
        assert elapsed < HEADER_TIMEOUT + SLACK
        sock.close()


def test_a_stalled_next_request_on_a_keep_alive_connection_is_closed(server: ScoreServer) -> None:
    with connect(server) as sock:
        sock.sendall(HEALTH)
        head, _ = read_response(sock)
        assert head.startswith(b"HTTP/1.1 200 "), head
        sock.sendall(b"GET /actuator/health HTTP/1.1\r\nHo")  # keep-alive would wait 3 s; headers get 1 s
        data, elapsed = wait_closed(sock, HEADER_TIMEOUT + SLACK)
        assert data.startswith(b"HTTP/1.1 408 "), data
        assert elapsed < KEEP_ALIVE_TIMEOUT


def test_an_idle_keep_alive_connection_lasts_the_keep_alive_timeout(server: ScoreServer) -> None:
    with connect(server) as sock:
        sock.sendall(HEALTH)
        read_response(sock)
        data, elapsed = wait_closed(sock, KEEP_ALIVE_TIMEOUT + SLACK)
        assert data == b""  # an idle connection closes quietly: no 408 for a request never begun
        assert elapsed > KEEP_ALIVE_TIMEOUT - 0.5, "closed before keep_alive_timeout (by the header timer?)"


def study_request(server: ScoreServer, study_id: str, length: int) -> bytes:
    token = server.token("song.WRITE")
    return (
        f"POST /song/studies/{study_id}/ HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def test_a_body_that_stops_arriving_is_closed_after_the_body_timeout(server: ScoreServer) -> None:
    with connect(server) as sock:
        sock.sendall(study_request(server, "STALLED", 1_000_000) + b'{"studyId"')
        data, elapsed = wait_closed(sock, BODY_TIMEOUT + SLACK)
        assert data.startswith(b"HTTP/1.1 408 "), data
        assert elapsed > BODY_TIMEOUT - 0.3


def test_a_slow_but_steady_body_completes(server: ScoreServer) -> None:
    body = json.dumps({"studyId": "STEADY", "name": "steady", "organization": "test", "description": "x" * 200})
    pieces = [body[i : i + 25].encode() for i in range(0, len(body), 25)]
    with connect(server) as sock:
        sock.sendall(study_request(server, "STEADY", len(body)))
        start = time.monotonic()
        for piece in pieces:  # ~3 s in all, three times the body timeout, but never 1 s without a byte
            time.sleep(0.3)
            sock.sendall(piece)
        head, answer = read_response(sock)
        assert time.monotonic() - start > 2 * BODY_TIMEOUT
        assert head.startswith(b"HTTP/1.1 200 "), head + answer
        assert answer == b'{"message":"Successfully created study \'STEADY\'"}'  # Song 5.2+'s GenericMessage


@pytest.mark.parametrize("connection", ["", "Connection: close\r\n"], ids=["keep-alive", "close"])
def test_a_refused_request_is_answered_and_its_unread_body_not_waited_for(server: ScoreServer, connection: str) -> None:
    with connect(server) as sock:
        sock.sendall(
            f"POST /upload/{uuid.uuid4()}/uploads?fileSize=1 HTTP/1.1\r\nHost: localhost\r\n{connection}"
            "Content-Length: 100000000\r\n\r\n".encode()
            + b"0123456789"
        )
        sock.setblocking(False)
        received = b""
        start = time.monotonic()
        refused_at = None
        while time.monotonic() - start < 6:  # the client goes on trickling its body, as a slow uploader would
            try:
                sock.send(b"x" * 100)
            except (BrokenPipeError, ConnectionResetError):
                refused_at = time.monotonic() - start
                break
            except BlockingIOError:
                pass
            if select.select([sock], [], [], 0.1)[0]:
                try:
                    received += sock.recv(65536)
                except ConnectionResetError:
                    refused_at = time.monotonic() - start
                    break
    assert received.startswith(b"HTTP/1.1 401 "), received
    assert refused_at is not None, "the server kept reading the refused body for 6 s"
    assert refused_at < 3.5


def test_a_body_held_back_by_a_slow_app_is_not_timed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn stops reading while the app has not consumed the body: that pause is not the client's stall."""
    monkeypatch.setattr(http_protocol, "_limits", lambda: http_protocol.Limits(5.0, 0.5, 100))

    async def slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await asyncio.sleep(2)  # four body timeouts before the first read
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        answer = str(size).encode()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(answer))]}
        )
        await send({"type": "http.response.body", "body": answer})

    port = free_port()
    config = uvicorn.Config(
        slow_app, port=port, http=http_protocol.ScoreHttpProtocol, lifespan="off", log_level="error"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        body = b"x" * (4 * 1024 * 1024)  # far above uvicorn's 64 KiB read-ahead, so reading pauses
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            head, answer = read_response(sock)
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert answer == str(len(body)).encode()
    finally:
        server.should_exit = True
        thread.join(10)


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def test_hundreds_of_slow_connections_do_not_lock_out_health_checks(tmp_path: Path) -> None:
    """The probe's scenario: 300 half-header connections against a 256-descriptor server (default settings)."""
    server = ScoreServer(tmp_path / "server-data", preexec_fn=_low_fd_limit).start()
    slow: list[socket.socket] = []
    try:
        assert server.process is not None
        for _ in range(300):
            sock = connect(server)
            sock.sendall(b"GET /actuator/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            slow.append(sock)
        for _ in range(5):
            start = time.monotonic()
            response = httpx.get(f"{server.url}/actuator/health", timeout=5)
            elapsed = time.monotonic() - start
            assert response.status_code == 200, response.text
            assert elapsed < 2, f"health answered in {elapsed:.2f}s"
            open_fds = len(os.listdir(f"/proc/{server.process.pid}/fd"))
            assert open_fds < 256 - 16, f"{open_fds} descriptors open"
            for _ in range(20):  # and more slow clients keep coming
                sock = connect(server)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: ")
                slow.append(sock)
    finally:
        for sock in slow:
            sock.close()
        server.stop()
