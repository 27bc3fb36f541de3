"""S3Store against a real SeaweedFS with credentials on, so signatures, ranges and expiry are enforced."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from pydantic import SecretStr

from score.server.settings import S3Config
from score.server.storage.base import (
    ObjectStore,
    StoreError,
    StoreMisconfigured,
    StoreUnavailable,
    UploadedPart,
    UploadNotFound,
)
from score.server.storage.s3 import S3Store
from tests.services.forward_proxy import ForwardProxy
from tests.services.process import free_port
from tests.services.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedS3

MiB = 1024 * 1024
SENTINEL = "data/heliograph"


def md5_hex(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()  # noqa: S324


def md5_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324


def new_id() -> str:
    return str(uuid.uuid4())


# ``seaweed``: the session's SeaweedFS (tests/conftest.py), shared with the store contract suite.


@pytest.fixture(scope="module")
def raw(seaweed: SeaweedS3) -> Any:
    """A plain boto3 client, to lay out and inspect buckets independently of the store under test."""
    return seaweed.client()


def make_store(seaweed: SeaweedS3, bucket: str, page_size: int = 1000, **overrides: Any) -> S3Store:
    settings: dict[str, Any] = {
        "endpoint": seaweed.endpoint,
        "access_key": ACCESS_KEY,
        "secret_key": SecretStr(SECRET_KEY),
        "bucket": bucket,
        **overrides,
    }
    return S3Store(S3Config(**settings), page_size=page_size)


@pytest.fixture
def bucket(seaweed: SeaweedS3) -> str:
    return seaweed.fresh_bucket()


@pytest.fixture
def store(seaweed: SeaweedS3, bucket: str) -> S3Store:
    return make_store(seaweed, bucket)


def put_part(url: str, body: bytes, content_md5: str | None = None) -> httpx.Response:
    headers = {"Content-MD5": content_md5 if content_md5 is not None else md5_b64(body)}
    return httpx.put(url, content=body, headers=headers, timeout=30)


def test_is_an_object_store(store: S3Store) -> None:
    assert isinstance(store, ObjectStore)
    assert (store.name, store.etag_is_md5, store.min_part_size) == ("s3", True, 5 * MiB)


# -- multipart upload ----------------------------------------------------------------------------------


def test_multipart_upload_through_presigned_part_urls(seaweed: SeaweedS3, bucket: str, raw: Any) -> None:
    store = make_store(seaweed, bucket, page_size=1)  # ListParts pages of one part: pagination is exercised
    key = f"data/{new_id()}"
    parts = [b"a" * (5 * MiB), b"b" * (5 * MiB), b"tail bytes"]
    body = b"".join(parts)
    upload_id = store.start_upload(key, len(body))
    urls = [store.sign_upload_part(key, upload_id, n, 0, len(p), 3600) for n, p in enumerate(parts, 1)]
    assert "X-Amz-Signature" in urls[0]

    refused = put_part(urls[1], parts[1], content_md5=md5_b64(b"other bytes"))
    assert refused.status_code == 400 and "BadDigest" in refused.text  # the store checked Content-MD5
    assert store.list_uploaded_parts(key, upload_id) == []  # and kept nothing of the refused part

    etags = []
    for url, part in zip(urls, parts, strict=True):
        response = put_part(url, part)
        assert response.status_code == 200, response.text
        etags.append(response.headers["etag"].strip('"'))
    assert etags == [md5_hex(p) for p in parts]

    listed = store.list_uploaded_parts(key, upload_id)
    assert listed == [UploadedPart(n, md5_hex(p), len(p)) for n, p in enumerate(parts, 1)]
    assert store.head(key) is None  # nothing is visible before completion

    store.complete_upload(key, upload_id, listed)
    head = store.head(key)
    assert head is not None and head.size == len(body) and head.md5 is None  # multipart ETag is no MD5
    assert head.last_modified_ms > (time.time() - 600) * 1000
    whole = httpx.get(store.sign_read(key, None, None, 60), timeout=30)
    assert whole.status_code == 200 and whole.content == body
    assert raw.get_object(Bucket=bucket, Key=key)["Body"].read() == body


def test_complete_refusals_are_clear(store: S3Store) -> None:
    key = f"data/{new_id()}"
    upload_id = store.start_upload(key, 11)
    small = [b"hello", b"world!"]
    for number, part in enumerate(small, 1):
        assert put_part(store.sign_upload_part(key, upload_id, number, 0, len(part), 60), part).status_code == 200
    listed = store.list_uploaded_parts(key, upload_id)

    with pytest.raises(ValueError, match="5 MiB"):
        store.complete_upload(key, upload_id, listed)  # EntityTooSmall
    with pytest.raises(ValueError, match="ascending"):
        store.complete_upload(key, upload_id, list(reversed(listed)))
    with pytest.raises(ValueError, match=r"part 1 has ETag .* in the store, not"):
        store.complete_upload(key, upload_id, [UploadedPart(1, md5_hex(b"something else"), 5)])
    with pytest.raises(ValueError, match="no parts"):
        store.complete_upload(key, upload_id, [])

    with pytest.raises(UploadNotFound):
        store.list_uploaded_parts(key, "no-such-upload")
    with pytest.raises(UploadNotFound):
        store.complete_upload(key, "no-such-upload", listed)


# -- signed reads --------------------------------------------------------------------------------------


def test_ranged_read_urls_sign_exactly_their_range(store: S3Store) -> None:
    key = f"data/{new_id()}"
    body = bytes(range(256)) * 40
    store.write_document(key, body)

    url = store.sign_read(key, 100, 50, 60)
    assert "range" in parse_qs(urlsplit(url).query)["X-Amz-SignedHeaders"][0].split(";")
    exact = httpx.get(url, headers={"Range": "bytes=100-149"})
    assert exact.status_code == 206 and exact.content == body[100:150]
    assert httpx.get(url, headers={"Range": "bytes=100-150"}).status_code == 403  # another range
    assert httpx.get(url).status_code == 403  # no range at all

    open_ended = httpx.get(store.sign_read(key, 10_000, None, 60), headers={"Range": "bytes=10000-"})
    assert open_ended.status_code == 206 and open_ended.content == body[10_000:]
    plain = store.sign_read(key, None, None, 60)
    assert httpx.get(plain, headers={"Range": "bytes=7-9"}).content == body[7:10]  # unranged: any Range


def test_expired_and_tampered_urls_are_refused(seaweed: SeaweedS3, bucket: str) -> None:
    key = f"data/{new_id()}"
    v4 = make_store(seaweed, bucket)
    v2 = make_store(seaweed, bucket, sigv2=True)
    v4.write_document(key, b"0123456789")
    upload_key = f"data/{new_id()}"
    upload_id = v4.start_upload(upload_key, 5)

    short = [
        v4.sign_read(key, 0, 5, 1),
        v4.sign_read(key, None, None, 1),
        v2.sign_read(key, None, None, 1),
    ]
    short_put = v4.sign_upload_part(upload_key, upload_id, 1, 0, 5, 1)
    fresh = v4.sign_read(key, None, None, 60)
    fresh_v2 = v2.sign_read(key, None, None, 60)
    time.sleep(2.1)
    assert [httpx.get(u, headers={"Range": "bytes=0-4"}).status_code for u in short] == [403, 403, 403]
    assert put_part(short_put, b"hello").status_code == 403

    def tamper(url: str, name: str) -> str:
        parts = urlsplit(url)
        query = [(k, ("A" if v[0] != "A" else "B") + v[1:] if k == name else v) for k, v in parse_qsl(parts.query)]
        return urlunsplit(parts._replace(query=urlencode(query)))

    assert httpx.get(fresh).status_code == 200
    assert httpx.get(tamper(fresh, "X-Amz-Signature")).status_code == 403
    assert httpx.get(fresh.replace(key, f"data/{new_id()}")).status_code == 403  # signed for another key
    assert httpx.get(fresh_v2).status_code == 200
    assert httpx.get(tamper(fresh_v2, "Signature")).status_code == 403


def test_sigv2_presigning_works_for_reads_and_unsigned_part_puts(seaweed: SeaweedS3, bucket: str) -> None:
    store = make_store(seaweed, bucket, sigv2=True)
    key = f"data/{new_id()}"
    store.write_document(key, b"0123456789")
    url = store.sign_read(key, 2, 3, 60)
    query = parse_qs(urlsplit(url).query)
    assert {"AWSAccessKeyId", "Signature", "Expires"} <= query.keys() and "X-Amz-Signature" not in query
    ranged = httpx.get(url, headers={"Range": "bytes=2-4"})
    assert ranged.status_code == 206 and ranged.content == b"234"  # SigV2 does not sign the Range

    upload_key = f"data/{new_id()}"
    upload_id = store.start_upload(upload_key, 5)
    part_url = store.sign_upload_part(upload_key, upload_id, 1, 0, 5, 60)
    # SigV2 signs Content-MD5 and Content-Type, which the server cannot know when it presigns: a client
    # must send neither to a SigV2 URL.
    assert httpx.put(part_url, content=b"hello", headers={"Content-MD5": md5_b64(b"hello")}).status_code == 403
    assert (
        httpx.put(part_url, content=b"hello", headers={"Content-Type": "application/octet-stream"}).status_code == 403
    )
    assert httpx.put(part_url, content=b"hello").status_code == 200
    assert store.list_uploaded_parts(upload_key, upload_id) == [UploadedPart(1, md5_hex(b"hello"), 5)]


def test_presign_endpoint_is_used_for_urls_only(seaweed: SeaweedS3, bucket: str) -> None:
    public = seaweed.endpoint.replace("127.0.0.1", "localhost")
    store = make_store(seaweed, bucket, presign_endpoint=public)
    key = f"data/{new_id()}"
    store.write_document(key, b"through another name")
    url = store.sign_read(key, 0, 7, 60)
    assert url.startswith(f"{public}/{bucket}/{key}?")
    response = httpx.get(url, headers={"Range": "bytes=0-6"})
    assert response.status_code == 206 and response.content == b"through"
    assert store.sign_read(key, None, None, 10 * 86400)  # capped at SigV4's 7 days instead of failing
    expires = parse_qs(urlsplit(store.sign_read(key, None, None, 10 * 86400)).query)["X-Amz-Expires"]
    assert expires == [str(7 * 86400)]


# -- head, documents, listing --------------------------------------------------------------------------


def test_head_reads_the_md5_from_user_metadata(seaweed: SeaweedS3, bucket: str, raw: Any, store: S3Store) -> None:
    body = b"legacy blob"
    rclone_key, custom_key, plain_key = (f"data/{new_id()}" for _ in range(3))
    raw.put_object(Bucket=bucket, Key=rclone_key, Body=body, Metadata={"md5chksum": md5_b64(body)})
    raw.put_object(Bucket=bucket, Key=custom_key, Body=body, Metadata={"content-md5sum": md5_b64(body)})
    raw.put_object(Bucket=bucket, Key=plain_key, Body=body)

    head = store.head(rclone_key)
    assert head is not None and (head.key, head.size, head.md5) == (rclone_key, len(body), md5_hex(body))
    custom = make_store(seaweed, bucket, custom_md5_property="content-md5sum")
    assert custom.head(custom_key).md5 == md5_hex(body)  # type: ignore[union-attr]
    assert store.head(custom_key).md5 is None  # type: ignore[union-attr]
    assert store.head(plain_key).md5 is None  # type: ignore[union-attr]
    assert store.head(f"data/{new_id()}") is None


def test_list_pages_and_sorts_in_key_order(seaweed: SeaweedS3, bucket: str, raw: Any) -> None:
    store = make_store(seaweed, bucket, page_size=10)
    keys = [f"data/{i:04x}-object" for i in range(30)]
    # SeaweedFS lists a folder right after its name ("data/z/1" before "data/z-1"); byte order is wanted.
    keys += ["data/z", "data/z/1", "data/z-1", "data/z.meta", "data/z_1", "upload/abc_u/.meta"]
    for key in keys:
        raw.put_object(Bucket=bucket, Key=key, Body=key.encode())
    listed = list(store.list("data/"))
    expected = sorted([k for k in keys if k.startswith("data/")] + [SENTINEL])
    assert [h.key for h in listed] == expected
    assert all(h.size == len(h.key) for h in listed if h.key != SENTINEL)
    assert [h.key for h in store.list("data/000")] == [f"data/{i:04x}-object" for i in range(16)]
    assert [h.key for h in store.list("upload/")] == ["upload/abc_u/.meta"]
    assert list(store.list("nothing/")) == []


# -- partitioned buckets -------------------------------------------------------------------------------


def test_partitioned_buckets_with_relocated_objects(seaweed: SeaweedS3, raw: Any) -> None:
    objects, state = f"obj-{uuid.uuid4().hex[:8]}", f"st-{uuid.uuid4().hex[:8]}"
    pool = 3
    for name in [objects, state, *(f"{b}.{i}" for b in (objects, state) for i in range(pool))]:
        raw.create_bucket(Bucket=name)
    raw.put_object(Bucket=objects, Key=SENTINEL, Body=b"heliograph\n")
    store = make_store(seaweed, objects, state_bucket=state, partition_pool=pool, partition_key=2)
    store.check_ready(SENTINEL)

    relocated = "56f3cb04-0000-4000-8000-000000000001"  # 0x56 % 3 = 2, but stored in the base buckets
    raw.put_object(Bucket=objects, Key=f"data/{relocated}", Body=b"old bytes")
    raw.put_object(Bucket=state, Key=f"data/{relocated}.meta", Body=b'{"relocated":true}')
    assert store.read_document(f"data/{relocated}.meta") == b'{"relocated":true}'
    assert store.head(f"data/{relocated}.meta") is not None
    assert store.head(f"data/{relocated}").size == 9  # type: ignore[union-attr]
    url = store.sign_read(f"data/{relocated}", 0, 3, 60)
    assert f"/{objects}/data/{relocated}?" in url
    assert httpx.get(url, headers={"Range": "bytes=0-2"}).content == b"old"

    fresh = "01000000-0000-4000-8000-000000000002"  # 0x01 % 3 = 1
    store.write_document(f"data/{fresh}.meta", b"{}")
    upload_id = store.start_upload(f"data/{fresh}", 4)
    assert put_part(store.sign_upload_part(f"data/{fresh}", upload_id, 1, 0, 4, 60), b"new!").status_code == 200
    store.write_document(f"upload/{fresh}_{upload_id}/.meta", b"{}")
    store.complete_upload(f"data/{fresh}", upload_id, store.list_uploaded_parts(f"data/{fresh}", upload_id))
    assert raw.get_object(Bucket=f"{objects}.1", Key=f"data/{fresh}")["Body"].read() == b"new!"
    assert raw.head_object(Bucket=f"{state}.1", Key=f"data/{fresh}.meta")["ContentLength"] == 2
    assert raw.head_object(Bucket=f"{state}.1", Key=f"upload/{fresh}_{upload_id}/.meta")
    assert f"/{objects}.1/" in store.sign_read(f"data/{fresh}", None, None, 60)

    listed = [h.key for h in store.list("data/")]
    assert listed == sorted(
        [SENTINEL, f"data/{relocated}", f"data/{relocated}.meta", f"data/{fresh}", f"data/{fresh}.meta"]
    )
    assert [h.key for h in store.list(f"upload/{fresh}_")] == [f"upload/{fresh}_{upload_id}/.meta"]

    store.delete(f"data/{relocated}.meta")  # gone from wherever a read would find it
    assert store.read_document(f"data/{relocated}.meta") is None

    raw.delete_bucket(Bucket=f"{state}.2")
    with pytest.raises(StoreMisconfigured, match=rf"{state}\.2.*SCORE_S3__PARTITION_POOL"):
        store.check_ready(SENTINEL)


# -- start-up checks and failures ----------------------------------------------------------------------


def test_check_ready_passes_on_a_good_bucket(store: S3Store) -> None:
    store.check_ready(SENTINEL)


def test_check_ready_names_a_missing_bucket(seaweed: SeaweedS3, bucket: str) -> None:
    with pytest.raises(StoreMisconfigured, match=r"'no-such-bucket-x' does not exist.*SCORE_S3__BUCKET"):
        make_store(seaweed, "no-such-bucket-x").check_ready(SENTINEL)
    with pytest.raises(StoreMisconfigured, match=r"'no-such-state-x' does not exist.*SCORE_S3__STATE_BUCKET"):
        make_store(seaweed, bucket, state_bucket="no-such-state-x").check_ready(SENTINEL)


def test_check_ready_asks_for_the_sentinel(seaweed: SeaweedS3) -> None:
    empty = seaweed.fresh_bucket(sentinel=False)
    with pytest.raises(StoreMisconfigured, match=rf"sentinel object 'data/heliograph' is missing.*{empty}"):
        make_store(seaweed, empty).check_ready(SENTINEL)


def test_check_ready_reports_bad_credentials_without_leaking_them(seaweed: SeaweedS3, bucket: str) -> None:
    wrong_secret = "wrong-secret-value"
    with pytest.raises(StoreMisconfigured) as info:
        make_store(seaweed, bucket, secret_key=SecretStr(wrong_secret)).check_ready(SENTINEL)
    assert "SignatureDoesNotMatch" in str(info.value) and "SCORE_S3__SECRET_KEY" in str(info.value)
    assert wrong_secret not in str(info.value)
    with pytest.raises(StoreMisconfigured, match=r"InvalidAccessKeyId.*SCORE_S3__ACCESS_KEY"):
        make_store(seaweed, bucket, access_key="nobody").check_ready(SENTINEL)
    with pytest.raises(StoreMisconfigured, match="only one of"):
        make_store(seaweed, bucket, secret_key=None)


def test_unreachable_endpoint(bucket: str) -> None:
    config = S3Config(
        endpoint=f"http://127.0.0.1:{free_port()}",
        access_key=ACCESS_KEY,
        secret_key=SecretStr(SECRET_KEY),
        bucket=bucket,
    )
    store = S3Store(config)
    with pytest.raises(
        StoreMisconfigured, match=r"cannot reach the S3 endpoint http://127\.0\.0\.1.*SCORE_S3__ENDPOINT"
    ):
        store.check_ready(SENTINEL)
    with pytest.raises(StoreUnavailable) as info:  # at run time: 503, the client retries
        store.head(f"data/{new_id()}")
    assert SECRET_KEY not in str(info.value) and "Signature" not in str(info.value)
    with pytest.raises(StoreUnavailable):
        list(store.list("data/"))


def test_document_calls_skip_boto3_yet_behave_as_its_calls(seaweed: SeaweedS3, raw: Any) -> None:
    """GET, HEAD and PUT of keys go out directly (S3Documents), signed as boto3 signs them: the same answers,
    the same refusals, the same missing-key and missing-bucket readings."""
    bucket = seaweed.fresh_bucket()
    store = make_store(seaweed, bucket)
    assert store._documents is not None  # SigV4 with credentials: the direct path is on
    body = b'{"objectId": "x"}' * 50
    key = f"data/{new_id()}.meta"
    store.write_document(key, body)
    assert raw.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    assert store.read_document(key) == body
    assert store.read_document(key, 2, 10) == body[2:10]
    head = store.head(key)
    assert head is not None and head.size == len(body) and head.etag == md5_hex(body)
    assert head.last_modified_ms > 0
    raw.put_object(Bucket=bucket, Key="data/with-md5", Body=b"abc", Metadata={"md5chksum": md5_b64(b"abc")})
    assert store.head("data/with-md5").md5 == md5_hex(b"abc")  # type: ignore[union-attr]
    assert store.read_document("data/absent") is None and store.head("data/absent") is None
    odd = "data/a key with spaces+plus~tilde"
    store.write_document(odd, b"odd")
    assert raw.get_object(Bucket=bucket, Key=odd)["Body"].read() == b"odd" and store.read_document(odd) == b"odd"

    wrong = make_store(seaweed, bucket, secret_key=SecretStr("not-the-secret"))
    with pytest.raises(StoreError, match=r"SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId"):
        wrong.read_document(key)
    with pytest.raises(StoreError, match="403"):
        wrong.head(key)
    gone = make_store(seaweed, f"{bucket}-absent")
    with pytest.raises(StoreError, match="NoSuchBucket"):
        gone.read_document("data/x.meta")


def test_document_calls_go_through_the_proxy_the_environment_names(
    seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The direct calls go where the boto3 client's would: behind ``HTTP_PROXY``, to the proxy (plain HTTP in
    absolute form), so a server on a cluster whose store is reached through a proxy reaches it the same way."""
    proxy = ForwardProxy().start()
    try:
        for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("http_proxy", proxy.url)
        bucket = seaweed.fresh_bucket()
        store = make_store(seaweed, bucket)
        key = f"data/{new_id()}.meta"
        store.write_document(key, b'{"a": 1}')
        head = store.head(key)
        assert head is not None and head.size == 8 and head.etag == md5_hex(b'{"a": 1}')
        assert store.read_document(key) == b'{"a": 1}'
        assert store.head(f"data/{new_id()}") is None
        seen = [(e.method, e.path, e.status) for e in proxy.snapshot() if e.path == f"/{bucket}/{key}"]
        assert seen == [
            ("PUT", f"/{bucket}/{key}", 200),
            ("HEAD", f"/{bucket}/{key}", 200),
            ("GET", f"/{bucket}/{key}", 200),
        ]
    finally:
        proxy.stop()


