"""Download a job of objects: many files at once on one bounded pool, each verified, each renamed when whole.

Per file, by size:

* **Small files** (one part, fetched whole): one task receives the object into ``.<objectId>.partial``
  beside its target while hashing it, checks the MD5, and hands the file to the ``Committer``, which
  makes a batch of finished files durable with one ``syncfs`` and then renames each to its final name.
  A kill leaves at most partial files, which the next run fetches again (one part each).
* **Large files** (several parts, or a range): a driver keeps the file's state in
  ``<output-dir>/.<objectId>/`` (``data.partial`` written in place, ``meta.json``, one ``part-NNNNNNNN``
  per finished part), submits its parts to the job's pool (at most ``parallel`` large parts at once, each
  with a ring of receive buffers), hashes the whole object in file order as the bytes arrive, fetches
  again only parts found corrupt, fsyncs and renames. A kill leaves the finished parts, which the next run
  does not fetch again.

Either way a file appears under its final name only complete and verified. Specifications come from
``POST /batch/download/specs`` a chunk of files at a time (32, then 250 per call; per-object calls against a
server without it), and each chunk's files start as soon as it is answered, so no byte waits for the
server's checks of the whole job.
A ``Sink`` sends every file elsewhere on the same pool, planning and checks (``archive_sink``: each file a
range of one tar archive).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from score.client.api import ScoreApi
from score.client.config import ClientConfig
from score.client.errors import ClientError, IntegrityError, helped_by_rerun
from score.client.transfer.data import DataClient
from score.client.transfer.hashing import InOrderHasher, hash_mapped_range, md5_of_range
from score.client.transfer.jobs import (
    SMALL_FILE_WORKERS,
    Coordinator,
    FileOutcome,
    FileTally,
    JobProgress,
    JobReport,
    NoJobProgress,
    PartSlots,
    PendingFiles,
    collect_finished,
    drive,
    fetched_ahead,
    growing_chunks,
)
from score.client.transfer.journal import fsync_dir, read_json, sync_file_system, write_json
from score.client.transfer.output import OutputFile
from score.client.transfer.parallel import UrlBook, transfer_part
from score.client.wire import ObjectSpecification
from score.core import md5 as md5s

log = logging.getLogger("score.client")

COMMIT_BATCH = 64  # finished small files made durable together (one syncfs) ...
COMMIT_BYTES = 64 * 1024 * 1024  # ... or fewer, once they hold this much (a kill fetches them again) ...
COMMIT_WAIT = 1.0  # ... or once the first of them has waited this long (seconds)
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
DIRECT_MIN = 4 * 1024 * 1024  # a small file this large bypasses the page cache too (see output.py)


@dataclass(frozen=True)
class Claim:
    """What the user's list says an object is (a download manifest's line: its size and MD5), checked against
    the server's record before any byte moves: a stale or mistyped manifest stops that file, said with the
    line to fix, instead of being ignored while the download reports "verified"."""

    origin: str  # where the claim was made, e.g. "manifest m.tsv, line 3"
    size: int | None = None
    md5: str | None = None


@dataclass(frozen=True)
class DownloadTarget:
    """One object of the job and the path its bytes go to."""

    object_id: str
    path: Path
    claim: Claim | None = None


@dataclass(frozen=True)
class PlannedPart:
    """Fetch ``[fetch_offset, +fetch_size)``; keep ``[skip, skip+keep)`` of it at ``write_at`` in the output."""

    number: int
    fetch_offset: int
    fetch_size: int
    source_md5: str | None
    skip: int
    keep: int
    write_at: int


def plan(spec: ObjectSpecification, offset: int, length: int) -> list[PlannedPart]:
    """Parts to fetch for ``[offset, offset+length)`` of an object whose upload parts are ``spec.parts``.

    Parts are fetched whole, so each can be checked against the MD5 it was uploaded with; only the
    bytes inside the range are written.
    """
    end = offset + length
    planned = []
    for part in spec.parts:
        lo, hi = max(part.offset, offset), min(part.end, end)
        if lo >= hi:
            continue
        planned.append(
            PlannedPart(
                part.partNumber,
                part.offset,
                part.partSize,
                part.sourceMd5 if md5s.known(part.sourceMd5) else None,
                lo - part.offset,
                hi - lo,
                lo - offset,
            )
        )
    return planned


@dataclass
class PlannedFile:
    """One object being downloaded: what the plan says and where it goes."""

    target: DownloadTarget
    spec: ObjectSpecification
    spec_range: tuple[int, int]  # (offset, length) of the specification the URLs come from
    offset: int
    span: int
    parts: list[PlannedPart]
    check_md5: str | None  # the whole object's MD5 to verify, when the whole object is fetched
    validate: bool

    @property
    def key(self) -> str:
        return self.target.object_id

    @property
    def whole(self) -> bool:
        """The whole object, not a range of it."""
        return self.offset == 0 and self.span == self.spec.objectSize

    @property
    def small(self) -> bool:
        """At most one part, covering the whole file: fetched, hashed and verified in a single task."""
        return len(self.parts) <= 1 and self.whole


class Committer:
    """Makes finished small files durable in batches, then gives them their final names.

    A file may only appear under its final name once its bytes are on disk. One ``fsync`` per file costs a
    disk flush each (thousands for a job of small files); ``syncfs`` flushes the file system once for a
    whole batch of files, which are then renamed, and each folder they went into is fsynced once. Batches are
    committed one after another on a thread of their own: a worker that finishes a file queues it and goes on
    fetching, instead of waiting for the disk (a ``syncfs`` of a 16 MiB batch held every worker before).
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []  # (partial, final)
        self._bytes = 0
        self._since = 0.0
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="commit")
        self._committing: list[Future[None]] = []
        self._flushed = False

    def add(self, partial: Path, final: Path, size: int = 0) -> None:
        """Queue a verified file; the batch is committed when it is big or old enough, so a kill costs at
        most ``COMMIT_BATCH`` files, ``COMMIT_BYTES`` or ``COMMIT_WAIT`` of fetching again (twice that while
        the previous batch is being committed)."""
        with self._lock:
            if not self._pending:
                self._since = time.monotonic()
            self._pending.append((partial, final))
            self._bytes += size
            due = (
                len(self._pending) >= COMMIT_BATCH
                or self._bytes >= COMMIT_BYTES
                or time.monotonic() - self._since >= COMMIT_WAIT
            )
            if due and not self._flushed:
                self._committing.append(self._writer.submit(_commit, self._take()))

    def flush(self) -> None:
        """Wait for the batches being committed, then commit what is queued, here; the first failure raises.
        Called again (after Ctrl-C), it commits what finished since."""
        with self._lock:
            self._flushed = True  # from now on batches are committed by flush, not by the writer thread
            committing, self._committing = self._committing, []
        failure: BaseException | None = None
        for batch in committing:
            try:
                batch.result()
            except BaseException as exc:  # the first to fail is reported; later batches still commit
                failure = failure or exc
        with self._lock:
            rest = self._take()
        self._writer.shutdown(wait=False)
        if rest:
            _commit(rest)
        if failure is not None:
            raise failure

    def _take(self) -> list[tuple[Path, Path]]:
        batch, self._pending, self._bytes = self._pending, [], 0
        return batch


