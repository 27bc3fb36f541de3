"""The job's progress on stderr, built on rich: one line for the job, one bar per large file in flight.

The job line shows files done of all, bytes, rate and time left; a file large enough to take a while
(``LARGE``) gets a bar of its own while it moves, removed when it is done. ``--quiet`` swaps in
``NoJobProgress``. Thread-safe: part workers report bytes concurrently.
"""

from __future__ import annotations

import threading

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

LARGE = 64 * 1024 * 1024  # files from this size get a bar of their own


class JobBoard:
    def __init__(self, verb: str) -> None:
        self._verb = verb
        self.console = Console(stderr=True)
        self._bars = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._job: TaskID | None = None
        self._files: dict[str, TaskID] = {}
        self._total_files = 0
        self._total_bytes = 0
        self._done_files = 0
        self._lock = threading.Lock()

    def _describe(self) -> str:
        return f"{self._verb} {self._done_files}/{self._total_files} files"

    def job_started(self, files: int, total_bytes: int) -> None:
        with self._lock:
            self._total_files = files
            self._total_bytes = total_bytes
            self._bars.start()
            self._job = self._bars.add_task(self._describe(), total=total_bytes)

    def more_bytes(self, nbytes: int) -> None:
        with self._lock:
            self._total_bytes += nbytes
            if self._job is not None and nbytes:
                self._bars.update(self._job, total=self._total_bytes)

    def file_started(self, key: str, name: str, size: int, done: int = 0) -> None:
        with self._lock:
            if self._job is not None and done:
                self._bars.advance(self._job, done)  # resumed: what an earlier run moved counts as done
            if size >= LARGE and key not in self._files:
                self._files[key] = self._bars.add_task(name, total=size, completed=done)

    def advance(self, key: str, nbytes: int) -> None:
        if not nbytes:
            return
        if self._job is not None:
            self._bars.advance(self._job, nbytes)
        task = self._files.get(key)
        if task is not None:
            self._bars.advance(task, nbytes)

    def file_finished(self, key: str, ok: bool) -> None:
        with self._lock:
            self._done_files += 1
            task = self._files.pop(key, None)
            if task is not None:
                self._bars.remove_task(task)
            if self._job is not None:
                self._bars.update(self._job, description=self._describe())

    def job_finished(self) -> None:
        with self._lock:
            self._bars.stop()

    def say(self, line: str) -> None:
        """A line above the bars (a file's outcome)."""
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)