def test_document_calls_retry_a_busy_store_then_say_it_is_unavailable(seaweed: SeaweedS3) -> None:
    """503s are retried with back-off (as boto3's standard mode); a store that stays busy is StoreUnavailable."""
    import http.server
    import threading

    answers = iter([503, 503, 200] + [503] * 50)
    seen: list[str] = []

    class Busy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization", "")[:16])
            status = next(answers)
            payload = b"doc" if status == 200 else b"<Error><Code>SlowDown</Code><Message>busy</Message></Error>"
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        store = make_store(seaweed, "busy-bucket", endpoint=f"http://127.0.0.1:{server.server_port}")
        assert store.read_document("data/x.meta") == b"doc"
        assert len(seen) == 3 and all(s.startswith("AWS4-HMAC-SHA256") for s in seen)
        with pytest.raises(StoreUnavailable, match=r"SlowDown|503"):
            store.read_document("data/y.meta")
    finally:
        server.shutdown()


def test_urls_are_presigned_exactly_as_boto3_presigns_them(seaweed: SeaweedS3) -> None:
    """The direct signer's URLs are boto3's, byte for byte (same second), for every operation signed."""
    store = make_store(seaweed, seaweed.fresh_bucket())
    upload_id = store.start_upload("data/p", 6 * MiB)
    signs = [
        lambda: store.sign_read("data/x", None, None, 600),
        lambda: store.sign_read("data/x", 5, 10, 600),
        lambda: store.sign_upload_part("data/p", upload_id, 3, 0, 5 * MiB, 900),
        lambda: store.sign_whole_put("data/w", md5_hex(b"w"), 700),
    ]
    direct_signer = store._signer
    assert direct_signer is not None
    for sign in signs:
        for _ in range(3):  # the two may straddle a second
            store._signer = direct_signer
            ours = sign()
            store._signer = None
            theirs = sign()
            if ours == theirs:
                break
        assert ours == theirs
    store._signer = direct_signer
    store.abort_upload("data/p", upload_id)
