"""GcsStore against a real gcp-storage-emulator, its V4 signatures checked offline, and a real end-to-end run.

The emulator serves signed URLs without checking them, so every signature is also verified here from
the V4 specification (canonical request -> string to sign -> RSA-SHA256 with the service account's
public key): signing logic the emulator ignores is still pinned down.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from score.server.settings import GcsConfig
from score.server.storage.base import (
    ObjectStore,
    StoreMisconfigured,
    StoreUnavailable,
    UploadedPart,
    UploadNotFound,
)
from score.server.storage.gcs import MAX_SIGNED_TTL, GcsStore, part_object_name
from tests.conftest import Client, Registry, ScoreServer, make_file, md5_of
from tests.services.gcs import SENTINEL_KEY, GcsEmulator, part_number, write_service_account
from tests.services.process import free_port
from tests.services.proxy import ProxyEvent

KiB = 1024
OBJECT_KEY = "data/0b7a7d3e-5c39-4b8f-9d4e-2f1a6c3b9e01"
MARKER_KEY = (
    "upload/0b7a7d3e-5c39-4b8f-9d4e-2f1a6c3b9e01_" + "ab" * 16 + '/part-0000000b|{"partNumber":11,'
    '"md5":"9e107d9d372bb6826bd81d3542a419d6","etag":"9e107d9d372bb6826bd81d3542a419d6"}'
)
STUDY = "GCS1"


def md5_hex(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()  # noqa: S324


def md5_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324


def body_of(size: int, seed: int) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest()
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture
def emulator(gcs_emulator: GcsEmulator) -> GcsEmulator:
    """The session's emulator (tests/conftest.py), shared with the store contract suite."""
    return gcs_emulator


def store_for(emulator: GcsEmulator, bucket: str, **overrides: str | None) -> GcsStore:
    settings: dict[str, str | None] = {
        "bucket": bucket,
        "project": "test",
        "endpoint": emulator.endpoint,
        "credentials_file": str(emulator.credentials_file),
        **overrides,
    }
    return GcsStore(GcsConfig(**settings))


@pytest.fixture
def store(emulator: GcsEmulator) -> GcsStore:
    return store_for(emulator, emulator.fresh_bucket())


def put_part(url: str, body: bytes) -> httpx.Response:
    """What score-client sends for a part."""
    headers = {"Content-Type": "application/octet-stream", "Content-MD5": md5_b64(body)}
    return httpx.put(url, content=body, headers=headers, timeout=30)


def upload_parts(store: GcsStore, key: str, upload_id: str, data: bytes, part_size: int) -> list[UploadedPart]:
    parts = []
    for index, offset in enumerate(range(0, len(data), part_size)):
        body = data[offset : offset + part_size]
        url = store.sign_upload_part(key, upload_id, index + 1, offset, len(body), 3600)
        response = put_part(url, body)
        assert response.status_code == 200, response.text
        parts.append(UploadedPart(index + 1, md5_hex(body), len(body)))
    return parts


def bucket_names(emulator: GcsEmulator, bucket: str, prefix: str = "") -> list[str]:
    return [b.name for b in emulator.client().list_blobs(bucket, prefix=prefix)]


# -- multipart upload through signed part URLs --------------------------------------------------------


def test_is_an_object_store(store: GcsStore) -> None:
    assert isinstance(store, ObjectStore)
    assert (store.name, store.etag_is_md5, store.min_part_size) == ("gcs", True, 1)


def test_more_than_32_parts_compose_recursively_and_leave_nothing_behind(
    store: GcsStore, emulator: GcsEmulator
) -> None:
    data = body_of(40 * KiB + 100, seed=1)  # 41 parts: two compose levels
    upload_id = store.start_upload(OBJECT_KEY, len(data))
    assert len(upload_id) == 32
    parts = upload_parts(store, OBJECT_KEY, upload_id, data, KiB)
    assert store.list_uploaded_parts(OBJECT_KEY, upload_id) == parts  # etag = MD5 hex of the part's bytes
    assert [h.key for h in store.list("data/")] == [SENTINEL_KEY]  # nothing visible before completion
    assert store.head(OBJECT_KEY) is None

    store.complete_upload(OBJECT_KEY, upload_id, parts)

    head = store.head(OBJECT_KEY)
    assert head is not None and head.size == len(data)
    assert head.md5 in (None, md5_hex(data))  # real GCS keeps no MD5 for composites; the emulator does
    assert abs(head.last_modified_ms - time.time() * 1000) < 60_000
    assert store.read_document(OBJECT_KEY) == data
    assert bucket_names(emulator, store.bucket_name, "multipart/") == []  # parts, composites, record: gone
    with pytest.raises(UploadNotFound):
        store.list_uploaded_parts(OBJECT_KEY, upload_id)
    with pytest.raises(UploadNotFound):
        store.complete_upload(OBJECT_KEY, upload_id, parts)


