"""Each finding of the outside security and fault probe (issue 11), reproduced against a real server process.

Every test here failed before its fix; it states the finding it guards. The campaigns that look for the
next ones live beside it: tests/campaign (schema fuzzing), test_kill_matrix.py (crash points),
test_authorization_properties.py (scopes), test_slow_clients.py (connections).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import BIN, SMALL_PART, Client, Registry, ScoreServer, make_file, md5_of
from tests.genomics_data import HTSLIB_TEST

MiB = 1024 * 1024
UNKNOWN = "0b5e5d3a-0000-4000-8000-000000000000"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _audit(server: ScoreServer) -> list[dict[str, object]]:
    return [json.loads(line) for line in (server.data_dir / "logs" / "audit.log").read_text().splitlines()]


def _message(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith(("application/json", "application/vnd.ga4gh")), response.text
    body = response.json()
    return str(body.get("message") or body.get("htsget", {}).get("message"))


# -- 1. study scopes across letter case --------------------------------------------------------------


def test_study_scopes_do_not_match_a_study_whose_id_differs_in_case(
    server: ScoreServer, registry: Registry, tmp_path: Path
) -> None:
    upper = make_file(tmp_path / "upper" / "u.bin", 1000, seed=1)
    lower = make_file(tmp_path / "lower" / "l.bin", 1000, seed=2)
    upper_analysis, upper_ids = registry.submit("ABC", [upper])
    lower_analysis, lower_ids = registry.submit("abc", [lower])
    admin = Client(server, server.token("score.WRITE"), tmp_path)
    for path, ids in ((upper, upper_ids), (lower, lower_ids)):
        assert admin.run("upload", "--file", str(path), "--object-id", ids[path.name]).returncode == 0
    assert registry.publish("ABC", upper_analysis).status_code == 200
    assert registry.publish("abc", lower_analysis).status_code == 200

    reader = server.token("PROGRAMDATA-ABC.READ")
    own = httpx.get(f"{server.url}/download/{upper_ids['u.bin']}", headers=_auth(reader))
    assert own.status_code == 200
    other = httpx.get(f"{server.url}/download/{lower_ids['l.bin']}", headers=_auth(reader))
    assert other.status_code == 403 and "PROGRAMDATA-abc.READ" in _message(other)

    writer = server.token("PROGRAMDATA-abc.WRITE")
    suppress = httpx.put(f"{server.url}/song/studies/ABC/analysis/suppress/{upper_analysis}", headers=_auth(writer))
    assert suppress.status_code == 403 and "PROGRAMDATA-ABC.WRITE" in suppress.json()["message"]
    state = httpx.get(f"{server.url}/song/studies/ABC/analysis/{upper_analysis}").json()["analysisState"]
    assert state == "PUBLISHED"

    # scope names still ignore case (Score's rule): the token's own spelling is what the audit records
    mixed = server.token("programdata-ABC.read")
    assert httpx.get(f"{server.url}/download/{upper_ids['u.bin']}", headers=_auth(mixed)).status_code == 200
    allowed = [a for a in _audit(server) if a["decision"] == "allow" and a["action"] == "download"]
    assert allowed[-1]["reason"] == "study scope programdata-ABC.read"
    assert all("PROGRAMDATA-abc.READ" not in str(a["reason"]) for a in allowed)


# -- 2. bodies bounded while they stream, authentication first ---------------------------------------


def _rss(server: ScoreServer) -> int:
    assert server.process is not None
    return psutil.Process(server.process.pid).memory_info().rss


def _endless(total: int, chunk: int = MiB) -> Iterator[bytes]:
    block = b"[" * chunk
    sent = 0
    while sent < total:
        yield block
        sent += chunk


def test_huge_bodies_are_refused_before_they_are_read_and_memory_stays_flat(
    server: ScoreServer, registry: Registry, admin_token: str, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "c.bin", 1000, seed=3)
    _, ids = registry.submit("BODY", [source], access="controlled")
    before = _rss(server)
    gib = 1024 * MiB
    with httpx.Client(timeout=60) as http:
        # anonymous: refused (401) before the body is read, declared length or not
        for path in (f"/htsget/reads/{ids['c.bin']}", f"/htsget/variants/{UNKNOWN}", "/song/submit/BODY"):
            refused = http.post(f"{server.url}{path}", content=_endless(gib))
            assert refused.status_code in (401, 404), refused.text
            assert refused.headers.get("connection") == "close"  # the rest of the body is not read
        # authorised but too large: 413 while streaming (no Content-Length: chunked), in each API's shape
        too_big = http.post(f"{server.url}/song/submit/BODY", content=_endless(64 * MiB), headers=_auth(admin_token))
        assert too_big.status_code == 413 and too_big.json()["errorId"] == "payload.too.large"
        declared = http.post(
            f"{server.url}/song/submit/BODY",
            content=b"{" * (9 * MiB),
            headers={**_auth(admin_token), "Content-Type": "application/json"},
        )
        assert declared.status_code == 413 and "larger than this endpoint accepts" in declared.json()["message"]
    grown = _rss(server) - before
    assert grown < 64 * MiB, f"the server grew by {grown / MiB:.0f} MiB for bodies it refused"


# -- 3. and 8. nesting, numbers and text that could not be served back -----------------------------


def _nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


def _payload(study: str, extra: dict[str, object], name: str = "a.txt") -> dict[str, object]:
    return {
        "studyId": study,
        "analysisType": {"name": "t"},
        **extra,
        "files": [
            {
                "fileName": name,
                "fileSize": 1,
                "fileMd5sum": "0" * 32,
                "fileType": "TXT",
                "fileAccess": "open",
                "dataType": "x",
            }
        ],
    }


def test_a_payload_that_cannot_be_served_back_is_refused_at_the_door(server: ScoreServer, admin_token: str) -> None:
    song = httpx.Client(base_url=f"{server.url}/song", headers=_auth(admin_token), timeout=30)
    assert song.post("/studies/NEST/", json={}).status_code == 200
    deep = song.post("/submit/NEST", json=_payload("NEST", {"deep": _nested(300)}))
    assert deep.status_code == 422 and "nested too deeply" in deep.json()["message"]
    surrogate = song.post(
        "/submit/NEST",
        content=json.dumps(_payload("NEST", {}, name="a\ud800.txt")).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert surrogate.status_code == 422 and "surrogate" in surrogate.json()["message"]
    infinite = song.post(
        "/submit/NEST", content=b'{"studyId": "NEST", "n": 1e999}', headers={"Content-Type": "application/json"}
    )
    assert infinite.status_code == 422 and "finite" in infinite.json()["message"]
    huge = song.post("/submit/NEST", json={**_payload("NEST", {}), "files": [{"fileSize": 2**63}]})
    assert huge.status_code == 400 and "9223372036854775807" in huge.json()["message"]

    accepted = song.post("/submit/NEST", json=_payload("NEST", {"deep": _nested(60)}))
    assert accepted.status_code == 200, accepted.text
    analysis = accepted.json()["analysisId"]
    listing = song.get("/studies/NEST/analysis", params={"analysisStates": "UNPUBLISHED"})
    assert listing.status_code == 200 and [a["analysisId"] for a in listing.json()] == [analysis]
    assert song.get(f"/studies/NEST/analysis/{analysis}").json()["deep"] == _nested(60)


def test_malformed_requests_answer_4xx_json_with_a_message(
    server: ScoreServer, registry: Registry, admin_token: str, tmp_path: Path
) -> None:
    folder = tmp_path / "bam"
    folder.mkdir()
    files = [Path(shutil.copy(HTSLIB_TEST / n, folder / n)) for n in ("range.bam", "range.bam.bai")]
    analysis, ids = registry.submit("MALFORMED", files, access="open")
    client = Client(server, admin_token, tmp_path)
    for path in files:
        assert client.run("upload", "--file", str(path), "--object-id", ids[path.name]).returncode == 0
    assert registry.publish("MALFORMED", analysis).status_code == 200
    bam = ids["range.bam"]
    http = httpx.Client(base_url=server.url, headers=_auth(admin_token), timeout=30)

    deep = http.post(f"/htsget/reads/{bam}", content=b"[" * 100_000)
    assert deep.status_code == 400 and "nested too deeply" in _message(deep)

    url = http.get(f"/download/{bam}", params={"offset": 0, "length": -1, "external": True}).json()["parts"][0]["url"]
    start_too_far = httpx.get(url, headers={"Range": "bytes=" + "9" * 5000 + "-"})
    assert start_too_far.status_code == 416 and "past the end" in _message(start_too_far)
    clipped = httpx.get(url, headers={"Range": "bytes=0-" + "9" * 5000})
    assert clipped.status_code == 206 and clipped.content == files[0].read_bytes()

    pending = make_file(tmp_path / "p.bin", 10, seed=4)
    _, pending_ids = registry.submit("MALFORMED", [pending])
    oid = pending_ids["p.bin"]
    for size, fragment in ((2**63, "less than or equal to"), (2**62, "larger than the local store can hold")):
        refused = http.post(f"/upload/{oid}/uploads", params={"fileSize": size})
        assert refused.status_code == 400 and fragment in _message(refused), refused.text
    for upload_id in ("a" * 1000, "abc\n", "../x"):
        refused = http.post(f"/upload/{oid}", params={"uploadId": upload_id})
        assert refused.status_code == 400 and "uploadId" in _message(refused), refused.text


# -- 9. anchored id patterns ---------------------------------------------------------------------


def test_ids_with_a_trailing_newline_are_refused(server: ScoreServer, admin_token: str) -> None:
    study = httpx.post(f"{server.url}/song/studies/NL%0A/", json={}, headers=_auth(admin_token))
    assert study.status_code == 400 and study.json()["errorId"] == "malformed.parameter"
    assert httpx.get(f"{server.url}/song/studies/all").json() == []
    for path in ("/upload/abc%0A", "/download/abc%0A?offset=0&length=-1"):
        refused = httpx.get(f"{server.url}{path}", headers=_auth(admin_token))
        assert refused.status_code == 400 and "invalid object id" in refused.json()["message"]


# -- 10. X-Forwarded-For only from trusted proxies ----------------------------------------------


def test_the_audit_log_believes_x_forwarded_for_only_from_configured_proxies(tmp_path: Path) -> None:
    for trusted, expected in (("", "127.0.0.1"), ('["127.0.0.1/32"]', "203.0.113.9")):
        env = {"SCORE_TRUSTED_PROXIES": trusted} if trusted else {}
        server = ScoreServer(tmp_path / f"xff-{bool(trusted)}", extra_env=env).start()
        try:
            forged = {"X-Forwarded-For": "10.9.9.9, 203.0.113.9"}
            assert httpx.get(f"{server.url}/upload/{UNKNOWN}", headers=forged).status_code == 401
            assert _audit(server)[-1]["client"] == expected
        finally:
            server.stop()


# -- 4. and 12. a full disk, and sizes the store cannot hold --------------------------------------------


def fill_up(disk: Path) -> Path:
    """Take every byte left on ``disk``, as another program filling it would; the file that holds them."""
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * MiB)
                handle.flush()
        except OSError:
            pass
    return filler


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs: the tests run as root (CI does; README's test command is run as root)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)], capture_output=True)
    assert done.returncode == 0, f"mounting a tmpfs needs root (run the suite as CI does): {done.stderr!r}"
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_is_reported_and_the_server_stays_usable(small_disk: Path, tmp_path: Path) -> None:
    server = ScoreServer(small_disk / "data", extra_env={"SCORE_MIN_FREE_SPACE": str(4 * MiB)}).start()
    try:
        token = server.token("score.WRITE score.READ song.WRITE")
        registry = Registry(server, token)
        big = make_file(tmp_path / "big.bin", 80 * MiB, seed=5)
        small = make_file(tmp_path / "small.bin", 3 * SMALL_PART, seed=6)
        analysis, ids = registry.submit("FULL", [big, small])
        client = Client(server, token, tmp_path)

        started = time.monotonic()
        refused = client.run("upload", "--file", str(big), "--object-id", ids["big.bin"])
        assert refused.returncode == 1 and "the store is full" in refused.stderr, refused.stderr
        assert time.monotonic() - started < 20, "a full store is not a failure to retry"
        assert not list((small_disk / "data" / "store" / "multipart").iterdir()), "nothing may stay behind"
        assert client.run("upload", "--file", str(small), "--object-id", ids["small.bin"]).returncode == 0

        spec = httpx.post(
            f"{server.url}/upload/{ids['big.bin']}/uploads", params={"fileSize": 80 * MiB}, headers=_auth(token)
        )
        assert spec.status_code == 507 and "store is full" in spec.json()["message"]

        filler = fill_up(small_disk)
        assert shutil.disk_usage(small_disk).free < MiB
        song = httpx.Client(base_url=f"{server.url}/song", headers=_auth(token), timeout=30)
        assert song.get(f"/studies/FULL/analysis/{analysis}").status_code == 200  # reads still work
        write = song.post("/submit/FULL", json=_payload("FULL", {}, name="late.txt"))
        assert write.status_code in (200, 507), write.text  # a write fits the kept WAL, or 507 says why
        if write.status_code == 507:
            assert "disk is full" in write.json()["message"]
        health = httpx.get(f"{server.url}/actuator/health")
        assert health.status_code == 503 and health.json()["details"]["diskSpace"]["status"] == "DOWN"
        cancel = httpx.delete(f"{server.url}/upload/{ids['big.bin']}", headers=_auth(token))
        assert cancel.status_code == 404  # nothing in progress: answered, not a disk I/O error
        sweep = subprocess.run(
            [str(BIN / "score-server"), "cleanup", "--older-than", "0s", "--data-dir", str(server.data_dir)],
            capture_output=True,
            text=True,
        )
        assert sweep.returncode == 0, sweep.stderr
        filler.unlink()
        assert httpx.get(f"{server.url}/actuator/health").json()["status"] == "UP"
        assert song.post("/submit/FULL", json=_payload("FULL", {}, name="later.txt")).status_code == 200
    finally:
        server.stop()


@pytest.fixture
def postgres_small_disk(postgres: Any) -> Iterator[tuple[str, Path]]:
    """A database of the tests' PostgreSQL whose tables live on a 32 MiB tmpfs (a tablespace; the WAL stays on
    the cluster's disk): (its URL, the tmpfs). The mount point is outside pytest's root-only folders so that the
    cluster's own user can reach it."""
    mount_point = Path(tempfile.mkdtemp(prefix="score-pg-disk-"))
    mount_point.chmod(0o755)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount_point)], capture_output=True)
    assert done.returncode == 0, f"mounting a tmpfs needs root (run the suite as CI does): {done.stderr!r}"
    space = mount_point / "tablespace"
    space.mkdir()
    os.chown(space, postgres.user.pw_uid, postgres.user.pw_gid)
    name = f"tiny_{os.getpid()}_{int(time.time() * 1000)}"
    postgres.admin(f"CREATE TABLESPACE {name} LOCATION '{space}'")
    postgres.admin(f'CREATE DATABASE "{name}" TABLESPACE {name}')
    try:
        yield postgres.url(name), mount_point
    finally:
        postgres.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        postgres.admin(f"DROP TABLESPACE IF EXISTS {name}")
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
        shutil.rmtree(mount_point, ignore_errors=True)


