"""The generic hub (docs/handoff-generic-hub.md): Copilot Studio's ``handoff.initiate`` event
and the customer's messages POSTed to the hub's URL, agent events POSTed back to us. Both
directions are signed: ``X-Copilot-Signature: sha256=<hex HMAC-SHA256(secret, ts + "." + body)>``
with ``X-Copilot-Timestamp: <unix seconds>``; calls older than the tolerance are refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import requests
from pydantic import BaseModel, ConfigDict, Field, model_validator

from copilot.errors import (
    ForbiddenError,
    HubRejectedError,
    HubUnavailableError,
    UnauthorizedError,
)
from copilot.handoff.models import (
    Agent,
    GenericHubSettings,
    HubCommand,
    HubEvent,
    HubEventKind,
    HubSettings,
    TranscriptEntry,
)
from copilot.ports import HubAdapter, InboundRequest
from copilot.schema import MAX_MESSAGE_CHARS, parse_object

TIMESTAMP_HEADER = "X-Copilot-Timestamp"
SIGNATURE_HEADER = "X-Copilot-Signature"
EVENT_ID_HEADER = "X-Copilot-Event-Id"
TOLERANCE_SECONDS = 300
_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")
# ASCII digits only: str.isdigit() also takes "²" or "٣", which int() then refuses (a 500).
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_RETRYABLE = {408, 425, 429}


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(secret: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: ts,
        SIGNATURE_HEADER: signature(secret, ts, body),
    }


def verify_signature(
    headers: Mapping[str, str],
    body: bytes,
    secret: str,
    now: float,
    tolerance: int = TOLERANCE_SECONDS,
) -> None:
    """``headers`` with lower-case names. 401 when unsigned, 403 when wrong or stale."""
    ts = headers.get(TIMESTAMP_HEADER.lower())
    given = headers.get(SIGNATURE_HEADER.lower())
    if not ts or not given:
        raise UnauthorizedError(f"sign the call: {TIMESTAMP_HEADER} and {SIGNATURE_HEADER}")
    if not _TIMESTAMP.fullmatch(ts):
        raise UnauthorizedError(f"{TIMESTAMP_HEADER} must be Unix seconds")
    if not _SIGNATURE.fullmatch(given):
        raise ForbiddenError(f"{SIGNATURE_HEADER} must be 'sha256=<64 hex digits>'")
    if not hmac.compare_digest(given, signature(secret, ts, body)):
        raise ForbiddenError("the signature does not match")
    if abs(now - int(ts)) > tolerance:
        raise ForbiddenError(f"the timestamp is more than {tolerance} s away from our clock")


# --- inbound: the hub's agent events --------------------------------------------------------

InboundType = Literal[
    "agent.joined", "agent.message", "agent.typing", "agent.left", "handoff.ended", "handoff.status"
]
_KINDS: dict[str, HubEventKind] = {
    "agent.joined": "agent_joined",
    "agent.message": "agent_message",
    "agent.typing": "agent_typing",
    "agent.left": "agent_left",
    "handoff.ended": "ended",
}


class InboundAgent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | None = Field(None, max_length=200)
    name: str | None = Field(None, min_length=1, max_length=100)


class InboundEvent(BaseModel):
    """One agent event, as the hub POSTs it (unknown fields are ignored: hubs may add some)."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=200, description="The hub's event id (dedup key).")
    type: InboundType
    conversation_id: str = Field(min_length=1, max_length=200)
    handoff_id: str = Field(min_length=1, max_length=200)
    sequence: int = Field(ge=1, description="1, 2, 3... within the hand-off, in the hub's order.")
    agent: InboundAgent | None = None
    text: str | None = Field(None, max_length=MAX_MESSAGE_CHARS)
    state: Literal["accepted", "failed"] | None = None
    reason: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _fields_of_type(self) -> InboundEvent:
        if self.type == "agent.message" and not (self.text or "").strip():
            raise ValueError("agent.message needs a non-blank 'text'")
        if self.type == "handoff.status" and self.state is None:
            raise ValueError("handoff.status needs 'state' (accepted or failed)")
        return self

    def neutral(self) -> HubEvent:
        if self.type == "handoff.status":
            kind: HubEventKind = "accepted" if self.state == "accepted" else "rejected"
        else:
            kind = _KINDS[self.type]
        agent = None
        if self.agent is not None:
            agent = Agent(id=self.agent.id, name=self.agent.name or "Agent")
        return HubEvent(
            kind=kind,
            event_id=self.id,
            conversation_id=self.conversation_id,
            handoff_id=self.handoff_id,
            sequence=self.sequence,
            text=self.text,
            agent=agent,
            reason=self.reason,
        )


