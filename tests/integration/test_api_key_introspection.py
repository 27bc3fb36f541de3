"""API keys against a real introspection endpoint, through a real server process, as the Java client sees it.

The Java client retries a 503 ten times, so a key the endpoint refuses (any 4xx, 401/403 included) must
be a 401 as on the original server; only a real outage of the endpoint (5xx, unreachable) is a 503.
The original posts the key as multipart/form-data, which ``auth.introspection.body`` reproduces.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ScoreServer
from tests.services.json_server import JsonServer, Seen
from tests.services.process import free_port

KEY = "7d0c0a0e-0d69-4b6f-8b8b-3a4e5cf5f0aa"
GOOD = {"exp": 4_000_000_000, "user_id": "carol", "scope": ["score.READ"]}
BASIC = "Basic " + base64.b64encode(b"score:secret").decode()


def _server(tmp_path: Path, url: str, body: str | None = None) -> ScoreServer:
    lines = [
        "[auth.introspection]",
        f'url = "{url}"',
        'client_id = "score"',
        'client_secret = "secret"',
        'token_field = "apiToken"',
        "cache_ttl = 0",
    ]
    if body:
        lines.append(f'body = "{body}"')
    config = tmp_path / "score.toml"
    config.write_text("\n".join(lines) + "\n")
    return ScoreServer(tmp_path / "data", extra_env={"SCORE_CONFIG": str(config)})


@pytest.fixture
def endpoint() -> Iterator[tuple[JsonServer, dict[str, Any]]]:
    """An Ego-style check endpoint whose answer each test sets: ``answer["status"]``/``answer["body"]``."""
    answer: dict[str, Any] = {"status": 200, "body": GOOD}

    def check(seen: Seen) -> tuple[int, Any]:
        return answer["status"], answer["body"]

    with JsonServer({"/check_api_key": check}) as idp:
        yield idp, answer


def _listing(server: ScoreServer) -> httpx.Response:
    return httpx.get(f"{server.url}/listing", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)


def test_a_refused_key_is_401_and_an_outage_is_503(tmp_path: Path, endpoint: tuple[JsonServer, dict[str, Any]]) -> None:
    idp, answer = endpoint
    server = _server(tmp_path, f"{idp.url}/check_api_key").start()
    try:
        assert _listing(server).status_code == 200
        seen = idp.requests[-1]
        assert seen.headers["authorization"] == BASIC
        assert seen.headers["content-type"] == "application/x-www-form-urlencoded"  # the default, RFC 7662
        assert seen.form == {"apiToken": KEY}

        for refusal in (401, 403, 400):
            answer.update(status=refusal, body={"error": "invalid key"})
            refused = _listing(server)
            assert refused.status_code == 401, (refusal, refused.text)
            assert refused.headers["www-authenticate"] == 'Bearer realm="score"'
            assert refused.json()["status"] == 401
            assert "API key" in refused.json()["message"]
            if refusal != 400:
                assert f"refused by the introspection endpoint ({refusal})" in refused.json()["message"]

        answer.update(status=500, body={"error": "boom"})
        down = _listing(server)
        assert down.status_code == 503, down.text
        assert "introspection endpoint answered 500" in down.json()["message"]
    finally:
        server.stop()


def test_an_unreachable_endpoint_is_503(tmp_path: Path) -> None:
    server = _server(tmp_path, f"http://127.0.0.1:{free_port()}/check_api_key").start()
    try:
        down = _listing(server)
        assert down.status_code == 503, down.text
        assert "cannot reach the token introspection endpoint" in down.json()["message"]
    finally:
        server.stop()


def test_multipart_body_as_the_original_sends_it(tmp_path: Path, endpoint: tuple[JsonServer, dict[str, Any]]) -> None:
    idp, _ = endpoint
    server = _server(tmp_path, f"{idp.url}/check_api_key", body="multipart").start()
    try:
        assert _listing(server).status_code == 200
        seen = idp.requests[-1]
        assert seen.headers["content-type"].startswith("multipart/form-data; boundary=")
        assert seen.form == {"apiToken": KEY}
        assert seen.headers["authorization"] == BASIC
    finally:
        server.stop()