def test_a_full_postgres_disk_is_507_and_reads_still_work(
    postgres_small_disk: tuple[str, Path], tmp_path: Path
) -> None:
    database, disk = postgres_small_disk
    server = ScoreServer(tmp_path / "data", extra_env={"SCORE_REGISTRY_URL": database}).start()
    try:
        token = server.token("song.WRITE")
        song = httpx.Client(base_url=f"{server.url}/song", headers=_auth(token), timeout=30)
        assert song.post("/studies/PGFULL/", json={}).status_code == 200
        first = song.post("/submit/PGFULL", json=_payload("PGFULL", {}, name="first.txt"))
        assert first.status_code == 200, first.text
        filler = fill_up(disk)
        # incompressible, so PostgreSQL needs new pages for it whatever room its existing pages have
        bulky = {"info": {"notes": os.urandom(400_000).hex()}}
        full = song.post("/submit/PGFULL", json=_payload("PGFULL", bulky, name="bulky.txt"))
        assert full.status_code == 507, full.text
        assert full.json()["errorId"] == "insufficient.storage"
        assert "disk is full" in full.json()["message"] and "reads still work" in full.json()["message"]
        assert song.get(f"/studies/PGFULL/analysis/{first.json()['analysisId']}").status_code == 200
        filler.unlink()
        again = song.post("/submit/PGFULL", json=_payload("PGFULL", bulky, name="bulky.txt"))
        assert again.status_code == 200, again.text
    finally:
        server.stop()