def _commit(batch: list[tuple[Path, Path]]) -> None:
    """One ``syncfs``, then the renames, then one fsync per folder that received files."""
    try:
        sync_file_system(batch[0][0])
        folders = set()
        for partial, final in batch:
            os.replace(partial, final)
            folders.add(final.parent)
        for folder in folders:
            fsync_dir(folder)
    except OSError as exc:
        raise ClientError(
            f"verified files could not be given their final names ({exc}); check the output folder, then run the "
            "same command again: what is missing is fetched again"
        ) from exc


class _SpaceCheck:
    """Refuse up front rather than fail (or fill the disk) half-way: per folder, what the files planned so far
    need against what was free when the job began (files are planned a chunk at a time). It makes the
    folders, and remembers which it made (``created``, outermost first) for the job to remove if empty."""

    def __init__(self) -> None:
        self._free: dict[Path, int] = {}
        self._wanted: dict[Path, int] = {}
        self.created: list[Path] = []

    def admit(self, files: list[PlannedFile], report: JobReport) -> list[PlannedFile]:
        """The files there is room for; the others fail in the report, with what to do."""
        admitted = []
        for folder, group in _by_folder(files).items():
            if folder not in self._free:
                self.created += missing_dirs(folder)
                folder.mkdir(parents=True, exist_ok=True)
                self._free[folder] = shutil.disk_usage(folder).free
            want = self._wanted.get(folder, 0) + sum(f.span - _partial_blocks(f) for f in group)
            have = self._free[folder]
            if want > have:
                detail = (
                    f"not enough free space in {folder}: the downloads need {want} more bytes, {have} are free; "
                    "free some space or choose another --output-dir"
                )
                for f in group:
                    report.add(FileOutcome(str(f.target.path), f.key, "failed", detail=detail))
                continue
            self._wanted[folder] = want
            admitted.extend(group)
        return admitted


