"""The hub's side of a hand-off: verified webhook events, applied once each and in order.

A verified event is applied exactly once (its hub id is claimed in the same write as its
effect) and in the hub's order: an event that arrives ahead of a gap in the hub's sequence
numbers is held on the conversation until the gap fills, or, if it never does, for
``reorder_window`` seconds (then the gap is skipped on the next event or customer poll, and a
skipped event that comes after all is applied late rather than dropped).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from copilot.admin.models import Copilot
from copilot.conversation.models import Conversation, ConversationState, Message
from copilot.errors import DuplicateError, NotFoundError
from copilot.handoff.changes import Change, Verdict, back_to_bot, failed, update
from copilot.handoff.config import HandoffConfig, hub_secret
from copilot.handoff.models import (
    Agent,
    Handoff,
    HandoffEventName,
    HubEvent,
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

RESUMED = "I'm back. Is there anything else I can help you with?"
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

    def receive(self, hub_type: str, copilot_id: str, request: InboundRequest) -> WebhookAck:
        copilot = self._copilots.get(copilot_id)
        hub = copilot.hub if copilot else None
        if copilot is None or hub is None or hub.type != hub_type:
            raise NotFoundError("no such webhook")  # the same for every reason: leaks nothing
        adapter = self._hubs(hub_type)
        adapter.verify(request, hub_secret(self._secrets(), hub), self._clock())
        events = adapter.parse(request)
        # Verified and parsed: the webhook's log lines can name the conversation (a batch of
        # one conversation's events is the norm; the first one names the scope).
        if events:
            bind(conversation_id=events[0].conversation_id)
        return WebhookAck(results=[self._apply(copilot, event) for event in events])

    def due(self, conversation: Conversation) -> bool:
        """Held events waited out their window: a customer poll applies them."""
        handoff = conversation.handoff
        return handoff is not None and self._expired(handoff)

    def flush(self, conversation_id: str) -> None:
        def change(conversation: Conversation) -> Change | None:
            copilot = self._copilots.get(conversation.copilot_id)
            if copilot is None or not self.due(conversation):
                return None  # gone, or another poll or event got there first
            return self._advance(conversation, copilot, None)

        update(self._conversations, conversation_id, change)

    def _apply(self, copilot: Copilot, event: HubEvent) -> WebhookResult:
        assert copilot.hub is not None
        claim = f"hub#{copilot.copilot_id}#{copilot.hub.type}#{event.event_id}"
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
            done = self._advance(conversation, copilot, event)
            verdict = done.status
            return done

        try:
            update(self._conversations, event.conversation_id, change, claims=[claim])
        except DuplicateError:
            verdict = "duplicate"
        return WebhookResult(event_id=event.event_id, status=verdict)

    def _advance(
        self, conversation: Conversation, copilot: Copilot, incoming: HubEvent | None
    ) -> Change:
        """Take ``incoming`` in, then apply every event whose turn has come, in hub order."""
        handoff = conversation.handoff
        assert handoff is not None
        held, skipped = list(handoff.held), list(handoff.skipped)
        ready: list[HubEvent] = []
        if incoming is not None and incoming.sequence is None:
            ready.append(incoming)  # a hub without sequence numbers: arrival order
        elif incoming is not None and incoming.sequence in skipped:
            ready.append(incoming)  # it came after all: late, but never lost
            skipped.remove(incoming.sequence)
        elif incoming is not None:
            held.append(incoming)
        held.sort(key=lambda e: e.sequence or 0)
        hub_seq = handoff.hub_seq
        while held and held[0].sequence == hub_seq + 1:
            ready.append(held.pop(0))
            hub_seq += 1
        if held and (len(held) > self._config.max_held or self._expired(handoff, held)):
            present = {e.sequence for e in held}
            missing = [n for n in range(hub_seq + 1, held[-1].sequence or 0) if n not in present]
            log.warning(
                "conversation %s: hub events %s did not arrive in time; applying later ones",
                conversation.conversation_id,
                missing,
            )
            skipped = (skipped + missing)[-MAX_SKIPPED:]
            ready.extend(held)
            hub_seq = held[-1].sequence or hub_seq
            held = []
        status: Verdict = "applied" if incoming is None or incoming in ready else "held"
        update = {"held": held, "hub_seq": hub_seq, "skipped": skipped}
        current = conversation.model_copy(
            update={"handoff": handoff.model_copy(update=update), "updated_at": utcnow()}
        )
        messages: list[Message] = []
        for event in ready:
            current, more = self._transition(
                current, copilot, event, current.last_seq + len(messages)
            )
            messages += more
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
            messages = [
                system(f"{name} ended the chat.", "handoff_ended"),
                Message(seq=seq + 2, role="copilot", text=RESUMED if resume else CLOSED),
            ]
            closed = back_to_bot(conversation, handoff, seq + 2)
            if not resume:
                closed = closed.model_copy(update={"state": ConversationState.ENDED})
            return closed, messages
        if event.kind == "rejected" and conversation.state is ConversationState.HANDOFF_REQUESTED:
            return failed(conversation, copilot, handoff, event.reason or "rejected", seq)
        return conversation, []  # "accepted", or a late rejection: nothing to show

    def _expired(self, handoff: Handoff, held: Sequence[HubEvent] | None = None) -> bool:
        events = handoff.held if held is None else held
        if not events:
            return False
        oldest = min(e.received_at for e in events)
        return (self._clock() - oldest).total_seconds() >= self._config.reorder_window
