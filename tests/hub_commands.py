"""Neutral hand-off commands for the hub adapters' unit tests (each test file names its own
conversation, copilot and context values)."""

from __future__ import annotations

from typing import Any

from copilot.handoff.models import HandoffContext, HubCommand


def handoff_context(conversation_id: str, copilot_id: str, **fields: Any) -> HandoffContext:
    values: dict[str, Any] = {
        "conversation_id": conversation_id,
        "bot_id": copilot_id,
        "bot_name": "Northwind",
        "language": "en",
    }
    return HandoffContext(**(values | fields))


def hub_command(
    kind: str, seq: int, conversation_id: str, copilot_id: str, handoff_id: str, **fields: Any
) -> HubCommand:
    """The command the outbox sends for our message ``seq`` (event id ``<conv>:<seq>``)."""
    return HubCommand(
        kind=kind,  # type: ignore[arg-type]
        event_id=f"{conversation_id}:{seq}",
        sequence=seq,
        conversation_id=conversation_id,
        copilot_id=copilot_id,
        handoff_id=handoff_id,
        **fields,
    )
