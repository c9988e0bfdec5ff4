"""Pull jobs: agent events from hubs that have no webhook (Salesforce MIAW's Server-Sent Events,
Dynamics 365's Direct Line), for a stateless function.

A job reads one hand-off's events for a bounded window (HubAdapter.pull, up to ``window``
seconds), applies each batch as it arrives through the same path as webhooks (claimed once by
event id, in the hub's order), keeps the adapter's cursor on the hand-off, and schedules the
next job on an SQS queue, for as long as the hand-off is open. So a hand-off in progress is
read almost continuously (a new job starts within a queue hop of the last one ending), and a
copilot with no open pull hand-off runs no job at all.

At most one job reads a hand-off at a time: a job first takes a lease on the hand-off (a
conditional write); a duplicate delivery of its message, or a job scheduled twice, finds the
lease held and stops without scheduling anything. A job that dies leaves its message to come
back after the queue's visibility timeout (longer than a lease), and the customer's polls
schedule a job when a hand-off's pull has been silent too long (``watch``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from copilot.admin.models import Copilot
from copilot.conversation.models import Conversation
from copilot.errors import CopilotError, HubUnavailableError
from copilot.handoff.changes import ACTIVE, Change, update
from copilot.handoff.config import hub_secret
from copilot.handoff.models import Handoff, HubEvent, HubPullState, HubReceipt
from copilot.ports import ConversationStore, CopilotRegistry, EventQueue, HubAdapter, SecretStore

log = logging.getLogger(__name__)

KIND = "hub_pull"  # the queue message's "kind"
LEASE_MARGIN = timedelta(seconds=10)  # a lease outlives its window by this much
RETRY_DELAY = 2  # seconds before the next job when the hub was down


def job_body(conversation_id: str, handoff_id: str) -> str:
    return json.dumps({"kind": KIND, "conversation_id": conversation_id, "handoff_id": handoff_id})


def parse_job(body: str) -> tuple[str, str] | None:
    """(conversation id, hand-off id) of a pull job's message; None if it is not one."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        return None
    cid, hid = data.get("conversation_id"), data.get("handoff_id")
    return (cid, hid) if isinstance(cid, str) and isinstance(hid, str) else None


