"""Song's own Python SDK (overture-song 5.0.0, ``overture_song``) against a real ``score-server`` process.

The SDK's rest layer (overture_song/rest.py ``intercept_response``) raises its ``SongError`` only for a body
with every SongError field (model.py ``SongError.is_song_error``), otherwise "[UNKNOWN_REST_ERROR] Not a song
error"; ``StudyClient.has`` (client.py) branches on errorId ``study.id.does.not.exist``. The SDK has no call
for analysis types or export (client.py ``Endpoints``), so those are made as Song's song-client makes them:
``POST /schemas`` and ``GET /export/analysis/{ids}`` (SONG AnalysisTypeController.java, ExportController.java).
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.conftest import Client, ScoreServer, md5_of
from tests.integration.test_song_api_breadth import SAMPLE, TYPE_SCHEMA


@pytest.fixture
def server(tmp_path: Path, registry_db: str) -> Iterator[ScoreServer]:
    """A real ``score-server`` on each registry database: its embedded SQLite file, or PostgreSQL through
    ``SCORE_REGISTRY_URL``."""
    env = {"SCORE_REGISTRY_URL": registry_db} if registry_db.startswith("postgresql://") else {}
    instance = ScoreServer(tmp_path / "server-data", extra_env=env).start()
    yield instance
    instance.stop()


def _import_sdk() -> tuple[ModuleType, ModuleType, ModuleType]:
    """overture-song 5.0.0 does not import on Python 3.11+: entities.py gives dataclass fields an
    ``AnalysisType()`` default, which 3.11 refuses as mutable (unhashable). Its dataclasses are made hashable
    while it imports (``unsafe_hash``), which changes nothing it sends or parses."""
    original = dataclasses.dataclass

    def hashable(cls: Any = None, /, **options: Any) -> Any:
        options.setdefault("unsafe_hash", True)
        return original(**options) if cls is None else original(cls, **options)

    dataclasses.dataclass = hashable  # type: ignore[assignment]
    try:
        return tuple(importlib.import_module(f"overture_song.{m}") for m in ("client", "entities", "model"))  # type: ignore[return-value]
    finally:
        dataclasses.dataclass = original


_client, _entities, _model = _import_sdk()
Api, StudyClient = _client.Api, _client.StudyClient
Study = _entities.Study
ApiConfig, FileUpdateRequest, SongError = _model.ApiConfig, _model.FileUpdateRequest, _model.SongError


def _api(server: ScoreServer, token: str | None, study: str = "SDK1") -> Any:
    return Api(ApiConfig(f"{server.url}/song", study, token))


def _raises_song_error(call: object, error_id: str, status: int) -> Any:
    with pytest.raises(SongError) as caught:
        call()  # type: ignore[operator]
    assert (caught.value.errorId, caught.value.httpStatusCode) == (error_id, status)
    return caught.value


def test_song_sdk_drives_the_embedded_registry(
    server: ScoreServer, admin_token: str, client: Client, tmp_path: Path
) -> None:
    api = _api(server, admin_token)
    studies = StudyClient(api)
    assert not studies.has("SDK1")  # the SDK's own branch on study.id.does.not.exist
    studies.create(Study.create("SDK1", name="sdk", organization="test", description="d"))
    assert studies.read("SDK1").name == "sdk"

    song = httpx.Client(base_url=f"{server.url}/song", headers={"Authorization": f"Bearer {admin_token}"})
    registered = song.post("/schemas", json={"name": "variantCall", "schema": TYPE_SCHEMA})
    assert registered.status_code == 200 and registered.json()["version"] == 1, registered.text

    data = client.workdir / "calls.vcf.gz"
    data.write_bytes(b"##fileformat=VCFv4.2\n")
    payload = {
        "studyId": "SDK1",
        "analysisType": {"name": "variantCall"},
        "samples": [SAMPLE],
        "files": [
            {
                "fileName": data.name,
                "fileSize": data.stat().st_size,
                "fileMd5sum": md5_of(data),
                "fileType": "VCF",
                "fileAccess": "open",
                "dataType": "Variants",
            }
        ],
        "experiment": {"platform": "ILLUMINA"},
    }
    submitted = api.submit(payload)
    assert submitted.status == "OK"
    analysis_id = submitted.analysisId

    files = api.get_analysis_files(analysis_id)
    object_id = files[0].objectId
    upload = client.run("upload", "--analysis-id", analysis_id, "--study-id", "SDK1", "--input-dir", ".")
    assert upload.returncode == 0, upload.stderr

    assert api.publish(analysis_id).message == f"AnalysisId {analysis_id} successfully published"
    analysis = api.get_analysis(analysis_id)
    assert (analysis.analysisState, analysis.analysisType.name, analysis.analysisType.version) == (
        "PUBLISHED",
        "variantCall",
        1,
    )

    update = FileUpdateRequest()
    update.fileAccess = "controlled"
    updated = api.update_file(object_id, update)
    assert (updated.fileUpdateType, updated.originalFile.fileAccess) == ("METADATA_UPDATE", "open")
    content = FileUpdateRequest()
    content.fileSize = 1
    _raises_song_error(lambda: api.update_file(object_id, content), "illegal.file.update.request", 400)

    found = api.id_search(sample_id=analysis.samples[0].sampleId)
    assert [a.analysisId for a in found] == [analysis_id]
    assert api.id_search(donor_id="nobody") == []

    (exported,) = song.get(f"/export/analysis/{analysis_id}").json()
    assert exported["studyId"] == "SDK1"
    assert exported["payloads"][0]["files"][0]["fileAccess"] == "controlled"

    assert api.unpublish(analysis_id).message == f"AnalysisId {analysis_id} successfully unpublished"
    assert api.get_analysis(analysis_id).analysisState == "UNPUBLISHED"


def test_song_sdk_raises_its_song_error_for_every_refusal(server: ScoreServer, admin_token: str) -> None:
    api = _api(server, admin_token)
    StudyClient(api).create(Study.create("SDK1"))
    _raises_song_error(lambda: api.get_analysis("nope"), "analysis.id.not.found", 404)
    _raises_song_error(lambda: api.get_study("NOPE"), "study.id.does.not.exist", 404)
    # The SDK still calls Song 1.x's /schema/list, which Song 5 no longer has: a Song error, not UNKNOWN_REST_ERROR
    _raises_song_error(api.list_schemas, "id.not.found", 404)
    _raises_song_error(lambda: _api(server, None).publish("nope"), "unauthorized.token", 401)
    other = _api(server, server.token("PROGRAMDATA-OTHER.WRITE"))
    _raises_song_error(lambda: other.publish("nope"), "forbidden.token", 403)
    unregistered = {"studyId": "SDK1", "analysisType": {"name": "t"}, "files": []}
    error = _raises_song_error(lambda: api.submit(unregistered), "schema.violation", 400)
    assert "files" in error.message


@pytest.mark.parametrize("registry_db", ["postgres"], indirect=True)
def test_an_unreachable_postgres_is_503_and_readiness_down_never_500(
    server: ScoreServer, admin_token: str, registry_db: str, postgres: Any
) -> None:
    song = httpx.Client(base_url=f"{server.url}/song", headers={"Authorization": f"Bearer {admin_token}"}, timeout=30)
    assert song.post("/studies/PG1/", json={"name": "pg"}).status_code == 200
    ready = httpx.get(f"{server.url}/actuator/health/readiness", timeout=30)
    assert (ready.status_code, ready.json()["details"]["registry"]) == (200, {"status": "UP"})

    postgres.drop_database(registry_db)  # ends the server's sessions; no new one can be opened

    ready = httpx.get(f"{server.url}/actuator/health/readiness", timeout=30)
    assert ready.status_code == 503
    assert ready.json()["status"] == "DOWN"
    registry = ready.json()["details"]["registry"]
    assert registry["status"] == "DOWN" and "registry database" in registry["error"], registry
    assert "registry-test" not in registry["error"]  # no password in the report
    for call in (lambda: song.get("/studies/PG1"), lambda: song.post("/studies/PG2/", json={})):
        r = call()
        assert r.status_code == 503, r.text
        assert r.json()["errorId"] == "service.unavailable"
        assert "registry database" in r.json()["message"] and "retry" in r.json()["message"]
    # Score's own calls that ask the registry (a download's access check) answer 503 too
    download = httpx.get(
        f"{server.url}/download/{'0' * 8}-0000-5000-8000-{'0' * 12}?offset=0&length=-1",
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=30,
    )
    assert download.status_code == 503, download.text


def test_the_postgres_pool_is_bounded_and_an_outage_answers_within_its_timeout(postgres: Any, tmp_path: Path) -> None:
    """``registry_pool_size`` caps the connections one server process opens, however many calls come at once;
    ``registry_pool_timeout`` is how long a call waits for one before its 503, and readiness waits at most 1 s."""
    import psycopg

    database = postgres.create_database()
    env = {"SCORE_REGISTRY_URL": database, "SCORE_REGISTRY_POOL_SIZE": "2", "SCORE_REGISTRY_POOL_TIMEOUT": "3"}
    server = ScoreServer(tmp_path / "data", extra_env=env).start()
    try:
        token = server.token("song.WRITE")
        song = httpx.Client(base_url=f"{server.url}/song", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert song.post("/studies/POOL/", json={"name": "pool"}).status_code == 200
        with ThreadPoolExecutor(24) as pool:
            answers = list(pool.map(lambda _: song.get("/studies/POOL").status_code, range(96)))
        assert answers == [200] * 96
        name = database.rsplit("/", 1)[1]
        with psycopg.connect(postgres.url(), autocommit=True) as admin:
            (opened,) = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()
        assert 1 <= opened <= 2, f"{opened} connections for a pool of 2"

        postgres.drop_database(database)
        started = time.monotonic()
        ready = httpx.get(f"{server.url}/actuator/health/readiness", timeout=30)
        assert ready.status_code == 503 and ready.json()["details"]["registry"]["status"] == "DOWN"
        assert time.monotonic() - started < 2.5, "readiness must not wait the pool's timeout"
        started = time.monotonic()
        refused = song.get("/studies/POOL")
        waited = time.monotonic() - started
        assert refused.status_code == 503 and "registry database" in refused.json()["message"], refused.text
        assert 2.5 < waited < 6, f"a call waited {waited:.1f} s for a connection (registry_pool_timeout = 3)"
    finally:
        server.stop()