def _by_folder(files: list[PlannedFile]) -> dict[Path, list[PlannedFile]]:
    folders: dict[Path, list[PlannedFile]] = {}
    for f in files:
        folders.setdefault(f.target.path.parent, []).append(f)
    return folders


class Sink(Protocol):
    """Where the job's files go when not each to a file of its own (``archive_sink.ArchiveSink``: one tar).

    ``prepare`` takes the planned files (and may fail some in the report) and returns them placed; ``start``
    runs one file on the job's pool in place of ``_small``/``_large``; ``finish`` ends the job (not called
    when it was cancelled).
    """

    def prepare(self, files: list[PlannedFile], report: JobReport) -> list[PlannedFile]: ...

    def start(
        self,
        job: DownloadJob,
        f: PlannedFile,
        coordinator: Coordinator,
        data: DataClient,
        large_slots: threading.Semaphore,
    ) -> Future[FileOutcome]: ...

    def finish(self, report: JobReport) -> None: ...


class DownloadJob:
    def __init__(
        self, config: ClientConfig, api: ScoreApi, progress: JobProgress | None = None, sink: Sink | None = None
    ) -> None:
        self._config = config
        self._api = api
        self._progress = progress or NoJobProgress()
        self._sink = sink
        self.coordinator: Coordinator | None = None

    def run(
        self,
        targets: list[DownloadTarget],
        offset: int = 0,
        length: int = -1,
        validate: bool = True,
        force: bool = False,
        report: JobReport | None = None,
    ) -> JobReport:
        """Download every target; each file's outcome is in the report. Ctrl-C cancels the job and returns
        the report so far (``report.cancelled``)."""
        report = report if report is not None else JobReport()
        todo = list(targets)
        self._progress.job_started(len(targets), 0)
        if not todo:
            self._progress.job_finished()
            return report
        several = len(todo) > 1
        workers = max(self._config.parallel, SMALL_FILE_WORKERS) if several else self._config.parallel
        coordinator = self.coordinator = Coordinator(workers)
        data = DataClient(workers, self._config.timeout, self._config.chunk_size)
        committer = Committer()
        large_slots = PartSlots(self._config.parallel)
        space = _SpaceCheck()
        futures: PendingFiles[PlannedFile] = PendingFiles()
        try:
            # Files start as their specifications come, a chunk at a time, so the first bytes move after one
            # short call; an archive lays out every file before writing any, so it plans them all first.
            # The specification range: verified ranges fetch whole upload parts (to check their MD5s), so they
            # need the whole specification; an unverified range asks for the range's own (its parts: the range).
            spec_range = (0, -1) if validate or (offset, length) == (0, -1) else (offset, length)
            chunks = growing_chunks(todo) if self._sink is None else iter([todo])
            for chunk, specs in fetched_ahead(chunks, lambda c: self._specs(c, spec_range)):
                before = len(report.outcomes)
                files = self._plan(chunk, specs, spec_range, offset, length, validate, report)
                if self._sink is None and not force:  # an existing target is compared, not fetched again
                    existing = [f for f in files if f.target.path.exists()]
                    files = [f for f in files if f not in existing]
                    futures.update((coordinator.submit(self._existing, f), f) for f in existing)
                files = space.admit(files, report) if self._sink is None else self._sink.prepare(files, report)
                refused = {o.object_id for o in report.outcomes[before:]}
                files = [f for f in files if f.key not in refused]
                for outcome in report.outcomes[before:]:
                    self._progress.file_finished(outcome.object_id, ok=False)
                self._progress.more_bytes(sum(f.span for f in files))
                futures.update((self._start(f, coordinator, data, committer, large_slots), f) for f in files)
                self._collect(futures, report, wait_for_one=False)
            while futures:
                self._collect(futures, report, wait_for_one=True)
            committer.flush()
        except KeyboardInterrupt:
            report.cancelled = True
            coordinator.cancel()
            with contextlib.suppress(ClientError):  # what cannot be committed now is fetched again by the re-run
                committer.flush()  # files verified before the interruption keep their final names
        finally:
            coordinator.shutdown(wait=not report.cancelled)
            if not report.cancelled:
                data.close()
            remove_empty_dirs(space.created)  # a folder made for files that all failed is not left behind
            self._progress.job_finished()
        if self._sink is not None and not report.cancelled:
            self._sink.finish(report)  # every task has ended (the pool was shut down waiting for them)
        return report

    # -- planning ----------------------------------------------------------------------------------
    def _specs(
        self, targets: list[DownloadTarget], spec_range: tuple[int, int]
    ) -> dict[str, ObjectSpecification | str]:
        return self._api.download_specs([t.object_id for t in targets], *spec_range)

    def _plan(
        self,
        targets: list[DownloadTarget],
        specs: dict[str, ObjectSpecification | str],
        spec_range: tuple[int, int],
        offset: int,
        length: int,
        validate: bool,
        report: JobReport,
    ) -> list[PlannedFile]:
        files = []
        for target in targets:
            spec = specs.get(target.object_id, "no answer from the server")
            if not isinstance(spec, ObjectSpecification):
                report.add(FileOutcome(str(target.path), target.object_id, "failed", detail=str(spec)))
                continue
            if target.claim is not None and spec_range == (0, -1) and (wrong := _disagreement(target, spec)):
                report.add(FileOutcome(str(target.path), target.object_id, "failed", detail=wrong))
                continue
            if spec_range == (0, -1):
                size = spec.objectSize
                span = size - offset if length < 0 else length
                if offset > size or offset + span > size:
                    detail = f"--offset {offset} --length {length} is outside object {target.object_id} ({size} bytes)"
                    report.add(FileOutcome(str(target.path), target.object_id, "failed", detail=detail))
                    continue
            else:  # the server checked the range; the specification's size is the range's
                size, span = -1, spec.objectSize
            whole = offset == 0 and span == size
            check = spec.objectMd5 if validate and whole and md5s.known(spec.objectMd5) else None
            files.append(PlannedFile(target, spec, spec_range, offset, span, plan(spec, offset, span), check, validate))
        return files

    # -- running ---------------------------------------------------------------------------------------
    def _existing(self, f: PlannedFile) -> FileOutcome:
        """A target that already exists (without ``--force``): skipped when it holds exactly the object (the
        registered size and MD5), refused otherwise, so that a re-run finishes a job without fetching again,
        and a different file is never silently kept, nor silently replaced."""
        target, spec = f.target.path, f.spec
        if not target.is_file():
            detail = f"{target} exists and is not a file; move it away or choose another --output-dir"
            return FileOutcome(str(target), f.key, "failed", detail=detail)
        size = target.stat().st_size
        registered = spec.objectMd5 if md5s.known(spec.objectMd5) else None
        if not f.whole:
            differs = "already exists, and a range cannot be compared with it"
        elif registered is None:
            differs = f"already exists, and object {f.key} has no registered MD5 to compare it with"
        elif size != spec.objectSize:
            differs = f"already exists with other content ({size} bytes; object {f.key} has {spec.objectSize})"
        else:
            local = _md5_of_file(target, size)
            if md5s.equal(local, registered):
                detail = "already there, with the registered size and MD5"
                return FileOutcome(str(target), f.key, "skipped", size, detail=detail, verified=True, md5=local)
            differs = f"already exists with other content (MD5 {local}; object {f.key} has {registered})"
        detail = f"{target} {differs}; use --force to replace it, or choose another --output-dir"
        return FileOutcome(str(target), f.key, "failed", detail=detail)

    def _start(
        self,
        f: PlannedFile,
        coordinator: Coordinator,
        data: DataClient,
        committer: Committer,
        large_slots: threading.Semaphore,
    ) -> Future[FileOutcome]:
        if self._sink is not None:
            return self._sink.start(self, f, coordinator, data, large_slots)
        if f.small:
            return coordinator.submit(self._small, f, coordinator, data, committer)
        return drive(lambda: self._large(f, coordinator, data, large_slots), f"file-{f.key[:8]}")

    def _collect(self, futures: PendingFiles[PlannedFile], report: JobReport, wait_for_one: bool) -> None:
        collect_finished(futures, report, self._progress, _failed_file, wait_for_one)

    def _small(self, f: PlannedFile, coordinator: Coordinator, data: DataClient, committer: Committer) -> FileOutcome:
        """A file of one part (or none): fetch it whole into a partial file beside its target, hashing it."""
        target = f.target.path
        partial = target.parent / f".{f.key}.partial"
        tally = FileTally(self._progress, f.key, coordinator)
        tally.start(target.name, f.span)
        if not f.parts:  # an empty object
            check_empty(f)
            partial.write_bytes(b"")
            committer.add(partial, target)
            return FileOutcome(str(target), f.key, "done", 0, verified=f.validate)
        try:
            out = OutputFile(partial, f.span, direct=f.span >= DIRECT_MIN)  # a small file is a whole object
            try:
                verified = self.fetch_whole(f, out, data, tally)
            finally:
                out.close()
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        committer.add(partial, target, f.span)
        return FileOutcome(str(target), f.key, "done", f.span, parts_moved=1, verified=verified)

    def fetch_whole(self, f: PlannedFile, out: OutputFile, data: DataClient, tally: FileTally) -> bool:
        """Fetch a file of one part into ``out`` (at the part's ``write_at``), checking its MD5 as it arrives;
        whether it was verified."""
        part = f.parts[0]
        expected = f.check_md5 or part.source_md5
        what = f"object {f.key}"
        book = UrlBook({p.partNumber: p.url for p in f.spec.parts}, lambda: self._fresh_urls(f))

        def fetch(url: str, part_tally: object) -> None:
            digest = data.get_range(
                url,
                part.fetch_offset,
                part.fetch_size,
                out,
                part.write_at,
                0,
                part.keep,
                True,
                part_tally,
                what,  # type: ignore[arg-type]
            )
            if f.validate and expected and not md5s.equal(digest, expected):
                raise IntegrityError(f"{what}: the received bytes hash to {digest}, expected {expected}")

        transfer_part(fetch, part.number, what, book, tally, self._config.retries)  # type: ignore[arg-type]
        return bool(f.validate and expected)

    def _fresh_urls(self, f: PlannedFile) -> dict[int, str | None]:
        spec = self._api.download_specs([f.key], *f.spec_range)[f.key]
        if not isinstance(spec, ObjectSpecification):
            raise ClientError(f"object {f.key}: cannot renew its URLs: {spec}")
        return {p.partNumber: p.url for p in spec.parts}

    def _large(
        self, f: PlannedFile, coordinator: Coordinator, data: DataClient, large_slots: threading.Semaphore
    ) -> FileOutcome:
        """A file of several parts (or a range): resumable state beside the target, parts on the job's pool."""
        target = f.target.path
        state_dir = target.parent / f".{f.key}"
        identity = {
            "objectId": f.key,
            "uploadId": f.spec.uploadId,
            "objectSize": f.spec.objectSize,
            "objectMd5": f.spec.objectMd5,
            "offset": f.offset,
            "length": f.span,
            "wholeParts": f.validate or f.whole,
        }
        if (read_json(state_dir / "meta.json") or {}).get("identity") != identity:
            shutil.rmtree(state_dir, ignore_errors=True)  # a different object or range: start afresh
        state_dir.mkdir(parents=True, exist_ok=True)
        write_json(state_dir / "meta.json", {"identity": identity})
        partial = state_dir / "data.partial"
        finished = {p.number for p in f.parts if (state_dir / f"part-{p.number:08x}").exists()}
        # Direct I/O only for whole objects: their parts start at multiples of the part size.
        out = OutputFile(partial, f.span, direct=f.whole)
        try:
            fetched, digest = LargeFetch(self, f, out, state_dir, coordinator, data, large_slots).run(finished)
            os.fsync(out.fd)
        finally:
            out.close()
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, target)
        fsync_dir(target.parent)
        shutil.rmtree(state_dir, ignore_errors=True)
        verified = digest is not None or (f.validate and all(p.source_md5 for p in f.parts))
        return FileOutcome(
            str(target), f.key, "done", f.span, parts_moved=fetched, parts_skipped=len(finished), verified=verified
        )


