"""Recording a sent part runs beside the transfer; a part the server would not record is sent again.

A proxy in front of score-server's API turns down the first attempt to record part 2 (a 400, which the
client does not retry): the upload must still finish, with part 2 sent twice and the object intact.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SMALL_PART, Client, Registry, ScoreServer, make_file, md5_of
from tests.services.proxy import StoreProxy

STUDY = "RECORD"


@pytest.fixture
def api_proxy(server: ScoreServer) -> Iterator[StoreProxy]:
    proxy = StoreProxy(server.url).start()
    yield proxy
    proxy.stop()


def test_a_part_the_server_would_not_record_is_sent_again(
    registry: Registry, server: ScoreServer, admin_token: str, api_proxy: StoreProxy, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "in" / "reads.bam", 6 * SMALL_PART + 77, seed=5)
    analysis_id, object_ids = registry.submit(STUDY, [source])
    object_id = object_ids[source.name]

    def record_part_2(method: str, path: str, query: dict[str, list[str]]) -> bool:
        return method == "POST" and path.endswith("/parts") and query.get("partNumber") == ["2"]

    api_proxy.refuse = record_part_2
    client = Client(server, admin_token, tmp_path)
    result = client.run("upload", "--object-id", object_id, "--file", str(source), STORAGE_URL=api_proxy.url)
    assert result.returncode == 0, result.stderr
    assert api_proxy.refuse is None  # the refusal happened

    records = Counter(
        (e.query["partNumber"][0], e.status) for e in api_proxy.requests("POST", lambda e: e.path.endswith("/parts"))
    )
    assert records[("2", 400)] == 1 and records[("2", 200)] == 1
    assert all(records[(str(n), 200)] == 1 for n in range(1, 8))
    # the store acknowledges a part it already holds without writing it again ("part_put_identical")
    puts = Counter(
        int(e["partNumber"])
        for e in server.access_events()
        if e.get("event") in ("part_put", "part_put_identical") and e.get("status") == 200
    )
    assert puts[2] == 2  # sent again after the refusal
    assert all(puts[n] == 1 for n in (1, 3, 4, 5, 6, 7))

    assert registry.publish(STUDY, analysis_id).status_code == 200
    out = tmp_path / "out"
    fetched = client.run("download", "--object-id", object_id, "--output-dir", str(out), "--output-layout", "id")
    assert fetched.returncode == 0, fetched.stderr
    assert md5_of(out / object_id) == md5_of(source)
