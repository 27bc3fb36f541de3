"""SongMetadata against a real Song-compatible server: a score-server process and its embedded /song API.

A tiny stand-in HTTP server is used only where the real one cannot misbehave on demand (5xx, 4xx), to
count how many requests the retry policy makes.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from score.server.metadata.base import PUBLISHED, UNPUBLISHED, MetadataUnavailable
from score.server.metadata.song import SongMetadata
from tests.conftest import Client, Registry, ScoreServer, make_file, md5_of
from tests.services.process import free_port


@pytest.fixture
def song_server(tmp_path: Path) -> Iterator[ScoreServer]:
    instance = ScoreServer(tmp_path / "d").start()
    yield instance
    instance.stop()


@pytest.fixture
def song_registry(song_server: ScoreServer) -> Registry:
    return Registry(song_server, song_server.token("score.WRITE score.READ song.WRITE"))


def _submit(registry: Registry, tmp_path: Path, study: str = "S1") -> tuple[str, dict[str, str], list[Path]]:
    files = [make_file(tmp_path / "in" / "a.bam", 3000, seed=1), make_file(tmp_path / "in" / "b.txt", 1234, seed=2)]
    analysis_id, oids = registry.submit(study, files, access="open")
    return analysis_id, oids, files


def test_entity_carries_song_file_record(song_server: ScoreServer, song_registry: Registry, tmp_path: Path) -> None:
    analysis_id, oids, files = _submit(song_registry, tmp_path)
    with SongMetadata(f"{song_server.url}/song") as song:
        for path in files:
            entity = song.entity(oids[path.name])
            assert entity is not None
            assert (entity.id, entity.gnosId, entity.fileName, entity.projectCode, entity.access) == (
                oids[path.name],
                analysis_id,
                path.name,
                "S1",
                "open",
            )
            assert entity.fileSize == path.stat().st_size
            assert entity.fileMd5sum == md5_of(path)
            # The analysis' files as Song lists them, the same records (how htsget finds an index file).
            assert sorted(song.sibling_files(entity), key=lambda e: e.fileName) == [
                song.entity(oids[f.name]) for f in sorted(files, key=lambda f: f.name)
            ]


def test_analysis_entities_find_the_study(song_server: ScoreServer, song_registry: Registry, tmp_path: Path) -> None:
    """A DRS bundle id is an analysis id alone: Song's entity search names its study, the analysis its files."""
    analysis_id, oids, _ = _submit(song_registry, tmp_path)
    with SongMetadata(f"{song_server.url}/song") as song:
        found = song.analysis_entities(analysis_id)
        assert sorted(e.id for e in found) == sorted(oids.values())
        assert {(e.projectCode, e.gnosId, e.access) for e in found} == {("S1", analysis_id, "open")}
        assert song.analysis_entities(str(uuid.uuid4())) == []
        assert song.analysis_entities("../x") == []


def test_unknown_and_invalid_ids_are_none(song_server: ScoreServer, song_registry: Registry, tmp_path: Path) -> None:
    analysis_id, _, _ = _submit(song_registry, tmp_path)
    with SongMetadata(f"{song_server.url}/song") as song:
        assert song.entity(str(uuid.uuid4())) is None
        for bad in ("", "../etc", "a/b", "x?y=1", "a" * 200):
            assert song.entity(bad) is None
            assert song.analysis_state("S1", bad) is None
            assert song.analysis_state(bad, analysis_id) is None
        assert song.analysis_state("S1", str(uuid.uuid4())) is None  # Song: 404
        assert song.analysis_state("NOSTUDY", analysis_id) is None  # Song: 404 (study)
        song_registry.study("S2")
        assert song.analysis_state("S2", analysis_id) is None  # Song: 400 (not related to study)


def test_analysis_state_follows_publish(song_server: ScoreServer, song_registry: Registry, tmp_path: Path) -> None:
    analysis_id, oids, files = _submit(song_registry, tmp_path)
    with SongMetadata(f"{song_server.url}/song", cache_ttl=0) as song:
        assert song.analysis_state("S1", analysis_id) == UNPUBLISHED
        work = tmp_path / "work"
        work.mkdir()
        client = Client(song_server, song_server.token("score.WRITE score.READ"), work)
        for path in files:
            result = client.run("upload", "--file", str(path), "--object-id", oids[path.name])
            assert result.returncode == 0, result.stderr
        response = song_registry.publish("S1", analysis_id)
        assert response.status_code == 200, response.text
        assert song.analysis_state("S1", analysis_id) == PUBLISHED


