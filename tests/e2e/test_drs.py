"""GA4GH DRS 1.4 through the real server: every JSON answer validated against the spec's own OpenAPI
document (tests/fixtures/drs-1.4-openapi.yaml), bytes read through the access methods, the same refusals,
publish gate and audit lines as ``/download``, and the ``drsclient`` PyPI client (Gen3's) against it."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema_rs
import pytest
import yaml
from drsclient.client import DrsClient

from tests.conftest import Client, ScoreServer, make_file, upload_analysis

pytestmark = pytest.mark.e2e

OPEN, CONTROLLED = "DRSOPEN", "DRSCTRL"
DRS = "/ga4gh/drs/v1"
SPEC = yaml.safe_load((Path(__file__).parents[1] / "fixtures" / "drs-1.4-openapi.yaml").read_text())


def _schema(path: str, method: str, status: int) -> dict[str, Any]:
    response = SPEC["paths"][path][method]["responses"][status]
    return response["content"]["application/json"]["schema"]


def check(response: httpx.Response, path: str, method: str = "get", status: int = 200) -> Any:
    """The answer has the status and is valid against the DRS spec's schema for that operation and status."""
    assert response.status_code == status, response.text
    body = response.json()
    schema = {**_schema(path, method, status), "components": SPEC["components"]}
    errors = [str(e) for e in jsonschema_rs.Draft4Validator(schema).iter_errors(body)]
    assert not errors, f"{method.upper()} {path} {status}: {errors} in {json.dumps(body)[:2000]}"
    if status >= 400:
        assert set(body) == {"msg", "status_code"} and body["status_code"] == status
    return body


@dataclass
class World:
    server: ScoreServer
    files: dict[str, Path]  # name -> local file
    ids: dict[str, str]  # name -> object id
    open_analysis: str
    admin: str
    reader: str  # PROGRAMDATA-DRSCTRL.READ
    stranger: str  # another study's scope

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.server.url + DRS, headers=headers, timeout=30)

    def audit(self) -> list[dict[str, Any]]:
        text = (self.server.data_dir / "logs" / "audit.log").read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("drs")
    server = ScoreServer(tmp / "data").start()
    try:
        admin = server.token("score.WRITE score.READ song.WRITE")
        files = {
            "reads.bam": make_file(tmp / "open" / "reads.bam", 300_000, seed=1),
            "notes.txt": make_file(tmp / "open" / "notes.txt", 5_000, seed=2),
            "secret.bam": make_file(tmp / "ctrl" / "secret.bam", 200_000, seed=3),
            "draft.txt": make_file(tmp / "draft" / "draft.txt", 1_000, seed=4),
        }
        analysis, ids = upload_analysis(server, admin, OPEN, [files["reads.bam"], files["notes.txt"]], "open", tmp)
        ids.update(upload_analysis(server, admin, CONTROLLED, [files["secret.bam"]], "controlled", tmp)[1])
        ids.update(upload_analysis(server, admin, OPEN, [files["draft.txt"]], "open", tmp, publish=False)[1])
        yield World(
            server,
            files,
            ids,
            analysis,
            admin,
            server.token(f"PROGRAMDATA-{CONTROLLED}.READ"),
            server.token("PROGRAMDATA-OTHER.READ"),
        )
    finally:
        server.stop()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - the checksum DRS reports


def test_service_info(world: World) -> None:
    with world.http() as http:
        body = check(http.get("/service-info"), "/service-info")
    assert body["type"] == {"group": "org.ga4gh", "artifact": "drs", "version": "1.4.0"}
    assert body["maxBulkRequestLength"] >= 1


def test_open_file_access_url_reads_the_exact_bytes(world: World) -> None:
    object_id = world.ids["reads.bam"]
    with world.http() as http:
        body = check(http.get(f"/objects/{object_id}"), "/objects/{object_id}")
    local = world.files["reads.bam"].read_bytes()
    assert body["id"] == object_id and body["name"] == "reads.bam" and body["size"] == len(local)
    assert body["self_uri"] == f"drs://{urlsplit(world.server.url).netloc}/{object_id}"
    assert body["checksums"] == [{"type": "md5", "checksum": _md5(local)}]
    assert body["aliases"] == ["reads.bam", world.open_analysis]
    assert body["created_time"].endswith("Z")
    method = body["access_methods"][0]
    assert method["type"] == "https" and "None" in method["authorizations"]["supported_types"]
    assert httpx.get(method["access_url"]["url"], timeout=30).content == local
    ranged = httpx.get(method["access_url"]["url"], headers={"Range": "bytes=10-19"}, timeout=30)
    assert ranged.content == local[10:20]
    audited = [e for e in world.audit() if e["object"] == object_id and e["range"] == "drs"]
    assert audited and audited[-1]["decision"] == "allow"