def test_exactly_32_and_single_part_uploads(store: GcsStore) -> None:
    for count in (32, 1):
        data = body_of(count * 100, seed=count)
        upload_id = store.start_upload(OBJECT_KEY, len(data))
        parts = upload_parts(store, OBJECT_KEY, upload_id, data, 100)
        store.complete_upload(OBJECT_KEY, upload_id, parts)
        assert store.read_document(OBJECT_KEY) == data


def test_unknown_foreign_and_aborted_uploads(store: GcsStore, emulator: GcsEmulator) -> None:
    for upload_id in ("0" * 32, "../../data/x", "not-hex"):
        with pytest.raises(UploadNotFound):
            store.list_uploaded_parts(OBJECT_KEY, upload_id)
        store.abort_upload(OBJECT_KEY, upload_id)  # unknown ids are ignored
    with pytest.raises(UploadNotFound):
        store.sign_upload_part(OBJECT_KEY, "../x", 1, 0, 1, 60)

    data = body_of(2 * KiB, seed=4)
    upload_id = store.start_upload(OBJECT_KEY, len(data))
    with pytest.raises(UploadNotFound, match="another object"):
        store.list_uploaded_parts("data/other", upload_id)
    parts = upload_parts(store, OBJECT_KEY, upload_id, data, KiB)
    assert bucket_names(emulator, store.bucket_name, "multipart/")  # record and parts exist
    store.abort_upload(OBJECT_KEY, upload_id)
    assert bucket_names(emulator, store.bucket_name, "multipart/") == []
    with pytest.raises(UploadNotFound):
        store.list_uploaded_parts(OBJECT_KEY, upload_id)
    with pytest.raises(UploadNotFound):
        store.complete_upload(OBJECT_KEY, upload_id, parts)
    store.abort_upload(OBJECT_KEY, upload_id)  # twice is fine


def test_one_uploaded_part_is_read_alone_as_the_listing_gives_it(store: GcsStore) -> None:
    data = body_of(3 * KiB + 5, seed=6)
    upload_id = store.start_upload(OBJECT_KEY, len(data))
    parts = upload_parts(store, OBJECT_KEY, upload_id, data, KiB)
    listed = {p.part_number: p for p in store.list_uploaded_parts(OBJECT_KEY, upload_id)}
    for part in parts:
        assert store.uploaded_part(OBJECT_KEY, upload_id, part.part_number) == listed[part.part_number] == part
    assert store.uploaded_part(OBJECT_KEY, upload_id, 9) is None  # never sent
    with pytest.raises(UploadNotFound, match="another object"):
        store.uploaded_part("data/other", upload_id, 1)
    store.abort_upload(OBJECT_KEY, upload_id)
    with pytest.raises(UploadNotFound):
        store.uploaded_part(OBJECT_KEY, upload_id, 1)


def test_invalid_arguments_are_refused(store: GcsStore) -> None:
    with pytest.raises(ValueError):
        store.start_upload(OBJECT_KEY, -1)
    upload_id = store.start_upload(OBJECT_KEY, 10)
    for number, offset, size in ((0, 0, 1), (1, -1, 1), (1, 0, 0)):
        with pytest.raises(ValueError):
            store.sign_upload_part(OBJECT_KEY, upload_id, number, offset, size, 60)
    for key in ("", "multipart/x/upload.json", "a\nb", "x" * 1025):
        with pytest.raises(ValueError):
            store.write_document(key, b"")
    with pytest.raises(ValueError):
        store.sign_read(OBJECT_KEY, 0, 0, 60)
    with pytest.raises(ValueError):
        store.sign_read(OBJECT_KEY, None, None, 0)


