"""Genesys Cloud Open Messaging (docs/hubs/genesys.md): the copilot plays the external messaging
service. A hand-off is the customer's first inbound Open message (its context as participant
data in ``channel.metadata.customAttributes``, the summary and transcript as its text); the
customer's later messages are further inbound messages; the agent's messages and typing come
back on the integration's outbound webhook, signed ``X-Hub-Signature-256: sha256=<base64
HMAC-SHA256 of the raw body>`` with the integration's secret.

Each hand-off is its own Open Messaging user, ``channel.from.id = "<our conversation id>:<hand-off
id>"``: Genesys keeps one conversation per user while it is active, so a retried start lands in
the same Genesys conversation, a later hand-off opens a new one, and the webhook's
``channel.to.id`` names our conversation and hand-off directly.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests
from pydantic import BaseModel, ConfigDict, Field

from copilot.errors import ForbiddenError, HubRejectedError
from copilot.handoff.hubs.credentials import parse_credentials, signing_key
from copilot.handoff.hubs.http import HubHttp, json_of
from copilot.handoff.hubs.oauth import TokenCache, client_credentials
from copilot.handoff.hubs.signatures import check_hmac_header
from copilot.handoff.models import (
    Agent,
    GenesysHubSettings,
    HandoffContext,
    HubCommand,
    HubEvent,
    HubReceipt,
    HubSettings,
    TranscriptEntry,
)
from copilot.ports import HubAdapter, InboundRequest
from copilot.schema import MAX_MESSAGE_CHARS, parse_object

log = logging.getLogger(__name__)

HUB = "genesys"
SIGNATURE_HEADER = "X-Hub-Signature-256"
# Our own bounds (docs/hubs/genesys.md §3: Genesys publishes none for Open Messaging; the
# emulator enforces the same numbers, so a test fails when the adapter exceeds them).
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_CHARS = 2000
MAX_TEXT_CHARS = 4000
STALE_SECONDS = 600  # channel.time this far from our clock: refused (a replay) [I]
LEFT_TEXT = "The customer has left the conversation."
_KEY = re.compile(r"[^A-Za-z0-9_]")
_ROLES = {"customer": "Customer", "copilot": "Copilot", "agent": "Agent", "system": "System"}

_TOKENS = TokenCache()  # per process: every adapter instance shares the org's token


class GenesysCredentials(BaseModel):
    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)
    webhook_secret: str = Field(min_length=1)


# --- the outbound webhook (Genesys -> us): "Outbound Open NormalizedMessage Format" ----------


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Recipient(_Loose):
    id: str | None = Field(None, max_length=500)
    nickname: str | None = Field(None, max_length=500)


class _Channel(_Loose):
    id: str | None = Field(None, max_length=200)
    to: _Recipient
    from_: _Recipient | None = Field(None, alias="from")
    time: str | None = Field(None, max_length=100)
    messageId: str | None = Field(None, max_length=500)


class _Typing(_Loose):
    type: str | None = None
    duration: int | None = None


class _Event(_Loose):
    eventType: str
    typing: _Typing | None = None


class _Attachment(_Loose):
    url: str | None = Field(None, max_length=2000)
    filename: str | None = Field(None, max_length=500)


class _Content(_Loose):
    contentType: str | None = None
    attachment: _Attachment | None = None


class OutboundMessage(_Loose):
    id: str = Field(min_length=1, max_length=500, description="Genesys's message id.")
    channel: _Channel
    type: str = Field(max_length=50)
    text: str | None = Field(None, max_length=MAX_MESSAGE_CHARS * 4)
    content: list[_Content] = Field(default_factory=list, max_length=50)
    events: list[_Event] = Field(default_factory=list, max_length=50)
    direction: str | None = None
    conversationId: str | None = Field(None, max_length=200)


def customer_id(conversation_id: str, handoff_id: str) -> str:
    """The Open Messaging user of one hand-off (``channel.from.id``)."""
    return f"{conversation_id}:{handoff_id}"


class GenesysHub(HubAdapter):
    name = HUB

    def __init__(self, timeout: float = 10) -> None:
        self._http = HubHttp("Genesys", timeout)

    # --- inbound ---------------------------------------------------------------------------

    def verify(
        self, request: InboundRequest, hub: HubSettings | None, secret: str, now: datetime
    ) -> None:
        key = signing_key(hub is not None, secret, GenesysCredentials, "webhook_secret", HUB)
        check_hmac_header(request, SIGNATURE_HEADER, key)
        # The scheme signs no timestamp; the body's channel.time is signed with it. Genesys
        # gives up on a delivery 85 s after the first try [R S3]: a much older one is a replay.
        sent = _sent_at(request.body)
        if sent is not None and abs((now - sent).total_seconds()) > STALE_SECONDS:
            raise ForbiddenError("the delivery's channel.time is too far from our clock")

    def parse(self, request: InboundRequest, hub: HubSettings) -> list[HubEvent]:
        message = parse_object(request.body, OutboundMessage, what="the body (an open message)")
        if message.direction == "Inbound" or not message.channel.to.id:
            return []  # the echo of a customer's message, or nothing of ours
        conversation_id, _, handoff_id = message.channel.to.id.partition(":")
        if not conversation_id:
            return []  # not an Open user of ours
        base: dict[str, Any] = {
            "conversation_id": conversation_id,
            "handoff_id": handoff_id or None,
            "hub_conversation_id": message.conversationId,
        }  # no agent: the webhook names the integration, never the agent [R S2]
        if message.type == "Text":
            text = _text_of(message)
            if not text:
                return []
            return [HubEvent(kind="agent_message", event_id=message.id, text=text, **base)]
        if message.type == "Event":
            return [
                HubEvent(kind="agent_typing", event_id=f"{message.id}:{i}", **base)
                for i, event in enumerate(message.events)
                if event.eventType == "Typing"
            ]
        return []  # receipts of the customer's messages, structured messages...

    # --- outbound --------------------------------------------------------------------------

    def send(self, hub: HubSettings, secret: str, command: HubCommand) -> HubReceipt | None:
        assert isinstance(hub, GenesysHubSettings)
        credentials = parse_credentials(secret, GenesysCredentials, HUB)
        if command.kind == "start":
            return self._start(hub, credentials, command)
        if command.kind == "message":
            self._inbound(hub, credentials, command, command.text or "")
        else:
            self._end(hub, credentials, command)
        return None

    def _start(
        self, hub: GenesysHubSettings, credentials: GenesysCredentials, command: HubCommand
    ) -> HubReceipt:
        ctx = command.context
        assert ctx is not None, "a start command carries the context"
        customer: dict[str, str] = {}
        name = _first(ctx.variables, "name", "nickname", "customer_name", "first_name")
        if name:
            customer["nickname"] = name[:100]
        answer = self._inbound(
            hub,
            credentials,
            command,
            start_text(ctx, command.transcript),
            customer=customer,
            attributes=custom_attributes(hub, command),
            prefetch=True,
        )
        from_id = customer_id(command.conversation_id, command.handoff_id)
        found = answer if isinstance(answer, dict) else {}
        hub_id, message_id = found.get("conversationId"), found.get("id")
        state = {"from_id": from_id, "message_id": message_id}
        return HubReceipt(hub_conversation_id=str(hub_id or from_id), state=state)

    def _end(
        self, hub: GenesysHubSettings, credentials: GenesysCredentials, command: HubCommand
    ) -> None:
        """Open Messaging has no inbound 'left' event (``Typing`` only [R S4]): disconnect the
        customer's participant (the agent sees the customer leave); without the permission
        for it, or before Genesys told us its conversation id, a last text says so instead."""
        receipt = command.receipt
        conversation = receipt.hub_conversation_id if receipt else None
        from_id = customer_id(command.conversation_id, command.handoff_id)
        if conversation and conversation != from_id:
            try:
                if self._disconnect_customer(hub, credentials, conversation):
                    return
            except HubRejectedError as e:
                log.warning("Genesys did not let us disconnect the customer (%s)", e)
        self._inbound(hub, credentials, command, LEFT_TEXT)

    def _disconnect_customer(
        self, hub: GenesysHubSettings, credentials: GenesysCredentials, conversation: str
    ) -> bool:
        url = _conversation_url(hub, conversation)
        customers = [
            p for p in self._participants(hub, credentials, url) if p.purpose == "customer"
        ]
        for participant in customers:
            if participant.state != "disconnected":
                pid = quote(participant.id, safe="")
                body = {"state": "disconnected"}
                self._call(hub, credentials, "PATCH", f"{url}/participants/{pid}", json=body)
        return bool(customers)

    def _participants(
        self, hub: GenesysHubSettings, credentials: GenesysCredentials, url: str
    ) -> list[Participant]:
        answer = json_of(self._call(hub, credentials, "GET", url), self._http.hub)
        found = answer.get("participants") if isinstance(answer, dict) else None
        participants = []
        for item in found if isinstance(found, list) else []:
            try:
                participants.append(Participant.model_validate(item))
            except ValueError:
                continue  # a participant we cannot read (no id) tells us nothing
        return participants

    supports_poll = True  # the webhook never names the agent nor tells the end

    def poll(self, hub: HubSettings, secret: str, receipt: HubReceipt) -> list[HubEvent]:
        """The hand-off's agent events the webhook never sends, read from the conversation's
        participants (``GET /api/v2/conversations/messages/{id}`` [R S4]): an agent connected
        (joined, with their display name), an agent disconnected (left) and every participant
        but the routing ones disconnected (ended). Ids are stable, so asking again repeats
        nothing the copilot applied. Empty before Genesys told us its conversation id."""
        assert isinstance(hub, GenesysHubSettings)
        conversation_id, _, handoff_id = str(receipt.state.get("from_id") or "").partition(":")
        conversation = receipt.hub_conversation_id
        if not conversation_id or conversation == receipt.state.get("from_id"):
            return []
        credentials = parse_credentials(secret, GenesysCredentials, HUB)
        url = _conversation_url(hub, conversation)
        participants = self._participants(hub, credentials, url)
        base: dict[str, Any] = {
            "conversation_id": conversation_id,
            "handoff_id": handoff_id or None,
            "hub_conversation_id": conversation,
        }
        people = [p for p in participants if p.purpose in ("agent", "customer", "user", "external")]
        ended = bool(people) and all(p.state == "disconnected" for p in people)
        events = []
        for p in participants:
            if p.purpose != "agent" or p.state not in ("connected", "disconnected"):
                continue
            agent = Agent(id=p.user.id if p.user else p.id, name=p.name or "Agent")
            key = f"{conversation}:{p.id}"
            events.append(
                HubEvent(kind="agent_joined", event_id=f"{key}:joined", agent=agent, **base)
            )
            if p.state == "disconnected" and not ended:  # (when all left, the end says it)
                events.append(
                    HubEvent(kind="agent_left", event_id=f"{key}:left", agent=agent, **base)
                )
        if ended:
            events.append(HubEvent(kind="ended", event_id=f"{conversation}:ended", **base))
        return events

    def _inbound(
        self,
        hub: GenesysHubSettings,
        credentials: GenesysCredentials,
        command: HubCommand,
        text: str,
        *,
        customer: dict[str, str] | None = None,
        attributes: dict[str, str] | None = None,
        prefetch: bool = False,
    ) -> Any:
        """One inbound open message from the hand-off's customer; ``channel.messageId`` is
        our event id, the same on every retry."""
        channel: dict[str, Any] = {
            "from": {
                "id": customer_id(command.conversation_id, command.handoff_id),
                "idType": "Opaque",
                **(customer or {}),
            },
            "time": _iso(command.created_at),
            "messageId": command.event_id,
        }
        if attributes:
            channel["metadata"] = {"customAttributes": attributes}
        integration = quote(hub.integration_id, safe="")
        url = f"{_api(hub)}/api/v2/conversations/messages/{integration}/inbound/open/message"
        params = {"prefetchConversationId": "true"} if prefetch else None
        body = {"channel": channel, "text": text[:MAX_TEXT_CHARS]}
        response = self._call(hub, credentials, "POST", url, json=body, params=params)
        return json_of(response, self._http.hub) if prefetch else None

    def _call(
        self,
        hub: GenesysHubSettings,
        credentials: GenesysCredentials,
        method: str,
        url: str,
        **kwargs: Any,
    ) -> requests.Response:
        login = (hub.login_base or f"https://login.{hub.region}").rstrip("/")

        def token(renew: bool) -> str:
            return _TOKENS.get(
                f"{login}|{credentials.client_id}",
                lambda: client_credentials(
                    self._http,
                    f"{login}/oauth/token",
                    credentials.client_id,
                    credentials.client_secret,
                ),
                renew=renew,
            )

        return self._http.authorized(method, url, token, **kwargs)


class _Ref(_Loose):
    id: str | None = None


class Participant(_Loose):
    """A conversation participant as the Conversations API gives it (MessageMediaParticipant)."""

    id: str = Field(min_length=1, max_length=200)
    name: str | None = Field(None, max_length=200)
    purpose: str | None = None
    state: str | None = None
    user: _Ref | None = None


def _conversation_url(hub: GenesysHubSettings, conversation: str) -> str:
    return f"{_api(hub)}/api/v2/conversations/messages/{quote(conversation, safe='')}"


def _sent_at(body: bytes) -> datetime | None:
    """The signed body's ``channel.time`` (None when absent: parse judges the body)."""
    try:
        data = json.loads(body)
        sent = datetime.fromisoformat(str(data["channel"]["time"]).replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError):
        return None
    return sent if sent.tzinfo is not None else sent.replace(tzinfo=UTC)


