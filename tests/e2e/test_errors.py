"""Every refusal gives a clear message and status, and leaves no visible or corrupt object."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from tests.conftest import SMALL_PART, Client, Registry, ScoreServer, free_port, make_file, md5_of

STUDY = "ERR"
OTHER = "OTHER"


def _exists(server: ScoreServer, token: str, oid: str) -> bool:
    response = httpx.get(f"{server.url}/upload/{oid}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response.json() is True


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def test_wrong_md5_is_refused_and_nothing_becomes_visible(
    registry: Registry, client: Client, server: ScoreServer, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "f.bin", 3 * SMALL_PART, seed=1)
    _, ids = registry.submit(STUDY, [source])
    oid = ids["f.bin"]
    result = client.run("upload", "--file", str(source), "--object-id", oid, "--md5", "0" * 32)
    assert result.returncode == 1
    assert "differs from the MD5 registered" in result.stderr  # refused at initiate, before any byte moves
    assert not _exists(server, client.token or "", oid)

    result = client.run("upload", "--file", str(source), "--object-id", oid, "--md5", "not-an-md5")
    assert result.returncode == 1 and "not an MD5" in result.stderr


def test_registered_md5_not_matching_the_bytes_is_refused_at_finalize(
    registry: Registry, client: Client, server: ScoreServer, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "f.bin", 3 * SMALL_PART, seed=2)
    _, ids = registry.submit(STUDY, [source], md5s={"f.bin": "1" * 32})
    oid = ids["f.bin"]
    result = client.run("upload", "--file", str(source), "--object-id", oid)
    assert result.returncode == 1
    assert md5_of(source) in result.stderr and "1" * 32 in result.stderr and "nothing was stored" in result.stderr
    assert not _exists(server, client.token or "", oid)
    # the upload was cancelled, not left half-done
    status = httpx.get(
        f"{server.url}/upload/{oid}/status", params={"fileSize": source.stat().st_size}, headers=_auth(client.token)
    )
    assert status.status_code == 404

    # a client that lies about the MD5 at finalize is refused by the server itself
    spec = httpx.post(
        f"{server.url}/upload/{oid}/uploads", params={"fileSize": source.stat().st_size}, headers=_auth(client.token)
    ).json()
    for part in spec["parts"]:
        with open(source, "rb") as handle:
            handle.seek(part["offset"])
            put = httpx.put(part["url"], content=handle.read(part["partSize"]))
        etag = put.headers["etag"].strip('"')
        assert (
            httpx.post(
                f"{server.url}/upload/{oid}/parts",
                headers=_auth(client.token),
                params={"uploadId": spec["uploadId"], "partNumber": part["partNumber"], "md5": etag, "etag": etag},
            ).status_code
            == 200
        )
    final = httpx.post(
        f"{server.url}/upload/{oid}",
        params={"uploadId": spec["uploadId"], "md5": md5_of(source)},
        headers=_auth(client.token),
    )
    assert final.status_code == 400
    assert "MD5 mismatch" in final.json()["message"]
    assert not _exists(server, client.token or "", oid)


def test_file_changed_between_runs_needs_force(
    registry: Registry, client: Client, server: ScoreServer, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "f.bin", 300 * SMALL_PART, seed=3)
    _analysis_id, ids = registry.submit(STUDY, [source])
    oid = ids["f.bin"]
    process = client.start("--parallel", "1", "upload", "--file", str(source), "--object-id", oid)
    deadline = time.monotonic() + 60
    while len(server.access_events("part_put")) < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.kill()
    process.wait()

    make_file(source, 300 * SMALL_PART, seed=4)  # same size, other bytes, new mtime
    os.utime(source, ns=(time.time_ns(), time.time_ns() + 10**9))
    result = client.run("upload", "--file", str(source), "--object-id", oid)
    assert result.returncode == 1
    assert "changed since the interrupted upload" in result.stderr and "--force" in result.stderr

    # with --force the upload starts over; the registry still holds the old MD5, so it is refused ...
    result = client.run("upload", "--file", str(source), "--object-id", oid, "--force")
    assert result.returncode == 1, result.stderr
    assert "MD5 mismatch" in result.stderr and "nothing was stored" in result.stderr, result.stderr
    assert not _exists(server, client.token or "", oid)


def test_overwrite_needs_force(registry: Registry, client: Client, server: ScoreServer, tmp_path: Path) -> None:
    source = make_file(tmp_path / "f.bin", SMALL_PART + 5, seed=5)
    _, ids = registry.submit(STUDY, [source])
    oid = ids["f.bin"]
    assert client.run("upload", "--file", str(source), "--object-id", oid).returncode == 0
    # the same file again is skipped (the client compares it with the stored object); other content would
    # need --force (tests/e2e/test_first_hour_files.py)
    again = client.run("upload", "--file", str(source), "--object-id", oid)
    assert again.returncode == 0 and "already uploaded, with the same size and MD5" in again.stderr, again.stderr

    refused = httpx.post(
        f"{server.url}/upload/{oid}/uploads", params={"fileSize": SMALL_PART + 5}, headers=_auth(client.token)
    )
    assert refused.status_code == 409
    assert refused.json()["message"].startswith(f"object {oid} already exists")

    forced = client.run("upload", "--file", str(source), "--object-id", oid, "--force")
    assert forced.returncode == 0, forced.stderr
    assert _exists(server, client.token or "", oid)


def test_download_before_publish_unknown_and_unregistered_ids(
    registry: Registry, client: Client, server: ScoreServer, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "f.bin", 10, seed=6)
    _analysis_id, ids = registry.submit(STUDY, [source])
    oid = ids["f.bin"]
    out = tmp_path / "out"

    not_uploaded = client.run("download", "--object-id", oid, "--output-dir", str(out))
    assert not_uploaded.returncode == 1 and "PUBLISHED" in not_uploaded.stderr
    assert client.run("upload", "--file", str(source), "--object-id", oid).returncode == 0
    early = client.run("download", "--object-id", oid, "--output-dir", str(out))
    assert early.returncode == 1
    assert "can only be downloaded once the analysis is PUBLISHED" in early.stderr
    assert not (out / "f.bin").exists()
    spec = httpx.get(f"{server.url}/download/{oid}", params={"offset": 0, "length": -1}, headers=_auth(client.token))
    assert spec.status_code == 400 and "PUBLISHED" in spec.json()["message"]
    # Song's publish-time check works before publish
    excluded = httpx.get(
        f"{server.url}/download/{oid}",
        headers=_auth(client.token),
        params={"offset": 0, "length": -1, "exclude-urls": "true"},
    )
    assert excluded.status_code == 200 and excluded.json()["objectMd5"] == md5_of(source)
    assert all(p["url"] is None for p in excluded.json()["parts"])

    unknown = str(uuid.uuid4())
    result = client.run("download", "--object-id", unknown, "--output-dir", str(out))
    assert result.returncode == 1 and f"object {unknown} is not registered in the metadata server" in result.stderr
    assert "LegacyEntity" not in result.stderr  # Song's internal term is not the user's
    api = httpx.get(f"{server.url}/download/{unknown}", headers=_auth(client.token))
    assert api.status_code == 404 and "not registered" in api.json()["message"]
    upload = client.run("upload", "--file", str(source), "--object-id", unknown)
    assert upload.returncode == 1 and "not registered" in upload.stderr

    bad = client.run("download", "--object-id", "xxx", "--output-dir", str(out))
    assert bad.returncode == 1 and "xxx is not a valid UUID" in bad.stderr
    bad_api = httpx.get(f"{server.url}/download/..%2Fetc", headers=_auth(client.token))
    assert bad_api.status_code in (400, 404)


def test_missing_token_and_missing_scope(registry: Registry, server: ScoreServer, tmp_path: Path) -> None:
    controlled = make_file(tmp_path / "c.bin", 100, seed=7)
    opened = make_file(tmp_path / "o.bin", 100, seed=8)
    analysis_c, ids_c = registry.submit(STUDY, [controlled], access="controlled")
    analysis_o, ids_o = registry.submit(STUDY, [opened], access="open")
    work = tmp_path / "work"
    work.mkdir()
    admin = Client(server, registry.http.headers["Authorization"].split()[1], work)
    anonymous = Client(server, None, work)
    reader_other = Client(server, server.token(f"PROGRAMDATA-{OTHER}.READ PROGRAMDATA-{OTHER}.WRITE"), work)
    writer = Client(server, server.token(f"PROGRAMDATA-{STUDY}.WRITE"), work)
    reader = Client(server, server.token(f"PROGRAMDATA-{STUDY}.READ"), work)

    no_token = anonymous.run("upload", "--file", str(controlled), "--object-id", ids_c["c.bin"])
    assert no_token.returncode == 1 and "not authenticated" in no_token.stderr and "ACCESSTOKEN" in no_token.stderr
    wrong_study = reader_other.run("upload", "--file", str(controlled), "--object-id", ids_c["c.bin"])
    assert wrong_study.returncode == 1 and f"PROGRAMDATA-{STUDY}.WRITE" in wrong_study.stderr
    assert "permission denied" in wrong_study.stderr

    for c, oid in ((writer, ids_c["c.bin"]), (writer, ids_o["o.bin"])):
        result = c.run("upload", "--file", str(controlled if oid == ids_c["c.bin"] else opened), "--object-id", oid)
        assert result.returncode == 0, result.stderr
    assert registry.publish(STUDY, analysis_c).status_code == 200
    assert registry.publish(STUDY, analysis_o).status_code == 200

    out = tmp_path / "out"
    denied = anonymous.run("download", "--object-id", ids_c["c.bin"], "--output-dir", str(out))
    assert denied.returncode == 1 and "not authenticated" in denied.stderr and not (out / "c.bin").exists()
    denied = reader_other.run("download", "--object-id", ids_c["c.bin"], "--output-dir", str(out))
    assert denied.returncode == 1 and f"PROGRAMDATA-{STUDY}.READ" in denied.stderr
    assert not (out / "c.bin").exists()
    assert anonymous.run("download", "--object-id", ids_o["o.bin"], "--output-dir", str(out)).returncode == 0
    assert (out / "o.bin").read_bytes() == opened.read_bytes()
    assert reader.run("download", "--object-id", ids_c["c.bin"], "--output-dir", str(out)).returncode == 0
    assert (out / "c.bin").read_bytes() == controlled.read_bytes()
    assert admin.run("download", "--object-id", ids_c["c.bin"], "--output-dir", str(out), "--force").returncode == 0

    expired = server.token("score.READ", ttl="1s")
    time.sleep(2)
    response = httpx.get(f"{server.url}/download/{ids_c['c.bin']}", headers=_auth(expired))
    assert response.status_code == 401 and "expired" in response.json()["message"]
    assert response.headers["www-authenticate"].startswith("Bearer")
    forged = httpx.get(f"{server.url}/listing", headers=_auth(expired[:-4] + "AAAA"))
    assert forged.status_code == 401
    denied_api = httpx.get(f"{server.url}/download/{ids_c['c.bin']}", headers=_auth(reader_other.token))
    assert denied_api.status_code == 403 and "url" not in denied_api.text.lower().replace("curl", "")

    audit = (server.data_dir / "logs" / "audit.log").read_text()
    assert '"decision":"deny"' in audit and '"decision":"allow"' in audit
    for token in (admin.token, reader.token, writer.token, reader_other.token, expired):
        assert token and token not in audit and token not in server.log_path.read_text()


def test_tampered_and_expired_signed_urls(registry: Registry, client: Client, tmp_path: Path) -> None:
    server = ScoreServer(tmp_path / "short", extra_env={"SCORE_DOWNLOAD_URL_TTL": "1"}).start()
    try:
        token = server.token("score.WRITE score.READ song.WRITE")
        registry = Registry(server, token)
        source = make_file(tmp_path / "f.bin", 2 * SMALL_PART, seed=9)
        analysis_id, ids = registry.submit(STUDY, [source])
        oid = ids["f.bin"]
        work = tmp_path / "w"
        work.mkdir()
        assert Client(server, token, work).run("upload", "--file", str(source), "--object-id", oid).returncode == 0
        assert registry.publish(STUDY, analysis_id).status_code == 200

        spec = httpx.get(f"{server.url}/download/{oid}", headers=_auth(token)).json()
        url = spec["parts"][0]["url"]
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        query["signature"] = ("0" if query["signature"][0] != "0" else "1") + query["signature"][1:]
        tampered = urlunsplit(parts._replace(query=urlencode(query)))
        response = httpx.get(tampered, headers={"Range": f"bytes=0-{SMALL_PART - 1}"})
        assert response.status_code == 403 and "signature" in response.json()["message"]
        other_range = httpx.get(url, headers={"Range": f"bytes={SMALL_PART}-{SMALL_PART + 10}"})
        assert other_range.status_code == 403
        time.sleep(2)
        response = httpx.get(url, headers={"Range": f"bytes=0-{SMALL_PART - 1}"})
        assert response.status_code == 403 and "expired" in response.json()["message"]
    finally:
        server.stop()


def test_a_store_the_client_cannot_reach_is_reported_before_any_byte_moves(
    registry: Registry, client: Client, server: ScoreServer, tmp_path: Path
) -> None:
    """Score's --verify-connection: the sentinel is read through a signed URL first (beside the metadata
    lookups); a store this machine cannot reach is named as such, with what to do."""
    source = make_file(tmp_path / "f.bin", 2 * SMALL_PART, seed=9)
    analysis, ids = registry.submit(STUDY, [source])
    oid = ids["f.bin"]
    assert client.run("upload", "--file", str(source), "--object-id", oid).returncode == 0
    assert registry.publish(STUDY, analysis).status_code == 200
    # A second server on the same data, handing out data URLs at an address where nothing listens.
    elsewhere = ScoreServer(server.data_dir, extra_env={"SCORE_PUBLIC_URL": f"http://127.0.0.1:{free_port()}"})
    elsewhere.start()
    try:
        work = tmp_path / "elsewhere"
        work.mkdir()
        out = tmp_path / "out"
        result = Client(elsewhere, client.token, work).run("download", "--object-id", oid, "--output-dir", str(out))
        assert result.returncode == 1
        assert "the object store is not reachable from this machine (sentinel read failed)" in result.stderr
        assert "or pass --verify-connection false" in result.stderr
        assert not out.exists()  # the folder the failed command created is not left behind
    finally:
        elsewhere.stop()
    result = client.run("download", "--object-id", oid, "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    assert md5_of(out / "f.bin") == md5_of(source)
