"""Pydantic models for every request, response, event and stored record."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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

    @field_validator("trigger_phrases")
    @classmethod
    def _phrases_not_blank(cls, phrases: list[str]) -> list[str]:
        cleaned = [p.strip() for p in phrases]
        if any(not p or len(p) > 200 for p in cleaned):
            raise ValueError("each trigger phrase must be 1-200 characters")
        return cleaned


KnowledgeBaseName = Literal["servicenow", "salesforce"]


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
    websites: list[WebsiteSource] = Field(default_factory=list, max_length=20)
    knowledge_bases: list[KnowledgeBaseName] = Field(
        default_factory=list,
        description="Hubs whose published articles are synced (credentials: configuration).",
    )

    _check_topics = field_validator("topics")(_unique_topic_names)


class CopilotPatch(Strict):
    name: str | None = Field(None, min_length=1, max_length=100)
    language: str | None = Field(None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    messages: BehaviourMessagesPatch | None = None
    topics: list[Topic] | None = Field(None, max_length=MAX_TOPICS)
    no_match_threshold: int | None = Field(None, ge=1, le=10)
    websites: list[WebsiteSource] | None = Field(None, max_length=20)
    knowledge_bases: list[KnowledgeBaseName] | None = None

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


PendingAction = Literal["confirm_start_over", "choose_topic"]


class DialogContext(BaseModel):
    pending: PendingAction | None = None
    choices: list[str] = Field(default_factory=list)
    pending_text: str | None = None
    no_match_count: int = 0
    last_topic: str | None = None
    topics_visited: list[str] = Field(default_factory=list)
    history_start_seq: int = 0


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


class StartConversationRequest(Strict):
    locale: str | None = Field(None, max_length=35)


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
