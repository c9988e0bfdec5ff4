"""What a warm process remembers between requests: a bounded map, oldest entries dropped
first, optionally forgetting entries after a time to live (so a changed setting applies on
every instance within it)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Remembered(Generic[K, V]):
    def __init__(
        self,
        size: int = 4096,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._size = size
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The value remembered for ``key``; None if there is none or it is too old."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or (self._ttl is not None and self._clock() - entry[0] >= self._ttl):
            return None
        return entry[1]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = (self._clock(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
