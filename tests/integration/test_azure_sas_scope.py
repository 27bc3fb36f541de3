"""What a multipart part URL can do on Azure, against a real Azurite, over real HTTP.

A part URL is a write SAS; Azure cannot narrow it to Put Block, so whatever blob it names, its holder can also
Put Blob and Put Block List there until it expires. It names the upload's staging blob
(``upload/{id}_{uploadId}/blocks``), never ``data/{id}``: these tests take a part URL's query string (its SAS)
and aim it at ``data/{id}`` with Put Blob, Put Block and Put Block List, during an upload and after it was
finalized and published, and write the staging blob after finalize, and check nothing of it reaches the object.
"""

from __future__ import annotations

import base64
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from azure.core.exceptions import ResourceNotFoundError

from score.server.storage.azure import AzureStore, block_id, encoded_block_id
from score.server.storage.base import UploadedPart, UploadNotFound
from score.server.storage.layout import data_key, meta_key, staging_key
from tests.conftest import Registry, ScoreServer, make_file, md5_of
from tests.integration.store_backends import azure_store
from tests.services.azurite import ACCOUNT_NAME, Azurite

OBJECT_ID = "5d1c1f0e-8a7b-4c2d-9e3f-0a1b2c3d4e5f"
KEY = data_key(OBJECT_ID)
OCTETS = {"Content-Type": "application/octet-stream"}
FORGED_MD5 = base64.b64encode(hashlib.md5(b"not these bytes").digest()).decode()  # noqa: S324


def md5_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324


