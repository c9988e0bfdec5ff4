"""Race helper for the concurrency tests: every job on its own thread, all started together."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable


def run_concurrently(jobs: Iterable[Callable[[], object]]) -> list[Exception]:
    """Run each job on its own thread, wait for all, and return what they raised (in no order)."""
    errors: list[Exception] = []

    def run(job: Callable[[], object]) -> None:
        try:
            job()
        except Exception as e:  # collected: the caller asserts there are none
            errors.append(e)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors
