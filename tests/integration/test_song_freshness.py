"""A Score server with a remote Song sees publish-state and access changes at once, with bounded Song load.

Song cannot run here, so a fake built from Song's documented read API (``GET /entities/{id}`` and
``GET /studies/{s}/analysis/{a}``, whose state and files an operator changes between requests) stands in for
it, and counts the requests it receives. Score itself runs as a real ``score-server`` process.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from score.server.metadata.base import PUBLISHED, UNPUBLISHED
from tests.conftest import Client, ScoreServer, make_file, md5_of

STUDY = "FRESH"


class FakeSong(ThreadingHTTPServer):
    """Song's read API over one study's analyses, with a request counter per kind ("entity", "analysis", ...)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SongHandler)
        self.lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.states: dict[str, str] = {}
        self.files: dict[str, dict[str, object]] = {}  # object id -> Song file record (with analysisId)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/song"

    def submit(self, paths: list[Path], access: str = "open") -> tuple[str, dict[str, str]]:
        analysis_id = str(uuid.uuid4())
        ids = {}
        with self.lock:
            self.states[analysis_id] = UNPUBLISHED
            for path in paths:
                oid = ids[path.name] = str(uuid.uuid4())
                self.files[oid] = {
                    "objectId": oid,
                    "analysisId": analysis_id,
                    "studyId": STUDY,
                    "fileName": path.name,
                    "fileSize": path.stat().st_size,
                    "fileMd5sum": md5_of(path),
                    "fileAccess": access,
                    "fileType": "BAM",
                }
        return analysis_id, ids

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, object]:
        parts = path.removeprefix("/song/").split("/")
        with self.lock:
            if parts == ["entities"]:  # the legacy paged listing score-client uses (the server never does)
                self.hits["entities"] += 1
                wanted = query.get("gnosId", [""])[0]
                content = [self._entity(r) for r in self.files.values() if r["analysisId"] == wanted]
                return 200, {"content": content, "last": True}
            if len(parts) == 2 and parts[0] == "entities":
                self.hits["entity"] += 1
                record = self.files.get(parts[1])
                if record is None:
                    return 404, {"errorId": "entity.not.found"}
                return 200, self._entity(record)
            if len(parts) == 4 and parts[0] == "studies" and parts[2] == "analysis":
                self.hits["analysis"] += 1
                study, analysis_id = parts[1], parts[3]
                if study != STUDY or analysis_id not in self.states:
                    return 404, {"errorId": "analysis.id.not.found"}
                files = [dict(r) for r in self.files.values() if r["analysisId"] == analysis_id]
                return 200, {
                    "analysisId": analysis_id,
                    "studyId": study,
                    "analysisState": self.states[analysis_id],
                    "files": files,
                }
            if len(parts) == 5 and parts[0] == "studies" and parts[2] == "analysis" and parts[4] == "files":
                self.hits["files"] += 1  # what score-client itself asks (the server never does)
                return 200, [dict(r) for r in self.files.values() if r["analysisId"] == parts[3]]
        return 404, {"errorId": "not.found"}

    @staticmethod
    def _entity(record: dict[str, object]) -> dict[str, object]:
        return {
            "id": record["objectId"],
            "gnosId": record["analysisId"],
            "fileName": record["fileName"],
            "projectCode": record["studyId"],
            "access": record["fileAccess"],
        }


