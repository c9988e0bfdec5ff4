"""Pydantic models of conversation: requests, responses and stored records."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from copilot.handoff.models import Handoff, HandoffEventName, HubOutboxCursor
from copilot.knowledge.models import Citation
from copilot.schema import MAX_MESSAGE_CHARS, Role, Strict, utcnow

VARIABLE_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
# The longest wait of a long-poll (GET messages ?wait=): under API Gateway's 30 s integration
# timeout and the chat function's 29 s Lambda timeout, with room for the poll's own reads.
MAX_WAIT_SECONDS = 20
MAX_VARIABLE_CHARS = 500


class ConversationState(StrEnum):
    BOT = "bot"
    HANDOFF_REQUESTED = "handoff_requested"
    AGENT = "agent"
    ENDED = "ended"


class Message(BaseModel):
    seq: int
    role: Role
    text: str
    created_at: datetime = Field(default_factory=utcnow)
    topic: str | None = Field(None, description="Topic that produced this reply, if any.")
    citations: list[Citation] = Field(default_factory=list)
    suggestions: list[str] = Field(
        default_factory=list, description="Quick replies the client may show as buttons."
    )
    event: HandoffEventName | None = Field(
        None, description="On role 'system': the hand-off event this message reports."
    )
    author: str | None = Field(None, description="The agent's display name (role 'agent').")
    handoff_id: str | None = Field(
        None, description="The hand-off this message was exchanged in (to or from an agent)."
    )
    client_activity_id: str | None = Field(
        None,
        description="On role 'customer': the id its client gave it (Direct Line's "
        "channelData.clientActivityID), echoed back so the client can match its message.",
    )


PendingAction = Literal[
    "confirm_start_over", "choose_topic", "choose_subject", "confirm_handoff", "survey"
]


class DialogContext(BaseModel):
    pending: PendingAction | None = None
    choices: list[str] = Field(default_factory=list)
    pending_text: str | None = None
    no_match_count: int = 0
    last_topic: str | None = None
    topics_visited: list[str] = Field(default_factory=list)
    history_start_seq: int = 0
    # What the conversation is about: the places, products or plans (subject keys,
    # copilot.knowledge.subjects) the customer named or the last answer came from.
    subjects: list[str] = Field(default_factory=list)
    locale: str | None = None
    variables: dict[str, str] = Field(default_factory=dict)
    surveyed: bool = False  # the end-of-conversation survey was offered (once per conversation)


class Conversation(BaseModel):
    conversation_id: str
    copilot_id: str
    token_hash: str
    state: ConversationState = ConversationState.BOT
    last_seq: int = 0
    version: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    context: DialogContext = Field(default_factory=DialogContext)
    handoff: Handoff | None = None
    hub_outbox: HubOutboxCursor = Field(default_factory=HubOutboxCursor)
    # The last message the hub's outbox has to deliver, and when the outbox was last told:
    # a customer poll tells it again if it is behind that long (a lost or failed nudge).
    outbox_due_seq: int = 0
    outbox_nudged_at: datetime | None = None
    outbox_renudges: int = 0  # re-nudges of the current backlog (they back off)


class IdempotentOutcome(BaseModel):
    """A write's answer, stored under its idempotency claim so a retry gets it back."""

    claim: str = Field(description="Hash of the key and its scope; the key is never stored.")
    fingerprint: str = Field(description="Hash of the request it answered.")
    status: int
    body: str = Field(description="The response JSON, its secret field (if any) blanked.")
    secret_field: str | None = None
    sealed: str | None = Field(None, description="The secret, encrypted with the key's pad.")
    expires_at: datetime


class StartConversationRequest(Strict):
    locale: str | None = Field(None, max_length=35)
    variables: dict[str, str] = Field(
        default_factory=dict,
        max_length=20,
        description="What the site knows about the customer (e.g. name, account); passed to "
        "the agent on hand-off.",
        json_schema_extra={
            "propertyNames": {"pattern": VARIABLE_NAME_PATTERN},
            "additionalProperties": {"type": "string", "maxLength": MAX_VARIABLE_CHARS},
        },
    )

    @field_validator("variables")
    @classmethod
    def _short_variables(cls, variables: dict[str, str]) -> dict[str, str]:
        for key, value in variables.items():
            if not re.match(VARIABLE_NAME_PATTERN, key):
                raise ValueError(f"variable names are letters, digits and _: {key[:64]!r}")
            if len(value) > MAX_VARIABLE_CHARS:
                raise ValueError(f"variable {key!r} is over {MAX_VARIABLE_CHARS} characters")
        return variables


class StartConversationResponse(BaseModel):
    conversation_id: str
    token: str = Field(description="Send as 'Authorization: Bearer <token>' on later calls.")
    state: ConversationState
    messages: list[Message]


class PostMessageRequest(Strict):
    text: str = Field(
        min_length=1, max_length=MAX_MESSAGE_CHARS, json_schema_extra={"pattern": r"\S"}
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("message text must not be blank")
        return text


class FeedbackRequest(Strict):
    rating: Literal["up", "down"] = Field(description="Thumbs up or down on the answer.")
    comment: str | None = Field(None, max_length=1000, description="Optional; PII is redacted.")


class SurveyRequest(Strict):
    score: int = Field(ge=1, le=5, description="1 (poor) to 5 (excellent).")
    comment: str | None = Field(None, max_length=1000, description="Optional; PII is redacted.")


class Recorded(BaseModel):
    conversation_id: str
    recorded: Literal["feedback", "survey"]
    seq: int | None = Field(None, description="The answer the feedback is about.")


class TurnResponse(BaseModel):
    conversation_id: str
    state: ConversationState
    messages: list[Message] = Field(description="The customer's message and the replies to it.")


class MessagesPage(BaseModel):
    conversation_id: str
    state: ConversationState
    last_seq: int
    messages: list[Message]
