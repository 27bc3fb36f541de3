"""AzureStore against a real Azurite: block uploads through SAS URLs, SAS enforcement, documents, readiness,
and a real score-server + score-client round trip on Azure Blob.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from azure.storage.blob import BlobServiceClient, ContentSettings
from pydantic import SecretStr

from score.server.settings import AzureConfig
from score.server.storage.azure import AzureStore, encoded_block_id
from score.server.storage.base import (
    ObjectStore,
    StoreError,
    StoreMisconfigured,
    StoreUnavailable,
    UploadedPart,
    UploadNotFound,
)
from tests.conftest import Client, Registry, ScoreServer, make_file, md5_of
from tests.services.azurite import ACCOUNT_KEY, ACCOUNT_NAME, SENTINEL_KEY, Azurite, part_number
from tests.services.process import free_port
from tests.services.proxy import ProxyEvent, StoreProxy

KiB = 1024
OBJECT_KEY = "data/0b7a7d3e-5c39-4b8f-9d4e-2f1a6c3b9e01"
MARKER_KEY = (
    "upload/0b7a7d3e-5c39-4b8f-9d4e-2f1a6c3b9e01_" + "ab" * 16 + '/part-0000000b|{"partNumber":11,'
    '"md5":"9e107d9d372bb6826bd81d3542a419d6","etag":"9e107d9d 372b+b682=6bd81d3542a419d6"}'
)
OCTETS = {"Content-Type": "application/octet-stream"}


def md5_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324


def md5_hex(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()  # noqa: S324


def put_part(url: str, body: bytes, md5: str | None = None) -> httpx.Response:
    headers = {**OCTETS, "Content-MD5": md5 if md5 is not None else md5_b64(body)}
    return httpx.put(url, content=body, headers=headers)


def config(azurite: Azurite, container: str, **changes: object) -> AzureConfig:
    values: dict[str, object] = {
        "account_name": ACCOUNT_NAME,
        "account_key": SecretStr(ACCOUNT_KEY),
        "endpoint": azurite.endpoint,
        "container": container,
    }
    return AzureConfig(**{**values, **changes})  # type: ignore[arg-type]


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


# ``azurite``: the session's Azurite (tests/conftest.py), shared with the store contract suite.


@pytest.fixture
def store(azurite: Azurite) -> AzureStore:
    return AzureStore(config(azurite, azurite.fresh_container(sentinel=False)))


def upload(store: AzureStore, key: str, parts: list[bytes]) -> str:
    """A complete multipart upload through the SAS URLs, as a client does it."""
    upload_id = store.start_upload(key, sum(map(len, parts)))
    offset = 0
    for number, body in enumerate(parts, start=1):
        url = store.sign_upload_part(key, upload_id, number, offset, len(body), 600)
        assert put_part(url, body).status_code == 201
        offset += len(body)
    store.complete_upload(key, upload_id, [UploadedPart(n, "", len(b)) for n, b in enumerate(parts, start=1)])
    return upload_id


# -- multipart upload ------------------------------------------------------------------------------


def test_multipart_upload_through_block_sas_urls(store: AzureStore) -> None:
    assert isinstance(store, ObjectStore)
    assert (store.name, store.etag_is_md5, store.min_part_size) == ("azure", False, 1)
    parts = [b"a" * 100 * KiB, bytes(range(256)) * 400, b"tail"]
    upload_id = store.start_upload(OBJECT_KEY, sum(map(len, parts)))
    assert len(upload_id) == 32 and store.list_uploaded_parts(OBJECT_KEY, upload_id) == []

    urls = {}
    offset = 0
    for number, body in enumerate(parts, start=1):
        urls[number] = store.sign_upload_part(OBJECT_KEY, upload_id, number, offset, len(body), 600)
        offset += len(body)
    for number, url in urls.items():  # one encoded length for every block id; the proxy helper decodes it
        query = parse_qs(urlsplit(url).query)
        assert query["comp"] == ["block"] and len(query["blockid"][0]) == 52
        assert part_number(ProxyEvent("PUT", urlsplit(url).path, query, 0, 0, 0)) == number
        assert part_number(ProxyEvent("GET", urlsplit(url).path, query, 0, 0, 0)) is None

    refused = put_part(urls[2], parts[2], md5=md5_b64(parts[1]))  # Content-MD5 of other bytes
    assert refused.status_code == 400 and refused.headers.get("x-ms-error-code") == "Md5Mismatch"
    for number in (3, 1, 2):  # any order, like parallel clients
        response = put_part(urls[number], parts[number - 1])
        assert response.status_code == 201, response.text
        assert "etag" not in response.headers  # Put Block returns none: etag_is_md5 is False
    assert put_part(urls[1], parts[0]).status_code == 201  # a retried part simply replaces its block

    assert store.list_uploaded_parts(OBJECT_KEY, upload_id) == [
        UploadedPart(n, "", len(b)) for n, b in enumerate(parts, start=1)
    ]
    assert store.head(OBJECT_KEY) is None  # uncommitted blocks are no object
    assert [h.key for h in store.list("data/")] == []

    store.complete_upload(OBJECT_KEY, upload_id, store.list_uploaded_parts(OBJECT_KEY, upload_id))
    head = store.head(OBJECT_KEY)
    assert head is not None and head.size == sum(map(len, parts)) and head.md5 is None  # multi-block: no MD5
    assert abs(head.last_modified_ms - time.time() * 1000) < 60_000
    assert store.read_document(OBJECT_KEY) == b"".join(parts)
    assert store.list_uploaded_parts(OBJECT_KEY, upload_id) == []
    with pytest.raises(UploadNotFound):  # a repeated completion: the service then checks the blob's size
        store.complete_upload(OBJECT_KEY, upload_id, [UploadedPart(n, "", len(b)) for n, b in enumerate(parts, 1)])


def test_complete_checks_parts_and_an_upload_replaces_an_object(store: AzureStore) -> None:
    upload(store, OBJECT_KEY, [b"old object"])
    first = store.start_upload(OBJECT_KEY, 8)
    second = store.start_upload(OBJECT_KEY, 6)
    for upload_id, bodies in ((first, [b"1234", b"5678"]), (second, [b"abc", b"def"])):
        for number, body in enumerate(bodies, start=1):
            assert put_part(store.sign_upload_part(OBJECT_KEY, upload_id, number, 0, 4, 60), body).status_code == 201
    assert [p.size for p in store.list_uploaded_parts(OBJECT_KEY, first)] == [4, 4]
    assert [p.size for p in store.list_uploaded_parts(OBJECT_KEY, second)] == [3, 3]

    with pytest.raises(ValueError, match="part 3 was never stored"):
        store.complete_upload(OBJECT_KEY, first, [UploadedPart(1, "", 4), UploadedPart(3, "", 4)])
    with pytest.raises(ValueError, match="tile the object contiguously"):
        store.complete_upload(OBJECT_KEY, first, [UploadedPart(1, "", 4), UploadedPart(2, "", 5)])
    with pytest.raises(ValueError, match="without repeats"):
        store.complete_upload(OBJECT_KEY, first, [UploadedPart(1, "", 4), UploadedPart(1, "", 4)])
    with pytest.raises(UploadNotFound):
        store.complete_upload(OBJECT_KEY, "f" * 32, [UploadedPart(1, "", 4)])
    with pytest.raises(UploadNotFound):
        store.list_uploaded_parts(OBJECT_KEY, "not-an-azure-upload-id")
    assert store.read_document(OBJECT_KEY) == b"old object"  # nothing committed by the failures

    with pytest.raises(ValueError, match="ascending order"):  # one meaning on every store: S3's
        store.complete_upload(OBJECT_KEY, second, [UploadedPart(2, "", 3), UploadedPart(1, "", 3)])
    store.complete_upload(OBJECT_KEY, second, [UploadedPart(1, "", 3), UploadedPart(2, "", 3)])
    assert store.read_document(OBJECT_KEY) == b"abcdef"
    # each upload stages its blocks on its own blob: completing one leaves the other's alone (as on S3)
    assert store.list_uploaded_parts(OBJECT_KEY, first) == [UploadedPart(1, "", 4), UploadedPart(2, "", 4)]


# -- signed reads and SAS enforcement --------------------------------------------------------------


def test_signed_read_with_range_and_sas_enforcement(azurite: Azurite, store: AzureStore) -> None:
    data = bytes(range(256)) * 64
    upload(store, OBJECT_KEY, [data[:5000], data[5000:]])
    store.write_document("data/other", b"other")
    url = store.sign_read(OBJECT_KEY, 10, 10, 600)
    assert urlsplit(url).path == f"/{ACCOUNT_NAME}/{store._container_name}/{OBJECT_KEY}"
    ranged = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == data[10:20]
    assert ranged.headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert httpx.get(url, headers={"Range": f"bytes={len(data) - 3}-"}).content == data[-3:]
    whole = httpx.get(url)
    assert whole.status_code == 200 and whole.content == data

    signature = parse_qs(urlsplit(url).query)["sig"][0]
    tampered = with_query(url, sig=("A" if signature[0] != "A" else "B") + signature[1:])
    assert httpx.get(tampered).status_code == 403
    assert httpx.get(with_query(url, sp="rw")).status_code == 403  # widened permissions: signature breaks
    other = urlsplit(url)._replace(path=urlsplit(url).path.replace(OBJECT_KEY.split("/")[1], "other"))
    assert httpx.get(urlunsplit(other)).status_code == 403  # a SAS for one blob opens no other blob
    assert httpx.get(url.split("?")[0]).status_code in (403, 404)  # no SAS, no access (private container)

    read_only = store.sign_read("data/new", None, None, 600) + "&comp=block&blockid=" + encoded_block_id("a" * 32, 1)
    assert put_part(read_only, b"x").status_code == 403  # a read SAS cannot write

    short = store.sign_read(OBJECT_KEY, None, None, 1)
    upload_id = store.start_upload("data/late", 1)
    late_part = store.sign_upload_part("data/late", upload_id, 1, 0, 1, 1)
    time.sleep(2.2)
    assert httpx.get(short).status_code == 403  # expired
    assert put_part(late_part, b"x").status_code == 403
    with pytest.raises(ValueError):
        store.sign_read(OBJECT_KEY, None, None, 0)


def test_head_md5_comes_from_content_md5(azurite: Azurite, store: AzureStore) -> None:
    store.write_document("data/doc", b"document")
    head = store.head("data/doc")
    assert head is not None and (head.size, head.md5) == (8, md5_hex(b"document"))  # Put Blob stores it
    # A blob uploaded by another tool (like the Java client's Azure SDK upload) with Content-MD5 set:
    sdk = BlobServiceClient(
        azurite.endpoint,
        credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY},
        max_single_put_size=1000,
        max_block_size=1000,
    )
    blob = sdk.get_blob_client(store._container_name, "data/sdk-upload")
    blob.upload_blob(
        b"a" * 3000,
        content_settings=ContentSettings(content_md5=bytearray(hashlib.md5(b"a" * 3000).digest())),  # noqa: S324
    )
    head = store.head("data/sdk-upload")
    assert head is not None and (head.size, head.md5) == (3000, md5_hex(b"a" * 3000))
    assert store.head("data/missing") is None


# -- documents, listing, deletion ------------------------------------------------------------------


def test_documents_markers_listing_and_delete(store: AzureStore) -> None:
    state = MARKER_KEY.rsplit("/", 1)[0] + "/"
    keys = [
        state + ".meta",
        MARKER_KEY,
        MARKER_KEY.replace("part-0000000b", "part-0000000a"),
        state + "part-00000002|{}",
        "upload/x_10/.meta",
        "upload/x-1",
        "upload/x.1",
        "upload/x_1 2/ünïcode #?&=%",
        "data/a",
    ]
    for number, key in enumerate(keys):
        store.write_document(key, f"body {number}".encode())
    store.write_document(MARKER_KEY, b"")  # overwrite: markers are zero-byte
    assert store.read_document(MARKER_KEY) == b""
    assert store.read_document("upload/x_1 2/ünïcode #?&=%") == b"body 7"
    assert store.read_document("upload/none") is None

    listed = [h.key for h in store.list("upload/")]
    assert listed == sorted(k for k in keys if k.startswith("upload/"))
    assert [h.key for h in store.list(state + "part-0000000")] == sorted(keys[1:4])
    assert [h.key for h in store.list(state)] == sorted(keys[:4])
    sizes = {h.key: h.size for h in store.list(state)}
    assert sizes[MARKER_KEY] == 0 and sizes[state + ".meta"] == len(b"body 0")

    marker_url = store.sign_read(MARKER_KEY, None, None, 60)  # names with | { " + / and spaces quote correctly
    assert httpx.get(marker_url).status_code == 200
    unicode_url = store.sign_read("upload/x_1 2/ünïcode #?&=%", None, None, 60)
    assert httpx.get(unicode_url).content == b"body 7"

    store.delete(MARKER_KEY)
    store.delete(MARKER_KEY)  # missing is fine
    assert store.read_document(MARKER_KEY) is None
    store.put_empty("data/empty")
    head = store.head("data/empty")
    assert head is not None and head.size == 0
    assert store.read_document("data/empty") == b""
    with pytest.raises(ValueError):
        store.write_document("", b"")


# -- readiness and failures ------------------------------------------------------------------------


def test_check_ready_says_what_is_wrong(azurite: Azurite) -> None:
    ready = azurite.fresh_container()
    AzureStore(config(azurite, ready)).check_ready(SENTINEL_KEY)

    with pytest.raises(StoreMisconfigured, match=r"container 'no-such-container'.*does not exist.*CONTAINER"):
        AzureStore(config(azurite, "no-such-container")).check_ready(SENTINEL_KEY)
    bare = azurite.fresh_container(sentinel=False)
    with pytest.raises(StoreMisconfigured, match=r"sentinel blob 'data/heliograph' is missing"):
        AzureStore(config(azurite, bare)).check_ready(SENTINEL_KEY)
    wrong_key = SecretStr(base64.b64encode(b"not the key" * 6).decode())
    with pytest.raises(StoreMisconfigured, match=r"refused the credentials.*ACCOUNT_KEY") as refused:
        AzureStore(config(azurite, ready, account_key=wrong_key)).check_ready(SENTINEL_KEY)
    assert wrong_key.get_secret_value() not in str(refused.value)
    dead = f"http://127.0.0.1:{free_port()}/{ACCOUNT_NAME}"
    started = time.monotonic()
    with pytest.raises(StoreMisconfigured, match=r"cannot reach Azure Blob Storage at .*ENDPOINT"):
        AzureStore(config(azurite, ready, endpoint=dead)).check_ready(SENTINEL_KEY)
    assert time.monotonic() - started < 5  # no retries at start-up
    with pytest.raises(StoreMisconfigured, match="not valid base64"):
        AzureStore(config(azurite, ready, account_key=SecretStr("not base64!")))
    with pytest.raises(StoreMisconfigured, match="ACCOUNT_KEY"):
        AzureStore(config(azurite, ready, account_key=None))
    assert ACCOUNT_KEY not in repr(AzureStore(config(azurite, ready)))


def test_a_missing_container_is_an_error_not_an_empty_store(azurite: Azurite) -> None:
    gone = AzureStore(config(azurite, "deleted-container"))
    for call in (
        lambda: gone.list_uploaded_parts(OBJECT_KEY, "a" * 32),
        lambda: gone.write_document(OBJECT_KEY, b"x"),
        lambda: list(gone.list("data/")),
    ):
        with pytest.raises(StoreError, match="container 'deleted-container' does not exist"):
            call()
    assert gone.head(OBJECT_KEY) is None and gone.read_document(OBJECT_KEY) is None  # health: OUT_OF_SERVICE


def test_unreachable_store_is_unavailable_not_missing(azurite: Azurite) -> None:
    dead = AzureStore(config(azurite, "data", endpoint=f"http://127.0.0.1:{free_port()}/{ACCOUNT_NAME}"), retries=0)
    for call in (
        lambda: dead.head(OBJECT_KEY),
        lambda: dead.read_document(OBJECT_KEY),
        lambda: dead.write_document(OBJECT_KEY, b"x"),
        lambda: list(dead.list("data/")),
        lambda: dead.delete(OBJECT_KEY),
        lambda: dead.list_uploaded_parts(OBJECT_KEY, "a" * 32),
    ):
        with pytest.raises(StoreUnavailable, match="cannot reach"):
            call()
    assert dead.sign_read(OBJECT_KEY, 0, 1, 60).startswith(dead.endpoint)  # signing is offline


# -- the Java client's blob uploads and the Java server's root blobs (issue 15, items 1-2) ---------------


def test_a_blob_upload_sas_writes_its_blob_whole_and_nothing_else(store: AzureStore) -> None:
    url = store.sign_blob_upload(OBJECT_KEY, 600)
    body = b"the whole file, in one Put Blob"
    headers = {**OCTETS, "x-ms-blob-type": "BlockBlob", "x-ms-blob-content-md5": md5_b64(body)}
    assert httpx.put(url, content=body, headers=headers).status_code == 201
    head = store.head(OBJECT_KEY)
    assert head is not None and (head.size, head.md5) == (len(body), md5_hex(body))
    assert httpx.get(url).status_code == 403  # write and create only
    assert httpx.delete(url).status_code == 403


def test_the_java_servers_root_blobs_are_listed_apart(store: AzureStore) -> None:
    java_id = "5b3a1c2e-7d4f-4e8a-9b6c-0d1e2f3a4b5c"
    store.write_document(java_id, b"written by the Java server")
    store.write_document("heliograph", b"its sentinel")
    store.write_document(OBJECT_KEY, b"ours")
    store.write_document(MARKER_KEY, b"")
    assert store.legacy_object_key(java_id) == java_id
    assert sorted(h.key for h in store.list_legacy_objects()) == [java_id, "heliograph"]  # data/, upload/ not walked
    [java] = [h for h in store.list_legacy_objects() if h.key == java_id]
    assert java.size == len(b"written by the Java server")


# -- end to end: real server and client on Azure Blob ---------------------------------------------


def test_server_and_client_round_trip_on_azurite(azurite: Azurite, tmp_path: Path) -> None:
    container = azurite.fresh_container()
    proxy = StoreProxy(azurite.endpoint).start()
    endpoint = azurite.endpoint.replace(f"127.0.0.1:{azurite.port}", f"127.0.0.1:{proxy.port}")
    server = ScoreServer(tmp_path / "d", part_size=65536, extra_env=azurite.score_env(container, endpoint)).start()
    try:
        token = server.token("score.WRITE score.READ song.WRITE")
        registry = Registry(server, token)
        work = tmp_path / "work"
        work.mkdir()
        client = Client(server, token, work)
        files = [
            make_file(tmp_path / "in" / "multi.bam", 5 * 65536 + 1234, seed=2),  # six parts, the last short
            make_file(tmp_path / "in" / "empty.txt", 0),
        ]
        analysis_id, ids = registry.submit("AZ1", files)
        result = client.run(
            "upload", "--analysis-id", analysis_id, "--study-id", "AZ1", "--input-dir", str(work.parent / "in")
        )
        assert result.returncode == 0, result.stderr
        puts = Counter(n for e in proxy.requests("PUT") if e.status == 201 and (n := part_number(e)) is not None)
        assert puts == Counter(range(1, 7))
        assert registry.publish("AZ1", analysis_id).status_code == 200

        out = tmp_path / "out"
        result = client.run("download", "--analysis-id", analysis_id, "--study-id", "AZ1", "--output-dir", str(out))
        assert result.returncode == 0, result.stderr
        for f in files:
            assert md5_of(next(out.rglob(f.name))) == md5_of(f)

        store = AzureStore(config(azurite, container))
        names = [h.key for h in store.list("")]
        assert names == sorted(
            [SENTINEL_KEY] + [f"data/{ids[f.name]}" for f in files] + [f"data/{ids[f.name]}.meta" for f in files]
        )  # the same layout as S3, and no upload state left behind
        ping = httpx.get(f"{server.url}/download/ping").text.strip()
        assert httpx.get(ping).status_code == 200
        profile = httpx.get(f"{server.url}/profile", headers={"Authorization": f"Bearer {token}"})
        assert profile.text.strip('"') == "az"
    finally:
        server.stop()
        proxy.stop()