def test_part_put_url_names_the_part_object(store: GcsStore) -> None:
    upload_id = store.start_upload(OBJECT_KEY, 10)
    url = store.sign_upload_part(OBJECT_KEY, upload_id, 7, 0, 10, 60)
    path = urlsplit(url).path
    assert path == f"/{store.bucket_name}/{part_object_name(upload_id, 7)}"
    assert part_number(ProxyEvent("PUT", path, {}, 200, 10, 0)) == 7
    assert part_number(ProxyEvent("GET", path, {}, 200, 0, 10)) is None
    assert part_number(ProxyEvent("PUT", f"/{store.bucket_name}/data/x", {}, 200, 10, 0)) is None


# -- reads, documents, listing ------------------------------------------------------------------------


def test_documents_heads_and_markers(store: GcsStore) -> None:
    assert store.read_document("data/missing.meta") is None
    assert store.head("data/missing.meta") is None
    store.delete("data/missing.meta")  # missing is fine

    body = json.dumps({"objectId": "x", "parts": []}).encode()
    store.write_document("data/x.meta", body)
    assert store.read_document("data/x.meta") == body
    head = store.head("data/x.meta")
    assert head is not None and (head.key, head.size, head.md5) == ("data/x.meta", len(body), md5_hex(body))
    store.write_document("data/x.meta", b"{}")  # overwrite
    assert store.read_document("data/x.meta") == b"{}"

    store.write_document(MARKER_KEY, b"")  # Score's marker keys carry JSON: '|', '{', '"'
    assert store.read_document(MARKER_KEY) == b""
    assert [h.key for h in store.list(MARKER_KEY.split("|")[0])] == [MARKER_KEY]
    store.delete(MARKER_KEY)
    assert store.head(MARKER_KEY) is None

    store.put_empty("data/empty")
    empty = store.head("data/empty")
    assert empty is not None and (empty.size, empty.md5) == (0, md5_hex(b""))
    store.delete("data/x.meta")
    assert store.read_document("data/x.meta") is None


def test_list_by_prefix_in_key_order_without_upload_internals(store: GcsStore) -> None:
    keys = ["data/b", "data/a.meta", "data/a", "data/a-1", "upload/a_1/.meta", "upload/a_1/part-00000001|{}", "dat"]
    for key in keys:
        store.write_document(key, key.encode())
    upload_id = store.start_upload("data/c", 10)
    upload_parts(store, "data/c", upload_id, b"0123456789", 5)  # record and parts under multipart/

    assert [h.key for h in store.list("data/")] == ["data/a", "data/a-1", "data/a.meta", "data/b", SENTINEL_KEY]
    assert [h.key for h in store.list("data/a")] == ["data/a", "data/a-1", "data/a.meta"]
    assert [h.key for h in store.list("upload/a_")] == ["upload/a_1/.meta", "upload/a_1/part-00000001|{}"]
    everything = [h.key for h in store.list("")]
    assert everything == sorted([*keys, SENTINEL_KEY])  # the upload's internals are not Score keys
    assert [h.size for h in store.list("data/a.")] == [len(b"data/a.meta")]
    assert len(list(store.list("multipart/"))) == 3  # visible only when asked for by name
    assert list(store.list("nothing/")) == []


# -- readiness and errors -----------------------------------------------------------------------------


