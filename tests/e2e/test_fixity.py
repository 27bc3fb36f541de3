"""Fixity: objects uploaded through the real server and client, then damaged on the store behind the server's
back; ``score-server verify`` and the server's background scrub must name exactly the damaged ones."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import BIN, SMALL_PART, Client, Registry, ScoreServer, make_file, md5_of
from tests.services.seaweed import SeaweedS3

STUDY = "FIXITY"
MiB = 1024 * 1024


def verify(server: ScoreServer, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "score-server"), "verify", "--data-dir", str(server.data_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def lines_by_id(stdout: str) -> dict[str, str]:
    """``<id> <OUTCOME> <detail>`` lines, by id."""
    return {line.split(" ", 1)[0]: line for line in stdout.splitlines() if line.strip()}


def fixity_audit(server: ScoreServer) -> list[dict[str, object]]:
    path = server.data_dir / "logs" / "audit.log"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [r for r in records if r["action"] == "fixity"]


def upload_published(registry: Registry, client: Client, files: list[Path]) -> tuple[str, dict[str, str]]:
    analysis_id, ids = registry.submit(STUDY, files)
    result = client.run(
        "upload", "--analysis-id", analysis_id, "--study-id", STUDY, "--input-dir", str(files[0].parent)
    )
    assert result.returncode == 0, result.stderr
    assert registry.publish(STUDY, analysis_id).status_code == 200
    return analysis_id, ids


def reupload(registry: Registry, client: Client, analysis_id: str, path: Path, object_id: str) -> None:
    """The repair the damage message advises: unpublish, upload the good copy with --force, publish."""
    assert registry.unpublish(STUDY, analysis_id).status_code == 200
    again = client.run("upload", "--file", str(path), "--object-id", object_id, "--force")
    assert again.returncode == 0, again.stderr
    assert registry.publish(STUDY, analysis_id).status_code == 200


def stored(server: ScoreServer, object_id: str) -> Path:
    """Where the local store keeps an object's bytes (``<data-dir>/store/objects/data/<id>``)."""
    path = server.data_dir / "store" / "objects" / "data" / object_id
    assert path.is_file(), path
    return path


def flip_byte(path: Path, offset: int) -> str:
    """Invert one byte in place (same size); the MD5 the file now has."""
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))
    return hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324


