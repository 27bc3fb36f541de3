"""LocalStore on real files, and its /_store data endpoint over real HTTP (uvicorn + httpx + curl)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from score.server.storage.base import StoreError, StoreFull, UploadedPart, UploadNotFound
from score.server.storage.local import LocalStore, load_or_create_signing_key, validate_key
from score.server.storage.local import store as local_module
from score.server.storage.local.files import TMP_PREFIX
from tests.integration.store_backends import LocalDataPlane

MiB = 1024 * 1024
OBJECT_KEY = "data/0b7a7d3e-5c39-4b8f-9d4e-2f1a6c3b9e01"
MARKER_KEY = (
    "upload/0b7a7d3e-5c39-4b8f-9d4e-2f1a6c3b9e01_" + "ab" * 16 + '/part-0000000b|{"partNumber":11,'
    '"md5":"9e107d9d372bb6826bd81d3542a419d6","etag":"9e107d9d372bb6826bd81d3542a419d6"}'
)
SRC = str(Path(__file__).resolve().parents[2] / "src")


def md5_hex(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()  # noqa: S324


def md5_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324


# -- a real server ---------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path, local_data_plane: LocalDataPlane) -> LocalStore:
    store = LocalStore(tmp_path / "store", local_data_plane.base_url)
    local_data_plane.app.state.context = SimpleNamespace(store=store)
    return store


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as http:
        yield http


@pytest.fixture(autouse=True)
def access_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="score.store.access")
    return caplog


def events(caplog: pytest.LogCaptureFixture, event: str | None = None) -> list[dict]:
    found = [json.loads(r.getMessage()) for r in list(caplog.records) if r.name == "score.store.access"]
    return [e for e in found if event is None or e["event"] == event]


def wait_for_event(caplog: pytest.LogCaptureFixture, event: str, timeout: float = 10) -> dict:
    """The server logs after the last byte went out, possibly after the client has it: poll briefly."""
    deadline = time.monotonic() + timeout
    while True:
        found = events(caplog, event)
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no {event!r} access log line; got {events(caplog)}"
        time.sleep(0.02)


def error_message(response: httpx.Response) -> str:
    body = response.json()
    assert body["status"] == response.status_code
    assert body["path"].startswith("/_store/")
    return body["message"]


def put(client: httpx.Client, url: str, body: bytes, with_md5: bool = True, **headers: str) -> httpx.Response:
    if with_md5:
        headers.setdefault("Content-MD5", md5_b64(body))
    return client.put(url, content=body, headers=headers)


def upload_parts(store: LocalStore, key: str, payload: bytes, part_size: int) -> tuple[str, list[UploadedPart]]:
    """Start an upload and return its id with the part plan (not yet sent)."""
    upload_id = store.start_upload(key, len(payload))
    parts = [
        UploadedPart(n, md5_hex(payload[offset : offset + part_size]), len(payload[offset : offset + part_size]))
        for n, offset in enumerate(range(0, len(payload), part_size), start=1)
    ]
    return upload_id, parts


def part_url(store: LocalStore, key: str, upload_id: str, part: UploadedPart, part_size: int) -> str:
    return store.sign_upload_part(key, upload_id, part.part_number, (part.part_number - 1) * part_size, part.size, 60)


def store_part(store: LocalStore, key: str, upload_id: str, number: int, offset: int, body: bytes) -> str:
    """Write a part through the store's own writer (what the PUT handler does)."""
    writer = store.begin_part_write(key, upload_id, number, offset, len(body))
    try:
        writer.write(body)
        return writer.finish(md5_hex(body))
    finally:
        writer.close()


# -- keys ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/data/x",
        "data//x",
        "data/x/",
        "data/./x",
        "data/../x",
        "..",
        ".",
        "data/x\x00y",
        "data/x\ny",
        "data\\x",
        "data/.score-tmp-0123",
        "d/" + "x" * 256,
        "d/" + "/".join(["y" * 200] * 6),
    ],
)
def test_invalid_keys_are_rejected_everywhere(store: LocalStore, key: str) -> None:
    with pytest.raises(ValueError, match="invalid key"):
        validate_key(key)
    for call in (
        lambda: store.write_document(key, b"x"),
        lambda: store.read_document(key),
        lambda: store.head(key),
        lambda: store.delete(key),
        lambda: store.start_upload(key, 10),
        lambda: store.sign_read(key, None, None, 60),
    ):
        with pytest.raises(ValueError):
            call()
    assert list(store.objects.iterdir()) == []


@pytest.mark.parametrize("key", [OBJECT_KEY, OBJECT_KEY + ".meta", "upload/a_b/.meta", MARKER_KEY, "data/ü né"])
def test_valid_keys_round_trip(store: LocalStore, key: str) -> None:
    store.write_document(key, b"{}")
    assert store.read_document(key) == b"{}"
    assert [head.key for head in store.list(key)] == [key]
    assert store.path_of(key).is_relative_to(store.objects)


# -- documents, listing, head, delete --------------------------------------------------------------


def test_documents_are_written_read_and_overwritten_without_leftovers(store: LocalStore) -> None:
    assert store.read_document("data/x.meta") is None
    store.write_document("data/x.meta", b"one")
    store.write_document("data/x.meta", b"two")
    assert store.read_document("data/x.meta") == b"two"
    assert os.listdir(store.objects / "data") == ["x.meta"]
    assert store.read_document("data") is None  # a folder is not a document


