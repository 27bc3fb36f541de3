"""A bucket laid out exactly as the Java Score server leaves it, served by a real score-server on S3.

The bucket content is written by hand with boto3 (never through our server): a finished object with a
legacy ``.meta`` (no objectMd5, a ``<missing>`` part MD5, unknown fields), a blob with no ``.meta`` but
rclone's ``x-amz-meta-md5chksum``, an upload in progress with Java's marker keys, and a partitioned
bucket set holding an object from before partitioning in its base bucket. The embedded registry
assigns object ids itself, so analyses are submitted first and the bucket is built for those ids.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Client, Registry, ScoreServer, make_file, md5_of
from tests.services.seaweed import SeaweedS3

MiB = 1024 * 1024
STUDY = "LEGACY"
FIXTURE_META = Path(__file__).resolve().parents[1] / "fixtures" / "legacy.meta"
EXPIRED_URL = "https://s3.example.org/oicr.icgc/data/{id}?partNumber={n}&uploadId={u}&Expires=1450000000&Signature=x"


def md5_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324


def md5_hex(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()  # noqa: S324


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    service = SeaweedS3(tmp_path_factory.mktemp("seaweed-legacy")).start()
    yield service
    service.stop()


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[ScoreServer]]:
    servers: list[ScoreServer] = []
    yield servers
    for server in servers:
        server.stop()


def start_server(started: list[ScoreServer], data_dir: Path, env: dict[str, str]) -> ScoreServer:
    server = ScoreServer(data_dir, part_size=5 * MiB, extra_env=env).start()
    started.append(server)
    return server


def java_meta(object_id: str, upload_id: str, sizes: list[int], part_md5s: list[str | None]) -> bytes:
    """``data/{id}.meta`` in the Java server's shape, starting from the checked-in fixture document."""
    lines = [line for line in FIXTURE_META.read_text().splitlines() if line and not line.startswith("#")]
    meta = json.loads(lines[0])
    template = meta["parts"][0]
    parts, offset = [], 0
    for number, (size, md5) in enumerate(zip(sizes, part_md5s, strict=True), 1):
        url = EXPIRED_URL.format(id=object_id, n=number, u=upload_id) if number == 1 else None
        part = {**template, "partNumber": number, "partSize": size, "offset": offset, "url": url}
        parts.append({**part, "md5": None, "sourceMd5": md5 or "<missing>"})
        offset += size
    meta.update(objectKey=f"data/{object_id}", objectId=object_id, uploadId=upload_id, parts=parts, objectSize=offset)
    assert "objectMd5" not in meta and meta["relocated"] is False  # the legacy quirks stay in
    return json.dumps(meta, separators=(",", ":")).encode()


