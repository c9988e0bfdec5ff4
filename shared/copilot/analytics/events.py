"""Analytics events: what happened in a conversation, recorded as it happens.

An event is written in the same transaction as the conversation change it reports (a turn, a
hand-off event, a rating), so it is recorded exactly when the change is, and never without
it. The events table's stream carries them to the event archive (dated, compressed JSON
lines: copilot.analytics.export); reports read the archive (copilot.analytics.report).

One flat record per event, so the archive is one table to SQL (DuckDB locally, Athena on AWS).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from copilot.schema import new_id, utcnow

if TYPE_CHECKING:
    from copilot.conversation.models import Conversation, Message

# Bumped when a field changes meaning; readers skip nothing (new fields are nullable).
SCHEMA_VERSION = 1


class EventType(StrEnum):
    CONVERSATION_STARTED = "conversation_started"
    TURN = "turn"  # a customer message and the copilot's replies to it
    ESCALATED = "escalated"  # a hand-off to a person started
    AGENT_JOINED = "agent_joined"
    HANDOFF_ENDED = "handoff_ended"
    HANDOFF_FAILED = "handoff_failed"
    HANDOFF_CANCELLED = "handoff_cancelled"
    RESOLVED = "resolved"  # the customer said the copilot helped (thanks, a good rating)
    FEEDBACK = "feedback"  # thumbs up or down on one answer
    CSAT = "csat"  # the end-of-conversation survey: 1-5 and a comment
    ENDED = "ended"  # the conversation is over (the customer said goodbye, or a hub closed it)


class TurnOutcome(StrEnum):
    """What the copilot made of a customer message (a turn event's ``outcome``)."""

    KNOWLEDGE = "knowledge"  # a cited answer from the copilot's knowledge
    TOPIC = "topic"  # a custom topic's response
    NO_MATCH = "no_match"  # "I don't know"
    CHOICES = "choices"  # several topics or subjects fit: the customer is asked which
    ESCALATION_OFFER = "escalation_offer"  # after no-matches: "Would you like a person?"
    ESCALATION = "escalation"  # the customer asked for a person
    SYSTEM = "system"  # greeting, thanks, goodbye, start over, a survey answer
    AGENT = "agent"  # forwarded to the agent of an open hand-off


class AnalyticsEvent(BaseModel):
    event_id: str = Field(default_factory=new_id)
    v: int = SCHEMA_VERSION
    type: EventType
    copilot_id: str
    conversation_id: str
    at: datetime = Field(default_factory=utcnow)
    seq: int | None = Field(None, description="The message the event is about, if one.")
    outcome: TurnOutcome | None = None
    topic: str | None = None
    confidence: float | None = Field(None, description="The answer gate's confidence (0-1).")
    citations: list[str] = Field(default_factory=list, description="Cited document keys.")
    latency_ms: float | None = None
    question: str | None = Field(None, description="The customer's message, PII redacted.")
    rating: int | None = Field(None, description="Feedback: 1 (thumbs up) or -1 (down).")
    score: int | None = Field(None, description="CSAT: 1 to 5.")
    comment: str | None = Field(None, description="The customer's comment, PII redacted.")
    reason: str | None = None
    handoff_id: str | None = None
    hub: str | None = None


# A hand-off's system messages and the event each one is.
_HANDOFF_EVENTS = {
    "handoff_requested": EventType.ESCALATED,
    "agent_joined": EventType.AGENT_JOINED,
    "handoff_ended": EventType.HANDOFF_ENDED,
    "handoff_failed": EventType.HANDOFF_FAILED,
    "handoff_cancelled": EventType.HANDOFF_CANCELLED,
}


def from_messages(
    before: Conversation | None, after: Conversation, messages: Sequence[Message]
) -> list[AnalyticsEvent]:
    """The events a conversation change's messages and state report: its hand-off's
    milestones, and the conversation's end. (Turns are recorded by the service that knows
    what the copilot made of the message: copilot.conversation.service.)"""
    events = []
    hub = after.handoff.hub_type if after.handoff is not None else None
    for m in messages:
        kind = _HANDOFF_EVENTS.get(m.event or "")
        if kind is None or m.role != "system":
            continue
        events.append(
            AnalyticsEvent(
                type=kind,
                copilot_id=after.copilot_id,
                conversation_id=after.conversation_id,
                at=m.created_at,
                seq=m.seq,
                handoff_id=m.handoff_id,
                hub=hub,
            )
        )
    ended_now = after.state == "ended" and (before is None or before.state != "ended")
    if ended_now:
        events.append(
            AnalyticsEvent(
                type=EventType.ENDED,
                copilot_id=after.copilot_id,
                conversation_id=after.conversation_id,
                at=messages[-1].created_at if messages else utcnow(),
                reason="hub",
            )
        )
    return events
