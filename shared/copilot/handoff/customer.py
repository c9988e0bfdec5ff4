"""The customer's side of a hand-off, called from the chat turn: ask for a person, talk to the
agent through the hub, stop waiting or leave the agent's chat."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from datetime import datetime

from copilot.admin.models import Copilot
from copilot.conversation import topics as t
from copilot.conversation.dialog import HandoffRequest
from copilot.conversation.models import Conversation, ConversationState, Message, TurnResponse
from copilot.errors import ConflictError, UnavailableError
from copilot.handoff.changes import ACTIVE, Change, back_to_bot, update
from copilot.handoff.context import MAX_TRANSCRIPT, build_context
from copilot.handoff.hours import is_open
from copilot.handoff.models import Handoff
from copilot.ports import ConversationStore, HubOutbox
from copilot.schema import new_id, utcnow

log = logging.getLogger(__name__)

CONNECTING = "I'm connecting you with a person. Please wait; type 'cancel' to stop waiting."
WAIT_CANCELLED = "OK, I've cancelled the request for a person. What else can I help you with?"
AGENT_CHAT_CLOSED = "OK, I've ended the chat with the agent. What else can I help you with?"
JUST_REQUESTED = (
    "I asked for a person for you a moment ago, so I won't ask again just yet: please try "
    "again in {wait} seconds. What else can I help you with?"
)


class CustomerSide:
    def __init__(
        self,
        conversations: ConversationStore,
        *,
        outbox: Callable[[], HubOutbox],
        clock: Callable[[], datetime],
        request_interval: bool = True,
    ) -> None:
        self._conversations = conversations
        self._outbox = outbox
        self._clock = clock
        self._request_interval = request_interval  # off with the rate limits (Settings)

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
        agent (``conversation`` already carries the turn's dialog context). Within the copilot's
        hand-off interval of the last request, a reply says so instead, and the conversation
        stays with the copilot: a loop of requests reaches the hub once per interval."""
        hub = copilot.hub
        assert hub is not None, "only offered when a hub is configured"
        seq = turn[-1].seq + 1
        if wait := self.seconds_until_next_request(copilot, conversation):
            text = JUST_REQUESTED.format(wait=wait)
            return [Message(seq=seq, role="copilot", text=text, topic=request.topic)], conversation
        handoff_id = new_id()
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
            inactivity_minutes=getattr(hub, "inactivity_minutes", None),
            hub_type=hub.type,
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

    def seconds_until_next_request(self, copilot: Copilot, conversation: Conversation) -> int:
        """0 when a hand-off may be requested now; else the whole seconds left of the interval
        since the conversation's last request (Copilot.limits.handoff_interval_seconds)."""
        interval = copilot.limits.handoff_interval_seconds
        last = conversation.handoff
        if not self._request_interval or last is None or interval <= 0:
            return 0
        elapsed = (self._clock() - last.requested_at).total_seconds()
        return max(0, math.ceil(interval - elapsed))

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

        def change(conversation: Conversation) -> Change:
            if conversation.state not in ACTIVE or conversation.handoff is None:
                raise ConflictError("there is no hand-off to cancel")
            messages, updated = self._close_by_customer(conversation, [])
            # The hub must hear of the end: if the nudge below is lost, a customer poll tells
            # the outbox again (ConversationService.messages).
            updated = updated.model_copy(
                update={
                    "outbox_due_seq": messages[-1].seq,
                    "outbox_nudged_at": utcnow(),
                    "outbox_renudges": 0,
                }
            )
            return Change(updated, messages)

        stored, done = update(self._conversations, conversation_id, change)
        assert done is not None
        try:
            self.nudge(stored)
        except UnavailableError:
            # Saved all the same: a 503 here would only make the client try again for nothing.
            log.warning(
                "hub outbox unavailable for %s; a poll will nudge it again", conversation_id
            )
        return TurnResponse(
            conversation_id=conversation_id, state=stored.state, messages=done.messages
        )

    def nudge(self, conversation: Conversation) -> None:
        """Tell the outbox this conversation has something new for its hub."""
        dedup = f"{conversation.conversation_id}:{conversation.version}"
        self._outbox().nudge(conversation.conversation_id, dedup)

    @staticmethod
    def _close_by_customer(
        conversation: Conversation, first: list[Message]
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
        return messages, back_to_bot(conversation, handoff, messages[-1].seq)
