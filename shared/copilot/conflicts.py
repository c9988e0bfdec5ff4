"""Optimistic concurrency: the signal a lost conditional write raises, and the one loop that
runs a read-modify-write again, with fresh state, until its write wins."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
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


def pause_after_conflict(attempt: int) -> None:
    """A jittered pause that grows with the attempt, so racing writers spread out."""
    time.sleep(random.uniform(0, min(0.25, 0.004 * 2**attempt)))


def retry_on_conflict(
    change: Callable[[], T],
    *,
    what: str,
    give_up: type[CopilotError] = ConflictError,
) -> T:
    """Run ``change`` (read, modify, conditional write) until its write wins.

    ``change`` must read the state it modifies on every call. Only WriteConflict is retried,
    after a jittered pause; any other error propagates at once (a CopilotError is the answer,
    not a race). After MAX_ATTEMPTS lost races: ``give_up`` (409 by default; a caller whose own
    caller retries only on 5xx, like a hub's webhook, passes UnavailableError).
    """
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
