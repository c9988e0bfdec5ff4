"""ServiceNow Virtual Agent, Bot Integration API (docs/hubs/servicenow.md): the copilot is the
"primary bot" and ServiceNow's Agent Chat takes the customer.

Outbound: ``POST {instance}/api/sn_va_as_service/bot/integration`` with HTTP Basic, an OAuth
access token (client credentials at ``{instance}/oauth_token.do``) and/or the Message Auth
``token`` header. The start is one request ``action: "AGENT"`` carrying the hand-off context as
``contextVariables`` and the transcript as ``history``; the customer's messages are plain
requests (``message.text``, ``clientMessageId`` = our event id); the customer's cancel is
``END_CONVERSATION``. ServiceNow answers each with ``{"status": "success"|"failure"}`` only.

Inbound: ServiceNow POSTs the agent's side to the response endpoint it is configured with
(``/hooks/servicenow/<copilot id>``), authenticated with the credential profile and headers we
issued (Basic and/or a shared header token: ServiceNow signs nothing): ``body`` items
``OutputText`` (the agent's messages when ``agentInfo.sentFromAgent``), ``ActionMsg``s (typing,
the wait-time spinner, SwitchToLiveAgent, SwitchToVirtualAgent, System notices) and the flags
``completed`` / ``takeControl``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from copilot.errors import ForbiddenError, HubRejectedError, UnauthorizedError
from copilot.handoff.hubs.credentials import basic_pair, parse_credentials
from copilot.handoff.hubs.fields import va_fields
from copilot.handoff.hubs.http import HubHttp, json_of
from copilot.handoff.hubs.oauth import TokenCache, client_credentials
from copilot.handoff.hubs.once import Once
from copilot.handoff.hubs.signatures import hmac_hex
from copilot.handoff.models import (
    Agent,
    HandoffContext,
    HubCommand,
    HubEvent,
    HubReceipt,
    HubSettings,
    ServiceNowHubSettings,
    TranscriptEntry,
)
from copilot.ports import HubAdapter, InboundRequest
from copilot.schema import parse_object

HUB = "ServiceNow"
API_PATH = "/api/sn_va_as_service/bot/integration"
TOKEN_PATH = "/oauth_token.do"
# Message Auth's static token travels in this request header [R S1].
TOKEN_HEADER = "token"
# Message Auth's hash token: hex HMAC-SHA1 of the payload in this header [R S4].
HASH_HEADER = "x-b2b-signature"
# The header we ask ServiceNow to add to its calls to us (the REST connection's Attributes,
# Virtual Agent API 4.1+ [R S3]); its value is the ``callback_token`` we issued.
CALLBACK_TOKEN_HEADER = "x-copilot-token"
# No limits are documented for a context variable or the history [I]: kept modest.
MAX_VARIABLE_CHARS = 4000
MAX_HISTORY = 200
_COMMANDS_REMEMBERED = 10_000
_NAMESPACE = uuid.UUID("5e0f3c1e-7a53-4f64-9d7e-2b1f0c0a5e11")  # our requestIds (uuid5)


class ServiceNowCredentials(BaseModel):
    """What the copilot calls ServiceNow with (Basic user/password, an OAuth client and/or the
    Message Auth token) and what ServiceNow calls us with (Basic and/or a header token)."""

    model_config = ConfigDict(extra="ignore")

    username: str | None = Field(None, min_length=1)
    password: str | None = Field(None, min_length=1)
    client_id: str | None = Field(None, min_length=1)
    client_secret: str | None = Field(None, min_length=1)
    token: str | None = Field(None, min_length=1)
    hash_secret: str | None = Field(None, min_length=1)
    callback_username: str | None = Field(None, min_length=1)
    callback_password: str | None = Field(None, min_length=16)
    callback_token: str | None = Field(None, min_length=16)

    @model_validator(mode="after")
    def _usable(self) -> ServiceNowCredentials:
        pairs = (
            ("username", "password"),
            ("client_id", "client_secret"),
            ("callback_username", "callback_password"),
        )
        for a, b in pairs:
            if (getattr(self, a) is None) != (getattr(self, b) is None):
                raise ValueError(f"{a} and {b} go together")
        if not (self.username or self.client_id or self.token or self.hash_secret):
            raise ValueError(
                "give username/password, client_id/client_secret, token or hash_secret"
            )
        if not (self.callback_username or self.callback_token):
            raise ValueError("give callback_username/callback_password or callback_token")
        return self


class Callback(BaseModel):
    """ServiceNow's call to the response endpoint (the "VA response body" [R S1])."""

    model_config = ConfigDict(extra="ignore")

    requestId: str | None = Field(None, max_length=200)
    clientSessionId: str = Field(min_length=1, max_length=500)
    body: list[dict[str, Any]] = Field(default_factory=list, max_length=100)
    agentChat: bool | None = None
    completed: bool | None = None
    takeControl: bool | None = None


