"""Backend choice and start-up validation through the real ``score-server serve`` process."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import BIN, make_file, md5_of
from tests.services.process import free_port


def _serve(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "score-server"), "serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "d")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_misconfigured_stores_are_refused_at_start_up(seaweed, azurite, gcs_emulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bucket = seaweed.fresh_bucket()
    cases = {
        "missing bucket": (seaweed.score_env("no-such-bucket"), "no-such-bucket"),
        "missing sentinel": (seaweed.score_env(seaweed.fresh_bucket(sentinel=False)), "heliograph"),
        "bad credentials": ({**seaweed.score_env(bucket), "SCORE_S3__SECRET_KEY": "wrong"}, "credentials"),
        "unreachable": (seaweed.score_env(bucket, endpoint=f"http://127.0.0.1:{free_port()}"), "reach"),
        "azure container": (azurite.score_env("nocontainer"), "nocontainer"),
        "gcs bucket": (gcs_emulator.score_env("no-such-gcs-bucket"), "no-such-gcs-bucket"),
    }
    for name, (env, expected) in cases.items():
        result = _serve(tmp_path / name.replace(" ", "-"), env)
        assert result.returncode == 1, (name, result.stderr)
        assert "is not ready" in result.stderr and expected.lower() in result.stderr.lower(), (name, result.stderr)
        assert "testsecret" not in result.stderr


def test_client_part_upload_to_a_sigv2_url(seaweed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Old Ceph needs SigV2, whose signature covers Content-MD5/Content-Type: the client must not send them.

    (A whole server on SigV2 cannot be run here: SeaweedFS refuses SigV2-signed ListObjects calls.)
    """
    from score.client.transfer.data import DataClient
    from score.server.settings import S3Config
    from score.server.storage.s3 import S3Store
    from tests.services.seaweed import ACCESS_KEY, SECRET_KEY

    bucket = seaweed.fresh_bucket()
    store = S3Store(
        S3Config(endpoint=seaweed.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, bucket=bucket, sigv2=True)
    )
    source = make_file(tmp_path / "part.bin", 5 * 1024 * 1024 + 17, seed=2)
    upload_id = store.start_upload("data/v2-object", source.stat().st_size)
    url = store.sign_upload_part("data/v2-object", upload_id, 1, 0, source.stat().st_size, 300)
    assert "Signature=" in url and "X-Amz-Signature" not in url
    data = DataClient(1, 30.0, 1 << 20)
    try:
        md5 = md5_of(source)
        etag = data.put_part(url, source, 0, source.stat().st_size, md5, lambda n: None, "part 1")
    finally:
        data.close()
    assert etag == md5
    assert [p.etag.strip('"') for p in store.list_uploaded_parts("data/v2-object", upload_id)] == [md5]
