"""Which web pages (origins) may call a copilot's chat API from a browser: its
``allowed_origins``, looked up per request and remembered briefly.

A conversation belongs to one copilot for life, so conversation -> copilot is remembered per
process; a copilot's origins for ORIGINS_TTL_SECONDS, so a changed list applies within that on
every instance. A failed lookup allows no origin (fail closed: the browser is refused, the
request itself is still served) and is not remembered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

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
        self._clock = clock
        self._lock = threading.Lock()
        self._origins: OrderedDict[str, tuple[float, frozenset[str]]] = OrderedDict()
        self._owners: OrderedDict[str, str] = OrderedDict()  # conversation -> copilot (fixed)

    def of_copilot(self, copilot_id: str) -> frozenset[str]:
        """The copilot's allowed origins ('*' among them: any); none for an unknown copilot."""
        now = self._clock()
        with self._lock:
            cached = self._origins.get(copilot_id)
        if cached is not None and now - cached[0] < ORIGINS_TTL_SECONDS:
            return cached[1]
        try:
            copilot = self._copilots().get(copilot_id)
        except UnavailableError as e:
            log.warning("allowed origins not read (browsers refused): %s", e)
            return NO_ORIGINS
        origins = frozenset(copilot.allowed_origins) if copilot is not None else NO_ORIGINS
        with self._lock:
            self._origins[copilot_id] = (now, origins)
            self._origins.move_to_end(copilot_id)
            while len(self._origins) > _CACHED:
                self._origins.popitem(last=False)
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
            with self._lock:
                self._owners[conversation_id] = copilot_id
                while len(self._owners) > _CACHED:
                    self._owners.popitem(last=False)
        return self.of_copilot(copilot_id)
