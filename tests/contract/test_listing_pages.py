"""``GET /listing`` in pages on every backend: the pages, followed by their ``Link`` headers, are the listing."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.conftest import Client, Registry, make_file
from tests.contract.conftest import Deployment, start_part_upload

STUDY = "CONTRACT"


def test_listing_pages_follow_their_links_to_the_whole_listing_in_id_order(
    deployment: Deployment, tmp_path: Path
) -> None:
    server = deployment.server
    token = server.token("score.WRITE score.READ song.WRITE")
    auth = {"Authorization": f"Bearer {token}"}
    registry = Registry(server, token)
    client = Client(server, token, tmp_path / "work")
    (tmp_path / "work").mkdir()
    files = [make_file(tmp_path / "in" / f"f{i}.txt", 10 + i, seed=40 + i) for i in range(5)]
    unfinished = make_file(tmp_path / "later" / "u.txt", 20, seed=49)
    _, ids = registry.submit(STUDY, [*files, unfinished])
    for f in files:
        assert client.run("upload", "--file", str(f), "--object-id", ids[f.name]).returncode == 0
    start_part_upload(deployment, server.url, auth, ids["u.txt"], 20)  # in progress: never listed

    whole = httpx.get(f"{server.url}/listing", headers=auth)
    assert whole.status_code == 200 and "link" not in whole.headers
    assert sorted(i["id"] for i in whole.json()) == sorted(ids[f.name] for f in files)
    sizes = {i["id"]: i["size"] for i in whole.json()}
    assert sizes == {ids[f.name]: f.stat().st_size for f in files}

    pages: list[list[dict]] = []
    url = f"{server.url}/listing?limit=2"
    while url:
        page = httpx.get(url, headers=auth)
        assert page.status_code == 200, page.text
        pages.append(page.json())
        link = re.fullmatch(r'<(/listing\?[^>]+)>; rel="next"', page.headers.get("link", ""))
        url = f"{server.url}{link.group(1)}" if link else ""
    assert [len(p) for p in pages] == [2, 2, 1]
    listed = [i["id"] for p in pages for i in p]
    assert listed == sorted(sizes)  # id order, each object once
    assert {i["id"]: i["size"] for p in pages for i in p} == sizes

    last = sorted(sizes)[-1]
    assert httpx.get(f"{server.url}/listing", params={"after": last, "limit": 3}, headers=auth).json() == []
    bad = httpx.get(f"{server.url}/listing", params={"after": "../etc", "limit": 3}, headers=auth)
    assert bad.status_code == 400, bad.text
    assert httpx.get(f"{server.url}/listing", params={"limit": 0}, headers=auth).status_code == 400