def test_failed_document_write_keeps_the_old_document_and_no_temp_file(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write_document("data/x.meta", b"old")

    def crash(*_args: object, **_kwargs: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(local_module.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        store.write_document("data/x.meta", b"new")
    monkeypatch.undo()
    assert store.read_document("data/x.meta") == b"old"
    assert os.listdir(store.objects / "data") == ["x.meta"]


def test_a_killed_writer_never_leaves_a_half_written_document(store: LocalStore, tmp_path: Path) -> None:
    versions = [bytes([65 + n]) * (256 * 1024) for n in range(4)]
    script = (
        "import sys; from pathlib import Path; from score.server.storage.local import LocalStore\n"
        f"s = LocalStore(Path(sys.argv[1]), 'http://x', b'k' * 32)\n"
        "i = 0\n"
        "while True:\n"
        f"    s.write_document('data/x.meta', bytes([65 + i % 4]) * {256 * 1024}); i += 1\n"
        "    print(i, flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    for _ in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", script, str(store.root)], env=env, stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        for _ in range(5):
            child.stdout.readline()
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert store.read_document("data/x.meta") in versions
    assert [head.key for head in store.list("")] == ["data/x.meta"]


def test_list_skips_temp_files_and_refuses_prefixes_that_leave_the_store(store: LocalStore) -> None:
    """(Order and prefix semantics: tests/integration/test_object_store_contract.py, on every store.)"""
    store.write_document("d/a/b", b"b")
    (store.objects / "d" / ".score-tmp-deadbeef").write_bytes(b"partial")
    (store.objects / "d" / "a" / ".score-tmp-cafe").write_bytes(b"partial")
    assert [h.key for h in store.list("")] == ["d/a/b"]
    assert [h.key for h in store.list("d/.score-tmp")] == []
    with pytest.raises(ValueError):
        list(store.list("../"))


def test_delete_is_idempotent_and_prunes_empty_folders(store: LocalStore) -> None:
    store.write_document("upload/a_b/.meta", b"x")
    store.write_document("upload/a_b/part-1", b"")
    store.write_document("upload/keep", b"")
    store.delete("upload/a_b/.meta")
    assert (store.objects / "upload" / "a_b").is_dir()
    store.delete("upload/a_b/part-1")
    assert not (store.objects / "upload" / "a_b").exists()
    assert (store.objects / "upload" / "keep").exists()
    store.delete("upload/a_b/part-1")
    store.delete("upload")  # a folder, not a key: nothing happens
    store.delete("upload/keep")
    assert list(store.objects.iterdir()) == []
    assert store.objects.is_dir()


# -- signing key ----------------------------------------------------------------------------------


def test_signing_key_is_created_private_and_shared_by_stores_on_one_data_dir(tmp_path: Path) -> None:
    first = LocalStore(tmp_path / "store", "http://a")
    key_file = tmp_path / "keys" / "url-signing.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_bytes()) == 32
    second = LocalStore(tmp_path / "store", "http://b")
    url = urlsplit(first.sign_read(OBJECT_KEY, 0, 10, 60))
    second.signer.verify("GET", OBJECT_KEY, parse_qsl(url.query))


def test_concurrent_key_creation_agrees_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "url-signing.key"
    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: load_or_create_signing_key(path), range(16)))
    assert len(set(keys)) == 1
    assert os.listdir(path.parent) == ["url-signing.key"]


def test_explicit_signing_key_needs_no_key_file_and_short_key_file_is_refused(tmp_path: Path) -> None:
    LocalStore(tmp_path / "store", "http://a", signing_key=b"s" * 32)
    assert not (tmp_path / "keys").exists()
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "url-signing.key").write_bytes(b"")
    with pytest.raises(StoreError, match="delete it to generate a new one"):
        LocalStore(tmp_path / "store", "http://a")


# -- multipart upload through the store -----------------------------------------------------------


def test_start_upload_reserves_the_space_of_the_data_file_and_writes_its_state(store: LocalStore) -> None:
    free = store.disk_space().free
    upload_id = store.start_upload(OBJECT_KEY, 64 * MiB)
    folder = store.multipart / upload_id
    assert len(upload_id) == 32 and int(upload_id, 16) >= 0
    info = (folder / "data").stat()
    assert info.st_size == 64 * MiB
    assert info.st_blocks * 512 >= 64 * MiB  # reserved (fallocate): the upload cannot run out of room
    assert free - store.disk_space().free >= 60 * MiB  # other writers on the disk move the figure a little
    meta = json.loads((folder / "upload.json").read_bytes())
    assert (meta["key"], meta["size"], meta["reserved"]) == (OBJECT_KEY, 64 * MiB, True)
    assert store.list_uploaded_parts(OBJECT_KEY, upload_id) == []
    assert not [name for name in os.listdir(store.multipart) if name.startswith(".")]


def test_part_and_read_urls_carry_the_signed_parameters(store: LocalStore, local_data_plane: LocalDataPlane) -> None:
    upload_id = store.start_upload(MARKER_KEY, 100)
    url = urlsplit(store.sign_upload_part(MARKER_KEY, upload_id, 2, 50, 50, 60))
    assert f"{url.scheme}://{url.netloc}" == local_data_plane.base_url
    assert url.path.startswith("/_store/upload/") and "|" not in url.path and "{" not in url.path
    query = dict(parse_qsl(url.query))
    assert [k for k in query] == ["op", "uploadId", "partNumber", "offset", "size", "expires", "signature"]
    assert (query["op"], query["uploadId"], query["partNumber"], query["offset"], query["size"]) == (
        "put",
        upload_id,
        "2",
        "50",
        "50",
    )
    assert abs(int(query["expires"]) - (time.time() + 60)) < 5
    ranged = dict(parse_qsl(urlsplit(store.sign_read(OBJECT_KEY, 100, 50, 60)).query))
    assert (ranged["op"], ranged["range"]) == ("get", "100-149")
    assert dict(parse_qsl(urlsplit(store.sign_read(OBJECT_KEY, 100, -1, 60)).query))["range"] == "100-"
    assert "range" not in dict(parse_qsl(urlsplit(store.sign_read(OBJECT_KEY, None, None, 60)).query))
    with pytest.raises(ValueError, match="empty byte range"):
        store.sign_read(OBJECT_KEY, 0, 0, 60)
    with pytest.raises(ValueError):
        store.sign_upload_part(OBJECT_KEY, upload_id, 0, 0, 10, 60)
    with pytest.raises(UploadNotFound):
        store.sign_upload_part(OBJECT_KEY, "../../etc", 1, 0, 10, 60)