def test_verify_names_exactly_the_damaged_objects(
    server: ScoreServer, registry: Registry, client: Client, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    files = {
        "flipped.bam": make_file(inputs / "flipped.bam", 5 * SMALL_PART + 1234, seed=1),  # six parts
        "truncated.bin": make_file(inputs / "truncated.bin", 3 * SMALL_PART, seed=2),
        "gone.bin": make_file(inputs / "gone.bin", 5000, seed=3),
        "good.bin": make_file(inputs / "good.bin", 2 * SMALL_PART + 7, seed=4),
        "empty.txt": make_file(inputs / "empty.txt", 0),
    }
    analysis_id, ids = upload_published(registry, client, list(files.values()))
    md5 = {name: md5_of(path) for name, path in files.items()}

    clean = verify(server, "--all")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert {oid: line.split()[1] for oid, line in lines_by_id(clean.stdout).items()} == {
        oid: "OK" for oid in ids.values()
    }  # the store's sentinel is no object
    assert "5 objects checked" in clean.stderr and fixity_audit(server) == []

    flipped_md5 = flip_byte(stored(server, ids["flipped.bam"]), 3 * SMALL_PART + 5)
    truncated = stored(server, ids["truncated.bin"])
    truncated.write_bytes(files["truncated.bin"].read_bytes()[: SMALL_PART + 10])
    truncated_md5 = md5_of(truncated)
    stored(server, ids["gone.bin"]).unlink()

    damaged = verify(server, "--all")
    assert damaged.returncode == 1, damaged.stdout + damaged.stderr
    lines = lines_by_id(damaged.stdout)
    assert set(lines) == set(ids.values())
    flipped = lines[ids["flipped.bam"]]
    assert "MISMATCH MD5 mismatch" in flipped and f"expected MD5 {md5['flipped.bam']}, actual {flipped_md5}" in flipped
    short = lines[ids["truncated.bin"]]
    assert "MISMATCH size mismatch" in short
    assert f"expected {3 * SMALL_PART} bytes, stored {SMALL_PART + 10}" in short and truncated_md5 in short
    assert "MISSING bytes missing" in lines[ids["gone.bin"]] and md5["gone.bin"] in lines[ids["gone.bin"]]
    for name in ("good.bin", "empty.txt"):
        assert lines[ids[name]].split()[1] == "OK", lines[ids[name]]
    assert "3 damaged object(s)" in damaged.stderr and "re-upload the object from a good copy" in damaged.stderr

    audit = {record["object"]: record for record in fixity_audit(server)}
    assert set(audit) == {ids["flipped.bam"], ids["truncated.bin"], ids["gone.bin"]}
    assert audit[ids["flipped.bam"]]["expected"] == {"md5": md5["flipped.bam"], "size": 5 * SMALL_PART + 1234}
    assert audit[ids["flipped.bam"]]["actual"] == {"md5": flipped_md5, "size": 5 * SMALL_PART + 1234}
    assert audit[ids["flipped.bam"]]["decision"] == "mismatch"
    assert audit[ids["truncated.bin"]]["actual"] == {"md5": truncated_md5, "size": SMALL_PART + 10}
    assert audit[ids["gone.bin"]]["decision"] == "missing"
    assert all(record["subject"] == "score-server verify" for record in audit.values())

    good = verify(server, ids["good.bin"])  # one object: only it is read
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.startswith(f"{ids['good.bin']} OK {2 * SMALL_PART + 7} bytes, MD5 {md5['good.bin']}")
    one_bad = verify(server, ids["good.bin"], ids["flipped.bam"], "--json")
    assert one_bad.returncode == 1
    records = [json.loads(line) for line in one_bad.stdout.splitlines()]
    assert [(r.get("objectId"), r.get("outcome")) for r in records[:2]] == [
        (ids["good.bin"], "ok"),
        (ids["flipped.bam"], "mismatch"),
    ]
    assert records[1]["expectedMd5"] == md5["flipped.bam"] and records[1]["actualMd5"] == flipped_md5
    assert records[2]["summary"]["checked"] == 2 and records[2]["summary"]["mismatch"] == 1

    # What the message says to do works: re-uploading from a good copy makes the object verify again.
    reupload(registry, client, analysis_id, files["flipped.bam"], ids["flipped.bam"])
    repaired = verify(server, ids["flipped.bam"])
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr


def test_verify_refuses_malformed_and_unknown_ids(server: ScoreServer) -> None:
    malformed = verify(server, "../etc/passwd")
    assert malformed.returncode == 2
    assert "'../etc/passwd'" in malformed.stderr and "an object id is" in malformed.stderr
    neither = verify(server)
    assert neither.returncode == 2 and "give object ids to check, or --all" in neither.stderr
    unknown = str(uuid.uuid4())
    absent = verify(server, unknown)
    assert absent.returncode == 2, absent.stdout + absent.stderr
    assert f"{unknown} ABSENT no such object" in absent.stdout and "could not be checked" in absent.stderr
    missing_dir = subprocess.run(
        [str(BIN / "score-server"), "verify", "--all", "--data-dir", str(server.data_dir.parent / "nowhere")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing_dir.returncode == 2 and "does not exist" in missing_dir.stderr


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    service = SeaweedS3(tmp_path_factory.mktemp("seaweed-fixity")).start()
    yield service
    service.stop()


def test_verify_on_s3_finds_an_object_replaced_behind_the_server(seaweed: SeaweedS3, tmp_path: Path) -> None:
    bucket = seaweed.fresh_bucket()
    env = seaweed.score_env(bucket)
    server = ScoreServer(tmp_path / "server-data", part_size=5 * MiB, extra_env=env).start()
    try:
        token = server.token("score.WRITE score.READ song.WRITE")
        registry = Registry(server, token)
        work = tmp_path / "work"
        work.mkdir()
        client = Client(server, token, work)
        inputs = tmp_path / "in"
        files = [
            make_file(inputs / "big.bin", 5 * MiB + 4321, seed=5),  # two parts: a multipart upload
            make_file(inputs / "small.bin", 4000, seed=6),  # one part: one signed PUT
        ]
        _, ids = upload_published(registry, client, files)
        assert verify(server, "--all", env=env).returncode == 0

        s3 = seaweed.client()
        key = f"data/{ids['small.bin']}"
        body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        body[100] ^= 0x01
        s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))  # same size, other bytes, a fresh ETag
        actual = hashlib.md5(body).hexdigest()  # noqa: S324

        result = verify(server, "--all", env=env)
        assert result.returncode == 1, result.stdout + result.stderr
        lines = lines_by_id(result.stdout)
        assert set(lines) == set(ids.values())
        assert lines[ids["big.bin"]].split()[1] == "OK"
        assert f"expected MD5 {md5_of(files[1])}, actual {actual}" in lines[ids["small.bin"]]
        assert [r["object"] for r in fixity_audit(server)] == [ids["small.bin"]]
        assert verify(server, ids["big.bin"], env=env).returncode == 0
    finally:
        server.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_background_scrub_reports_damage_in_health_without_failing_readiness(tmp_path: Path, workers: int) -> None:
    """With two workers, both health answers read the one scrub's state, and the damage is audited once."""
    server = ScoreServer(
        tmp_path / "server-data",
        extra_env={"SCORE_FIXITY_SCRUB_INTERVAL": "1", "SCORE_FIXITY_SCRUB_RATE": str(64 * MiB)},
        extra_args=("--workers", str(workers)),
    ).start()
    try:
        token = server.token("score.WRITE score.READ song.WRITE")
        registry = Registry(server, token)
        work = tmp_path / "work"
        work.mkdir()
        client = Client(server, token, work)
        inputs = tmp_path / "in"
        files = [make_file(inputs / f"f{i}.bin", 3 * SMALL_PART + i, seed=10 + i) for i in range(3)]
        analysis_id, ids = upload_published(registry, client, files)
        victim = ids["f1.bin"]
        actual = flip_byte(stored(server, victim), 10)

        def fixity() -> tuple[httpx.Response, dict[str, object]]:
            answer = httpx.get(f"{server.url}/health", timeout=5)
            return answer, answer.json()["details"]["fixity"]

        deadline = time.monotonic() + 60
        answer, report = fixity()
        while report["status"] != "MISMATCH" and time.monotonic() < deadline:
            time.sleep(0.3)
            answer, report = fixity()
        assert report["status"] == "MISMATCH", report
        assert answer.status_code == 200 and answer.json()["status"] == "UP"  # readiness does not fail
        ready = httpx.get(f"{server.url}/actuator/health/readiness", timeout=5)
        assert ready.status_code == 200 and ready.json()["details"]["fixity"]["status"] == "MISMATCH"
        assert report["mismatchCount"] == 1 and report["scrubInterval"] == 1
        (entry,) = report["mismatches"]  # type: ignore[misc]
        assert entry["objectId"] == victim and entry["outcome"] == "mismatch"
        assert entry["expectedMd5"] == md5_of(files[1]) and entry["actualMd5"] == actual
        assert "re-upload" in str(report["action"])

        (audit,) = fixity_audit(server)
        assert audit["object"] == victim and audit["subject"] == "fixity-scrub"
        assert audit["expected"] == {"md5": md5_of(files[1]), "size": 3 * SMALL_PART + 1}
        assert audit["actual"] == {"md5": actual, "size": 3 * SMALL_PART + 1}

        # Repaired from a good copy: the next scrub clears it, and checked every object meanwhile.
        reupload(registry, client, analysis_id, files[1], victim)
        deadline = time.monotonic() + 60
        while report["status"] != "UP" and time.monotonic() < deadline:
            time.sleep(0.3)
            _, report = fixity()
        assert report["status"] == "UP" and report["mismatches"] == [], report
        assert report["lastScrubChecked"] == 3 and report["lastScrubFinished"]
        found, repaired = fixity_audit(server)  # each scrub logs the damage, the audit log has news only
        assert found == audit and repaired["object"] == victim and repaired["decision"] == "ok"
        assert "holds its recorded bytes again" in str(repaired["reason"])
    finally:
        server.stop()
