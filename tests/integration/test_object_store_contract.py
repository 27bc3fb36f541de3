"""The ObjectStore protocol's documented meaning (``storage/base.py``), checked on every backend against its real
service: local disk with its /_store data plane, S3 (SeaweedFS), Azure Blob (Azurite), GCS (gcp-storage-emulator).

Each test gets a fresh, empty store from ``store_backends.BACKENDS``; what a backend documents doing differently
is read from its entry there, never from its name. Signed URLs are used as a client uses them, with httpx.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from score.server.storage.base import (
    ObjectStore,
    UploadedPart,
    UploadNotFound,
    range_header,
)
from tests.integration.store_backends import Backend

PAYLOAD = bytes(range(256)) * 40  # 10240 bytes, every offset recognisable
MARKER_KEY = (  # Score's part markers carry JSON in their names: | { " and a space
    "upload/0b7a7d3e-5c39-4b8f-9d4e-2f1a6c3b9e01_" + "ab" * 16 + '/part-0000000b|{"partNumber":11,'
    '"md5":"9e107d9d372bb6826bd81d3542a419d6","etag":"9e107d9d 372b6826bd81d3542a419d6"}'
)


def md5_hex(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()  # noqa: S324


def md5_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324


def new_key() -> str:
    return f"data/{uuid.uuid4()}"


def put_part(url: str, body: bytes) -> httpx.Response:
    """What score-client sends for a part: the bytes, their Content-MD5, an octet-stream type."""
    headers = {"Content-Type": "application/octet-stream", "Content-MD5": md5_b64(body)}
    return httpx.put(url, content=body, headers=headers, timeout=60)


def stored_as(store: ObjectStore, number: int, body: bytes) -> UploadedPart:
    """The part as ``list_uploaded_parts`` must give it: ETag the MD5 where the store says so, else none."""
    return UploadedPart(number, md5_hex(body) if store.etag_is_md5 else "", len(body))


def split(payload: bytes, part_size: int) -> list[bytes]:
    return [payload[offset : offset + part_size] for offset in range(0, len(payload), part_size)]


def send_parts(store: ObjectStore, key: str, upload_id: str, bodies: list[bytes], part_size: int) -> None:
    """Every part through its signed URL, last first (parts arrive in any order)."""
    for number in reversed(range(1, len(bodies) + 1)):
        body = bodies[number - 1]
        url = store.sign_upload_part(key, upload_id, number, (number - 1) * part_size, len(body), 600)
        response = put_part(url, body)
        assert response.status_code in (200, 201), response.text


def held_versions(listed: list[UploadedPart], backend: Backend) -> dict[int, list[UploadedPart]]:
    """{part number: what the listing names for it}: once each, or once per PUT where the backend lists so."""
    assert [p.part_number for p in listed] == sorted(p.part_number for p in listed)
    versions: dict[int, list[UploadedPart]] = {}
    for part in listed:
        versions.setdefault(part.part_number, []).append(part)
    if not backend.repeats_resent_parts:
        assert all(len(held) == 1 for held in versions.values()), listed
    return versions


def three_parts(backend: Backend, seed: int = 0) -> list[bytes]:
    """Two whole parts and a short last one, each part's bytes its own."""
    size = backend.part_size
    return [bytes([seed + 1]) * size, os.urandom(size), b"the last, short part"]


def assert_rejected(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)


# -- the store itself ---------------------------------------------------------------------------------


def test_store_satisfies_the_protocol_as_its_table_entry_says(store: ObjectStore, backend: Backend) -> None:
    assert isinstance(store, ObjectStore)
    assert store.name == backend.name
    assert 1 <= store.min_part_size <= backend.part_size
    assert store.max_object_size >= 5 * 1024**3
    assert list(store.list("")) == []  # fresh and empty


# -- documents ----------------------------------------------------------------------------------------