class _SongHandler(BaseHTTPRequestHandler):
    server: FakeSong

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        status, body = self.server.answer(url.path, parse_qs(url.query))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def song() -> Iterator[FakeSong]:
    fake = FakeSong()
    thread = threading.Thread(target=fake.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.shutdown()
    fake.server_close()


@pytest.fixture
def remote(song: FakeSong, tmp_path: Path) -> Iterator[ScoreServer]:
    # The default metadata_cache_ttl (30 s): the staleness this guards against came with it.
    instance = ScoreServer(tmp_path / "data", extra_env={"SCORE_METADATA_URL": song.url}).start()
    yield instance
    instance.stop()


def test_publish_state_and_access_are_never_stale(song: FakeSong, remote: ScoreServer, tmp_path: Path) -> None:
    source = make_file(tmp_path / "in" / "f.bin", 50_000, seed=3)
    analysis_id, ids = song.submit([source])
    oid = ids["f.bin"]
    token = remote.token("score.WRITE score.READ")
    auth = {"Authorization": f"Bearer {token}"}
    work = tmp_path / "work"
    work.mkdir()
    upload = Client(remote, token, work).run("upload", "--file", str(source), "--object-id", oid, METADATA_URL=song.url)
    assert upload.returncode == 0, upload.stderr

    def download_spec() -> httpx.Response:
        return httpx.get(f"{remote.url}/download/{oid}", params={"offset": 0, "length": -1}, headers=auth)

    def initiate() -> httpx.Response:
        size = source.stat().st_size
        return httpx.post(
            f"{remote.url}/upload/{oid}/uploads", params={"fileSize": size, "overwrite": "true"}, headers=auth
        )

    for _ in range(3):  # flip back and forth: each request sees the state Song has now
        song.states[analysis_id] = PUBLISHED
        assert download_spec().status_code == 200
        refused = initiate()
        assert refused.status_code == 400 and "is PUBLISHED" in refused.json()["message"]
        out = tmp_path / "out"
        download = Client(remote, token, work).run(
            "download", "--object-id", oid, "--output-dir", str(out), "--force", METADATA_URL=song.url
        )
        assert download.returncode == 0, download.stderr
        assert md5_of(out / "f.bin") == md5_of(source)

        song.states[analysis_id] = UNPUBLISHED  # no wait: the very next request must see it
        early = download_spec()
        assert early.status_code == 400 and "is UNPUBLISHED" in early.json()["message"]
        assert initiate().status_code == 200

    # Access is a decision too: a file made controlled is refused to an anonymous caller at once.
    song.states[analysis_id] = PUBLISHED
    assert httpx.get(f"{remote.url}/download/{oid}", params={"offset": 0, "length": -1}).status_code == 200
    song.files[oid]["fileAccess"] = "controlled"
    assert httpx.get(f"{remote.url}/download/{oid}", params={"offset": 0, "length": -1}).status_code in (401, 403)


def test_one_request_asks_song_for_the_analysis_once(song: FakeSong, remote: ScoreServer, tmp_path: Path) -> None:
    count = 40
    paths = [make_file(tmp_path / "in" / f"f{i}.bin", 100 + i, seed=i) for i in range(count)]
    _, ids = song.submit(paths)
    auth = {"Authorization": f"Bearer {remote.token('score.WRITE score.READ')}"}
    body = {"uploads": [{"objectId": ids[p.name], "fileSize": p.stat().st_size} for p in paths]}

    first = httpx.post(f"{remote.url}/batch/upload/initiate", json=body, headers=auth, timeout=60)
    assert first.status_code == 200 and not first.json()["errors"], first.text
    assert song.hits["analysis"] == 1  # one state/access answer for the whole batch
    assert song.hits["entity"] <= 8 + 1  # at most the objects looked up before the analysis named the rest

    song.hits.clear()
    again = httpx.post(f"{remote.url}/batch/download/specs", json={"objectIds": list(ids.values())}, headers=auth)
    assert again.status_code == 200
    assert len(again.json()["errors"]) == count  # nothing uploaded and UNPUBLISHED: refused, per object
    assert song.hits == Counter({"analysis": 1})  # ids cached (they cannot change); state asked once, fresh

    song.hits.clear()
    single = httpx.post(f"{remote.url}/upload/{ids['f0.bin']}/uploads", params={"fileSize": 100}, headers=auth)
    assert single.status_code == 200, single.text
    assert song.hits == Counter({"analysis": 1})  # access and state checks of one request share one answer


def test_an_empty_file_is_refused_at_initiate_with_a_remote_song(
    song: FakeSong, remote: ScoreServer, tmp_path: Path
) -> None:
    """Song's publish check rejects objectSize 0 (storageDownloadResponse.json): with a remote Song an empty
    file is refused when its upload starts, saying why, instead of failing at publish after the upload."""
    empty = make_file(tmp_path / "in" / "empty.bin", 0)
    _, ids = song.submit([empty])
    token = remote.token("score.WRITE score.READ")
    answer = httpx.post(
        f"{remote.url}/upload/{ids['empty.bin']}/uploads",
        params={"fileSize": 0},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 400, answer.text
    assert "cannot publish empty files" in answer.json()["message"]
    assert (
        httpx.get(f"{remote.url}/upload/{ids['empty.bin']}", headers={"Authorization": f"Bearer {token}"}).json()
        is False
    )
