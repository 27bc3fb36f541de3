"""Where a download specification runs: on the event loop only when every call it makes is in-process.

On the embedded default (local store, SQLite registry, built-in tokens) the specification answers on the event
loop, which is what lets one process answer over 1,000 of them a second (bench/load.py). With anything that can
wait on a network (here a remote Song that takes 2 s to answer) it must keep the thread pool: a slow metadata
server may not stall the other requests of the replica.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from score.server.app import answers_in_process
from score.server.settings import ServerSettings
from tests.conftest import ScoreServer
from tests.services.json_server import JsonServer, Seen

SLOW_SONG_SECONDS = 2.0
OBJECT_ID = "5b9c3a1e-8f0d-4c8e-9a61-2f7a4b1c9d00"


def _slow_not_found(_: Seen) -> tuple[int, object]:
    time.sleep(SLOW_SONG_SECONDS)
    return 404, {"errorId": "entity.not.found", "message": "no such entity"}


def test_slow_remote_song_does_not_stall_other_requests(tmp_path: Path) -> None:
    with JsonServer({f"/entities/{OBJECT_ID}": _slow_not_found}) as song:
        server = ScoreServer(
            tmp_path / "data", extra_env={"SCORE_METADATA_URL": song.url, "SCORE_METADATA_CACHE_TTL": "0"}
        ).start()
        try:
            token = server.token("score.READ")
            answers: list[httpx.Response] = []
            waiting = threading.Thread(
                target=lambda: answers.append(
                    httpx.get(f"{server.url}/download/{OBJECT_ID}", headers={"Authorization": f"Bearer {token}"})
                )
            )
            waiting.start()
            deadline = time.monotonic() + 5
            while not song.requests and time.monotonic() < deadline:  # the specification is now waiting on Song
                time.sleep(0.01)
            assert song.requests, "the specification never reached Song"
            started = time.monotonic()
            live = httpx.get(f"{server.url}/actuator/health/liveness", timeout=5)
            took = time.monotonic() - started
            waiting.join(10)
            assert live.status_code == 200
            assert took < SLOW_SONG_SECONDS / 2, f"liveness waited {took:.2f} s behind a slow Song call"
            assert answers and answers[0].status_code == 404, answers and answers[0].text
            assert "not registered" in answers[0].json()["message"]
        finally:
            server.stop()


def test_only_the_embedded_default_answers_in_process(tmp_path: Path) -> None:
    base = {"data_dir": tmp_path}
    s3 = {"endpoint": "http://127.0.0.1:1", "bucket": "b", "access_key": "a", "secret_key": "s"}
    assert answers_in_process(ServerSettings(**base))
    assert not answers_in_process(ServerSettings(**base, storage="s3", s3=s3))
    assert not answers_in_process(ServerSettings(**base, storage="posix", posix={"root": str(tmp_path / "shared")}))
    assert not answers_in_process(ServerSettings(**base, registry_url="postgresql://score@127.0.0.1/score"))
    assert not answers_in_process(ServerSettings(**base, metadata_url="http://127.0.0.1:1"))
    jwt = {"issuer": "https://idp.example", "jwks_url": "https://idp.example/jwks"}
    assert not answers_in_process(ServerSettings(**base, auth={"jwt": [jwt]}))
    introspection = {"url": "https://idp.example/introspect", "client_id": "c", "client_secret": "s"}
    assert not answers_in_process(ServerSettings(**base, auth={"introspection": introspection}))
