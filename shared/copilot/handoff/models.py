"""Pydantic models of handoff: requests, responses and stored records."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from copilot.schema import HTTP_URL_PATTERN, Role, Strict, utcnow

HubType = Literal["generic"]  # the named hubs (hubs.md) join this list as their adapters land


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class BusinessHours(Strict):
    """One opening window, in the hub's time zone: e.g. Mon-Fri 09:00-17:00."""

    days: list[Weekday] = Field(min_length=1, max_length=7)
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="Opening time, HH:MM.")
    end: str = Field(
        pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$", description="Closing time, HH:MM (24:00 ok)."
    )

    @model_validator(mode="after")
    def _start_before_end(self) -> BusinessHours:
        if self.start >= self.end:
            raise ValueError("end must be after start (windows cannot cross midnight)")
        return self


class HubSettings(Strict):
    """Where and how the copilot hands conversations to live agents. Holds no secret."""

    type: HubType = Field(
        description="The hub's protocol: 'generic' (docs/handoff-generic-hub.md)."
    )
    url: str = Field(
        max_length=2000,
        description="Where hand-off events are POSTed (http or https).",
        json_schema_extra={"pattern": HTTP_URL_PATTERN},
    )
    secret_ref: str = Field(
        pattern=r"^[A-Za-z0-9_]{1,64}$",
        description="Name of the shared secret, resolved at run time from the environment "
        "variable COPILOT_HUB_SECRET_<REF> (or the SSM parameter <prefix>/<REF>).",
    )
    queue: str | None = Field(None, max_length=200, description="Routing: the hub's queue.")
    skill: str | None = Field(None, max_length=200, description="Routing: the agent skill.")
    business_hours: list[BusinessHours] = Field(
        default_factory=list,
        max_length=14,
        description="When agents are available; empty means always. Outside them, customers "
        "get the escalate link.",
    )
    timezone: str = Field("UTC", max_length=64, description="IANA time zone of business_hours.")
    agent_note: str | None = Field(
        None, max_length=1000, description="Private note to the agent (va_AgentMessage)."
    )
    on_agent_end: Literal["resume", "end"] = Field(
        "resume", description="When the agent ends: the copilot resumes, or the chat ends."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not re.match(HTTP_URL_PATTERN, url):
            raise ValueError("not an http(s) URL")
        return url

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r} (use an IANA name)") from None
        return zone


HandoffEventName = Literal[
    "handoff_requested",
    "agent_joined",
    "agent_typing",
    "agent_left",
    "handoff_ended",
    "handoff_cancelled",
    "handoff_failed",
]


class Agent(BaseModel):
    id: str | None = None
    name: str = "Agent"


class HandoffContext(BaseModel):
    """What a hub gets when a hand-off starts: Copilot Studio's ``handoff.initiate`` value
    (each hub adapter maps it to its own wire names) plus a summary and routing."""

    conversation_id: str
    bot_id: str
    bot_name: str
    language: str
    last_topic: str | None = None
    topics: list[str] = Field(default_factory=list)
    last_phrases: str | None = None
    phrases: list[str] = Field(default_factory=list)
    agent_message: str | None = None
    variables: dict[str, str] = Field(default_factory=dict)
    summary: str = ""
    unanswered_questions: list[str] = Field(default_factory=list)
    queue: str | None = None
    skill: str | None = None


HubEventKind = Literal[
    "agent_joined", "agent_message", "agent_typing", "agent_left", "ended", "accepted", "rejected"
]


class HubEvent(BaseModel):
    """A hub's webhook (or pulled) event in neutral form."""

    kind: HubEventKind
    event_id: str = Field(description="The hub's id: retries carry the same one.")
    conversation_id: str
    handoff_id: str | None = None
    sequence: int | None = Field(None, description="The hub's order within the hand-off.")
    text: str | None = None
    agent: Agent | None = None
    reason: str | None = None
    received_at: datetime = Field(default_factory=utcnow)


class Handoff(BaseModel):
    """The conversation's current (or last) hand-off, stored on the conversation."""

    handoff_id: str
    requested_seq: int
    requested_at: datetime = Field(default_factory=utcnow)
    context: HandoffContext
    transcript_after: int = Field(0, description="The transcript sent starts after this seq.")
    agent: Agent | None = None
    hub_seq: int = Field(
        0, description="Last hub sequence number taken in order (applied, or queued in held)."
    )
    held: list[HubEvent] = Field(
        default_factory=list,
        description="Events in wait: ahead of a gap (sequence > hub_seq), or in order but more "
        "than one write holds (sequence <= hub_seq: the next write applies them).",
    )
    skipped: list[int] = Field(
        default_factory=list,
        description="Hub sequence numbers given up waiting for: applied late if they come.",
    )
    closed: bool = False


class HubOutboxCursor(BaseModel):
    """How far the outbox has delivered this conversation's messages to the hub."""

    delivered_seq: int = 0
    started: str | None = Field(None, description="The hand-off whose start the hub accepted.")


class TranscriptEntry(BaseModel):
    seq: int
    role: Role
    text: str
    created_at: datetime
    topic: str | None = None
    author: str | None = None


HubCommandKind = Literal["start", "message", "end"]


class HubCommand(BaseModel):
    """One call to a hub, in neutral form (each adapter maps it to its wire protocol)."""

    kind: HubCommandKind
    event_id: str = Field(description="Stable across retries, so the hub can de-duplicate.")
    sequence: int = Field(description="Increasing within the conversation (our message seq).")
    conversation_id: str
    copilot_id: str
    handoff_id: str
    text: str | None = None
    context: HandoffContext | None = None
    transcript: list[TranscriptEntry] = Field(default_factory=list)
    reason: str | None = None
    reply_to: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class WebhookResult(BaseModel):
    event_id: str
    status: Literal["applied", "held", "duplicate", "ignored"]


class WebhookAck(BaseModel):
    results: list[WebhookResult]