@dataclass
class LargeFetch:
    """Fetch a large file's missing parts on the job's pool, verify, and fetch again what is corrupt."""

    job: DownloadJob
    f: PlannedFile
    out: OutputFile
    state_dir: Path
    coordinator: Coordinator
    data: DataClient
    slots: threading.Semaphore
    tally: FileTally = field(init=False)

    def __post_init__(self) -> None:
        self.tally = FileTally(self.job._progress, self.f.key, self.coordinator)

    def run(self, finished: set[int]) -> tuple[int, str | None]:
        """(parts fetched, whole-object MD5 or None). With a whole-object MD5 to check, every byte is hashed
        once, for that check; parts are hashed against their ``sourceMd5`` only if it fails, to find and
        fetch again just the corrupt ones. Without one (ranges, legacy objects), each part is checked
        against its ``sourceMd5`` as it arrives."""
        f = self.f
        object_md5 = f.check_md5
        pending = {p.number for p in f.parts} - finished
        fetched = 0
        digest: str | None = None
        first = True
        for attempt in (1, 2):
            hasher = None
            if object_md5 is not None:
                on_disk = {i for i, p in enumerate(f.parts) if p.number not in pending}
                ranges = [(p.write_at, p.keep) for p in f.parts]
                lend = self.slots.lent if isinstance(self.slots, PartSlots) else contextlib.nullcontext
                hasher = InOrderHasher(self.out.fd, ranges, on_disk, lend)
            todo = [p for p in f.parts if p.number in pending]
            if first:
                self.tally.start(f.target.path.name, f.span, sum(p.keep for p in f.parts if p.number not in pending))
                first = False
            try:
                self._fetch(todo, f.validate and object_md5 is None, hasher)
                digest = hasher.result() if hasher is not None else None
            except BaseException:
                if hasher is not None:
                    hasher.cancel()
                raise
            fetched += len(todo)
            if digest is None or md5s.equal(digest, object_md5):
                return fetched, digest
            corrupt = [
                p
                for p in f.parts
                if p.source_md5 and not md5s.equal(md5_of_range(self.out.fd, p.write_at, p.keep), p.source_md5)
            ]
            if not corrupt:
                # Every part checks out: hash the file once more before calling it damaged.
                digest = md5_of_range(self.out.fd, f.parts[0].write_at, f.span)
                if md5s.equal(digest, object_md5):
                    return fetched, digest
                break
            if attempt == 2:
                break
            log.warning(
                "object %s: %d corrupt part(s) found after the MD5 check; fetching them again", f.key, len(corrupt)
            )
            for part in corrupt:
                (self.state_dir / f"part-{part.number:08x}").unlink(missing_ok=True)
                self.tally.advance(-part.keep)
            pending = {p.number for p in corrupt}
        shutil.rmtree(self.state_dir, ignore_errors=True)
        raise IntegrityError(
            f"object {f.key}: the downloaded bytes hash to {digest} but the object's MD5 is {object_md5}; "
            "the partial download was discarded. If this repeats, the stored object is damaged: tell its owner"
        )

    def _fetch(self, todo: list[PlannedPart], hash_parts: bool, hasher: InOrderHasher | None) -> None:
        f = self.f
        book = UrlBook({p.partNumber: p.url for p in f.spec.parts}, lambda: self.job._fresh_urls(f))

        def fetch(part: PlannedPart) -> None:
            what = f"part {part.number} of {f.key}"

            def get(url: str, tally: object) -> None:
                hashing = hash_parts and part.source_md5 is not None
                digest = self.data.get_range(
                    url,
                    part.fetch_offset,
                    part.fetch_size,
                    self.out,
                    part.write_at,
                    part.skip,
                    part.keep,
                    hashing,
                    tally,  # type: ignore[arg-type]
                    what,
                    hasher,
                )
                if digest is not None and not md5s.equal(digest, part.source_md5):
                    raise IntegrityError(f"{what}: received bytes hash to {digest}, expected {part.source_md5}")

            with self.slots:
                try:
                    transfer_part(get, part.number, what, book, self.tally, self.job._config.retries)  # type: ignore[arg-type]
                except BaseException:
                    if hasher is not None:
                        hasher.cancel()  # workers waiting for their buffers to be hashed must not wait for this
                    raise
            write_json(self.state_dir / f"part-{part.number:08x}", {"partNumber": part.number, "md5": part.source_md5})
            self.out.part_finished()

        self.coordinator.run_all(fetch, todo)


