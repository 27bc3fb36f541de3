"""Progress bars on stderr (bytes, rate, ETA), built on rich; ``--quiet`` swaps in NoProgress."""

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


class BarProgress:
    """One bar per file; thread-safe because part workers advance it concurrently."""

    def __init__(self) -> None:
        self._console = Console(stderr=True)
        self._bars = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self._console,
            transient=False,
        )
        self._task: TaskID | None = None
        self._lock = threading.Lock()

    def start(self, name: str, total: int, done: int = 0) -> None:
        with self._lock:
            self._bars.start()
            self._task = self._bars.add_task(name, total=total, completed=done)

    def advance(self, nbytes: int) -> None:
        if self._task is not None and nbytes:
            self._bars.advance(self._task, nbytes)

    def finish(self) -> None:
        with self._lock:
            if self._task is not None:
                self._bars.refresh()
                self._bars.stop()
                self._bars.remove_task(self._task)  # stays printed above, never redrawn
                self._task = None