class ServiceNowHub(HubAdapter):
    name = "servicenow"

    def __init__(self, timeout: float = 10) -> None:
        self._http = HubHttp(HUB, timeout)
        self._tokens = TokenCache()
        # No idempotency of requestId is documented [I]: a command is sent once per process,
        # by its event id (two deliveries of one outbox at once send it once).
        self._once = Once(_COMMANDS_REMEMBERED)

    # --- inbound ---------------------------------------------------------------------------

    def verify(
        self, request: InboundRequest, hub: HubSettings | None, secret: str, now: datetime
    ) -> None:
        """401 without credentials; 403 when any credential we issued is missing or wrong
        (compared in constant time). A copilot without this hub gets random expectations."""
        if hub is not None:
            creds = parse_credentials(secret, ServiceNowCredentials, HUB)
            user, password, token = (
                creds.callback_username,
                creds.callback_password,
                creds.callback_token,
            )
        else:
            user, password, token = (os.urandom(16).hex() for _ in range(3))
        authorization = request.header("authorization")
        given_token = request.header(CALLBACK_TOKEN_HEADER)
        if not authorization and not given_token:
            raise UnauthorizedError(
                f"send the credentials issued to ServiceNow (Basic or {CALLBACK_TOKEN_HEADER})"
            )
        matches = True
        if user is not None and password is not None:
            given = basic_pair(authorization) or ("", "")
            matches &= _same(given[0], user) & _same(given[1], password)
        if token is not None:
            matches &= _same(given_token or "", token)
        if not matches:
            raise ForbiddenError("the credentials do not match")

    def parse(self, request: InboundRequest, hub: HubSettings) -> list[HubEvent]:
        call = parse_object(request.body, Callback, what="the ServiceNow response")
        session = call.clientSessionId
        # A retried delivery is byte-identical: without ServiceNow's ids, its bytes name it.
        delivery = call.requestId or hashlib.sha256(request.body).hexdigest()[:32]
        named = next(
            (a for i in call.body if isinstance(i, dict) and (a := _agent(i)) is not None), None
        )
        events: list[HubEvent] = []
        joined = ended = False
        for index, item in enumerate(call.body):
            if not isinstance(item, dict):
                continue
            kind, text = _kind(item)
            if kind is None:
                continue
            if kind == "ended":
                ended = True
                continue
            if kind == "agent_joined":
                if joined:
                    continue  # SwitchToLiveAgent and "X has entered the chat": one join
                joined = True
                name = named or (Agent(name=text) if text else None)
                text = None
            else:
                name = _agent(item) if kind != "queued" else None
            message_id = item.get("messageId")
            ref = message_id[:200] if isinstance(message_id, str) and message_id else None
            events.append(
                HubEvent(
                    kind=kind,
                    event_id=f"sn:{ref}" if ref else f"sn:{delivery}:{index}",
                    hub_conversation_id=session,
                    text=text,
                    agent=name,
                )
            )
        if ended or call.completed or call.takeControl:
            # Every end signal of a session is the same event: applied once.
            reason = "take_control" if call.takeControl and not ended else "agent"
            events.append(
                HubEvent(
                    kind="ended",
                    event_id=f"sn:{session}:ended",
                    hub_conversation_id=session,
                    agent=named,
                    reason=reason,
                )
            )
        return events

    # --- outbound --------------------------------------------------------------------------

    def send(self, hub: HubSettings, secret: str, command: HubCommand) -> HubReceipt | None:
        assert isinstance(hub, ServiceNowHubSettings)
        creds = parse_credentials(secret, ServiceNowCredentials, HUB)
        key = f"{hub.instance_url}|{command.copilot_id}|{command.event_id}"
        return self._once.run(key, lambda: self._send(hub, creds, command))

    def _send(
        self, hub: ServiceNowHubSettings, creds: ServiceNowCredentials, command: HubCommand
    ) -> HubReceipt | None:
        if command.kind == "start":
            ctx = command.context
            assert ctx is not None, "a start command carries the context"
            session, user = session_id(command), user_id(command)
            body: dict[str, Any] = {
                **_envelope(command, session, user),
                "action": "AGENT",
                "message": {
                    "text": opening(ctx),
                    "typed": True,
                    "clientMessageId": command.event_id,
                },
                "contextVariables": context_variables(ctx, hub),
                "history": history(ctx, command.transcript),
            }
            email = ctx.variables.get("email")
            if email:
                body["emailId"] = email
            self._post(hub, creds, body)
            return HubReceipt(hub_conversation_id=session, state={"user_id": user})
        receipt = command.started_receipt(HUB)
        session = receipt.hub_conversation_id
        user = str(receipt.state.get("user_id") or user_id(command))
        body = _envelope(command, session, user)
        if command.kind == "message":
            body["message"] = {
                "text": command.text or "",
                "typed": True,
                "clientMessageId": command.event_id,
            }
        else:
            body["action"] = "END_CONVERSATION"  # message.text must be empty [R S1]
            body["message"] = {"text": "", "typed": True, "clientMessageId": command.event_id}
        self._post(hub, creds, body)
        return None

    def _post(
        self, hub: ServiceNowHubSettings, creds: ServiceNowCredentials, body: dict[str, Any]
    ) -> None:
        base = hub.instance_url.rstrip("/")
        url = base + API_PATH
        # The bytes sent are the compact JSON a hash token signs: ServiceNow's own example
        # signs ``JSON.stringify(JSON.parse(body))`` [R S4] (compact, key order kept).
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if creds.token:
            headers[TOKEN_HEADER] = creds.token
        if creds.hash_secret:
            headers[HASH_HEADER] = hmac_hex(creds.hash_secret, raw, "sha1")
        if creds.client_id and creds.client_secret:
            client_id, client_secret = creds.client_id, creds.client_secret
            token_url = base + TOKEN_PATH

            def token(renew: bool) -> str:
                return self._tokens.get(
                    f"{token_url}|{client_id}",
                    # ServiceNow takes the client in the form [I S6].
                    lambda: client_credentials(
                        self._http, token_url, client_id, client_secret, basic=False
                    ),
                    renew=renew,
                )

            response = self._http.authorized("POST", url, token, headers=headers, data=raw)
        elif creds.username and creds.password:
            auth = (creds.username, creds.password)
            response = self._http.call("POST", url, headers=headers, data=raw, auth=auth)
        else:
            response = self._http.call("POST", url, headers=headers, data=raw)
        answer = json_of(response, HUB)
        status = answer.get("status") if isinstance(answer, dict) else None
        if status == "failure":
            error = answer.get("error") if isinstance(answer, dict) else None
            detail = error.get("message") if isinstance(error, dict) else None
            raise HubRejectedError(f"{HUB} refused the request: {str(detail)[:200]}")


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


