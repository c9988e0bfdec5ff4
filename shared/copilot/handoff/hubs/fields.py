"""The hand-off context as flat string fields (a hub's context variables, custom attributes,
pre-chat fields...), named as Copilot Studio names them: once for every adapter."""

from __future__ import annotations

import json

from copilot.handoff.models import HandoffContext, HubSettingsBase


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
