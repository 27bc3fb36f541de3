"""``score-server record-specs``: record in the registry the ``.meta`` of objects finished before it kept
records (schema version 2), so that their download specifications stop asking the store for ``.meta``.

Safe beside running servers: each object is recorded as a finalize records it (``UploadService.record_stored``),
so an object hidden or replaced meanwhile is left to its own upload, which records what it wrote.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from score.core.ids import is_safe_id
from score.server.services.uploads import UploadService
from score.server.storage.base import ObjectStore
from score.server.storage.layout import DATA_PREFIX, data_entries


@dataclass
class BackfillReport:
    outcomes: Counter[str] = field(default_factory=Counter)  # UploadService.record_stored's answers

    @property
    def examined(self) -> int:
        return sum(self.outcomes.values())

    @property
    def recorded(self) -> int:
        return self.outcomes["recorded"]

    @property
    def known(self) -> int:
        return self.outcomes["known"]

    @property
    def changed(self) -> int:
        return self.outcomes["changed"] + self.outcomes["absent"]

    @property
    def unreadable(self) -> int:
        return self.outcomes["unreadable"]


def record_existing_specs(store: ObjectStore, uploads: UploadService) -> BackfillReport:
    """Every object with a ``.meta`` under ``data/``, in key order, recorded unless it is already."""
    report = BackfillReport()
    for entry in data_entries(store.list(DATA_PREFIX)):
        if entry.has_meta and is_safe_id(entry.name):
            report.outcomes[uploads.record_stored(entry.name)] += 1
    return report
