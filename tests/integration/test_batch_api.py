"""The batch endpoints over real HTTP against a real server: each object answered as its single call would."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx

from tests.conftest import SMALL_PART, Registry, ScoreServer, make_file, md5_of

STUDY = "BATCH"
UNKNOWN = "0b5e5d3a-0000-4000-8000-000000000000"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _put_parts(spec: dict, data: bytes) -> list[dict]:
    parts = []
    for part in spec["parts"]:
        chunk = data[part["offset"] : part["offset"] + part["partSize"]]
        etag = httpx.put(part["url"], content=chunk).headers["etag"].strip('"')
        parts.append({"partNumber": part["partNumber"], "md5": hashlib.md5(chunk).hexdigest(), "etag": etag})  # noqa: S324
    return parts


def test_many_uploads_in_two_requests_each_checked_like_its_single_call(
    server: ScoreServer, registry: Registry, admin_token: str, tmp_path: Path
) -> None:
    files = [make_file(tmp_path / f"f{i}.bin", size, seed=i) for i, size in enumerate([0, 1, 5000, 3 * SMALL_PART + 7])]
    wrong = make_file(tmp_path / "wrong.bin", 100, seed=9)
    analysis, ids = registry.submit(STUDY, [*files, wrong], md5s={"wrong.bin": "0" * 32})
    http = httpx.Client(base_url=server.url, headers=_auth(admin_token), timeout=60)
    items = [{"objectId": ids[f.name], "fileSize": f.stat().st_size, "md5": md5_of(f)} for f in files]
    items += [
        {"objectId": ids["wrong.bin"], "fileSize": 100},
        {"objectId": UNKNOWN, "fileSize": 1},
        {"objectId": ids["f1.bin"].replace("-", "_"), "fileSize": 1},  # a valid id registered nowhere
    ]
    started = http.post("/batch/upload/initiate", json={"uploads": items})
    assert started.status_code == 200, started.text
    specs = {s["objectId"]: s for s in started.json()["specs"]}
    assert set(specs) == {ids[f.name] for f in files} | {ids["wrong.bin"]}
    assert {(e["objectId"], e["status"]) for e in started.json()["errors"]} == {
        (UNKNOWN, 404),
        (ids["f1.bin"].replace("-", "_"), 404),
    }

    finals = []
    for path in [*files, wrong]:
        spec = specs[ids[path.name]]
        parts = _put_parts(spec, path.read_bytes())
        finals.append({"objectId": ids[path.name], "uploadId": spec["uploadId"], "md5": md5_of(path), "parts": parts})
    missing = {"objectId": ids["f3.bin"], "uploadId": specs[ids["f3.bin"]]["uploadId"], "parts": []}
    assert http.post("/batch/upload/finalize", json={"uploads": [missing]}).json()["errors"][0]["status"] == 400
    done = http.post("/batch/upload/finalize", json={"uploads": finals})
    assert done.status_code == 200, done.text
    assert sorted(done.json()["finalized"]) == sorted(ids[f.name] for f in files)
    [refused] = done.json()["errors"]
    assert refused["objectId"] == ids["wrong.bin"] and refused["status"] == 400 and "MD5" in refused["message"]
    again = http.post("/batch/upload/finalize", json={"uploads": finals[:1]})  # idempotent, as the single call
    assert again.json()["finalized"] == [ids["f0.bin"]]

    assert registry.publish(STUDY, analysis).status_code == 409  # wrong.bin is not stored
    overwrite = http.post("/batch/upload/initiate", json={"uploads": items[:1]})
    assert overwrite.json()["errors"][0]["status"] == 409  # exists: as POST /upload/{id}/uploads answers

    answers = http.post(
        "/batch/download/specs", json={"objectIds": [ids[f.name] for f in files], "excludeUrls": True}
    ).json()
    assert {s["objectId"]: (s["objectSize"], s["objectMd5"]) for s in answers["specs"]} == {
        ids[f.name]: (f.stat().st_size, md5_of(f)) for f in files
    }
    unpublished = http.post("/batch/download/specs", json={"objectIds": [ids["f2.bin"]]}).json()
    assert unpublished["errors"][0]["status"] == 400 and "PUBLISHED" in unpublished["errors"][0]["message"]


def test_download_specs_apply_each_objects_rules_and_audit_each(
    server: ScoreServer, registry: Registry, admin_token: str, tmp_path: Path
) -> None:
    http = httpx.Client(base_url=server.url, headers=_auth(admin_token), timeout=60)
    open_file = make_file(tmp_path / "o" / "open.bin", 3 * SMALL_PART, seed=1)
    closed = make_file(tmp_path / "c" / "closed.bin", 1000, seed=2)
    ids = {}
    for path, access in ((open_file, "open"), (closed, "controlled")):
        analysis, registered = registry.submit(STUDY, [path], access=access)
        spec = http.post(f"/upload/{registered[path.name]}/uploads", params={"fileSize": path.stat().st_size}).json()
        finals = {"objectId": registered[path.name], "uploadId": spec["uploadId"], "md5": md5_of(path)}
        finals["parts"] = _put_parts(spec, path.read_bytes())
        assert http.post("/batch/upload/finalize", json={"uploads": [finals]}).json()["finalized"]
        assert registry.publish(STUDY, analysis).status_code == 200
        ids[path.name] = registered[path.name]

    anonymous = httpx.post(
        f"{server.url}/batch/download/specs", json={"objectIds": [ids["open.bin"], ids["closed.bin"], UNKNOWN]}
    )
    assert anonymous.status_code == 200
    [spec] = anonymous.json()["specs"]
    assert spec["objectId"] == ids["open.bin"] and spec["objectMd5"] == md5_of(open_file)
    data = b"".join(
        httpx.get(p["url"], headers={"Range": f"bytes={p['offset']}-{p['offset'] + p['partSize'] - 1}"}).content
        for p in spec["parts"]
    )
    assert data == open_file.read_bytes()
    assert {(e["objectId"], e["status"]) for e in anonymous.json()["errors"]} == {
        (ids["closed.bin"], 401),
        (UNKNOWN, 404),
    }
    reader = server.token(f"PROGRAMDATA-{STUDY}.READ")
    both = httpx.post(
        f"{server.url}/batch/download/specs",
        json={"objectIds": [ids["open.bin"], ids["closed.bin"]]},
        headers=_auth(reader),
    ).json()
    assert sorted(s["objectId"] for s in both["specs"]) == sorted(ids.values()) and not both["errors"]
    audit = [json.loads(line) for line in (server.data_dir / "logs" / "audit.log").read_text().splitlines()]
    issued = [(a["object"], a["decision"]) for a in audit if a["action"] == "download"]
    assert (ids["closed.bin"], "deny") in issued and issued.count((ids["closed.bin"], "allow")) == 1


def test_a_bad_token_a_bad_body_and_too_many_items_refuse_the_whole_request(
    server: ScoreServer, admin_token: str
) -> None:
    bad = httpx.post(f"{server.url}/batch/download/specs", json={"objectIds": [UNKNOWN]}, headers=_auth("not-a-token"))
    assert bad.status_code == 401
    http = httpx.Client(base_url=server.url, headers=_auth(admin_token), timeout=60)
    for body, fragment in (
        ({"objectIds": []}, "objectIds"),
        ({"objectIds": [UNKNOWN] * 1001}, "objectIds"),
        ({"uploads": [{"objectId": "../x", "fileSize": 1}]}, "objectId"),
    ):
        path = "/batch/download/specs" if "objectIds" in body else "/batch/upload/initiate"
        refused = http.post(path, json=body)
        assert refused.status_code == 400 and fragment in refused.json()["message"], refused.text
    duplicate = http.post("/batch/upload/initiate", json={"uploads": [{"objectId": UNKNOWN, "fileSize": 1}] * 2})
    assert duplicate.status_code == 400 and "twice" in duplicate.json()["message"]
    huge = http.post("/batch/upload/finalize", content=b"[" * (5 * 1024 * 1024))
    assert huge.status_code == 413
