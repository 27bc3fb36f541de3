"""Two score-server replicas on one SeaweedFS bucket and one PostgreSQL registry behind HAProxy
(deploy/haproxy.cfg, as shipped), with a replica killed with -9 in the middle of an upload job and of a
download job, and restarted: every file arrives with its MD5, nothing is lost or stored twice.

The replicas share the registry's database (``registry_url``) and a data directory for the token signing
keys (what a deployment shares through its identity provider); the data goes straight to SeaweedFS through
signed URLs, so a replica that dies only drops API calls, which HAProxy sends to the other one or the client
repeats.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import Client, Registry, ScoreServer, make_file
from tests.services.haproxy import HAProxy
from tests.services.process import free_port
from tests.services.seaweed import SeaweedS3

STUDY = "REPLICAS"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    service = SeaweedS3(tmp_path_factory.mktemp("seaweed")).start()
    yield service
    service.stop()


def _kill_then_restart(replica: ScoreServer, job: subprocess.Popen[str], after: float, down_for: float) -> None:
    time.sleep(after)
    assert job.poll() is None, "the job ended before the replica could be killed: make it longer"
    replica.kill()
    time.sleep(down_for)
    assert job.poll() is None, "the job ended while the replica was down: make it longer"
    replica.start()  # on its own port: HAProxy's health check takes it in again


def test_a_job_survives_a_replica_killed_and_restarted(seaweed: SeaweedS3, postgres: Any, tmp_path: Path) -> None:
    bucket = seaweed.fresh_bucket()
    data_dir = tmp_path / "shared-data"
    balancer_port = free_port()  # the replicas sign URLs for the balancer's address, so it is known first
    env = {
        **seaweed.score_env(bucket),
        "SCORE_PUBLIC_URL": f"http://127.0.0.1:{balancer_port}",
        "SCORE_REGISTRY_URL": postgres.create_database(),
    }
    first = ScoreServer(data_dir, part_size=5 * MiB, extra_env=env).start()
    second = ScoreServer(data_dir, part_size=5 * MiB, extra_env=env).start()
    replicas = [first, second]
    balancer: HAProxy | None = None
    try:
        balancer = HAProxy(balancer_port, [r.port for r in replicas], tmp_path / "haproxy.log").wait_ready()
        front = SimpleNamespace(url=balancer.url)
        token = first.token("score.WRITE score.READ song.WRITE")
        # Enough small files that each job outlasts the replica's kill window (0.4 s, then 1.0 s down) on a quiet
        # machine: 400 downloaded in 1.7 s once downloads stopped reading .meta from the store, too close.
        files = [make_file(tmp_path / "in" / f"small-{n:04d}.bin", 100_000 + n, seed=n) for n in range(1000)]
        files += [make_file(tmp_path / "in" / f"large-{n}.bam", 24 * MiB + n, seed=1000 + n) for n in range(3)]
        registry = Registry(front, token)  # type: ignore[arg-type]
        analysis_id, ids = registry.submit(STUDY, files)
        work = tmp_path / "work"
        work.mkdir()
        client = Client(front, token, work)  # type: ignore[arg-type]
        retries = {"STORAGE_RETRYNUMBER": "10"}

        upload = client.start(
            "upload", "--analysis-id", analysis_id, "--study-id", STUDY, "--input-dir", str(tmp_path / "in"), **retries
        )
        _kill_then_restart(first, upload, after=0.4, down_for=1.0)
        _, err = upload.communicate(timeout=300)
        assert upload.returncode == 0, err
        assert registry.publish(STUDY, analysis_id).status_code == 200

        download = client.start(
            "download",
            "--analysis-id",
            analysis_id,
            "--study-id",
            STUDY,
            "--output-dir",
            str(tmp_path / "out"),
            **retries,
        )
        _kill_then_restart(second, download, after=0.4, down_for=1.0)
        _, err = download.communicate(timeout=300)
        assert download.returncode == 0, err

        for f in files:
            got = next((tmp_path / "out").rglob(f.name))
            assert hashlib.md5(got.read_bytes()).digest() == hashlib.md5(f.read_bytes()).digest(), f.name  # noqa: S324
        # Nothing stored twice, nothing left half done: one data object and one .meta per file, no upload state.
        keys = [
            o["Key"]
            for page in seaweed.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])
        ]
        expected = {f"data/{oid}" for oid in ids.values()} | {f"data/{oid}.meta" for oid in ids.values()}
        assert set(keys) - {"data/heliograph"} == expected
        assert len(keys) == len(expected) + 1
        assert not [k for k in keys if k.startswith("upload/")]
        assert not list(data_dir.glob("registry.sqlite*"))  # the registry was PostgreSQL's alone
    finally:
        if balancer is not None:
            balancer.stop()
        for replica in replicas:
            replica.stop()
