"""The commands run beside a server on its data: stale-upload clean-up (old uploads are aborted, fresh ones
kept, concurrent sweeps are safe) and ``record-specs`` (objects finished before the registry kept their
``.meta`` get recorded)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from tests.conftest import BIN, Client, Registry, ScoreServer, forget_recorded_specs, make_file, recorded_specs


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


def test_record_specs_records_objects_finished_before_the_registry_kept_records(
    server: ScoreServer, registry: Registry, client: Client, tmp_path: Path
) -> None:
    files = [make_file(tmp_path / "in" / f"r{i}.bin", size, seed=i) for i, size in enumerate([0, 10, 5000, 3000])]
    analysis_id, ids = registry.submit("RECORDS", files)
    upload = client.run(
        "upload", "--analysis-id", analysis_id, "--study-id", "RECORDS", "--input-dir", str(tmp_path / "in")
    )
    assert upload.returncode == 0, upload.stderr
    metas = server.data_dir / "store" / "objects" / "data"
    assert recorded_specs(server.data_dir) == {oid: (metas / f"{oid}.meta").read_text() for oid in ids.values()}
    forget_recorded_specs(server.data_dir)  # a registry from before the records
    garbled = ids["r3.bin"]
    (metas / f"{garbled}.meta").write_text("{not a specification")

    command = [str(BIN / "score-server"), "record-specs", "--data-dir", str(server.data_dir)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "3 of 4 objects recorded (0 were already, 0 changed meanwhile" in first.stderr
    assert "1 with a .meta that is no specification" in first.stderr
    expected = {oid: (metas / f"{oid}.meta").read_text() for oid in ids.values() if oid != garbled}
    assert recorded_specs(server.data_dir) == expected
    again = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "0 of 4 objects recorded (3 were already" in again.stderr, again.stderr
    assert recorded_specs(server.data_dir) == expected