def test_complete_assembles_in_place_and_cleans_up(store: LocalStore) -> None:
    payload = os.urandom(25_000)
    upload_id, parts = upload_parts(store, OBJECT_KEY, payload, 10_000)
    for part in reversed(parts):
        offset = (part.part_number - 1) * 10_000
        body = payload[offset : offset + part.size]
        assert store_part(store, OBJECT_KEY, upload_id, part.part_number, offset, body) == part.etag
    assert store.list_uploaded_parts(OBJECT_KEY, upload_id) == parts
    store.complete_upload(OBJECT_KEY, upload_id, parts)
    assert store.path_of(OBJECT_KEY).read_bytes() == payload
    head = store.head(OBJECT_KEY)
    assert head is not None and head.size == 25_000
    assert not (store.multipart / upload_id).exists()
    with pytest.raises(UploadNotFound, match="already completed or aborted"):
        store.list_uploaded_parts(OBJECT_KEY, upload_id)
    with pytest.raises(UploadNotFound):
        store.complete_upload(OBJECT_KEY, upload_id, parts)
    assert [h.key for h in store.list("data/")] == [OBJECT_KEY]


def test_complete_refuses_parts_that_do_not_check_out(store: LocalStore) -> None:
    payload = os.urandom(30)
    upload_id, parts = upload_parts(store, OBJECT_KEY, payload, 10)
    store_part(store, OBJECT_KEY, upload_id, 1, 0, payload[:10])
    store_part(store, OBJECT_KEY, upload_id, 3, 20, payload[20:])
    with pytest.raises(ValueError, match="part 2 was never stored"):
        store.complete_upload(OBJECT_KEY, upload_id, parts)
    store_part(store, OBJECT_KEY, upload_id, 2, 10, payload[10:20])
    wrong = [parts[0], UploadedPart(2, "0" * 32, 10), parts[2]]
    with pytest.raises(ValueError, match="part 2 has ETag"):
        store.complete_upload(OBJECT_KEY, upload_id, wrong)
    with pytest.raises(ValueError, match="parts are missing"):
        store.complete_upload(OBJECT_KEY, upload_id, parts[:2])
    with pytest.raises(ValueError, match="ascending order without repeats"):
        store.complete_upload(OBJECT_KEY, upload_id, [parts[0], parts[0], parts[1], parts[2]])
    with pytest.raises(ValueError, match="tile the object contiguously"):
        store.complete_upload(OBJECT_KEY, upload_id, [parts[0], parts[2]])
    with pytest.raises(UploadNotFound, match="another object"):
        store.complete_upload(OBJECT_KEY + "x", upload_id, parts)
    assert store.head(OBJECT_KEY) is None
    quoted = [UploadedPart(p.part_number, f'"{p.etag.upper()}"', p.size) for p in parts]
    store.complete_upload(OBJECT_KEY, upload_id, quoted)  # ETags as HTTP headers quote them
    assert store.read_document(OBJECT_KEY) == payload


def test_abort_discards_the_upload_and_ignores_unknown_ids(store: LocalStore) -> None:
    upload_id = store.start_upload(OBJECT_KEY, 10)
    store_part(store, OBJECT_KEY, upload_id, 1, 0, b"0123456789")
    store.abort_upload(OBJECT_KEY, upload_id)
    assert os.listdir(store.multipart) == []
    with pytest.raises(UploadNotFound):
        store.list_uploaded_parts(OBJECT_KEY, upload_id)
    store.abort_upload(OBJECT_KEY, upload_id)
    store.abort_upload(OBJECT_KEY, "not-an-id")
    with pytest.raises(UploadNotFound):
        store.list_uploaded_parts(OBJECT_KEY, "f" * 32)


def test_a_late_part_write_cannot_touch_a_completed_object(store: LocalStore) -> None:
    payload = b"A" * 10 + b"B" * 10
    upload_id, parts = upload_parts(store, OBJECT_KEY, payload, 10)
    store_part(store, OBJECT_KEY, upload_id, 1, 0, payload[:10])
    store_part(store, OBJECT_KEY, upload_id, 2, 10, payload[10:])
    straggler = store.begin_part_write(OBJECT_KEY, upload_id, 3, 0, 10)  # opened before completion
    store.complete_upload(OBJECT_KEY, upload_id, parts)
    with pytest.raises(UploadNotFound):
        straggler.write(b"X" * 10)
    straggler.close()
    assert store.read_document(OBJECT_KEY) == payload


