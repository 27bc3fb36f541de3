"""Upload a job of files: started together, parts of many files on one bounded pool, finalized together.

Per job: uploads are started with one ``POST /batch/upload/initiate`` per 1,000 files (Score's calls per
file against a server without it) and each file's journal is written (``.<objectId>/upload.json`` beside
the file, bound to its size and mtime; not for whole-object PUTs, below), all made durable by one
``syncfs``. Then, per file, by size:

* **Small files** (one part, or none): one task hashes the file (its MD5 is its part's), sends it with its
  ``Content-MD5`` and hands it to the ``Finalizer``, which finalizes finished files in batches, each with
  its part (``POST /batch/upload/finalize``: no record call per part).
* **Whole-object PUTs** (a one-part file whose MD5 is registered, where the store signs one: S3, local,
  POSIX): the file is read once, by the PUT. Its URL fixes ``Content-MD5`` to the registered MD5, so the
  store hashes the bytes as they arrive and refuses others (400); only then is the file hashed here, to
  tell a file that differs from its registration (reported at once, not retried) from damage on the way
  (sent again). Hashing first cost a second pass over every file: 0.45 ms of CPU per 256 KiB file, 1.1 s
  for 40 files of 16 MiB. Such a file keeps no journal: nothing of it is in progress on the server (a re-run
  starts it again, or finds it stored and skips it).
* **Large files** (several parts): a driver hashes the parts (many at once on SIMD lanes) and the whole
  file (on its own thread), sends the parts on the job's pool (at most ``--parallel`` large parts at once)
  and records each with the server as it lands, so a kill loses nothing sent; then finalizes.

Resume: a file with a journal resumes its upload (``status``): parts recorded are never sent again, and
parts the store holds but nobody recorded (a kill between a PUT and its record) are recorded instead of
sent, when the file's part hashes the same. The journal notes when finalize was asked, so a re-run after
a kill that came after the server finished confirms that finalize instead of saying "already exists".
Integrity: every part's MD5 goes with it (the store checks it) and is compared with the store's ETag; the
whole file's MD5 must equal the declared one before finalize, which checks it again on the server.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from score.client.api import ScoreApi
from score.client.config import ClientConfig
from score.client.errors import ClientError, IntegrityError, ServerError, helped_by_rerun
from score.client.transfer.data import DataClient
from score.client.transfer.hashing import hash_mapped_range
from score.client.transfer.jobs import (
    SMALL_FILE_WORKERS,
    Coordinator,
    FileOutcome,
    FileTally,
    JobProgress,
    JobReport,
    NoJobProgress,
    PendingFiles,
    collect_finished,
    drive,
    fetched_ahead,
    growing_chunks,
)
from score.client.transfer.journal import read_json, sync_file_system, write_json
from score.client.transfer.parallel import PartTally, UrlBook, transfer_part
from score.client.transfer.upload_hashing import PartMd5s, WholeFileMd5
from score.client.wire import ObjectSpecification, Part, UploadProgress
from score.core import md5 as md5s
from score.core.ids import WHOLE_PUT_PREFIX
from score.crashpoints import crash_point

log = logging.getLogger("score.client")

FINALIZE_BATCH = 100  # finished small files finalized together, ...
FINALIZE_CALLS = 2  # ... in up to this many calls at once (the last batch is not a long tail)
FINALIZE_WAIT = 0.05  # seconds a finished file may wait for others to share its finalize call


@dataclass(frozen=True)
class UploadItem:
    """One file of the job: its path, the object id it is registered under, its declared MD5, and where the
    user named it (``origin``, e.g. "manifest m.tsv, line 3"), which every failure of the file repeats."""

    path: Path
    object_id: str
    md5: str | None = None
    origin: str = ""


def _file_identity(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtimeNs": stat.st_mtime_ns}


def state_dir_for(path: Path, object_id: str, config: ClientConfig) -> Path:
    """Beside the file (Score's place), unless configured otherwise or the file's folder is read-only."""
    if config.upload_state_dir:
        return Path(config.upload_state_dir) / f".{object_id}"
    if os.access(path.parent, os.W_OK):
        return path.parent / f".{object_id}"
    folder = hashlib.sha256(str(path.resolve().parent).encode()).hexdigest()[:16]
    return Path.home() / ".cache" / "score" / "uploads" / folder / f".{object_id}"


@dataclass
class _File:
    """One file being uploaded."""

    item: UploadItem
    identity: dict[str, int]
    declared: str | None
    journal: Path
    upload_id: str = ""
    parts: list[Part] = field(default_factory=list)
    found_journal: bool = False  # an earlier run's journal was beside the file
    whole_md5: str | None = None  # a whole-object PUT's: the registered MD5 its URL fixes (module docstring)

    @property
    def key(self) -> str:
        return self.item.object_id

    @property
    def keeps_journal(self) -> bool:
        """Every upload keeps a journal beside the file, but a whole-object PUT (module docstring)."""
        return self.whole_md5 is None

    @property
    def name(self) -> str:
        return str(self.item.path)

    @property
    def size(self) -> int:
        return self.identity["size"]

    @property
    def small(self) -> bool:
        return len(self.parts) <= 1

    def outcome(self, status: str, detail: str = "", **counts: Any) -> FileOutcome:
        return FileOutcome(self.name, self.key, status, self.size, detail=_at(self.item, status, detail), **counts)


def _at(item: UploadItem, status: str, detail: str) -> str:
    """A failure's detail with the manifest line that named the file, so the user knows which line to fix."""
    return f"{detail} ({item.origin})" if status == "failed" and item.origin else detail


def _refused(item: UploadItem, detail: str) -> FileOutcome:
    """A file that fails before any check with the server (unreadable, a malformed MD5)."""
    return FileOutcome(str(item.path), item.object_id, "failed", detail=_at(item, "failed", detail))


def _failed_file(f: _File, error: ClientError) -> FileOutcome:
    return f.outcome("failed", str(error), rerun_helps=helped_by_rerun(error))


# Refusals that running the same command again cannot change: the request itself is wrong (400), the object or
# upload is not there (404), the object exists (409). Not 401/403: with a new token the upload resumes.
REFUSED_FOR_GOOD = (400, 404, 409)


def _exists_refusal(answer: object) -> bool:
    return isinstance(answer, ServerError) and answer.status == 409 and "already exists" in str(answer)


def _in_progress_refusal(answer: object) -> bool:
    return isinstance(answer, ServerError) and answer.status == 409 and "already in progress" in str(answer)


class UploadJob:
    def __init__(self, config: ClientConfig, api: ScoreApi, progress: JobProgress | None = None) -> None:
        self._config = config
        self._api = api
        self._progress = progress or NoJobProgress()

    def run(
        self,
        items: list[UploadItem],
        force: bool = False,
        report: JobReport | None = None,
    ) -> JobReport:
        """Upload every item; each file's outcome is in the report. Ctrl-C cancels the job and returns the
        report so far (``report.cancelled``).

        An object that already exists is, without ``force``, skipped when it holds the file (its size and
        MD5) and refused, saying to use --force, when it holds something else (``_compare_existing``); with
        ``force`` it is replaced. An upload this client began (its journal beside the file) is resumed,
        with or without ``force``. An upload in progress started elsewhere is continued (``_adopt``) without
        ``force`` and discarded with it."""
        report = report if report is not None else JobReport()
        files = [f for f in (self._check(item, report) for item in items) if f is not None]
        coordinator: Coordinator | None = None
        try:
            started, fresh = self._start(files, force, report)
            self._progress.job_started(len(items), sum(f.size for f in started + fresh))
            for outcome in report.outcomes:
                self._progress.file_finished(outcome.object_id, outcome.status != "failed")
            if started or fresh:
                several = len(started) + len(fresh) > 1 or any(f.small for f in started)
                workers = max(self._config.parallel, SMALL_FILE_WORKERS) if several else self._config.parallel
                coordinator = Coordinator(workers)
                self._send(started, fresh, force, coordinator, workers, report)
        except KeyboardInterrupt:
            report.cancelled = True
            if coordinator is not None:
                coordinator.cancel()
        finally:
            if coordinator is not None:
                coordinator.shutdown(wait=not report.cancelled)
            self._progress.job_finished()
        return report

    # -- before any byte moves ---------------------------------------------------------------------
    def _check(self, item: UploadItem, report: JobReport) -> _File | None:
        path = item.path
        try:
            readable = path.is_file()
            identity = _file_identity(path) if readable else {}
        except OSError as exc:  # e.g. a name longer than the system allows
            report.add(_refused(item, f"cannot read it: {exc.strerror}"))
            return None
        if not readable:
            report.add(_refused(item, "not a readable file"))
            return None
        declared = None
        if item.md5:
            try:
                declared = md5s.normalize(item.md5)
            except ValueError as exc:
                report.add(_refused(item, f"its MD5 {exc}"))
                return None
        journal = state_dir_for(path, item.object_id, self._config) / "upload.json"
        return _File(item, identity, declared, journal)

    def _start(self, files: list[_File], force: bool, report: JobReport) -> tuple[list[_File], list[_File]]:
        """Resume what a journal names, confirm what was being finalized; the rest is returned to be started
        (``_initiate``) while the first files are sent."""
        fresh, started = [], []
        for f in files:
            journal = read_json(f.journal)
            f.found_journal = journal is not None
            mine = journal is not None and journal.get("file") == f.identity
            if mine and journal.get("finalizing"):  # ours, with or without --force: confirm, never redo it
                confirmed = self._confirm(f, journal)
                if confirmed is not None:
                    report.add(confirmed)
                    continue
            if mine and journal.get("uploadId") and (journal.get("md5") in (None, f.declared) or not f.declared):
                resumed = self._resume(f, journal, force, report)
                if resumed is not None:
                    started.append(resumed)
                    continue
                if any(o.object_id == f.key for o in report.outcomes):
                    continue
            elif journal is not None and journal.get("uploadId") and not force:
                detail = f"the file changed since the interrupted upload of {f.key} began; use --force to start over"
                report.add(f.outcome("failed", detail))
                continue
            fresh.append(f)
        return started, fresh

    def _confirm(self, f: _File, journal: dict[str, Any]) -> FileOutcome | None:
        """The interrupted run had asked to finalize: if the server finished it, the file is done."""
        try:
            self._api.finalize(f.key, str(journal.get("uploadId")), str(journal["finalizing"]))
        except ServerError as exc:
            if exc.status in (400, 404):
                return None  # not (or no longer) that upload: start again
            raise
        shutil.rmtree(f.journal.parent, ignore_errors=True)
        log.info("the interrupted upload %s of %s had been finalized", journal.get("uploadId"), f.key)
        md5 = str(journal["finalizing"])
        return f.outcome("done", parts_skipped=int(journal.get("parts") or 0), verified=True, md5=md5)

    def _resume(self, f: _File, journal: dict[str, Any], force: bool, report: JobReport) -> _File | None:
        try:
            progress = self._api.status(f.key, f.size)
        except ServerError as exc:
            if exc.status == 400 and not force:
                report.add(
                    f.outcome(
                        "failed",
                        f"the file changed since the interrupted upload of {f.key} ({exc}); use --force to start over",
                    )
                )
            elif exc.status != 400:
                report.add(f.outcome("failed", str(exc), rerun_helps=helped_by_rerun(exc)))
            return None
        # Started elsewhere (ours was replaced), or taken over by an earlier run: not every record is ours.
        foreign = progress is not None and (progress.uploadId != journal.get("uploadId") or journal.get("adopted"))
        if progress is None or (foreign and force):
            return None  # started again; --force discards what was started elsewhere
        if foreign:
            return self._adopt(f, progress)
        log.info("resuming upload %s of %s", progress.uploadId, f.key)
        f.upload_id, f.parts = progress.uploadId, progress.parts
        return f

    def _adopt(self, f: _File, progress: UploadProgress) -> _File:
        """Continue an upload that another client started (the Java client, another machine), as the Java
        client continues one: its recorded parts are not taken on trust but become "held" parts, which the
        sender hashes from this file and records again when they match, or sends again (to the URL the
        status gave) when they do not. So only the parts that differ move, and finalize verifies the whole."""
        recorded = sum(1 for p in progress.parts if p.md5)
        log.info(
            "continuing upload %s of %s, started elsewhere: %d of %d parts recorded, each checked against this file",
            progress.uploadId,
            f.key,
            recorded,
            len(progress.parts),
        )
        f.upload_id = progress.uploadId
        f.parts = [replace(p, md5=None, sourceMd5=p.md5 or p.sourceMd5) for p in progress.parts]
        journal = {"objectId": f.key, "uploadId": f.upload_id, "file": f.identity, "md5": f.declared, "adopted": True}
        write_json(f.journal, journal, durable=False)
        return f

    def _adopt_in_progress(self, f: _File, report: JobReport) -> _File | None:
        """The upload of ``f`` that initiate found in progress, adopted (``_adopt``); None, with the file's
        outcome in the report, when it cannot be (it is for another size, or it ended meanwhile)."""
        try:
            progress = self._api.status(f.key, f.size)
        except ServerError as exc:
            detail = str(exc) if exc.status != 400 else f"{exc}; use --force to discard it and start over"
            report.add(f.outcome("failed", detail, rerun_helps=exc.status != 400 and helped_by_rerun(exc)))
            return None
        if progress is None:
            report.add(f.outcome("failed", f"the upload in progress of {f.key} ended meanwhile", rerun_helps=True))
            return None
        return self._adopt(f, progress)

    def _ask_initiate(self, files: list[_File], force: bool) -> dict[str, ObjectSpecification | ServerError]:
        """The server's answer for each file: its upload started, or why not (one call for the chunk)."""
        items = [
            {
                "objectId": f.key,
                "fileSize": f.size,
                **({"md5": f.declared} if f.declared else {}),
                "overwrite": force,
                "replaceInProgress": force,
                "wholePut": True,  # a one-part file goes in one PUT with its Content-MD5 where the store allows
            }
            for f in files
        ]
        return self._api.initiate_many(items)

    def _initiate(
        self, files: list[_File], answers: dict[str, ObjectSpecification | ServerError], report: JobReport
    ) -> list[_File]:
        """Files whose upload started, each journaled (durably, one sync for the chunk) before any byte moves."""
        existing = self._compare_existing([f for f in files if _exists_refusal(answers[f.key])])
        started = []
        for f in files:
            answer = answers[f.key]
            if _in_progress_refusal(answer):  # started elsewhere (only asked without --force): continue it
                adopted = self._adopt_in_progress(f, report)
                if adopted is not None:
                    started.append(adopted)
                continue
            if isinstance(answer, ServerError):
                if answer.status in REFUSED_FOR_GOOD:
                    # Whatever a journal here named cannot be resumed (it was checked before initiating).
                    shutil.rmtree(f.journal.parent, ignore_errors=True)
                outcome = existing.get(f.key)
                report.add(outcome or f.outcome("failed", str(answer), rerun_helps=helped_by_rerun(answer)))
                continue
            f.upload_id, f.parts = answer.uploadId or "", answer.parts
            started.append(f)
            if f.upload_id.startswith(WHOLE_PUT_PREFIX):
                f.whole_md5 = answer.objectMd5
                if f.found_journal:  # an earlier run's upload, replaced by this one
                    shutil.rmtree(f.journal.parent, ignore_errors=True)
                continue
            journal = {"objectId": f.key, "uploadId": f.upload_id, "file": f.identity, "md5": f.declared}
            write_json(f.journal, journal, durable=False)
        for folder in {f.journal.parent.parent for f in started if f.keeps_journal}:
            sync_file_system(folder)  # every journal of the batch made durable at once
        crash_point("upload.initiated")
        return started

    def _compare_existing(self, refused: list[_File]) -> dict[str, FileOutcome]:
        """The outcome of each file refused because its object exists: skipped when the object has the file's
        size and MD5, failed saying to use --force when it holds something else. The declared MD5 (manifest,
        registration, ``--md5``) stands for the file's; a file without one is hashed. The objects are asked
        in one call; one this token may not read is left out (its refusal says to use --force already)."""
        if not refused:
            return {}
        specs = self._api.download_specs([f.key for f in refused], exclude_urls=True)
        outcomes = {}
        for f in refused:
            spec = specs.get(f.key)
            if not isinstance(spec, ObjectSpecification):
                continue
            stored = (spec.objectMd5 or "").lower()
            md5 = f.declared or (_md5_of_file(f.item.path, f.size) if spec.objectSize == f.size else None)
            if spec.objectSize == f.size and stored == md5:
                outcomes[f.key] = f.outcome("skipped", "already uploaded, with the same size and MD5", md5=md5)
                continue
            ours = f"{f.size} bytes" + (f", MD5 {md5}" if md5 else "")
            theirs = f"{spec.objectSize} bytes" + (f", MD5 {stored}" if stored else "")
            detail = (
                f"object {f.key} already exists with other content (stored: {theirs}; this file: {ours}); "
                "use --force to replace it"
            )
            outcomes[f.key] = f.outcome("failed", detail)
        return outcomes

    # -- moving bytes --------------------------------------------------------------------------------
    def _send(
        self,
        started: list[_File],
        fresh: list[_File],
        force: bool,
        coordinator: Coordinator,
        workers: int,
        report: JobReport,
    ) -> None:
        """Send the started files, and start the fresh ones a chunk at a time while the first are sent (the
        server's checks for a thousand files take about a second: no byte waited for them)."""
        data = DataClient(workers, self._config.timeout, self._config.chunk_size)
        finalizer = Finalizer(self._api, self._progress, report)
        large_slots = threading.Semaphore(self._config.parallel)
        pending: PendingFiles[_File] = PendingFiles()

        def submit(f: _File) -> None:
            if f.small:
                pending[coordinator.submit(self._small, f, coordinator, data, finalizer)] = f
            else:
                runner = _LargeUpload(self, f, coordinator, data, large_slots)
                pending[drive(runner.run, f"file-{f.key[:8]}")] = f

        try:
            for f in started:
                submit(f)
            for chunk, answers in fetched_ahead(growing_chunks(fresh), lambda c: self._ask_initiate(c, force)):
                for f in self._initiate(chunk, answers, report):
                    submit(f)
                collect_finished(pending, report, self._progress, _failed_file, wait_for_one=False)
            while pending:
                collect_finished(pending, report, self._progress, _failed_file, wait_for_one=True)
            finalizer.close()
        finally:
            if not coordinator.cancelled:
                data.close()

    def _small(self, f: _File, coordinator: Coordinator, data: DataClient, finalizer: Finalizer) -> None:
        """A file of one part (or none): hash it (unless the store will: a whole-object PUT), send it with its
        MD5, hand it to the finalizer."""
        tally = FileTally(self._progress, f.key, coordinator)
        tally.start(f.item.path.name, f.size)
        if f.whole_md5:
            md5 = f.whole_md5
        else:
            md5 = _md5_of_file(f.item.path, f.size)
            if f.declared and md5 != f.declared:
                self._api.cancel(f.key)
                shutil.rmtree(f.journal.parent, ignore_errors=True)
                raise _differs(f, md5, f.declared, "its declared MD5")
        parts = []
        sent = 0
        for part in f.parts:  # one, or none for an empty file
            if part.md5 is not None:  # recorded by an interrupted run
                etag = part.md5
            elif part.sourceMd5 and part.sourceMd5.lower() == md5:  # in the store, not recorded
                etag = md5
                tally.advance(part.partSize)
            else:
                etag = self._put(f, part, md5, data, tally)
                sent += 1
            parts.append({"partNumber": part.partNumber, "md5": md5, "etag": etag or md5})
        if _file_identity(f.item.path) != f.identity:
            raise IntegrityError(f"{f.name} changed while it was being uploaded; upload it again")
        finalizer.add(f, md5, parts, sent)

    def _put(self, f: _File, part: Part, md5: str, data: DataClient, tally: FileTally) -> str:
        what = f"part {part.partNumber} of {f.key}"
        urls = UrlBook({part.partNumber: part.url}, lambda: self._fresh_urls(f))
        etags: list[str] = []

        def put(url: str, part_tally: PartTally) -> None:
            try:
                etag = data.put_part(url, f.item.path, part.offset, part.partSize, md5, part_tally, what)
            except ServerError as exc:
                if exc.status == 400 and f.whole_md5:  # the store refused the bytes: the file's, or the way's?
                    hashed = _md5_of_file(f.item.path, f.size)
                    if hashed != f.whole_md5:
                        raise _differs(f, hashed, f.whole_md5, f"the MD5 registered for object {f.key}") from exc
                raise
            crash_point("upload.part_sent")
            if etag and md5s.is_hex(etag) and etag.lower() != md5:
                raise IntegrityError(f"{what}: the store received bytes hashing to {etag}, we sent {md5}")
            etags.append(etag)

        transfer_part(put, part.partNumber, what, urls, tally, self._config.retries)  # type: ignore[arg-type]
        return etags[-1]

    def _fresh_urls(self, f: _File) -> dict[int, str | None]:
        if f.upload_id.startswith(WHOLE_PUT_PREFIX):  # no upload state to ask: start it again
            item = {"objectId": f.key, "fileSize": f.size, "replaceInProgress": False, "wholePut": True}
            answer = self._api.initiate_many([{**item, **({"md5": f.declared} if f.declared else {})}])[f.key]
            if isinstance(answer, ServerError):
                raise answer
            f.upload_id = answer.uploadId or ""
            return {p.partNumber: p.url for p in answer.parts}
        progress = self._api.status(f.key, f.size)
        if progress is None or progress.uploadId != f.upload_id:
            raise ClientError(f"the upload of {f.key} was cancelled or replaced on the server; upload again")
        return {p.partNumber: p.url for p in progress.parts}


class Finalizer:
    """Finalizes finished small files in batches, each with its part: one call for up to ``FINALIZE_BATCH``,
    ``FINALIZE_CALLS`` calls at a time.

    A file waits at most ``FINALIZE_WAIT`` for others to share its call. Before the call each file's
    journal notes that finalize was asked (made durable at once for the batch), so a kill during the call
    leaves a re-run that confirms it; after it, the journals go.
    """

    def __init__(self, api: ScoreApi, progress: JobProgress, report: JobReport) -> None:
        self._api = api
        self._progress = progress
        self._report = report
        self._queue: list[tuple[_File, str, list[dict[str, Any]], int]] = []
        self._lock = threading.Condition()
        self._closing = False
        self._error: BaseException | None = None
        self._threads = [
            threading.Thread(target=self._run, name=f"finalize-{n}", daemon=True) for n in range(FINALIZE_CALLS)
        ]
        for thread in self._threads:
            thread.start()

    def add(self, f: _File, md5: str, parts: list[dict[str, Any]], sent: int) -> None:
        with self._lock:
            self._queue.append((f, md5, parts, sent))
            self._lock.notify()

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        for thread in self._threads:
            thread.join()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    while not self._queue and not self._closing:
                        self._lock.wait()
                    if not self._queue and self._closing:
                        return
                if not self._closing:
                    time.sleep(FINALIZE_WAIT)  # let a few more files join this call
                with self._lock:
                    batch, self._queue = self._queue[:FINALIZE_BATCH], self._queue[FINALIZE_BATCH:]
                self._finalize(batch)
        except BaseException as exc:
            self._error = exc

    def _finalize(self, batch: list[tuple[_File, str, list[dict[str, Any]], int]]) -> None:
        crash_point("upload.parts_done")
        folders = set()
        for f, md5, parts, _ in batch:
            if f.keeps_journal:
                journal = read_json(f.journal) or {}
                write_json(f.journal, {**journal, "finalizing": md5, "parts": len(parts)}, durable=False)
                folders.add(f.journal.parent.parent)
        for folder in folders:
            sync_file_system(folder)
        items = [{"objectId": f.key, "uploadId": f.upload_id, "md5": md5, "parts": parts} for f, md5, parts, _ in batch]
        try:
            answers: dict[str, ServerError | None] = self._api.finalize_many(items)
        except ClientError as exc:  # the call itself failed (after its retries): every file of the batch
            answers = {f.key: ServerError(str(exc), 0) for f, *_ in batch}
        crash_point("upload.finalized")
        for f, md5, parts, sent in batch:
            error = answers.get(f.key)
            if error is None:
                if f.keeps_journal:
                    shutil.rmtree(f.journal.parent, ignore_errors=True)
                outcome = f.outcome("done", parts_moved=sent, parts_skipped=len(parts) - sent, verified=True, md5=md5)
            else:
                _forget_if_refused(self._api, f, error)
                outcome = f.outcome("failed", str(error), rerun_helps=helped_by_rerun(error))
            self._report.add(outcome)
            self._progress.file_finished(f.key, outcome.status != "failed")


class _LargeUpload:
    """One file of several parts: hashed on its own threads, parts on the job's pool, recorded as they land."""

    def __init__(
        self, job: UploadJob, f: _File, coordinator: Coordinator, data: DataClient, slots: threading.Semaphore
    ) -> None:
        self.job = job
        self.f = f
        self.coordinator = coordinator
        self.data = data
        self.slots = slots
        self.tally = FileTally(job._progress, f.key, coordinator)

    def run(self) -> FileOutcome:
        f, api, config = self.f, self.job._api, self.job._config
        whole = WholeFileMd5(f.item.path, f.size)
        todo = [p for p in f.parts if p.md5 is None]  # recorded parts carry md5; the rest may be held
        part_md5s = PartMd5s(f.item.path, [(p.offset, p.partSize) for p in todo], config.parallel, whole.read_ahead)
        held = 0
        try:
            self.tally.start(f.item.path.name, f.size, sum(p.partSize for p in f.parts if p.md5 is not None))
            if todo:
                held = self._send_parts(todo, part_md5s)
            part_md5s.check()
            computed = whole.result()
        finally:  # a failed upload leaves no thread hashing on behind it
            whole.stop()
            part_md5s.stop()
        if _file_identity(f.item.path) != f.identity:
            raise IntegrityError(f"{f.name} changed while it was being uploaded; upload it again")
        if f.declared and computed != f.declared:
            api.cancel(f.key)
            shutil.rmtree(f.journal.parent, ignore_errors=True)
            raise IntegrityError(
                f"{f.name} hashes to {computed} but its declared MD5 is {f.declared}; nothing was stored. "
                "Check the file or the MD5 you gave, then upload again"
            )
        crash_point("upload.parts_done")
        journal = read_json(f.journal) or {}
        write_json(f.journal, {**journal, "finalizing": computed, "parts": len(f.parts)})
        try:
            api.finalize(f.key, f.upload_id, computed)
        except ServerError as exc:
            _forget_if_refused(api, f, exc)
            raise
        crash_point("upload.finalized")
        shutil.rmtree(f.journal.parent, ignore_errors=True)
        return f.outcome(
            "done",
            parts_moved=len(todo) - held,
            parts_skipped=len(f.parts) - len(todo) + held,
            verified=True,
            md5=computed,
        )

    def _send_parts(self, parts: list[Part], hasher: PartMd5s) -> int:
        """Send (or, where the store already holds them, just record) ``parts``; return how many were held."""
        f, api, config = self.f, self.job._api, self.job._config
        urls = UrlBook({p.partNumber: p.url for p in parts}, lambda: self.job._fresh_urls(f))
        # Recording a part (a call the server answers after a few store requests) runs beside the transfer,
        # so a sender goes straight on to its next part.
        recorder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="record-part")
        recording: dict[int, Future[None]] = {}
        held: list[int] = []

        def send(part: Part, record_later: bool) -> None:
            what = f"part {part.partNumber} of {f.key}"

            def put(url: str, tally: PartTally) -> None:
                md5 = hasher.part_md5(part.offset)
                if part.sourceMd5 and part.sourceMd5.lower() == md5 and record_later:
                    etag = md5  # the store already holds exactly these bytes: record them, send nothing
                    tally(part.partSize)
                    held.append(part.partNumber)
                else:
                    etag = self.data.put_part(url, f.item.path, part.offset, part.partSize, md5, tally, what)
                    crash_point("upload.part_sent")
                if etag and md5s.is_hex(etag) and etag.lower() != md5:
                    raise IntegrityError(f"{what}: the store received bytes hashing to {etag}, we sent {md5}")
                record = (f.key, f.upload_id, part.partNumber, md5, etag or md5)
                if record_later:
                    recording[part.partNumber] = recorder.submit(_record, api, *record)
                else:
                    _record(api, *record)

            with self.slots:
                transfer_part(put, part.partNumber, what, urls, self.tally, config.retries)  # type: ignore[arg-type]

        try:
            self.coordinator.run_all(lambda part: send(part, record_later=True), parts)
            unrecorded = [p for p in parts if _failed(recording[p.partNumber], f"recording part {p.partNumber}")]
            # The server would not record these (after its own retries): send them again, recording each
            # before going on, so a part that cannot be recorded fails the upload with the server's reason.
            self.coordinator.run_all(lambda part: send(part, record_later=False), unrecorded)
        finally:
            recorder.shutdown(wait=True, cancel_futures=True)
        return len(set(held) - {p.partNumber for p in unrecorded})


