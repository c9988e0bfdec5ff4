"""Optimistic concurrency: the signal a lost conditional write raises, and the one loop that
runs a read-modify-write again, with fresh state, until its write wins."""

from __future__ import annotations

import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from copilot.errors import ConflictError, CopilotError

T = TypeVar("T")

MAX_ATTEMPTS = 30  # tries of one change under concurrent writers


class WriteConflict(Exception):
    """A conditional write lost: the record changed after it was read. Read again and retry.

    Deliberately not a CopilotError, so it can never reach a client as a status code: the
    stores raise it, ``retry_on_conflict`` consumes it, and only the service's decision to give
    up (ConflictError) is the client's business.
    """


class _KeyLock:
    __slots__ = ("__weakref__", "lock")

    def __init__(self) -> None:
        self.lock = threading.RLock()  # a change may run another change of its record


_key_locks: weakref.WeakValueDictionary[str, _KeyLock] = weakref.WeakValueDictionary()
_key_locks_guard = threading.Lock()


def _key_lock(key: str) -> _KeyLock:
    """The process's lock for ``key``: alive while some thread holds or waits on it."""
    with _key_locks_guard:
        found = _key_locks.get(key)
        if found is None:
            found = _key_locks[key] = _KeyLock()
        return found


@contextmanager
def one_at_a_time(key: str) -> Iterator[None]:
    """The threads of this process that work on ``key`` take turns (other processes are
    kept apart by what the caller relies on: a FIFO queue's message group, a conditional
    write)."""
    held = _key_lock(key)
    with held.lock:
        yield


def pause_after_conflict(attempt: int) -> None:
    """A jittered pause that grows with the attempt, so racing writers spread out."""
    time.sleep(random.uniform(0, min(0.25, 0.004 * 2**attempt)))


def retry_on_conflict(
    change: Callable[[], T],
    *,
    what: str,
    give_up: type[CopilotError] = ConflictError,
    key: str | None = None,
) -> T:
    """Run ``change`` (read, modify, conditional write) until its write wins.

    ``change`` must read the state it modifies on every call. Only WriteConflict is retried,
    after a jittered pause; any other error propagates at once (a CopilotError is the answer,
    not a race). After MAX_ATTEMPTS lost races: ``give_up`` (409 by default; a caller whose own
    caller retries only on 5xx, like a hub's webhook, passes UnavailableError).

    With ``key`` (the record's), the threads of one process that change the same record take
    turns instead of racing: under functions-framework one instance serves many requests at
    once, and N threads racing for one conversation waste most of their reads and writes on
    lost conditional writes (each loser reads and writes again). The conditional write still
    decides between processes (other instances, Lambda's one-request-per-instance).
    """
    if key is None:
        return _retrying(change, what, give_up)
    held = _key_lock(key)
    with held.lock:
        return _retrying(change, what, give_up)


def _retrying(change: Callable[[], T], what: str, give_up: type[CopilotError]) -> T:
    for attempt in range(MAX_ATTEMPTS):
        try:
            return change()
        except WriteConflict as lost:
            if attempt == MAX_ATTEMPTS - 1:
                raise give_up(
                    f"{what} kept changing while it was being written; try again"
                ) from lost
            pause_after_conflict(attempt)
    raise AssertionError("unreachable")
