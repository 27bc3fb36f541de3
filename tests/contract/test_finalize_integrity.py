"""Finalize on every backend: overlapping calls agree, and the MD5 recorded is one the bytes bear out.

Overlapping finalizes happen in the field: a finalize slower than the client's read timeout (a thousand
parts on GCS) is retried while the first call still runs, and behind a load balancer the retry reaches
another replica. Both must answer success, and the object must never blink out of sight meanwhile.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.conftest import Registry, make_file, md5_of
from tests.contract.conftest import Deployment, start_part_upload

STUDY = "CONTRACT"
MiB = 1024 * 1024


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324


def _send_and_record(api: httpx.Client, oid: str, spec: dict, data: bytes) -> None:
    """PUT every part to its signed URL (with its Content-MD5) and record it, as the Java client does."""
    for part in spec["parts"]:
        body = data[part["offset"] : part["offset"] + part["partSize"]]
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-MD5": base64.b64encode(bytes.fromhex(_md5(body))).decode(),
        }
        sent = httpx.put(part["url"], content=body, headers=headers, timeout=60)
        assert sent.status_code in (200, 201), sent.text
        params = {
            "uploadId": spec["uploadId"],
            "partNumber": part["partNumber"],
            "md5": _md5(body),
            "etag": sent.headers.get("etag", "").strip('"') or _md5(body),
        }
        recorded = api.post(f"/upload/{oid}/parts", params=params)
        assert recorded.status_code == 200, recorded.text


def test_overlapping_finalizes_on_two_replicas_all_succeed_and_the_object_never_blinks(
    deployment: Deployment, tmp_path: Path
) -> None:
    server = deployment.server
    second = deployment.replica()
    token = server.token("score.WRITE score.READ song.WRITE")
    auth = {"Authorization": f"Bearer {token}"}
    registry = Registry(server, token)
    parts = 3 if deployment.part_size >= MiB else 24
    source = make_file(tmp_path / "in" / "f.bin", parts * deployment.part_size - 5, seed=31)
    data = source.read_bytes()
    analysis_id, ids = registry.submit(STUDY, [source])
    oid = ids["f.bin"]
    api = httpx.Client(base_url=server.url, headers=auth, timeout=120)
    spec = start_part_upload(deployment, server.url, auth, oid, len(data))
    assert len(spec["parts"]) == parts
    _send_and_record(api, oid, spec, data)

    seen: list[bool] = []
    done = threading.Event()

    def watch() -> None:  # what Song's publish check would see, all along
        with httpx.Client(base_url=second.url, headers=auth, timeout=60) as http:
            while not done.is_set():
                seen.append(http.get(f"/upload/{oid}").json())

    def finalize(url: str) -> httpx.Response:
        params = {"uploadId": spec["uploadId"], "md5": md5_of(source)}
        return httpx.post(f"{url}/upload/{oid}", params=params, headers=auth, timeout=120)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(finalize, [server.url, second.url] * 3))
        retry = finalize(second.url)  # a retry after all of them ended: success, not "already exists"
    finally:
        done.set()
        watcher.join()

    assert [a.status_code for a in [*answers, retry]] == [200] * 7, [a.text for a in [*answers, retry]]
    once_visible = seen[seen.index(True) :] if True in seen else []
    assert once_visible and all(once_visible), "the object disappeared after it became visible"
    status = api.get(f"/upload/{oid}/status", params={"fileSize": len(data)})
    assert status.status_code == 404, status.text  # no upload left in progress
    assert registry.publish(STUDY, analysis_id).status_code == 200
    read = api.get(f"/download/{oid}", params={"offset": 0, "length": -1}).json()
    assert (read["objectMd5"], read["objectSize"]) == (md5_of(source), len(data))
    got = b"".join(
        httpx.get(p["url"], headers={"Range": f"bytes={p['offset']}-{p['offset'] + p['partSize'] - 1}"}).content
        for p in read["parts"]
    )
    assert got == data


def test_a_one_part_object_is_refused_when_its_part_contradicts_the_claimed_md5(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Bytes other than the registered file's, sent as the one part with their own (true) MD5, then a finalize
    claiming the registered MD5: the server knows a one-part object's MD5 is its part's, so nothing is
    published under the claim."""
    server = deployment.server
    token = server.token("score.WRITE score.READ song.WRITE")
    auth = {"Authorization": f"Bearer {token}"}
    registry = Registry(server, token)
    source = make_file(tmp_path / "in" / "one.bin", 1000, seed=32)
    analysis_id, ids = registry.submit(STUDY, [source])
    oid = ids["one.bin"]
    api = httpx.Client(base_url=server.url, headers=auth, timeout=60)
    other = bytes(reversed(source.read_bytes()))
    assert _md5(other) != md5_of(source)
    spec = start_part_upload(deployment, server.url, auth, oid, len(other))
    assert len(spec["parts"]) == 1
    _send_and_record(api, oid, spec, other)

    final = api.post(f"/upload/{oid}", params={"uploadId": spec["uploadId"], "md5": md5_of(source)})
    assert final.status_code == 400, final.text
    message = final.json()["message"]
    assert "MD5 mismatch" in message and _md5(other) in message and "one part" in message, message
    assert api.get(f"/upload/{oid}").json() is False
    assert registry.publish(STUDY, analysis_id).status_code != 200
