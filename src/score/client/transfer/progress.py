"""Progress reporting seam: the engine calls these; the CLI shows bars, libraries may ignore them."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, name: str, total: int, done: int = 0) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def finish(self) -> None: ...


class NoProgress:
    def start(self, name: str, total: int, done: int = 0) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def finish(self) -> None:
        pass
