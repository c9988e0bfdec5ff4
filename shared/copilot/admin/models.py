"""Pydantic models of admin: requests, responses and stored records."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from copilot.handoff.models import HubSettings
from copilot.schema import MAX_MESSAGE_CHARS, Strict

MAX_TOPICS = 200


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
