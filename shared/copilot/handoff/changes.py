"""How a hand-off changes a conversation, and the one way those changes are written.

Every change is a conditional append (ConversationStore.append with the version read), retried
on a lost race with fresh state, so concurrent agent events, customer messages and outbox
deliveries neither lose nor duplicate anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from copilot.admin.models import Copilot
from copilot.analytics.events import from_messages
from copilot.conflicts import retry_on_conflict
from copilot.conversation import topics as t
from copilot.conversation.models import Conversation, ConversationState, Message
from copilot.errors import NotFoundError, UnavailableError
from copilot.handoff.models import Handoff, HubLink
from copilot.ports import ConversationStore
from copilot.schema import utcnow

ACTIVE = frozenset({ConversationState.HANDOFF_REQUESTED, ConversationState.AGENT})

FAILED = {
    "no_agents": "Sorry, no agent is available right now.",
    "closed": "Sorry, our agents are not available right now.",
}
FAILED_DEFAULT = "Sorry, I couldn't reach an agent right now."

Verdict = Literal["applied", "held", "duplicate", "ignored"]


@dataclass
class Change:
    conversation: Conversation
    messages: list[Message] = field(default_factory=list)
    status: Verdict = "applied"
    links: list[HubLink] = field(default_factory=list)  # written with it (ConversationStore)


def update(
    conversations: ConversationStore,
    conversation_id: str,
    change: Callable[[Conversation], Change | None],
    claims: Sequence[str] = (),
) -> tuple[Conversation, Change | None]:
    """Read, change, append conditionally; on a lost race, again with the fresh state.
    ``change`` returns None when there is nothing to write."""

    def attempt() -> tuple[Conversation, Change | None]:
        conversation = conversations.get(conversation_id)
        if conversation is None:
            raise NotFoundError("no such conversation")
        done = change(conversation)
        if done is None:
            return conversation, None
        # The hand-off's milestones (requested, agent joined, ended...) are recorded for
        # analytics in the same write as the messages that tell the customer.
        events = from_messages(conversation, done.conversation, done.messages)
        stored = conversations.append(
            done.conversation, done.messages, claims=claims, links=done.links, events=events
        )
        return stored, done

    # Giving up is a 503: a hub redelivers a webhook on 5xx, and the outbox retries anyway.
    return retry_on_conflict(
        attempt, what="the conversation", give_up=UnavailableError, key=conversation_id
    )


def back_to_bot(conversation: Conversation, handoff: Handoff, last_seq: int) -> Conversation:
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


def failed(
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
        Message(seq=seq + 2, role="copilot", text=copilot.messages.escalate_link, topic=t.ESCALATE),
    ]
    return back_to_bot(conversation, handoff, seq + 2), messages
