"""Pydantic models of handoff: requests, responses and stored records."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, JsonValue, field_validator, model_validator

from copilot.schema import HTTP_URL_PATTERN, Role, Strict, utcnow

# One adapter module each under handoff/hubs/ (docs/hubs/); issue 16's hubs join this list.
HubType = Literal[
    "generic", "genesys", "liveperson", "connect", "servicenow", "salesforce", "dynamics365"
]


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


_SECRET_REF = (
    "Name of the hub's secret, resolved at run time from the environment variable "
    "COPILOT_HUB_SECRET_<REF> (or the SSM parameter <prefix>/<REF>)."
)
_OVERRIDE = "Override for a private endpoint or the local emulator (http or https); "


class HubSettingsBase(Strict):
    """What every hub's settings share: routing, hours, the note and the end. Holds no secret."""

    secret_ref: str = Field(pattern=r"^[A-Za-z0-9_]{1,64}$", description=_SECRET_REF)
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

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r} (use an IANA name)") from None
        return zone


def _http_url(url: str | None) -> str | None:
    if url is not None and not re.match(HTTP_URL_PATTERN, url):
        raise ValueError("not an http(s) URL")
    return url


def _url_field(description: str, *, required: bool = False) -> Any:
    pattern: dict[str, JsonValue] = {"pattern": HTTP_URL_PATTERN}
    if required:
        return Field(max_length=2000, description=description, json_schema_extra=pattern)
    return Field(
        None, max_length=2000, description=_OVERRIDE + description, json_schema_extra=pattern
    )


class GenericHubSettings(HubSettingsBase):
    """Our own signed webhook contract (docs/handoff-generic-hub.md). The secret is the shared
    HMAC key."""

    type: Literal["generic"] = Field(
        description="The hub's protocol: 'generic' (docs/handoff-generic-hub.md)."
    )
    url: str = _url_field("Where hand-off events are POSTed (http or https).", required=True)

    _check_url = field_validator("url")(_http_url)


class GenesysHubSettings(HubSettingsBase):
    """Genesys Cloud Open Messaging (docs/hubs/genesys.md). The secret is JSON:
    ``{"client_id", "client_secret", "webhook_secret"}`` (an OAuth client-credentials grant and
    the integration's outbound webhook signature secret)."""

    type: Literal["genesys"]
    region: str = Field(
        "mypurecloud.com",
        pattern=r"^[a-z0-9.-]{3,100}$",
        description="The org's region domain: mypurecloud.com, mypurecloud.ie, "
        "euw2.pure.cloud... (API at api.<region>, login at login.<region>).",
    )
    integration_id: str = Field(
        pattern=r"^[0-9a-fA-F-]{36}$", description="The Open Messaging integration's id."
    )
    api_base: str | None = _url_field("instead of https://api.<region>.")
    login_base: str | None = _url_field("instead of https://login.<region>.")
    inactivity_minutes: int = Field(
        30,
        ge=1,
        le=1440,
        description="A hand-off with no agent activity this long ends and the copilot resumes "
        "(Genesys's webhook has no 'ended' event: docs/hubs/genesys.md).",
    )

    _check_urls = field_validator("api_base", "login_base")(_http_url)


class LivePersonHubSettings(HubSettingsBase):
    """LivePerson Messaging through the Connector API (docs/hubs/liveperson.md). The secret is
    JSON: ``{"client_id", "client_secret"}`` of the connector app installation (the client
    secret also signs LivePerson's webhooks)."""

    type: Literal["liveperson"]
    account_id: str = Field(
        pattern=r"^[0-9]{1,20}$", description="The LivePerson account (site) id."
    )
    skill_id: str | None = Field(
        None, pattern=r"^-?[0-9]{1,20}$", description="The skill conversations are routed to."
    )
    csds_base: str | None = _url_field(
        "instead of https://api.liveperson.net (the domain lookup, CSDS)."
    )

    _check_urls = field_validator("csds_base")(_http_url)