def test_documents_are_written_read_overwritten_and_absent_reads_none(store: ObjectStore) -> None:
    key = new_key() + ".meta"
    assert store.read_document(key) is None
    assert store.read_document(key, 0, 10) is None
    store.write_document(key, b'{"v":1}')
    assert store.read_document(key) == b'{"v":1}'
    store.write_document(key, b'{"version":2}')  # longer
    assert store.read_document(key) == b'{"version":2}'
    store.write_document(key, b"{}")  # shorter: nothing of the old bytes remains
    assert store.read_document(key) == b"{}"
    store.write_document(MARKER_KEY, b"")
    assert store.read_document(MARKER_KEY) == b""
    store.write_document("data/ü né", b"unicode")
    assert store.read_document("data/ü né") == b"unicode"
    assert [h.key for h in store.list("")] == sorted([key, MARKER_KEY, "data/ü né"])


def test_ranged_document_reads(store: ObjectStore) -> None:
    key = "data/ranged-read-check"  # htsget reads BAM headers so
    store.write_document(key, PAYLOAD)
    assert store.read_document(key) == PAYLOAD
    assert store.read_document(key, 0, 10) == PAYLOAD[:10]
    assert store.read_document(key, 5000, 5100) == PAYLOAD[5000:5100]
    assert store.read_document(key, 10000) == PAYLOAD[10000:]
    assert store.read_document(key, 10, 10) == b""
    assert store.read_document("data/no-such-document", 0, 10) is None


def test_head_gives_key_size_time_and_a_true_md5_or_none(store: ObjectStore) -> None:
    key = new_key()
    assert store.head(key) is None
    store.write_document(key, b"12345")
    head = store.head(key)
    assert head is not None and (head.key, head.size) == (key, 5)
    assert abs(head.last_modified_ms - time.time() * 1000) < 120_000
    assert head.md5 in (None, md5_hex(b"12345"))
    assert store.head(key + ".meta") is None
    assert store.head(key[:-1]) is None  # a key's prefix is no key
    assert store.head(key + "/x") is None  # nor is a key's "child"
    assert store.head("data") is None


# -- listing ------------------------------------------------------------------------------------------


def test_list_is_recursive_lexicographic_and_by_prefix(store: ObjectStore) -> None:
    # '-' < '.' < '/' < '0' < '_': stores that list a folder right after its name must still sort by bytes
    keys = ["d/a.x", "d/a/b", "d/a0", "d/a-", "d/b", "d/a/c/d", "e/z", "d/z/1", "d/z-1", "d/z.meta", "d/z_1"]
    for key in keys:
        store.write_document(key, key.encode())
    assert [h.key for h in store.list("")] == sorted(keys)
    d = sorted(k for k in keys if k.startswith("d/"))
    assert [h.key for h in store.list("d/")] == d
    assert [h.key for h in store.list("d/a")] == ["d/a-", "d/a.x", "d/a/b", "d/a/c/d", "d/a0"]
    assert [h.key for h in store.list("d/a/")] == ["d/a/b", "d/a/c/d"]
    assert [h.key for h in store.list("d/a.")] == ["d/a.x"]
    assert [h.key for h in store.list("d/z")] == ["d/z-1", "d/z.meta", "d/z/1", "d/z_1"]
    assert [h.key for h in store.list("nothing/here")] == []
    assert [h.key for h in store.list("d/b/")] == []  # a key is not a folder
    assert {h.key: h.size for h in store.list("d/a/")} == {"d/a/b": 5, "d/a/c/d": 7}


def test_list_of_an_upload_prefix_finds_its_state_and_markers(store: ObjectStore) -> None:
    object_id = "0b7a7d3e-5c39-4b8f-9d4e-2f1a6c3b9e01"
    keys = [
        f"upload/{object_id}_u2/.meta",
        f"upload/{object_id}_u1/.meta",
        MARKER_KEY.replace(f"{object_id}_{'ab' * 16}", f"{object_id}_u1"),
        f"upload/{object_id[:-1]}2_u3/.meta",
        f"data/{object_id}",
    ]
    for key in keys:
        store.write_document(key, b"")
    listed = store.list(f"upload/{object_id}_")
    assert [(h.key, h.size) for h in listed] == [(k, 0) for k in sorted(keys[:3])]