def _disagreement(target: DownloadTarget, spec: ObjectSpecification) -> str | None:
    """What the target's claim (a manifest line) says that the server's record contradicts, or None."""
    claim = target.claim
    assert claim is not None
    wrong = []
    if claim.md5 and md5s.known(spec.objectMd5) and not md5s.equal(claim.md5, spec.objectMd5):
        wrong.append(f"MD5 {claim.md5.lower()} but the server's record is {spec.objectMd5}")
    if claim.size is not None and claim.size != spec.objectSize:
        wrong.append(f"size {claim.size} but the server's record is {spec.objectSize} bytes")
    if not wrong:
        return None
    return (
        f"object {target.object_id} ({claim.origin}) is listed with {' and '.join(wrong)}; nothing was downloaded. "
        "Fix that line or get a fresh manifest from the metadata server"
    )


def missing_dirs(folder: Path) -> list[Path]:
    """The folders ``folder.mkdir(parents=True)`` would create, outermost first."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    return missing[::-1]


def remove_empty_dirs(created: list[Path]) -> None:
    """Remove the folders a command created (outermost first, as ``missing_dirs`` lists them) that are still
    empty, innermost first: a download that wrote nothing leaves no trace; one that wrote anything (a file,
    or the state that resumes it) keeps its folder."""
    for path in reversed(created):
        with contextlib.suppress(OSError):
            path.rmdir()


def _md5_of_file(path: Path, size: int) -> str:
    """The MD5 of a local file (an existing target compared with the object), read once front to back."""
    md5 = hashlib.md5()  # noqa: S324 - integrity, not security
    fd = os.open(path, os.O_RDONLY)
    try:
        hash_mapped_range(fd, 0, size, md5, sequential=True)
    finally:
        os.close(fd)
    return md5.hexdigest()


def _failed_file(f: PlannedFile, error: ClientError) -> FileOutcome:
    return FileOutcome(
        str(f.target.path), f.key, "failed", f.span, detail=str(error), rerun_helps=helped_by_rerun(error)
    )


def check_empty(f: PlannedFile) -> None:
    """An empty object must not claim the MD5 of some bytes (when verifying)."""
    expected = f.check_md5 or EMPTY_MD5
    if f.validate and not md5s.equal(EMPTY_MD5, expected):
        raise IntegrityError(f"object {f.key} is empty but its MD5 is {expected}, not that of no bytes")


def _partial_blocks(f: PlannedFile) -> int:
    partial = f.target.path.parent / f".{f.key}" / "data.partial"
    try:
        return partial.stat().st_blocks * 512
    except OSError:
        return 0
