"""Fixity: re-read stored objects and compare their bytes with the size and MD5 recorded at upload.

An object's ``data/{id}.meta`` records ``objectSize`` and ``objectMd5`` (verified when the upload was
finalized). A check reads ``data/{id}`` back through the ``ObjectStore`` protocol only -- ``head`` and
``read_document`` in ranges of ``CHUNK`` bytes, hashed as they stream -- so memory stays bounded and every
backend works the same. Outcomes (``Outcome``):

* ``ok``: the size and the MD5 are the recorded ones;
* ``mismatch``: the bytes differ from what was recorded (size, MD5, or both; expected and actual given);
* ``missing``: the ``.meta`` is there but the bytes are not;
* ``unrecorded``: nothing to compare with (bytes without ``.meta``, e.g. written by other tools or by the
  Java server in its legacy place, or a ``.meta`` without ``objectMd5``): reported, skipped. A recorded size
  is still compared, so a truncated object whose ``.meta`` lacks an MD5 is a ``mismatch``;
* ``absent``: an id asked for explicitly that the store does not hold at all;
* ``error``: the check could not be made (the store failed, an unreadable ``.meta``, or the object kept
  changing while it was read: an overwrite in progress).

Checks only read: nothing is repaired, made visible or deleted. An overwrite racing a check cannot be
reported as damage: a mismatch is confirmed by reading the ``.meta`` and the object's HEAD again, and the
check is made afresh (at most ``ATTEMPTS`` times) if either changed meanwhile.

Two drivers: ``score-server verify`` (cli.py) and the server's background scrub (``Scrubber``), which walks
every object every ``fixity_scrub_interval`` seconds at most ``fixity_scrub_rate`` bytes/s. The scrub keeps
its state in ``<data-dir>/fixity/scrub.json``; one process per data dir scrubs at a time (an ``flock`` on
``scrub.lock``), so ``--workers N`` scrub once, and every worker's health answer reads the same state. Replicas
with data dirs of their own on one shared bucket each scrub it (give only one of them an interval).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from score.core import md5 as md5s
from score.core.ids import is_safe_id
from score.core.models import ObjectSpecification
from score.server.storage.base import HoldsLegacyObjects, ObjectHead, ObjectStore, StoreError
from score.server.storage.layout import DATA_PREFIX, data_entries, data_key, meta_key

if TYPE_CHECKING:
    from score.server.audit import AuditLog
    from score.server.settings import ServerSettings

log = logging.getLogger("score.fixity")
MiB = 1024 * 1024
CHUNK = 8 * MiB  # bytes read (and held) at a time
ATTEMPTS = 3  # checks of one object when it changes under the check (an overwrite in progress)
MAX_CONSECUTIVE_ERRORS = 10  # a run stops after this many failed checks in a row: the store is down
STATE_DIR = "fixity"
STATE_FILE = "scrub.json"
LOCK_FILE = "scrub.lock"
KEPT_MISMATCHES = 1000  # open mismatches kept in the state document (the count goes on beyond)
SHOWN_MISMATCHES = 20  # of which health lists this many
SAVE_EVERY = 5.0  # seconds between saves of a running scrub's progress
REPAIR_ADVICE = (
    "re-upload the object from a good copy: unpublish its analysis, score-client upload --object-id <id> "
    "--file GOOD_COPY --force, publish the analysis again; then check it with score-server verify <id>"
)


class Outcome(StrEnum):
    OK = "ok"
    MISMATCH = "mismatch"
    MISSING = "missing"
    UNRECORDED = "unrecorded"
    ABSENT = "absent"
    ERROR = "error"


DAMAGE = (Outcome.MISMATCH, Outcome.MISSING)


@dataclass(frozen=True)
class FixityResult:
    object_id: str
    outcome: Outcome
    detail: str
    expected_md5: str | None = None
    expected_size: int | None = None
    actual_md5: str | None = None
    actual_size: int | None = None
    bytes_read: int = 0

    @property
    def damaged(self) -> bool:
        return self.outcome in DAMAGE

    def to_json(self) -> dict[str, Any]:
        return {
            "objectId": self.object_id,
            "outcome": self.outcome.value,
            "detail": self.detail,
            "expectedMd5": self.expected_md5,
            "actualMd5": self.actual_md5,
            "expectedSize": self.expected_size,
            "actualSize": self.actual_size,
        }

    def line(self) -> str:
        """One human line: ``<id> <OUTCOME> <detail>``."""
        return f"{self.object_id} {self.outcome.value.upper()} {self.detail}"


class Pacer:
    """Caps the bytes read per second (``rate`` <= 0: no cap), allowing one second's worth in a burst.

    ``take`` waits on ``stop`` (when given), so a stopping server is not held up by the pacing."""

    def __init__(self, rate: float, stop: threading.Event | None = None) -> None:
        self.rate = rate
        self._stop = stop
        self._due = time.monotonic() - 1.0  # when the bytes taken so far are due; a second ahead is allowed

    def take(self, size: int) -> None:
        if self.rate <= 0 or size <= 0:
            return
        now = time.monotonic()
        self._due = max(self._due, now - 1.0) + size / self.rate
        wait = self._due - now
        if wait > 0:
            if self._stop is not None:
                self._stop.wait(wait)
            else:
                time.sleep(wait)


class Stopped(Exception):
    """The check was asked to stop (the server is shutting down)."""


class _Changed(Exception):
    """The object changed while it was read: check it again."""


def _hash(
    store: ObjectStore, head: ObjectHead, pacer: Pacer | None, stop: threading.Event | None, chunk: int
) -> tuple[str, int]:
    """MD5 and length of ``head.key``'s ``head.size`` bytes, read in ``chunk``-byte ranges."""
    digest = hashlib.md5()  # noqa: S324 - MD5 is what Score records and Song compares
    for start in range(0, head.size, chunk):
        if stop is not None and stop.is_set():
            raise Stopped
        end = min(start + chunk, head.size)
        if pacer is not None:
            pacer.take(end - start)
            if stop is not None and stop.is_set():
                raise Stopped
        try:
            body = store.read_document(head.key, start, end)
        except StoreError:
            if store.head(head.key) != head:  # shrunk or replaced under us (S3 refuses a range past the end)
                raise _Changed from None
            raise
        if body is None or len(body) != end - start:
            raise _Changed
        digest.update(body)
    return digest.hexdigest(), head.size