# --- the requests' native fields ------------------------------------------------------------


def session_id(command: HubCommand) -> str:
    """``clientSessionId``: one per hand-off (a second hand-off in the same chat is another
    ServiceNow conversation), stable across retries."""
    return f"{command.conversation_id}.{command.handoff_id}"


def user_id(command: HubCommand) -> str:
    """``userId``: the customer, one per conversation of this copilot (a guest to ServiceNow
    unless ``emailId`` links an account [R S1])."""
    return f"copilot.{command.copilot_id}.{command.conversation_id}"


def _envelope(command: HubCommand, session: str, user: str) -> dict[str, Any]:
    """What every request carries; ``requestId`` is derived from our event id, so a retried
    command is the same request."""
    request_id = uuid.uuid5(_NAMESPACE, f"{command.copilot_id}|{command.event_id}").hex
    return {
        "requestId": request_id,
        "clientSessionId": session,
        "userId": user,
        "botToBot": True,
        "timestamp": int(command.created_at.timestamp() * 1000),
    }


def _cap(text: str) -> str:
    return text[:MAX_VARIABLE_CHARS]


def context_variables(ctx: HandoffContext, hub: ServiceNowHubSettings) -> dict[str, str]:
    """The hand-off context (``va_`` fields, summary, routing: ``fields.va_fields``) and the
    customer's variables as flat strings, which work item queue conditions and the agent's
    workspace can read [R S1: queues route on contextVariables]."""
    ours = va_fields(ctx, hub) | {
        "requester_session_language": ctx.language,  # [R S1, example]
        "live_agent_only": "true",  # [R S1, example]
    }
    variables = {str(k): _cap(str(v)) for k, v in ctx.variables.items()}
    # Ours last: a customer variable cannot pass for one of them.
    return variables | {k: _cap(v) for k, v in ours.items()}