def test_sizes_beyond_the_store_are_refused_with_the_limit(server: ScoreServer) -> None:
    token = server.token("score.WRITE song.WRITE")
    song = httpx.Client(base_url=f"{server.url}/song", headers=_auth(token), timeout=30)
    song.post("/studies/HUGE/", json={})
    six_tib = 6 * 1024**4
    payload = _payload("HUGE", {}, name="huge.bam")
    payload["files"][0]["fileSize"] = six_tib  # type: ignore[index]
    analysis = song.post("/submit/HUGE", json=payload).json()["analysisId"]
    oid = song.get(f"/studies/HUGE/analysis/{analysis}/files").json()[0]["objectId"]
    refused = httpx.post(f"{server.url}/upload/{oid}/uploads", params={"fileSize": six_tib}, headers=_auth(token))
    assert refused.status_code == 400
    assert "5 TiB" in refused.json()["message"] and str(5 * 1024**4) in refused.json()["message"]
    assert not list((server.data_dir / "store" / "multipart").iterdir())


# -- 5. a completed part is immutable ---------------------------------------------------------------


def test_replayed_part_puts_change_nothing_and_the_upload_still_finishes(
    server: ScoreServer, registry: Registry, admin_token: str, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "r.bin", 2 * SMALL_PART, seed=7)
    data = source.read_bytes()
    _, ids = registry.submit("REPLAY", [source])
    oid = ids["r.bin"]
    http = httpx.Client(base_url=server.url, headers=_auth(admin_token), timeout=30)
    spec = http.post(f"/upload/{oid}/uploads", params={"fileSize": len(data)}).json()
    for part in spec["parts"]:
        chunk = data[part["offset"] : part["offset"] + part["partSize"]]
        etag = httpx.put(part["url"], content=chunk).headers["etag"].strip('"')
        recorded = {"uploadId": spec["uploadId"], "partNumber": part["partNumber"], "md5": etag, "etag": etag}
        assert http.post(f"/upload/{oid}/parts", params=recorded).status_code == 200
    first = spec["parts"][0]
    other = bytes(b ^ 0xFF for b in data[: first["partSize"]])
    wrong_md5 = httpx.put(first["url"], content=other, headers={"Content-MD5": _b64md5(data[: first["partSize"]])})
    assert wrong_md5.status_code == 400 and "BadDigest" in wrong_md5.json()["message"]
    replaced = httpx.put(first["url"], content=other, headers={"Content-MD5": _b64md5(other)})
    assert replaced.status_code == 409 and "cannot be replaced" in replaced.json()["message"]
    final = http.post(f"/upload/{oid}", params={"uploadId": spec["uploadId"], "md5": md5_of(source)})
    assert final.status_code == 200, final.text
    stored = server.data_dir / "store" / "objects" / "data" / oid
    assert hashlib.md5(stored.read_bytes()).hexdigest() == md5_of(source)  # noqa: S324