def test_interrupted_cleanup_after_complete_reads_as_completed(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = b"x" * 10
    upload_id, parts = upload_parts(store, OBJECT_KEY, payload, 10)
    store_part(store, OBJECT_KEY, upload_id, 1, 0, payload)
    monkeypatch.setattr(local_module.shutil, "rmtree", lambda *_a, **_k: None)  # "crash" before clean-up
    store.complete_upload(OBJECT_KEY, upload_id, parts)
    monkeypatch.undo()
    assert (store.multipart / upload_id).exists()
    with pytest.raises(UploadNotFound):
        store.list_uploaded_parts(OBJECT_KEY, upload_id)
    with pytest.raises(UploadNotFound):
        store.complete_upload(OBJECT_KEY, upload_id, parts)
    assert store.read_document(OBJECT_KEY) == payload
    store.abort_upload(OBJECT_KEY, upload_id)
    assert not (store.multipart / upload_id).exists()


# -- PUT over HTTP --------------------------------------------------------------------------------


def test_put_part_writes_records_and_answers_the_etag(
    store: LocalStore, client: httpx.Client, access_log: pytest.LogCaptureFixture
) -> None:
    payload = os.urandom(3 * MiB + 123)
    upload_id, parts = upload_parts(store, OBJECT_KEY, payload, 2 * MiB)
    response = put(client, part_url(store, OBJECT_KEY, upload_id, parts[1], 2 * MiB), payload[2 * MiB :])
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == f'"{parts[1].etag}"'
    assert store.list_uploaded_parts(OBJECT_KEY, upload_id) == [parts[1]]
    record = json.loads((store.multipart / upload_id / "parts" / "00000002.json").read_bytes())
    assert record == {"partNumber": 2, "etag": parts[1].etag, "size": MiB + 123, "offset": 2 * MiB}
    line = wait_for_event(access_log, "part_put")
    expected = {"event": "part_put", "key": OBJECT_KEY, "uploadId": upload_id, "partNumber": 2}
    assert line == {**expected, "bytes": MiB + 123, "status": 200}
    assert all("signature" not in r.getMessage() for r in access_log.records)


def test_put_without_content_md5_is_accepted(store: LocalStore, client: httpx.Client) -> None:
    upload_id, parts = upload_parts(store, OBJECT_KEY, b"0123456789", 10)
    response = put(client, part_url(store, OBJECT_KEY, upload_id, parts[0], 10), b"0123456789", with_md5=False)
    assert response.status_code == 200
    assert response.headers["etag"] == f'"{md5_hex(b"0123456789")}"'


def test_content_md5_mismatch_is_bad_digest_and_records_nothing(
    store: LocalStore, client: httpx.Client, access_log: pytest.LogCaptureFixture
) -> None:
    upload_id, parts = upload_parts(store, OBJECT_KEY, b"0123456789", 10)
    url = part_url(store, OBJECT_KEY, upload_id, parts[0], 10)
    response = put(client, url, b"0123456789", **{"Content-MD5": md5_b64(b"something else")})
    assert response.status_code == 400
    message = error_message(response)
    assert message.startswith("BadDigest: part 1 arrived with MD5 781e5e245d69b566979b86e28d23f2c7")
    assert "upload the part again" in message
    assert store.list_uploaded_parts(OBJECT_KEY, upload_id) == []
    assert wait_for_event(access_log, "part_put_failed")["status"] == 400
    assert events(access_log, "part_put") == []


def _data_bytes(store: LocalStore, upload_id: str) -> bytes:
    return (store.multipart / upload_id / "data").read_bytes()


def test_a_refused_replay_of_a_stored_part_changes_nothing(store: LocalStore, client: httpx.Client) -> None:
    upload_id, parts = upload_parts(store, OBJECT_KEY, b"0123456789", 10)
    url = part_url(store, OBJECT_KEY, upload_id, parts[0], 10)
    assert put(client, url, b"0123456789").status_code == 200
    before = _data_bytes(store, upload_id)
    refused = put(client, url, b"9876543210", **{"Content-MD5": md5_b64(b"0123456789")})
    assert refused.status_code == 400 and "BadDigest" in error_message(refused)
    assert store.list_uploaded_parts(OBJECT_KEY, upload_id) == parts  # the record stays
    assert _data_bytes(store, upload_id) == before  # and so do the bytes


def test_a_stored_part_is_immutable(store: LocalStore, client: httpx.Client) -> None:
    upload_id, parts = upload_parts(store, OBJECT_KEY, b"0123456789", 10)
    url = part_url(store, OBJECT_KEY, upload_id, parts[0], 10)
    assert put(client, url, b"0123456789").status_code == 200
    before = _data_bytes(store, upload_id)
    # other bytes with their own matching Content-MD5: refused, nothing written
    other = put(client, url, b"abcdefghij", **{"Content-MD5": md5_b64(b"abcdefghij")})
    assert other.status_code == 409 and "cannot be replaced" in error_message(other)
    assert put(client, url, b"abcdefghij").status_code == 409  # nor without Content-MD5
    assert _data_bytes(store, upload_id) == before
    # the same bytes again (a retry whose answer was lost): acknowledged with the same ETag
    again = put(client, url, b"0123456789")
    assert again.status_code == 200 and again.headers["etag"] == f'"{md5_hex(b"0123456789")}"'
    assert store.list_uploaded_parts(OBJECT_KEY, upload_id) == parts
    store.complete_upload(OBJECT_KEY, upload_id, parts)
    assert store.read_document(OBJECT_KEY) == b"0123456789"


def test_files_and_folders_are_private(store: LocalStore) -> None:
    upload_id = store.start_upload(OBJECT_KEY, 10)
    store.write_document("data/some/deep/doc.meta", b"{}")
    for path in [store.root, *store.root.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}: readable by other users"
    assert (store.multipart / upload_id / "data").stat().st_mode & 0o777 == 0o600


def test_symbolic_links_under_the_store_are_never_followed(store: LocalStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "secret").write_bytes(b"not yours")
    (outside / "sub" / "secret").write_bytes(b"not yours either")
    (store.objects / "data").mkdir(mode=0o700, exist_ok=True)
    os.symlink(outside / "secret", store.objects / "data" / "linked-file")
    os.symlink(outside, store.objects / "data" / "linked-dir")
    for key in ("data/linked-file", "data/linked-dir/secret", "data/linked-dir/sub/secret"):
        assert store.head(key) is None
        assert store.read_document(key) is None
        assert store.open_read(key) is None
    assert [h.key for h in store.list("data/")] == []
    with pytest.raises(StoreError, match="link"):
        store.write_document("data/linked-dir/new", b"x")
    assert not (outside / "new").exists()
    store.delete("data/linked-dir/secret")
    assert (outside / "secret").read_bytes() == b"not yours"


def test_an_upload_that_does_not_fit_is_refused_before_anything_is_written(store: LocalStore) -> None:
    free = store.disk_space().free
    with pytest.raises(StoreFull, match="free"):
        store.start_upload(OBJECT_KEY, free + 10 * 1024**3)
    assert list(store.list_uploads()) == []
    keeping = LocalStore(store.root, "http://a", signing_key=b"k" * 32, min_free_bytes=free - MiB)
    with pytest.raises(StoreFull, match="keeps"):
        keeping.start_upload(OBJECT_KEY, 2 * MiB)  # fits on the disk but not beside the reserve
    assert keeping.disk_space().low is False


def test_list_uploads_finds_uploads_starts_that_never_finished_and_temporary_leftovers(store: LocalStore) -> None:
    live = store.start_upload(OBJECT_KEY, 10)
    half = store.multipart / f"{TMP_PREFIX}{'a' * 32}"
    half.mkdir()
    old = time.time() - 2 * 3600
    os.utime(half, (old, old))
    store.write_document("upload/x_y/.meta", b"{}")
    left = store.objects / "upload" / "x_y" / f"{TMP_PREFIX}{'b' * 32}"  # a writer killed mid-document
    left.write_bytes(b"half")
    fresh = left.with_name(f"{TMP_PREFIX}{'c' * 32}")  # one being written right now
    fresh.write_bytes(b"live")
    os.utime(left, (old, old))
    found = {(u.key, u.upload_id) for u in store.list_uploads()}
    assert found == {(OBJECT_KEY, live), ("", half.name), (f"upload/x_y/{left.name}", left.name)}
    for upload in store.list_uploads():
        store.abort_upload(upload.key, upload.upload_id)
    assert list(store.list_uploads()) == []
    assert not left.exists() and fresh.exists() and store.read_document("upload/x_y/.meta") == b"{}"


def test_wrong_content_length_or_chunked_body_is_refused(store: LocalStore, client: httpx.Client) -> None:
    upload_id, parts = upload_parts(store, OBJECT_KEY, b"0123456789", 10)
    url = part_url(store, OBJECT_KEY, upload_id, parts[0], 10)
    short = put(client, url, b"012345678")
    assert short.status_code == 400
    assert "must be sent with Content-Length: 10" in error_message(short)
    assert "got 9" in error_message(short)
    chunked = client.put(url, content=iter([b"01234", b"56789"]))
    assert chunked.status_code == 400
    assert "got none" in error_message(chunked)
    bad_md5 = put(client, url, b"0123456789", **{"Content-MD5": "not-base64"})
    assert bad_md5.status_code == 400
    assert error_message(bad_md5).startswith("InvalidDigest")
    assert store.list_uploaded_parts(OBJECT_KEY, upload_id) == []


def test_body_cut_short_is_not_recorded(
    store: LocalStore, local_data_plane: LocalDataPlane, access_log: pytest.LogCaptureFixture
) -> None:
    upload_id, parts = upload_parts(store, OBJECT_KEY, b"x" * 2 * MiB, 2 * MiB)
    target = urlsplit(part_url(store, OBJECT_KEY, upload_id, parts[0], 2 * MiB))
    with socket.create_connection(("127.0.0.1", urlsplit(local_data_plane.base_url).port)) as raw:
        head = f"PUT {target.path}?{target.query} HTTP/1.1\r\nHost: x\r\nContent-Length: {2 * MiB}\r\n\r\n"
        raw.sendall(head.encode() + b"x" * (MiB + 5))
        time.sleep(0.2)
    line = wait_for_event(access_log, "part_put_aborted")
    assert line["bytes"] <= MiB + 5 and line["partNumber"] == 1
    assert store.list_uploaded_parts(OBJECT_KEY, upload_id) == []
    assert [r for r in access_log.records if r.levelno >= logging.WARNING] == []


def test_tampered_or_expired_part_urls_are_refused_before_reading(store: LocalStore, client: httpx.Client) -> None:
    upload_id, parts = upload_parts(store, OBJECT_KEY, b"0123456789", 10)
    url = part_url(store, OBJECT_KEY, upload_id, parts[0], 10)
    for tampered in (url.replace("offset=0", "offset=1"), url[:-4] + "0000", url.replace("/data/", "/data/x")):
        response = put(client, tampered, b"0123456789")
        assert response.status_code == 403
        assert error_message(response).startswith("signature does not match")
        assert response.json()["error"] == "Forbidden"
    query = store.signer.sign(
        "PUT", OBJECT_KEY, {"op": "put", "uploadId": upload_id, "partNumber": 1, "offset": 0, "size": 10}, 1_000
    )
    expired = f"{store.base_url}/_store/{OBJECT_KEY}?" + "&".join(f"{k}={v}" for k, v in query.items())
    response = put(client, expired, b"0123456789")
    assert response.status_code == 403
    assert error_message(response) == "URL expired at 1970-01-01T00:16:40+00:00; ask the server for a new URL"
    assert store.list_uploaded_parts(OBJECT_KEY, upload_id) == []


def test_put_to_unknown_or_completed_upload_is_404(store: LocalStore, client: httpx.Client) -> None:
    unknown = store.sign_upload_part(OBJECT_KEY, "e" * 32, 1, 0, 10, 60)
    response = put(client, unknown, b"0123456789")
    assert response.status_code == 404
    assert "does not exist" in error_message(response)
    upload_id, parts = upload_parts(store, OBJECT_KEY, b"0123456789", 10)
    url = part_url(store, OBJECT_KEY, upload_id, parts[0], 10)
    assert put(client, url, b"0123456789").status_code == 200
    store.complete_upload(OBJECT_KEY, upload_id, parts)
    late = put(client, url, b"XXXXXXXXXX")
    assert late.status_code == 404
    assert store.read_document(OBJECT_KEY) == b"0123456789"


def test_concurrent_parts_assemble_into_the_exact_object(
    store: LocalStore, client: httpx.Client, access_log: pytest.LogCaptureFixture
) -> None:
    payload = os.urandom(9 * MiB + 4321)
    upload_id, parts = upload_parts(store, OBJECT_KEY, payload, MiB)

    def send(part: UploadedPart) -> int:
        offset = (part.part_number - 1) * MiB
        url = part_url(store, OBJECT_KEY, upload_id, part, MiB)
        return put(client, url, payload[offset : offset + part.size]).status_code

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(send, parts)) == [200] * len(parts)
    assert store.list_uploaded_parts(OBJECT_KEY, upload_id) == parts
    store.complete_upload(OBJECT_KEY, upload_id, parts)
    assert md5_hex(store.path_of(OBJECT_KEY).read_bytes()) == md5_hex(payload)
    puts = [e for e in events(access_log, "part_put") if e["uploadId"] == upload_id]
    assert sorted(e["partNumber"] for e in puts) == list(range(1, 11))
    assert sum(e["bytes"] for e in puts) == len(payload)


