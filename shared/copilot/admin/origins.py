"""Which web pages (origins) may call a copilot's chat API from a browser: its
``allowed_origins``, looked up per request and remembered briefly.

A conversation belongs to one copilot for life, so conversation -> copilot is remembered per
process; a copilot's origins for ORIGINS_TTL_SECONDS, so a changed list applies within that on
every instance. A failed lookup allows no origin (fail closed: the browser is refused, the
request itself is still served) and is not remembered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from copilot.caching import Remembered
from copilot.errors import UnavailableError
from copilot.ports import ConversationStore, CopilotRegistry

log = logging.getLogger(__name__)

ORIGINS_TTL_SECONDS = 30.0
_CACHED = 4096  # copilots and conversations remembered per process

NO_ORIGINS: frozenset[str] = frozenset()


class CopilotOrigins:
    def __init__(
        self,
        copilots: Callable[[], CopilotRegistry],
        conversations: Callable[[], ConversationStore],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._copilots = copilots
        self._conversations = conversations
        self._origins: Remembered[str, frozenset[str]] = Remembered(
            _CACHED, ORIGINS_TTL_SECONDS, clock
        )
        self._owners: Remembered[str, str] = Remembered(_CACHED)  # conversation -> copilot

    def of_copilot(self, copilot_id: str) -> frozenset[str]:
        """The copilot's allowed origins ('*' among them: any); none for an unknown copilot."""
        cached = self._origins.get(copilot_id)
        if cached is not None:
            return cached
        try:
            copilot = self._copilots().get(copilot_id)
        except UnavailableError as e:
            log.warning("allowed origins not read (browsers refused): %s", e)
            return NO_ORIGINS
        origins = frozenset(copilot.allowed_origins) if copilot is not None else NO_ORIGINS
        self._origins.put(copilot_id, origins)
        return origins

    def of_conversation(self, conversation_id: str) -> frozenset[str]:
        """The allowed origins of the conversation's copilot; none for an unknown one."""
        copilot_id = self._owners.get(conversation_id)
        if copilot_id is None:
            try:
                conversation = self._conversations().get(conversation_id)
            except UnavailableError as e:
                log.warning("allowed origins not read (browsers refused): %s", e)
                return NO_ORIGINS
            if conversation is None:
                return NO_ORIGINS  # not remembered: it may be created later under this id
            copilot_id = conversation.copilot_id
            self._owners.put(conversation_id, copilot_id)
        return self.of_copilot(copilot_id)