class GenericHub(HubAdapter):
    name = "generic"

    def __init__(self, timeout: float = 10, tolerance: int = TOLERANCE_SECONDS) -> None:
        self._timeout = timeout
        self._tolerance = tolerance
        self._local = threading.local()  # a requests.Session per thread (not thread-safe)

    def verify(
        self, request: InboundRequest, hub: HubSettings | None, secret: str, now: datetime
    ) -> None:
        verify_signature(request.headers, request.body, secret, now.timestamp(), self._tolerance)

    def parse(self, request: InboundRequest, hub: HubSettings) -> list[HubEvent]:
        event = parse_object(request.body, InboundEvent, what="the body (one event)")
        return [event.neutral()]

    # --- outbound: start, customer messages, end -------------------------------------------

    def send(self, hub: HubSettings, secret: str, command: HubCommand) -> None:
        assert isinstance(hub, GenericHubSettings)
        body = json.dumps(wire_payload(command), separators=(",", ":")).encode()
        headers = {**signed_headers(secret, body), EVENT_ID_HEADER: command.event_id}
        try:
            response = self._session().post(
                hub.url, data=body, headers=headers, timeout=(3, self._timeout)
            )
        except requests.RequestException as e:
            raise HubUnavailableError(f"the hub did not answer ({type(e).__name__})") from e
        status = response.status_code
        if status in _RETRYABLE or status >= 500:
            raise HubUnavailableError(f"the hub answered {status}")
        if status >= 400:
            raise HubRejectedError(f"the hub refused the call ({status})", reason=f"http_{status}")
        answer = _json_or_none(response)
        if isinstance(answer, dict) and answer.get("state") == "failed":
            reason = str(answer.get("reason") or "rejected")[:100]
            raise HubRejectedError(f"the hub declined the hand-off ({reason})", reason=reason)

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session


def wire_payload(command: HubCommand) -> dict[str, Any]:
    """The JSON the hub receives for a command (docs/handoff-generic-hub.md)."""
    base: dict[str, Any] = {
        "id": command.event_id,
        "sequence": command.sequence,
        "timestamp": command.created_at.isoformat().replace("+00:00", "Z"),
        "conversation": {"id": command.conversation_id},
        "handoff_id": command.handoff_id,
    }
    if command.kind == "message":
        return {
            "type": "message",
            "name": "conversation.message",
            **base,
            "from": {"role": "user"},
            "text": command.text,
        }
    if command.kind == "end":
        return {"type": "event", "name": "handoff.end", **base, "reason": command.reason}
    ctx = command.context
    assert ctx is not None, "a start command carries the context"
    value: dict[str, Any] = {
        **ctx.variables,
        "va_Scope": "bot",
        "va_LastTopic": ctx.last_topic,
        "va_Topics": ctx.topics,
        "va_LastPhrases": ctx.last_phrases,
        "va_LastPhrase": ctx.last_phrases,  # the spelling of Copilot Studio's own sample
        "va_Phrases": ctx.phrases,
        "va_ConversationId": ctx.conversation_id,
        "va_AgentMessage": ctx.agent_message,
        "va_Language": ctx.language,
        "va_BotId": ctx.bot_id,
        "va_BotName": ctx.bot_name,
    }
    return {
        "type": "event",
        "name": "handoff.initiate",
        **base,
        "from": {"role": "bot", "id": ctx.bot_id, "name": ctx.bot_name},
        "reply_to": command.reply_to,
        "value": value,
        "summary": ctx.summary,
        "unanswered_questions": ctx.unanswered_questions,
        "routing": {"queue": ctx.queue, "skill": ctx.skill},
        "attachments": [
            {
                "contentType": "application/json",
                "name": "Transcript",
                "content": {"activities": [_activity(e) for e in command.transcript]},
            }
        ],
    }


def _activity(entry: TranscriptEntry) -> dict[str, Any]:
    role = {"customer": "user", "copilot": "bot"}.get(entry.role, entry.role)
    sender: dict[str, Any] = {"role": role}
    if entry.author:
        sender["name"] = entry.author
    return {
        "type": "message",
        "id": str(entry.seq),
        "timestamp": entry.created_at.isoformat().replace("+00:00", "Z"),
        "from": sender,
        "text": entry.text,
        **({"topic": entry.topic} if entry.topic else {}),
    }


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json() if response.content else None
    except ValueError:
        return None
