"""A small thread-safe TTL cache with LRU eviction, shared by the metadata client and the token verifiers.

Bounded so that memory stays flat whatever ids or tokens callers send; expiry per entry so a value can
live no longer than what it describes (a token's own expiry, for instance).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from score.server.observability.metrics import CACHE_LOOKUPS


class TtlCache:
    """Entries expire individually; the least recently used go first once ``max_entries`` is reached."""

    def __init__(self, ttl: float, max_entries: int, name: str = "other") -> None:
        self.ttl = ttl
        self.name = name  # the ``cache`` label of score_cache_lookups_total
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None and item[0] <= time.monotonic():
                del self._items[key]
                item = None
            if item is not None:
                self._items.move_to_end(key)
        CACHE_LOOKUPS.labels(self.name, "miss" if item is None else "hit").inc()
        return None if item is None else item[1]

    def put(self, key: Hashable, value: Any, ttl: float | None = None) -> None:
        """Keep ``value`` for ``ttl`` seconds (default: the cache's TTL, whichever is shorter)."""
        lifetime = self.ttl if ttl is None else min(ttl, self.ttl)
        if lifetime <= 0:
            return
        with self._lock:
            self._items[key] = (time.monotonic() + lifetime, value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
