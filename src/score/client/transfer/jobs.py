"""A job: many files moved as one, on one bounded pool, with one coordinator for cancellation and errors.

``score-client upload``/``download`` of an analysis or a manifest is a job of many files (s3transfer's
shape): the part tasks of many files are in flight at once on one pool, each file's outcome is recorded
on its own (a failed file does not stop the others), progress is reported for the job, and one
``Coordinator`` owns cancellation: Ctrl-C sets it, every worker sees it at its next chunk, and the job
ends within a second, its journals consistent (they are only ever replaced whole).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import KW_ONLY, dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar

from score.client.errors import ClientError

T = TypeVar("T")
U = TypeVar("U")

SMALL_FILE_WORKERS = 16  # small files are latency-bound: a job of several files moves this many at once
FIRST_CHUNK = 32  # files asked of the server before the first byte moves; the rest are asked while they move,
CHUNK = 250  # this many per call
COLLECT_WAIT = 0.25  # seconds of each wait for a finished file (Ctrl-C is seen between two)
RATE_MIN_SECONDS = 0.5  # a job shorter than this gets no rate in its summary: a few ms make any figure noise


def growing_chunks(items: list[T]) -> Iterator[list[T]]:
    """A job's files in server calls that grow: a few first, so bytes move at once, then twice as many each
    time up to ``CHUNK``, so each call takes about as long as moving the files of the one before (the server's
    checks for a thousand files take about a second: no byte waits for them)."""
    start, size = 0, FIRST_CHUNK
    while start < len(items):
        yield items[start : start + size]
        start, size = start + size, min(size * 2, CHUNK)


def fetched_ahead(chunks: Iterable[list[T]], fetch: Callable[[list[T]], U]) -> Iterator[tuple[list[T], U]]:
    """Each chunk with ``fetch(chunk)``; as soon as one call answers, the next chunk's is sent on a thread of its
    own while the caller starts the files of this one. The server's checks of chunk k+1 then overlap the
    transfers of chunk k, so no worker waits between chunks (400 small downloads: the four calls made in turn
    were 0.5 s of the job's 0.8 s). A failed call raises here, in order, as it did when made in line."""
    remaining = iter(chunks)
    chunk = next(remaining, None)
    if chunk is None:
        return
    pending = drive(partial(fetch, chunk), "ahead")
    while chunk is not None:
        answer = pending.result()
        following = next(remaining, None)
        if following is not None:
            pending = drive(partial(fetch, following), "ahead")
        yield chunk, answer
        chunk = following


class Cancelled(ClientError):
    """The job was stopped (Ctrl-C): what is done stays done, the same command resumes the rest."""


class JobProgress(Protocol):
    """What the job reports as it goes; the CLI draws it, a library may ignore it (``NoJobProgress``)."""

    def job_started(self, files: int, total_bytes: int) -> None: ...

    def more_bytes(self, nbytes: int) -> None:
        """The job turned out larger by ``nbytes`` (its later files' sizes came with their specifications)."""

    def file_started(self, key: str, name: str, size: int, done: int = 0) -> None: ...

    def advance(self, key: str, nbytes: int) -> None: ...

    def file_finished(self, key: str, ok: bool) -> None: ...

    def job_finished(self) -> None: ...


class NoJobProgress:
    def job_started(self, files: int, total_bytes: int) -> None:
        pass

    def more_bytes(self, nbytes: int) -> None:
        pass

    def file_started(self, key: str, name: str, size: int, done: int = 0) -> None:
        pass

    def advance(self, key: str, nbytes: int) -> None:
        pass

    def file_finished(self, key: str, ok: bool) -> None:
        pass

    def job_finished(self) -> None:
        pass


class FileTally:
    """One file's bytes as the part code reports them (``advance(n)``, negative when a retry takes
    back what a failed attempt had counted), forwarded to the job's progress; it also stops a worker
    that is moving bytes for a cancelled job, at its next chunk."""

    def __init__(self, progress: JobProgress, key: str, coordinator: Coordinator) -> None:
        self._progress = progress
        self._key = key
        self._coordinator = coordinator

    def start(self, name: str, total: int, done: int = 0) -> None:
        self._progress.file_started(self._key, name, total, done)

    def advance(self, nbytes: int) -> None:
        self._coordinator.check()
        self._progress.advance(self._key, nbytes)

    def finish(self) -> None:
        pass  # the job reports the file's end itself, with its outcome


@dataclass(frozen=True)
class FileOutcome:
    """What became of one file of the job."""

    name: str  # what the user knows the file by: its path, or its object id
    object_id: str
    status: str  # "done", "skipped", "failed"
    size: int = 0
    _: KW_ONLY  # the counts are easily shifted by position: name them
    detail: str = ""  # skipped: why; failed: the error
    parts_moved: int = 0
    parts_skipped: int = 0
    verified: bool = False
    md5: str | None = None
    rerun_helps: bool = False  # failed for want of the server or the store: the same command may succeed later


@dataclass
class JobReport:
    """Every file's outcome, in the order they ended; ``listener`` hears of each as it is added."""

    outcomes: list[FileOutcome] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    listener: Callable[[FileOutcome], None] | None = None

    def add(self, outcome: FileOutcome) -> None:
        self.outcomes.append(outcome)
        if self.listener is not None:
            self.listener(outcome)

    def of(self, status: str) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def failed(self) -> list[FileOutcome]:
        return self.of("failed")

    def summary(self, verb: str, moved: int | None = None) -> str:
        """One line for the end of the job: files, bytes, verified, skipped, failed, time. ``moved``: the bytes
        this run really transferred (a resumed file's earlier parts are not), when the caller counted them;
        the rate is of those alone, and only when there were some and enough time passed to mean something."""
        done = self.of("done")
        total = sum(o.size for o in done)
        moved = total if moved is None else max(moved, 0)
        elapsed = max(time.monotonic() - self.started, 1e-6)
        verified = sum(o.verified for o in done)
        amount = (
            _size(total) if moved >= total else f"{_size(total)} ({_size(moved)} transferred, the rest done before)"
        )
        rate = f" ({_size(moved / elapsed)}/s)" if moved and elapsed >= RATE_MIN_SECONDS else ""
        parts = [f"{len(done)} {verb}", f"{amount} in {elapsed:.1f} s{rate}"]
        if verified:
            parts.append(f"{verified} verified")
        if self.of("skipped"):
            parts.append(f"{len(self.of('skipped'))} skipped")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        files = len(self.outcomes)
        return f"{files} file{'s' if files != 1 else ''}: " + ", ".join(parts)


def _size(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


F = TypeVar("F")


class PendingFiles(dict[Future[Any], F]):
    """The job's files in flight, by their future. Each future, once done, is queued by its own done callback,
    so collecting a finished file costs the same however many are in flight. ``concurrent.futures.wait`` over
    every pending future (as before) takes each one's lock twice per call: a job of thousands of files in
    flight paid that, under the workers' feet, for every file it collected."""

    def __init__(self) -> None:
        super().__init__()
        self.finished: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()

    def __setitem__(self, future: Future[Any], f: F) -> None:
        super().__setitem__(future, f)
        future.add_done_callback(self.finished.put)  # at once if it is done already

    def update(self, pairs: Iterable[tuple[Future[Any], F]]) -> None:  # type: ignore[override]
        for future, f in pairs:
            self[future] = f


def collect_finished(
    futures: PendingFiles[F],
    report: JobReport,
    progress: JobProgress,
    failed: Callable[[F, ClientError], FileOutcome],
    wait_for_one: bool,
) -> None:
    """Report the files finished and drop them from ``futures``; with ``wait_for_one``, first wait until one
    is (in short waits, so Ctrl-C is seen at once). A file that raised is ``failed(file, error)``; one that
    answered None is reported by someone else (the upload's finalizer)."""
    done: list[Future[Any]] = []
    while wait_for_one and not done and futures:
        with contextlib.suppress(queue.Empty):
            done.append(futures.finished.get(timeout=COLLECT_WAIT))
    with contextlib.suppress(queue.Empty):
        while True:
            done.append(futures.finished.get_nowait())
    for future in done:
        f = futures.pop(future)
        try:
            outcome = future.result()
        except Cancelled:
            continue
        except ClientError as exc:
            outcome = failed(f, exc)
        if outcome is not None:
            report.add(outcome)
            progress.file_finished(outcome.object_id, outcome.status != "failed")


class Coordinator:
    """One bounded pool for the job's tasks, and the job's cancellation.

    Tasks run in submission order as workers free up; ``check`` raises ``Cancelled`` in any task once the
    job is cancelled, and ``shutdown`` drops the tasks not started. Nothing here waits for a request in
    flight: a cancelled job returns at once, its workers leave the process when it exits.
    """

    def __init__(self, workers: int) -> None:
        self.workers = max(workers, 1)
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="job")
        self._cancelled = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()

    def check(self) -> None:
        if self._cancelled.is_set():
            raise Cancelled("the job was stopped")

    def submit(self, task: Callable[..., T], *args: object) -> Future[T]:
        def guarded() -> T:
            self.check()
            return task(*args)

        return self._pool.submit(guarded)

    def run_all(self, task: Callable[[U], object], items: Iterable[U]) -> None:
        """``task(item)`` for every item on the pool, waiting for all; the first error cancels the items not
        started yet and is raised."""
        futures = [self.submit(task, item) for item in items]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait or self.cancelled)


class PartSlots(threading.Semaphore):
    """At most ``value`` large parts receiving at once (``with slots:``), across the job's files.

    A worker holding a slot may have to wait for the whole-object hash to catch up (its ring of buffers is
    full), while the hash waits for an earlier part whose worker waits for a slot; and a worker that has just
    released a slot often takes it straight back, ahead of those waiting. Holding the slot through that wait
    deadlocks the job: ``lent`` gives it back for the wait and takes one again after.
    """

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self._held = threading.local()

    def __enter__(self) -> bool:
        taken = self.acquire()
        self._held.count = getattr(self._held, "count", 0) + 1
        return taken

    def __exit__(self, *exc: object) -> None:
        self._held.count -= 1
        self.release()

    @contextmanager
    def lent(self) -> Iterator[None]:
        """Give the calling thread's slot back while the block runs (if it holds one)."""
        if not getattr(self._held, "count", 0):
            yield
            return
        self.release()
        try:
            yield
        finally:
            self.acquire()


def drive(work: Callable[[], T], name: str) -> Future[T]:
    """Run ``work`` on a thread of its own (a large file's driver, which waits on the pool's tasks and so
    must not take one of the pool's threads); its result or error arrives in the returned future."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future