# -- GET / HEAD over HTTP ------------------------------------------------------------------------


PAYLOAD = bytes(range(256)) * 40  # 10240 bytes, every offset recognisable


@pytest.fixture
def stored(store: LocalStore) -> str:
    store.write_document(OBJECT_KEY, PAYLOAD)
    return store.sign_read(OBJECT_KEY, None, None, 60)


def assert_common_headers(response: httpx.Response, length: int) -> None:
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-length"] == str(length)
    assert "last-modified" in response.headers


def test_get_without_range_returns_the_whole_object(
    stored: str, client: httpx.Client, access_log: pytest.LogCaptureFixture
) -> None:
    response = client.get(stored)
    assert response.status_code == 200
    assert response.content == PAYLOAD
    assert_common_headers(response, len(PAYLOAD))
    assert "content-range" not in response.headers
    line = wait_for_event(access_log, "get")
    assert line == {"event": "get", "key": OBJECT_KEY, "range": "0-10239", "bytes": 10240, "status": 200}


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=100-199", 100, 200),
        ("bytes=10000-", 10000, 10240),
        ("bytes=-100", 10140, 10240),
        ("bytes=-99999", 0, 10240),
        ("bytes=10200-99999", 10200, 10240),
        ("bytes=0-0", 0, 1),
    ],
)
def test_get_with_range_returns_206(stored: str, client: httpx.Client, header: str, start: int, end: int) -> None:
    response = client.get(stored, headers={"Range": header})
    assert response.status_code == 206
    assert response.content == PAYLOAD[start:end]
    assert response.headers["content-range"] == f"bytes {start}-{end - 1}/10240"
    assert_common_headers(response, end - start)


