"""``/upload/{id}/status`` gives completed parts a usable URL, on every backend, as the Java server does.

The Java client's resume checks each completed part's MD5 against its file and, when it differs, sends
the part again with ``part.getUrl()`` (MemoryMappedParallelPartObjectTransport.java:109-112): a null URL
there fails after ten retries. This replays the Java client's calls one by one
(on Azure, where the Java client writes whole blobs instead, the parts come from the batch initiate).
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import httpx

from tests.conftest import Client, Registry, make_file, md5_of
from tests.contract.conftest import Deployment, start_part_upload

STUDY = "CONTRACT"


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324


def test_a_completed_part_has_a_url_that_takes_its_bytes_again(deployment: Deployment, tmp_path: Path) -> None:
    server = deployment.server
    token = server.token("score.WRITE score.READ song.WRITE")
    registry = Registry(server, token)
    source = make_file(tmp_path / "in" / "s.bin", 2 * deployment.part_size + 7, seed=21)
    data = source.read_bytes()
    analysis_id, ids = registry.submit(STUDY, [source])
    oid = ids["s.bin"]
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def body_of(part: dict) -> bytes:
        return data[part["offset"] : part["offset"] + part["partSize"]]

    def put(part: dict) -> httpx.Response:
        body = body_of(part)
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-MD5": base64.b64encode(bytes.fromhex(_md5(body))).decode(),
        }
        return httpx.put(part["url"], content=body, headers=headers, timeout=60)

    def record(part: dict, sent: httpx.Response) -> None:
        md5 = _md5(body_of(part))
        params = {"uploadId": spec["uploadId"], "partNumber": part["partNumber"], "md5": md5}
        recorded = api.post(
            f"/upload/{oid}/parts", params={**params, "etag": sent.headers.get("etag", "").strip('"') or md5}
        )
        assert recorded.status_code == 200, recorded.text

    spec = start_part_upload(deployment, server.url, api.headers, oid, len(data))
    first = spec["parts"][0]
    sent = put(first)
    assert sent.status_code in (200, 201), sent.text
    record(first, sent)

    status = api.get(f"/upload/{oid}/status", params={"fileSize": len(data)})
    assert status.status_code == 200, status.text
    parts = {p["partNumber"]: p for p in status.json()["parts"]}
    assert parts[1]["md5"] == _md5(body_of(first))  # still marked completed, so resumes skip it
    assert parts[1]["url"], "a completed part needs a URL: the Java client sends it again with it"
    assert all(p["url"] and p["md5"] is None for n, p in parts.items() if n != 1)

    again = put(parts[1])  # what the Java client does when its checksum of the part disagrees
    assert again.status_code in (200, 201), again.text
    record(parts[1], again)
    for number in sorted(parts)[1:]:
        sent = put(parts[number])
        assert sent.status_code in (200, 201), sent.text
        record(parts[number], sent)
    final = api.post(f"/upload/{oid}", params={"uploadId": spec["uploadId"], "md5": md5_of(source)})
    assert final.status_code == 200, final.text

    assert registry.publish(STUDY, analysis_id).status_code == 200
    work = tmp_path / "work"
    work.mkdir()
    download = Client(server, token, work).run("download", "--object-id", oid, "--output-dir", str(tmp_path / "out"))
    assert download.returncode == 0, download.stderr
    assert (tmp_path / "out" / "s.bin").read_bytes() == data
