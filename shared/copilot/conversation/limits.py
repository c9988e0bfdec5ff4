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

import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from copilot.admin.models import Limits, RateLimit
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
        self._lock = threading.Lock()
        self._limits: OrderedDict[str, tuple[float, Limits | None]] = OrderedDict()
        self._owners: OrderedDict[str, str] = OrderedDict()  # conversation -> copilot (fixed)

    def start(self, copilot_id: str, client: str) -> None:
        limits = self._limits_of(copilot_id) if self.enabled else None
        if limits is not None:
            self._take(
                f"start#{copilot_id}#{client}",
                limits.starts_per_client,
                "too many conversations started from your address",
            )

    def post(self, conversation_id: str, token: str | None, client: str) -> None:
        found = self._conversation_limits(conversation_id) if self.enabled else None
        if found is None:
            return
        copilot_id, limits = found
        self._take(
            f"post#{conversation_id}#{_digest(token)}",
            limits.posts_per_conversation,
            "too many messages in this conversation",
        )
        self._take(
            f"post#{copilot_id}#{client}",
            limits.posts_per_client,
            "too many messages from your address",
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
        try:
            wait = self._store().take(key, limit.rate, self._clock())
        except UnavailableError as e:
            log.warning("rate limit not checked (request served): %s", e)
            return
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
            with self._lock:
                self._owners[conversation_id] = copilot_id
                while len(self._owners) > _CACHED:
                    self._owners.popitem(last=False)
        limits = self._limits_of(copilot_id)
        return None if limits is None else (copilot_id, limits)

    def _limits_of(self, copilot_id: str) -> Limits | None:
        now = time.monotonic()
        with self._lock:
            cached = self._limits.get(copilot_id)
        if cached is not None and now - cached[0] < LIMITS_TTL_SECONDS:
            return cached[1]
        try:
            copilot = self._copilots().get(copilot_id)
        except UnavailableError as e:
            log.warning("rate limits not checked (request served): %s", e)
            return None
        if copilot is None:
            return None  # the request is answered 404 by the service
        limits = copilot.limits
        with self._lock:
            self._limits[copilot_id] = (now, limits)
            self._limits.move_to_end(copilot_id)
            while len(self._limits) > _CACHED:
                self._limits.popitem(last=False)
        return limits


def _digest(token: str | None) -> str:
    return hashlib.sha256((token or "").encode()).hexdigest()[:16]
