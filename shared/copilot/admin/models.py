"""Pydantic models of admin: requests, responses and stored records."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from copilot.handoff.models import HubSettings
from copilot.limits import Rate
from copilot.schema import HTTP_URL_PATTERN, MAX_MESSAGE_CHARS, Strict

MAX_TOPICS = 200
MAX_ALLOWED_ORIGINS = 20
ANY_ORIGIN = "*"
# What a browser sends in its Origin header: scheme, host (a name, IPv4 or [IPv6]) and a port.
ORIGIN_PATTERN = r"^https?://([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$"
_DEFAULT_PORTS = {"http": 80, "https": 443}


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


MIN_ANSWER_BAR, MAX_ANSWER_BAR = 0.2, 0.95
ANSWER_BAR_DESCRIPTION = (
    "The confidence a knowledge answer needs at medium strictness, calibrated on this "
    "copilot's own labelled questions (`copilot eval --calibrate`, or POST "
    "/admin/copilots/{id}/calibration); low and high move it down and up by the default "
    "spacing. null: the default bar."
)

MAX_MARGIN_WEIGHT = 1.0
MARGIN_WEIGHT_DESCRIPTION = (
    "How much the best document's lead over the next document counts toward the answer "
    "gate (0 to 1; the lead counts up to 0.2). Knowledge of many alike entries, such as an "
    "FAQ, gains from it: a question none of them answers fits several about equally. Set "
    "with answer_bar by the calibration (`copilot eval --calibrate`). null: 0."
)

NULL_REFUSED = "send a value or leave the field out (null is not allowed here)"


def _null_clears_only(clearable: tuple[str, ...]) -> Any:
    """A patch model's rule for an explicit null: it clears the fields in ``clearable``; any
    other field has no empty value (a stored null would break every later read of the copilot),
    so null there is a 400. The JSON schema says the same: only those fields are nullable."""

    def refuse(value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in clearable:
            raise ValueError(NULL_REFUSED)
        return value

    def schema(schema: dict[str, Any]) -> None:
        for name, prop in schema.get("properties", {}).items():
            if prop.get("default", ...) is None:
                del prop["default"]  # a field left out changes nothing; None is no JSON value
            if name in clearable or "anyOf" not in prop:
                continue
            kept = [s for s in prop.pop("anyOf") if s != {"type": "null"}]
            prop.update(kept[0] if len(kept) == 1 else {"anyOf": kept})

    return field_validator("*")(refuse), schema


_refuse_null_message, _messages_schema = _null_clears_only(())


class BehaviourMessagesPatch(Strict):
    """The messages to change; a message left out keeps its text."""

    model_config = ConfigDict(json_schema_extra=_messages_schema)

    greeting: str | None = Field(None, min_length=1, max_length=2000)
    start_over: str | None = Field(None, min_length=1, max_length=2000)
    conversation_start: str | None = Field(None, min_length=1, max_length=2000)
    escalate_link: str | None = Field(None, min_length=1, max_length=2000)
    no_match: str | None = Field(None, min_length=1, max_length=2000)
    multiple_topics_matched: str | None = Field(None, min_length=1, max_length=2000)
    reset_conversation: str | None = Field(None, min_length=1, max_length=2000)
    thank_you: str | None = Field(None, min_length=1, max_length=2000)
    goodbye: str | None = Field(None, min_length=1, max_length=2000)

    _null = _refuse_null_message


# Stripped, then 1-200 characters: the pattern says "not blank" to readers of the schema.
TriggerPhrase = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=r"\S")
]


class Topic(Strict):
    name: str = Field(min_length=1, max_length=100)
    trigger_phrases: list[TriggerPhrase] = Field(min_length=1, max_length=100)
    response: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    handoff: bool = Field(
        False, description="After its response, hand the conversation to a live agent."
    )
    agent_note: str | None = Field(
        None,
        max_length=1000,
        description="Private note to the agent when this topic hands off (va_AgentMessage).",
    )


KnowledgeBaseName = Literal["servicenow", "salesforce"]


Strictness = Literal["low", "medium", "high"]


class WebsiteSource(Strict):
    """A public website the copilot learns from: crawled, and re-crawled on a schedule."""

    start_urls: list[str] = Field(
        min_length=1,
        max_length=20,
        json_schema_extra={"items": {"type": "string", "pattern": HTTP_URL_PATTERN}},
    )
    max_depth: int = Field(3, ge=0, le=10)
    max_pages: int = Field(200, ge=1, le=2000)

    @field_validator("start_urls")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not re.match(HTTP_URL_PATTERN, url):
                raise ValueError(f"not an http(s) URL: {url!r}")
        return urls


class RateLimit(Strict):
    """A token bucket: ``burst`` requests at once, refilled at ``per_minute`` (copilot.limits)."""

    model_config = ConfigDict(frozen=True)  # shared as a default

    burst: int = Field(ge=1, le=100_000, description="Requests admitted at once.")
    per_minute: float = Field(gt=0, le=100_000, description="Sustained requests a minute.")

    @property
    def rate(self) -> Rate:
        return Rate(self.burst, self.per_minute)


class Limits(Strict):
    """Rate limits of the public chat API (answered with 429 and Retry-After). Client means
    the caller's IP address; a conversation's buckets are per conversation token."""

    model_config = ConfigDict(frozen=True)

    starts_per_client: RateLimit = Field(
        RateLimit(burst=60, per_minute=10),
        description="Conversation starts with this copilot from one client "
        "(default: 60 at once, then 10 a minute: 600 an hour).",
    )
    posts_per_client: RateLimit = Field(
        RateLimit(burst=300, per_minute=300),
        description="Customer messages to this copilot's conversations from one client "
        "(default: 300 at once, then 300 a minute; generous, for customers behind one NAT).",
    )
    posts_per_conversation: RateLimit = Field(
        RateLimit(burst=20, per_minute=30),
        description="Customer messages in one conversation (default: 20 at once, then 30 a "
        "minute).",
    )
    polls_per_conversation: RateLimit = Field(
        RateLimit(burst=30, per_minute=120),
        description="Message polls of one conversation (default: 30 at once, then 120 a "
        "minute: a poll every 0.5 s).",
    )
    handoff_interval_seconds: int = Field(
        60,
        ge=0,
        le=86_400,
        description="A request for a person within this many seconds of the conversation's "
        "last one is answered without a new request to the hub (default 60; 0: none).",
    )


def normalize_origin(value: str) -> str:
    """``value`` as browsers send it in the Origin header: lower case, no default port; a
    ValueError that says what is wrong otherwise (e.g. a path, or a scheme that is no web one)."""
    origin = value.strip().lower()
    if not re.fullmatch(ORIGIN_PATTERN, origin):
        raise ValueError(
            f"not an origin: {value[:100]!r}; send scheme://host[:port] with http or https and "
            "nothing after (no path, not even '/'), e.g. 'https://www.example.com' (an "
            "internationalized host in its xn-- form)"
        )
    scheme, _, rest = origin.partition("://")
    host, colon, port = rest.rpartition(":")
    if not colon or rest.endswith("]"):  # no port ("[::1]" holds colons, no port)
        return origin
    number = int(port)
    if not 1 <= number <= 65535:
        raise ValueError(f"not an origin: {value[:100]!r} (port out of range)")
    return (
        f"{scheme}://{host}" if number == _DEFAULT_PORTS[scheme] else f"{scheme}://{host}:{number}"
    )


def _allowed_origins(origins: list[str] | None) -> list[str] | None:
    """Origins normalized and de-duplicated (order kept); '*' only on its own."""
    if origins is None:
        return None
    if ANY_ORIGIN in origins:
        if len(origins) != 1:
            raise ValueError("'*' (any origin) is the only value when sent; drop the others")
        return [ANY_ORIGIN]
    return list(dict.fromkeys(normalize_origin(o) for o in origins))


ALLOWED_ORIGINS_DESCRIPTION = (
    "Web pages (origins: scheme://host[:port], http or https, no path) whose scripts may call "
    "this copilot's chat API from a browser, e.g. the site embedding the web chat: the API "
    "answers their CORS preflights and sends Access-Control-Allow-Origin to them only. Empty "
    f"(the default): no browser page may. At most {MAX_ALLOWED_ORIGINS}. ['*'] lets any web "
    "page run this copilot's chat in its visitors' browsers (its cost, its rate limits, your "
    "brand on another site): only for a public demo. Servers and apps that send no Origin "
    "header are not concerned."
)


class Appearance(Strict):
    """How the web chat widget shows the copilot (read by browsers: GET
    /copilots/{copilot_id}/widget-config)."""

    color: str = Field(
        "#1f6feb",
        pattern=r"^#[0-9A-Fa-f]{6}$",
        description="Accent colour of the launcher, header and customer bubbles (#RRGGBB).",
    )
    avatar_url: str | None = Field(
        None,
        max_length=2000,
        pattern=r"^https://[^/\s]+\S*$",
        description="An https image shown beside the copilot's messages; null: none.",
    )
    title: str | None = Field(
        None,
        min_length=1,
        max_length=60,
        pattern=r"\S",
        description="The chat panel's title; null: the copilot's name.",
    )

    @field_validator("color")
    @classmethod
    def _lower(cls, color: str) -> str:
        return color.lower()


class AnalyticsSettings(Strict):
    """What the copilot records about its conversations (docs/analytics.md)."""

    model_config = ConfigDict(frozen=True)

    csat_survey: bool = Field(
        True,
        description="Ask the customer to rate the conversation (1-5, with an optional comment) "
        "when they thank or say goodbye, and after an agent ends a hand-off.",
    )
    abandon_after_minutes: int = Field(
        30,
        ge=1,
        le=24 * 60,
        description="A conversation whose last copilot reply left the customer unhelped (no "
        "answer, or an answer never confirmed) counts as abandoned after this long without "
        "a customer message.",
    )
    redact_patterns: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="Regular expressions (Python syntax) of what else to redact from recorded "
        "questions, comments and exported transcripts, besides emails, phone numbers and card "
        "numbers (always redacted): e.g. account numbers, 'ACC-\\d{6}'.",
    )

    @field_validator("redact_patterns")
    @classmethod
    def _valid_patterns(cls, patterns: list[str]) -> list[str]:
        from copilot.analytics.redaction import validate_patterns

        return validate_patterns(patterns, field="analytics.redact_patterns")


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
    answer_bar: float | None = Field(
        None,
        ge=MIN_ANSWER_BAR,
        le=MAX_ANSWER_BAR,
        description=ANSWER_BAR_DESCRIPTION,
    )
    answer_margin_weight: float | None = Field(
        None, ge=0.0, le=MAX_MARGIN_WEIGHT, description=MARGIN_WEIGHT_DESCRIPTION
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
    limits: Limits = Field(Limits(), description="Rate limits of the chat API (see Limits).")
    allowed_origins: list[str] = Field(
        default_factory=list,
        max_length=MAX_ALLOWED_ORIGINS,
        description=ALLOWED_ORIGINS_DESCRIPTION,
        json_schema_extra={"items": {"type": "string", "pattern": rf"^\*$|{ORIGIN_PATTERN}"}},
    )
    appearance: Appearance = Field(
        default_factory=Appearance, description="How the web chat widget shows the copilot."
    )
    analytics: AnalyticsSettings = Field(
        default_factory=AnalyticsSettings,
        description="Customer surveys, abandonment and redaction (see AnalyticsSettings).",
    )

    _check_topics = field_validator("topics")(_unique_topic_names)
    _check_origins = field_validator("allowed_origins")(_allowed_origins)


# Fields a null resets to their default (the service stores what the patch holds after it).
_NULL_RESETS = ("allowed_origins", "appearance", "analytics")
_refuse_null_patch, _patch_schema = _null_clears_only(
    ("instructions", "hub", "answer_bar", "answer_margin_weight", *_NULL_RESETS)
)


class CopilotPatch(Strict):
    """Only the fields sent change; messages merge with the current ones. null clears a field
    that may be empty (instructions; hub: null removes the hand-off) and resets allowed_origins
    and appearance to their defaults; any other field has no empty value, so null there is a
    400: send a value or leave the field out."""

    model_config = ConfigDict(json_schema_extra=_patch_schema)

    name: str | None = Field(None, min_length=1, max_length=100)
    language: str | None = Field(None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    messages: BehaviourMessagesPatch | None = None
    topics: list[Topic] | None = Field(None, max_length=MAX_TOPICS)
    no_match_threshold: int | None = Field(None, ge=1, le=10)
    strictness: Strictness | None = None
    answer_bar: float | None = Field(
        None,
        ge=MIN_ANSWER_BAR,
        le=MAX_ANSWER_BAR,
        description="Replaces the calibrated answer bar; null goes back to the default bar.",
    )
    answer_margin_weight: float | None = Field(
        None,
        ge=0.0,
        le=MAX_MARGIN_WEIGHT,
        description="Replaces the calibrated margin weight; null goes back to 0.",
    )
    instructions: str | None = Field(
        None, max_length=2000, description="Replaces the instructions; null removes them."
    )
    websites: list[WebsiteSource] | None = Field(None, max_length=20)
    knowledge_bases: list[KnowledgeBaseName] | None = None
    hub: HubSettings | None = Field(
        None, description="Replaces the hub settings; null removes them."
    )
    limits: Limits | None = Field(
        None, description="Replaces the limits (fields left out: defaults)."
    )
    allowed_origins: list[str] | None = Field(
        None,
        max_length=MAX_ALLOWED_ORIGINS,
        description="Replaces the allowed origins; null resets them to the default, [] (no "
        "browser page may call). " + ALLOWED_ORIGINS_DESCRIPTION,
        json_schema_extra={"items": {"type": "string", "pattern": rf"^\*$|{ORIGIN_PATTERN}"}},
    )
    appearance: Appearance | None = Field(
        None,
        description="Replaces the appearance (fields left out: defaults); null resets it to the "
        "default.",
    )

    analytics: AnalyticsSettings | None = Field(
        None,
        description="Replaces the analytics settings (fields left out: defaults); null resets "
        "them to the default.",
    )

    _null = _refuse_null_patch
    _check_origins = field_validator("allowed_origins")(_allowed_origins)

    @model_validator(mode="after")
    def _null_resets(self) -> CopilotPatch:
        # Still "sent" (in model_fields_set): the service applies the default like a value.
        if "allowed_origins" in self.model_fields_set and self.allowed_origins is None:
            self.allowed_origins = []
        if "appearance" in self.model_fields_set and self.appearance is None:
            self.appearance = Appearance()
        if "analytics" in self.model_fields_set and self.analytics is None:
            self.analytics = AnalyticsSettings()
        return self

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


class WidgetConfig(BaseModel):
    """What the web chat widget reads of a copilot, without the admin key: public."""

    copilot_id: str
    name: str
    language: str
    appearance: Appearance

    @classmethod
    def of(cls, copilot: Copilot) -> WidgetConfig:
        return cls(
            copilot_id=copilot.copilot_id,
            name=copilot.name,
            language=copilot.language,
            appearance=copilot.appearance,
        )
