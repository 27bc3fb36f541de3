"""Putting a file's bytes back into file order for a hash that only goes front to back.

Pure (no threads, no I/O), so every case — parts out of order, a retry resending what was received, a part
finished by an earlier run — is unit-tested on its own; ``hashing.InOrderHasher`` adds the threads.
"""

from __future__ import annotations

import bisect


class FileOrder:
    """Pieces of a file's parts, handed over as they arrive, taken back out in file order.

    Each part's bytes arrive front to back, parts in parallel. A retry of a part sends its first bytes
    again: bytes of a part at positions already received are dropped, so the hash sees every byte once
    (the first copy; should the retry's copy, which the file keeps, differ, the whole-object check fails
    and the file is examined part by part). A piece that would leave a hole in its part, or reaches beyond
    it, is a defect of the caller and refused.
    """

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self._starts = [offset for offset, _ in ranges]
        self._ends = [offset + length for offset, length in ranges]
        self._received = list(self._starts)  # per part: received up to here
        self._pieces: dict[int, memoryview] = {}  # received, not taken yet: position -> bytes
        self.next = self._starts[0] if ranges else 0  # the position the hash needs next
        self.end = self._ends[-1] if ranges else 0

    def add(self, position: int, data: memoryview) -> bool:
        """Keep what is new in ``data`` (received at ``position``); False if all of it was received before."""
        part = bisect.bisect_right(self._starts, position) - 1
        if part < 0 or position + len(data) > self._ends[part]:
            raise ValueError(f"bytes {position}-{position + len(data)} are not within one part of the file")
        received = self._received[part]
        if position > received:
            raise ValueError(f"bytes from {position} would leave a hole: the part was received up to {received}")
        new = position + len(data) - received
        if new <= 0:
            return False
        self._pieces[received] = data[len(data) - new :]
        self._received[part] = received + new
        return True

    def take(self) -> memoryview | None:
        """The piece at ``next``, if it has been received (``next`` moves past it)."""
        piece = self._pieces.pop(self.next, None)
        if piece is not None:
            self.next += len(piece)
        return piece

    def skip(self, part: int) -> None:
        """``next`` is at ``part``, which is already in the file (an earlier run): move past it."""
        if self.next != self._starts[part]:
            raise ValueError(f"part {part} starts at {self._starts[part]}, not at {self.next}")
        self.next = self._received[part] = self._ends[part]

    def clear(self) -> None:
        """Forget every piece not taken (the download stopped: their buffers go back to their workers)."""
        self._pieces.clear()
