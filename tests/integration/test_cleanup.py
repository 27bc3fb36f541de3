"""Stale-upload clean-up: old uploads are aborted, fresh ones kept, and concurrent sweeps are safe."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from tests.conftest import BIN, Registry, ScoreServer, make_file


def _cleanup(server: ScoreServer, older_than: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "score-server"), "cleanup", "--older-than", older_than, "--data-dir", str(server.data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_stale_uploads_are_aborted_and_fresh_ones_kept(
    server: ScoreServer, registry: Registry, admin_token: str, tmp_path: Path
) -> None:
    files = [make_file(tmp_path / f"f{i}.bin", 3000, seed=i) for i in range(3)]
    _, ids = registry.submit("CLEAN", files)
    auth = {"Authorization": f"Bearer {admin_token}"}
    specs = {
        name: httpx.post(f"{server.url}/upload/{oid}/uploads", params={"fileSize": 3000}, headers=auth).json()
        for name, oid in ids.items()
    }

    kept = _cleanup(server, "1h")
    _, err = kept.communicate(timeout=60)
    assert kept.returncode == 0, err
    assert "0 of 3 uploads aborted as stale" in err

    sweeps = [_cleanup(server, "0s"), _cleanup(server, "0s")]  # two replicas sweeping at once
    results = [p.communicate(timeout=60) for p in sweeps]
    assert all(p.returncode == 0 for p in sweeps), results
    aborted = {line.split()[2] for out, _ in results for line in out.splitlines() if line.startswith("aborted upload")}
    assert aborted == {spec["uploadId"] for spec in specs.values()}

    for name, oid in ids.items():
        status = httpx.get(f"{server.url}/upload/{oid}/status", params={"fileSize": 3000}, headers=auth)
        assert status.status_code == 404
        part = specs[name]["parts"][0]
        late = httpx.put(part["url"], content=b"x" * part["partSize"])
        assert late.status_code == 404, "the store's upload must be aborted too"