def test_controlled_file_needs_the_study_scope(world: World) -> None:
    object_id = world.ids["secret.bam"]
    path, access = f"/objects/{object_id}", f"/objects/{object_id}/access/https"
    with world.http() as anonymous:
        check(anonymous.get(path), "/objects/{object_id}", status=401)
        check(anonymous.get(access), "/objects/{object_id}/access/{access_id}", status=401)
    with world.http(world.stranger) as stranger:
        check(stranger.get(path), "/objects/{object_id}", status=403)
        check(stranger.get(access), "/objects/{object_id}/access/{access_id}", status=403)
        check(stranger.post(access, json={}), "/objects/{object_id}/access/{access_id}", "post", status=403)
    with world.http(world.reader) as reader:
        body = check(reader.get(path), "/objects/{object_id}")
        method = body["access_methods"][0]
        assert "access_url" not in method and method["access_id"] == "https"
        assert method["authorizations"]["supported_types"] == ["BearerAuth"]
        url = check(reader.get(f"{path}/access/{method['access_id']}"), "/objects/{object_id}/access/{access_id}")
        posted = check(reader.post(access, json={"passports": []}), "/objects/{object_id}/access/{access_id}", "post")
        check(reader.get(f"{path}/access/s3"), "/objects/{object_id}/access/{access_id}", status=404)
        check(reader.post(path, json={"expand": False}), "/objects/{object_id}", "post")
    local = world.files["secret.bam"].read_bytes()
    assert httpx.get(url["url"], timeout=30).content == local
    assert httpx.get(posted["url"], timeout=30).content == local
    decisions = [(e["subject"], e["decision"]) for e in world.audit() if e["object"] == object_id]
    assert ("anonymous", "deny") in {(s if s == "anonymous" else "x", d) for s, d in decisions}
    assert any(d == "allow" for _, d in decisions) and any(d == "deny" for _, d in decisions)


def test_unpublished_and_unknown_are_not_served(world: World) -> None:
    draft = world.ids["draft.txt"]
    with world.http(world.admin) as http:
        body = check(http.get(f"/objects/{draft}"), "/objects/{object_id}", status=404)
        assert "UNPUBLISHED" in body["msg"]
        check(http.get(f"/objects/{draft}/access/https"), "/objects/{object_id}/access/{access_id}", status=404)
        check(http.get("/objects/0b5e6d4e-0000-4000-8000-000000000000"), "/objects/{object_id}", status=404)
        check(http.get("/objects/not..valid"), "/objects/{object_id}", status=400)
        check(http.get(f"/objects/{world.ids['reads.bam']}?expand=maybe"), "/objects/{object_id}", status=400)


def test_analysis_is_a_bundle(world: World) -> None:
    with world.http() as http:
        body = check(http.get(f"/objects/{world.open_analysis}", params={"expand": "true"}), "/objects/{object_id}")
        posted = check(
            http.post(f"/objects/{world.open_analysis}", json={"expand": True}), "/objects/{object_id}", "post"
        )
        refused = http.get(f"/objects/{world.open_analysis}/access/https")
    assert body == posted
    names = {"reads.bam", "notes.txt"}
    assert {c["name"] for c in body["contents"]} == names
    assert body["size"] == sum(world.files[n].stat().st_size for n in names)
    host = urlsplit(world.server.url).netloc
    assert {c["drs_uri"][0] for c in body["contents"]} == {f"drs://{host}/{world.ids[n]}" for n in names}
    expected = _md5("".join(sorted(_md5(world.files[n].read_bytes()) for n in names)).encode())
    assert body["checksums"] == [{"type": "md5", "checksum": expected}]
    assert refused.status_code == 404 and set(refused.json()) == {"msg", "status_code"}


