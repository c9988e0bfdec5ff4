"""The analytics events of a conversation's turns (copilot.analytics.events): what the copilot
made of each customer message, and what the customer said of the copilot."""

from __future__ import annotations

from collections.abc import Sequence

from copilot.admin.models import Copilot
from copilot.analytics.events import AnalyticsEvent, EventType, TurnOutcome
from copilot.analytics.redaction import Redactor, redactor_for
from copilot.conversation import topics as t
from copilot.conversation.dialog import KNOWLEDGE, MULTIPLE_TOPICS, NO_MATCH, OFFER_HANDOFF
from copilot.conversation.models import Conversation, Message
from copilot.conversation.survey import SURVEY_TOPIC, SurveyAnswer

GOOD_SCORE = 4  # a CSAT score that counts as satisfied (Copilot Studio: 4 and 5)
SYSTEM_TOPICS = frozenset({t.GREETING, t.THANK_YOU, t.GOODBYE, t.START_OVER})
# What the customer may have been helped by: thanks after one of these resolves the conversation.
ANSWERS = frozenset({KNOWLEDGE})


def redactor(copilot: Copilot) -> Redactor:
    return redactor_for(copilot.analytics.redact_patterns)


def outcome_of(replies: Sequence[Message]) -> tuple[TurnOutcome, str | None]:
    """The turn's outcome and the topic that decided it, from the copilot's replies."""
    topics = [m.topic for m in replies if m.role == "copilot" and m.topic]
    if any(m.role == "copilot" and m.text == OFFER_HANDOFF for m in replies):
        return TurnOutcome.ESCALATION_OFFER, NO_MATCH
    for topic in topics:
        if topic == KNOWLEDGE:
            return TurnOutcome.KNOWLEDGE, topic
        if topic == NO_MATCH:
            return TurnOutcome.NO_MATCH, topic
        if topic == MULTIPLE_TOPICS:
            return TurnOutcome.CHOICES, topic
        if topic == t.ESCALATE:
            return TurnOutcome.ESCALATION, topic
        if topic in SYSTEM_TOPICS or topic == SURVEY_TOPIC:
            return TurnOutcome.SYSTEM, topic
        return TurnOutcome.TOPIC, topic
    if any(m.role == "system" and m.event == "handoff_requested" for m in replies):
        return TurnOutcome.ESCALATION, t.ESCALATE
    return TurnOutcome.SYSTEM, None


def turn_events(
    copilot: Copilot,
    before: Conversation,
    customer: Message,
    replies: Sequence[Message],
    *,
    confidence: float | None,
    latency_ms: float,
    forwarded: bool = False,
) -> list[AnalyticsEvent]:
    """A turn's event, and what it says of the conversation: resolved (thanks after an
    answer), ended (goodbye)."""
    base = {"copilot_id": copilot.copilot_id, "conversation_id": before.conversation_id}
    if forwarded:
        outcome, topic = TurnOutcome.AGENT, None
    else:
        outcome, topic = outcome_of(replies)
    cited = list(dict.fromkeys(c.source for m in replies for c in m.citations))
    events = [
        AnalyticsEvent(
            type=EventType.TURN,
            seq=customer.seq,
            at=customer.created_at,
            outcome=outcome,
            topic=topic,
            confidence=round(confidence, 4) if confidence is not None else None,
            citations=cited,
            latency_ms=round(latency_ms, 1),
            question=redactor(copilot).redact(customer.text),
            **base,
        )
    ]
    if topic in (t.THANK_YOU, t.GOODBYE) and before.context.last_topic in _helped_by(copilot):
        events.append(AnalyticsEvent(type=EventType.RESOLVED, reason="thanked", **base))
    if topic == t.GOODBYE:
        events.append(AnalyticsEvent(type=EventType.ENDED, reason="goodbye", **base))
    return events


def _helped_by(copilot: Copilot) -> frozenset[str]:
    return ANSWERS | {tp.name for tp in copilot.topics if not tp.handoff}


def started_event(conversation: Conversation) -> AnalyticsEvent:
    return AnalyticsEvent(
        type=EventType.CONVERSATION_STARTED,
        copilot_id=conversation.copilot_id,
        conversation_id=conversation.conversation_id,
        at=conversation.created_at,
    )


def survey_events(
    copilot: Copilot, conversation: Conversation, about: Message | None, answer: SurveyAnswer
) -> list[AnalyticsEvent]:
    """A survey answer: its CSAT event; a good score (4 or 5) also resolves."""
    base = {"copilot_id": copilot.copilot_id, "conversation_id": conversation.conversation_id}
    comment = redactor(copilot).redact(answer.comment) if answer.comment else None
    seq = about.seq if about is not None else None
    events = [
        AnalyticsEvent(type=EventType.CSAT, seq=seq, score=answer.score, comment=comment, **base)
    ]
    if answer.score >= GOOD_SCORE:
        events.append(AnalyticsEvent(type=EventType.RESOLVED, reason="csat", **base))
    return events


def feedback_events(
    copilot: Copilot, conversation: Conversation, answer: Message, rating: int, comment: str | None
) -> list[AnalyticsEvent]:
    """Thumbs up or down on one of the copilot's answers, tied to what it cited; a thumbs up
    on an answer resolves."""
    base = {"copilot_id": copilot.copilot_id, "conversation_id": conversation.conversation_id}
    events = [
        AnalyticsEvent(
            type=EventType.FEEDBACK,
            seq=answer.seq,
            rating=rating,
            topic=answer.topic,
            citations=list(dict.fromkeys(c.source for c in answer.citations)),
            comment=redactor(copilot).redact(comment) if comment else None,
            **base,
        )
    ]
    if rating > 0:
        events.append(AnalyticsEvent(type=EventType.RESOLVED, reason="thumbs_up", **base))
    return events
