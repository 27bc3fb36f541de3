"""What an operator of replicas relies on: request ids, JSON logs, metrics, health probes, graceful shutdown,
and ``--workers``. Each runs the real server process and reads what it answers and what it logs."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import Client, Registry, ScoreServer, make_file
from tests.prometheus import samples, value

STUDY = "OPS"
HEX_ID = re.compile(r"[0-9a-f]{32}\Z")


@pytest.fixture
def server(tmp_path: Path) -> ScoreServer:
    s = ScoreServer(tmp_path / "data").start()
    yield s
    s.stop()


def test_a_request_id_names_the_answer_the_error_body_the_audit_and_log_lines(server: ScoreServer) -> None:
    given = httpx.get(f"{server.url}/upload/some-object", headers={"X-Request-ID": "balancer-42.a"})
    assert given.status_code == 401
    assert given.headers["x-request-id"] == "balancer-42.a"
    assert given.json()["requestId"] == "balancer-42.a"

    made = httpx.get(f"{server.url}/upload/other-object")
    assert HEX_ID.match(made.headers["x-request-id"]), made.headers
    assert made.json()["requestId"] == made.headers["x-request-id"]
    # What a caller puts in the header reaches the logs only as a plain token: anything else gets a new id.
    for hostile in ("has space", "x" * 129, "line\tbreak", "{json}"):
        answer = httpx.get(f"{server.url}/upload/some-object", headers={"X-Request-ID": hostile})
        assert HEX_ID.match(answer.headers["x-request-id"]), hostile
    assert httpx.get(f"{server.url}/actuator/health").headers["x-request-id"]  # every answer has one

    audit = [json.loads(line) for line in (server.data_dir / "logs" / "audit.log").read_text().splitlines()]
    assert next(a["requestId"] for a in audit if a["object"] == "some-object") == "balancer-42.a"
    assert next(a["requestId"] for a in audit if a["object"] == "other-object") == made.headers["x-request-id"]
    log = server.log_path.read_text()
    assert "[balancer-42.a] " in log and "score.audit" in log


def test_json_logs_carry_the_request_id(tmp_path: Path) -> None:
    server = ScoreServer(tmp_path / "data", extra_env={"SCORE_LOG_FORMAT": "json"}).start()
    try:
        answer = httpx.get(f"{server.url}/upload/some-object", headers={"X-Request-ID": "json-1"})
        assert answer.status_code == 401
        time.sleep(0.2)
    finally:
        server.stop()
    records = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    audit = [r for r in records if r["logger"] == "score.audit"]
    assert audit and audit[0]["requestId"] == "json-1" and audit[0]["level"] == "INFO"
    assert json.loads(audit[0]["message"])["decision"] == "deny"
    assert {"time", "level", "logger", "requestId", "message"} <= set(records[0])


def test_metrics_count_requests_store_calls_tokens_decisions_and_open_uploads(
    server: ScoreServer, tmp_path: Path
) -> None:
    token = server.token("score.WRITE score.READ song.WRITE")
    auth = {"Authorization": f"Bearer {token}"}
    registry = Registry(server, token)
    source = make_file(tmp_path / "in" / "m.bin", 3 * server.part_size + 1, seed=3)
    analysis_id, ids = registry.submit(STUDY, [source])
    spec = httpx.post(f"{server.url}/upload/{ids['m.bin']}/uploads", params={"fileSize": 10}, headers=auth)
    assert spec.status_code == 400  # the registered size differs: refused, and counted as a 400
    started = httpx.post(
        f"{server.url}/upload/{ids['m.bin']}/uploads", params={"fileSize": source.stat().st_size}, headers=auth
    )
    assert started.status_code == 200
    text = httpx.get(f"{server.url}/metrics").text
    assert samples(text, "score_uploads_open") == [({}, 1.0)]

    work = tmp_path / "work"
    work.mkdir()
    client = Client(server, token, work)
    assert client.run("upload", "--file", str(source), "--object-id", ids["m.bin"], "--force").returncode == 0
    assert registry.publish(STUDY, analysis_id).status_code == 200
    assert client.run("download", ids["m.bin"], "--output-dir", str(tmp_path / "out")).returncode == 0
    assert httpx.get(f"{server.url}/upload/x", headers={"Authorization": "Bearer not-a-token"}).status_code == 401

    text = httpx.get(f"{server.url}/metrics").text
    requests = "score_http_requests_total"
    assert value(text, requests, method="POST", route="/upload/{object_id}/uploads", status="400") == 1
    assert value(text, requests, method="POST", route="/upload/{object_id}/uploads", status="200") == 1
    publish = "/song/studies/{studyId}/analysis/publish/{analysisId}"
    assert value(text, requests, method="PUT", route=publish, status="200") == 1
    routes = {labels["route"] for labels, _ in samples(text, requests)}
    assert routes >= {"/batch/upload/initiate", "/batch/download/specs", "/_store/{key:path}", "/metrics"}
    assert all(
        r.startswith(("/upload", "/download", "/batch", "/song/", "/_store/", "/actuator", "/metrics")) for r in routes
    )
    latency = "score_http_request_duration_seconds_count"
    assert value(text, latency, method="POST", route="/upload/{object_id}/uploads") == 2
    calls = "score_backend_calls_total"
    assert value(text, calls, backend="store", operation="write_document", outcome="ok") >= 2  # state, .meta
    assert value(text, calls, backend="registry") >= 3
    checks = "score_auth_token_checks_total"
    assert value(text, checks, provider="builtin", outcome="ok") >= 4
    assert value(text, checks, provider="none", outcome="invalid") == 1
    size = source.stat().st_size
    assert value(text, "score_signed_urls_total", direction="upload") >= 4  # initiate's four parts, then the client's
    assert value(text, "score_authorised_bytes_total", direction="upload") >= 2 * size
    assert value(text, "score_signed_urls_total", direction="download") >= 4
    assert value(text, "score_authorised_bytes_total", direction="download") >= size
    decisions = "score_auth_decisions_total"
    assert value(text, decisions, action="download", decision="allow") >= 1
    assert value(text, decisions, action="upload", decision="allow") >= 1
    # No id of any object or analysis is a label: the number of series stays bounded.
    assert ids["m.bin"] not in text and analysis_id not in text


def test_liveness_stays_up_when_readiness_is_down(server: ScoreServer) -> None:
    assert httpx.get(f"{server.url}/actuator/health/readiness").status_code == 200
    sentinels = [p for p in (server.data_dir / "store" / "objects" / "data").iterdir() if not p.name.endswith(".meta")]
    assert len(sentinels) == 1, sentinels  # the store's sentinel object, its only data object so far
    sentinels[0].unlink()
    ready = httpx.get(f"{server.url}/actuator/health/readiness")
    assert ready.status_code == 503 and ready.json()["details"]["foundSentinel"] is False
    live = httpx.get(f"{server.url}/actuator/health/liveness")
    assert live.status_code == 200 and live.json()["status"] == "UP"


def _slow_put(server: ScoreServer, tmp_path: Path) -> tuple[http.client.HTTPConnection, bytes]:
    """A part PUT to the embedded store with only half its body sent yet: a request in flight."""
    token = server.token("score.WRITE song.WRITE")
    source = make_file(tmp_path / "in" / "slow.bin", 1000, seed=9)
    _, ids = Registry(server, token).submit(STUDY, [source])
    spec = httpx.post(
        f"{server.url}/upload/{ids['slow.bin']}/uploads",
        params={"fileSize": 1000},
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    url = urlsplit(spec["parts"][0]["url"])
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    connection.putrequest("PUT", f"{url.path}?{url.query}")
    connection.putheader("Content-Length", "1000")
    connection.endheaders()
    data = source.read_bytes()
    connection.send(data[:500])
    return connection, data


def test_sigterm_refuses_new_connections_and_finishes_requests_in_flight(server: ScoreServer, tmp_path: Path) -> None:
    connection, data = _slow_put(server, tmp_path)
    time.sleep(0.3)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    connection.send(data[500:])
    answer = connection.getresponse()
    assert answer.status == 200, answer.read()
    # uvicorn ends by raising the signal again once shut down, as a process manager expects (systemd counts it
    # as a clean stop).
    assert server.process.wait(15) in (0, -signal.SIGTERM)


def test_sigterm_cuts_what_is_still_running_after_the_shutdown_timeout(tmp_path: Path) -> None:
    server = ScoreServer(tmp_path / "data", extra_env={"SCORE_SHUTDOWN_TIMEOUT": "2"}).start()
    connection, _ = _slow_put(server, tmp_path)  # and never finished
    assert server.process is not None
    began = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(20)
    took = time.monotonic() - began
    assert 1.5 < took < 10, took
    connection.close()


def test_workers_share_one_metrics_view(tmp_path: Path) -> None:
    server = ScoreServer(tmp_path / "data", extra_args=("--workers", "2")).start()
    try:
        pids = set()
        for _ in range(60):
            with httpx.Client() as fresh:  # a new connection each time, so the kernel spreads them
                answer = fresh.get(f"{server.url}/download/ping")
                assert answer.status_code in (200, 401, 404), answer.text
        text = httpx.get(f"{server.url}/metrics").text
        counted = value(text, "score_http_requests_total", route="/download/ping")
        assert counted == 60, text
        pids = {p.name.split("_")[-1] for p in (server.data_dir / "metrics").glob("*.db")}
        assert len(pids) >= 2, f"both workers answered: {pids}"
    finally:
        server.stop()


def test_the_audit_file_follows_log_rotation(server: ScoreServer) -> None:
    audit = server.data_dir / "logs" / "audit.log"
    httpx.get(f"{server.url}/upload/before-rotation")
    rotated = audit.with_name("audit.log.1")
    audit.rename(rotated)  # what logrotate does, without telling the server
    time.sleep(1.1)  # the server looks for a rotation at most once a second
    httpx.get(f"{server.url}/upload/after-rotation")
    assert [json.loads(line)["object"] for line in rotated.read_text().splitlines()] == ["before-rotation"]
    assert [json.loads(line)["object"] for line in audit.read_text().splitlines()] == ["after-rotation"]