def test_head_has_the_get_headers_and_no_body(
    stored: str, client: httpx.Client, access_log: pytest.LogCaptureFixture
) -> None:
    whole = client.head(stored)
    assert whole.status_code == 200 and whole.content == b""
    assert_common_headers(whole, 10240)
    ranged = client.head(stored, headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == b""
    assert ranged.headers["content-range"] == "bytes 10-19/10240"
    assert_common_headers(ranged, 10)
    assert wait_for_event(access_log, "head")["bytes"] == 0


def test_unsatisfiable_range_is_416_with_the_size(stored: str, client: httpx.Client) -> None:
    for header in ("bytes=10240-", "bytes=20000-30000", "bytes=-0"):
        response = client.get(stored, headers={"Range": header})
        assert response.status_code == 416, header
        assert response.headers["content-range"] == "bytes */10240"
        assert "past the end of the object (10240 bytes)" in error_message(response)


def test_malformed_or_multiple_ranges_are_400(stored: str, client: httpx.Client) -> None:
    for header, text in (("bytes=abc", "malformed"), ("bytes=5-1", "end is before"), ("bytes=0-1,5-6", "multiple")):
        response = client.get(stored, headers={"Range": header})
        assert response.status_code == 400
        assert text in error_message(response)


def test_signed_window_limits_what_can_be_read(store: LocalStore, stored: str, client: httpx.Client) -> None:
    url = store.sign_read(OBJECT_KEY, 1000, 500, 60)
    whole = client.get(url)
    assert whole.status_code == 200
    assert whole.content == PAYLOAD[1000:1500]
    assert_common_headers(whole, 500)
    exact = client.get(url, headers={"Range": "bytes=1000-1499"})
    assert (exact.status_code, exact.content) == (206, PAYLOAD[1000:1500])
    inner = client.get(url, headers={"Range": "bytes=1100-1199"})
    assert (inner.status_code, inner.content) == (206, PAYLOAD[1100:1200])
    assert inner.headers["content-range"] == "bytes 1100-1199/10240"
    for outside in ("bytes=900-1099", "bytes=1000-", "bytes=-10", "bytes=1400-1500"):
        response = client.get(url, headers={"Range": outside})
        assert response.status_code == 403, outside
        assert error_message(response).startswith("range not covered by this URL's signature")
    tail = client.get(store.sign_read(OBJECT_KEY, 10000, None, 60))
    assert (tail.status_code, tail.content) == (200, PAYLOAD[10000:])


def test_signed_window_past_the_end_is_416(store: LocalStore, stored: str, client: httpx.Client) -> None:
    response = client.get(store.sign_read(OBJECT_KEY, 20000, 10, 60))
    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */10240"


def test_zero_byte_object(store: LocalStore, client: httpx.Client) -> None:
    store.put_empty(OBJECT_KEY)
    url = store.sign_read(OBJECT_KEY, None, None, 60)
    response = client.get(url)
    assert (response.status_code, response.content) == (200, b"")
    assert_common_headers(response, 0)
    assert client.head(url).status_code == 200
    assert client.get(url, headers={"Range": "bytes=0-"}).status_code == 416


def test_missing_object_is_404(store: LocalStore, client: httpx.Client) -> None:
    response = client.get(store.sign_read(OBJECT_KEY, None, None, 60))
    assert response.status_code == 404
    assert error_message(response) == (
        f"object {OBJECT_KEY} does not exist (never uploaded, or deleted); check the object id"
    )


def test_bad_or_expired_read_urls_are_403(store: LocalStore, stored: str, client: httpx.Client) -> None:
    ranged = store.sign_read(OBJECT_KEY, 0, 100, 60)
    for tampered in (
        ranged.replace("range=0-99", "range=0-9999"),
        stored + "&extra=1",
        stored.replace("op=get", "op=put"),
    ):
        response = client.get(tampered)
        assert response.status_code == 403
        assert error_message(response).startswith("signature does not match")
    upload_id = store.start_upload("data/other", 10)
    put_url = store.sign_upload_part("data/other", upload_id, 1, 0, 10, 60)
    assert client.get(put_url).status_code == 403  # a PUT signature does not grant GET
    query = store.signer.sign("GET", OBJECT_KEY, {"op": "get"}, int(time.time()) - 1)
    expired = client.get(f"{store.base_url}/_store/{OBJECT_KEY}", params=query)
    assert expired.status_code == 403
    assert "ask the server for a new URL" in error_message(expired)


def test_client_disconnect_is_logged_as_aborted_without_errors(
    store: LocalStore, client: httpx.Client, access_log: pytest.LogCaptureFixture
) -> None:
    size = 64 * MiB
    with open(store.objects / "big", "wb") as handle:
        handle.truncate(size)
    url = store.sign_read("big", None, None, 60)
    with client.stream("GET", url) as response:
        assert response.status_code == 200
        next(response.iter_raw(64 * 1024))
    line = wait_for_event(access_log, "get_aborted")
    assert line["key"] == "big" and 0 < line["bytes"] < size and line["status"] == 200
    assert [r for r in access_log.records if r.levelno >= logging.WARNING] == []
    follow_up = client.get(url, headers={"Range": "bytes=0-9"})
    assert (follow_up.status_code, follow_up.content) == (206, b"\0" * 10)


# -- curl ------------------------------------------------------------------------------------------


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, timeout=120, check=False)