def _api(hub: GenesysHubSettings) -> str:
    return (hub.api_base or f"https://api.{hub.region}").rstrip("/")


def _iso(moment: datetime) -> str:
    """``yyyy-MM-ddTHH:mm:ss.mmmZ`` (Genesys's channel.time)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _first(values: dict[str, str], *names: str) -> str | None:
    return next((values[n] for n in names if values.get(n)), None)


def _text_of(message: OutboundMessage) -> str:
    """The agent's text, and links to any attachments it sent."""
    parts = [message.text.strip()] if message.text and message.text.strip() else []
    for content in message.content:
        attachment = content.attachment
        if attachment is not None and attachment.url:
            parts.append(f"{attachment.filename or 'Attachment'}: {attachment.url}")
    return "\n".join(parts)[:MAX_MESSAGE_CHARS]


# --- the start: context as participant data, summary and transcript as its text -------------


def custom_attributes(hub: GenesysHubSettings, command: HubCommand) -> dict[str, str]:
    """Copilot Studio's ``va_*`` fields, the summary, routing and the customer's variables as
    ``channel.metadata.customAttributes`` (str -> str: lists as JSON), within our bounds."""
    ctx = command.context
    assert ctx is not None
    ours: dict[str, str | None] = {
        "va_ConversationId": ctx.conversation_id,
        "va_BotId": ctx.bot_id,
        "va_BotName": ctx.bot_name,
        "va_Language": ctx.language,
        "va_LastTopic": ctx.last_topic,
        "va_Topics": _json_list(ctx.topics),
        "va_LastPhrases": ctx.last_phrases,
        "va_Phrases": _json_list(ctx.phrases),
        "va_AgentMessage": ctx.agent_message or hub.agent_note,
        "va_Scope": "bot",
        "summary": ctx.summary,
        "unanswered_questions": _json_list(ctx.unanswered_questions),
        "routing_queue": ctx.queue or hub.queue,
        "routing_skill": ctx.skill or hub.skill,
        "handoff_id": command.handoff_id,
    }
    attributes = {k: _clip(v) for k, v in ours.items() if v}
    for name, value in ctx.variables.items():
        key = _KEY.sub("_", name)[:100]
        if len(attributes) >= MAX_ATTRIBUTES:
            log.warning("hand-off variables beyond %d attributes left out", MAX_ATTRIBUTES)
            break
        if key and key not in attributes and key not in ours:
            attributes[key] = _clip(value)
    return attributes


