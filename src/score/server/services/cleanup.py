"""Stale-upload clean-up: abort uploads nobody finished within the upload URL lifetime (reference §3.4).

Safe when every replica runs it at once: it only reads listings and issues idempotent aborts and
deletes, and it walks the store's paginated listing lazily, so it never holds the whole list.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from score.server.services.uploads import UPLOAD_DIR, UploadService, guard
from score.server.storage.base import ObjectStore

log = logging.getLogger("score.cleanup")


@dataclass(frozen=True)
class CleanupReport:
    examined: int
    aborted: list[tuple[str, str]]  # (object id, upload id)


def stale_uploads(store: ObjectStore, older_than_s: float, now: float | None = None) -> list[tuple[str, str]]:
    """(object id, upload id) of every upload whose state was written more than ``older_than_s`` ago."""
    cutoff_ms = ((now if now is not None else time.time()) - older_than_s) * 1000
    stale = []
    for head in guard(lambda: store.list(f"{UPLOAD_DIR}/")):
        folder, _, name = head.key[len(UPLOAD_DIR) + 1 :].partition("/")
        if name != ".meta" or head.last_modified_ms > cutoff_ms:
            continue
        object_id, _, upload_id = folder.rpartition("_")
        if object_id and upload_id:
            stale.append((object_id, upload_id))
    return stale


def clean_stale_uploads(store: ObjectStore, uploads: UploadService, older_than_s: float) -> CleanupReport:
    stale = stale_uploads(store, older_than_s)
    aborted = []
    for object_id, upload_id in stale:
        try:
            uploads.discard(object_id, upload_id)
        except Exception as exc:  # one bad upload must not stop the sweep; the next run retries it
            log.warning("could not clean up upload %s of %s: %s", upload_id, object_id, exc)
            continue
        aborted.append((object_id, upload_id))
        log.info("aborted stale upload %s of object %s", upload_id, object_id)
    return CleanupReport(examined=len(stale), aborted=aborted)
