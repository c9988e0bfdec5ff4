"""Pydantic models for every request, response, event and stored record."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_MESSAGE_CHARS = 4000
MAX_TOPICS = 200


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Strict(BaseModel):
    """Request bodies reject unknown fields so typos surface as 400s, not silent no-ops."""

    model_config = ConfigDict(extra="forbid")


# --- copilots -----------------------------------------------------------------------------


class BehaviourMessages(Strict):
    greeting: str = Field(
        "Hello! I'm a virtual assistant. I answer from our help pages and can connect you "
        "with a person. How can I help?",
        min_length=1,
        max_length=2000,
    )
    start_over: str = Field(
        "Let's start over. What can I help you with?", min_length=1, max_length=2000
    )
    conversation_start: str = Field(
        "Hi! I'm a virtual assistant. Ask me a question, or type 'agent' to reach a person.",
        min_length=1,
        max_length=2000,
    )
    escalate_link: str = Field(
        "I can't connect you to a person in this chat, but our support team can help: "
        "please use the contact page on our website.",
        min_length=1,
        max_length=2000,
    )
    no_match: str = Field(
        "Sorry, I don't know the answer to that. Could you try rephrasing?",
        min_length=1,
        max_length=2000,
    )
    multiple_topics_matched: str = Field(
        "To make sure I understand, which of these did you mean?", min_length=1, max_length=2000
    )
    reset_conversation: str = Field("I've cleared our conversation.", min_length=1, max_length=2000)
    thank_you: str = Field(
        "You're welcome! Is there anything else I can help with?", min_length=1, max_length=2000
    )
    goodbye: str = Field("Thanks for chatting. Goodbye!", min_length=1, max_length=2000)


class BehaviourMessagesPatch(Strict):
    greeting: str | None = Field(None, min_length=1, max_length=2000)
    start_over: str | None = Field(None, min_length=1, max_length=2000)
    conversation_start: str | None = Field(None, min_length=1, max_length=2000)
    escalate_link: str | None = Field(None, min_length=1, max_length=2000)
    no_match: str | None = Field(None, min_length=1, max_length=2000)
    multiple_topics_matched: str | None = Field(None, min_length=1, max_length=2000)
    reset_conversation: str | None = Field(None, min_length=1, max_length=2000)
    thank_you: str | None = Field(None, min_length=1, max_length=2000)
    goodbye: str | None = Field(None, min_length=1, max_length=2000)


class Topic(Strict):
    name: str = Field(min_length=1, max_length=100)
    trigger_phrases: list[str] = Field(min_length=1, max_length=100)
    response: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    handoff: bool = Field(
        False, description="After its response, hand the conversation to a live agent."
    )
    agent_note: str | None = Field(
        None,
        max_length=1000,
        description="Private note to the agent when this topic hands off (va_AgentMessage).",
    )

    @field_validator("trigger_phrases")
    @classmethod
    def _phrases_not_blank(cls, phrases: list[str]) -> list[str]:
        cleaned = [p.strip() for p in phrases]
        if any(not p or len(p) > 200 for p in cleaned):
            raise ValueError("each trigger phrase must be 1-200 characters")
        return cleaned


KnowledgeBaseName = Literal["servicenow", "salesforce"]
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
    url: str = Field(max_length=2000, description="Where hand-off events are POSTed.")
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
        if not re.match(r"^https?://[^/\s]+", url):
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


Strictness = Literal["low", "medium", "high"]


class WebsiteSource(Strict):
    """A public website the copilot learns from: crawled, and re-crawled on a schedule."""

    start_urls: list[str] = Field(min_length=1, max_length=20)
    max_depth: int = Field(3, ge=0, le=10)
    max_pages: int = Field(200, ge=1, le=2000)

    @field_validator("start_urls")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not re.match(r"^https?://[^/\s]+", url):
                raise ValueError(f"not an http(s) URL: {url!r}")
        return urls


def _unique_topic_names(topics: list[Topic]) -> list[Topic]:
    names = [t.name.strip().lower() for t in topics]
    if len(set(names)) != len(names):
        raise ValueError("topic names must be unique")
    return topics


class CopilotSpec(Strict):
    name: str = Field(min_length=1, max_length=100)
    language: str = Field("en", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    messages: BehaviourMessages = Field(default_factory=BehaviourMessages)
    topics: list[Topic] = Field(default_factory=list, max_length=MAX_TOPICS)
    no_match_threshold: int = Field(
        2, ge=1, le=10, description="Consecutive no-matches before escalation is offered."
    )
    strictness: Strictness = Field(
        "medium",
        description="How sure the copilot must be before answering from knowledge "
        "(higher: more 'I don't know', fewer wrong answers).",
    )
    instructions: str | None = Field(
        None,
        max_length=2000,
        description="Tone and instructions for generated answers (used when an LLM is configured).",
    )
    websites: list[WebsiteSource] = Field(default_factory=list, max_length=20)
    knowledge_bases: list[KnowledgeBaseName] = Field(
        default_factory=list,
        description="Hubs whose published articles are synced (credentials: configuration).",
    )
    hub: HubSettings | None = Field(
        None, description="Live-agent hand-off; without it escalation gives the escalate link."
    )

    _check_topics = field_validator("topics")(_unique_topic_names)


class CopilotPatch(Strict):
    name: str | None = Field(None, min_length=1, max_length=100)
    language: str | None = Field(None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    messages: BehaviourMessagesPatch | None = None
    topics: list[Topic] | None = Field(None, max_length=MAX_TOPICS)
    no_match_threshold: int | None = Field(None, ge=1, le=10)
    strictness: Strictness | None = None
    instructions: str | None = Field(None, max_length=2000)
    websites: list[WebsiteSource] | None = Field(None, max_length=20)
    knowledge_bases: list[KnowledgeBaseName] | None = None
    hub: HubSettings | None = Field(
        None, description="Replaces the hub settings; null removes them."
    )

    @field_validator("topics")
    @classmethod
    def _check_topics(cls, topics: list[Topic] | None) -> list[Topic] | None:
        return None if topics is None else _unique_topic_names(topics)


class Copilot(CopilotSpec):
    model_config = ConfigDict(extra="ignore")

    copilot_id: str
    created_at: datetime
    updated_at: datetime
    version: int = 1


class CopilotList(BaseModel):
    copilots: list[Copilot]


# --- conversations ------------------------------------------------------------------------


class ConversationState(StrEnum):
    BOT = "bot"
    HANDOFF_REQUESTED = "handoff_requested"
    AGENT = "agent"
    ENDED = "ended"


Role = Literal["customer", "copilot", "agent", "system"]


class Citation(BaseModel):
    index: int
    title: str
    source: str = Field(description="File name (or URL) the passage comes from.")
    section: str | None = None
    page: int | None = Field(None, description="PDF page or slide number.")
    url: str | None = Field(None, description="Web page the passage comes from, if any.")
    snippet: str


HandoffEventName = Literal[
    "handoff_requested",
    "agent_joined",
    "agent_typing",
    "agent_left",
    "handoff_ended",
    "handoff_cancelled",
    "handoff_failed",
]


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


PendingAction = Literal["confirm_start_over", "choose_topic", "confirm_handoff"]


class DialogContext(BaseModel):
    pending: PendingAction | None = None
    choices: list[str] = Field(default_factory=list)
    pending_text: str | None = None
    no_match_count: int = 0
    last_topic: str | None = None
    topics_visited: list[str] = Field(default_factory=list)
    history_start_seq: int = 0
    locale: str | None = None
    variables: dict[str, str] = Field(default_factory=dict)


# --- hand-off -----------------------------------------------------------------------------


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
    hub_seq: int = Field(0, description="Last hub sequence number applied.")
    held: list[HubEvent] = Field(
        default_factory=list, description="Events that arrived ahead of a gap, in wait."
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


class StartConversationRequest(Strict):
    locale: str | None = Field(None, max_length=35)
    variables: dict[str, str] = Field(
        default_factory=dict,
        max_length=20,
        description="What the site knows about the customer (e.g. name, account); passed to "
        "the agent on hand-off.",
    )

    @field_validator("variables")
    @classmethod
    def _short_variables(cls, variables: dict[str, str]) -> dict[str, str]:
        for key, value in variables.items():
            if not re.match(r"^[A-Za-z][A-Za-z0-9_]{0,63}$", key):
                raise ValueError(f"variable names are letters, digits and _: {key[:64]!r}")
            if len(value) > 500:
                raise ValueError(f"variable {key!r} is over 500 characters")
        return variables


class StartConversationResponse(BaseModel):
    conversation_id: str
    token: str = Field(description="Send as 'Authorization: Bearer <token>' on later calls.")
    state: ConversationState
    messages: list[Message]


class PostMessageRequest(Strict):
    text: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("message text must not be blank")
        return text


class TurnResponse(BaseModel):
    conversation_id: str
    state: ConversationState
    messages: list[Message] = Field(description="The customer's message and the replies to it.")


class MessagesPage(BaseModel):
    conversation_id: str
    state: ConversationState
    last_seq: int
    messages: list[Message]


# --- knowledge ----------------------------------------------------------------------------


class DocumentStatusValue(StrEnum):
    PENDING = "pending"
    INDEXED = "indexed"
    FAILED = "failed"


class DocumentStatus(BaseModel):
    copilot_id: str
    doc_key: str = Field(description="Path of the file under the copilot's prefix.")
    status: DocumentStatusValue
    reason: str | None = None
    chunk_count: int = Field(0, description="Chunks of the version answers come from.")
    version: str | None = Field(
        None, description="The object version (ETag or version id) answers come from, if any."
    )
    source_modified: datetime | None = Field(None, description="When that version was uploaded.")
    pending_version: str | None = Field(None, description="A version being indexed now.")
    attempted_version: str | None = Field(
        None, description="The version the last finished attempt (indexed or failed) was about."
    )
    size: int | None = None
    url: str | None = Field(None, description="Source web page, for crawled or synced knowledge.")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    rev: int = Field(0, description="Revision of this record (optimistic concurrency).")


class ReindexResult(BaseModel):
    copilot_id: str
    queued: int = Field(description="Files queued for indexing.")


class DocumentList(BaseModel):
    documents: list[DocumentStatus]


class Chunk(BaseModel):
    chunk_id: str
    copilot_id: str
    doc_key: str
    position: int
    text: str
    title: str
    section: str | None = None
    page: int | None = None
    url: str | None = None
    version: str | None = None
    # The embedding of the chunk's title and section path (copilot.vectors.pack): a question
    # can match what a section is about (an FAQ's question, a page's title) better than its
    # body. None for chunks indexed before headings were embedded.
    heading_vector: str | None = None
    # A table chunk ends with this many rows (records, one per paragraph); what comes before
    # them is the table's caption. 0 for prose.
    rows: int = 0
    # The embeddings of those rows, each with the caption (copilot.vectors.pack, one after
    # another): a question about one row ("how much is a tune-up?") matches the row far
    # better than the several rows of its chunk together. None when not embedded.
    row_vectors: str | None = None


class Passage(BaseModel):
    """A retrieved chunk with its relevance to the query (cosine similarity, 0..1)."""

    chunk: Chunk
    score: float


class Answer(BaseModel):
    text: str
    citations: list[Citation]


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
