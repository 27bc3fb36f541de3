"""Large-part slots: a worker waiting for the in-order hash lends its slot, so the part the hash needs can run.

Without the lending, a job with more pool workers than slots (small files beside a many-part file) hung: both
slots were held by workers waiting for the hash, which waited for an earlier part whose worker waited for a slot.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from score.client.transfer.hashing import InOrderHasher
from score.client.transfer.jobs import PartSlots


def test_a_held_slot_is_lent_for_the_block_and_taken_back() -> None:
    slots = PartSlots(1)
    taken_by_other = threading.Event()

    def other() -> None:
        with slots:
            taken_by_other.set()

    with slots:
        with slots.lent():
            thread = threading.Thread(target=other)
            thread.start()
            assert taken_by_other.wait(5)
            thread.join(5)
        assert not slots.acquire(blocking=False)  # this thread holds it again
    assert slots.acquire(blocking=False)
    slots.release()


def test_a_thread_without_a_slot_has_none_to_lend() -> None:
    slots = PartSlots(1)
    with slots.lent():
        assert slots.acquire(blocking=False)  # nothing was released: the count is unchanged
        slots.release()
    assert slots.acquire(blocking=False) and not slots.acquire(blocking=False)


def test_waiting_for_the_hash_lends_the_slot_to_the_part_it_needs(tmp_path: Path) -> None:
    first, second = os.urandom(1000), os.urandom(1000)
    path = tmp_path / "f"
    path.write_bytes(first + second)
    fd = os.open(path, os.O_RDONLY)
    slots = PartSlots(1)
    hasher = InOrderHasher(fd, [(0, 1000), (1000, 1000)], set(), slots.lent)
    try:
        holding, later_done = threading.Event(), threading.Event()

        def later_part() -> None:  # has the slot, hands over part 2, then must wait for part 1 to be hashed
            with slots:
                hasher.feed(1000, memoryview(second))
                holding.set()
                hasher.wait_hashed(2000)
            later_done.set()

        def earlier_part() -> None:  # needs the slot the later part holds
            with slots:
                hasher.feed(0, memoryview(first))

        waiting = threading.Thread(target=later_part, daemon=True)
        waiting.start()
        assert holding.wait(5)
        feeding = threading.Thread(target=earlier_part, daemon=True)
        feeding.start()
        feeding.join(5)
        waiting.join(5)
        assert later_done.is_set(), "the waiting part kept its slot: deadlock"
        assert hasher.result() == hashlib.md5(first + second).hexdigest()  # noqa: S324
    finally:
        hasher.cancel()
        os.close(fd)
