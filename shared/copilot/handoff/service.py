"""Live-agent hand-off: start it, relay the conversation both ways, end it.

Every change to a conversation is a conditional append (ConversationStore.append with the
version read), retried on conflict with fresh state, so concurrent agent events, customer
messages and outbox deliveries neither lose nor duplicate anything.

Inbound (hub -> customer): a verified webhook event is applied exactly once (its hub id is
claimed in the same write) and in the hub's order: an event that arrives ahead of a gap in the
hub's sequence numbers is held on the conversation until the gap fills, or, if it never does,
for ``reorder_window`` seconds (then the gap is skipped on the next event or customer poll, and
a skipped event that comes after all is applied late rather than dropped).

Outbound (customer -> hub): the conversation's messages are the outbox. An SQS FIFO message
(group = conversation) only says "deliver what is new"; the consumer sends the hand-off's start,
the customer's messages and its end in sequence order from a cursor stored on the conversation,
and moves the cursor after each success. A hub outage delays delivery, never drops it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from copilot.admin.models import Copilot
from copilot.conflicts import retry_on_conflict
from copilot.conversation import topics as t
from copilot.conversation.dialog import HandoffRequest
from copilot.conversation.models import Conversation, ConversationState, Message, TurnResponse
from copilot.errors import (
    ConflictError,
    DuplicateError,
    HubRejectedError,
    HubUnavailableError,
    NotFoundError,
    UnavailableError,
)
from copilot.handoff.context import MAX_TRANSCRIPT, build_context, transcript
from copilot.handoff.hours import is_open
from copilot.handoff.models import (
    Agent,
    Handoff,
    HandoffEventName,
    HubCommand,
    HubCommandKind,
    HubEvent,
    HubOutboxCursor,
    HubSettings,
    WebhookAck,
    WebhookResult,
)
from copilot.ports import (
    ConversationStore,
    CopilotRegistry,
    HubAdapter,
    HubOutbox,
    InboundRequest,
    SecretStore,
)
from copilot.schema import new_id, utcnow

log = logging.getLogger(__name__)

ACTIVE = frozenset({ConversationState.HANDOFF_REQUESTED, ConversationState.AGENT})
MAX_SKIPPED = 200  # sequence numbers remembered as skipped (so they apply if they come late)

CONNECTING = "I'm connecting you with a person. Please wait; type 'cancel' to stop waiting."
WAIT_CANCELLED = "OK, I've cancelled the request for a person. What else can I help you with?"
AGENT_CHAT_CLOSED = "OK, I've ended the chat with the agent. What else can I help you with?"
RESUMED = "I'm back. Is there anything else I can help you with?"
CLOSED = "This conversation has ended. Thanks for chatting with us!"
FAILED = {
    "no_agents": "Sorry, no agent is available right now.",
    "closed": "Sorry, our agents are not available right now.",
}
FAILED_DEFAULT = "Sorry, I couldn't reach an agent right now."


@dataclass(frozen=True)
class HandoffConfig:
    reorder_window: float = 10.0  # seconds an event ahead of a gap waits for the gap to fill
    max_held: int = 100  # events held at most; beyond, the gap is skipped at once
    max_attempts: int = 5  # deliveries of a start before the customer is told it failed
    reply_to: str | None = None  # public base URL of the hand-off function (webhooks)


def backoff_seconds(attempts: int, base: int, cap: int) -> int:
    """Seconds to wait after the ``attempts``-th failed delivery (exponential, capped)."""
    return int(min(cap, base * 2 ** max(0, attempts - 1)))


Verdict = Literal["applied", "held", "duplicate", "ignored"]


@dataclass
class _Change:
    conversation: Conversation
    messages: list[Message] = field(default_factory=list)
    status: Verdict = "applied"


class HandoffService:
    def __init__(
        self,
        copilots: CopilotRegistry,
        conversations: ConversationStore,
        *,
        outbox: Callable[[], HubOutbox],
        secrets: Callable[[], SecretStore],
        hubs: Callable[[str], HubAdapter],
        config: HandoffConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._copilots = copilots
        self._conversations = conversations
        self._outbox = outbox
        self._secrets = secrets
        self._hubs = hubs
        self.config = config or HandoffConfig()
        self._clock = clock

    # --- the customer's side (called from the chat turn) ----------------------------------

    def available(self, copilot: Copilot) -> bool:
        """A hub is configured and inside its business hours."""
        return copilot.hub is not None and is_open(copilot.hub, self._clock())

    def open(
        self,
        copilot: Copilot,
        conversation: Conversation,
        request: HandoffRequest,
        turn: Sequence[Message],
    ) -> tuple[list[Message], Conversation]:
        """The hand-off notice to append after ``turn``, and the conversation waiting for an
        agent (``conversation`` already carries the turn's dialog context)."""
        hub = copilot.hub
        assert hub is not None, "only offered when a hub is configured"
        handoff_id = new_id()
        seq = turn[-1].seq + 1
        notice = Message(
            seq=seq,
            role="system",
            text=CONNECTING,
            topic=request.topic,
            event="handoff_requested",
            handoff_id=handoff_id,
        )
        after = conversation.context.history_start_seq
        earlier = self._conversations.recent_messages(conversation.conversation_id, MAX_TRANSCRIPT)
        history = [m for m in earlier if m.seq > after] + list(turn)
        handoff = Handoff(
            handoff_id=handoff_id,
            requested_seq=seq,
            requested_at=self._clock(),
            context=build_context(
                copilot, conversation, history, hub, request.topic, request.agent_note
            ),
            transcript_after=max(after, seq - 1 - MAX_TRANSCRIPT),
        )
        cursor = conversation.hub_outbox
        if cursor.started is None:
            # Nothing is open at the hub: the outbox need not look at anything before this.
            cursor = cursor.model_copy(update={"delivered_seq": max(cursor.delivered_seq, seq - 1)})
        updated = conversation.model_copy(
            update={
                "state": ConversationState.HANDOFF_REQUESTED,
                "handoff": handoff,
                "hub_outbox": cursor,
            }
        )
        return [notice], updated

    def forward(
        self, conversation: Conversation, customer: Message
    ) -> tuple[list[Message], Conversation]:
        """A customer message while a hand-off is active: for the agent, never the copilot."""
        handoff = conversation.handoff
        assert handoff is not None
        waiting = conversation.state is ConversationState.HANDOFF_REQUESTED
        if waiting and t.is_cancel(customer.text):
            return self._close_by_customer(conversation, [customer])
        forwarded = customer.model_copy(update={"handoff_id": handoff.handoff_id})
        return [forwarded], conversation.model_copy(update={"updated_at": utcnow()})

    def cancel(self, conversation_id: str) -> TurnResponse:
        """The customer stops waiting for an agent (or leaves the agent's chat)."""

        def change(conversation: Conversation) -> _Change:
            if conversation.state not in ACTIVE or conversation.handoff is None:
                raise ConflictError("there is no hand-off to cancel")
            messages, updated = self._close_by_customer(conversation, [])
            return _Change(updated, messages)

        stored, done = self._update(conversation_id, change)
        assert done is not None
        self.nudge(stored)
        return TurnResponse(
            conversation_id=conversation_id, state=stored.state, messages=done.messages
        )

    def _close_by_customer(
        self, conversation: Conversation, first: list[Message]
    ) -> tuple[list[Message], Conversation]:
        handoff = conversation.handoff
        assert handoff is not None
        waiting = conversation.state is ConversationState.HANDOFF_REQUESTED
        seq = conversation.last_seq + len(first)
        messages = [
            *first,
            Message(
                seq=seq + 1,
                role="system",
                text="Request for a person cancelled." if waiting else "Chat with the agent ended.",
                event="handoff_cancelled",
                handoff_id=handoff.handoff_id,
            ),
            Message(
                seq=seq + 2, role="copilot", text=WAIT_CANCELLED if waiting else AGENT_CHAT_CLOSED
            ),
        ]
        return messages, self._back_to_bot(conversation, handoff, messages[-1].seq)

    def nudge(self, conversation: Conversation) -> None:
        """Tell the outbox this conversation has something new for its hub."""
        dedup = f"{conversation.conversation_id}:{conversation.version}"
        self._outbox().nudge(conversation.conversation_id, dedup)

    def due(self, conversation: Conversation) -> bool:
        """Held events waited out their window: a customer poll applies them."""
        handoff = conversation.handoff
        return handoff is not None and self._expired(handoff)

    def flush(self, conversation_id: str) -> None:
        def change(conversation: Conversation) -> _Change | None:
            copilot = self._copilots.get(conversation.copilot_id)
            if copilot is None or not self.due(conversation):
                return None  # gone, or another poll or event got there first
            return self._advance(conversation, copilot, None)

        self._update(conversation_id, change)

    # --- the hub's side: webhooks --------------------------------------------------------

    def receive(self, hub_type: str, copilot_id: str, request: InboundRequest) -> WebhookAck:
        copilot = self._copilots.get(copilot_id)
        hub = copilot.hub if copilot else None
        if copilot is None or hub is None or hub.type != hub_type:
            raise NotFoundError("no such webhook")
        adapter = self._hubs(hub_type)
        adapter.verify(request, self._secret(hub), self._clock())
        events = adapter.parse(request)
        return WebhookAck(results=[self._apply(copilot, event) for event in events])

    def _apply(self, copilot: Copilot, event: HubEvent) -> WebhookResult:
        assert copilot.hub is not None
        claim = f"hub#{copilot.copilot_id}#{copilot.hub.type}#{event.event_id}"
        event = event.model_copy(update={"received_at": self._clock()})
        verdict: Verdict = "applied"

        def change(conversation: Conversation) -> _Change | None:
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
            self._update(event.conversation_id, change, claims=[claim])
        except DuplicateError:
            verdict = "duplicate"
        return WebhookResult(event_id=event.event_id, status=verdict)

    def _advance(
        self, conversation: Conversation, copilot: Copilot, incoming: HubEvent | None
    ) -> _Change:
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
        if held and (len(held) > self.config.max_held or self._expired(handoff, held)):
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
        return _Change(current, messages, status)

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
            closed = self._back_to_bot(conversation, handoff, seq + 2)
            if not resume:
                closed = closed.model_copy(update={"state": ConversationState.ENDED})
            return closed, messages
        if event.kind == "rejected" and conversation.state is ConversationState.HANDOFF_REQUESTED:
            return self._failed(conversation, copilot, handoff, event.reason or "rejected", seq)
        return conversation, []  # "accepted", or a late rejection: nothing to show

    def _failed(
        self,
        conversation: Conversation,
        copilot: Copilot,
        handoff: Handoff,
        reason: str,
        seq: int,
    ) -> tuple[Conversation, list[Message]]:
        """No agent: say so, and give the escalate link (never a dead end)."""
        messages = [
            Message(
                seq=seq + 1,
                role="system",
                text=FAILED.get(reason, FAILED_DEFAULT),
                event="handoff_failed",
                handoff_id=handoff.handoff_id,
            ),
            Message(
                seq=seq + 2, role="copilot", text=copilot.messages.escalate_link, topic=t.ESCALATE
            ),
        ]
        return self._back_to_bot(conversation, handoff, seq + 2), messages

    @staticmethod
    def _back_to_bot(conversation: Conversation, handoff: Handoff, last_seq: int) -> Conversation:
        # Follow-up questions to the copilot start afresh after the agent's part of the chat.
        context = conversation.context.model_copy(
            update={"pending": None, "no_match_count": 0, "history_start_seq": last_seq}
        )
        return conversation.model_copy(
            update={
                "state": ConversationState.BOT,
                "handoff": handoff.model_copy(update={"closed": True, "held": [], "agent": None}),
                "context": context,
                "updated_at": utcnow(),
            }
        )

    def _expired(self, handoff: Handoff, held: Sequence[HubEvent] | None = None) -> bool:
        events = handoff.held if held is None else held
        if not events:
            return False
        oldest = min(e.received_at for e in events)
        return (self._clock() - oldest).total_seconds() >= self.config.reorder_window

    # --- the outbox: deliver to the hub in order ----------------------------------------

    def process_outbox(self, conversation_id: str, attempts: int, last_delivery: bool) -> None:
        """One outbox message. ``last_delivery``: the queue dead-letters it if this fails."""
        try:
            self.deliver(conversation_id, attempts)
        except HubUnavailableError:
            if not last_delivery:
                raise
            # The hub is still down: hand the work to a fresh message instead of the
            # dead-letter queue, so messages wait for the hub however long it is away.
            self._outbox().nudge(conversation_id, redelivery_id(conversation_id), attempts)

    def deliver(self, conversation_id: str, attempts: int) -> None:
        """Send what the hub has not had yet, in order. ``attempts``: deliveries of this work
        so far, this one included. Raises HubUnavailableError to be retried later."""
        conversation = self._conversations.get(conversation_id)
        copilot = self._copilots.get(conversation.copilot_id) if conversation else None
        if conversation is None or copilot is None:
            return  # gone (TTL, deleted copilot): nothing left to deliver
        while True:
            cursor = conversation.hub_outbox
            pending = self._conversations.messages_after(conversation_id, cursor.delivered_seq, 100)
            if not pending:
                return
            failed_start: tuple[Message, str] | None = None
            try:
                for message in pending:
                    try:
                        cursor = self._deliver_one(copilot, conversation, cursor, message)
                    except HubRejectedError as e:
                        if message.event != "handoff_requested":
                            log.error("hub refused %s #%s: %s", conversation_id, message.seq, e)
                            cursor = cursor.model_copy(update={"delivered_seq": message.seq})
                            continue
                        failed_start = (message, e.reason)
                        break
                    except HubUnavailableError:
                        if (
                            message.event != "handoff_requested"
                            or attempts < self.config.max_attempts
                        ):
                            raise
                        failed_start = (message, "unreachable")
                        break
            finally:
                if cursor != conversation.hub_outbox:
                    conversation = self._save_cursor(conversation_id, cursor)
            if failed_start is not None:
                conversation = self._fail_start(copilot, conversation_id, *failed_start)

    def _deliver_one(
        self,
        copilot: Copilot,
        conversation: Conversation,
        cursor: HubOutboxCursor,
        message: Message,
    ) -> HubOutboxCursor:
        hub, hid = copilot.hub, message.handoff_id
        started = cursor.started
        if hid is not None and hub is not None:
            if message.event == "handoff_requested":
                current = conversation.handoff
                if current is None or current.handoff_id != hid:
                    # Requested after our read of the conversation: read it again (the request
                    # and its hand-off were written together, so this read has it).
                    fresh = self._conversations.get(conversation.conversation_id)
                    current = fresh.handoff if fresh else None
                if current is not None and current.handoff_id == hid and not current.closed:
                    self._send(hub, self._start_command(copilot, current, message))
                    started = hid
                # else: cancelled (or failed) before it reached the hub: never start it.
            elif message.role == "customer" and started == hid:
                self._send(
                    hub, self._command("message", copilot, conversation, message, text=message.text)
                )
            elif message.event == "handoff_cancelled" and started == hid:
                self._send(
                    hub,
                    self._command("end", copilot, conversation, message, reason="customer_ended"),
                )
                started = None
            elif message.event in ("handoff_ended", "handoff_failed") and started == hid:
                started = None  # the hub closed it: nothing to send
        return HubOutboxCursor(delivered_seq=message.seq, started=started)

    def _start_command(self, copilot: Copilot, handoff: Handoff, notice: Message) -> HubCommand:
        cid = handoff.context.conversation_id
        count = notice.seq - handoff.transcript_after
        earlier = self._conversations.messages_after(cid, handoff.transcript_after, count)
        return HubCommand(
            kind="start",
            event_id=f"{cid}:{notice.seq}",
            sequence=notice.seq,
            conversation_id=cid,
            copilot_id=copilot.copilot_id,
            handoff_id=handoff.handoff_id,
            context=handoff.context,
            transcript=transcript([m for m in earlier if m.seq < notice.seq]),
            reply_to=self._reply_to(copilot),
        )

    def _command(
        self,
        kind: HubCommandKind,
        copilot: Copilot,
        conversation: Conversation,
        message: Message,
        **fields: str,
    ) -> HubCommand:
        return HubCommand(
            kind=kind,
            event_id=f"{conversation.conversation_id}:{message.seq}",
            sequence=message.seq,
            conversation_id=conversation.conversation_id,
            copilot_id=copilot.copilot_id,
            handoff_id=message.handoff_id or "",
            reply_to=self._reply_to(copilot),
            **fields,
        )

    def _reply_to(self, copilot: Copilot) -> str | None:
        base = self.config.reply_to
        if not base or copilot.hub is None:
            return None
        return f"{base.rstrip('/')}/hooks/{copilot.hub.type}/{copilot.copilot_id}"

    def _send(self, hub: HubSettings, command: HubCommand) -> None:
        self._hubs(hub.type).send(hub, self._secret(hub, HubUnavailableError), command)

    def _secret(self, hub: HubSettings, error: type[Exception] = UnavailableError) -> str:
        secret = self._secrets().get(hub.secret_ref)
        if not secret:
            log.error("no secret for hub secret_ref %s (COPILOT_HUB_SECRET_<REF>)", hub.secret_ref)
            raise error("the hub's secret is not configured")
        return secret

    def _save_cursor(self, conversation_id: str, cursor: HubOutboxCursor) -> Conversation:
        def change(conversation: Conversation) -> _Change | None:
            if conversation.hub_outbox.delivered_seq >= cursor.delivered_seq:
                return None  # another delivery got further: keep its cursor
            return _Change(conversation.model_copy(update={"hub_outbox": cursor}))

        stored, _ = self._update(conversation_id, change)
        return stored

    def _fail_start(
        self, copilot: Copilot, conversation_id: str, notice: Message, reason: str
    ) -> Conversation:
        log.warning(
            "hand-off %s of %s failed to start: %s", notice.handoff_id, conversation_id, reason
        )

        def change(conversation: Conversation) -> _Change:
            cursor = conversation.hub_outbox.model_copy(
                update={"delivered_seq": max(conversation.hub_outbox.delivered_seq, notice.seq)}
            )
            current = conversation.model_copy(update={"hub_outbox": cursor})
            handoff = current.handoff
            if (
                handoff is None
                or handoff.handoff_id != notice.handoff_id
                or handoff.closed
                or current.state is not ConversationState.HANDOFF_REQUESTED
            ):
                return _Change(current)
            failed, messages = self._failed(current, copilot, handoff, reason, current.last_seq)
            return _Change(failed, messages)

        stored, _ = self._update(conversation_id, change)
        return stored

    # --- conditional writes with retries --------------------------------------------------

    def _update(
        self,
        conversation_id: str,
        change: Callable[[Conversation], _Change | None],
        claims: Sequence[str] = (),
    ) -> tuple[Conversation, _Change | None]:
        """Read, change, append conditionally; on a lost race, again with the fresh state."""

        def attempt() -> tuple[Conversation, _Change | None]:
            conversation = self._conversations.get(conversation_id)
            if conversation is None:
                raise NotFoundError("no such conversation")
            done = change(conversation)
            if done is None:
                return conversation, None
            stored = self._conversations.append(done.conversation, done.messages, claims=claims)
            return stored, done

        # Giving up is a 503: a hub redelivers a webhook on 5xx, and the outbox retries anyway.
        return retry_on_conflict(attempt, what="the conversation", give_up=UnavailableError)


def redelivery_id(conversation_id: str) -> str:
    return f"{conversation_id}:retry:{uuid.uuid4().hex}"
