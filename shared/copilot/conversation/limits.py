"""The chat API's rate limits: which bucket a request takes from, and what a refusal says.

Buckets (copilot.limits; sizes from the copilot's ``limits``):

- ``start#<copilot>#<client>``: conversation starts from one client address;
- ``post#<copilot>#<client>``: customer messages from one client address;
- ``post#<conversation>#<token>`` and ``poll#<conversation>#<token>``: per conversation, keyed
  by a digest of the token sent, so a caller without the right token never drains the
  customer's bucket (its requests are then refused by authorization, and count against its
  own address).

A limiter must never take the chat down: when its store (or the lookup of a copilot's limits)
fails, the request is served and a warning logged (fail open). The edge (API Gateway
throttling, serverless.yml) bounds what gets through meanwhile.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from copilot.admin.models import Limits, RateLimit
from copilot.caching import Remembered
from copilot.errors import TooManyRequestsError, UnavailableError
from copilot.ports import ConversationStore, CopilotRegistry, RateLimitStore

log = logging.getLogger(__name__)

LIMITS_TTL_SECONDS = 60.0  # a changed limit applies within a minute on every instance
_CACHED = 4096  # copilots' limits and conversations' copilots remembered per process


class ChatLimits:
    def __init__(
        self,
        store: Callable[[], RateLimitStore],
        copilots: Callable[[], CopilotRegistry],
        conversations: Callable[[], ConversationStore],
        *,
        enabled: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.enabled = enabled
        self._store = store
        self._copilots = copilots
        self._conversations = conversations
        self._clock = clock  # wall clock: buckets are shared by every instance
        self._limits: Remembered[str, Limits] = Remembered(_CACHED, LIMITS_TTL_SECONDS)
        self._owners: Remembered[str, str] = Remembered(_CACHED)  # conversation -> copilot

    def start(self, copilot_id: str, client: str) -> None:
        limits = self._limits_of(copilot_id) if self.enabled else None
        if limits is not None:
            self._take(
                f"start#{copilot_id}#{client}",
                limits.starts_per_client,
                "too many conversations started from your address",
            )

    def post(self, conversation_id: str, token: str | None, client: str) -> None:
        self.begin_post(conversation_id, token, client)()

    def begin_post(
        self, conversation_id: str, token: str | None, client: str
    ) -> Callable[[], None]:
        """Start taking a post's buckets, both at once, in the background; the gate returned
        waits for them and raises the 429. The turn calls it after its own first reads and
        before any costly work, so the checks' round trip overlaps those reads."""
        found = self._conversation_limits(conversation_id) if self.enabled else None
        if found is None:
            return _open
        copilot_id, limits = found
        return self._begin_all(
            [
                (
                    f"post#{conversation_id}#{_digest(token)}",
                    limits.posts_per_conversation,
                    "too many messages in this conversation",
                ),
                (
                    f"post#{copilot_id}#{client}",
                    limits.posts_per_client,
                    "too many messages from your address",
                ),
            ]
        )

    def poll(self, conversation_id: str, token: str | None) -> None:
        found = self._conversation_limits(conversation_id) if self.enabled else None
        if found is not None:
            self._take(
                f"poll#{conversation_id}#{_digest(token)}",
                found[1].polls_per_conversation,
                "this conversation is polled too often",
            )

    def _take(self, key: str, limit: RateLimit, what: str) -> None:
        self._refuse_if(self._wait(key, limit), limit, what)

    def _begin_all(self, checks: list[tuple[str, RateLimit, str]]) -> Callable[[], None]:
        """Take from every bucket concurrently; the gate refuses if any refused (the first
        named). Only store calls run on the pool (never a task waiting on another task)."""
        futures = [
            _pool().submit(contextvars.copy_context().run, self._wait, key, limit)
            for key, limit, _ in checks
        ]

        def gate() -> None:
            waits = [f.result() for f in futures]
            for (_, limit, what), wait in zip(checks, waits, strict=True):
                self._refuse_if(wait, limit, what)

        return gate

    def _wait(self, key: str, limit: RateLimit) -> float:
        """Seconds until the bucket admits a request (0: admitted, a token taken)."""
        try:
            return self._store().take(key, limit.rate, self._clock())
        except UnavailableError as e:
            log.warning("rate limit not checked (request served): %s", e)
            return 0.0

    @staticmethod
    def _refuse_if(wait: float, limit: RateLimit, what: str) -> None:
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise TooManyRequestsError(
                f"{what}: {limit.burst} at once, then {limit.per_minute:g} a minute; "
                f"try again in {seconds} s",
                retry_after=seconds,
            )

    def _conversation_limits(self, conversation_id: str) -> tuple[str, Limits] | None:
        copilot_id = self._owners.get(conversation_id)
        if copilot_id is None:
            try:
                conversation = self._conversations().get(conversation_id)
            except UnavailableError as e:
                log.warning("rate limits not checked (request served): %s", e)
                return None
            if conversation is None:
                return None  # the request is answered 404 by the service
            copilot_id = conversation.copilot_id
            self._owners.put(conversation_id, copilot_id)
        limits = self._limits_of(copilot_id)
        return None if limits is None else (copilot_id, limits)

    def _limits_of(self, copilot_id: str) -> Limits | None:
        cached = self._limits.get(copilot_id)
        if cached is not None:
            return cached
        try:
            copilot = self._copilots().get(copilot_id)
        except UnavailableError as e:
            log.warning("rate limits not checked (request served): %s", e)
            return None
        if copilot is None:
            return None  # the request is answered 404 by the service
        self._limits.put(copilot_id, copilot.limits)
        return copilot.limits


def _open() -> None:
    """The gate of a request no limit applies to."""


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """Threads for concurrent bucket checks, started on first use (not on a cold import)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rate-limits")
        return _executor


def _digest(token: str | None) -> str:
    return hashlib.sha256((token or "").encode()).hexdigest()[:16]
