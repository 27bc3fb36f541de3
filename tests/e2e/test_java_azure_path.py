"""The Java client's Azure path and Java-written Azure containers, on a real Azurite and score-server.

Issue 15, items 1 and 2. The Java client, when ``GET /profile`` answers ``az``, calls
``POST /upload/{id}/uploads?fileSize=&overwrite=&md5=`` once per file, takes ``parts[0].url`` as a blob
URL and uploads the whole file with the Azure SDK (``score-client .../upload/azure/AzureUploadService.java``:
``new CloudBlockBlob(sasUrl)``, ``uploadFromFile``): Put Blob for small files, else Put Block xN and Put
Block List, with the blob's Content-MD5 set by the SDK. It never calls ``/parts``, finalize or status.
These tests replay that with the Python Azure SDK from the SAS URL alone, then ask what Song and the
clients ask: ``GET /upload/{id}``, ``GET /download/{id}?offset=0&length=-1&exclude-urls=true``, the
listing, and a download with our client.

The Java server keeps Azure blobs at ``{objectId}`` in the container root, without ``.meta``
(``score-server .../azure/AzureUploadService.java``, ``AzureDownloadService.java``); such blobs are
written here directly with the Azure SDK and must be served as they are.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobBlock, BlobClient, ContainerClient, ContentSettings

from tests.conftest import BIN, Client, Registry, ScoreServer, make_file, md5_of
from tests.genomics_data import make_bam_and_cram
from tests.services.azurite import Azurite

KiB = 1024
MiB = 1024 * KiB
PART = 64 * KiB  # the server's part size: download specifications are cut in parts of this size
STUDY = "JAVAAZ"


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324


@dataclass
class Deployment:
    """A score-server on a fresh Azurite container, a token with every scope, and the Java client's helpers."""

    server: ScoreServer
    container: ContainerClient
    registry: Registry
    client: Client
    auth: dict[str, str]
    tmp: Path

    def register(self, path: Path, md5: str | None = None) -> tuple[str, str]:
        """A one-file analysis (so each can be published alone): (analysis id, object id)."""
        md5s = {path.name: md5} if md5 else None
        analysis_id, ids = self.registry.submit(STUDY, [path], md5s=md5s)
        return analysis_id, ids[path.name]

    def java_initiate(self, object_id: str, size: int, md5: str | None, overwrite: bool = False) -> httpx.Response:
        """``StorageService.initiateUpload``: the one call the Java client's Azure uploader makes."""
        params: dict[str, Any] = {"fileSize": size, "overwrite": str(overwrite).lower()}
        if md5:
            params["md5"] = md5
        return httpx.post(f"{self.server.url}/upload/{object_id}/uploads", params=params, headers=self.auth)

    def exists(self, object_id: str) -> httpx.Response:
        return httpx.get(f"{self.server.url}/upload/{object_id}", headers=self.auth)

    def song_check(self, object_id: str) -> httpx.Response:
        """What Song asks at publish (``StorageService`` in Song): sizes and MD5 only."""
        params = {"offset": 0, "length": -1, "exclude-urls": "true"}
        return httpx.get(f"{self.server.url}/download/{object_id}", params=params, headers=self.auth)

    def listing(self) -> dict[str, int]:
        response = httpx.get(f"{self.server.url}/listing", headers=self.auth)
        assert response.status_code == 200, response.text
        ids = [item["id"] for item in response.json()]
        assert len(ids) == len(set(ids)), ids  # no object twice
        return {item["id"]: item["size"] for item in response.json()}

    def publish(self, analysis_id: str, ignore_undefined_md5: bool = False) -> None:
        params = {"ignoreUndefinedMd5": "true"} if ignore_undefined_md5 else {}
        response = self.registry.http.put(f"/studies/{STUDY}/analysis/publish/{analysis_id}", params=params)
        assert response.status_code == 200, response.text

    def download(self, object_id: str, expected: bytes) -> None:
        """Our client downloads the object (the published analysis): identical bytes."""
        out = self.tmp / f"out-{object_id}"
        result = self.client.run("download", "--object-id", object_id, "--output-dir", str(out))
        assert result.returncode == 0, result.stderr
        [got] = [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")]
        assert md5_hex(got.read_bytes()) == md5_hex(expected)

    def server_log(self) -> str:
        return self.server.log_path.read_text(errors="replace")


def sdk_upload(url: str, data: bytes, content_md5: bool, blocks: bool, claimed_md5: str | None = None) -> BlobClient:
    """The Java client's ``CloudBlockBlob(sasUrl).uploadFromFile``: the whole file through the SAS URL, with
    the blob's Content-MD5 (``x-ms-blob-content-md5``, base64 of the file's MD5, or of ``claimed_md5``: a
    forgery Azure does not check on Put Block List) when ``content_md5``.
    ``blocks``: Put Block of 1 MiB each and Put Block List (the SDK's ids), else one Put Blob."""
    blob = BlobClient.from_blob_url(url, max_single_put_size=(MiB if blocks else 64 * MiB), max_block_size=MiB)
    digest = bytes.fromhex(claimed_md5) if claimed_md5 else hashlib.md5(data).digest()  # noqa: S324
    settings = ContentSettings(content_md5=bytearray(digest)) if content_md5 else None
    blob.upload_blob(data, overwrite=True, content_settings=settings, max_concurrency=2)
    return blob


def one_blob_part(spec: dict[str, Any], size: int) -> str:
    """The Java server's answer on Azure: ONE part covering the file; its URL is what the client uses."""
    assert spec["uploadId"].startswith("blob-"), spec
    assert spec["objectSize"] == size
    [part] = spec["parts"]
    assert (part["partNumber"], part["offset"], part["partSize"]) == (1, 0, size)
    assert part["url"] and "sig=" in part["url"]
    return str(part["url"])


def with_path(url: str, blob_name: str) -> str:
    """The same SAS query on another blob of the container."""
    parts = urlsplit(url)
    container_path = parts.path.rsplit("/data/", 1)[0]
    return urlunsplit(parts._replace(path=f"{container_path}/{blob_name}"))


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    service = Azurite(tmp_path_factory.mktemp("azurite")).start()
    yield service
    service.stop()


def deploy(azurite: Azurite, tmp: Path, **env: str) -> Deployment:
    name = azurite.fresh_container()
    server = ScoreServer(tmp / "server-data", part_size=PART, extra_env={**azurite.score_env(name), **env}).start()
    token = server.token("score.WRITE score.READ song.WRITE")
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    return Deployment(
        server=server,
        container=azurite.client().get_container_client(name),
        registry=Registry(server, token),
        client=Client(server, token, work),
        auth={"Authorization": f"Bearer {token}"},
        tmp=tmp,
    )


@pytest.fixture(scope="module")
def azure(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = deploy(azurite, tmp_path_factory.mktemp("java-azure"))
    yield deployment
    deployment.server.stop()


# -- item 1: the Java client's Azure upload ------------------------------------------------------------


CASES = {
    # name: (size, blocks, content_md5, what asks first)
    "small-put-blob": (100 * KiB + 3, False, True, "exists"),
    "blocks-with-md5": (3 * MiB + 5 * KiB, True, True, "song"),
    "blocks-without-md5": (3 * MiB + 7, True, False, "listing"),
    "empty": (0, False, True, "exists"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_java_client_uploads_a_whole_blob_and_it_becomes_visible(azure: Deployment, case: str) -> None:
    size, blocks, content_md5, first = CASES[case]
    source = make_file(azure.tmp / "in" / f"{case}.bin", size, seed=len(case))
    data = source.read_bytes()
    analysis_id, oid = azure.register(source)

    started = azure.java_initiate(oid, size, md5_of(source))
    assert started.status_code == 200, started.text
    url = one_blob_part(started.json(), size)
    state = [b.name for b in azure.container.list_blobs(name_starts_with=f"upload/{oid}_")]
    assert state == [f"upload/{oid}_{started.json()['uploadId']}/.meta"]  # recorded like any upload
    assert azure.exists(oid).json() is False  # nothing written yet

    blob = sdk_upload(url, data, content_md5=content_md5, blocks=blocks)
    committed, _ = azure.container.get_blob_client(f"data/{oid}").get_block_list("committed")
    assert len(committed) == (4 if blocks else 0)  # Put Block x4 + Put Block List, or one Put Blob
    stored_md5 = azure.container.get_blob_client(f"data/{oid}").get_blob_properties().content_settings.content_md5
    if blocks:  # (Put Blob: the service keeps the MD5 it computed itself)
        assert (stored_md5 is not None) == content_md5
    assert blob.url.split("?")[0].endswith(f"/data/{oid}")

    # whichever question comes first verifies the blob and makes the object visible
    if first == "exists":
        assert azure.exists(oid).json() is True
    elif first == "song":
        assert azure.song_check(oid).status_code == 200
    else:
        assert azure.listing()[oid] == size
    assert azure.exists(oid).json() is True
    song = azure.song_check(oid).json()
    assert (song["objectSize"], song["objectMd5"]) == (size, md5_of(source))
    assert [p["partSize"] for p in song["parts"]] == [PART] * (size // PART) + ([size % PART] if size % PART else [])
    names = {b.name for b in azure.container.list_blobs(name_starts_with="")}
    assert f"data/{oid}.meta" in names and not [n for n in names if n.startswith(f"upload/{oid}_")]

    azure.publish(analysis_id)  # the registry's publish check (stored_object) agrees
    azure.download(oid, data)


def test_a_blob_committed_with_a_forged_content_md5_never_becomes_visible(azure: Deployment) -> None:
    """Other bytes, committed as blocks with the registered file's MD5 as the blob's Content-MD5 (Azure takes
    x-ms-blob-content-md5 on Put Block List as given): the server hashes the bytes, so the claim fails."""
    source = make_file(azure.tmp / "in" / "forged.bin", 3 * MiB + 5, seed=33)
    _, oid = azure.register(source)
    other = bytes(b ^ 0x5A for b in source.read_bytes())
    url = one_blob_part(azure.java_initiate(oid, len(other), md5_of(source)).json(), len(other))
    sdk_upload(url, other, content_md5=True, blocks=True, claimed_md5=md5_of(source))
    stored = azure.container.get_blob_client(f"data/{oid}").get_blob_properties().content_settings.content_md5
    assert bytes(stored).hex() == md5_of(source)  # the forgery is in place

    assert azure.exists(oid).json() is False
    refused = azure.song_check(oid)
    assert refused.status_code == 404, refused.text
    assert md5_hex(other) in refused.json()["message"]
    assert oid not in azure.listing()


def test_a_blob_with_other_bytes_never_becomes_visible_and_says_why(azure: Deployment) -> None:
    source = make_file(azure.tmp / "in" / "wrong.bin", 200 * KiB, seed=31)
    _, oid = azure.register(source)
    other = bytes(b ^ 0x33 for b in source.read_bytes())  # same size, other bytes, their own Content-MD5
    url = one_blob_part(azure.java_initiate(oid, len(other), md5_of(source)).json(), len(other))
    sdk_upload(url, other, content_md5=True, blocks=False)

    assert azure.exists(oid).json() is False
    refused = azure.song_check(oid)
    assert refused.status_code == 404, refused.text
    message = refused.json()["message"]
    assert "MD5" in message and md5_hex(other) in message and md5_of(source) in message and "again" in message
    assert oid not in azure.listing()
    assert "is not made visible" in azure.server_log() and md5_hex(other) in azure.server_log()
    status = httpx.get(f"{azure.server.url}/upload/{oid}/status", params={"fileSize": len(other)}, headers=azure.auth)
    assert status.status_code == 200, status.text
    [part] = status.json()["parts"]
    assert part["md5"] is None and part["url"]  # truthful: not done; a URL to write the blob again

    # the Java client is simply run again: a new initiate, the right bytes, and the object is there
    again = azure.java_initiate(oid, len(other), md5_of(source))
    assert again.status_code == 200, again.text
    sdk_upload(one_blob_part(again.json(), len(other)), source.read_bytes(), content_md5=True, blocks=False)
    assert azure.exists(oid).json() is True


def test_the_blob_sas_writes_only_its_own_blob(azure: Deployment) -> None:
    source = make_file(azure.tmp / "in" / "scoped.bin", 10 * KiB, seed=32)
    _, oid = azure.register(source)
    _, other_oid = azure.register(make_file(azure.tmp / "in" / "other.bin", 10 * KiB, seed=33))
    url = one_blob_part(azure.java_initiate(oid, 10 * KiB, md5_of(source)).json(), 10 * KiB)
    sdk_upload(url, source.read_bytes(), content_md5=True, blocks=False)

    assert httpx.get(url).status_code == 403  # no read
    assert httpx.delete(url).status_code == 403  # no delete
    elsewhere = with_path(url, f"data/{other_oid}")
    headers = {"x-ms-blob-type": "BlockBlob", "Content-Type": "application/octet-stream"}
    assert httpx.put(elsewhere, content=b"x", headers=headers).status_code == 403  # no other blob
    assert httpx.put(with_path(url, f"data/{oid}.meta"), content=b"{}", headers=headers).status_code == 403
    listing = urlunsplit(urlsplit(url)._replace(path=urlsplit(url).path.rsplit("/data/", 1)[0]))
    assert httpx.get(listing + "&restype=container&comp=list").status_code == 403  # no list
    assert azure.exists(oid).json() is True


def test_a_client_that_records_parts_and_finalizes_is_answered_too(azure: Deployment) -> None:
    source = make_file(azure.tmp / "in" / "finalized.bin", 50 * KiB, seed=34)
    data = source.read_bytes()
    _, oid = azure.register(source)
    spec = azure.java_initiate(oid, len(data), md5_of(source)).json()
    upload_id = spec["uploadId"]
    base = f"{azure.server.url}/upload/{oid}"
    status = httpx.get(f"{base}/status", params={"fileSize": len(data)}, headers=azure.auth).json()
    assert [(p["partNumber"], p["md5"]) for p in status["parts"]] == [(1, None)]
    assert httpx.post(f"{base}/recovery", params={"fileSize": len(data)}, headers=azure.auth).status_code == 200
    early = httpx.post(base, params={"uploadId": upload_id, "md5": md5_of(source)}, headers=azure.auth)
    assert early.status_code == 400 and "not written yet" in early.json()["message"]

    sdk_upload(one_blob_part(spec, len(data)), data, content_md5=True, blocks=False)
    record = {"uploadId": upload_id, "partNumber": 1, "md5": md5_of(source), "etag": "0x8DC"}
    assert httpx.post(f"{base}/parts", params=record, headers=azure.auth).status_code == 200  # a no-op, as Java's
    for _ in range(2):  # idempotent
        done = httpx.post(base, params={"uploadId": upload_id, "md5": md5_of(source)}, headers=azure.auth)
        assert done.status_code == 200, done.text
    assert azure.exists(oid).json() is True
    assert httpx.get(f"{base}/status", params={"fileSize": len(data)}, headers=azure.auth).status_code == 404


def test_overwrite_withdraws_the_old_object_until_the_new_blob_checks_out(azure: Deployment) -> None:
    source = make_file(azure.tmp / "in" / "overwritten.bin", 30 * KiB, seed=35)
    data = source.read_bytes()
    _, oid = azure.register(source)
    sdk_upload(one_blob_part(azure.java_initiate(oid, len(data), md5_of(source)).json(), len(data)), data, True, False)
    assert azure.exists(oid).json() is True

    refused = azure.java_initiate(oid, len(data), md5_of(source))
    assert refused.status_code == 409 and "already exists" in refused.json()["message"]
    forced = azure.java_initiate(oid, len(data), md5_of(source), overwrite=True)
    assert forced.status_code == 200, forced.text
    assert azure.exists(oid).json() is False and azure.song_check(oid).status_code == 404
    sdk_upload(one_blob_part(forced.json(), len(data)), data, content_md5=False, blocks=True)  # hashed
    assert azure.exists(oid).json() is True
    assert azure.song_check(oid).json()["objectMd5"] == md5_of(source)


def test_the_cleanup_sweep_makes_a_finished_blob_visible_and_cancel_discards_one(azure: Deployment) -> None:
    source = make_file(azure.tmp / "in" / "swept.bin", 20 * KiB, seed=36)
    _, oid = azure.register(source)
    url = one_blob_part(azure.java_initiate(oid, 20 * KiB, md5_of(source)).json(), 20 * KiB)
    sdk_upload(url, source.read_bytes(), content_md5=True, blocks=False)
    swept = subprocess.run(
        [str(BIN / "score-server"), "cleanup", "--older-than", "1h", "--data-dir", str(azure.server.data_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, **azure.server.extra_env},
    )
    assert swept.returncode == 0, swept.stderr
    assert azure.container.get_blob_client(f"data/{oid}.meta").exists()

    cancelled = make_file(azure.tmp / "in" / "cancelled.bin", 20 * KiB, seed=37)
    _, cancelled_oid = azure.register(cancelled)
    spec = azure.java_initiate(cancelled_oid, 20 * KiB, md5_of(cancelled)).json()
    sdk_upload(one_blob_part(spec, 20 * KiB), bytes(20 * KiB), True, False)  # wrong bytes
    assert httpx.delete(f"{azure.server.url}/upload/{cancelled_oid}", headers=azure.auth).status_code == 200
    assert not azure.container.get_blob_client(f"data/{cancelled_oid}").exists()
    assert not list(azure.container.list_blobs(name_starts_with=f"upload/{cancelled_oid}_"))


def test_our_client_keeps_the_parallel_block_path(azure: Deployment) -> None:
    source = make_file(azure.tmp / "in" / "ours.bin", 3 * PART, seed=38)
    _, oid = azure.register(source)
    upload_dir = azure.tmp / "ours"
    upload_dir.mkdir()
    (upload_dir / source.name).write_bytes(source.read_bytes())
    result = azure.client.run("upload", "--object-id", oid, "--file", str(upload_dir / source.name))
    assert result.returncode == 0, result.stderr
    committed, _ = azure.container.get_blob_client(f"data/{oid}").get_block_list("committed")
    assert [b.id.rsplit("-", 1)[-1] for b in committed] == ["000001", "000002", "000003"]  # Score's block ids
    spec = httpx.post(
        f"{azure.server.url}/batch/upload/initiate",
        json={"uploads": [{"objectId": oid, "fileSize": 3 * PART, "overwrite": True}]},
        headers=azure.auth,
    ).json()["specs"][0]
    assert len(spec["parts"]) == 3 and "comp=block" in spec["parts"][0]["url"]  # the batch API: parallel blocks
    assert not spec["uploadId"].startswith("blob-")


def test_the_blob_sas_expires(azurite: Azurite, tmp_path: Path) -> None:
    azure = deploy(azurite, tmp_path, SCORE_UPLOAD_URL_TTL="2")
    try:
        source = make_file(tmp_path / "in" / "late.bin", KiB, seed=39)
        _, oid = azure.register(source)
        url = one_blob_part(azure.java_initiate(oid, KiB, md5_of(source)).json(), KiB)
        time.sleep(4)
        with pytest.raises(HttpResponseError) as refused:
            sdk_upload(url, source.read_bytes(), content_md5=True, blocks=False)
        assert refused.value.status_code == 403
        assert azure.exists(oid).json() is False
    finally:
        azure.server.stop()


# -- item 2: containers written by the Java server ---------------------------------------------------


def test_blobs_the_java_server_left_in_the_container_root_are_served_as_they_are(azure: Deployment) -> None:
    with_md5 = make_file(azure.tmp / "in" / "java-md5.bam", 5 * PART + 99, seed=41)
    no_md5 = make_file(azure.tmp / "in" / "java-nomd5.bin", 2 * PART + 1, seed=42)
    shadowed = make_file(azure.tmp / "in" / "java-shadowed.bin", 3 * KiB, seed=43)
    analysis_md5, md5_oid = azure.register(with_md5)
    analysis_plain, plain_oid = azure.register(no_md5)
    _, shadowed_oid = azure.register(shadowed)

    # as the Java client's SDK left them: Put Blob (the service keeps its MD5); blocks without an MD5
    azure.container.upload_blob(md5_oid, with_md5.read_bytes())
    root = azure.container.get_blob_client(plain_oid)
    data = no_md5.read_bytes()
    chunks = [data[i : i + PART] for i in range(0, len(data), PART)]
    for n, chunk in enumerate(chunks):
        root.stage_block(f"{n:04d}", chunk)
    root.commit_block_list([BlobBlock(f"{n:04d}") for n in range(len(chunks))])
    assert root.get_blob_properties().content_settings.content_md5 is None
    # an object both at the root (old) and in our layout (uploaded since by our client): ours wins
    azure.container.upload_blob(shadowed_oid, b"old bytes")
    (azure.tmp / "shadow").mkdir()
    (azure.tmp / "shadow" / shadowed.name).write_bytes(shadowed.read_bytes())
    ours = azure.client.run(
        "upload", "--object-id", shadowed_oid, "--file", str(azure.tmp / "shadow" / shadowed.name), "--force"
    )  # --force: the root blob exists, as on the Java server
    assert ours.returncode == 0, ours.stderr

    for oid in (md5_oid, plain_oid, shadowed_oid):
        assert azure.exists(oid).json() is True  # as the Java server: the blob exists
    song = azure.song_check(md5_oid).json()
    assert (song["objectSize"], song["objectMd5"]) == (with_md5.stat().st_size, md5_of(with_md5))
    assert [p["partSize"] for p in song["parts"]] == [PART] * 5 + [99]  # the server's part size
    plain = azure.song_check(plain_oid).json()
    assert (plain["objectSize"], plain["objectMd5"]) == (len(data), None)
    assert azure.song_check(shadowed_oid).json()["objectSize"] == shadowed.stat().st_size

    listed = azure.listing()
    assert listed[md5_oid] == with_md5.stat().st_size and listed[plain_oid] == len(data)
    assert listed[shadowed_oid] == shadowed.stat().st_size

    azure.publish(analysis_md5)
    spec = httpx.get(f"{azure.server.url}/download/{md5_oid}", params={"offset": 0, "length": -1}, headers=azure.auth)
    assert spec.status_code == 200, spec.text
    assert all(urlsplit(p["url"]).path.endswith(f"/{md5_oid}") for p in spec.json()["parts"])
    assert all(f"/data/{md5_oid}" not in p["url"] for p in spec.json()["parts"])
    azure.download(md5_oid, with_md5.read_bytes())
    azure.publish(analysis_plain, ignore_undefined_md5=True)  # Song's own way with objects lacking an MD5
    azure.download(plain_oid, data)


def test_htsget_serves_regions_of_a_bam_the_java_server_left_in_the_container_root(azure: Deployment) -> None:
    bam, _ = make_bam_and_cram(azure.tmp / "java-bam")
    bai = bam.with_name(bam.name + ".bai")
    analysis_id, ids = azure.registry.submit(STUDY, [bam, bai])
    for path in (bam, bai):  # at the root, as the Java server's container holds them
        azure.container.upload_blob(ids[path.name], path.read_bytes())
    azure.publish(analysis_id)

    region = {"referenceName": "CHROMOSOME_I", "start": 1000, "end": 200000}
    ticket = httpx.get(f"{azure.server.url}/htsget/reads/{ids[bam.name]}", params=region, headers=azure.auth)
    assert ticket.status_code == 200, ticket.text
    sliced = azure.tmp / "java-bam" / "slice.bam"
    with sliced.open("wb") as out:
        for block in ticket.json()["htsget"]["urls"]:
            if block["url"].startswith("data:"):
                out.write(base64.b64decode(block["url"].split(",", 1)[1]))
                continue
            assert urlsplit(block["url"]).path.endswith(f"/{ids[bam.name]}"), "read from the root blob"
            got = httpx.get(block["url"], headers=block.get("headers", {}))
            assert got.status_code in (200, 206), got.text
            out.write(got.content)

    def count(*args: str) -> int:
        return int(subprocess.run(["samtools", "view", "-c", *args], check=True, capture_output=True, text=True).stdout)

    expected = count(str(bam), "CHROMOSOME_I:1001-200000")
    assert expected > 0
    # the slice holds whole BGZF blocks around the region: the same reads once filtered to it
    subprocess.run(["samtools", "index", str(sliced)], check=True)
    assert count(str(sliced), "CHROMOSOME_I:1001-200000") == expected