def _b64md5(data: bytes) -> str:
    import base64

    return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324


# -- 13. stored data private ------------------------------------------------------------------------


def test_everything_the_server_stores_is_private_to_its_user(
    server: ScoreServer, registry: Registry, client: Client, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "p.bin", 3 * SMALL_PART, seed=8)
    _, ids = registry.submit("PRIVATE", [source])
    assert client.run("upload", "--file", str(source), "--object-id", ids["p.bin"]).returncode == 0
    exposed = [
        f"{path.relative_to(server.data_dir)} {oct(path.stat().st_mode & 0o777)}"
        for path in [server.data_dir, *server.data_dir.rglob("*")]
        if not path.is_symlink() and path.stat().st_mode & 0o077
    ]
    assert exposed == []
    assert (server.data_dir / "registry.sqlite").stat().st_mode & 0o777 == 0o600
    assert stat.S_IMODE((server.data_dir / "logs" / "audit.log").stat().st_mode) == 0o600


# -- 14. the OpenAPI document matches the server ------------------------------------------------------


def test_the_openapi_document_describes_what_the_server_answers(server: ScoreServer) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
    operations = [(p, m, o) for p, ops in document["paths"].items() for m, o in ops.items()]
    assert all("422" not in o["responses"] or "song" in o.get("tags", []) for _, _, o in operations)
    upload = document["paths"]["/upload/{object_id}/uploads"]["post"]["responses"]
    assert {"400", "401", "403", "404", "409", "503", "507"} <= set(upload)
    info = document["paths"]["/htsget/reads/service-info"]["get"]["responses"]["200"]["content"]
    assert list(info) == ["application/vnd.ga4gh.htsget.v1.0.0+json; charset=utf-8"]
    answer = httpx.get(f"{server.url}/htsget/reads/service-info")
    assert answer.headers["content-type"] == next(iter(info))
    submit = document["paths"]["/song/submit/{studyId}"]["post"]
    assert submit["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/SongPayload")
    assert "files" in document["components"]["schemas"]["SongPayload"]["required"]
    bad = httpx.post(f"{server.url}/upload/{UNKNOWN}/uploads", params={"fileSize": "x"})
    assert bad.status_code == 400 and "fileSize" in bad.json()["message"]  # as documented: 400, not 422


