"""Direct Line 3.0 wire shapes (Bot Framework activities), as botframework-directlinejs sends
and reads them: camelCase names, ``from`` as a key, absent fields left out rather than null.

Only what this service sends or reads is modelled; an incoming activity's other fields
(``locale``, ``localTimestamp``, ``entities``...) are accepted and ignored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Wire(BaseModel):
    """A Direct Line payload: serialized by its wire names (``from``, ``@id``) without nulls,
    whatever the caller's model_dump arguments (the router dumps with its own)."""

    model_config = ConfigDict(populate_by_name=True)

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("by_alias", True)
        kwargs.setdefault("exclude_none", True)
        return super().model_dump(**kwargs)


class ChannelAccount(Wire):
    id: str
    name: str | None = None
    role: str | None = Field(None, description="'user' (the customer) or 'bot'.")


class ConversationAccount(Wire):
    id: str


class CardAction(Wire):
    type: str = "imBack"
    title: str
    value: str


class SuggestedActions(Wire):
    """No ``to``: Web Chat hides actions addressed to another user id than its own, and the
    service does not know the id a client picked."""

    actions: list[CardAction]


class Activity(Wire):
    type: str = Field(description="message | typing | event")
    id: str = Field(description="<conversationId>|<seq, 7 digits>[-event]")
    timestamp: datetime
    channel_id: str = Field("directline", alias="channelId")
    conversation: ConversationAccount
    from_: ChannelAccount = Field(alias="from")
    text: str | None = None
    text_format: str | None = Field(None, alias="textFormat")
    locale: str | None = None
    suggested_actions: SuggestedActions | None = Field(None, alias="suggestedActions")
    entities: list[dict[str, Any]] | None = Field(
        None, description="On answers: a schema.org Message whose 'citation' lists the sources."
    )
    channel_data: dict[str, Any] | None = Field(None, alias="channelData")
    name: str | None = Field(None, description="On event activities: 'handoff.status'.")
    value: dict[str, Any] | None = None


class ActivitySet(Wire):
    activities: list[Activity]
    watermark: str = Field(description="Send it back as ?watermark= to get what came after.")


class IncomingActivity(Wire):
    """What a client posts: a message's text (and its clientActivityID) is what counts."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    type: str = Field(max_length=64)
    text: str | None = None
    from_: ChannelAccount | None = Field(None, alias="from")
    channel_data: dict[str, Any] | None = Field(None, alias="channelData")
    attachments: list[dict[str, Any]] | None = None


class ResourceResponse(Wire):
    id: str


class DirectLineToken(Wire):
    conversation_id: str = Field(alias="conversationId")
    token: str = Field(
        description="<conversation_id>.<conversation token>: send as 'Authorization: Bearer'."
    )
    expires_in: int = Field(description="Seconds; refresh before then (tokens/refresh).")


class DirectLineConversation(DirectLineToken):
    """POST /conversations and GET /conversations/{id}: no streamUrl (polling only)."""


class StartConversationBody(Wire):
    """What directlinejs sends to POST /conversations (the user and locale): ignored, the
    token already names the conversation."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    locale: str | None = None
