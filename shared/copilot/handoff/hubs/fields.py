"""The hand-off context as flat string fields (a hub's context variables, custom attributes,
pre-chat fields...), named as Copilot Studio names them: once for every adapter."""

from __future__ import annotations

import json

from copilot.handoff.models import HandoffContext, HubSettingsBase, TranscriptEntry

MAX_CONTEXT_CHARS = 8000  # the first message's text: the oldest transcript lines go first


def va_fields(ctx: HandoffContext, hub: HubSettingsBase | None = None) -> dict[str, str]:
    """Copilot Studio's ``handoff.initiate`` fields under their ``va_`` names, the summary, the
    unanswered questions and routing (the hub's settings when the context has none); lists as
    JSON strings; empty ones left out."""

    def listed(values: list[str]) -> str | None:
        return json.dumps(values) if values else None

    fields: dict[str, str | None] = {
        "va_ConversationId": ctx.conversation_id,
        "va_BotId": ctx.bot_id,
        "va_BotName": ctx.bot_name,
        "va_Language": ctx.language,
        "va_LastTopic": ctx.last_topic,
        "va_Topics": listed(ctx.topics),
        "va_LastPhrases": ctx.last_phrases,
        "va_Phrases": listed(ctx.phrases),
        "va_AgentMessage": ctx.agent_message or (hub.agent_note if hub else None),
        "summary": ctx.summary,
        "unanswered_questions": listed(ctx.unanswered_questions),
        "routing_queue": ctx.queue or (hub.queue if hub else None),
        "routing_skill": ctx.skill or (hub.skill if hub else None),
    }
    return {k: v for k, v in fields.items() if v}


def one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def context_message(ctx: HandoffContext, transcript: list[TranscriptEntry]) -> str:
    """The hand-off's first message: the copilot's summary and context, then the transcript,
    one ``Label: value`` per line (what the agent reads first; the emulator reads it back)."""
    head = [
        f"[Copilot hand-off: summary by {one_line(ctx.bot_name)}, not typed by the customer]",
        f"Summary: {one_line(ctx.summary) or '-'}",
        f"Note for the agent: {one_line(ctx.agent_message) or '-'}",
        f"Last topic: {one_line(ctx.last_topic) or '-'}",
        f"Queue: {one_line(ctx.queue) or '-'}",
        f"Skill: {one_line(ctx.skill) or '-'}",
        f"Language: {one_line(ctx.language)}",
        f"Bot: {one_line(ctx.bot_name)}",
        f"Conversation: {ctx.conversation_id}",
    ]
    lists = [
        ("Customer details:", [f"- {k}: {one_line(v)}" for k, v in ctx.variables.items()]),
        ("Customer's words:", [f"- {one_line(p)}" for p in ctx.phrases]),
        ("Unanswered questions:", [f"- {one_line(q)}" for q in ctx.unanswered_questions]),
    ]
    for title, lines in lists:
        head += [title, *lines]
    said = [f"{_speaker(e)}: {one_line(e.text)}" for e in transcript]
    while said and len("\n".join([*head, "Transcript:", *said])) > MAX_CONTEXT_CHARS:
        said.pop(0)  # the oldest lines go first
    return "\n".join([*head, "Transcript:", *said])[:MAX_CONTEXT_CHARS]


def _speaker(entry: TranscriptEntry) -> str:
    return {"customer": "Customer", "copilot": "Bot"}.get(entry.role, entry.role.title())
