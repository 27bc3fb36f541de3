"""The sweep: finish what was committed, abort what was abandoned, remove what nothing refers to.

It runs every ``cleanup_interval`` and as ``score-server cleanup``, and handles every state a crash can
leave (reference §3.4 aborted only old uploads):

* an upload whose finalize committed (its ``committed`` document is written) is rolled forward once the
  commit is a minute old (or ``older_than_s``, if less): its object becomes visible exactly as the finalize
  would have made it;
* an upload whose ``.meta`` object already names it (finalize died while deleting the state) loses its
  state;
* a blob upload (the Java client's, on Azure) whose blob checks out is made visible, as the first request
  about the object would;
* an upload in progress with no activity for ``older_than_s`` (neither started nor a part recorded since)
  is aborted, in the store and in the state;
* state keys without a state document (markers written after their upload was discarded) and store
  uploads no state refers to (a crash between starting one and recording it) are removed once older than
  ``older_than_s``, so a live initiate or part record is never swept away under a client.

Safe when every replica runs it at once: every step is idempotent, and it walks the store's paginated
listing lazily.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from score.server.services.uploads import UploadService, guard, read_spec, upload_state_prefix
from score.server.storage.base import ObjectHead, ObjectStore
from score.server.storage.layout import COMMITTED, UPLOAD_PREFIX, meta_key, parse_state_key

log = logging.getLogger("score.cleanup")
COMMIT_GRACE_SECONDS = 60  # a committed finalize younger than this is left to the request finishing it


@dataclass
class CleanupReport:
    examined: int = 0  # upload state folders looked at
    aborted: list[tuple[str, str]] = field(default_factory=list)  # (object id, upload id): stale, discarded
    finished: list[tuple[str, str]] = field(default_factory=list)  # committed finalizes rolled forward
    tidied: list[tuple[str, str]] = field(default_factory=list)  # state left by a finished upload, removed
    orphans: list[str] = field(default_factory=list)  # keys and store uploads nothing referred to


@dataclass
class _Folder:
    """One ``upload/{objectId}_{uploadId}/`` folder: what is in it and how recent it is."""

    object_id: str
    upload_id: str
    names: set[str] = field(default_factory=set)
    keys: list[str] = field(default_factory=list)
    newest_ms: int = 0


def _folders(heads: Iterable[ObjectHead]) -> dict[str, _Folder]:
    folders: dict[str, _Folder] = {}
    for head in heads:
        state = parse_state_key(head.key)
        if state is None:
            continue
        folder = folders.setdefault(state.folder, _Folder(state.object_id, state.upload_id))
        folder.names.add(state.name)
        folder.keys.append(head.key)
        folder.newest_ms = max(folder.newest_ms, head.last_modified_ms)
    return folders


def clean_stale_uploads(
    store: ObjectStore, uploads: UploadService, older_than_s: float, now: float | None = None
) -> CleanupReport:
    now = now if now is not None else time.time()
    cutoff_ms = (now - older_than_s) * 1000
    grace_ms = (now - min(older_than_s, COMMIT_GRACE_SECONDS)) * 1000
    report = CleanupReport()
    folders = _folders(guard(lambda: store.list(UPLOAD_PREFIX)))
    for folder in folders.values():
        report.examined += 1
        try:
            _sweep_folder(store, uploads, folder, cutoff_ms, grace_ms, report)
        except Exception as exc:  # one bad upload must not stop the sweep; the next run retries it
            log.warning("could not clean up upload %s of %s: %s", folder.upload_id, folder.object_id, exc)
    known = {folder.upload_id for folder in folders.values()}
    for upload in guard(lambda: list(store.list_uploads())):
        # An upload the store holds without its key (GCS: part objects but no record) can never complete: what
        # is left of an abort, or a part PUT late through its signed URL after the upload finished. It goes
        # after the short grace, not the upload lifetime (such a PUT may come any time in that lifetime).
        if upload.upload_id in known or upload.started_ms > (cutoff_ms if upload.key else grace_ms):
            continue
        try:
            guard(lambda u=upload: store.abort_upload(u.key, u.upload_id))
        except Exception as exc:
            log.warning("could not abort orphaned store upload %s of %s: %s", upload.upload_id, upload.key, exc)
            continue
        report.orphans.append(f"store upload {upload.upload_id} of {upload.key or '(unfinished start)'}")
        log.info("aborted store upload %s of %s: no upload state refers to it", upload.upload_id, upload.key)
    return report


def _sweep_folder(
    store: ObjectStore,
    uploads: UploadService,
    folder: _Folder,
    cutoff_ms: float,
    grace_ms: float,
    report: CleanupReport,
) -> None:
    ids = (folder.object_id, folder.upload_id)
    if ".meta" not in folder.names:
        if folder.newest_ms <= cutoff_ms:  # markers or a commit record whose upload is gone
            for key in folder.keys:
                guard(lambda k=key: store.delete(k))
                report.orphans.append(key)
        return
    final = guard(lambda: read_spec(store, meta_key(folder.object_id)))
    if final is not None and final.uploadId == folder.upload_id:
        uploads.discard_state(*ids)
        report.tidied.append(ids)
        log.info("removed the state left by finished upload %s of object %s", *reversed(ids))
    elif COMMITTED in folder.names:
        if folder.newest_ms > grace_ms:
            return  # committed a moment ago: its own finalize is most likely still finishing it
        spec = guard(lambda: read_spec(store, upload_state_prefix(*ids) + ".meta"))
        if spec is None:
            return
        uploads.finish_committed(*ids, spec)
        report.finished.append(ids)
        log.info("finished committed upload %s of object %s", *reversed(ids))
    elif (check := uploads.settle_blob_upload(*ids)) is not None and check.final is not None:
        report.finished.append(ids)  # a blob upload whose blob checks out: visible now
    elif folder.newest_ms <= cutoff_ms:  # no part recorded for that long either: abandoned
        uploads.discard(*ids)
        report.aborted.append(ids)
        log.info("aborted stale upload %s of object %s", *reversed(ids))