def test_check_ready_passes_and_explains_each_misconfiguration(emulator: GcsEmulator, tmp_path: Path) -> None:
    store_for(emulator, emulator.fresh_bucket()).check_ready(SENTINEL_KEY)

    with pytest.raises(StoreMisconfigured, match=r"does not exist.*SCORE_GCS__BUCKET"):
        store_for(emulator, "no-such-bucket-here").check_ready(SENTINEL_KEY)
    bare = emulator.fresh_bucket(sentinel=False)
    with pytest.raises(StoreMisconfigured, match=r"sentinel object 'data/heliograph' is missing"):
        store_for(emulator, bare).check_ready(SENTINEL_KEY)

    started = time.monotonic()
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StoreMisconfigured, match=r"cannot reach .*SCORE_GCS__ENDPOINT"):
        store_for(emulator, bare, endpoint=dead).check_ready(SENTINEL_KEY)
    assert time.monotonic() - started < 20

    not_json = tmp_path / "not.json"
    not_json.write_text("this is not JSON")
    user = tmp_path / "user.json"
    user.write_text(json.dumps({"type": "authorized_user", "client_id": "x", "refresh_token": "y"}))
    broken = tmp_path / "broken.json"
    info = json.loads(emulator.credentials_file.read_text())
    broken.write_text(
        json.dumps({**info, "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"})
    )
    for path, message in [
        (tmp_path / "missing.json", "cannot read"),
        (not_json, "not JSON"),
        (user, "authorized_user credentials, not a service-account key"),
        (broken, "private key is unreadable"),
    ]:
        with pytest.raises(StoreMisconfigured, match=message) as error:
            store_for(emulator, bare, credentials_file=str(path))
        assert "SCORE_GCS__CREDENTIALS_FILE" in str(error.value)
    with pytest.raises(StoreMisconfigured, match=r"emulator.*SCORE_GCS__CREDENTIALS_FILE"):
        store_for(emulator, bare, credentials_file=None)
    with pytest.raises(StoreMisconfigured, match="SCORE_GCS__BUCKET"):
        store_for(emulator, "")


def test_an_unreachable_store_is_unavailable_not_missing(emulator: GcsEmulator) -> None:
    config = GcsConfig(
        bucket="b", endpoint=f"http://127.0.0.1:{free_port()}", credentials_file=str(emulator.credentials_file)
    )
    store = GcsStore(config, retry_timeout=1.0)
    for call in (
        lambda: store.head(OBJECT_KEY),
        lambda: store.read_document(OBJECT_KEY),
        lambda: store.write_document(OBJECT_KEY, b"x"),
        lambda: list(store.list("data/")),
        lambda: store.start_upload(OBJECT_KEY, 1),
        lambda: store.delete(OBJECT_KEY),
    ):
        with pytest.raises(StoreUnavailable) as error:
            call()
        assert "127.0.0.1" not in str(error.value)  # no URLs in messages
    assert store.sign_read(OBJECT_KEY, None, None, 60).startswith(config.endpoint or "")  # signing is local


# -- V4 signing, verified offline against the service account's public key ---------------------------