class ConnectHubSettings(HubSettingsBase):
    """Amazon Connect chat (docs/hubs/amazon-connect.md). AWS credentials come from the
    function's role; ``secret_ref`` is not used."""

    type: Literal["connect"]
    secret_ref: str | None = Field(  # type: ignore[assignment]
        None, pattern=r"^[A-Za-z0-9_]{1,64}$", description="Not used: the function's IAM role."
    )
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]$", description="e.g. us-east-1.")
    instance_id: str = Field(pattern=r"^[0-9a-fA-F-]{36}$", description="The Connect instance.")
    contact_flow_id: str = Field(
        pattern=r"^[0-9a-fA-F-]{36}$", description="The inbound chat flow that routes the chat."
    )
    topic_arn: str = Field(
        pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]{1,256}$",
        description="The SNS topic chat transcripts stream to (StartContactStreaming); the "
        "hand-off function's /hooks/connect/<copilot id> is subscribed to it.",
    )
    endpoint_url: str | None = _url_field(
        "instead of the AWS endpoints of Connect, the Participant Service and SNS."
    )

    _check_urls = field_validator("endpoint_url")(_http_url)


class ServiceNowHubSettings(HubSettingsBase):
    """ServiceNow Virtual Agent, Bot Integration API (docs/hubs/servicenow.md): the copilot is
    the bot. The secret is JSON: the credentials we call ServiceNow with and those ServiceNow
    calls us with (see the doc)."""

    type: Literal["servicenow"]
    instance_url: str = _url_field("The instance: https://<name>.service-now.com.", required=True)

    _check_urls = field_validator("instance_url")(_http_url)


class SalesforceHubSettings(HubSettingsBase):
    """Salesforce Messaging for In-App and Web (docs/hubs/salesforce.md). Unauthenticated
    access: ``secret_ref`` is not used."""

    type: Literal["salesforce"]
    secret_ref: str | None = Field(  # type: ignore[assignment]
        None, pattern=r"^[A-Za-z0-9_]{1,64}$", description="Not used (unauthenticated access)."
    )
    scrt_url: str = _url_field(
        "The org's Messaging API host: https://<my domain>.my.salesforce-scrt.com.", required=True
    )
    org_id: str = Field(pattern=r"^00D[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$", description="Org id.")
    deployment: str = Field(
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,79}$",
        description="The Embedded Service deployment's API name (esDeveloperName).",
    )

    _check_urls = field_validator("scrt_url")(_http_url)


class Dynamics365HubSettings(HubSettingsBase):
    """Dynamics 365 Contact Center through a custom channel over Direct Line 3.0
    (docs/hubs/dynamics365.md). The secret is JSON: the channel's Direct Line secret."""

    type: Literal["dynamics365"]
    directline_url: str | None = _url_field(
        "instead of https://directline.botframework.com/v3/directline (a regional endpoint)."
    )

    _check_urls = field_validator("directline_url")(_http_url)


HubSettings = Annotated[
    GenericHubSettings
    | GenesysHubSettings
    | LivePersonHubSettings
    | ConnectHubSettings
    | ServiceNowHubSettings
    | SalesforceHubSettings
    | Dynamics365HubSettings,
    Field(discriminator="type"),
]