def opening(ctx: HandoffContext) -> str:
    """The AGENT request's ``message.text``: the first line the agent reads."""
    summary = " ".join(ctx.summary.split()) or "The customer asked for a person."
    return f"[Copilot hand-off from {' '.join(ctx.bot_name.split())}] {summary}"


def history(ctx: HandoffContext, transcript: list[TranscriptEntry]) -> list[dict[str, Any]]:
    """The transcript as ServiceNow's ``history`` entries [R S1] (the most recent ones)."""
    entries = [e for e in transcript if e.role in ("customer", "copilot")][-MAX_HISTORY:]
    customer = ctx.variables.get("name") or "User"
    return [
        {
            "displayName": ctx.bot_name if e.role == "copilot" else customer,
            "isBotMessage": e.role == "copilot",
            "timestamp": str(int(e.created_at.timestamp() * 1000)),
            "type": "text",
            "value": e.text,
        }
        for e in entries
    ]


# --- the response endpoint ------------------------------------------------------------------

# Agent Chat's System notices [R S5: "X has entered the chat.", "X has closed the support
# session.", "The support session was closed."]; matched on their English text [I].
_ENTERED = " has entered the chat"
_CLOSED = ("has closed the support session", "support session was closed", "has left the")


def _agent(item: dict[str, Any]) -> Agent | None:
    info = item.get("agentInfo")
    if not isinstance(info, dict):
        return None
    name = info.get("agentName")
    agent_id = info.get("agentId")
    return Agent(
        id=str(agent_id)[:200] if agent_id else None,
        name=str(name)[:200] if isinstance(name, str) and name.strip() else "Agent",
    )


def _kind(item: dict[str, Any]) -> tuple[Any, str | None]:
    """The neutral kind of one body item and its text; (None, None) if of no interest."""
    ui_type, action = item.get("uiType"), item.get("actionType")
    if ui_type == "OutputText":
        value = item.get("value")
        text = value.strip() if isinstance(value, str) else ""
        if not text:
            return None, None
        info = item.get("agentInfo")
        if isinstance(info, dict) and info.get("sentFromAgent"):
            return "agent_message", text
        # The Virtual Agent's own words around the transfer ("Please stand by while I connect
        # you to a live agent."): a notice while the customer waits (dropped once an agent has
        # the chat) [I].
        return "queued", text
    if ui_type != "ActionMsg" or not isinstance(action, str):
        return None, None
    if action in ("StartTypingIndicator", "StartTypingIndicatorActionMsg"):
        return "agent_typing", None
    if action == "StartSpinner" and item.get("spinnerType") == "wait_time":
        parts = [str(item.get(k)).strip() for k in ("message", "waitTime") if item.get(k)]
        if not parts:
            return None, None
        text = parts[0] if len(parts) == 1 else f"{parts[0]} Estimated wait: {parts[1]}."
        return "queued", text[:1000]
    if action == "SwitchToLiveAgent":
        return "agent_joined", None
    if action == "SwitchToVirtualAgent":
        return "ended", None
    if action == "System":
        message = str(item.get("message") or "")
        if _ENTERED in message:
            return "agent_joined", message.split(_ENTERED)[0].strip()[:200] or None
        if any(c in message for c in _CLOSED):
            return "ended", None
    return None, None