# -- 15. the client never shows a traceback ---------------------------------------------------------


def test_the_client_reports_unreadable_manifests_without_a_traceback(client: Client, tmp_path: Path) -> None:
    binary = tmp_path / "latin1.tsv"
    binary.write_bytes(b"header\n\xff\xfeobject\tpath\tmd5\n")
    long_path = "m" * 100_000
    for args in (
        ("upload", "--manifest", str(binary)),
        ("download", "--manifest", str(binary), "--output-dir", str(tmp_path / "o")),
        ("upload", "--manifest", long_path),
        ("upload", "--file", long_path, "--object-id", UNKNOWN, "--verify-connection", "false"),
    ):
        result = client.run(*args)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr and result.stderr.startswith("error:"), result.stderr[:500]
        assert len(result.stderr) < 2000, "a 100,000-character input is not echoed whole"
    assert "not UTF-8" in client.run("upload", "--manifest", str(binary)).stderr


# -- housekeeping --------------------------------------------------------------------------------------


def test_concurrent_anonymous_abuse_keeps_memory_bounded(server: ScoreServer) -> None:
    """50 anonymous clients posting 64 MiB bodies at once: refusals, and RSS within 200 MiB."""
    before = _rss(server)
    errors: list[BaseException] = []

    def abuse() -> None:
        try:
            with httpx.Client(timeout=60) as http:
                http.post(f"{server.url}/htsget/reads/{UNKNOWN}", content=_endless(64 * MiB))
        except httpx.HTTPError:
            pass  # the server may close on the client mid-body: that is the point
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=abuse) for _ in range(50)]
    for thread in threads:
        thread.start()
    peak = before
    while any(t.is_alive() for t in threads):
        peak = max(peak, _rss(server))
        time.sleep(0.05)
    assert not errors
    assert peak - before < 200 * MiB, f"RSS grew by {(peak - before) / MiB:.0f} MiB"
    assert httpx.get(f"{server.url}/actuator/health").status_code == 200
    os.sched_yield()