# -- delete and empty objects -------------------------------------------------------------------------


def test_delete_is_idempotent(store: ObjectStore) -> None:
    key, kept = new_key(), new_key()
    store.write_document(key, b"x")
    store.write_document(kept, b"y")
    store.delete(key)
    assert store.read_document(key) is None and store.head(key) is None
    assert [h.key for h in store.list("")] == [kept]
    store.delete(key)  # again
    store.delete(new_key())  # never there
    store.delete("data")  # a prefix, not a key
    assert store.read_document(kept) == b"y"


def test_put_empty_makes_a_zero_byte_object(store: ObjectStore) -> None:
    key = new_key()
    store.put_empty(key)
    head = store.head(key)
    assert head is not None and head.size == 0
    assert head.md5 in (None, md5_hex(b""))
    assert store.read_document(key) == b""
    assert [(h.key, h.size) for h in store.list("data/")] == [(key, 0)]
    response = httpx.get(store.sign_read(key, None, None, 60))
    assert (response.status_code, response.content) == (200, b"")


# -- multipart upload ---------------------------------------------------------------------------------


def test_multipart_upload_through_signed_part_urls(store: ObjectStore, backend: Backend) -> None:
    key = new_key()
    bodies = three_parts(backend)
    payload = b"".join(bodies)
    upload_id = store.start_upload(key, len(payload))
    assert store.list_uploaded_parts(key, upload_id) == []
    send_parts(store, key, upload_id, bodies, backend.part_size)

    listed = store.list_uploaded_parts(key, upload_id)
    assert listed == [stored_as(store, n, body) for n, body in enumerate(bodies, start=1)]
    assert store.head(key) is None and list(store.list("")) == []  # nothing visible before completion

    store.complete_upload(key, upload_id, listed)
    head = store.head(key)
    assert head is not None and head.size == len(payload)
    assert head.md5 in (None, md5_hex(payload))
    assert store.read_document(key) == payload
    whole = httpx.get(store.sign_read(key, None, None, 60), timeout=60)
    assert whole.status_code == 200 and whole.content == payload
    assert [(h.key, h.size) for h in store.list("")] == [(key, len(payload))]
    # A repeated completion (a finalize retried after a crash) raises UploadNotFound, or, on S3 (SeaweedFS, as
    # AWS), succeeds again as a no-op; either way the object stays as it is (services/uploads.py: roll_forward).
    with contextlib.suppress(UploadNotFound):
        store.complete_upload(key, upload_id, listed)
    assert store.read_document(key) == payload


def test_a_single_part_upload(store: ObjectStore) -> None:
    key = new_key()
    upload_id = store.start_upload(key, 1)
    send_parts(store, key, upload_id, [b"x"], 1)
    store.complete_upload(key, upload_id, [stored_as(store, 1, b"x")])
    assert store.read_document(key) == b"x"


def test_an_upload_replaces_an_object(store: ObjectStore, backend: Backend) -> None:
    key = new_key()
    store.write_document(key, b"the old object")
    bodies = three_parts(backend, seed=7)
    upload_id = store.start_upload(key, sum(map(len, bodies)))
    send_parts(store, key, upload_id, bodies, backend.part_size)
    assert store.read_document(key) == b"the old object"  # until completion
    store.complete_upload(key, upload_id, store.list_uploaded_parts(key, upload_id))
    assert store.read_document(key) == b"".join(bodies)


def test_a_part_sent_again_is_held_once(store: ObjectStore, backend: Backend) -> None:
    """A retried part is held once, as the last PUT the store accepted sent it (a store that keeps stored parts
    immutable refuses other bytes, and then the first are the last accepted)."""
    key = new_key()
    size = backend.part_size
    first, other, tail = os.urandom(size), os.urandom(size), b"tail"
    upload_id = store.start_upload(key, size + len(tail))
    send_parts(store, key, upload_id, [first, tail], size)
    url = store.sign_upload_part(key, upload_id, 1, 0, size, 600)
    last = first
    for body in (other, first, other):
        if put_part(url, body).status_code in (200, 201):
            last = body
    held = held_versions(store.list_uploaded_parts(key, upload_id), backend)
    assert sorted(held) == [1, 2] and held[2] == [stored_as(store, 2, tail)]
    assert stored_as(store, 1, last) in held[1]
    store.complete_upload(key, upload_id, [stored_as(store, 1, last), stored_as(store, 2, tail)])
    assert store.read_document(key) == last + tail