def verify_v4(url: str, method: str, sent_headers: dict[str, str], public_key: rsa.RSAPublicKey) -> dict[str, str]:
    """Recompute the V4 string to sign from the spec and check the RSA signature; return the query."""
    split = urlsplit(url)
    params = dict(parse_qsl(split.query, keep_blank_values=True))
    signature = params.pop("X-Goog-Signature")
    canonical_query = "&".join(sorted(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in params.items()))
    signed = params["X-Goog-SignedHeaders"].split(";")
    headers = {"host": split.netloc, **{k.lower(): v for k, v in sent_headers.items()}}
    canonical_headers = "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in signed)
    canonical_request = "\n".join(
        [method, split.path, canonical_query, canonical_headers, ";".join(signed), "UNSIGNED-PAYLOAD"]
    )
    scope = params["X-Goog-Credential"].split("/", 1)[1]
    string_to_sign = "\n".join(
        ["GOOG4-RSA-SHA256", params["X-Goog-Date"], scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    public_key.verify(bytes.fromhex(signature), string_to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())
    return params


def service_account_public_key(path: Path) -> rsa.RSAPublicKey:
    info = json.loads(path.read_text())
    private = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    return private.public_key()


@pytest.fixture
def offline(tmp_path: Path) -> tuple[GcsStore, rsa.RSAPublicKey, str]:
    """A store for Google's endpoint: constructing it and signing touch no network."""
    key_file = write_service_account(tmp_path / "sa.json", email="signer@proj.iam.gserviceaccount.com")
    store = GcsStore(GcsConfig(bucket="score-bucket", project="p", credentials_file=str(key_file)))
    return store, service_account_public_key(key_file), json.loads(key_file.read_text())["client_email"]


def test_signed_part_put_binds_method_object_and_host_only(offline: tuple[GcsStore, rsa.RSAPublicKey, str]) -> None:
    store, public_key, email = offline
    upload_id = "c" * 32
    url = store.sign_upload_part(OBJECT_KEY, upload_id, 3, 0, 10, 3600)
    assert url.startswith(f"https://storage.googleapis.com/score-bucket/multipart/{upload_id}/part-00000003?")
    sent = {"Content-Type": "application/octet-stream", "Content-Length": "10", "Content-MD5": md5_b64(b"x" * 10)}
    params = verify_v4(url, "PUT", sent, public_key)  # what the client sends does not break the signature
    assert params["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert params["X-Goog-SignedHeaders"] == "host"
    assert params["X-Goog-Expires"] == "3600"
    date, region, service, kind = params["X-Goog-Credential"].split("/")[1:]
    assert params["X-Goog-Credential"].startswith(f"{email}/")
    assert (region, service, kind) == ("auto", "storage", "goog4_request")
    signed_at = datetime.strptime(params["X-Goog-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - signed_at).total_seconds()) < 300 and date == params["X-Goog-Date"][:8]
    with pytest.raises(InvalidSignature):
        verify_v4(url, "GET", sent, public_key)  # a PUT URL is no GET URL
    with pytest.raises(InvalidSignature):
        verify_v4(url.replace("part-00000003", "part-00000004"), "PUT", sent, public_key)


def test_signed_ranged_get_binds_the_range(offline: tuple[GcsStore, rsa.RSAPublicKey, str]) -> None:
    store, public_key, _ = offline
    url = store.sign_read(OBJECT_KEY, 100, 900, 86400)
    params = verify_v4(url, "GET", {"Range": "bytes=100-999"}, public_key)
    assert params["X-Goog-SignedHeaders"] == "host;range"
    assert params["X-Goog-Expires"] == "86400"
    # ``expires`` is for the Java client's resume (tests/contract/test_java_url_expiry.py): signed with the
    # rest (verify_v4 passed with it in the canonical query), at most the signature's own expiry.
    signed_at = datetime.strptime(params["X-Goog-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    assert signed_at + 86400 - 2 <= int(params["expires"]) <= signed_at + 86400
    with pytest.raises(InvalidSignature):
        verify_v4(
            url.replace(f"expires={params['expires']}", "expires=9999999999"),
            "GET",
            {"Range": "bytes=100-999"},
            public_key,
        )
    with pytest.raises(InvalidSignature):
        verify_v4(url, "GET", {"Range": "bytes=0-999"}, public_key)

    tail = store.sign_read(OBJECT_KEY, 4000, -1, 60)
    verify_v4(tail, "GET", {"Range": "bytes=4000-"}, public_key)
    whole = store.sign_read(OBJECT_KEY, None, None, 60)
    assert verify_v4(whole, "GET", {}, public_key)["X-Goog-SignedHeaders"] == "host"


def test_expiry_is_capped_at_seven_days_and_keys_are_encoded(offline: tuple[GcsStore, rsa.RSAPublicKey, str]) -> None:
    store, public_key, _ = offline
    params = verify_v4(store.sign_read(OBJECT_KEY, None, None, 30 * 86400), "GET", {}, public_key)
    assert params["X-Goog-Expires"] == str(MAX_SIGNED_TTL) == "604800"
    url = store.sign_read(MARKER_KEY, None, None, 60)
    assert "|" not in url and '"' not in url and "{" not in url
    verify_v4(url, "GET", {}, public_key)


def test_signed_urls_point_at_a_configured_endpoint(emulator: GcsEmulator, tmp_path: Path) -> None:
    store = store_for(emulator, "b", endpoint=emulator.endpoint + "/")
    url = store.sign_read(OBJECT_KEY, 0, 10, 60)
    assert url.startswith(f"{emulator.endpoint}/b/{OBJECT_KEY}?")
    verify_v4(url, "GET", {"Range": "bytes=0-9"}, service_account_public_key(emulator.credentials_file))


# -- end to end: real score-server on the emulator, real score-client ---------------------------------


def test_client_upload_publish_download_through_the_emulator(emulator: GcsEmulator, tmp_path: Path) -> None:
    bucket = emulator.fresh_bucket()
    server = ScoreServer(tmp_path / "d", part_size=65536, extra_env=emulator.score_env(bucket)).start()
    try:
        token = server.token("score.WRITE score.READ song.WRITE")
        registry = Registry(server, token)
        work = tmp_path / "work"
        work.mkdir()
        client = Client(server, token, work)
        files = [
            make_file(tmp_path / "in" / "empty.txt", 0),
            make_file(tmp_path / "in" / "many.bam", 40 * 65536 + 1234, seed=11),  # 41 parts: recursive compose
        ]
        analysis_id, ids = registry.submit(STUDY, files)
        result = client.run(
            "upload", "--analysis-id", analysis_id, "--study-id", STUDY, "--input-dir", str(tmp_path / "in")
        )
        assert result.returncode == 0, result.stderr
        assert bucket_names(emulator, bucket, "multipart/") == []
        assert sorted(bucket_names(emulator, bucket, "data/")) == sorted(
            [SENTINEL_KEY, *(f"data/{i}" for i in ids.values()), *(f"data/{i}.meta" for i in ids.values())]
        )
        assert registry.publish(STUDY, analysis_id).status_code == 200

        out = tmp_path / "out"
        result = client.run(
            "download",
            "--analysis-id",
            analysis_id,
            "--study-id",
            STUDY,
            "--output-dir",
            str(out),
            "--output-layout",
            "filename",
        )
        assert result.returncode == 0, result.stderr
        for f in files:
            assert md5_of(out / f.name) == md5_of(f)
            assert (out / f.name).read_bytes() == f.read_bytes()

        # The server signs each part's Range exactly as score-client sends it (the emulator does not check).
        spec = httpx.get(
            f"{server.url}/download/{ids['many.bam']}",
            params={"offset": 0, "length": -1},
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        assert len(spec["parts"]) == 41
        public_key = service_account_public_key(emulator.credentials_file)
        for part in spec["parts"]:
            sent = {"Range": f"bytes={part['offset']}-{part['offset'] + part['partSize'] - 1}"}
            assert verify_v4(part["url"], "GET", sent, public_key)["X-Goog-SignedHeaders"] == "host;range"

        source = files[1].read_bytes()
        ranged_out = tmp_path / "ranged"
        result = client.run(
            "download",
            "--object-id",
            ids["many.bam"],
            "--output-dir",
            str(ranged_out),
            "--offset",
            "65000",
            "--length",
            "70000",
        )
        assert result.returncode == 0, result.stderr
        assert (ranged_out / "many.bam").read_bytes() == source[65000:135000]
    finally:
        server.stop()


def test_a_part_put_late_after_completion_is_swept_after_the_grace_not_the_lifetime(store: GcsStore) -> None:
    """A part URL stays valid for the upload's lifetime (a signed GCS URL cannot be revoked): a PUT through it
    after the upload completed makes a part object no upload will ever use. The sweep removes it once the
    short grace has passed, not six days later, and the object it was part of is untouched."""
    from score.server.services.cleanup import clean_stale_uploads
    from score.server.services.uploads import UploadService
    from score.server.settings import ServerSettings

    key = OBJECT_KEY
    body = body_of(1000, seed=5)
    upload_id = store.start_upload(key, len(body))
    url = store.sign_upload_part(key, upload_id, 1, 0, len(body), 3600)
    assert put_part(url, body).status_code == 200
    store.complete_upload(key, upload_id, store.list_uploaded_parts(key, upload_id))
    assert [u.upload_id for u in store.list_uploads()] == []

    assert put_part(url, body_of(1000, seed=6)).status_code == 200  # late, through the still-valid URL
    orphans = [u for u in store.list_uploads() if u.upload_id == upload_id]
    assert [u.key for u in orphans] == [""]  # no record: nothing can complete it

    uploads = UploadService(store, ServerSettings())
    week = 7 * 86400
    assert clean_stale_uploads(store, uploads, week).orphans == []  # within the grace: left alone
    report = clean_stale_uploads(store, uploads, week, now=time.time() + 120)
    assert report.orphans == [f"store upload {upload_id} of (unfinished start)"]
    assert list(store.list_uploads()) == []
    assert store.read_document(key) == body