def test_state_and_access_are_never_served_from_the_cache(
    song_server: ScoreServer, song_registry: Registry, tmp_path: Path
) -> None:
    """Only an object's study/analysis ids are cached: with Song gone, access and state cannot be decided."""
    analysis_id, oids, _ = _submit(song_registry, tmp_path)
    oid = oids["a.bam"]
    with SongMetadata(f"{song_server.url}/song", cache_ttl=60, retries=0, timeout=2) as song:
        first = song.entity(oid)
        assert first is not None
        assert song.analysis_state("S1", analysis_id) == UNPUBLISHED
        song_server.stop()  # from here on, any request to Song fails
        with pytest.raises(MetadataUnavailable, match="unreachable"):
            song.entity(oid)
        with pytest.raises(MetadataUnavailable, match="unreachable"):
            song.analysis_state("S1", analysis_id)


def test_song_down_is_unavailable_after_retries(tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{free_port()}/song"
    started = time.monotonic()
    with SongMetadata(base, timeout=1, retries=2) as song:
        with pytest.raises(MetadataUnavailable) as caught:
            song.entity(str(uuid.uuid4()))
        elapsed = time.monotonic() - started
        message = str(caught.value)
        assert base in message
        assert "unreachable" in message
        assert "3 attempt" in message
        assert elapsed < 5
        with pytest.raises(MetadataUnavailable, match="unreachable"):
            song.analysis_state("S1", str(uuid.uuid4()))


def test_credentials_in_the_url_never_reach_the_message() -> None:
    port = free_port()
    song = SongMetadata(f"http://user:s3cret@127.0.0.1:{port}/song", timeout=1, retries=0)
    with song, pytest.raises(MetadataUnavailable) as caught:
        song.entity(str(uuid.uuid4()))
    assert "s3cret" not in str(caught.value)
    assert f"http://127.0.0.1:{port}/song" in str(caught.value)


class _Scripted(BaseHTTPRequestHandler):
    """Answers every GET with the server's ``status`` and counts requests and Authorization headers."""

    def do_GET(self) -> None:
        server = self.server
        server.hits += 1  # type: ignore[attr-defined]
        if self.headers.get("Authorization"):
            server.authorized += 1  # type: ignore[attr-defined]
        body = server.body  # type: ignore[attr-defined]
        self.send_response(server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    httpd.hits = 0  # type: ignore[attr-defined]
    httpd.authorized = 0  # type: ignore[attr-defined]
    httpd.body = b'{"errorId": "x"}'  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_5xx_is_retried_and_4xx_is_not(scripted: ThreadingHTTPServer) -> None:
    base = f"http://127.0.0.1:{scripted.server_address[1]}/song"
    with SongMetadata(base, timeout=2, retries=2) as song:
        scripted.status = 503  # type: ignore[attr-defined]
        with pytest.raises(MetadataUnavailable, match="HTTP 503") as caught:
            song.entity(str(uuid.uuid4()))
        assert base in str(caught.value)
        assert scripted.hits == 3  # type: ignore[attr-defined]

        scripted.status = 403  # type: ignore[attr-defined]
        scripted.hits = 0  # type: ignore[attr-defined]
        with pytest.raises(MetadataUnavailable, match="HTTP 403"):
            song.entity(str(uuid.uuid4()))
        assert scripted.hits == 1  # type: ignore[attr-defined]

        scripted.status = 400  # type: ignore[attr-defined]
        assert song.analysis_state("S1", str(uuid.uuid4())) is None
    assert scripted.authorized == 0  # type: ignore[attr-defined]


def test_wrong_entity_or_missing_state_is_unavailable(scripted: ThreadingHTTPServer) -> None:
    base = f"http://127.0.0.1:{scripted.server_address[1]}/song"
    scripted.status = 200  # type: ignore[attr-defined]
    with SongMetadata(base, timeout=2, retries=0) as song:
        scripted.body = (  # type: ignore[attr-defined]
            b'{"id": "other", "gnosId": "A1", "fileName": "f", "projectCode": "S1", "access": "open"}'
        )
        with pytest.raises(MetadataUnavailable, match="asked for entity wanted but got other"):
            song.entity("wanted")
        scripted.body = b'{"analysisId": "A1", "files": []}'  # type: ignore[attr-defined]
        with pytest.raises(MetadataUnavailable, match="no analysisState"):
            song.analysis_state("S1", "A1")
