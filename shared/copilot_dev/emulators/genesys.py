"""Genesys Cloud Open Messaging (docs/hubs/genesys.md §5) on loopback, with the agent desk in
front.

What the copilot calls, checked the way Genesys checks it:

* ``POST /oauth/token``: HTTP Basic client id/secret, ``grant_type=client_credentials``;
  random tokens that ``expire_tokens()`` makes expire at once (then 401 on use);
* ``POST /api/v2/conversations/messages/{integrationId}/inbound/open/message``
  (``?prefetchConversationId=true``): Bearer token, the body validated (``channel.from.id``,
  ``idType``, ``time``; str -> str maps; our §3 bounds), 400 ``bad.request`` otherwise; the first
  message of an Open user opens a conversation (a session on the desk, its context rebuilt from
  ``channel.metadata.customAttributes``), later ones join it; a repeated ``channel.messageId``
  is answered as before and counted in ``duplicates``;
* ``GET /api/v2/conversations/messages/{conversationId}`` (participants) and ``PATCH
  .../participants/{participantId}`` ``{"state": "disconnected"}`` (the customer left).

The agent's messages and typing go to the integration's outbound webhook (the hand-off
function's ``/hooks/genesys/<copilot id>``), signed ``X-Hub-Signature-256: sha256=<base64
HMAC-SHA256>`` and retried on 5xx and connection errors. Genesys has no webhook event for an
agent joining, leaving or ending (``emits``): those show on the desk only.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import requests
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from copilot.handoff.hubs.genesys import (
    MAX_ATTRIBUTE_CHARS,
    MAX_ATTRIBUTES,
    MAX_TEXT_CHARS,
    SIGNATURE_HEADER,
)
from copilot.handoff.hubs.signatures import signature_header
from copilot_dev.emulators.desk import AgentAction, DeskSession, HubDesk, Tampered, json_answer

MESSAGES = "/api/v2/conversations/messages"
ID_TYPES = ("Email", "Phone", "Opaque")
_KEY = re.compile(r"[A-Za-z0-9_]{1,100}")
_LISTS = ("va_Topics", "va_Phrases", "unanswered_questions")
# Genesys retries a delivery up to 5 times, 5 s apart [R S3]; here the shared desk helper
# spaces them from 0.2 s (doubling), so a test of the retry takes about a second, not 25 s.
RETRIES = 5
BACKOFF = 0.2


class GenesysEmulator(HubDesk):
    hub_type = "genesys"
    ordered = False  # Genesys numbers nothing: the copilot applies events as they come
    emits = frozenset({"message", "typing"})

    def __init__(self, *, retries: int = RETRIES, token_lifetime: int = 3600, **desk: Any) -> None:
        """``desk``: HubDesk's other keywords (host, port, webhook_url, agent_name, token)."""
        self.client_id = uuid.uuid4().hex
        self.client_secret = secrets.token_urlsafe(24)
        self.webhook_secret = secrets.token_urlsafe(24)
        self.integration_id = str(uuid.uuid4())
        self.integration_name = "Copilot Open Messaging"
        self.token_lifetime = token_lifetime
        self._tokens: dict[str, float] = {}  # access token -> expiry (time.time())
        self._answers: dict[str, dict[str, Any]] = {}  # channel.messageId -> first answer
        self._active: dict[str, str] = {}  # Open user (from.id) -> its active conversation
        # The OAuth client's role has conversation:communication:disconnect (else 403).
        self.may_disconnect = True
        super().__init__(retries=retries, **desk)

    def hub_rules(self) -> list[Rule]:
        return [
            Rule("/oauth/token", endpoint="token", methods=["POST"]),
            Rule(
                f"{MESSAGES}/<integration_id>/inbound/open/message",
                endpoint="inbound",
                methods=["POST"],
            ),
            Rule(f"{MESSAGES}/<conversation_id>", endpoint="conversation", methods=["GET"]),
            Rule(
                f"{MESSAGES}/<conversation_id>/participants/<participant_id>",
                endpoint="participant",
                methods=["PATCH"],
            ),
        ]

    def hub_settings(self, **fields: Any) -> dict[str, Any]:
        return {
            "type": "genesys",
            "integration_id": self.integration_id,
            "api_base": self.url,
            "login_base": self.url,
            "secret_ref": self.secret_ref,
            **fields,
        }

    @property
    def secret_value(self) -> str:
        return json.dumps(
            {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "webhook_secret": self.webhook_secret,
            }
        )

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)

    # --- agent events ----------------------------------------------------------------------

    def event(
        self,
        session: DeskSession,
        kind: AgentAction | str,
        *,
        agent: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """An outbound open message as the webhook carries it [R S2]: ``Text`` for a message,
        ``Event``/``Typing`` for typing. Genesys puts the integration in ``from``, not the agent."""
        message_id = uuid.uuid4().hex
        channel = {
            "id": self.integration_id,
            "platform": "Open",
            "type": "Private",
            "to": {"id": session.hub["from_id"]},
            "from": {
                "nickname": self.integration_name,
                "id": self.integration_id,
                "idType": "Opaque",
            },
            "time": _now_iso(),
            "messageId": message_id,
        }
        base = {"id": message_id, "channel": channel, "direction": "Outbound"}
        if kind == "typing":
            typing = {"eventType": "Typing", "typing": {"type": "On", "duration": 5000}}
            return {**base, "type": "Event", "events": [typing], **fields}
        if kind == "message":
            return {**base, "type": "Text", **fields}
        return {**base, "type": kind, **fields}  # a wire type itself (e.g. "Receipt")

    def deliver(
        self,
        session: DeskSession,
        event: dict[str, Any] | bytes,
        *,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
        retries: int | None = None,
    ) -> requests.Response:
        """POST to the integration's webhook, signed with its secret, retried like Genesys."""
        raw = (
            event if isinstance(event, bytes) else json.dumps(event, separators=(",", ":")).encode()
        )
        key = self.webhook_secret if secret is None else secret
        sent = headers
        if sent is None:
            sent = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature_header(key, raw),
            }
        return self.post_retrying(
            self.webhook(session.copilot_id), raw, sent, retries, backoff=BACKOFF
        )

    def tampered(self, session: DeskSession, event: dict[str, Any]) -> list[Tampered]:
        body = json.dumps(event, separators=(",", ":")).encode()
        plain = {"Content-Type": "application/json"}
        malformed = {**plain, SIGNATURE_HEADER: "sha256=not base64!"}
        not_json = b'{"id": "x", "type": "Text"'
        signed_not_json = {
            **plain,
            SIGNATURE_HEADER: signature_header(self.webhook_secret, not_json),
        }
        stranger = self.webhook(session.copilot_id).replace(session.copilot_id, "f" * 32)
        forged = {**plain, SIGNATURE_HEADER: signature_header("guessed", body)}
        return [
            Tampered("wrong secret", self.deliver(session, event, secret="guessed"), 403),
            Tampered("unsigned", self.deliver(session, event, headers=plain), 401),
            Tampered("stale", self.deliver(session, _sent_long_ago(event)), 403),
            Tampered("malformed signature", self.deliver(session, body, headers=malformed), 403),
            Tampered("not JSON", self.deliver(session, not_json, headers=signed_not_json), 400),
            Tampered(
                "unknown copilot",
                requests.post(stranger, data=body, headers=forged, timeout=5),
                403,
            ),
        ]

    def _record_agent(
        self, session: DeskSession, kind: AgentAction, name: str, text: str | None
    ) -> None:
        """The desk's record, and the agent participant Genesys would show on a GET."""
        super()._record_agent(session, kind, name, text)
        with self._lock:
            participants = session.hub["participants"]
            agents = [
                p for p in participants if p["purpose"] == "agent" and p["state"] != "disconnected"
            ]
            if kind in ("joined", "message") and not agents:
                participants.append(_participant("agent", name))
            elif kind in ("left", "ended"):
                # The agent disconnects; ending disconnects the customer too (the Open user's
                # next message opens a new conversation).
                ended = [p for p in participants if p["state"] != "disconnected"]
                for p in agents if kind == "left" else ended:
                    p.update(state="disconnected", disconnectType="client", endTime=_now_iso())
                if kind == "ended":
                    self._active.pop(session.hub["from_id"], None)

    # --- the hub's endpoints ---------------------------------------------------------------

    def _on_token(self, request: Request) -> Response:
        status, answer = self._token(request)
        self.record(request, status)
        return json_answer(answer, status)

    def _token(self, request: Request) -> tuple[int, dict[str, Any]]:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        try:
            pair = base64.b64decode(given, validate=True).decode() if scheme == "Basic" else ""
        except (binascii.Error, UnicodeDecodeError):
            pair = ""
        client_id, _, client_secret = pair.partition(":")
        if not (
            hmac.compare_digest(client_id.encode(), self.client_id.encode())
            and hmac.compare_digest(client_secret.encode(), self.client_secret.encode())
        ):
            return 401, {"error": "invalid_client", "description": "client authentication failed"}
        if request.form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.time() + self.token_lifetime
        return 200, {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": self.token_lifetime,
        }

    def _on_inbound(self, request: Request, integration_id: str) -> Response:
        status, answer = self._api(request) or self._inbound(request, integration_id)
        self.record(request, status)
        return json_answer(answer, status)

    def _on_conversation(self, request: Request, conversation_id: str) -> Response:
        status, answer = self._api(request) or self._conversation(conversation_id)
        self.record(request, status)
        return json_answer(answer, status)

    def _on_participant(
        self, request: Request, conversation_id: str, participant_id: str
    ) -> Response:
        status, answer = self._api(request) or self._participant(
            request, conversation_id, participant_id
        )
        self.record(request, status)
        return Response(status=status) if status == 202 else json_answer(answer, status)

    def _api(self, request: Request) -> tuple[int, dict[str, Any]] | None:
        """An API call's answer when it may not go on: an outage, no or an expired token."""
        if self.fail_with is not None:
            return self.fail_with, _error(self.fail_with, "service.unavailable", "unavailable")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        with self._lock:
            expiry = self._tokens.get(given) if scheme.lower() == "bearer" else None
        if expiry is None or expiry <= time.time():
            return 401, _error(401, "authentication.required", "No authentication bearer token")
        return None

    def _inbound(self, request: Request, integration_id: str) -> tuple[int, dict[str, Any]]:
        if integration_id != self.integration_id:
            return 404, _error(404, "not.found", "integration not found")
        try:
            message = json.loads(request.get_data())
            problem = _invalid(message)
        except ValueError:
            problem = "the body is not JSON"
        if problem:
            return 400, _error(400, "bad.request", problem)
        channel = message["channel"]
        sender, message_id = channel["from"], channel.get("messageId")
        prefetch = request.args.get("prefetchConversationId", "").lower() == "true"
        with self._lock:
            if message_id and message_id in self._answers:
                self.duplicates += 1
                return 200, self._answers[message_id]
            conversation_id = self._active.get(sender["id"])
            if conversation_id is None:
                session = self._open(message)
                conversation_id = self._active[sender["id"]] = session.handoff_id
            else:
                session = self._sessions[conversation_id]
                session.hub["said"] += 1
                self.customer_said(
                    session, message.get("text") or "", session.hub["said"], message_id
                )
            answer = {
                "id": uuid.uuid4().hex,
                "channel": {
                    "id": self.integration_id,
                    "platform": "Open",
                    "type": "Private",
                    "messageId": message_id,
                    "to": {"id": self.integration_id},
                    "from": sender,
                    "time": channel["time"],
                },
                "type": "Text",
                "text": message.get("text"),
                "direction": "Inbound",
            }
            if prefetch:
                answer["conversationId"] = conversation_id
            if message_id:
                self._answers[message_id] = answer
            self.received.append(message)
        return 200, answer

    def _open(self, message: dict[str, Any]) -> DeskSession:
        """A new conversation for an Open user, its context read from the participant data."""
        channel = message["channel"]
        attributes: dict[str, str] = dict(
            (channel.get("metadata") or {}).get("customAttributes") or {}
        )
        context: dict[str, Any] = dict(attributes)
        for name in _LISTS:
            if name in context:
                context[name] = _listed(context[name])
        ours, _, _ = channel["from"]["id"].partition(":")
        bot = attributes.get("va_BotId")
        customer = _participant("customer", channel["from"].get("nickname") or "Customer")
        customer["attributes"] = attributes
        session = DeskSession(
            handoff_id=str(uuid.uuid4()),
            conversation_id=attributes.get("va_ConversationId") or ours,
            copilot_id=self.copilot_id or bot or "",
            reply_to=None,
            initiate=message,
            context=context,
            summary_text=attributes.get("summary"),
            unanswered_questions=list(context.get("unanswered_questions") or []),
            routing={
                "queue": attributes.get("routing_queue"),
                "skill": attributes.get("routing_skill"),
            },
            transcript=_transcript(message.get("text") or ""),
            hub={"from_id": channel["from"]["id"], "participants": [customer], "said": 0},
        )
        return self.add_session(session)

    def _conversation(self, conversation_id: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            session = self._sessions.get(conversation_id)
            if session is None:
                return 404, _error(404, "not.found", "conversation not found")
            participants = [dict(p) for p in session.hub["participants"]]
        return 200, {"id": conversation_id, "participants": participants}

    def _participant(
        self, request: Request, conversation_id: str, participant_id: str
    ) -> tuple[int, dict[str, Any]]:
        if not self.may_disconnect:
            return 403, _error(403, "missing.any.permissions", "missing any permissions")
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or body.get("state") not in ("connected", "disconnected"):
            return 400, _error(400, "bad.request", "state must be connected or disconnected")
        with self._lock:
            session = self._sessions.get(conversation_id)
            found = (
                [p for p in session.hub["participants"] if p["id"] == participant_id]
                if session
                else []
            )
            if session is None or not found:
                return 404, _error(404, "not.found", "participant not found")
            if body["state"] == "disconnected" and found[0]["state"] != "disconnected":
                found[0].update(state="disconnected", disconnectType="endpoint", endTime=_now_iso())
                if found[0]["purpose"] == "customer":
                    self._active.pop(session.hub["from_id"], None)
                    self.customer_ended(session)
        return 202, {}


def _sent_long_ago(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` as captured long ago (its channel.time is signed with it)."""
    channel = {**event["channel"], "time": "2000-01-01T00:00:00.000Z"}
    return {**event, "id": uuid.uuid4().hex, "channel": channel}


def _invalid(message: Any) -> str | None:
    """Why Genesys would refuse this inbound open message (400), or None."""
    if not isinstance(message, dict) or not isinstance(message.get("channel"), dict):
        return "channel is required"
    channel = message["channel"]
    sender = channel.get("from")
    if not isinstance(sender, dict) or not isinstance(sender.get("id"), str) or not sender["id"]:
        return "channel.from.id is required"
    if sender.get("idType") not in ID_TYPES:
        return "channel.from.idType must be one of " + ", ".join(ID_TYPES)
    try:
        datetime.fromisoformat(str(channel.get("time")).replace("Z", "+00:00"))
    except ValueError:
        return "channel.time must be an ISO-8601 date-time"
    text = message.get("text")
    if not isinstance(text, str) or not text.strip():
        return "text is required (this emulator takes text messages only)"
    if len(text) > MAX_TEXT_CHARS:
        return f"text is longer than {MAX_TEXT_CHARS} characters"
    if not _str_map(message.get("metadata", {})):
        return "metadata must map strings to strings"
    attributes = (channel.get("metadata") or {}).get("customAttributes", {})
    if not _str_map(attributes):
        return "channel.metadata.customAttributes must map strings to strings"
    if len(attributes) > MAX_ATTRIBUTES:
        return f"more than {MAX_ATTRIBUTES} custom attributes"
    for key, value in attributes.items():
        if not _KEY.fullmatch(key) or len(value) > MAX_ATTRIBUTE_CHARS:
            return f"custom attribute {key[:40]!r}: bad name or longer than {MAX_ATTRIBUTE_CHARS}"
    return None


def _listed(value: str) -> Any:
    """A list the copilot sent as a JSON string attribute (the string itself if it is not)."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def _str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _transcript(text: str) -> list[dict[str, Any]]:
    """The transcript lines of the start message's text, as the desk shows them."""
    _, found, lines = text.partition("Transcript:\n")
    roles = {"Customer": "user", "Copilot": "bot", "Agent": "agent", "System": None}
    entries: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for line in lines.splitlines() if found else []:
        speaker, sep, said = line.partition(": ")
        if sep and speaker in roles:
            role = roles[speaker]
            current = {"from": {"role": role}, "text": said} if role else None
            if current is not None:
                entries.append(current)
        elif current is not None:
            current["text"] += "\n" + line  # a message of several lines
    return entries


def _participant(purpose: str, name: str) -> dict[str, Any]:
    """A MessageMediaParticipant [R S4]; an agent is a Genesys user."""
    return {
        "id": str(uuid.uuid4()),
        "name": name,
        "purpose": purpose,
        "state": "connected",
        "startTime": _now_iso(),
        "connectedTime": _now_iso(),
        **(
            {"user": {"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, name))}}
            if purpose == "agent"
            else {}
        ),
    }


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    """Genesys's ErrorBody [R S4]."""
    return {
        "message": message,
        "code": code,
        "status": status,
        "contextId": str(uuid.uuid4()),
        "details": [],
        "errors": [],
    }


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