HandoffEventName = Literal[
    "handoff_requested",
    "handoff_queued",
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


# "noop": an event that only takes its place in the hub's numbering (e.g. the hub echoing the
# customer's own message), so the agent's events after it are not held for a gap.
# "queued": where the customer is in the hub's queue (``text``: "You are number 3 in the
# queue; the wait is about 4 minutes."), shown to the customer while they wait.
HubEventKind = Literal[
    "agent_joined",
    "agent_message",
    "agent_typing",
    "agent_left",
    "ended",
    "accepted",
    "rejected",
    "noop",
    "queued",
]


class HubEvent(BaseModel):
    """A hub's webhook (or pulled) event in neutral form."""

    kind: HubEventKind
    event_id: str = Field(description="The hub's id: retries carry the same one.")
    conversation_id: str | None = Field(
        None, description="Ours, when the hub echoes it; else found from hub_conversation_id."
    )
    hub_conversation_id: str | None = Field(None, description="The hub's own conversation id.")
    handoff_id: str | None = None
    sequence: int | None = Field(None, description="The hub's order within the hand-off.")
    text: str | None = None
    agent: Agent | None = None
    reason: str | None = None
    received_at: datetime = Field(default_factory=utcnow)

    @model_validator(mode="after")
    def _names_a_conversation(self) -> HubEvent:
        if self.conversation_id is None and self.hub_conversation_id is None:
            raise ValueError("an event names conversation_id or hub_conversation_id")
        return self


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
    inactivity_minutes: int | None = Field(
        None,
        description="The hub sends no end event we can count on (Genesys): with no hub event "
        "this long, the hand-off ends on the customer's next poll and the copilot resumes.",
    )
    hub_active_at: datetime | None = Field(None, description="When the hub's last event came.")
    hub_type: str | None = Field(
        None, description="The hub it went to (what a customer's poll may ask of it)."
    )
    pull: HubPullState | None = Field(
        None, description="Hubs whose agent events are pulled (Salesforce, Dynamics 365)."
    )


class HubPullState(BaseModel):
    """The pull job of a hand-off whose hub has no webhook (HubAdapter.pull_window > 0)."""

    state: dict[str, Any] = Field(
        default_factory=dict,
        description="What the adapter keeps between pulls: its cursor (Last-Event-ID, "
        "watermark), a token it refreshed.",
    )
    lease_until: datetime | None = Field(None, description="A job is reading until then.")
    pulled_at: datetime | None = Field(None, description="When the last job ended.")
    jobs: int = 0


class HubPullBatch(BaseModel):
    """Events a pull read, and the adapter's state to keep after them (its cursor)."""

    events: list[HubEvent] = Field(default_factory=list)
    state: dict[str, Any] = Field(default_factory=dict, description="Keys to store (merged).")


class HubReceipt(BaseModel):
    """What a hub answered a start with: its conversation id, and the per-conversation state
    its adapter needs for later calls (tokens, participant ids, cursors). Kept with the outbox
    cursor; adapters may return a new one from any call (e.g. a renewed token)."""

    hub_conversation_id: str = Field(min_length=1, max_length=500)
    state: dict[str, Any] = Field(default_factory=dict)


class HubLink(BaseModel):
    """A hub's conversation id -> ours (and the hand-off it belongs to), for webhooks that name
    only the hub's id. Written with the receipt, in the same write; never overwritten."""

    key: str
    conversation_id: str
    handoff_id: str

    @staticmethod
    def key_of(hub_type: str, copilot_id: str, hub_conversation_id: str) -> str:
        return f"hubconv#{hub_type}#{copilot_id}#{hub_conversation_id}"


class HubOutboxCursor(BaseModel):
    """How far the outbox has delivered this conversation's messages to the hub."""

    delivered_seq: int = 0
    started: str | None = Field(None, description="The hand-off whose start the hub accepted.")
    receipt: HubReceipt | None = Field(None, description="The hub's answer to that start.")


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
    receipt: HubReceipt | None = Field(
        None, description="The started hand-off's receipt (None for a start)."
    )
    created_at: datetime = Field(default_factory=utcnow)

    def started_receipt(self, hub: str) -> HubReceipt:
        """The receipt of the start a message or an end follows; HubRejectedError when there
        is none (the hub never answered the start: nothing to send to)."""
        if self.receipt is None:
            from copilot.errors import HubRejectedError

            raise HubRejectedError(f"no {hub} conversation to send to", reason="not_started")
        return self.receipt


class WebhookResult(BaseModel):
    event_id: str
    status: Literal["applied", "held", "duplicate", "ignored"]


class WebhookAck(BaseModel):
    results: list[WebhookResult]
