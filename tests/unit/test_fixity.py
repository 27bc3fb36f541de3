"""Fixity checks on a real local store: which objects a walk finds, each outcome, races, pacing, the scrub."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from score.server.audit import AuditLog
from score.server.services import fixity
from score.server.services.fixity import Outcome, Pacer, Scrubber, health_component, stored_object_ids, verify_object
from score.server.settings import ServerSettings
from score.server.storage.local.store import LocalStore

A = "0a0a0a0a-0000-4000-8000-00000000000a"
B = "0b0b0b0b-0000-4000-8000-00000000000b"
C = "0c0c0c0c-0000-4000-8000-00000000000c"


def md5(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()  # noqa: S324


def put(store: LocalStore, object_id: str, body: bytes | None, meta: dict[str, Any] | None = "recorded") -> None:  # type: ignore[assignment]
    if body is not None:
        store.write_document(f"data/{object_id}", body)
    if meta == "recorded":
        assert body is not None
        meta = {"objectMd5": md5(body), "objectSize": len(body)}
    if meta is not None:
        spec = {"objectKey": f"data/{object_id}", "objectId": object_id, "uploadId": "u", "parts": [], **meta}
        store.write_document(f"data/{object_id}.meta", json.dumps(spec).encode())


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store", "http://127.0.0.1:1")


def test_a_walk_finds_every_object_once_whatever_sorts_between_its_keys(store: LocalStore) -> None:
    put(store, "ab", b"1")
    put(store, "ab-c", b"2", meta=None)  # sorts between data/ab and data/ab.meta
    put(store, "ab-c-d", b"3")
    put(store, "only-meta", None, meta={"objectMd5": md5(b"x"), "objectSize": 1})
    put(store, "zz", b"4", meta=None)
    store.write_document("data/heliograph", b"heliograph\n")
    store.write_document("data/nested/key", b"not an object")
    found = list(stored_object_ids(store, exclude={"heliograph"}))
    assert sorted(found) == ["ab", "ab-c", "ab-c-d", "only-meta", "zz"]
    assert len(found) == len(set(found))
    assert sorted(stored_object_ids(store, after="ab-c-d", exclude={"heliograph"})) == ["only-meta", "zz"]


def test_each_outcome(store: LocalStore) -> None:
    body = bytes(range(256)) * 100
    put(store, A, body)
    assert verify_object(store, A, chunk=1000).outcome is Outcome.OK  # many ranged reads
    store.write_document(f"data/{A}", body[:-1] + b"\x00")
    damaged = verify_object(store, A, chunk=1000)
    assert damaged.outcome is Outcome.MISMATCH and damaged.expected_md5 == md5(body)
    assert damaged.actual_md5 == md5(body[:-1] + b"\x00") and damaged.actual_size == len(body)
    put(store, B, None, meta={"objectMd5": md5(b"gone"), "objectSize": 4})
    assert verify_object(store, B).outcome is Outcome.MISSING
    put(store, C, b"abc", meta={"objectMd5": None, "objectSize": 3})  # a Java .meta: no objectMd5
    assert verify_object(store, C).outcome is Outcome.UNRECORDED
    put(store, C, b"ab", meta=None)  # ... and truncated: the recorded size still tells
    short = verify_object(store, C)
    assert short.outcome is Outcome.MISMATCH and (short.expected_size, short.actual_size) == (3, 2)
    put(store, "no-meta", b"abc", meta=None)
    assert verify_object(store, "no-meta").outcome is Outcome.UNRECORDED
    assert verify_object(store, "nothing").outcome is Outcome.ABSENT
    store.write_document("data/bad.meta", b"{not json")
    assert verify_object(store, "bad").outcome is Outcome.ERROR


class OverwrittenWhileRead:
    """The local store, with the object overwritten (new bytes and a matching new .meta) during the first
    ranged read: an overwrite racing the check."""

    def __init__(self, store: LocalStore, object_id: str, new: bytes, times: int = 1) -> None:
        self._store, self._id, self._new, self._times = store, object_id, new, times

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def read_document(self, key: str, start: int = 0, end: int | None = None) -> bytes | None:
        body = self._store.read_document(key, start, end)
        if key == f"data/{self._id}" and self._times > 0:
            self._times -= 1
            put(self._store, self._id, self._new + bytes([self._times]))
        return body


def test_an_overwrite_racing_a_check_is_no_damage(store: LocalStore) -> None:
    put(store, A, b"old bytes" * 10)
    racing = OverwrittenWhileRead(store, A, b"new bytes" * 10)
    assert verify_object(racing, A, chunk=16).outcome is Outcome.OK  # type: ignore[arg-type]
    always = OverwrittenWhileRead(store, A, b"newer" * 10, times=99)
    result = verify_object(always, A, chunk=16)  # type: ignore[arg-type]
    assert result.outcome is Outcome.ERROR and "changed while it was read" in result.detail


def test_pacer_caps_the_rate() -> None:
    pacer = Pacer(rate=1000)
    started = time.monotonic()
    for _ in range(6):
        pacer.take(500)  # 3000 bytes at 1000/s, one second's worth in a burst: about 2 s
    assert 1.7 < time.monotonic() - started < 3.0
    stop = threading.Event()
    stop.set()
    stopped = Pacer(rate=1, stop=stop)
    started = time.monotonic()
    stopped.take(10_000)
    assert time.monotonic() - started < 0.5  # a stopping server is not held up


def test_the_scrub_resumes_where_it_stopped_and_keeps_one_scrubber_per_data_dir(
    store: LocalStore, tmp_path: Path
) -> None:
    settings = ServerSettings(data_dir=tmp_path, fixity_scrub_interval=3600, fixity_scrub_rate=10**9)
    for index, object_id in enumerate((A, B, C)):
        put(store, object_id, b"x" * (index + 1))
    store.write_document(f"data/{B}", b"yy")  # same size, other bytes
    audit = AuditLog(tmp_path / "logs" / "audit.log")
    scrubber = Scrubber(store, settings, audit)
    (tmp_path / fixity.STATE_DIR).mkdir()
    assert health_component(settings)["status"] == "UNKNOWN"  # type: ignore[index]

    # A run cut short after B (the server stopping) leaves its cursor; the next one resumes there.
    original = fixity.check_objects

    def stop_after_b(*args: Any, **kwargs: Any) -> fixity.Summary:
        ids = [i for i in args[1] if i <= B]
        summary = original(args[0], ids, *args[2:], **kwargs)
        summary.stopped_because = "stopped"
        return summary

    fixity.check_objects = stop_after_b  # type: ignore[assignment]
    try:
        assert scrubber.run_if_due()
    finally:
        fixity.check_objects = original  # type: ignore[assignment]
    report = health_component(settings)
    assert report is not None and report["running"] and report["currentScrubChecked"] == 2
    assert report["status"] == "MISMATCH" and [m["objectId"] for m in report["mismatches"]] == [B]

    # Another worker holding the lock: this one does not scrub.
    with open(tmp_path / fixity.STATE_DIR / fixity.LOCK_FILE, "a+b") as lock:
        import fcntl

        fcntl.flock(lock, fcntl.LOCK_EX)
        assert not scrubber.run_if_due()
    assert scrubber.run_if_due()  # resumed after B: C
    report = health_component(settings)
    assert report is not None and not report["running"] and report["lastScrubChecked"] == 3
    assert report["mismatchCount"] == 1 and report["status"] == "MISMATCH"
    assert not scrubber.run_if_due()  # not due again for an interval
    lines = [json.loads(line) for line in (tmp_path / "logs" / "audit.log").read_text().splitlines()]
    assert [(line["object"], line["decision"]) for line in lines] == [(B, "mismatch")]  # news only