BAD_PART_LISTS: dict[str, Callable[[list[UploadedPart]], list[UploadedPart]]] = {
    "empty": lambda parts: [],
    "out_of_order": lambda parts: [parts[1], parts[0], parts[2]],
    "repeated": lambda parts: [parts[0], parts[0], parts[1], parts[2]],
    "never_stored": lambda parts: [*parts, UploadedPart(4, parts[2].etag, parts[2].size)],
    "wrong_size": lambda parts: [parts[0], parts[1], UploadedPart(3, parts[2].etag, parts[2].size + 1)],
    "missing_middle": lambda parts: [parts[0], parts[2]],
    "missing_last": lambda parts: parts[:2],
}


@pytest.mark.parametrize("case", list(BAD_PART_LISTS))
def test_complete_refuses_a_bad_part_list(store: ObjectStore, backend: Backend, case: str) -> None:
    """``check_part_list``: ValueError, nothing visible, and the upload survives to complete with the right list."""
    if case.startswith("missing") and not backend.knows_upload_size:
        pytest.skip(f"{backend.name} records no upload total, so a part list short of parts cannot be told")
    key = new_key()
    bodies = three_parts(backend, seed=3)
    upload_id = store.start_upload(key, sum(map(len, bodies)))
    send_parts(store, key, upload_id, bodies, backend.part_size)
    parts = [stored_as(store, n, body) for n, body in enumerate(bodies, start=1)]
    with pytest.raises(ValueError):
        store.complete_upload(key, upload_id, BAD_PART_LISTS[case](parts))
    assert store.head(key) is None
    store.complete_upload(key, upload_id, parts)
    assert store.read_document(key) == b"".join(bodies)


def test_complete_refuses_a_part_with_another_etag(store: ObjectStore, backend: Backend) -> None:
    if not store.etag_is_md5:
        pytest.skip(f"{backend.name} keeps no per-part ETag to compare (it checks Content-MD5 when a part is written)")
    key = new_key()
    bodies = three_parts(backend, seed=4)
    upload_id = store.start_upload(key, sum(map(len, bodies)))
    send_parts(store, key, upload_id, bodies, backend.part_size)
    parts = [stored_as(store, n, body) for n, body in enumerate(bodies, start=1)]
    with pytest.raises(ValueError):
        store.complete_upload(key, upload_id, [parts[0], UploadedPart(2, md5_hex(b"other"), parts[1].size), parts[2]])
    assert store.head(key) is None
    quoted = [UploadedPart(p.part_number, f'"{p.etag.upper()}"', p.size) for p in parts]
    store.complete_upload(key, upload_id, quoted)  # ETags as HTTP headers give them: quoted, any case
    assert store.read_document(key) == b"".join(bodies)


def test_unknown_uploads(store: ObjectStore, backend: Backend) -> None:
    key = new_key()
    unknown = uuid.uuid4().hex  # shaped like every store's ids, issued by none
    if backend.knows_upload_ids:
        with pytest.raises(UploadNotFound):
            store.list_uploaded_parts(key, unknown)
    else:
        assert store.list_uploaded_parts(key, unknown) == []
    with pytest.raises(UploadNotFound):
        store.complete_upload(key, unknown, [UploadedPart(1, md5_hex(b"x"), 1)])
    store.abort_upload(key, unknown)  # ignored
    store.abort_upload(key, "not-an-upload-id")
    assert store.head(key) is None


