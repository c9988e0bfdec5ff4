"""Optimistic concurrency: how often, and after what pause, a lost conditional write is retried
with fresh state."""

from __future__ import annotations

import random
import time

MAX_ATTEMPTS = 30  # tries of one change under concurrent writers


def pause_after_conflict(attempt: int) -> None:
    """A jittered pause that grows with the attempt, so racing writers spread out."""
    time.sleep(random.uniform(0, min(0.25, 0.004 * 2**attempt)))