def _clip(value: str) -> str:
    if len(value) <= MAX_ATTRIBUTE_CHARS:
        return value
    return value[: MAX_ATTRIBUTE_CHARS - 1] + "…"


def _json_list(items: list[str]) -> str | None:
    """A JSON list that fits an attribute: the latest items kept, each clipped."""
    kept = [item[:500] for item in items]
    while kept and len(json.dumps(kept)) > MAX_ATTRIBUTE_CHARS:
        kept.pop(0)
    return json.dumps(kept) if kept else None


def start_text(ctx: HandoffContext, transcript: list[TranscriptEntry]) -> str:
    """What the agent reads first: who handed off and why, the summary, then the chat so far
    (the oldest lines left out when it would pass MAX_TEXT_CHARS)."""
    head = [f"Hand-off from {ctx.bot_name}" + (f" ({ctx.last_topic})" if ctx.last_topic else "")]
    if ctx.summary:
        head.append(f"Summary: {ctx.summary}")
    if ctx.unanswered_questions:
        head.append("Unanswered: " + " | ".join(ctx.unanswered_questions))
    lines = [f"{_ROLES.get(e.role, e.role)}: {e.text}" for e in transcript]
    intro = "\n".join(head)[: MAX_TEXT_CHARS // 2]
    left_out = 0
    while lines:
        note = f"({left_out} earlier messages left out)\n" if left_out else ""
        text = f"{intro}\n\nTranscript:\n{note}" + "\n".join(lines)
        if len(text) <= MAX_TEXT_CHARS:
            return text
        lines.pop(0)
        left_out += 1
    return intro