def test_abort_discards_the_upload(store: ObjectStore, backend: Backend) -> None:
    key = new_key()
    upload_id = store.start_upload(key, 5)
    send_parts(store, key, upload_id, [b"hello"], 5)
    store.abort_upload(key, upload_id)
    if backend.knows_upload_ids:
        with pytest.raises(UploadNotFound):
            store.list_uploaded_parts(key, upload_id)
    else:
        assert store.list_uploaded_parts(key, upload_id) == []
    with pytest.raises(UploadNotFound):
        store.complete_upload(key, upload_id, [stored_as(store, 1, b"hello")])
    store.abort_upload(key, upload_id)  # again: ignored
    assert store.head(key) is None and list(store.list("")) == []
    assert [u.upload_id for u in store.list_uploads()] == []


def test_abort_never_touches_a_committed_object(store: ObjectStore) -> None:
    key = new_key()
    store.write_document(key, b"published")
    upload_id = store.start_upload(key, 3)
    send_parts(store, key, upload_id, [b"new"], 3)
    store.abort_upload(key, upload_id)
    assert store.read_document(key) == b"published"


def test_list_uploads_shows_a_started_upload(store: ObjectStore, backend: Backend) -> None:
    key = new_key()
    upload_id = store.start_upload(key, 5)
    send_parts(store, key, upload_id, [b"hello"], 5)
    found = list(store.list_uploads())
    if not backend.lists_uploads:
        assert found == []  # documented: the store expires abandoned uploads itself and lists none
        return
    assert [(u.key, u.upload_id) for u in found] == [(key, upload_id)]
    assert abs(found[0].started_ms - time.time() * 1000) < 120_000
    store.abort_upload(key, upload_id)
    assert list(store.list_uploads()) == []


# -- signed reads -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "length"),
    [(100, 50), (0, 1), (10239, 1), (0, 10240), (5000, None), (9000, -1)],
)
def test_signed_ranged_read_returns_exactly_its_bytes(store: ObjectStore, offset: int, length: int | None) -> None:
    key = new_key()
    store.write_document(key, PAYLOAD)
    url = store.sign_read(key, offset, length, 60)
    header = range_header(offset, length)
    assert header is not None
    response = httpx.get(url, headers={"Range": header})  # what a client sends for a signed range
    end = len(PAYLOAD) if length is None or length < 0 else offset + length
    assert response.status_code == 206, response.text
    assert response.content == PAYLOAD[offset:end]
    assert response.headers["content-range"] == f"bytes {offset}-{end - 1}/{len(PAYLOAD)}"


def test_signed_read_without_range_returns_the_whole_object(store: ObjectStore) -> None:
    key = new_key()
    store.write_document(key, PAYLOAD)
    response = httpx.get(store.sign_read(key, None, None, 60))
    assert response.status_code == 200 and response.content == PAYLOAD
    store.write_document(MARKER_KEY, b"marker")  # names with | { " and spaces are signed and quoted right
    marker = httpx.get(store.sign_read(MARKER_KEY, None, None, 60))
    assert (marker.status_code, marker.content) == (200, b"marker")


def test_a_signed_read_of_an_absent_key_fails(store: ObjectStore) -> None:
    assert_rejected(httpx.get(store.sign_read(new_key(), None, None, 60)))


def test_signed_urls_expire(store: ObjectStore, backend: Backend) -> None:
    if backend.unenforced_expiry:
        pytest.skip(backend.unenforced_expiry)
    key, upload_key = new_key(), new_key()
    store.write_document(key, PAYLOAD)
    upload_id = store.start_upload(upload_key, 5)
    whole, ranged = store.sign_read(key, None, None, 1), store.sign_read(key, 0, 5, 1)
    part = store.sign_upload_part(upload_key, upload_id, 1, 0, 5, 1)
    fresh = store.sign_read(key, None, None, 600)
    time.sleep(2.2)
    assert_rejected(httpx.get(whole))
    assert_rejected(httpx.get(ranged, headers={"Range": "bytes=0-4"}))
    assert_rejected(put_part(part, b"hello"))
    assert store.list_uploaded_parts(upload_key, upload_id) == []
    assert httpx.get(fresh).content == PAYLOAD  # the same URL with a longer life still works


# -- concurrency --------------------------------------------------------------------------------------