def md5_hex(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()  # noqa: S324


# ``azurite``: the session's Azurite (tests/conftest.py).


@pytest.fixture
def store(azurite: Azurite) -> AzureStore:
    return azure_store(azurite)


def sas_of(part_url: str) -> dict[str, str]:
    """The SAS of a part URL: its query less the Put Block parameters the server appended."""
    query = dict(parse_qsl(urlsplit(part_url).query, keep_blank_values=True))
    return {k: v for k, v in query.items() if k not in ("comp", "blockid")}


def aimed_at(part_url: str, key: str, **extra: str) -> str:
    """The part URL's SAS (query string) on another blob's URL, with extra query parameters."""
    parts = urlsplit(part_url)
    container_path = parts.path.split("/")[:3]  # '', account, container (path-style, as on Azurite)
    path = "/".join([*container_path, *key.split("/")])
    return urlunsplit(parts._replace(path=path, query=urlencode({**sas_of(part_url), **extra})))


def put_blob(url: str, body: bytes, content_md5: str | None = None) -> httpx.Response:
    headers = {**OCTETS, "x-ms-blob-type": "BlockBlob"}
    if content_md5:
        headers["x-ms-blob-content-md5"] = content_md5
    return httpx.put(url, content=body, headers=headers)


def put_part(url: str, body: bytes) -> httpx.Response:
    """What a client does with a part URL: Put Block, with the part's Content-MD5."""
    return httpx.put(url, content=body, headers={**OCTETS, "Content-MD5": md5_b64(body)})


def put_block(url: str, block: str, body: bytes) -> httpx.Response:
    return put_part(f"{url}&comp=block&blockid={block}", body)


def put_block_list(url: str, ids: list[str], content_md5: str | None = None) -> httpx.Response:
    body = '<?xml version="1.0" encoding="utf-8"?><BlockList>'
    body += "".join(f"<Latest>{i}</Latest>" for i in ids) + "</BlockList>"
    headers = {"Content-Type": "application/xml"}
    if content_md5:
        headers["x-ms-blob-content-md5"] = content_md5
    return httpx.put(url, content=body.encode(), headers=headers)


def staging_blocks(store: AzureStore, upload_id: str) -> tuple[list[str], list[str]] | None:
    """(committed, uncommitted) block ids of the upload's staging blob; None when the blob is gone entirely."""
    blob = store._blob(staging_key(OBJECT_ID, upload_id))
    try:
        committed, uncommitted = blob.get_block_list("all")
    except ResourceNotFoundError:
        return None
    return [b.id for b in committed], [b.id for b in uncommitted]


def upload_parts(store: AzureStore, parts: list[bytes], parallel: int = 8) -> tuple[str, dict[int, str]]:
    """An upload with every part sent through its part URL (in parallel, as clients do); its id and URLs."""
    upload_id = store.start_upload(KEY, sum(map(len, parts)))
    urls, offset = {}, 0
    for number, body in enumerate(parts, start=1):
        urls[number] = store.sign_upload_part(KEY, upload_id, number, offset, len(body), 600)
        offset += len(body)

    def send(number: int) -> int:
        return put_part(urls[number], parts[number - 1]).status_code

    with ThreadPoolExecutor(parallel) as pool:
        assert set(pool.map(send, reversed(urls))) == {201}
    return upload_id, urls


def complete(store: AzureStore, upload_id: str, parts: list[bytes]) -> None:
    store.complete_upload(KEY, upload_id, [UploadedPart(n, "", len(b)) for n, b in enumerate(parts, start=1)])


def assert_object_refuses(part_url: str, upload_id: str) -> None:
    """Put Blob, Put Block and Put Block List on ``data/{id}`` with the part URL's SAS: all 403."""
    target = aimed_at(part_url, KEY)
    assert put_blob(target, b"replaced", content_md5=md5_b64(b"replaced")).status_code == 403
    assert put_block(target, encoded_block_id(upload_id, 1), b"replaced").status_code == 403
    block_list = aimed_at(part_url, KEY, comp="blocklist")
    assert put_block_list(block_list, [encoded_block_id(upload_id, 1)], content_md5=FORGED_MD5).status_code == 403
    assert put_block_list(block_list, [], content_md5=FORGED_MD5).status_code == 403


def test_a_part_url_names_the_staging_blob_only(store: AzureStore) -> None:
    upload_id = store.start_upload(KEY, 10)
    url = store.sign_upload_part(KEY, upload_id, 1, 0, 10, 600)
    staging = staging_key(OBJECT_ID, upload_id)
    assert staging == f"upload/{OBJECT_ID}_{upload_id}/blocks"
    assert urlsplit(url).path == f"/{ACCOUNT_NAME}/{store._container_name}/{staging}"
    assert sas_of(url)["sr"] == "b" and sas_of(url)["sp"] == "w"
    with pytest.raises(ValueError, match="data key"):
        store.start_upload("upload/elsewhere", 10)
    with pytest.raises(ValueError, match="data key"):
        store.sign_upload_part("data/a/b", upload_id, 1, 0, 10, 600)


def test_a_part_sas_cannot_write_the_object_during_the_upload_or_after_it(store: AzureStore) -> None:
    parts = [os.urandom(1000), os.urandom(1000), os.urandom(77)]
    upload_id, urls = upload_parts(store, parts)
    assert_object_refuses(urls[1], upload_id)  # in progress
    assert store.head(KEY) is None  # nothing was created by the refused requests
    complete(store, upload_id, parts)
    store.write_document(meta_key(OBJECT_ID), b"{}")  # published
    for url in urls.values():
        assert_object_refuses(url, upload_id)
    assert store.read_document(KEY) == b"".join(parts)
    head = store.head(KEY)
    assert head is not None and head.size == sum(map(len, parts)) and head.md5 is None


def test_writing_the_staging_blob_after_finalize_does_not_reach_the_object(store: AzureStore) -> None:
    parts = [os.urandom(4096), os.urandom(4096)]
    upload_id, urls = upload_parts(store, parts)
    complete(store, upload_id, parts)
    assert staging_blocks(store, upload_id) is None  # the staging blob is removed at completion
    before = store.head(KEY)
    assert before is not None

    # The stale part URL still opens the staging blob: blocks, a block list with a forged MD5, a Put Blob.
    forged = [os.urandom(4096), os.urandom(4096)]
    for number, body in enumerate(forged, start=1):
        assert put_part(urls[number], body).status_code == 201
    # A completion repeated now (a finalize retried after its completion died) assembles none of them: the
    # object is a finished copy of this upload's staging blob.
    with pytest.raises(UploadNotFound):
        complete(store, upload_id, forged)
    assert store.read_document(KEY) == b"".join(parts)
    assert staging_blocks(store, upload_id) is None  # and the blocks staged since are discarded
    for number, body in enumerate(forged, start=1):
        assert put_part(urls[number], body).status_code == 201
    staging_url = aimed_at(urls[1], staging_key(OBJECT_ID, upload_id), comp="blocklist")
    ids = [encoded_block_id(upload_id, n) for n in (1, 2)]
    assert put_block_list(staging_url, ids, content_md5=md5_b64(b"".join(forged))).status_code == 201
    junk = aimed_at(urls[1], staging_key(OBJECT_ID, upload_id))
    assert put_blob(junk, b"x" * 8192, md5_b64(b"x" * 8192)).status_code == 201

    after = store.head(KEY)
    assert after is not None and (after.size, after.md5, after.last_modified_ms) == (
        before.size,
        before.md5,
        before.last_modified_ms,
    )
    assert store.read_document(KEY) == b"".join(parts)
    with pytest.raises(UploadNotFound):  # the upload is over: the staging blob's new content is no upload's
        complete(store, upload_id, parts)
    assert store.read_document(KEY) == b"".join(parts)


def test_a_block_list_committed_through_a_part_url_before_finalize_sets_nothing_on_the_object(
    store: AzureStore,
) -> None:
    """Before finalize a client may commit its own block list on the staging blob, with a forged Content-MD5:
    the completion commits the upload's list again with its own settings, so the object carries no such MD5."""
    parts = [os.urandom(3000), os.urandom(2000)]
    upload_id, urls = upload_parts(store, parts)
    staging_url = aimed_at(urls[1], staging_key(OBJECT_ID, upload_id), comp="blocklist")
    ids = [encoded_block_id(upload_id, n) for n in (1, 2)]
    assert put_block_list(staging_url, ids, content_md5=FORGED_MD5).status_code == 201
    assert store.list_uploaded_parts(KEY, upload_id) == [UploadedPart(1, "", 3000), UploadedPart(2, "", 2000)]
    complete(store, upload_id, parts)
    head = store.head(KEY)
    assert head is not None and head.md5 is None and head.size == 5000
    assert store.read_document(KEY) == b"".join(parts)


def test_a_64_part_round_trip_gives_the_exact_bytes_and_leaves_no_staging_blob(store: AzureStore) -> None:
    parts = [os.urandom(16 * 1024 + n) for n in range(64)]
    upload_id, _ = upload_parts(store, parts)
    assert store.list_uploaded_parts(KEY, upload_id) == [
        UploadedPart(n, "", len(b)) for n, b in enumerate(parts, start=1)
    ]
    committed, uncommitted = staging_blocks(store, upload_id) or ([], [])
    assert committed == [] and sorted(uncommitted) == [block_id(upload_id, n) for n in range(1, 65)]
    assert store.head(KEY) is None and list(store.list("")) == []  # staged blocks are no blob yet
    complete(store, upload_id, parts)
    assert store.read_document(KEY) == b"".join(parts)
    assert md5_hex(store.read_document(KEY) or b"") == md5_hex(b"".join(parts))
    assert staging_blocks(store, upload_id) is None
    assert [h.key for h in store.list("")] == [KEY]  # no staging blob, no snapshot left in the listing
    assert store.list_uploaded_parts(KEY, upload_id) == []


def test_a_completion_that_died_after_committing_the_staging_blob_can_be_repeated(store: AzureStore) -> None:
    parts = [os.urandom(500), os.urandom(300)]
    upload_id, _ = upload_parts(store, parts)
    store._staging(KEY, upload_id).commit_block_list([block_id(upload_id, 1), block_id(upload_id, 2)])
    assert store.list_uploaded_parts(KEY, upload_id) == [UploadedPart(1, "", 500), UploadedPart(2, "", 300)]
    complete(store, upload_id, parts)
    assert store.read_document(KEY) == b"".join(parts)
    assert staging_blocks(store, upload_id) is None


def test_overlapping_completions_of_one_upload_give_the_object_once(store: AzureStore) -> None:
    """Two replicas finalizing one upload at once: each completion either assembles the object or finds it
    assembled (UploadNotFound, after which the service checks the object's size); never other bytes."""
    parts = [os.urandom(2048) for _ in range(8)]
    upload_id, _ = upload_parts(store, parts)

    def attempt(_: int) -> str:
        try:
            complete(store, upload_id, parts)
        except UploadNotFound:
            return "found done"
        return "completed"

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(attempt, range(4)))
    assert "completed" in outcomes, outcomes
    assert store.read_document(KEY) == b"".join(parts)
    assert staging_blocks(store, upload_id) is None


