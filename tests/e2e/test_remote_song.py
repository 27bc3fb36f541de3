"""A second Score server using the first one's /song as its remote Song behaves like one with its own registry."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import Client, Registry, ScoreServer, make_file, md5_of


def test_remote_song_gates_and_cross_checks(server: ScoreServer, registry: Registry, tmp_path: Path) -> None:
    # Same object store (data dir), metadata from the other server's Song API over real HTTP.
    remote = ScoreServer(
        server.data_dir, extra_env={"SCORE_METADATA_URL": f"{server.url}/song", "SCORE_METADATA_CACHE_TTL": "0"}
    ).start()
    try:
        assert httpx.get(f"{remote.url}/song/isAlive").status_code == 404  # no embedded registry here
        token = server.token("score.WRITE score.READ song.WRITE")
        source = make_file(tmp_path / "in" / "r.bin", 200_000, seed=1)
        analysis_id, ids = registry.submit("REMOTE", [source])
        oid = ids["r.bin"]
        work = tmp_path / "work"
        work.mkdir()
        client = Client(remote, token, work)
        song = {"METADATA_URL": f"{server.url}/song"}

        wrong = httpx.post(
            f"{remote.url}/upload/{oid}/uploads", params={"fileSize": 5}, headers={"Authorization": f"Bearer {token}"}
        )
        assert wrong.status_code == 400 and "differs from the size registered" in wrong.json()["message"]
        unknown = httpx.post(
            f"{remote.url}/upload/00000000-0000-4000-8000-000000000000/uploads",
            params={"fileSize": 5},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert unknown.status_code == 404

        upload = client.run("upload", "--file", str(source), "--object-id", oid, **song)
        assert upload.returncode == 0, upload.stderr
        early = client.run("download", "--object-id", oid, "--output-dir", str(tmp_path / "out"), **song)
        assert early.returncode == 1 and "PUBLISHED" in early.stderr

        assert registry.publish("REMOTE", analysis_id).status_code == 200
        late = client.run("upload", "--file", str(source), "--object-id", oid, "--force", **song)
        assert late.returncode == 1 and "UNPUBLISHED" in late.stderr
        download = client.run("download", "--object-id", oid, "--output-dir", str(tmp_path / "out"), **song)
        assert download.returncode == 0, download.stderr
        assert md5_of(tmp_path / "out" / "r.bin") == md5_of(source)
    finally:
        remote.stop()