def _recorded(body: bytes) -> ObjectSpecification:
    return ObjectSpecification.model_validate_json(body)


def verify_object(
    store: ObjectStore,
    object_id: str,
    pacer: Pacer | None = None,
    stop: threading.Event | None = None,
    chunk: int = CHUNK,
) -> FixityResult:
    """Check one object (module docstring). Raises ``Stopped`` only; every other failure is an ``error``."""
    for attempt in range(ATTEMPTS):
        try:
            return _verify_once(store, object_id, pacer, stop, chunk)
        except _Changed:
            if attempt + 1 < ATTEMPTS:
                time.sleep(0.2 * (attempt + 1))
        except Stopped:
            raise
        except Exception as exc:  # one object's failure must not end a walk of all the others
            return FixityResult(object_id, Outcome.ERROR, f"could not be checked: the store failed ({exc})")
    return FixityResult(
        object_id, Outcome.ERROR, f"changed while it was read ({ATTEMPTS} times): an upload in progress? check it later"
    )


def _verify_once(
    store: ObjectStore, object_id: str, pacer: Pacer | None, stop: threading.Event | None, chunk: int
) -> FixityResult:
    body = store.read_document(meta_key(object_id))
    head = store.head(data_key(object_id))
    if body is None:
        if head is None and isinstance(store, HoldsLegacyObjects):
            with contextlib.suppress(ValueError):
                legacy = store.head(store.legacy_object_key(object_id))
                if legacy is not None:
                    return FixityResult(
                        object_id,
                        Outcome.UNRECORDED,
                        f"no recorded MD5: kept by the Java server at {legacy.key} without .meta ({legacy.size} bytes)",
                        actual_size=legacy.size,
                    )
        if head is None:
            return FixityResult(object_id, Outcome.ABSENT, "no such object in the store (neither .meta nor bytes)")
        return FixityResult(
            object_id,
            Outcome.UNRECORDED,
            f"no recorded MD5: {head.key} has no .meta (not finalized by this server, or an upload in progress)",
            actual_size=head.size,
        )
    try:
        spec = _recorded(body)
    except ValueError as exc:
        return FixityResult(object_id, Outcome.ERROR, f"its .meta is not a valid object specification: {exc}")
    expected_md5 = spec.objectMd5.lower() if spec.objectMd5 and md5s.is_hex(spec.objectMd5) else None
    expected_size = spec.objectSize
    if head is None:
        if store.read_document(meta_key(object_id)) != body:
            raise _Changed  # overwritten or deleted meanwhile
        return FixityResult(
            object_id,
            Outcome.MISSING,
            f"bytes missing: {data_key(object_id)} is not in the store, but .meta records {expected_size} bytes, "
            f"MD5 {expected_md5 or '(none)'}",
            expected_md5,
            expected_size,
        )
    if expected_md5 is None:
        if head.size != expected_size:
            return _confirmed(
                store,
                object_id,
                body,
                head,
                FixityResult(
                    object_id,
                    Outcome.MISMATCH,
                    f"size mismatch: expected {expected_size} bytes, stored {head.size} (no recorded MD5)",
                    None,
                    expected_size,
                    None,
                    head.size,
                ),
            )
        return FixityResult(
            object_id,
            Outcome.UNRECORDED,
            f"no recorded MD5 in its .meta (size {head.size} as recorded)",
            None,
            expected_size,
            None,
            head.size,
        )
    actual_md5, actual_size = _hash(store, head, pacer, stop, chunk)
    if actual_md5 == expected_md5 and actual_size == expected_size:
        return FixityResult(
            object_id, Outcome.OK, f"{actual_size} bytes, MD5 {actual_md5}", expected_md5, expected_size,
            actual_md5, actual_size, actual_size,
        )  # fmt: skip
    problems = []
    if actual_size != expected_size:
        problems.append(f"expected {expected_size} bytes, stored {actual_size}")
    if actual_md5 != expected_md5:
        problems.append(f"expected MD5 {expected_md5}, actual {actual_md5}")
    kind = "MD5 mismatch" if actual_size == expected_size else "size mismatch"
    result = FixityResult(
        object_id, Outcome.MISMATCH, f"{kind}: {'; '.join(problems)}", expected_md5, expected_size,
        actual_md5, actual_size, actual_size,
    )  # fmt: skip
    return _confirmed(store, object_id, body, head, result)


