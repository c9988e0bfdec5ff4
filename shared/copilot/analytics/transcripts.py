"""Transcripts for review: a copilot's conversations of a period, PII redacted, as JSON lines
(one conversation a line) or CSV (one message a row).

Which conversations: those whose ``conversation_started`` event the archive holds for the
period (copilot.analytics.report); their messages come from the conversation store, so a
transcript exists for as long as its conversation does (COPILOT_CONVERSATION_TTL_DAYS).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from copilot.analytics.redaction import Redactor
from copilot.conversation.models import Conversation, Message
from copilot.ports import ConversationStore

Format = Literal["jsonl", "csv"]
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
CSV_COLUMNS = [
    "conversation_id",
    "started_at",
    "seq",
    "created_at",
    "role",
    "author",
    "topic",
    "event",
    "text",
    "citations",
]
PAGE = 500


def transcripts(
    conversations: ConversationStore,
    copilot_id: str,
    conversation_ids: Iterable[str],
    redactor: Redactor,
) -> Iterator[tuple[Conversation, list[Message]]]:
    """Each conversation of ``copilot_id`` among ``conversation_ids`` with its messages, oldest
    first, redacted; ids of another copilot or of expired conversations are left out."""
    for conversation_id in conversation_ids:
        conversation = conversations.get(conversation_id)
        if conversation is None or conversation.copilot_id != copilot_id:
            continue
        messages: list[Message] = []
        after = 0
        while True:
            page = conversations.messages_after(conversation_id, after, PAGE)
            messages += page
            if len(page) < PAGE:
                break
            after = page[-1].seq
        yield conversation, [_redacted(m, redactor) for m in messages]


def _redacted(message: Message, redactor: Redactor) -> Message:
    return message.model_copy(update={"text": redactor.redact(message.text)})


def _message_record(message: Message) -> dict[str, Any]:
    return {
        "seq": message.seq,
        "created_at": message.created_at.isoformat(),
        "role": message.role,
        "author": message.author,
        "topic": message.topic,
        "event": message.event,
        "text": message.text,
        "citations": [c.source for c in message.citations],
    }


def render(items: Iterable[tuple[Conversation, list[Message]]], fmt: Format) -> str:
    if fmt == "jsonl":
        lines = []
        for conversation, messages in items:
            record = {
                "conversation_id": conversation.conversation_id,
                "started_at": conversation.created_at.isoformat(),
                "state": conversation.state.value,
                "messages": [_message_record(m) for m in messages],
            }
            lines.append(json.dumps(record, ensure_ascii=False))
        return "".join(line + "\n" for line in lines)
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS)
    writer.writeheader()
    for conversation, messages in items:
        for m in messages:
            row = _message_record(m)
            row["citations"] = "; ".join(row["citations"])
            writer.writerow(
                {
                    "conversation_id": conversation.conversation_id,
                    "started_at": conversation.created_at.isoformat(),
                    **{k: ("" if v is None else v) for k, v in row.items()},
                }
            )
    return out.getvalue()
