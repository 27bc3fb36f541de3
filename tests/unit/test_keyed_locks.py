"""KeyedLocks: one holder per key at a time, other keys never wait, and nothing is kept once all leave."""

from __future__ import annotations

import threading
import time

from score.server.concurrency import KeyedLocks


def test_one_holder_per_key_others_free_and_nothing_kept() -> None:
    locks = KeyedLocks()
    inside: list[str] = []
    overlaps: list[tuple[str, str]] = []
    side_by_side: list[str] = []
    guard = threading.Lock()

    def hold(key: str, name: str) -> None:
        with locks.hold(key):
            with guard:
                overlaps.extend((other, name) for other in inside if other.startswith(key))
                side_by_side.extend(other for other in inside if not other.startswith(key))
                inside.append(f"{key}:{name}")
            time.sleep(0.05)
            with guard:
                inside.remove(f"{key}:{name}")

    threads = [threading.Thread(target=hold, args=(key, str(n))) for n in range(4) for key in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []  # never two holders of one key at once
    assert side_by_side  # a holder of "a" never kept "b" waiting
    assert len(locks) == 0  # no lock left behind for keys nobody holds
