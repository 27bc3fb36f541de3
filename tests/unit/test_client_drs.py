"""``drs://`` targets of the client: which are this server's object ids, which go through another DRS server."""

from __future__ import annotations

import pytest

from score.client import drs
from score.client.errors import ClientError

ID = "0b5e6d4e-0000-4000-8000-000000000000"


def test_this_servers_uris_become_object_ids() -> None:
    ids, remote = drs.split_targets(
        (ID, f"drs://score.example.org:8087/{ID}", f"DRS://other.org/{ID}"), "https://SCORE.example.org:8087"
    )
    assert ids == (ID, ID)
    assert remote == [drs.DrsUri("other.org", ID)]


def test_remote_servers_are_reached_over_https_loopback_over_http() -> None:
    assert drs.DrsUri("drs.example.org", ID).base_url == "https://drs.example.org/ga4gh/drs/v1"
    assert drs.DrsUri("localhost:8087", ID).base_url == "http://localhost:8087/ga4gh/drs/v1"
    assert drs.DrsUri("127.0.0.1:9", ID).base_url == "http://127.0.0.1:9/ga4gh/drs/v1"
    assert drs.DrsUri("[::1]:9", ID).base_url == "http://[::1]:9/ga4gh/drs/v1"


@pytest.mark.parametrize("bad", ["drs://", "drs://host", "drs://host/", "drs:///id", "drs://host/a/b"])
def test_malformed_uris_are_refused(bad: str) -> None:
    with pytest.raises(ClientError):
        drs.parse(bad)


def test_anything_else_is_not_a_drs_uri() -> None:
    assert drs.parse(ID) is None and drs.parse("https://host/id") is None
