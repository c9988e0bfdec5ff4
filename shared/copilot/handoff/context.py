"""What the agent receives: Copilot Studio's hand-off context, the transcript and a short
extractive summary (no LLM: the customer's key sentences, the topics, what went unanswered)."""

from __future__ import annotations

from collections.abc import Sequence

from copilot.admin.models import Copilot
from copilot.conversation import topics as t
from copilot.conversation.dialog import NO_MATCH
from copilot.conversation.models import Conversation, Message
from copilot.handoff.models import HandoffContext, HubSettings, TranscriptEntry
from copilot.text import analyze, sentences

MAX_PHRASES = 20
MAX_KEY_SENTENCES = 3
MAX_TRANSCRIPT = 100


def build_context(
    copilot: Copilot,
    conversation: Conversation,
    history: Sequence[Message],
    hub: HubSettings,
    trigger_topic: str | None,
    topic_note: str | None,
) -> HandoffContext:
    """``history``: the conversation since its last start-over, up to the hand-off request."""
    ctx = conversation.context
    said = [m.text for m in history if m.role == "customer"]
    meant = [text for text in said if _substantive(text)] or said  # not the "yes" to the offer
    summary, unanswered = summarize(history, ctx.topics_visited)
    return HandoffContext(
        conversation_id=conversation.conversation_id,
        bot_id=copilot.copilot_id,
        bot_name=copilot.name,
        language=ctx.locale or copilot.language,
        last_topic=trigger_topic or ctx.last_topic,
        topics=list(ctx.topics_visited),
        last_phrases=meant[-1] if meant else None,
        phrases=said[-MAX_PHRASES:],
        agent_message=topic_note or hub.agent_note,
        variables=dict(ctx.variables),
        summary=summary,
        unanswered_questions=unanswered,
        queue=hub.queue,
        skill=hub.skill,
    )


def transcript(history: Sequence[Message]) -> list[TranscriptEntry]:
    return [
        TranscriptEntry(
            seq=m.seq,
            role=m.role,
            text=m.text,
            created_at=m.created_at,
            topic=m.topic,
            author=m.author,
        )
        for m in list(history)[-MAX_TRANSCRIPT:]
        if m.event != "agent_typing"
    ]


def summarize(history: Sequence[Message], topics_visited: Sequence[str]) -> tuple[str, list[str]]:
    """A few lines an agent can read at a glance, and the questions the copilot could not answer."""
    messages = list(history)
    unanswered: list[str] = []
    substantive: list[str] = []
    for i, m in enumerate(messages):
        if m.role != "customer" or not _substantive(m.text):
            continue
        substantive.append(m.text)
        reply = next((r for r in messages[i + 1 :] if r.role != "customer"), None)
        if reply is not None and reply.topic == NO_MATCH:
            unanswered.append(_clip(m.text))
    key = _key_sentences(substantive)
    lines = []
    if key:
        lines.append("Customer said: " + " | ".join(key))
    topics = [name for name in dict.fromkeys(topics_visited) if name not in _QUIET_TOPICS]
    if topics:
        lines.append("Topics: " + ", ".join(topics[-8:]))
    if unanswered:
        lines.append("Copilot could not answer: " + " | ".join(unanswered[-5:]))
    if not lines:
        lines.append("The customer asked for a person straight away.")
    return "\n".join(lines), unanswered[-10:]


_QUIET_TOPICS = {t.GREETING, t.THANK_YOU, t.GOODBYE}


def _substantive(text: str) -> bool:
    """Not a greeting, a yes/no, a pick from a list, or a request for a person."""
    stripped = text.strip()
    if not stripped or stripped.isdigit() or t.is_yes(stripped) or t.is_no(stripped):
        return False
    return t.match_system(stripped) is None


def _key_sentences(texts: Sequence[str]) -> list[str]:
    candidates = [s for text in texts for s in sentences(text) or [text]]
    scored = [
        (len(set(analyze(s))) + (2 if s.rstrip().endswith("?") else 0), i, s)
        for i, s in enumerate(candidates)
    ]
    best = sorted(scored, key=lambda x: (-x[0], x[1]))[:MAX_KEY_SENTENCES]
    return [_clip(s) for score, _, s in sorted(best, key=lambda x: x[1]) if score > 0]


def _clip(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