def _confirmed(store: ObjectStore, object_id: str, body: bytes, head: ObjectHead, result: FixityResult) -> FixityResult:
    """The damage stands only if neither the ``.meta`` nor the object changed while it was checked."""
    if store.read_document(meta_key(object_id)) != body or store.head(data_key(object_id)) != head:
        raise _Changed
    return result


# -- which objects ---------------------------------------------------------------------------------
def stored_object_ids(store: ObjectStore, after: str | None = None, exclude: Collection[str] = ()) -> Iterator[str]:
    """Every object id the store holds under ``data/`` (with a ``.meta``, bytes, or both), then the Java
    server's legacy objects no ``data/`` key shadows. Lazy over the store's paginated listing, holding only
    the ids that are prefixes of the current key: ``data/{id}`` sorts right before ``data/{id}.meta`` but for
    keys that extend ``{id}`` itself. ``after``: resume a walk after that id (the last one checked); ``exclude``:
    keys that are no object (the store's sentinel)."""
    for object_id in _stored_ids(store):
        if object_id not in exclude and (after is None or object_id > after):
            yield object_id


def _stored_ids(store: ObjectStore) -> Iterator[str]:
    for entry in data_entries(store.list(DATA_PREFIX)):
        if is_safe_id(entry.name):
            yield entry.name
    if isinstance(store, HoldsLegacyObjects):
        for head in store.list_legacy_objects():
            shadowed = store.head(data_key(head.key)) is not None or store.head(meta_key(head.key)) is not None
            if is_safe_id(head.key) and not shadowed:
                yield head.key


@dataclass
class Summary:
    checked: int = 0
    bytes_read: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in Outcome})
    stopped_because: str | None = None  # a run cut short: why

    def add(self, result: FixityResult) -> None:
        self.checked += 1
        self.bytes_read += result.bytes_read
        self.counts[result.outcome.value] += 1

    @property
    def damaged(self) -> int:
        return sum(self.counts[o.value] for o in DAMAGE)

    def line(self) -> str:
        parts = [f"{self.counts[o.value]} {o.value}" for o in Outcome if self.counts[o.value] or o is Outcome.OK]
        return f"{self.checked} objects checked ({_human(self.bytes_read)} read): {', '.join(parts)}"


