"""The /song API over real HTTP: a uvicorn server on a free port, the registry on SQLite and on PostgreSQL
(every test runs on both), real tokens.

The catalog below stands in for Score's own upload service (the in-process seam the registry asks
whether an object is stored); tests put ``StoredObject``s into it to decide what "uploaded" means.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from score.server.api.song import build_song_router
from score.server.audit import AuditLog
from score.server.auth.builtin import BuiltinIssuer
from score.server.errors import install_error_handlers
from score.server.metadata.base import PUBLISHED, SUPPRESSED, UNPUBLISHED, StoredObject
from score.server.metadata.registry import Registry, object_id_for, song_id
from score.server.settings import ScopeConfig

MD5_A = "0cc175b9c0f1b6a831c399e269772661"
MD5_B = "92eb5ffee6ae2fec3ad71c777531578f"
SONG_ERROR_FIELDS = {
    "errorId",
    "httpStatusCode",
    "httpStatusName",
    "message",
    "requestUrl",
    "debugMessage",
    "timestamp",
}


@dataclass
class Catalog:
    """What Score holds: object id -> StoredObject."""

    objects: dict[str, StoredObject] = field(default_factory=dict)

    def stored_object(self, object_id: str) -> StoredObject | None:
        return self.objects.get(object_id)

    def store(self, object_id: str, size: int, md5: str | None) -> None:
        self.objects[object_id] = StoredObject(object_id=object_id, size=size, md5=md5)


@dataclass
class Server:
    url: str
    registry: Registry
    catalog: Catalog
    issuer: BuiltinIssuer
    client: httpx.Client

    def token(self, *scopes: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.issue(list(scopes), ttl_seconds=300)}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.token("song.WRITE")


def _serve(app: FastAPI) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def srv(tmp_path: Path, registry_db: str) -> Iterator[Server]:
    """The /song API in a real server, once on each database the registry runs on (``registry_db``)."""
    catalog = Catalog()
    registry = Registry(registry_db, catalog)
    issuer = BuiltinIssuer(tmp_path)
    app = FastAPI()
    app.include_router(build_song_router(), prefix="/song")
    install_error_handlers(app)
    app.state.context = SimpleNamespace(
        metadata=registry,
        verifier=issuer,
        settings=SimpleNamespace(scopes=ScopeConfig()),
        audit=AuditLog(tmp_path / "audit.log"),  # refusals of registry writes are audited
    )
    for url in _serve(app):
        with httpx.Client(base_url=url, timeout=10) as client:
            yield Server(url, registry, catalog, issuer, client)


def file_json(name: str, size: int = 1, md5: str = MD5_A, access: str = "controlled", **extra: Any) -> dict:
    return {
        "fileName": name,
        "fileSize": size,
        "fileMd5sum": md5,
        "fileType": "BAM",
        "fileAccess": access,
        "dataType": "Aligned Reads",
        **extra,
    }


def payload(study: str, *files: dict, **extra: Any) -> dict:
    return {
        "studyId": study,
        "analysisType": {"name": "sequencingRead"},
        "files": list(files) or [file_json("a.bam")],
        **extra,
    }


def create_study(s: Server, study: str = "S1") -> None:
    r = s.client.post(
        f"/song/studies/{study}/",
        json={"studyId": study, "name": "Study one", "organization": "OICR", "info": {"k": "v"}},
        headers=s.admin,
    )
    assert r.status_code == 200, r.text


def submit(s: Server, study: str, body: dict) -> str:
    r = s.client.post(f"/song/submit/{study}", json=body, headers=s.admin)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "OK"
    return r.json()["analysisId"]


def assert_song_error(r: httpx.Response, status: int, error_id: str, *fragments: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body.keys() >= SONG_ERROR_FIELDS
    assert body["errorId"] == error_id
    assert body["httpStatusCode"] == status
    assert isinstance(body["timestamp"], int)
    assert "/song/" in body["requestUrl"]
    for fragment in fragments:
        assert fragment in body["message"], body["message"]
    return body


# ---- health and studies ---------------------------------------------------------------------------


def test_is_alive(srv: Server) -> None:
    r = srv.client.get("/song/isAlive")
    assert r.status_code == 200
    assert r.json() is True


def test_create_read_and_list_studies(srv: Server) -> None:
    r = srv.client.post(
        "/song/studies/S1/",
        json={"studyId": "S1", "name": "Study one", "organization": "OICR", "description": "d", "info": {"k": "v"}},
        headers=srv.admin,
    )
    assert r.status_code == 200
    # Song 5.2+: GenericMessage JSON (StudyController.saveStudy, StudyService.saveStudy line 77)
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"message": "Successfully created study 'S1'"}
    assert srv.client.get("/song/studies/S1").json() == {
        "studyId": "S1",
        "name": "Study one",
        "organization": "OICR",
        "description": "d",
        "info": {"k": "v"},
    }
    # without the trailing slash and without studyId in the body: the path decides
    assert srv.client.post("/song/studies/S2", json={"name": "two"}, headers=srv.admin).status_code == 200
    assert srv.client.get("/song/studies/S2").json() == {"studyId": "S2", "name": "two"}
    assert srv.client.get("/song/studies/all").json() == ["S1", "S2"]


def test_duplicate_study_is_a_song_conflict(srv: Server) -> None:
    create_study(srv)
    r = srv.client.post("/song/studies/S1/", json={"studyId": "S1"}, headers=srv.admin)
    body = assert_song_error(r, 409, "study.already.exists", "'S1' already exists")
    assert body["httpStatusName"] == "CONFLICT"


def test_study_body_must_match_path(srv: Server) -> None:
    r = srv.client.post("/song/studies/S1/", json={"studyId": "OTHER"}, headers=srv.admin)
    assert_song_error(r, 409, "study.id.mismatch", "'S1'", "'OTHER'")
    assert srv.client.get("/song/studies/all").json() == []


def test_unknown_study_is_404(srv: Server) -> None:
    r = srv.client.get("/song/studies/NOPE")
    body = assert_song_error(r, 404, "study.id.does.not.exist", "'NOPE' does not exist")
    assert body["httpStatusName"] == "NOT_FOUND"


@pytest.mark.parametrize("bad", ["bad..id", "has space", "-leading"])
def test_unsafe_study_ids_are_refused(srv: Server, bad: str) -> None:
    r = srv.client.post(f"/song/studies/{bad}/", json={}, headers=srv.admin)
    assert_song_error(r, 400, "malformed.parameter", "invalid studyId")
    assert_song_error(srv.client.get(f"/song/studies/{bad}"), 400, "malformed.parameter")


# ---- authorisation --------------------------------------------------------------------------------


def test_anonymous_writes_get_401(srv: Server) -> None:
    r = srv.client.post("/song/studies/S1/", json={})
    body = assert_song_error(r, 401, "unauthorized.token", "access token")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert body["httpStatusName"] == "UNAUTHORIZED"
    create_study(srv)
    aid = submit(srv, "S1", payload("S1"))
    for path in (f"/song/studies/S1/analysis/publish/{aid}", f"/song/studies/S1/analysis/suppress/{aid}"):
        assert srv.client.put(path).status_code == 401
    assert srv.client.post("/song/submit/S1", json=payload("S1")).status_code == 401
    assert srv.registry.analysis_state("S1", aid) == UNPUBLISHED


def test_invalid_token_gets_401(srv: Server) -> None:
    r = srv.client.post("/song/studies/S1/", json={}, headers={"Authorization": "Bearer not-a-jwt"})
    assert_song_error(r, 401, "unauthorized.token", "not valid")


def test_scopes_decide_who_may_write(srv: Server) -> None:
    r = srv.client.post("/song/studies/S1/", json={}, headers=srv.token("score.READ"))
    assert_song_error(r, 403, "forbidden.token", "song.WRITE")
    # a study-scoped upload token may change its own study only
    own = srv.token("PROGRAMDATA-S1.WRITE")
    assert srv.client.post("/song/studies/S1/", json={}, headers=own).status_code == 200
    assert srv.client.post("/song/studies/S2/", json={}, headers=srv.admin).status_code == 200
    assert srv.client.post("/song/submit/S1", json=payload("S1"), headers=own).status_code == 200
    r = srv.client.post("/song/submit/S2", json=payload("S2"), headers=own)
    assert_song_error(r, 403, "forbidden.token", "PROGRAMDATA-S2.WRITE")
    # score.WRITE (Score's system upload scope) is not one of Song's scopes: no registry writes
    r = srv.client.post("/song/studies/S3/", json={}, headers=srv.token("score.WRITE"))
    assert_song_error(r, 403, "forbidden.token", "song.WRITE")


# ---- submit and read ------------------------------------------------------------------------------


def test_submit_and_read_analysis(srv: Server) -> None:
    create_study(srv)
    body = payload(
        "S1",
        file_json("reads.bam", size=1234, md5=MD5_A, info={"lane": 1}),
        file_json("reads.bam.bai", size=10, md5=MD5_B, access="open", dataType="Aligned Reads Index"),
        samples=[{"submitterSampleId": "SA1", "sampleType": "DNA"}],
        experiment={"platform": "ILLUMINA"},
        analysisState="PUBLISHED",  # registry-owned: must be ignored
    )
    aid = submit(srv, "S1", body)
    assert uuid.UUID(aid)

    analysis = srv.client.get(f"/song/studies/S1/analysis/{aid}").json()
    assert analysis["analysisId"] == aid
    assert analysis["studyId"] == "S1"
    assert analysis["analysisState"] == UNPUBLISHED
    assert analysis["analysisType"] == {"name": "sequencingRead"}
    # Song adds the sampleId it derives from (studyId, submitterSampleId); the rest is as submitted.
    assert analysis["samples"] == [{**body["samples"][0], "sampleId": song_id("S1", "SA1")}]
    assert analysis["experiment"] == {"platform": "ILLUMINA"}
    assert analysis["createdAt"] and analysis["updatedAt"]
    assert analysis["analysisStateHistory"] == []
    files = analysis["files"]
    assert [f["fileName"] for f in files] == ["reads.bam", "reads.bam.bai"]
    first = files[0]
    assert first == {
        "objectId": object_id_for(aid, "reads.bam"),
        "studyId": "S1",
        "analysisId": aid,
        "fileName": "reads.bam",
        "fileSize": 1234,
        "fileType": "BAM",
        "fileMd5sum": MD5_A,
        "fileAccess": "controlled",
        "dataType": "Aligned Reads",
        "info": {"lane": 1},
    }
    assert srv.client.get(f"/song/studies/S1/analysis/{aid}/files").json() == files

    # Score's MetadataSource view of the same data
    entity = srv.registry.entity(first["objectId"])
    assert entity is not None
    assert (entity.gnosId, entity.projectCode, entity.fileName, entity.access) == (aid, "S1", "reads.bam", "controlled")
    assert (entity.fileSize, entity.fileMd5sum) == (1234, MD5_A)
    assert srv.registry.analysis_state("S1", aid) == UNPUBLISHED
    assert srv.registry.analysis_state("S2", aid) is None
    assert srv.registry.analysis_state("S1", str(uuid.uuid4())) is None


def test_object_ids_are_deterministic_and_distinct(srv: Server) -> None:
    create_study(srv)
    a1 = submit(srv, "S1", payload("S1", file_json("x.bam")))
    a2 = submit(srv, "S1", payload("S1", file_json("x.bam")))
    assert a1 != a2
    ids = [srv.client.get(f"/song/studies/S1/analysis/{a}/files").json()[0]["objectId"] for a in (a1, a2)]
    assert ids == [object_id_for(a1, "x.bam"), object_id_for(a2, "x.bam")]
    assert ids[0] != ids[1]
    assert object_id_for(a1, "x.bam") == object_id_for(a1, "x.bam")


def test_analysis_type_as_string_is_accepted(srv: Server) -> None:
    create_study(srv)
    aid = submit(srv, "S1", {**payload("S1"), "analysisType": "variantCall"})
    assert srv.client.get(f"/song/studies/S1/analysis/{aid}").json()["analysisType"] == {"name": "variantCall"}


def test_submit_to_unknown_study(srv: Server) -> None:
    r = srv.client.post("/song/submit/NOPE", json=payload("NOPE"), headers=srv.admin)
    assert_song_error(r, 404, "study.id.does.not.exist", "'NOPE'")


def test_submit_study_mismatch_and_missing(srv: Server) -> None:
    create_study(srv)
    r = srv.client.post("/song/submit/S1", json=payload("OTHER"), headers=srv.admin)
    assert_song_error(r, 409, "study.id.mismatch", "'S1'", "'OTHER'")
    body = payload("S1")
    del body["studyId"]
    r = srv.client.post("/song/submit/S1", json=body, headers=srv.admin)
    assert_song_error(r, 400, "study.id.missing", "studyId")


def test_submit_needs_analysis_type(srv: Server) -> None:
    create_study(srv)
    body = payload("S1")
    del body["analysisType"]
    r = srv.client.post("/song/submit/S1", json=body, headers=srv.admin)
    assert_song_error(r, 400, "malformed.parameter", "analysisType")
    r = srv.client.post("/song/submit/S1", json={**body, "analysisType": {"version": 1}}, headers=srv.admin)
    assert_song_error(r, 400, "malformed.parameter", "analysisType name")


def test_submit_invalid_json_is_payload_parsing(srv: Server) -> None:
    create_study(srv)
    r = srv.client.post(
        "/song/submit/S1", content=b"{not json", headers={**srv.admin, "Content-Type": "application/json"}
    )
    assert_song_error(r, 422, "payload.parsing", "JSON")


@pytest.mark.parametrize(
    ("bad_file", "fragment"),
    [
        ({"fileName": "dir/a.bam"}, "files[0].fileName"),
        ({"fileName": ".."}, "'..'"),
        ({"fileName": ""}, "non-empty"),
        ({"fileSize": -1}, "files[0].fileSize"),
        ({"fileSize": 1.5}, "integer from 0 to"),
        ({"fileSize": 2**63}, "integer from 0 to 9223372036854775807"),
        ({"fileSize": "12"}, "files[0].fileSize"),
        ({"fileMd5sum": "abc"}, "32 hexadecimal"),
        ({"fileMd5sum": "z" * 32}, "files[0].fileMd5sum"),
        ({"fileAccess": "public"}, "'open' or 'controlled'"),
        ({"dataType": None}, "files[0].dataType"),
        ({"fileType": ""}, "files[0].fileType"),
    ],
)
def test_submit_rejects_bad_files(srv: Server, bad_file: dict, fragment: str) -> None:
    create_study(srv)
    r = srv.client.post("/song/submit/S1", json=payload("S1", {**file_json("a.bam"), **bad_file}), headers=srv.admin)
    assert_song_error(r, 400, "schema.violation", fragment, "fix these fields")
    assert srv.client.get("/song/studies/S1/analysis?analysisStates=UNPUBLISHED").json() == []


def test_submit_rejects_duplicate_names_and_empty_file_list(srv: Server) -> None:
    create_study(srv)
    r = srv.client.post(
        "/song/submit/S1", json=payload("S1", file_json("a.bam"), file_json("a.bam")), headers=srv.admin
    )
    assert_song_error(r, 400, "schema.violation", "'a.bam' appears more than once")
    r = srv.client.post("/song/submit/S1", json={**payload("S1"), "files": []}, headers=srv.admin)
    assert_song_error(r, 400, "schema.violation", "at least one file")


def test_submit_lists_every_problem_at_once(srv: Server) -> None:
    create_study(srv)
    bad = {**file_json("a.bam"), "fileSize": -5, "fileMd5sum": "nope", "fileAccess": "x"}
    r = srv.client.post("/song/submit/S1", json=payload("S1", bad), headers=srv.admin)
    body = assert_song_error(r, 400, "schema.violation")
    for fragment in ("fileSize", "fileMd5sum", "fileAccess"):
        assert fragment in body["message"]


def test_analysis_lookups_that_fail(srv: Server) -> None:
    create_study(srv, "S1")
    create_study(srv, "S2")
    aid = submit(srv, "S1", payload("S1"))
    missing = str(uuid.uuid4())
    assert_song_error(srv.client.get(f"/song/studies/S1/analysis/{missing}"), 404, "analysis.id.not.found", missing)
    assert_song_error(
        srv.client.get(f"/song/studies/S2/analysis/{aid}"),
        400,
        "entity.not.related.to.study",
        "actually related to studyId 'S1'",
    )
    assert_song_error(srv.client.get(f"/song/studies/S9/analysis/{aid}"), 404, "study.id.does.not.exist")
    assert_song_error(
        srv.client.get("/song/studies/S1/analysis/bad..id"), 400, "malformed.parameter", "invalid analysisId"
    )
    assert_song_error(srv.client.get(f"/song/studies/S1/analysis/{missing}/files"), 404, "analysis.id.not.found")


# ---- publish / unpublish / suppress ---------------------------------------------------------------


def _two_file_analysis(s: Server) -> tuple[str, str, str]:
    create_study(s)
    aid = submit(s, "S1", payload("S1", file_json("a.bam", size=5, md5=MD5_A), file_json("b.bam", size=7, md5=MD5_B)))
    return aid, object_id_for(aid, "a.bam"), object_id_for(aid, "b.bam")


def _publish(s: Server, aid: str, query: str = "") -> httpx.Response:
    return s.client.put(f"/song/studies/S1/analysis/publish/{aid}{query}", headers=s.admin)


def test_publish_refuses_missing_files(srv: Server) -> None:
    aid, oid_a, oid_b = _two_file_analysis(srv)
    srv.catalog.store(oid_a, 5, MD5_A)
    body = assert_song_error(_publish(srv, aid), 409, "missing.storage.objects", "b.bam", oid_b, "not uploaded")
    assert "a.bam" not in body["message"]
    assert srv.registry.analysis_state("S1", aid) == UNPUBLISHED


def test_publish_refuses_size_mismatch(srv: Server) -> None:
    aid, oid_a, oid_b = _two_file_analysis(srv)
    srv.catalog.store(oid_a, 5, MD5_A)
    srv.catalog.store(oid_b, 8, MD5_B)
    assert_song_error(_publish(srv, aid), 409, "mismatching.storage.object.sizes", "b.bam", "7 bytes", "8")
    assert srv.registry.analysis_state("S1", aid) == UNPUBLISHED


def test_publish_refuses_md5_mismatch(srv: Server) -> None:
    aid, oid_a, oid_b = _two_file_analysis(srv)
    srv.catalog.store(oid_a, 5, MD5_B)
    srv.catalog.store(oid_b, 7, MD5_B)
    assert_song_error(_publish(srv, aid), 409, "mismatching.storage.object.checksums", "a.bam", MD5_A)
    assert srv.registry.analysis_state("S1", aid) == UNPUBLISHED


def test_publish_reports_every_problem_under_the_first_error_id(srv: Server) -> None:
    aid, oid_a, _ = _two_file_analysis(srv)
    srv.catalog.store(oid_a, 5, MD5_B)  # a: md5 wrong, b: missing
    body = assert_song_error(_publish(srv, aid), 409, "missing.storage.objects", "a.bam", "b.bam")
    assert "score-client upload" in body["message"]


def test_publish_undefined_md5_needs_the_flag(srv: Server) -> None:
    aid, oid_a, oid_b = _two_file_analysis(srv)
    srv.catalog.store(oid_a, 5, None)
    srv.catalog.store(oid_b, 7, MD5_B)
    assert_song_error(_publish(srv, aid), 409, "mismatching.storage.object.checksums", "ignoreUndefinedMd5")
    assert_song_error(_publish(srv, aid, "?ignoreUndefinedMd5=maybe"), 400, "malformed.parameter")
    assert_song_error(_publish(srv, aid, "?ignoreUndefinedMd5=%1F"), 400, "malformed.parameter")  # found by fuzzing
    r = _publish(srv, aid, "?ignoreUndefinedMd5=true")
    assert r.status_code == 200, r.text
    assert srv.registry.analysis_state("S1", aid) == PUBLISHED


def test_publish_unpublish_suppress_lifecycle(srv: Server) -> None:
    aid, oid_a, oid_b = _two_file_analysis(srv)
    srv.catalog.store(oid_a, 5, MD5_A.upper())  # MD5 compared case-insensitively
    srv.catalog.store(oid_b, 7, MD5_B)

    r = _publish(srv, aid)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"  # Song 5.2+: AnalysisController's GenericMessage
    assert r.json() == {"message": f"AnalysisId {aid} successfully published"}
    analysis = srv.client.get(f"/song/studies/S1/analysis/{aid}").json()
    assert analysis["analysisState"] == PUBLISHED
    assert analysis["publishedAt"] and analysis["firstPublishedAt"]
    assert analysis["analysisStateHistory"][-1]["initialState"] == UNPUBLISHED
    assert analysis["analysisStateHistory"][-1]["updatedState"] == PUBLISHED
    assert [a["analysisId"] for a in srv.client.get("/song/studies/S1/analysis").json()] == [aid]

    r = srv.client.put(f"/song/studies/S1/analysis/unpublish/{aid}", headers=srv.admin)
    assert (r.status_code, r.json()) == (200, {"message": f"AnalysisId {aid} successfully unpublished"})
    assert srv.registry.analysis_state("S1", aid) == UNPUBLISHED
    assert srv.client.get("/song/studies/S1/analysis").json() == []

    r = srv.client.put(f"/song/studies/S1/analysis/suppress/{aid}", headers=srv.admin)
    assert (r.status_code, r.json()) == (200, {"message": f"AnalysisId {aid} was suppressed"})
    assert srv.registry.analysis_state("S1", aid) == SUPPRESSED

    assert_song_error(_publish(srv, aid), 400, "suppressed.state.transition", "SUPPRESSED", "PUBLISHED")
    r = srv.client.put(f"/song/studies/S1/analysis/unpublish/{aid}", headers=srv.admin)
    assert_song_error(r, 400, "suppressed.state.transition", "UNPUBLISHED")
    assert srv.registry.analysis_state("S1", aid) == SUPPRESSED
    states = [
        h["updatedState"] for h in srv.client.get(f"/song/studies/S1/analysis/{aid}").json()["analysisStateHistory"]
    ]
    assert states == [PUBLISHED, UNPUBLISHED, SUPPRESSED]


def test_list_analyses_by_state(srv: Server) -> None:
    create_study(srv)
    a1 = submit(srv, "S1", payload("S1", file_json("one.bam", size=1, md5=MD5_A)))
    a2 = submit(srv, "S1", payload("S1"))
    srv.catalog.store(object_id_for(a1, "one.bam"), 1, MD5_A)
    assert _publish(srv, a1).status_code == 200

    def ids(query: str) -> set[str]:
        r = srv.client.get(f"/song/studies/S1/analysis{query}")
        assert r.status_code == 200, r.text
        return {a["analysisId"] for a in r.json()}

    assert ids("") == {a1}
    assert ids("?analysisStates=UNPUBLISHED") == {a2}
    assert ids("?analysisStates=PUBLISHED,UNPUBLISHED") == {a1, a2}
    assert ids("?analysisStates=PUBLISHED%20,%20UNPUBLISHED") == {a1, a2}
    for bad in ("%C2%85", "PUBLISHED,,UNPUBLISHED", "%1FPUBLISHED"):  # found by fuzzing: control characters
        response = srv.client.get(f"/song/studies/S1/analysis?analysisStates={bad}")
        assert response.status_code == 400 and "are not AnalysisStates" in response.json()["message"], bad
    assert ids("?analysisStates=SUPPRESSED") == set()
    assert_song_error(
        srv.client.get("/song/studies/S1/analysis?analysisStates=DONE"), 400, "malformed.parameter", "'DONE'"
    )
    assert_song_error(srv.client.get("/song/studies/NOPE/analysis"), 404, "study.id.does.not.exist")


def test_publish_without_catalog_is_unavailable(srv: Server) -> None:
    aid, _, _ = _two_file_analysis(srv)
    srv.registry.catalog = None
    assert_song_error(_publish(srv, aid), 503, "service.unavailable", "object catalog")
    assert srv.registry.analysis_state("S1", aid) == UNPUBLISHED


def test_state_changes_of_unknown_analysis(srv: Server) -> None:
    create_study(srv)
    missing = str(uuid.uuid4())
    for action in ("publish", "unpublish", "suppress"):
        r = srv.client.put(f"/song/studies/S1/analysis/{action}/{missing}", headers=srv.admin)
        assert_song_error(r, 404, "analysis.id.not.found", missing)


# ---- legacy entities ------------------------------------------------------------------------------


def test_entity_by_id(srv: Server) -> None:
    create_study(srv)
    aid = submit(srv, "S1", payload("S1", file_json("a.bam", access="open")))
    oid = object_id_for(aid, "a.bam")
    r = srv.client.get(f"/song/entities/{oid}")
    assert r.status_code == 200
    assert r.json() == {"id": oid, "gnosId": aid, "fileName": "a.bam", "projectCode": "S1", "access": "open"}
    missing = str(uuid.uuid4())
    assert_song_error(srv.client.get(f"/song/entities/{missing}"), 404, "legacy.entity.not.found", missing)


def test_entity_paging(srv: Server) -> None:
    create_study(srv, "S1")
    create_study(srv, "S2")
    aid = submit(srv, "S1", payload("S1", *[file_json(f"f{i}.bam") for i in range(5)]))
    other = submit(srv, "S2", payload("S2", file_json("g.bam")))
    all_ids = sorted(object_id_for(aid, f"f{i}.bam") for i in range(5))

    seen: list[str] = []
    page = 0
    while True:
        r = srv.client.get("/song/entities", params={"gnosId": aid, "size": 2, "page": page})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["totalElements"] == 5
        assert body["totalPages"] == 3
        assert body["size"] == 2
        assert body["number"] == page
        assert body["first"] is (page == 0)
        assert body["numberOfElements"] == len(body["content"])
        seen += [e["id"] for e in body["content"]]
        if body["last"]:
            break
        page += 1
    assert page == 2
    assert seen == all_ids  # ordered by id, no duplicates, nothing missed

    # study filter, trailing slash (Score's mount), field selection
    r = srv.client.get(
        "/song/entities/",
        params=[("projectCode", "S2"), ("fields", "id"), ("fields", "fileName"), ("size", "2000"), ("page", "0")],
    )
    assert r.status_code == 200, r.text
    assert r.json()["content"] == [{"id": object_id_for(other, "g.bam"), "fileName": "g.bam"}]
    r = srv.client.get("/song/entities", params={"gnosId": aid, "projectCode": "S1", "fileName": "f3.bam"})
    assert [e["fileName"] for e in r.json()["content"]] == ["f3.bam"]
    # no filter: everything; default page size 10
    body = srv.client.get("/song/entities").json()
    assert (body["totalElements"], body["size"], body["last"]) == (6, 10, True)
    # a page past the end is empty but well-formed
    body = srv.client.get("/song/entities", params={"gnosId": aid, "size": 2, "page": 9}).json()
    assert (body["content"], body["empty"], body["last"]) == ([], True, True)


def test_entity_query_errors(srv: Server) -> None:
    assert_song_error(srv.client.get("/song/entities?colour=red"), 400, "illegal.query.parameter", "colour")
    assert_song_error(srv.client.get("/song/entities?fields=secret"), 400, "illegal.filter.parameter", "secret")
    assert_song_error(srv.client.get("/song/entities?size=lots"), 400, "malformed.parameter", "size")
