"""Calls made once per process by key: for hubs whose API takes no idempotency key (LivePerson's
Send API, ServiceNow's Bot Integration API as far as its docs say), two deliveries of one
outbox command in the same process send it once. Across processes nothing here helps: the
outbox's per-conversation order (SQS FIFO) is what keeps them apart there."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")


class Once:
    """Calls by key, each made once in this process: a call whose key is running waits for it
    and gets its result; a failed call leaves the key to the next. The last ``size`` results
    are kept."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._done: OrderedDict[str, Any] = OrderedDict()
        self._running: dict[str, threading.Lock] = {}

    def run(self, key: str, call: Callable[[], T]) -> T:
        while True:
            with self._lock:
                if key in self._done:
                    return cast(T, self._done[key])
                running = self._running.get(key)
                if running is None:
                    running = self._running[key] = threading.Lock()
                    running.acquire()
                    break
            with running:  # the other call's end, then look again
                pass
        try:
            result = call()
            with self._lock:
                self._done[key] = result
                while len(self._done) > self._size:
                    self._done.popitem(last=False)
            return result
        finally:
            with self._lock:
                del self._running[key]
            running.release()
