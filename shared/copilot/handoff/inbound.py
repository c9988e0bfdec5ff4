"""The hub's side of a hand-off: verified webhook events, applied once each and in order.

A verified event is applied exactly once (its hub id is claimed in the same write as its
effect) and in the hub's order: an event that arrives ahead of a gap in the hub's sequence
numbers is held on the conversation until the gap fills, or, if it never does, for
``reorder_window`` seconds (then the gap is skipped on the next event or customer poll, and a
skipped event that comes after all is applied late rather than dropped).

Everything here is bounded, so no hub (broken, replaying a backlog, or hostile) can wedge a
conversation: at most ``max_held`` events (``max_held_bytes`` of them) wait for a gap, a
sequence number more than ``max_ahead`` past the last one in order is refused, and one write
applies at most MAX_EVENTS_PER_WRITE events (a DynamoDB transaction takes 100 items); events
whose turn has come beyond that stay queued, in order, for the next writes of the same call
or of the customer's next poll.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, get_args

from copilot.admin.models import Copilot
from copilot.conversation import survey
from copilot.conversation.models import Conversation, ConversationState, Message
from copilot.errors import (
    BadRequestError,
    CopilotError,
    DuplicateError,
    ForbiddenError,
    NotFoundError,
    UnavailableError,
)
from copilot.handoff.changes import ACTIVE, Change, Verdict, back_to_bot, failed, update
from copilot.handoff.config import HandoffConfig, hub_secret
from copilot.handoff.models import (
    Agent,
    Handoff,
    HandoffEventName,
    HubEvent,
    HubLink,
    HubType,
    WebhookAck,
    WebhookResult,
)
from copilot.observability import bind
from copilot.ports import (
    ConversationStore,
    CopilotRegistry,
    HubAdapter,
    InboundRequest,
    SecretStore,
)
from copilot.schema import utcnow

log = logging.getLogger(__name__)

MAX_SKIPPED = 200  # sequence numbers remembered as skipped (so they apply if they come late)
# One write is one DynamoDB transaction of at most 100 items: the conversation, the event's
# claim, and per event up to two items of messages and analytics events (an agent joining
# shows one message and records one event; "ended", once, five items). 30 leave a wide margin.
MAX_EVENTS_PER_WRITE = 30
TRANSACTION_ITEMS = 100

POLL_INTERVAL = 2.0  # seconds between two polls of one hand-off's hub (HubAdapter.poll)

RESUMED = "I'm back. Is there anything else I can help you with?"
INACTIVE = "The agent is no longer in this chat."
CLOSED = "This conversation has ended. Thanks for chatting with us!"


class InboundEvents:
    def __init__(
        self,
        copilots: CopilotRegistry,
        conversations: ConversationStore,
        *,
        secrets: Callable[[], SecretStore],
        hubs: Callable[[str], HubAdapter],
        config: HandoffConfig,
        clock: Callable[[], datetime],
    ) -> None:
        self._copilots = copilots
        self._conversations = conversations
        self._secrets = secrets
        self._hubs = hubs
        self._config = config
        self._clock = clock
        self._polled: dict[str, float] = {}  # conversation -> when its hub was last polled
        self._polled_lock = threading.Lock()

    def receive(self, hub_type: str, copilot_id: str, request: InboundRequest) -> WebhookAck:
        if hub_type not in get_args(HubType):
            raise NotFoundError("no such webhook")  # the list of hub types is public
        adapter = self._hubs(hub_type)
        copilot = self._copilots.get(copilot_id)
        hub = copilot.hub if copilot else None
        if copilot is None or hub is None or hub.type != hub_type:
            # Answer exactly as for a copilot with this hub and a wrong signature (401 when
            # unsigned, 403 when signed): whether a copilot exists, or has a hub, leaks nowhere.
            adapter.verify(request, None, os.urandom(32).hex(), self._clock())
            raise ForbiddenError("the signature does not match")  # no adapter gets here
        adapter.verify(request, hub, hub_secret(self._secrets(), hub), self._clock())
        events = [self._ours(copilot, e) for e in adapter.parse(request, hub)]
        # Verified and parsed: the webhook's log lines can name the conversation (a batch of
        # one conversation's events is the norm; the first one names the scope).
        if events:
            bind(conversation_id=events[0].conversation_id)
            if adapter.supports_poll and any(e.agent is None for e in events):
                self._name_the_agent(copilot, events[0])
        return WebhookAck(results=[self._apply(copilot, event) for event in events])

    def apply(self, copilot: Copilot, events: list[HubEvent]) -> list[WebhookResult]:
        """Events a pull job read (handoff/pull.py): the same path as a webhook's."""
        return [self._apply(copilot, self._ours(copilot, event)) for event in events]

    def poll(self, conversation: Conversation) -> bool:
        """What the hub's webhook leaves out (HubAdapter.poll), for an open hand-off, at most
        every ``POLL_INTERVAL`` seconds per conversation in this process. Never fails the
        customer's poll it runs in. True when it changed the conversation."""
        handoff = conversation.handoff
        if handoff is None or handoff.closed or conversation.state not in ACTIVE:
            return False
        if handoff.hub_type is not None and not self._hubs(handoff.hub_type).supports_poll:
            return False  # most hubs: nothing to ask, and no read of the copilot to know it
        now = time.monotonic()
        with self._polled_lock:
            if now - self._polled.get(conversation.conversation_id, -POLL_INTERVAL) < POLL_INTERVAL:
                return False
            if len(self._polled) > 10_000:  # forget the oldest conversations
                self._polled = dict(sorted(self._polled.items(), key=lambda kv: kv[1])[-5000:])
            self._polled[conversation.conversation_id] = now
        copilot = self._copilots.get(conversation.copilot_id)
        if copilot is None or copilot.hub is None or not self._hubs(copilot.hub.type).supports_poll:
            return False
        return self._poll_now(copilot, conversation)

    def _name_the_agent(self, copilot: Copilot, event: HubEvent) -> None:
        """An agent event the hub did not name: ask the hub who it is first (once: after that
        the hand-off knows its agent), so the customer sees who joined before what they say."""
        conversation = self._conversations.get(event.conversation_id or "")
        handoff = conversation.handoff if conversation else None
        if conversation is not None and handoff is not None and handoff.agent is None:
            self._poll_now(copilot, conversation)

    def _poll_now(self, copilot: Copilot, conversation: Conversation) -> bool:
        hub, handoff, cursor = copilot.hub, conversation.handoff, conversation.hub_outbox
        if hub is None or handoff is None or cursor.receipt is None:
            return False  # the hub has not answered the start yet: nothing to ask about
        if cursor.started != handoff.handoff_id:
            return False
        changed = False
        try:
            secret = hub_secret(self._secrets(), hub)
            for event in self._hubs(hub.type).poll(hub, secret, cursor.receipt):
                result = self._apply(copilot, self._ours(copilot, event))
                changed = changed or result.status in ("applied", "held")
        except CopilotError as e:  # the hub or our store is down: the next poll asks again
            log.warning("polling the %s hub failed: %s", hub.type, e)
        return changed

    def _ours(self, copilot: Copilot, event: HubEvent) -> HubEvent:
        """``event`` naming our conversation (and hand-off), found from the hub's id."""
        if event.conversation_id is not None or event.hub_conversation_id is None:
            return event
        assert copilot.hub is not None
        key = HubLink.key_of(copilot.hub.type, copilot.copilot_id, event.hub_conversation_id)
        link = self._conversations.linked(key)
        if link is None:
            # The hub answered our start and its first event beat our write of its id: a
            # 503 makes the hub deliver again (each hub retries 5xx), by then it is written.
            raise UnavailableError("no conversation is linked to that hub conversation (yet)")
        return event.model_copy(
            update={"conversation_id": link.conversation_id, "handoff_id": link.handoff_id}
        )

    def due(self, conversation: Conversation) -> bool:
        """Events queued in order, or held ones that waited out their window: a poll applies
        them."""
        handoff = conversation.handoff
        return handoff is not None and (
            _queued(handoff) or self._expired(handoff) or self._idle(handoff)
        )

    def _idle(self, handoff: Handoff) -> bool:
        """No hub event for the hub's inactivity limit: the agent walked away unannounced."""
        if handoff.closed or handoff.inactivity_minutes is None:
            return False
        last = handoff.hub_active_at or handoff.requested_at
        return (self._clock() - last).total_seconds() >= handoff.inactivity_minutes * 60

    def flush(self, conversation_id: str) -> None:
        conversation = self._conversations.get(conversation_id)
        copilot = self._copilots.get(conversation.copilot_id) if conversation else None
        if copilot is not None:
            self._drain(copilot, conversation_id, self.due)

    def _drain(
        self, copilot: Copilot, conversation_id: str, pending: Callable[[Conversation], bool]
    ) -> Conversation | None:
        """Apply what ``pending`` finds, a write at a time, until nothing is (or the bound:
        the held events make a few writes at most)."""
        stored: Conversation | None = None
        for _ in range(self._config.max_held // MAX_EVENTS_PER_WRITE + 3):

            def change(conversation: Conversation) -> Change | None:
                if conversation.handoff is None or not pending(conversation):
                    return None  # another poll or event got there first
                return self._advance(conversation, copilot, None)

            stored, done = update(self._conversations, conversation_id, change)
            if done is None:
                break
        return stored

    def _apply(self, copilot: Copilot, event: HubEvent) -> WebhookResult:
        assert copilot.hub is not None
        claim = f"hub#{copilot.copilot_id}#{copilot.hub.type}#{event.event_id}"
        cid = event.conversation_id
        assert cid is not None, "resolved by _ours"
        event = event.model_copy(update={"received_at": self._clock()})
        verdict: Verdict = "applied"

        def change(conversation: Conversation) -> Change | None:
            nonlocal verdict
            if conversation.copilot_id != copilot.copilot_id:
                raise NotFoundError("no such conversation")
            handoff = conversation.handoff
            if (
                handoff is None
                or handoff.closed
                or (event.handoff_id is not None and event.handoff_id != handoff.handoff_id)
            ):
                verdict = "ignored"  # a hand-off that is over (or never was): nothing to do
                return None
            if event.sequence is not None and (
                (event.sequence <= handoff.hub_seq and event.sequence not in handoff.skipped)
                or any(h.sequence == event.sequence for h in handoff.held)
            ):
                verdict = "duplicate"  # a retry under another id: this position is taken
                return None
            self._within_reach(conversation, handoff, event)
            done = self._advance(conversation, copilot, event)
            verdict = done.status
            return done

        try:
            _, done = update(self._conversations, cid, change, claims=[claim])
        except DuplicateError:
            return WebhookResult(event_id=event.event_id, status="duplicate")
        if done is not None and _queued(done.conversation.handoff):
            # In order but beyond one write: apply the rest now. The event is recorded (and
            # claimed) already, so a failure here is for the customer's next poll to finish.
            try:
                stored = self._drain(copilot, cid, _queued_in)
            except UnavailableError:
                log.warning("queued hub events left for the next poll", exc_info=True)
                stored = None
            handoff = stored.handoff if stored is not None else None
            if handoff is not None and all(e.event_id != event.event_id for e in handoff.held):
                verdict = "applied"  # (when it was held, a later write of this call applied it)
        return WebhookResult(event_id=event.event_id, status=verdict)

    def _within_reach(self, conversation: Conversation, handoff: Handoff, event: HubEvent) -> None:
        """A sequence number far past the last one in order is a broken or hostile hub: taking
        it in would make every later event a duplicate, so it is refused (once, one line)."""
        limit = handoff.hub_seq + self._config.max_ahead
        if event.sequence is not None and event.sequence > limit:
            sequence = _short(event.sequence)
            log.warning(
                "conversation %s: hub event %s has sequence %s, past the last in order (%d) "
                "by more than %d: refused",
                conversation.conversation_id,
                event.event_id[:80],
                sequence,
                handoff.hub_seq,
                self._config.max_ahead,
            )
            raise BadRequestError(
                f"sequence {sequence} is more than {self._config.max_ahead} past the "
                f"last one applied ({handoff.hub_seq})",
                field="sequence",
            )

    def _advance(
        self, conversation: Conversation, copilot: Copilot, incoming: HubEvent | None
    ) -> Change:
        """Take ``incoming`` in, then apply the events whose turn has come, in hub order, at
        most MAX_EVENTS_PER_WRITE of them; the rest stay queued on the conversation."""
        handoff = conversation.handoff
        assert handoff is not None
        held, skipped = list(handoff.held), list(handoff.skipped)
        first: list[HubEvent] = []
        if incoming is not None and incoming.sequence is None:
            first.append(incoming)  # a hub without sequence numbers: arrival order
        elif incoming is not None:
            if incoming.sequence in skipped:
                skipped.remove(incoming.sequence)  # it came after all: late, but never lost
            held.append(incoming)
        held.sort(key=_sequence)
        # hub_seq: the last sequence number taken into order. Held events at or below it are
        # queued (in order, waiting for a write); those above it wait for a gap to fill.
        hub_seq, in_order = handoff.hub_seq, 0
        while in_order < len(held) and _sequence(held[in_order]) <= hub_seq + 1:
            hub_seq = max(hub_seq, _sequence(held[in_order]))
            in_order += 1
        waiting = held[in_order:]
        if waiting and (
            len(held) > self._config.max_held
            or _size(held) > self._config.max_held_bytes
            or self._expired(handoff, waiting)
        ):
            gaps = _gaps(hub_seq, [_sequence(e) for e in waiting])
            log.warning(
                "conversation %s: hub events %s did not arrive in time; applying later ones",
                conversation.conversation_id,
                _ranges(gaps),
            )
            memory = max(MAX_SKIPPED, self._config.max_ahead)
            skipped = (skipped + _numbers(gaps, memory))[-memory:]
            hub_seq, in_order = _sequence(waiting[-1]), len(held)
        ready = first + held[:in_order]
        now, later = ready[:MAX_EVENTS_PER_WRITE], ready[MAX_EVENTS_PER_WRITE:]
        held = later + held[in_order:]
        status: Verdict = "applied" if incoming is None or incoming in now else "held"
        update: dict[str, Any] = {"held": held, "hub_seq": hub_seq, "skipped": skipped}
        if incoming is not None:
            update["hub_active_at"] = incoming.received_at
        elif not ready and self._idle(handoff):
            # A poll found the hand-off silent past the hub's limit: it ends here.
            ready = [
                HubEvent(
                    kind="ended",
                    event_id=f"inactive:{handoff.handoff_id}",
                    conversation_id=conversation.conversation_id,
                    reason="inactive",
                )
            ]
            now = ready
        current = conversation.model_copy(
            update={"handoff": handoff.model_copy(update=update), "updated_at": utcnow()}
        )
        messages: list[Message] = []
        for event in now:
            current, more = self._transition(
                current, copilot, event, current.last_seq + len(messages)
            )
            messages += more
        if 1 + len(messages) + 1 > TRANSACTION_ITEMS:  # the conversation, messages, a claim
            raise RuntimeError(f"{len(messages)} messages exceed one transaction's items")
        return Change(current, messages, status)

    def _transition(
        self, conversation: Conversation, copilot: Copilot, event: HubEvent, seq: int
    ) -> tuple[Conversation, list[Message]]:
        """One hub event's effect on the conversation, and the messages the customer sees."""
        handoff = conversation.handoff
        assert handoff is not None
        if handoff.closed:
            return conversation, []  # e.g. a message queued behind the hub's own "ended"
        agent = event.agent or handoff.agent or Agent()
        hid = handoff.handoff_id

        def system(text: str, kind: HandoffEventName) -> Message:
            return Message(seq=seq + 1, role="system", text=text, event=kind, handoff_id=hid)

        def now_with(state: ConversationState, agent: Agent | None) -> Conversation:
            return conversation.model_copy(
                update={"handoff": handoff.model_copy(update={"agent": agent}), "state": state}
            )

        if event.kind == "agent_joined":
            joined = system(f"{agent.name} joined the conversation.", "agent_joined")
            return now_with(ConversationState.AGENT, agent), [joined]
        if event.kind == "agent_message":
            text = event.text or ""
            said = Message(seq=seq + 1, role="agent", text=text, author=agent.name, handoff_id=hid)
            return now_with(ConversationState.AGENT, agent), [said]
        if event.kind == "agent_typing":
            return conversation, [system(f"{agent.name} is typing…", "agent_typing")]
        if event.kind == "agent_left":
            left = system(f"{agent.name} left the conversation.", "agent_left")
            return now_with(ConversationState.HANDOFF_REQUESTED, None), [left]
        if event.kind == "ended":
            resume = copilot.hub is None or copilot.hub.on_agent_end == "resume"
            name = agent.name if (event.agent or handoff.agent) else "The agent"
            ended = INACTIVE if event.reason == "inactive" else f"{name} ended the chat."
            messages = [
                system(ended, "handoff_ended"),
                Message(seq=seq + 2, role="copilot", text=RESUMED if resume else CLOSED),
            ]
            closed = back_to_bot(conversation, handoff, seq + 2)
            if not resume:
                closed = closed.model_copy(update={"state": ConversationState.ENDED})
            elif copilot.analytics.csat_survey and not closed.context.surveyed:
                # How did it go? Asked once, as after thanks or goodbye (conversation/survey).
                ask = Message(
                    seq=seq + 3,
                    role="copilot",
                    text=survey.ASK,
                    topic=survey.SURVEY_TOPIC,
                    suggestions=list(survey.SCORES),
                )
                messages.append(ask)
                context = closed.context.model_copy(update={"pending": "survey", "surveyed": True})
                closed = closed.model_copy(update={"context": context})
            return closed, messages
        if event.kind == "queued" and event.text:
            if conversation.state is not ConversationState.HANDOFF_REQUESTED:
                return conversation, []  # an agent has it already: the queue is past
            return conversation, [system(event.text, "handoff_queued")]
        if event.kind == "rejected" and conversation.state is ConversationState.HANDOFF_REQUESTED:
            return failed(conversation, copilot, handoff, event.reason or "rejected", seq)
        return conversation, []  # "accepted", or a late rejection: nothing to show

    def _expired(self, handoff: Handoff, held: Sequence[HubEvent] | None = None) -> bool:
        events = _waiting(handoff) if held is None else held
        if not events:
            return False
        oldest = min(e.received_at for e in events)
        return (self._clock() - oldest).total_seconds() >= self._config.reorder_window


def _short(number: int) -> str:
    """A number for a log line or an error: a hub may send thousands of digits."""
    digits = str(number)
    return digits if len(digits) <= 20 else f"{digits[:6]}... ({len(digits)} digits)"


def _sequence(event: HubEvent) -> int:
    return event.sequence or 0


def _queued(handoff: Handoff | None) -> bool:
    """Held events whose turn has come (more than one write's worth arrived in order)."""
    return handoff is not None and any(_sequence(e) <= handoff.hub_seq for e in handoff.held)


def _queued_in(conversation: Conversation) -> bool:
    return _queued(conversation.handoff)


def _waiting(handoff: Handoff) -> list[HubEvent]:
    return [e for e in handoff.held if _sequence(e) > handoff.hub_seq]


def _size(events: Iterable[HubEvent]) -> int:
    """Bytes the events take on the stored conversation (one DynamoDB item: 400 KB at most)."""
    return sum(len(e.model_dump_json()) for e in events)


def _gaps(after: int, present: Sequence[int]) -> list[tuple[int, int]]:
    """The missing ranges (first, last) between ``after`` and the sorted ``present`` numbers."""
    gaps, previous = [], after
    for number in present:
        if number > previous + 1:
            gaps.append((previous + 1, number - 1))
        previous = max(previous, number)
    return gaps


def _ranges(gaps: Sequence[tuple[int, int]], shown: int = 10) -> str:
    """A compact log form of ``gaps`` ("4-99, 101"): its size does not grow with the gaps."""
    parts = [str(a) if a == b else f"{a}-{b}" for a, b in gaps[:shown]]
    more = f" and {len(gaps) - shown} more gaps" if len(gaps) > shown else ""
    return ", ".join(parts) + more


def _numbers(gaps: Sequence[tuple[int, int]], last: int) -> list[int]:
    """The ``last`` highest missing numbers, without listing the others."""
    numbers: list[int] = []
    for a, b in reversed(gaps):
        numbers[:0] = range(max(a, b - (last - len(numbers)) + 1), b + 1)
        if len(numbers) >= last:
            break
    return numbers
