"""The conversation's messages as Direct Line activities, and the Direct Line token.

One message is one activity, in ``seq`` order, except a hand-off event: an ``event`` activity
(name ``handoff.status``, for programs) followed by the same notice as a visible ``message``;
an agent typing is a ``typing`` activity only. Answers keep their Markdown; their sources
become Markdown link definitions (``[1]: <url> "title"``) plus a schema.org ``Message`` entity
whose ``citation`` claims botframework-webchat (4.18) renders as the citation list: a link for
web pages and knowledge-base articles, the snippet in a dialog for files.
"""

from __future__ import annotations

import re
from typing import Any

from copilot.conversation.models import Message
from copilot.entrypoints.http.directline_models import (
    Activity,
    CardAction,
    ChannelAccount,
    ConversationAccount,
    SuggestedActions,
)
from copilot.errors import NotFoundError, UnauthorizedError
from copilot.knowledge.models import Citation, title_path

HANDOFF_EVENT = "handoff.status"
# The customer, the copilot and the service's own notices: fixed accounts (Direct Line gives
# every participant one; the customer's echo is matched by channelData.clientActivityID).
CUSTOMER = ChannelAccount(id="customer", role="user")
COPILOT = ChannelAccount(id="copilot", name="Copilot", role="bot")
SOURCES_HEADING = "\n\nSources:\n"  # how answers list their sources (knowledge.answer)
# A client's id of its message: kept on the message and used (prefixed) as the post's
# idempotency key, so a plain token of modest length.
CLIENT_ACTIVITY_ID = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
_TOKEN = re.compile(r"([0-9a-f]{32})\.([A-Za-z0-9_-]{16,128})")


def directline_token(conversation_id: str, token: str) -> str:
    """The conversation's token with its id in front: Direct Line's token calls and start
    (``POST /conversations``) carry no conversation id, so the token must name it."""
    return f"{conversation_id}.{token}"


def split_token(value: str | None) -> tuple[str, str]:
    """(conversation_id, conversation token) of a Direct Line token: none is a 401; one that
    is not a Direct Line token names no conversation, the 404 of a wrong token."""
    if not value:
        raise UnauthorizedError(
            "send the Direct Line token (from .../directline/tokens/generate) as "
            "'Authorization: Bearer <token>'"
        )
    found = _TOKEN.fullmatch(value)
    if found is None:
        raise NotFoundError("no such conversation for this token")
    return found.group(1), found.group(2)


def activity_id(conversation_id: str, seq: int) -> str:
    return f"{conversation_id}|{seq:07d}"


def activities(conversation_id: str, messages: list[Message]) -> list[Activity]:
    out: list[Activity] = []
    for m in messages:
        out.extend(_activities_of(conversation_id, m))
    return out


def _activities_of(conversation_id: str, m: Message) -> list[Activity]:
    base: dict[str, Any] = {
        "id": activity_id(conversation_id, m.seq),
        "timestamp": m.created_at,
        "conversation": ConversationAccount(id=conversation_id),
        # Web Chat orders by this when present (else by timestamp, to the millisecond).
        "channel_data": {"webchat:sequence-id": m.seq},
    }
    if m.role == "customer":
        if m.client_activity_id:
            base["channel_data"]["clientActivityID"] = m.client_activity_id
        return [Activity(type="message", from_=CUSTOMER, text=m.text, **base)]
    sender = _agent(m.author) if m.role == "agent" or m.event == "agent_typing" else COPILOT
    if m.event == "agent_typing":
        return [Activity(type="typing", from_=sender, **base)]
    message = Activity(
        type="message",
        from_=sender,
        text=_markdown(m.text, m.citations),
        text_format="markdown",
        suggested_actions=_suggested(m.suggestions),
        entities=[_cited(m.citations)] if m.citations else None,
        **base,
    )
    if m.event is None:
        return [message]
    event = Activity(
        type="event",
        from_=COPILOT,
        name=HANDOFF_EVENT,
        value={"status": m.event, "text": m.text, **({"agent": m.author} if m.author else {})},
        **{**base, "id": base["id"] + "-event"},
    )
    return [event, message]


def _agent(name: str | None) -> ChannelAccount:
    return ChannelAccount(id="agent", name=name or "Agent", role="bot")


def _suggested(suggestions: list[str]) -> SuggestedActions | None:
    if not suggestions:
        return None
    return SuggestedActions(actions=[CardAction(title=s, value=s) for s in suggestions])


def _markdown(text: str, citations: list[Citation]) -> str:
    """The answer with its plain "Sources:" list replaced by Markdown link definitions, which
    make its [n] markers links and Web Chat's citation list."""
    if not citations:
        return text
    body, found, _ = text.rpartition(SOURCES_HEADING)
    lines = [f'[{c.index}]: <{_target(c)}> "{_name(c)}"' for c in citations]
    return (body if found else text) + "\n\n" + "\n".join(lines)


def _target(c: Citation) -> str:
    return c.url or f"cite:{c.index}"  # cite: = no page to open; Web Chat shows the snippet


def _name(c: Citation) -> str:
    where = title_path(c.title, c.section) + (f", p. {c.page}" if c.page else "")
    return where.replace('"', "'").replace("\n", " ")


def _cited(citations: list[Citation]) -> dict[str, Any]:
    """The schema.org Message entity (``@id`` "" = this activity) with one Claim per source."""
    return {
        "type": "https://schema.org/Message",
        "@context": "https://schema.org",
        "@id": "",
        "@type": "Message",
        "citation": [
            {
                "@type": "Claim",
                "position": c.index,
                "name": _name(c),
                "appearance": {
                    "@type": "DigitalDocument",
                    "name": _name(c),
                    "text": c.snippet,
                    "abstract": c.snippet,
                    **({"url": c.url} if c.url else {}),
                },
            }
            for c in citations
        ],
    }