def test_curl_upload_and_ranged_download(store: LocalStore, tmp_path: Path) -> None:
    payload = os.urandom(32 * MiB + 17)
    upload_id, parts = upload_parts(store, OBJECT_KEY, payload, 16 * MiB)
    for part in parts:
        offset = (part.part_number - 1) * 16 * MiB
        (tmp_path / f"part{part.part_number}").write_bytes(payload[offset : offset + part.size])
    put_seconds = 0.0
    for part in parts:
        md5_header = f"Content-MD5: {md5_b64(payload[(part.part_number - 1) * 16 * MiB :][: part.size])}"
        url = part_url(store, OBJECT_KEY, upload_id, part, 16 * MiB)
        started = time.perf_counter()
        result = curl(
            "-o", "/dev/null", "-w", "%{http_code}", "-H", md5_header, "-T", f"{tmp_path}/part{part.part_number}", url
        )
        put_seconds += time.perf_counter() - started
        assert (result.stdout, result.stderr) == ("200", "")
    store.complete_upload(OBJECT_KEY, upload_id, parts)
    url = store.sign_read(OBJECT_KEY, None, None, 60)
    target = tmp_path / "download.bin"
    started = time.perf_counter()
    result = curl("-o", str(target), "-w", "%{http_code}", url)
    get_seconds = time.perf_counter() - started
    assert result.stdout == "200"
    assert md5_hex(target.read_bytes()) == md5_hex(payload)
    ranged = curl("-r", "1000-1999", "-o", str(target), "-w", "%{http_code}", url)
    assert ranged.stdout == "206"
    assert target.read_bytes() == payload[1000:2000]
    head = curl("-I", url)
    assert head.stdout.startswith("HTTP/1.1 200")
    assert f"content-length: {len(payload)}" in head.stdout.lower()
    assert "accept-ranges: bytes" in head.stdout.lower()
    put_rate, get_rate = len(payload) / put_seconds / 1e6, len(payload) / get_seconds / 1e6
    print(f"curl over loopback: PUT {put_rate:.0f} MB/s, GET {get_rate:.0f} MB/s")


def test_curl_sees_403_for_a_tampered_url(stored: str) -> None:
    result = curl("-o", "-", "-w", "\n%{http_code}", stored.replace("op=get", "op=get&x=1"))
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "403"
    assert json.loads(body)["message"].startswith("signature does not match")


def test_same_part_cannot_be_written_by_two_requests_at_once(store: LocalStore, client: httpx.Client) -> None:
    upload_id = store.start_upload("data/busy", 20)
    first = store.begin_part_write("data/busy", upload_id, 1, 0, 10)
    try:
        url = store.sign_upload_part("data/busy", upload_id, 1, 0, 10, 60)
        refused = put(client, url, b"b" * 10)
        assert refused.status_code == 409
        assert "being uploaded by another request" in error_message(refused)
        other_part = put(client, store.sign_upload_part("data/busy", upload_id, 2, 10, 10, 60), b"c" * 10)
        assert other_part.status_code == 200  # other parts are not held up
    finally:
        first.close()
    again = put(client, url, b"b" * 10)
    assert again.status_code == 200 and again.headers["etag"] == f'"{md5_hex(b"b" * 10)}"'


# -- whole-object PUT (storage/local/whole.py) --------------------------------------------------------


