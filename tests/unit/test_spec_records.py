"""The registry's records of finished objects' ``.meta`` (migration 2), on SQLite and on PostgreSQL
(``registry_db``): what a download specification reads instead of the store, and how a finalize that lost a
race to a later one is kept from recording a stale document."""

from __future__ import annotations

import threading

from score.server.metadata.registry import Registry

OBJECT = "5b2a9d1e-3c1f-5a0e-9a44-0c6e7b1f2a3d"
FIRST = '{"objectId":"%s","uploadId":"u1"}' % OBJECT  # noqa: UP031 - a document, as the store holds it
SECOND = '{"objectId":"%s","uploadId":"u2"}' % OBJECT  # noqa: UP031


def test_a_record_is_read_back_until_it_is_forgotten(registry_db: str) -> None:
    registry = Registry(registry_db)
    assert (registry.recorded_spec(OBJECT), registry.spec_generation(OBJECT)) == (None, 0)
    assert registry.record_spec(OBJECT, FIRST, 0) is True
    assert registry.recorded_spec(OBJECT) == FIRST
    assert registry.record_spec(OBJECT, FIRST, 0) is True  # a finalize's retry records the same again

    registry.forget_spec(OBJECT)  # an overwrite hides the object
    assert (registry.recorded_spec(OBJECT), registry.spec_generation(OBJECT)) == (None, 1)
    assert registry.record_spec(OBJECT, SECOND, 1) is True
    assert registry.recorded_spec(OBJECT) == SECOND
    assert Registry(registry_db).recorded_spec(OBJECT) == SECOND  # in the database, not in memory


def test_a_finalize_overtaken_by_a_later_overwrite_records_nothing(registry_db: str) -> None:
    """Finalize A reads the generation and writes its .meta; finalize B of a second upload then hides the object
    and writes and records its own .meta. A's late record must not replace B's: the store holds B's."""
    registry = Registry(registry_db)
    seen_by_a = registry.spec_generation(OBJECT)
    registry.forget_spec(OBJECT)  # B hides A's .meta ...
    assert registry.record_spec(OBJECT, SECOND, registry.spec_generation(OBJECT)) is True  # ... and records its own
    assert registry.record_spec(OBJECT, FIRST, seen_by_a) is False
    assert registry.recorded_spec(OBJECT) == SECOND

    registry.forget_spec(OBJECT)  # hidden with no record yet: A's late record must not reappear either
    assert registry.record_spec(OBJECT, FIRST, seen_by_a) is False
    assert registry.recorded_spec(OBJECT) is None


def test_concurrent_hides_each_count(registry_db: str) -> None:
    registry = Registry(registry_db)
    threads = [threading.Thread(target=registry.forget_spec, args=(OBJECT,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert registry.spec_generation(OBJECT) == 8
