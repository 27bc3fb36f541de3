"""How the batch endpoints run their objects (``api/batch.py``, ``handled_in_turn``): in the request's own thread
while each answers without waiting, and on the pool of ``WORKERS`` threads from the first that waited."""

from __future__ import annotations

import threading
import time

import pytest

from score.server.api import batch
from score.server.api.batch import handled_in_turn


@pytest.fixture(autouse=True)
def _wide_margin(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wait far above any preemption of a loaded machine (CI), so only the sleeping objects count as waiting."""
    monkeypatch.setattr(batch, "WAITED", 0.2)


def _recorder(slow: set[int]) -> tuple[list[tuple[int, str]], object]:
    seen: list[tuple[int, str]] = []

    def handle(item: int) -> int:
        if item in slow:
            time.sleep(batch.WAITED * 1.5)  # a store round trip
        seen.append((item, threading.current_thread().name))
        return item * 10

    return seen, handle


def test_objects_that_answer_at_once_are_handled_in_turn_in_the_callers_thread() -> None:
    seen, handle = _recorder(slow=set())
    assert handled_in_turn(list(range(300)), handle) == [n * 10 for n in range(300)]
    assert {name for _, name in seen} == {threading.current_thread().name}


def test_from_the_first_object_that_waited_the_rest_overlap_on_the_pool_in_order() -> None:
    seen, handle = _recorder(slow=set(range(3, 12)))
    assert handled_in_turn(list(range(40)), handle) == [n * 10 for n in range(40)]  # answers keep their order
    here = threading.current_thread().name
    assert [item for item, name in seen if name == here] == [0, 1, 2, 3]  # item 3 waited: the rest moved on
    pooled = {name for item, name in seen if item > 3}
    assert all(name.startswith("batch") for name in pooled) and 1 < len(pooled) <= batch.WORKERS