def check_objects(
    store: ObjectStore,
    object_ids: Iterable[str],
    on_result: Callable[[FixityResult], None],
    pacer: Pacer | None = None,
    stop: threading.Event | None = None,
    chunk: int = CHUNK,
) -> Summary:
    """Check each object in turn, reporting each result; a run of failures in a row stops it (store down)."""
    summary = Summary()
    failures = 0
    try:
        for object_id in object_ids:
            result = verify_object(store, object_id, pacer, stop, chunk)
            summary.add(result)
            on_result(result)
            failures = failures + 1 if result.outcome is Outcome.ERROR else 0
            if failures >= MAX_CONSECUTIVE_ERRORS:
                summary.stopped_because = f"{failures} checks in a row failed (the store is unavailable?)"
                break
    except Stopped:
        summary.stopped_because = "stopped"
    except StoreError as exc:  # the listing itself failed
        summary.stopped_because = f"the store's listing failed: {exc}"
    return summary


def _human(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"  # pragma: no cover


# -- the background scrub --------------------------------------------------------------------------
def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_DIR / STATE_FILE


def read_state(data_dir: Path) -> dict[str, Any]:
    try:
        state = json.loads(state_path(data_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(data_dir: Path, state: dict[str, Any]) -> None:
    path = state_path(data_dir)
    temporary = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(state, separators=(",", ":")), encoding="utf-8")
    os.replace(temporary, path)


class Scrubber:
    """The background scrub (module docstring): a daemon thread started and stopped by the app's lifespan.

        Each wake-up, the process that takes ``scrub.lock`` runs a scrub if one is due (``interval`` seconds after
        the last one started, or at once after a start with none recorded), or resumes one a restart cut short
        after its last checked id. Open mismatches live in the state document: an object found damaged stays
        listed until a check finds it good again, or a whole scrub ends without finding it damaged (deleted or
        re-uploaded). Every damaged check is logged; the audit log gets a line when an object is found damaged (or
    damaged otherwise than known), and one when a check finds it holding its recorded bytes again."""

    def __init__(self, store: ObjectStore, settings: ServerSettings, audit: AuditLog) -> None:
        self.store = store
        self.interval = settings.fixity_scrub_interval
        self.rate = settings.fixity_scrub_rate
        self.data_dir = settings.data_dir
        self.sentinel = settings.sentinel
        self.audit = audit
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        (self.data_dir / STATE_DIR).mkdir(mode=0o700, parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._loop, name="fixity-scrub", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        delay = min(self.interval, random.uniform(2, 5))
        while not self.stop_event.wait(delay):
            delay = max(1.0, min(self.interval / 2, 60.0))  # look again this often: another worker may hold it
            try:
                self.run_if_due()
            except Exception:  # the next wake-up tries again
                log.exception("fixity scrub failed")

    def run_if_due(self) -> bool:
        """Run (or resume) a scrub if one is due and no other process is scrubbing; True if one ran."""
        lock_path = self.data_dir / STATE_DIR / LOCK_FILE
        with open(lock_path, "a+b") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # another worker of this data dir is scrubbing
            state = read_state(self.data_dir)
            current = state.get("current")
            last = state.get("last") or {}
            if current is None and time.time() < float(last.get("startedEpoch", 0)) + self.interval:
                return False
            self._run(state)
            return True

    def _run(self, state: dict[str, Any]) -> None:
        resumed = state.get("current")
        current: dict[str, Any] = resumed or {
            "started": _now_iso(),
            "startedEpoch": time.time(),
            "checked": 0,
            "bytesRead": 0,
            "found": {},
            "cursor": None,
        }
        current.update(pid=os.getpid())
        state["current"] = current
        state.setdefault("mismatches", {})
        state.setdefault("mismatchCount", len(state["mismatches"]))
        _write_state(self.data_dir, state)
        log.info(
            "fixity scrub %s (at most %s/s)%s",
            "resumed" if resumed else "started",
            _human(self.rate),
            f" after {current['cursor']}" if resumed and current.get("cursor") else "",
        )
        saved = time.monotonic()

        def on_result(result: FixityResult) -> None:
            nonlocal saved
            current["checked"] += 1
            current["bytesRead"] += result.bytes_read
            current["cursor"] = result.object_id
            if result.damaged:
                self._damaged(state, result)
            elif result.outcome is not Outcome.ERROR and state["mismatches"].pop(result.object_id, None):
                state["mismatchCount"] = max(len(state["mismatches"]), current.get("foundCount", 0))
                if result.outcome is Outcome.OK:  # else deleted, or no longer recorded: nothing to say
                    repaired = replace(result, detail=f"holds its recorded bytes again ({result.detail})")
                    log.info("fixity: object %s %s", result.object_id, repaired.detail)
                    self.audit.fixity(repaired, actor="fixity-scrub")
            if result.outcome is Outcome.ERROR:
                log.warning("fixity: object %s %s", result.object_id, result.detail)
            if result.damaged or time.monotonic() - saved > SAVE_EVERY:
                _write_state(self.data_dir, state)
                saved = time.monotonic()

        summary = check_objects(
            self.store,
            stored_object_ids(self.store, after=current.get("cursor"), exclude={self.sentinel}),
            on_result,
            Pacer(self.rate, self.stop_event),
            self.stop_event,
        )
        if summary.stopped_because == "stopped":
            _write_state(self.data_dir, state)  # resumed from its cursor at the next start
            return
        found = current.pop("found")
        found_count = current.pop("foundCount", len(found))
        state["last"] = {
            "started": current["started"],
            "startedEpoch": current["startedEpoch"],
            "finished": _now_iso(),
            "checked": current["checked"],
            "bytesRead": current["bytesRead"],
            "mismatches": found_count,
            "incomplete": summary.stopped_because,
        }
        state["current"] = None
        if summary.stopped_because is None:  # a whole walk: what it did not find damaged is not
            state["mismatches"] = {k: v for k, v in state["mismatches"].items() if k in found}
            state["mismatchCount"] = found_count
        _write_state(self.data_dir, state)
        level = logging.WARNING if found_count or summary.stopped_because else logging.INFO
        log.log(
            level,
            "fixity scrub finished: %d objects checked, %d damaged%s",
            current["checked"],
            found_count,
            f"; cut short: {summary.stopped_because}" if summary.stopped_because else "",
        )

    def _damaged(self, state: dict[str, Any], result: FixityResult) -> None:
        """Log every damaged check; audit only news (damage not known yet, or other damage than known)."""
        log.error("fixity: object %s %s; %s", result.object_id, result.detail, REPAIR_ADVICE)
        entry = {**result.to_json(), "found": _now_iso()}
        entry.pop("objectId")
        known = state["mismatches"]
        seen = known.get(result.object_id)
        if seen is None or any(seen.get(k) != entry[k] for k in ("outcome", "actualMd5", "actualSize")):
            self.audit.fixity(result, actor="fixity-scrub")
        elif seen.get("found"):
            entry["found"] = seen["found"]  # when it was first found so
        current = state["current"]
        if result.object_id not in current["found"]:
            current["foundCount"] = current.get("foundCount", 0) + 1
        if result.object_id in known or len(known) < KEPT_MISMATCHES:
            known[result.object_id] = entry
            current["found"][result.object_id] = True
        state["mismatchCount"] = max(len(known), current["foundCount"])  # beyond the kept ones: at least this


def health_component(settings: ServerSettings) -> dict[str, Any] | None:
    """The ``fixity`` entry of the health document; None when the scrub is off.

    Choice: a damaged object is reported here with the component status ``MISMATCH`` (``UP`` when the last
    checks found none, ``UNKNOWN`` before the first scrub), and it does NOT change the overall status or
    the HTTP code, so readiness never fails because of it: the server still serves every other object, and
    taking replicas out of the balancer would not repair one. Monitoring alerts on
    ``details.fixity.status == "MISMATCH"`` (or on the audit log's ``fixity`` lines)."""
    if not settings.fixity_scrub_interval:
        return None
    state = read_state(settings.data_dir)
    last = state.get("last") or {}
    current = state.get("current") or None
    known: dict[str, Any] = state.get("mismatches") or {}
    count = int(state.get("mismatchCount") or len(known))
    if count:
        status = "MISMATCH"
    elif last:
        status = "UP"
    else:
        status = "UNKNOWN"
    component: dict[str, Any] = {
        "status": status,
        "scrubInterval": settings.fixity_scrub_interval,
        "scrubRate": settings.fixity_scrub_rate,
        "lastScrubStarted": last.get("started"),
        "lastScrubFinished": last.get("finished"),
        "lastScrubChecked": last.get("checked"),
        "lastScrubMismatches": last.get("mismatches"),
        "running": current is not None,
        "mismatchCount": count,
        "mismatches": [{"objectId": k, **v} for k, v in list(known.items())[:SHOWN_MISMATCHES]],
    }
    if last.get("incomplete"):
        component["lastScrubIncomplete"] = last["incomplete"]
    if current is not None:
        component["currentScrubStarted"] = current.get("started")
        component["currentScrubChecked"] = current.get("checked")
    if count:
        component["action"] = REPAIR_ADVICE
    return component
