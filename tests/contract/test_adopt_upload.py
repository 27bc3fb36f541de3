"""``score-client upload`` continues an upload another client started, as the Java client continues one.

The other client here speaks as the Java client's S3 path does (S3UploadService.java:82-136, SSS:154-183):
initiate with ``overwrite=true``, PUT a part with Content-Length only, record it with its MD5 and the ETag,
then stop. Our client then finds that upload in progress: it checks every recorded part against its file,
records the ones that match again without sending them, sends the ones that differ, and finalizes.
(Azure's single-file initiate is the Java client's one-blob path, with no parts to continue, so the
multipart backends are tested.)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from tests.conftest import Client, Registry, make_file, md5_of
from tests.contract.conftest import Deployment

STUDY = "CONTRACT"
pytestmark = pytest.mark.parametrize("deployment", ["local", "s3", "gcs"], indirect=True)


def _java_upload_of_first_parts(
    deployment: Deployment, token: str, oid: str, sizes: int, parts: dict[int, bytes]
) -> str:
    """The other client's calls: initiate, then for each part in ``parts`` its PUT of those bytes and its
    record call; returns the upload id."""
    api = httpx.Client(base_url=deployment.server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    spec = api.post(f"/upload/{oid}/uploads", params={"fileSize": sizes, "overwrite": "true"})
    assert spec.status_code == 200, spec.text
    by_number = {p["partNumber"]: p for p in spec.json()["parts"]}
    for number, body in parts.items():
        sent = httpx.put(by_number[number]["url"], content=body, timeout=60)
        assert sent.status_code in (200, 201), sent.text
        md5 = hashlib.md5(body).hexdigest()  # noqa: S324
        etag = sent.headers.get("etag", "").strip('"') or md5
        recorded = api.post(
            f"/upload/{oid}/parts",
            params={"uploadId": spec.json()["uploadId"], "partNumber": number, "md5": md5, "etag": etag},
        )
        assert recorded.status_code == 200, recorded.text
    return str(spec.json()["uploadId"])


def _setup(deployment: Deployment, tmp_path: Path) -> tuple[str, Registry, Client, Path, str, str]:
    server = deployment.server
    token = server.token("score.WRITE score.READ song.WRITE")
    registry = Registry(server, token)
    source = make_file(tmp_path / "in" / "a.bin", 3 * deployment.part_size + 5, seed=33)
    analysis_id, ids = registry.submit(STUDY, [source])
    work = tmp_path / "work"
    work.mkdir()
    return token, registry, Client(server, token, work), source, analysis_id, ids["a.bin"]


def _download(client: Client, oid: str, out: Path) -> bytes:
    got = client.run("download", oid, "--output-dir", str(out))
    assert got.returncode == 0, got.stderr
    return (out / "a.bin").read_bytes()


def test_matching_parts_recorded_elsewhere_are_not_sent_again(deployment: Deployment, tmp_path: Path) -> None:
    token, registry, client, source, analysis_id, oid = _setup(deployment, tmp_path)
    data, part = source.read_bytes(), deployment.part_size
    upload_id = _java_upload_of_first_parts(
        deployment, token, oid, len(data), {1: data[:part], 2: data[part : 2 * part]}
    )
    before = deployment.part_puts()

    result = client.run("upload", "--file", str(source), "--object-id", oid)
    assert result.returncode == 0, result.stderr
    sent = deployment.part_puts() - before
    assert sent == {3: 1, 4: 1}, f"only the parts nobody recorded cross the wire, got {sent}"
    assert "started elsewhere" not in result.stderr
    spec = httpx.get(
        f"{deployment.server.url}/download/{oid}",
        headers={"Authorization": f"Bearer {token}"},
        params={"offset": 0, "length": -1, "exclude-urls": "true"},
    ).json()
    assert (spec["objectMd5"], spec["uploadId"]) == (md5_of(source), upload_id)  # that upload, finished
    assert registry.publish(STUDY, analysis_id).status_code == 200
    assert _download(client, oid, tmp_path / "out") == data


def test_a_part_recorded_elsewhere_with_other_bytes_is_sent_again(deployment: Deployment, tmp_path: Path) -> None:
    token, registry, client, source, analysis_id, oid = _setup(deployment, tmp_path)
    data, part = source.read_bytes(), deployment.part_size
    wrong = bytes(b ^ 0xFF for b in data[part : 2 * part])  # part 2 of some other version of the file
    _java_upload_of_first_parts(deployment, token, oid, len(data), {1: data[:part], 2: wrong})
    before = deployment.part_puts()

    result = client.run("upload", "--file", str(source), "--object-id", oid)
    if deployment.backend == "local":
        # The embedded store keeps a stored part immutable (storage/local/store.py): it refuses the part, saying what
        # to do, and changes nothing.
        assert result.returncode != 0
        assert "is already stored with MD5" in result.stderr and "upload --force" in result.stderr
        result = client.run("upload", "--file", str(source), "--object-id", oid, "--force")
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert deployment.part_puts() - before == {2: 1, 3: 1, 4: 1}
    assert registry.publish(STUDY, analysis_id).status_code == 200
    assert _download(client, oid, tmp_path / "out") == data


def test_force_discards_an_upload_started_elsewhere(deployment: Deployment, tmp_path: Path) -> None:
    token, registry, client, source, analysis_id, oid = _setup(deployment, tmp_path)
    data, part = source.read_bytes(), deployment.part_size
    upload_id = _java_upload_of_first_parts(deployment, token, oid, len(data), {1: data[:part]})
    before = deployment.part_puts()

    result = client.run("upload", "--file", str(source), "--object-id", oid, "--force")
    assert result.returncode == 0, result.stderr
    assert deployment.part_puts() - before == {1: 1, 2: 1, 3: 1, 4: 1}, "every part sent: nothing was taken over"
    spec = httpx.get(
        f"{deployment.server.url}/download/{oid}",
        headers={"Authorization": f"Bearer {token}"},
        params={"offset": 0, "length": -1, "exclude-urls": "true"},
    ).json()
    assert spec["objectMd5"] == md5_of(source) and spec["uploadId"] != upload_id
    assert registry.publish(STUDY, analysis_id).status_code == 200
    assert _download(client, oid, tmp_path / "out") == data


def test_a_small_file_started_elsewhere_is_finished_and_leaves_no_journal(
    deployment: Deployment, tmp_path: Path
) -> None:
    """A one-part file whose upload another client started (nothing recorded yet) is finished, and no journal
    is left beside it: where the upload is taken over (no whole-object PUTs: GCS), the journal written then is
    removed with the others once finalized (it used to stay)."""
    server = deployment.server
    token = server.token("score.WRITE score.READ song.WRITE")
    registry = Registry(server, token)
    source = make_file(tmp_path / "in" / "s.bin", 1000, seed=34)
    analysis_id, ids = registry.submit(STUDY, [source])
    oid = ids["s.bin"]
    upload_id = _java_upload_of_first_parts(deployment, token, oid, 1000, {})
    work = tmp_path / "work"
    work.mkdir()
    client = Client(server, token, work)

    result = client.run("upload", "--file", str(source), "--object-id", oid)
    assert result.returncode == 0, result.stderr
    assert not (source.parent / f".{oid}").exists(), "the finished file's journal was left beside it"
    spec = httpx.get(
        f"{server.url}/download/{oid}",
        headers={"Authorization": f"Bearer {token}"},
        params={"offset": 0, "length": -1, "exclude-urls": "true"},
    ).json()
    assert spec["objectMd5"] == md5_of(source)
    # Where the store signs whole-object PUTs (local, S3) the file goes in one of its own and the other upload
    # is left alone; elsewhere (GCS) that upload is the one continued and finished.
    assert (spec["uploadId"] == upload_id) == (deployment.backend == "gcs"), spec["uploadId"]
    assert registry.publish(STUDY, analysis_id).status_code == 200
    got = client.run("download", oid, "--output-dir", str(tmp_path / "out"))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "out" / "s.bin").read_bytes() == source.read_bytes()