def _forget_if_refused(api: ScoreApi, f: _File, error: ServerError) -> None:
    """Remove the file's journal once the server has refused its finalize for good and holds the upload no
    more (an MD5 mismatch discards it: "nothing was stored"). The journal is what resumes an interrupted
    upload; after such a refusal it could resume nothing and would only be left lying beside the file."""
    if error.status not in REFUSED_FOR_GOOD or not f.keeps_journal:
        return  # unreachable, overloaded, not authorized: the upload is still there to resume; or no journal
    try:
        progress = api.status(f.key, f.size)
    except ServerError as exc:
        if exc.status not in (400, 404):
            return
        progress = None
    if progress is None or progress.uploadId != f.upload_id:
        shutil.rmtree(f.journal.parent, ignore_errors=True)


def _record(api: ScoreApi, object_id: str, upload_id: str, part_number: int, md5: str, etag: str) -> None:
    api.finalize_part(object_id, upload_id, part_number, md5, etag)
    crash_point("upload.part_recorded")


def _failed(recorded: Future[None], what: str) -> bool:
    error = recorded.exception()
    if error is None:
        return False
    if not isinstance(error, ClientError):
        raise error
    log.info("%s failed (%s); sending the part again", what, error)
    return True


def _differs(f: _File, md5: str, expected: str, what: str) -> ClientError:
    """The file is not the one its MD5 names: said once, not retried (the same bytes would fail again)."""
    return ClientError(
        f"{f.name} hashes to {md5} but {what} is {expected}; nothing was stored. Check the file or the MD5 "
        "given for it, then upload again"
    )


def _md5_of_file(path: Path, size: int) -> str:
    md5 = hashlib.md5()  # noqa: S324 - integrity, not security
    if size:
        fd = os.open(path, os.O_RDONLY)
        try:
            hash_mapped_range(fd, 0, size, md5, sequential=True)
        finally:
            os.close(fd)
    return md5.hexdigest()