def test_concurrent_writers_of_one_document_leave_one_whole_version(store: ObjectStore) -> None:
    key = new_key() + ".meta"
    versions = [bytes([65 + n]) * (128 * 1024 + n) for n in range(4)]
    store.write_document(key, versions[0])
    seen: list[bytes | None] = []
    done = threading.Event()

    def read_until_done() -> None:
        while not done.is_set():
            seen.append(store.read_document(key))

    def write(version: bytes) -> None:
        for _ in range(5):
            store.write_document(key, version)

    reader = threading.Thread(target=read_until_done)
    reader.start()
    try:
        with ThreadPoolExecutor(len(versions)) as pool:
            list(pool.map(write, versions))
    finally:
        done.set()
        reader.join()
    assert seen and all(body in versions for body in seen), "a reader saw a mix of versions"
    assert store.read_document(key) in versions
    head = store.head(key)
    assert head is not None and head.size in {len(v) for v in versions}


def test_concurrent_part_uploads_assemble_one_whole_object(store: ObjectStore, backend: Backend) -> None:
    """Parts sent at once, and one part by two senders with different bytes: the object holds every part and
    exactly one sender's version of the contested one (a store that keeps the first refuses the other)."""
    key = new_key()
    size = backend.part_size
    bodies = [os.urandom(size) for _ in range(3)] + [b"tail"]
    rival = os.urandom(size)
    upload_id = store.start_upload(key, 3 * size + 4)
    sends = [(n, body) for n, body in enumerate(bodies, start=1)] + [(2, rival)]

    def send(item: tuple[int, bytes]) -> tuple[int, bytes, int]:
        number, body = item
        url = store.sign_upload_part(key, upload_id, number, (number - 1) * size, len(body), 600)
        return number, body, put_part(url, body).status_code

    with ThreadPoolExecutor(len(sends)) as pool:
        results = list(pool.map(send, sends))
    accepted = {(n, body) for n, body, status in results if status in (200, 201)}
    assert {n for n, _ in accepted} == {1, 2, 3, 4}, results
    held = held_versions(store.list_uploaded_parts(key, upload_id), backend)
    assert sorted(held) == [1, 2, 3, 4]
    assert [held[n] for n in (1, 3, 4)] == [[stored_as(store, n, bodies[n - 1])] for n in (1, 3, 4)]
    chosen = held[2][-1]
    versions_of_2 = [
        body for body in (bodies[1], rival) if (2, body) in accepted and stored_as(store, 2, body) == chosen
    ]
    assert versions_of_2, f"part 2 is held as {chosen}, which is neither sender's accepted version"
    store.complete_upload(key, upload_id, [held[1][0], chosen, held[3][0], held[4][0]])
    result = store.read_document(key)
    assert result is not None and len(result) == 3 * size + 4
    versions = [b"".join([bodies[0], middle, bodies[2], bodies[3]]) for middle in (bodies[1], rival)]
    assert result in versions, "the object mixes the two versions of part 2"
    assert result[size : 2 * size] in versions_of_2


def test_concurrent_uploads_of_one_key_leave_one_whole_object(store: ObjectStore, backend: Backend) -> None:
    key = new_key()
    size = backend.part_size
    payloads = [bytes([n + 1]) * size + bytes([n + 11]) * 10 for n in range(3)]
    uploads = [store.start_upload(key, len(p)) for p in payloads]
    for upload_id, payload in zip(uploads, payloads, strict=True):
        send_parts(store, key, upload_id, split(payload, size), size)

    def complete(upload_id: str) -> bool:
        try:
            store.complete_upload(key, upload_id, store.list_uploaded_parts(key, upload_id))
        except UploadNotFound:
            return False  # another completion discarded this upload's parts (Azure's block list)
        return True

    with ThreadPoolExecutor(len(uploads)) as pool:
        completed = list(pool.map(complete, uploads))
    assert any(completed)
    result = store.read_document(key)
    assert result in [p for p, ok in zip(payloads, completed, strict=True) if ok]
    head = store.head(key)
    assert head is not None and head.size == len(result or b"")
