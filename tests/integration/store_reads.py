"""One check of ``read_document``'s byte ranges, run by every backend's store tests (htsget reads headers so)."""

from __future__ import annotations

from score.server.storage.base import ObjectStore


def check_ranged_document_reads(store: ObjectStore) -> None:
    body = bytes(range(256)) * 40
    store.write_document("data/ranged-read-check", body)
    assert store.read_document("data/ranged-read-check") == body
    assert store.read_document("data/ranged-read-check", 0, 10) == body[:10]
    assert store.read_document("data/ranged-read-check", 5000, 5100) == body[5000:5100]
    assert store.read_document("data/ranged-read-check", 10000) == body[10000:]
    assert store.read_document("data/ranged-read-check", 10, 10) == b""
    assert store.read_document("data/no-such-document", 0, 10) is None