def test_bulk_objects_and_access(world: World) -> None:
    unknown = "0b5e6d4e-0000-4000-8000-000000000000"
    ids = [world.ids["reads.bam"], world.ids["secret.bam"], unknown]
    with world.http() as http:
        body = check(http.post("/objects", json={"bulk_object_ids": ids}), "/objects", "post")
        assert body["summary"] == {"requested": 3, "resolved": 1, "unresolved": 2}
        assert [o["id"] for o in body["resolved_drs_object"]] == [ids[0]]
        assert body["unresolved_drs_objects"] == [
            {"error_code": 401, "object_ids": [ids[1]]},
            {"error_code": 404, "object_ids": [unknown]},
        ]
        check(http.post("/objects", json={"bulk_object_ids": []}), "/objects", "post", status=400)
        check(http.post("/objects", json={"bulk_object_ids": ["x"] * 101}), "/objects", "post", status=413)
    with world.http("not-a-token") as http:
        check(http.post("/objects", json={"bulk_object_ids": ids}), "/objects", "post", status=401)
    request = {
        "bulk_object_access_ids": [
            {"bulk_object_id": world.ids["secret.bam"], "bulk_access_ids": ["https"]},
            {"bulk_object_id": world.ids["reads.bam"], "bulk_access_ids": ["https", "gs"]},
        ]
    }
    with world.http(world.reader) as http:
        body = check(http.post("/objects/access", json=request), "/objects/access", "post")
    assert body["summary"] == {"requested": 3, "resolved": 2, "unresolved": 1}
    assert body["unresolved_drs_objects"] == [{"error_code": 404, "object_ids": [world.ids["reads.bam"]]}]
    for item in body["resolved_drs_object_access_urls"]:
        name = next(n for n, i in world.ids.items() if i == item["drs_object_id"])
        assert httpx.get(item["url"], timeout=30).content == world.files[name].read_bytes()


def test_options_names_the_authorizations(world: World) -> None:
    with world.http() as http:
        ctrl = check(http.options(f"/objects/{world.ids['secret.bam']}"), "/objects/{object_id}", "options")
        open_ = check(http.options(f"/objects/{world.ids['reads.bam']}"), "/objects/{object_id}", "options")
        check(
            http.options("/objects/0b5e6d4e-0000-4000-8000-000000000000"), "/objects/{object_id}", "options", status=404
        )
    assert ctrl["supported_types"] == ["BearerAuth"] and "score-builtin" in ctrl["bearer_auth_issuers"]
    assert open_["supported_types"] == ["None", "BearerAuth"]


def test_drsclient_from_pypi_reads_objects(world: World) -> None:
    """Gen3's ``drsclient``: the object, then the access URL of a controlled file with a token."""
    client = DrsClient(world.server.url, token=world.reader)
    found = client.get(world.ids["secret.bam"])
    assert found.status_code == 200 and found.json()["size"] == world.files["secret.bam"].stat().st_size
    access = client.download(world.ids["secret.bam"], "https")
    assert access.status_code == 200
    assert httpx.get(access.json()["url"], timeout=30).content == world.files["secret.bam"].read_bytes()
    refused = DrsClient(world.server.url).download(world.ids["secret.bam"], "https")
    assert refused.status_code == 401 and refused.json()["status_code"] == 401


def test_client_downloads_drs_uris(world: World, tmp_path: Path) -> None:
    """``score-client download drs://host/id``: this server's URIs map to object ids; md5 verified."""
    host = urlsplit(world.server.url).netloc
    out = tmp_path / "out"
    client = Client(world.server, world.reader, tmp_path)
    result = client.run("download", f"drs://{host}/{world.ids['secret.bam']}", "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    got = [p for p in out.rglob("*") if p.is_file() and p.name == "secret.bam"]
    assert got and got[0].read_bytes() == world.files["secret.bam"].read_bytes(), os.listdir(out)


def test_client_downloads_another_servers_drs_uri(world: World, tmp_path: Path) -> None:
    """A URI of another host (``localhost`` where the client is set to ``127.0.0.1``) goes through DRS itself:
    the DrsObject, the access id exchanged with the token, the MD5 checked."""
    uri = f"drs://localhost:{world.server.port}/{world.ids['secret.bam']}"
    out = tmp_path / "out"
    result = Client(world.server, world.reader, tmp_path).run("download", uri, "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "secret.bam").read_bytes() == world.files["secret.bam"].read_bytes()
    again = Client(world.server, world.reader, tmp_path).run("download", uri, "--output-dir", str(out))
    assert again.returncode != 0 and "already exists" in again.stderr
    refused = Client(world.server, None, tmp_path).run("download", uri, "--output-dir", str(tmp_path / "none"))
    assert refused.returncode != 0 and "401" in refused.stderr
    printed = Client(world.server, None, tmp_path).run(
        "url", "--object-id", f"drs://localhost:{world.server.port}/{world.ids['reads.bam']}"
    )
    assert printed.returncode == 0, printed.stderr
    assert httpx.get(printed.stdout.strip(), timeout=30).content == world.files["reads.bam"].read_bytes()