def test_completing_an_upload_replaces_an_object_and_other_uploads_stay_apart(store: AzureStore) -> None:
    old = [b"old object"]
    first_id, _ = upload_parts(store, old)
    complete(store, first_id, old)
    new = [b"abc", b"def"]
    second_id, _ = upload_parts(store, new)
    other = [b"12345"]
    other_id, _ = upload_parts(store, other)
    complete(store, second_id, new)
    assert store.read_document(KEY) == b"abcdef"
    assert store.list_uploaded_parts(KEY, other_id) == [UploadedPart(1, "", 5)]  # a staging blob of its own
    store.abort_upload(KEY, other_id)
    assert store.read_document(KEY) == b"abcdef"


def test_abort_removes_the_staging_blob(store: AzureStore) -> None:
    parts = [os.urandom(700), os.urandom(700)]
    upload_id, urls = upload_parts(store, parts)
    assert staging_blocks(store, upload_id) is not None
    store.abort_upload(KEY, upload_id)
    assert staging_blocks(store, upload_id) is None
    assert store.list_uploaded_parts(KEY, upload_id) == []
    assert list(store.list("")) == []
    store.abort_upload(KEY, upload_id)  # again: nothing to do
    with pytest.raises(UploadNotFound):
        complete(store, upload_id, parts)

    # A staging blob that a part URL committed (Put Blob) goes too, and an object in place is never touched.
    published = [b"published"]
    done_id, _ = upload_parts(store, published)
    complete(store, done_id, published)
    replacing, urls = upload_parts(store, [b"new"])
    assert put_blob(aimed_at(urls[1], staging_key(OBJECT_ID, replacing)), b"junk").status_code == 201
    assert [h.key for h in store.list("upload/")] == [staging_key(OBJECT_ID, replacing)]
    store.abort_upload(KEY, replacing)
    assert staging_blocks(store, replacing) is None and list(store.list("upload/")) == []
    assert store.read_document(KEY) == b"published"