class PullJobs:
    def __init__(
        self,
        copilots: CopilotRegistry,
        conversations: ConversationStore,
        *,
        queue: Callable[[], EventQueue],
        secrets: Callable[[], SecretStore],
        hubs: Callable[[str], HubAdapter],
        apply: Callable[[Copilot, list[HubEvent]], object],
        window: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._copilots = copilots
        self._conversations = conversations
        self._queue = queue
        self._secrets = secrets
        self._hubs = hubs
        self._apply = apply
        self._window = window
        self._clock = clock
        self._watched: dict[str, float] = {}
        self._watched_lock = threading.Lock()

    def pulls(self, copilot: Copilot) -> bool:
        return copilot.hub is not None and self._hubs(copilot.hub.type).pull_window > 0

    def schedule(self, conversation_id: str, handoff_id: str, delay: int = 0) -> None:
        """UnavailableError if the queue is down (the caller decides what that means)."""
        self._queue().send_many([job_body(conversation_id, handoff_id)], delay_seconds=delay)

    def started(self, copilot: Copilot, conversation_id: str, handoff_id: str) -> None:
        """The hub answered the hand-off's start: its first job (a failure is for ``watch``)."""
        if not self.pulls(copilot):
            return
        try:
            self.schedule(conversation_id, handoff_id)
        except CopilotError:
            log.warning("could not schedule the first pull of %s", conversation_id, exc_info=True)

    def watch(self, conversation: Conversation) -> None:
        """From a customer's poll: a job for an open pull hand-off whose jobs went silent (the
        queue was down when one was due). At most every window per conversation and process."""
        handoff = _open(conversation, None)
        if handoff is None or _receipt(conversation, handoff) is None:
            return
        if handoff.hub_type is not None and self._hubs(handoff.hub_type).pull_window <= 0:
            return  # a hub that pushes: nothing to watch, and no read of the copilot to know it
        now = self._clock()
        pull = handoff.pull or HubPullState()
        if pull.lease_until is not None and pull.lease_until > now:
            return  # a job is reading
        last = pull.pulled_at or handoff.requested_at
        if now - last < timedelta(seconds=2 * self._window) + LEASE_MARGIN:
            return
        mono = time.monotonic()
        with self._watched_lock:
            if mono - self._watched.get(conversation.conversation_id, -1e9) < self._window:
                return
            self._watched[conversation.conversation_id] = mono
        copilot = self._copilots.get(conversation.copilot_id)
        if copilot is None or not self.pulls(copilot):
            return
        log.warning("pull of %s went silent: scheduling a job", conversation.conversation_id)
        try:
            self.schedule(conversation.conversation_id, handoff.handoff_id)
        except CopilotError:
            log.warning("could not schedule a pull job", exc_info=True)

    def run(self, conversation_id: str, handoff_id: str) -> None:
        """One job. Raises (for the queue to deliver it again) only when its successor could
        not be scheduled or the store failed."""
        conversation = self._conversations.get(conversation_id)
        copilot = self._copilots.get(conversation.copilot_id) if conversation else None
        if conversation is None or copilot is None or copilot.hub is None:
            return
        adapter = self._hubs(copilot.hub.type)
        if adapter.pull_window <= 0:
            return
        window = min(adapter.pull_window, self._window)
        leased = self._lease(conversation_id, handoff_id, window)
        if leased is None:
            return  # closed, or another job holds the lease
        handoff = leased.handoff
        receipt = _receipt(leased, handoff) if handoff else None
        assert handoff is not None and receipt is not None
        state = dict((handoff.pull or HubPullState()).state)
        delay = 0
        try:
            secret = hub_secret(self._secrets(), copilot.hub, HubUnavailableError)
            until = time.monotonic() + window
            for batch in adapter.pull(copilot.hub, secret, receipt, dict(state), until):
                if batch.events:
                    self._apply(copilot, batch.events)
                if batch.state:
                    state.update(batch.state)
                    if not self._keep(conversation_id, handoff_id, batch.state):
                        break  # the hand-off closed under us: nothing more to read
        except HubUnavailableError as e:
            log.warning("pulling %s from the %s hub: %s", conversation_id, copilot.hub.type, e)
            delay = RETRY_DELAY
        if self._release(conversation_id, handoff_id):
            self.schedule(conversation_id, handoff_id, delay)

    def _lease(self, conversation_id: str, handoff_id: str, window: float) -> Conversation | None:
        now = self._clock()

        def take(conversation: Conversation) -> Change | None:
            handoff = _open(conversation, handoff_id)
            if handoff is None or _receipt(conversation, handoff) is None:
                return None
            pull = handoff.pull or HubPullState()
            if pull.lease_until is not None and pull.lease_until > now:
                return None
            lease = now + timedelta(seconds=window) + LEASE_MARGIN
            taken = pull.model_copy(update={"lease_until": lease, "jobs": pull.jobs + 1})
            return Change(_with_pull(conversation, handoff, taken))

        stored, done = update(self._conversations, conversation_id, take)
        return stored if done is not None else None

    def _keep(self, conversation_id: str, handoff_id: str, keys: dict[str, Any]) -> bool:
        """Store the adapter's state after a batch; False when the hand-off is over."""

        def keep(conversation: Conversation) -> Change | None:
            handoff = _open(conversation, handoff_id)
            if handoff is None:
                return None
            pull = handoff.pull or HubPullState()
            kept = pull.model_copy(update={"state": {**pull.state, **keys}})
            return Change(_with_pull(conversation, handoff, kept))

        _, done = update(self._conversations, conversation_id, keep)
        return done is not None

    def _release(self, conversation_id: str, handoff_id: str) -> bool:
        """End the job's lease; True when the hand-off is still open (a next job is due)."""
        now = self._clock()

        def release(conversation: Conversation) -> Change | None:
            handoff = _open(conversation, handoff_id)
            if handoff is None:
                return None
            pull = handoff.pull or HubPullState()
            done = pull.model_copy(update={"lease_until": None, "pulled_at": now})
            return Change(_with_pull(conversation, handoff, done))

        _, done = update(self._conversations, conversation_id, release)
        return done is not None


def _open(conversation: Conversation, handoff_id: str | None) -> Handoff | None:
    handoff = conversation.handoff
    if handoff is None or handoff.closed or conversation.state not in ACTIVE:
        return None
    if handoff_id is not None and handoff.handoff_id != handoff_id:
        return None
    return handoff


def _receipt(conversation: Conversation, handoff: Handoff) -> HubReceipt | None:
    cursor = conversation.hub_outbox
    return cursor.receipt if cursor.started == handoff.handoff_id else None


def _with_pull(conversation: Conversation, handoff: Handoff, pull: HubPullState) -> Conversation:
    return conversation.model_copy(update={"handoff": handoff.model_copy(update={"pull": pull})})