def test_a_whole_object_put_creates_the_object_only_with_the_signed_md5(
    store: LocalStore, client: httpx.Client, access_log: pytest.LogCaptureFixture
) -> None:
    """One signed PUT makes the object, as on S3: Content-MD5 must be the signed one (403 otherwise), the body
    must hash to it (400 BadDigest otherwise, the key untouched, no temporary file left), and a HEAD then tells
    the MD5 as the object's ETag, which is what the finalize of a whole-object upload checks."""
    body, other = b"whole object " * 1000, b"other object " * 1000
    url = store.sign_whole_put("data/whole", md5_hex(body), 60)
    assert url is not None and "op=whole" in url
    store.write_document("data/whole", b"the bytes before")

    unsigned = client.put(url, content=body)
    assert unsigned.status_code == 403 and "Content-MD5" in error_message(unsigned)
    foreign = client.put(url, content=other, headers={"Content-MD5": md5_b64(other)})
    assert foreign.status_code == 403  # the signature fixes which MD5 may be sent
    wrong = client.put(url, content=other, headers={"Content-MD5": md5_b64(body)})
    assert wrong.status_code == 400 and error_message(wrong).startswith("BadDigest")
    assert store.read_document("data/whole") == b"the bytes before"
    assert [p.name for p in (store.objects / "data").iterdir()] == ["whole"]  # no temporary file left
    assert store.head("data/whole").etag is None  # a document write keeps no MD5

    sent = client.put(url, content=body, headers={"Content-MD5": md5_b64(body)})
    assert sent.status_code == 200 and sent.headers["etag"] == f'"{md5_hex(body)}"'
    assert store.read_document("data/whole") == body
    head = store.head("data/whole")
    assert (head.size, head.etag, head.md5) == (len(body), md5_hex(body), md5_hex(body))
    written = wait_for_event(access_log, "part_put")
    assert (written["partNumber"], written["whole"], written["bytes"]) == (1, True, len(body))
    assert oct(stat.S_IMODE((store.objects / "data" / "whole").stat().st_mode)) == "0o600"

    replaced, parts = upload_parts(store, "data/whole", other, len(other))  # a multipart upload replaces it
    store_part(store, "data/whole", replaced, 1, 0, other)
    store.complete_upload("data/whole", replaced, parts)
    assert store.head("data/whole").etag is None  # the new file does not inherit the old MD5


def test_no_whole_object_urls_where_the_file_system_keeps_no_md5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without user extended attributes the MD5 cannot stay with the file: one-part uploads stay multipart."""

    def refuse(*args: object) -> None:
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", refuse)
    store = LocalStore(tmp_path / "plain", "http://127.0.0.1:9")
    assert store.sign_whole_put("data/x", md5_hex(b"x"), 60) is None
    assert list((store.objects).iterdir()) == []  # the probe left nothing


def test_a_finalize_overlapping_another_that_completed_the_upload_rolls_it_forward(tmp_path: Path) -> None:
    """Two finalizes of one upload on two replicas: B lists the upload's state before A commits, then finds the
    store's upload completed by A, which has not written ``.meta`` yet (here: died just then). B must finish the
    object from A's commit record, not fail a finalize that is succeeding (seen as a 400 in CI)."""
    from score.server.metadata.base import Entity
    from score.server.services.uploads import UploadService
    from score.server.settings import ServerSettings

    class _Died(Exception):
        pass

    payload = os.urandom(3000)
    oid = "5b2c1f0e-0000-4000-8000-000000000001"
    entity = Entity(oid, "analysis", "f.bin", "STUDY", "open", len(payload), md5_hex(payload))
    store = LocalStore(tmp_path / "store", "http://127.0.0.1:9")
    settings = ServerSettings(part_size=1000, min_part_size=1)
    replica_a, replica_b = UploadService(store, settings), UploadService(store, settings)
    spec = replica_b.initiate(oid, len(payload), md5_hex(payload), False, entity)
    for part in spec.parts:
        body = payload[part.offset : part.end]
        etag = store_part(store, spec.objectKey, spec.uploadId, part.partNumber, part.offset, body)
        replica_b.finalize_part(oid, spec.uploadId, part.partNumber, md5_hex(body), etag)

    def die(object_id: str, final: object) -> None:
        raise _Died  # A stops after completing the store's upload, before .meta

    replica_a._show_final = die  # type: ignore[method-assign]
    listing = store.list_uploaded_parts
    overlapped: list[bool] = []

    def list_after_a(key: str, upload_id: str) -> list[UploadedPart]:
        if not overlapped:  # B's check of the parts: A commits and completes just before it
            overlapped.append(True)
            with pytest.raises(_Died):
                replica_a.finalize(oid, spec.uploadId, md5_hex(payload), entity)
        return listing(key, upload_id)

    store.list_uploaded_parts = list_after_a  # type: ignore[method-assign]
    final = replica_b.finalize(oid, spec.uploadId, md5_hex(payload), entity)
    assert overlapped == [True]
    assert (final.objectSize, final.objectMd5) == (len(payload), md5_hex(payload))
    assert store.read_document(spec.objectKey) == payload
    assert replica_b.stored_spec(oid).uploadId == spec.uploadId  # visible, with this upload's .meta
    assert list(store.list_uploads()) == []


def test_a_fifo_at_a_key_is_no_object_and_hangs_nothing(tmp_path: Path) -> None:
    """Opening a FIFO without a writer blocks: head and reads must see it as absent at once, not hang."""
    store = LocalStore(tmp_path / "store", "http://127.0.0.1:9")
    (store.objects / "data").mkdir()
    os.mkfifo(store.objects / "data" / "fifo")
    answers: list[object] = []

    def look() -> None:
        answers.extend([store.head("data/fifo"), store.read_document("data/fifo")])

    reader = threading.Thread(target=look)
    reader.daemon = True
    reader.start()
    reader.join(timeout=10)
    assert answers == [None, None]