# -- through a real score-server: initiate, parts, finalize, publish ---------------------------------


def test_after_publish_a_part_url_cannot_replace_the_served_bytes(azurite: Azurite, tmp_path: Path) -> None:
    container = azurite.fresh_container()
    server = ScoreServer(tmp_path / "d", part_size=65536, extra_env=azurite.score_env(container)).start()
    try:
        token = server.token("score.WRITE score.READ song.WRITE")
        registry = Registry(server, token)
        source = make_file(tmp_path / "in" / "f.bam", 3 * 65536 + 99, seed=7)
        analysis_id, ids = registry.submit("AZSAS", [source])
        oid, data = ids["f.bam"], source.read_bytes()
        api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        item = {"objectId": oid, "fileSize": len(data)}
        answer = api.post("/batch/upload/initiate", json={"uploads": [item]}).json()
        assert not answer["errors"], answer
        [spec] = answer["specs"]
        upload_id = spec["uploadId"]
        finished = []
        for part in spec["parts"]:
            body = data[part["offset"] : part["offset"] + part["partSize"]]
            assert "/upload/" in urlsplit(part["url"]).path and f"/data/{oid}" not in urlsplit(part["url"]).path
            sent = put_part(part["url"], body)
            assert sent.status_code == 201, sent.text
            finished.append({"partNumber": part["partNumber"], "md5": md5_hex(body), "etag": ""})
        url = spec["parts"][0]["url"]
        target = aimed_at(url, data_key(oid))
        assert put_blob(target, b"evil", md5_b64(b"evil")).status_code == 403  # in progress
        final = {"objectId": oid, "uploadId": upload_id, "md5": md5_of(source), "parts": finished}
        done = api.post("/batch/upload/finalize", json={"uploads": [final]}).json()
        assert done["finalized"] == [oid], done
        assert registry.publish("AZSAS", analysis_id).status_code == 200

        assert put_blob(target, b"evil", md5_b64(b"evil")).status_code == 403
        assert put_block_list(aimed_at(url, data_key(oid), comp="blocklist"), [], FORGED_MD5).status_code == 403
        staging = aimed_at(url, staging_key(oid, upload_id))
        assert put_blob(staging, b"e" * len(data), md5_b64(b"e" * len(data))).status_code == 201  # its own blob

        meta = api.get(f"/download/{oid}", params={"offset": 0, "length": -1}).json()
        assert (meta["objectSize"], meta["objectMd5"]) == (len(data), md5_of(source))
        served = httpx.get(meta["parts"][0]["url"])  # the signed read a `url` + curl download uses
        assert served.status_code == 200 and served.content == data
        assert md5_hex(served.content) == md5_of(source)
    finally:
        server.stop()
