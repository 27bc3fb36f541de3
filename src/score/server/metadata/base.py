"""The MetadataSource protocol: what Score asks of Song (reference §5.1), plus the file record.

Two implementations: the embedded registry (``registry.py``, SQLite, in-process) and, in a later
issue, a remote Song client. Both answer the same questions the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

UNPUBLISHED = "UNPUBLISHED"
PUBLISHED = "PUBLISHED"
SUPPRESSED = "SUPPRESSED"


class MetadataUnavailable(Exception):
    """The metadata service could not be reached or answered with an error (API answers 503)."""


@dataclass(frozen=True)
class Entity:
    """Song's legacy file entity (``GET /entities/{id}``), plus the registered size and MD5."""

    id: str
    gnosId: str  # the analysis id
    fileName: str
    projectCode: str  # the study id
    access: str  # "open" | "controlled"
    fileSize: int | None = None
    fileMd5sum: str | None = None

    def to_wire(self) -> dict[str, object]:
        """The legacy entity JSON Score and its clients read."""
        return {
            "id": self.id,
            "gnosId": self.gnosId,
            "fileName": self.fileName,
            "projectCode": self.projectCode,
            "access": self.access,
        }


class SingleFlight:
    """Coalesces concurrent identical calls: one caller (the leader) runs ``fn``, the others wait for its result.

    Why: state and access must be asked fresh for every decision, so a burst of requests for one analysis
    would otherwise become a burst on Song. Callers that arrive while a call is in flight share its answer
    (which Song gave during their own request); callers that arrive after it finished start a new one, so
    no answer is reused once its call has ended.
    """

    @dataclass
    class _Call:
        done: threading.Event = field(default_factory=threading.Event)
        value: Any = None
        error: BaseException | None = None

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[Hashable, SingleFlight._Call] = {}

    def run(self, key: Hashable, fn: Callable[[], Any]) -> Any:
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = self._calls[key] = SingleFlight._Call()
        if not leader:
            call.done.wait()
            if call.error is not None:
                raise call.error
            return call.value
        try:
            call.value = fn()
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.set()
        return call.value


class DecisionMemo:
    """The answers shared by every check of one API request (one per request, see ``decision_scope``).

    Why: one request checks an object's access and then its analysis state, and a batch request checks
    many objects of (usually) one analysis. Each request must see Song as it is *now*, but asking Song
    once per check would multiply the load by the number of checks. Within one request an answer is
    reused; it is never reused by a later request.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[Hashable, Any] = {}
        self._flight = SingleFlight()

    def get_or_compute(self, key: Hashable, fn: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._values:
                return self._values[key]

        def compute() -> Any:
            with self._lock:  # a caller may have finished this key between our check and our flight
                if key in self._values:
                    return self._values[key]
            value = fn()
            with self._lock:
                self._values[key] = value
            return value

        return self._flight.run(key, compute)


_DECISION_MEMO: ContextVar[DecisionMemo | None] = ContextVar("score_metadata_decision_memo", default=None)


@contextmanager
def decision_scope(memo: DecisionMemo) -> Iterator[None]:
    """Metadata answers fetched inside this block are shared through ``memo`` (a remote Song honours it)."""
    token = _DECISION_MEMO.set(memo)
    try:
        yield
    finally:
        _DECISION_MEMO.reset(token)


def current_decision_memo() -> DecisionMemo | None:
    return _DECISION_MEMO.get()


class MetadataSource(Protocol):
    def entity(self, object_id: str) -> Entity | None:
        """The file entity for an object id, or None if it is not registered."""
        ...

    def analysis_state(self, study_id: str, analysis_id: str) -> str | None:
        """``UNPUBLISHED`` / ``PUBLISHED`` / ``SUPPRESSED``, or None if the analysis is unknown."""
        ...

    def sibling_files(self, entity: Entity) -> list[Entity]:
        """Every file of ``entity``'s analysis (itself included): how an object's index file is found."""
        ...

    def analysis_entities(self, analysis_id: str) -> list[Entity]:
        """Every file of the analysis ``analysis_id`` in whichever study holds it (empty when unknown): how a
        DRS bundle id, which names no study, is resolved."""
        ...


@dataclass(frozen=True)
class StoredObject:
    """What Score holds for a finished object: the facts a publish check compares with Song's."""

    object_id: str
    size: int
    md5: str | None


class ObjectCatalog(Protocol):
    """Lets the registry ask Score, in-process, whether an object is uploaded (publish check)."""

    def stored_object(self, object_id: str) -> StoredObject | None: ...


class SpecRecords(Protocol):
    """Finished objects' ``.meta`` documents kept in the embedded registry (``UploadService.stored_spec``), so a
    download specification need not ask the store for them. Errors: ``MetadataUnavailable``, ``RegistryError``."""

    def recorded_spec(self, object_id: str) -> str | None: ...

    def spec_generation(self, object_id: str) -> int: ...

    def record_spec(self, object_id: str, document: str, generation: int) -> bool: ...

    def forget_spec(self, object_id: str) -> None: ...
