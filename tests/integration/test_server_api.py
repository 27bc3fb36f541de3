"""Score's REST API over real HTTP against a real server process: shapes, statuses and messages."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import pytest

from tests.conftest import SMALL_PART, Registry, ScoreServer, make_file, md5_of

STUDY = "API"


class Api:
    def __init__(self, server: ScoreServer, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=server.url, headers=headers, timeout=30)

    def upload(self, oid: str, path: Path, md5: str | None = None) -> dict:
        data = path.read_bytes()
        spec = self.http.post(f"/upload/{oid}/uploads", params={"fileSize": len(data)}).json()
        for part in spec["parts"]:
            chunk = data[part["offset"] : part["offset"] + part["partSize"]]
            etag = httpx.put(part["url"], content=chunk).headers["etag"].strip('"')
            assert (
                self.http.post(
                    f"/upload/{oid}/parts",
                    params={
                        "uploadId": spec["uploadId"],
                        "partNumber": part["partNumber"],
                        "md5": etag,
                        "etag": etag,
                    },
                ).status_code
                == 200
            )
        final = self.http.post(
            f"/upload/{oid}",
            params={"uploadId": spec["uploadId"], "md5": md5 or hashlib.md5(data).hexdigest()},  # noqa: S324
        )
        assert final.status_code == 200, final.text
        return spec


@pytest.fixture
def api(server: ScoreServer, admin_token: str) -> Api:
    return Api(server, admin_token)


def test_swagger_ui_and_openapi_work_offline(server: ScoreServer) -> None:
    page = httpx.get(f"{server.url}/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/") for a in assets), f"assets must be served locally: {assets}"
    for asset in assets:
        assert httpx.get(f"{server.url}{asset}").status_code == 200, asset
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    for path in ("/upload/{object_id}/uploads", "/download/{object_id}", "/listing", "/song/submit/{studyId}"):
        assert path in spec["paths"]


_TOKEN_REQUIRED = [{"bearerAuth": []}]
_TOKEN_OPTIONAL = [{"bearerAuth": []}, {}]
_ERROR_SHAPES = [("/song", "SongError"), ("/htsget", "HtsgetError"), ("/ga4gh/drs", "DrsError")]


def test_the_openapi_document_declares_bearer_auth_error_bodies_and_examples(server: ScoreServer) -> None:
    """Swagger UI's Authorize button needs the security scheme; each operation says whether it needs a token,
    which scopes, every error with its body's schema, and the main calls have examples that match them."""
    import jsonschema_rs  # schemathesis's (dev extra) JSON Schema validator

    document = httpx.get(f"{server.url}/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert list(schemes) == ["bearerAuth"]
    assert {k: schemes["bearerAuth"][k] for k in ("type", "scheme", "bearerFormat")} == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    assert "score-server token" in schemes["bearerAuth"]["description"]
    assert "security" not in document, "no global requirement: ping, health and the docs stay open"
    operations = {(m.upper(), p): o for p, ops in document["paths"].items() for m, o in ops.items()}
    required = [key for key, o in operations.items() if o.get("security") == _TOKEN_REQUIRED]
    optional = [key for key, o in operations.items() if o.get("security") == _TOKEN_OPTIONAL]
    assert {p for _, p in required if p.startswith("/upload")} == {
        "/upload/{object_id}/uploads",
        "/upload/{object_id}/parts",
        "/upload/{object_id}",
        "/upload/{object_id}/status",
        "/upload/{object_id}/recovery",
        "/upload/test/{object_id}",
    }
    for key in [("GET", "/listing"), ("GET", "/profile"), ("POST", "/song/submit/{studyId}")]:
        assert key in required, key
    assert ("PUT", "/song/studies/{studyId}/analysis/publish/{analysisId}") in required
    assert set(optional) == {
        ("GET", "/download/{object_id}"),
        ("POST", "/batch/download/specs"),
        ("POST", "/batch/upload/initiate"),
        ("POST", "/batch/upload/finalize"),
        *((method, f"/htsget/{kind}/{{object_id}}") for method in ("GET", "POST") for kind in ("reads", "variants")),
        *(
            (method, f"/ga4gh/drs/v1/objects{path}")
            for method in ("GET", "POST")
            for path in ("/{object_id}", "/{object_id}/access/{access_id}")
        ),
        ("POST", "/ga4gh/drs/v1/objects"),
        ("POST", "/ga4gh/drs/v1/objects/access"),
    }
    for key in [("GET", "/download/ping"), ("GET", "/actuator/health"), ("GET", "/song/studies/{studyId}")]:
        assert "security" not in operations[key], key
    for key, operation in operations.items():
        assert ("security" in operation) == ("401" in operation["responses"]), f"{key}: a token means a 401"
        if "security" in operation:
            assert "**Token:** " in operation["description"], key
    upload = operations[("POST", "/upload/{object_id}/uploads")]
    assert upload["description"].endswith(
        "**Token:** required, with `score.WRITE` or `PROGRAMDATA-<study>.WRITE` for the object's study."
    )
    assert "**Token:** optional for open-access files" in operations[("GET", "/download/{object_id}")]["description"]

    def validator(media: dict[str, object]) -> jsonschema_rs.Validator:
        return jsonschema_rs.Draft202012Validator({**media["schema"], "components": document["components"]})

    checked = 0
    for (method, path), operation in operations.items():
        shape = next((s for prefix, s in _ERROR_SHAPES if path.startswith(prefix)), "ErrorBody")
        for status, response in operation["responses"].items():
            if int(status) < 400 or path.startswith("/actuator/health"):  # health's 503 is its report, not an error
                continue
            ((_, media),) = response["content"].items()
            assert media["schema"] == {"$ref": f"#/components/schemas/{shape}"}, (method, path, status)
            example = media["example"]
            assert validator(media).is_valid(example), (method, path, status, example)
            if shape == "ErrorBody":
                assert (example["status"], example["path"].count("{")) == (int(status), 0), (method, path)
            checked += 1
        for media in [*operation.get("requestBody", {}).get("content", {}).values()] + [
            m for r in operation["responses"].values() for m in r.get("content", {}).values()
        ]:
            for example in media.get("examples", {}).values():
                assert validator(media).is_valid(example["value"]), (method, path, example)
    assert checked > 150

    def examples(key: tuple[str, str], where: str = "200") -> list[object]:
        holder = operations[key]["requestBody"] if where == "body" else operations[key]["responses"][where]
        return [e["value"] for e in holder["content"]["application/json"]["examples"].values()]

    (started,) = examples(("POST", "/upload/{object_id}/uploads"))
    assert [p["url"].split("?")[1].split("&")[0] for p in started["parts"]] == ["op=put", "op=put"]
    whole, sizes_only = examples(("GET", "/download/{object_id}"))
    assert all(p["url"] is None and p["md5"] is None for p in sizes_only["parts"]), "nulls are kept, as answered"
    assert whole["objectSize"] == sum(p["partSize"] for p in whole["parts"])
    for key in [("POST", f"/batch/{call}") for call in ("download/specs", "upload/initiate", "upload/finalize")]:
        assert examples(key, "body") and examples(key)[0]["errors"][0]["status"] == 404
    assert examples(("POST", "/song/submit/{studyId}"), "body")[0]["files"][0]["fileName"] == "reads.txt"

    refused = httpx.get(f"{server.url}/listing")  # what the documented 401 looks like, for real
    documented = operations[("GET", "/listing")]["responses"]["401"]["content"]["application/json"]["example"]
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == 'Bearer realm="score"'
    assert set(refused.json()) == set(documented) and refused.json()["path"] == documented["path"] == "/listing"


def test_errors_are_json_with_a_message(server: ScoreServer, admin_token: str) -> None:
    missing = httpx.get(f"{server.url}/no/such/endpoint")
    assert missing.status_code == 404
    assert set(missing.json()) == {"timestamp", "status", "error", "message", "path", "requestId"}
    assert missing.json()["requestId"] == missing.headers["x-request-id"]
    bad = httpx.post(
        f"{server.url}/upload/0b5e6d4e-0000-4000-8000-000000000000/uploads",
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert bad.status_code == 400 and "fileSize" in bad.json()["message"]
    anonymous = httpx.post(f"{server.url}/upload/0b5e6d4e-0000-4000-8000-000000000000/uploads?fileSize=1")
    assert anonymous.status_code == 401 and "access token" in anonymous.json()["message"]


def test_health_ping_listing_profile(server: ScoreServer, registry: Registry, api: Api, tmp_path: Path) -> None:
    health = httpx.get(f"{server.url}/actuator/health").json()
    assert health["status"] == "UP"
    sentinel = httpx.get(httpx.get(f"{server.url}/download/ping").text)
    assert sentinel.status_code == 200 and sentinel.content == b"heliograph\n"

    assert httpx.get(f"{server.url}/listing").status_code == 401
    source = make_file(tmp_path / "a.bin", 3 * SMALL_PART, seed=1)
    _, ids = registry.submit(STUDY, [source])
    assert api.http.get("/listing").json() == []
    spec = api.http.post(f"/upload/{ids['a.bin']}/uploads", params={"fileSize": 3 * SMALL_PART}).json()
    assert api.http.get("/listing").json() == [], "an unfinished upload must not be listed"
    api.http.delete(f"/upload/{ids['a.bin']}")
    assert api.http.get(f"/upload/{ids['a.bin']}/status", params={"fileSize": 3 * SMALL_PART}).status_code == 404
    assert spec["uploadId"]
    api.upload(ids["a.bin"], source)
    listing = api.http.get("/listing").json()
    assert [(i["id"], i["size"]) for i in listing] == [(ids["a.bin"], 3 * SMALL_PART)]
    assert isinstance(listing[0]["lastModified"], int)
    assert api.http.get("/profile").text == "s3"


def test_download_specs_whole_ranged_external_excluded(
    server: ScoreServer, registry: Registry, api: Api, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "a.bin", 4 * SMALL_PART + 100, seed=2)
    analysis_id, ids = registry.submit(STUDY, [source], access="open")
    oid = ids["a.bin"]
    api.upload(oid, source)
    assert registry.publish(STUDY, analysis_id).status_code == 200
    data = source.read_bytes()

    whole = httpx.get(f"{server.url}/download/{oid}", params={"offset": 0, "length": -1}).json()  # anonymous: open
    assert whole["objectSize"] == len(data) and whole["objectMd5"] == md5_of(source)
    for part in whole["parts"]:
        body = httpx.get(
            part["url"], headers={"Range": f"bytes={part['offset']}-{part['offset'] + part['partSize'] - 1}"}
        )
        assert body.status_code == 206
        assert hashlib.md5(body.content).hexdigest() == part["sourceMd5"]  # noqa: S324

    ranged = httpx.get(f"{server.url}/download/{oid}", params={"offset": 10, "length": 2 * SMALL_PART}).json()
    assert ranged["objectSize"] == 2 * SMALL_PART and ranged["objectMd5"] is None
    assert [(p["offset"], p["partSize"], "sourceMd5" in p) for p in ranged["parts"]] == [
        (10, SMALL_PART - 10, False),
        (SMALL_PART, SMALL_PART, True),
        (2 * SMALL_PART, 10, False),
    ]
    joined = b"".join(httpx.get(p["url"]).content for p in ranged["parts"])
    assert joined == data[10 : 10 + 2 * SMALL_PART]

    external = httpx.get(f"{server.url}/download/{oid}", params={"offset": 0, "length": -1, "external": True}).json()
    assert external["objectSize"] == -1 and external["parts"][0]["partSize"] == -1  # Score's quirk, kept
    tail = httpx.get(external["parts"][0]["url"], headers={"Range": "bytes=-7"})
    assert tail.status_code == 206 and tail.content == data[-7:]

    excluded = httpx.get(f"{server.url}/download/{oid}", params={"offset": 0, "length": -1, "exclude-urls": True})
    assert all(p["url"] is None for p in excluded.json()["parts"])

    beyond = httpx.get(f"{server.url}/download/{oid}", params={"offset": 10, "length": len(data)})
    assert beyond.status_code == 400 and "beyond the end" in beyond.json()["message"]


def test_zero_byte_object_and_idempotent_finalize(
    server: ScoreServer, registry: Registry, api: Api, tmp_path: Path
) -> None:
    empty = make_file(tmp_path / "empty", 0)
    analysis_id, ids = registry.submit(STUDY, [empty])
    oid = ids["empty"]
    spec = api.http.post(f"/upload/{oid}/uploads", params={"fileSize": 0}).json()
    assert spec["parts"] == [] and spec["objectSize"] == 0
    params = {"uploadId": spec["uploadId"], "md5": "d41d8cd98f00b204e9800998ecf8427e"}
    assert api.http.post(f"/upload/{oid}", params=params).status_code == 200
    assert api.http.post(f"/upload/{oid}", params=params).status_code == 200  # a retried finalize succeeds
    assert api.http.get(f"/upload/{oid}").json() is True
    assert registry.publish(STUDY, analysis_id).status_code == 200
    download = api.http.get(f"/download/{oid}").json()
    assert download["objectSize"] == 0 and download["parts"] == []


def test_part_markers_recovery_and_superseded_upload(
    server: ScoreServer, registry: Registry, api: Api, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "a.bin", 2 * SMALL_PART, seed=3)
    _, ids = registry.submit(STUDY, [source])
    oid = ids["a.bin"]
    first = api.http.post(f"/upload/{oid}/uploads", params={"fileSize": 2 * SMALL_PART}).json()
    assert api.http.post(f"/upload/{oid}/recovery", params={"fileSize": 2 * SMALL_PART}).status_code == 200
    changed = api.http.post(f"/upload/{oid}/recovery", params={"fileSize": 5})
    assert changed.status_code == 400 and "file changed" in changed.json()["message"]

    part = first["parts"][0]
    etag = httpx.put(part["url"], content=source.read_bytes()[:SMALL_PART]).headers["etag"].strip('"')
    wrong = api.http.post(
        f"/upload/{oid}/parts", params={"uploadId": first["uploadId"], "partNumber": 1, "md5": etag, "etag": "0" * 32}
    )
    assert wrong.status_code == 400 and "upload the part again" in wrong.json()["message"]
    ok = {"uploadId": first["uploadId"], "partNumber": 1, "md5": etag, "etag": etag}
    assert api.http.post(f"/upload/{oid}/parts", params=ok).status_code == 200
    status = api.http.get(f"/upload/{oid}/status", params={"fileSize": 2 * SMALL_PART}).json()
    # the completed part keeps a URL, as on the Java server (its client sends a part again with it)
    assert [(p["partNumber"], p.get("sourceMd5"), p["md5"], p["url"] is None) for p in status["parts"]] == [
        (1, etag, etag, False),
        (2, None, None, False),
    ]
    early = api.http.post(f"/upload/{oid}", params={"uploadId": first["uploadId"]})
    assert early.status_code == 400 and "parts 2" in early.json()["message"]
    assert (
        api.http.request(
            "DELETE", f"/upload/{oid}/parts", params={"uploadId": first["uploadId"], "partNumber": 1}
        ).status_code
        == 200
    )
    status = api.http.get(f"/upload/{oid}/status", params={"fileSize": 2 * SMALL_PART}).json()
    # no longer recorded (md5 null, a URL), but the store still holds the part: its MD5 is the hint
    # that lets a resuming client record it instead of sending it again
    assert [(p["partNumber"], p.get("sourceMd5"), p["md5"], p["url"] is None) for p in status["parts"]] == [
        (1, etag, None, False),
        (2, None, None, False),
    ]

    second = api.http.post(f"/upload/{oid}/uploads", params={"fileSize": 2 * SMALL_PART}).json()
    assert second["uploadId"] != first["uploadId"]
    stale = httpx.put(first["parts"][1]["url"], content=source.read_bytes()[SMALL_PART:])
    assert stale.status_code == 404, "the superseded upload must be aborted in the store"
    gone = api.http.post(f"/upload/{oid}", params={"uploadId": first["uploadId"]})
    assert gone.status_code == 404 and "start the upload again" in gone.json()["message"]


def test_upload_ids_are_validated(server: ScoreServer, registry: Registry, api: Api, tmp_path: Path) -> None:
    source = make_file(tmp_path / "a.bin", 10, seed=4)
    _, ids = registry.submit(STUDY, [source])
    for bad in ("../../etc", "a/b", ""):
        response = api.http.post(f"/upload/{ids['a.bin']}", params={"uploadId": bad})
        assert response.status_code == 400 and "uploadId" in response.json()["message"], bad