def multipart_blob(s3: Any, bucket: str, key: str, body: bytes, sizes: list[int]) -> str:
    """Write ``body`` as the Java server does: one S3 multipart upload with the ``.meta``'s part sizes."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etags, offset = [], 0
    for number, size in enumerate(sizes, 1):
        chunk = body[offset : offset + size]
        etags.append(s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk)["ETag"])
        offset += size
    parts = [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    return str(upload_id)


def publish(registry: Registry, analysis_id: str, ignore_undefined_md5: bool = False) -> None:
    params = {"ignoreUndefinedMd5": "true"} if ignore_undefined_md5 else {}
    response = registry.http.put(f"/studies/{STUDY}/analysis/publish/{analysis_id}", params=params)
    assert response.status_code == 200, response.text


def spec(server: ScoreServer, auth: dict[str, str], object_id: str, exclude_urls: bool) -> dict[str, Any]:
    params = {"offset": 0, "length": -1, "exclude-urls": str(exclude_urls).lower()}
    response = httpx.get(f"{server.url}/download/{object_id}", headers=auth, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def download(client: Client, analysis_id: str, out: Path) -> None:
    result = client.run(
        "download", "--analysis-id", analysis_id, "--study-id", STUDY, "--output-dir", str(out),
        "--output-layout", "filename",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_java_layout_is_listed_specified_downloaded_and_cancelled(
    seaweed: SeaweedS3, started: list[ScoreServer], tmp_path: Path
) -> None:
    s3 = seaweed.client()
    bucket = seaweed.fresh_bucket()
    server = start_server(started, tmp_path / "server-data", seaweed.score_env(bucket))
    token = server.token("score.WRITE score.READ song.WRITE")
    auth = {"Authorization": f"Bearer {token}"}
    registry = Registry(server, token)
    client = Client(server, token, tmp_path)

    finished = make_file(tmp_path / "in" / "finished.bam", 6 * MiB + 4321, seed=11)
    blob_only = make_file(tmp_path / "in" / "blob-only.txt", 300_000, seed=12)
    in_progress = make_file(tmp_path / "in" / "in-progress.bin", 12 * MiB, seed=13)
    finished_analysis, ids = registry.submit(STUDY, [finished])
    _, blob_ids = registry.submit(STUDY, [blob_only])
    _, progress_ids = registry.submit(STUDY, [in_progress])
    finished_id, blob_id, progress_id = ids[finished.name], blob_ids[blob_only.name], progress_ids[in_progress.name]

    # 1. a finished object: multipart blob + legacy .meta (part 1 MD5 <missing>, no objectMd5)
    body = finished.read_bytes()
    sizes = [5 * MiB, len(body) - 5 * MiB]
    upload_id = multipart_blob(s3, bucket, f"data/{finished_id}", body, sizes)
    meta = java_meta(finished_id, upload_id, sizes, [None, md5_hex(body[5 * MiB :])])
    s3.put_object(Bucket=bucket, Key=f"data/{finished_id}.meta", Body=meta)

    # 2. a blob without .meta whose MD5 is in rclone's user metadata (base64)
    blob_body = blob_only.read_bytes()
    s3.put_object(Bucket=bucket, Key=f"data/{blob_id}", Body=blob_body, Metadata={"md5chksum": md5_b64(blob_body)})

    # 3. an upload in progress: Java's state .meta and a marker key for part 11 carrying its JSON
    progress_upload = s3.create_multipart_upload(Bucket=bucket, Key=f"data/{progress_id}")["UploadId"]
    state = f"upload/{progress_id}_{progress_upload}/"
    progress_parts = [
        {"partNumber": n, "partSize": MiB, "offset": (n - 1) * MiB, "url": None, "md5": None, "sourceMd5": None}
        for n in range(1, 13)
    ]
    initiate = {
        "objectKey": f"data/{progress_id}",
        "objectId": progress_id,
        "uploadId": progress_upload,
        "parts": progress_parts,
        "objectSize": 12 * MiB,
        "objectMd5": md5_of(in_progress),
    }
    s3.put_object(Bucket=bucket, Key=state + ".meta", Body=json.dumps(initiate).encode())
    part11 = md5_hex(in_progress.read_bytes()[10 * MiB : 11 * MiB])
    marker = (
        state + "part-0000000b|" + json.dumps({"partNumber": 11, "md5": part11, "etag": part11}, separators=(",", ":"))
    )
    s3.put_object(Bucket=bucket, Key=marker, Body=b"")

    # Song's publish-time questions, before publishing (exclude-urls)
    assert httpx.get(f"{server.url}/upload/{finished_id}", headers=auth).json() is True
    assert httpx.get(f"{server.url}/upload/{blob_id}", headers=auth).json() is False  # no .meta: not "existing"
    legacy = spec(server, auth, finished_id, exclude_urls=True)
    assert (legacy["objectSize"], legacy.get("objectMd5"), legacy["uploadId"]) == (len(body), None, upload_id)
    assert [p["sourceMd5"] for p in legacy["parts"]] == ["<missing>", md5_hex(body[5 * MiB :])]
    assert all(p["url"] is None for p in legacy["parts"])
    synthesised = spec(server, auth, blob_id, exclude_urls=True)
    assert (synthesised["objectSize"], synthesised["objectMd5"]) == (len(blob_body), md5_of(blob_only))

    listing = httpx.get(f"{server.url}/listing", headers=auth)
    assert listing.status_code == 200, listing.text
    listed = {item["id"]: item for item in listing.json()}
    assert listed[finished_id]["size"] == len(body)
    assert progress_id not in listed

    # the upload in progress: its state is read, the marker's part counts as done, cancel cleans it all
    status = httpx.get(f"{server.url}/upload/{progress_id}/status", headers=auth, params={"fileSize": 12 * MiB})
    assert status.status_code == 200, status.text
    by_number = {p["partNumber"]: p for p in status.json()["parts"]}
    assert status.json()["uploadId"] == progress_upload
    assert by_number[11]["sourceMd5"] == part11  # done; with a URL all the same, as Java's (issue 15, item 4)
    assert by_number[11]["url"] and f"uploadId={progress_upload}" in by_number[11]["url"]
    assert by_number[1]["url"] and f"uploadId={progress_upload}" in by_number[1]["url"]
    assert httpx.delete(f"{server.url}/upload/{progress_id}", headers=auth).status_code == 200
    assert s3.list_objects_v2(Bucket=bucket, Prefix="upload/").get("KeyCount") == 0
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u for u in uploads if u["Key"] == f"data/{progress_id}"] == []

    # publish the legacy object (it has no MD5 in storage) and download it with the real client
    publish(registry, finished_analysis, ignore_undefined_md5=True)
    signed = spec(server, auth, finished_id, exclude_urls=False)
    assert [p["url"] is not None for p in signed["parts"]] == [True, True]
    download(client, finished_analysis, tmp_path / "out")
    got = tmp_path / "out" / finished.name
    assert got.read_bytes() == body and md5_of(got) == md5_of(finished)


def test_partitioned_buckets_serve_relocated_and_new_objects(
    seaweed: SeaweedS3, started: list[ScoreServer], tmp_path: Path
) -> None:
    s3 = seaweed.client()
    base = seaweed.fresh_bucket()  # the sentinel stays in the base bucket
    pool = 2
    for index in range(pool):
        s3.create_bucket(Bucket=f"{base}.{index}")
    env = {**seaweed.score_env(base), "SCORE_S3__PARTITION_POOL": str(pool), "SCORE_S3__PARTITION_KEY": "1"}
    server = start_server(started, tmp_path / "server-data", env)
    token = server.token("score.WRITE score.READ song.WRITE")
    auth = {"Authorization": f"Bearer {token}"}
    registry = Registry(server, token)
    client = Client(server, token, tmp_path)

    relocated = make_file(tmp_path / "in" / "relocated.bam", 700_000, seed=21)
    fresh = make_file(tmp_path / "in" / "fresh.bam", 5 * MiB + 99, seed=22)  # two parts: 5 MiB and 99 bytes
    analysis_id, ids = registry.submit(STUDY, [relocated, fresh])
    relocated_id, fresh_id = ids[relocated.name], ids[fresh.name]

    # an object uploaded before the store was partitioned: blob and .meta in the base bucket
    data = relocated.read_bytes()
    upload_id = multipart_blob(s3, base, f"data/{relocated_id}", data, [len(data)])
    meta = json.loads(java_meta(relocated_id, upload_id, [len(data)], [md5_hex(data)]))
    meta["objectMd5"] = md5_hex(data)  # Java servers store the MD5 the client declared
    s3.put_object(Bucket=base, Key=f"data/{relocated_id}.meta", Body=json.dumps(meta).encode())

    # a new object uploaded by the real client lands in its partition bucket
    upload_dir = tmp_path / "up"
    upload_dir.mkdir()
    (upload_dir / fresh.name).write_bytes(fresh.read_bytes())
    result = client.run("upload", "--object-id", fresh_id, "--file", str(upload_dir / fresh.name))
    assert result.returncode == 0, result.stderr
    partition = f"{base}.{int(fresh_id[0], 16) % pool}"
    assert s3.head_object(Bucket=partition, Key=f"data/{fresh_id}")["ContentLength"] == fresh.stat().st_size
    assert s3.head_object(Bucket=partition, Key=f"data/{fresh_id}.meta")
    assert "Contents" not in s3.list_objects_v2(Bucket=base, Prefix=f"data/{fresh_id}")

    assert httpx.get(f"{server.url}/upload/{relocated_id}", headers=auth).json() is True
    publish(registry, analysis_id)
    relocated_spec = spec(server, auth, relocated_id, exclude_urls=False)
    assert f"/{base}/data/{relocated_id}?" in relocated_spec["parts"][0]["url"]  # URLs point at the base bucket
    listed = {i["id"]: i["size"] for i in httpx.get(f"{server.url}/listing", headers=auth).json()}
    assert listed == {relocated_id: relocated.stat().st_size, fresh_id: fresh.stat().st_size}

    download(client, analysis_id, tmp_path / "out")
    for source in (relocated, fresh):
        assert md5_of(tmp_path / "out" / source.name) == md5_of(source)
