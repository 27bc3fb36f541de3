"""The registry without HTTP: storage mode, concurrency across threads and processes, error codes."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest

from score.server.metadata.base import PUBLISHED, SUPPRESSED, UNPUBLISHED, MetadataUnavailable, StoredObject
from score.server.metadata.registry import (
    MISSING_STORAGE_OBJECTS,
    STUDY_ALREADY_EXISTS,
    SUPPRESSED_STATE_TRANSITION,
    Registry,
    RegistryError,
    SongErrorCode,
    object_id_for,
)

MD5 = "0cc175b9c0f1b6a831c399e269772661"


def _payload(study: str, *names: str) -> dict:
    return {
        "studyId": study,
        "analysisType": {"name": "t", "version": 1},
        "files": [
            {"fileName": n, "fileSize": 1, "fileMd5sum": MD5, "fileType": "BAM", "fileAccess": "open", "dataType": "d"}
            for n in names or ("a.bam",)
        ],
    }


class _Catalog:
    def __init__(self) -> None:
        self.objects: dict[str, StoredObject] = {}

    def stored_object(self, object_id: str) -> StoredObject | None:
        return self.objects.get(object_id)


def test_error_ids_follow_songs_naming() -> None:
    assert SongErrorCode("STUDY_ID_DOES_NOT_EXIST", 404).error_id == "study.id.does.not.exist"
    assert MISSING_STORAGE_OBJECTS.error_id == "missing.storage.objects"


def test_database_uses_wal_and_survives_reopening(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "song.db"
    registry = Registry(db)
    registry.create_study("S1", {"name": "one"})
    aid = registry.submit("S1", _payload("S1"))
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened = Registry(db)
    assert reopened.analysis_state("S1", aid) == UNPUBLISHED
    assert reopened.get_study("S1") == {"studyId": "S1", "name": "one"}


def test_entity_carries_registered_size_and_md5(registry_db: str) -> None:
    registry = Registry(registry_db)
    registry.create_study("S1", {})
    aid = registry.submit("S1", _payload("S1", "x.cram"))
    entity = registry.entity(object_id_for(aid, "x.cram"))
    assert entity is not None
    assert (entity.fileSize, entity.fileMd5sum, entity.gnosId, entity.projectCode) == (1, MD5, aid, "S1")
    assert registry.entity("no-such-object") is None


def test_catalog_can_be_attached_after_construction(registry_db: str) -> None:
    registry = Registry(registry_db)
    registry.create_study("S1", {})
    aid = registry.submit("S1", _payload("S1"))
    catalog = _Catalog()
    registry.catalog = catalog
    with pytest.raises(RegistryError) as refused:
        registry.publish("S1", aid)
    assert refused.value.code is MISSING_STORAGE_OBJECTS
    oid = object_id_for(aid, "a.bam")
    catalog.objects[oid] = StoredObject(oid, 1, MD5)
    registry.publish("S1", aid)
    assert registry.analysis_state("S1", aid) == PUBLISHED


def test_suppressed_is_final(registry_db: str) -> None:
    registry = Registry(registry_db, _Catalog())
    registry.create_study("S1", {})
    aid = registry.submit("S1", _payload("S1"))
    registry.suppress("S1", aid)
    registry.suppress("S1", aid)  # idempotent
    for change in (registry.unpublish, registry.publish):
        with pytest.raises(RegistryError) as refused:
            change("S1", aid)
        assert refused.value.code is SUPPRESSED_STATE_TRANSITION
    assert registry.analysis_state("S1", aid) == SUPPRESSED


def test_concurrent_threads_share_one_registry(registry_db: str) -> None:
    registry = Registry(registry_db)
    registry.create_study("S1", {})
    results: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        try:
            for i in range(10):
                aid = registry.submit("S1", _payload("S1", f"t{n}-{i}.bam", f"t{n}-{i}.bai"))
                if i % 3 == 0:
                    registry.suppress("S1", aid)
                with lock:
                    results.append(aid)
        except BaseException as exc:  # collected and re-raised below, on the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 80
    listed = registry.list_analyses("S1", [UNPUBLISHED, SUPPRESSED])
    assert len(listed) == 80
    assert sum(a["analysisState"] == SUPPRESSED for a in listed) == 8 * 4
    assert registry.find_entities({"projectCode": "S1"}, page=0, size=1).total == 160


def test_duplicate_study_race_has_one_winner(registry_db: str) -> None:
    registry = Registry(registry_db)
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def create() -> None:
        barrier.wait()
        try:
            registry.create_study("S1", {})
            outcomes.append("created")
        except RegistryError as exc:
            outcomes.append(exc.code.name)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == sorted(["created"] + [STUDY_ALREADY_EXISTS.name] * 5)


def _submit_many(db: str, worker: int, count: int) -> None:
    registry = Registry(db)
    for i in range(count):
        registry.submit("S1", _payload("S1", f"p{worker}-{i}.bam"))


def test_several_processes_share_the_database(registry_db: str) -> None:
    db = registry_db
    Registry(db).create_study("S1", {})
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_submit_many, args=(db, w, 15)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert len(Registry(db).list_analyses("S1", [UNPUBLISHED])) == 45


def test_unreadable_database_is_metadata_unavailable(tmp_path: Path) -> None:
    db = tmp_path / "song.db"
    registry = Registry(db)
    for leftover in tmp_path.glob("song.db*"):
        leftover.unlink()
    db.write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(MetadataUnavailable, match="cannot be read"):
        registry.entity("x")
    with pytest.raises(MetadataUnavailable):
        registry.analysis_state("S1", "A1")


def test_both_databases_sort_ids_byte_wise_and_keep_64_bit_sizes(registry_db: str) -> None:
    registry = Registry(registry_db)
    ids = ["b-1", "B_2", "a.3", "A-4", "x_5", "9z", "Z.6", "a-3"]
    for study in ids:
        registry.create_study(study, {})
    assert registry.study_ids() == sorted(ids)  # as SQLite compares text, whatever the server's locale
    payload = _payload("S", "big.bam")
    payload["studyId"] = "b-1"
    payload["files"][0]["fileSize"] = 2**63 - 1  # MAX_FILE_SIZE
    aid = registry.submit("b-1", payload)
    assert registry.entity(object_id_for(aid, "big.bam")).fileSize == 2**63 - 1
