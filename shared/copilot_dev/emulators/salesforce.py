"""Salesforce Messaging for In-App and Web (Enhanced Chat) on loopback, with the agent desk in
front (docs/hubs/salesforce.md, "The emulator").

The copilot is a custom client: it takes an unauthenticated (guest) access token, creates a
conversation with routing attributes (the deployment's hidden pre-chat fields), sends
messages and closes the conversation with DELETE. Everything Salesforce says back goes on the
guest's Server-Sent Events stream (``GET /eventrouter/v1/sse``): one event log, numbered, that
every open stream of the guest reads from its ``Last-Event-ID``, with keepalive comments while
nothing happens. The agent's actions (desk) become those events: participant changes, typing,
messages, the session's end; the customer's own messages are echoed as Salesforce does.

``expire_tokens()`` makes every token issued so far expire (401): the copilot continues the
guest's session (continuation-access-token, same subject) and loses nothing. ``fail_with``
answers the conversation, message and stream endpoints (not the token endpoints).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import requests
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from copilot_dev.emulators.desk import (
    AgentAction,
    DeskSession,
    HubDesk,
    Tampered,
    json_answer,
    read_context_message,
)

API = "/iamessage/api/v2"
TOKEN_SECONDS = 6 * 3600  # a guest token's life here [I: the docs give none]
KEEPALIVE_SECONDS = 0.5  # a comment line this often on a quiet stream
STREAM_SECONDS = 120.0  # a stream is closed after this long (the client reconnects)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_LISTED = ("va_Topics", "va_Phrases", "unanswered_questions")
_OURS = (
    "summary",
    "unanswered_questions",
    "routing_queue",
    "routing_skill",
    "copilot_id",
    "handoff_id",
)


class SalesforceEmulator(HubDesk):
    hub_type = "salesforce"
    # SSE ids number the guest's stream, not one conversation without gaps: arrival order.
    ordered = False
    emits: frozenset[AgentAction] = frozenset({"joined", "message", "typing", "left", "ended"})

    def __init__(self, **desk: Any) -> None:
        self.org_id = "00D" + secrets.token_hex(6).upper()[:12]
        self.deployment = "Northwind_Web"
        self.token_seconds = TOKEN_SECONDS
        self.wait_seconds = -1  # estimatedWaitTime in routing results (-1: not known)
        # How long an agent's message waits for the client's delivery acknowledgement before
        # deliver() answers 202 (not yet delivered) instead of 200 (delivered, like a webhook's
        # answer: the copilot has taken it).
        self.ack_timeout = 30.0
        self.acknowledged: dict[str, int] = {}  # entry id -> the client's acknowledgements
        self._tokens: dict[str, dict[str, Any]] = {}  # token -> {"subject", "expires"}
        self._conversations: dict[str, DeskSession] = {}
        self._messages: set[tuple[str, str]] = set()  # (conversation, message id)
        self._log: list[dict[str, Any]] = []  # {"id", "subject", "event", "data"}
        self._changed = threading.Condition()
        super().__init__(**desk)

    def hub_rules(self) -> list[Rule]:
        return [
            Rule(
                f"{API}/authorization/unauthenticated/access-token",
                endpoint="access_token",
                methods=["POST"],
            ),
            Rule(
                f"{API}/authorization/continuation-access-token",
                endpoint="continuation",
                methods=["GET"],
            ),
            Rule(f"{API}/conversation", endpoint="create", methods=["POST"]),
            Rule(
                f"{API}/conversation/<conversation>/message", endpoint="message", methods=["POST"]
            ),
            Rule(f"{API}/conversation/<conversation>", endpoint="close", methods=["DELETE"]),
            Rule(
                f"{API}/conversation/<conversation>/acknowledge-entries",
                endpoint="acknowledge",
                methods=["POST"],
            ),
            Rule("/eventrouter/v1/sse", endpoint="sse", methods=["GET"]),
        ]

    def hub_settings(self, **fields: Any) -> dict[str, Any]:
        return {
            "type": "salesforce",
            "scrt_url": self.url,
            "org_id": self.org_id,
            "deployment": self.deployment,
            **fields,
        }

    @property
    def secret_value(self) -> str:
        return ""  # guests need no secret

    def stack_env(self) -> dict[str, str]:
        return {}  # no secret, no allow-list

    def expire_tokens(self) -> None:
        with self._lock:
            for token in self._tokens.values():
                token["expires"] = 0.0

    # --- agent events ------------------------------------------------------------------------

    def event(
        self, session: DeskSession, kind: AgentAction, *, agent: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        name = agent or session.agent or self.agent_name
        subject = "005" + uuid.uuid5(uuid.NAMESPACE_URL, f"sf-agent:{name}").hex[:12]
        sender = {"role": "Agent", "appType": "agent", "subject": subject}
        if kind == "message":
            message = {
                "messageType": "StaticContentMessage",
                "id": str(uuid.uuid4()),
                "staticContent": {"formatType": "Text", "text": str(fields.get("text", ""))},
            }
            return _entry(session, "CONVERSATION_MESSAGE", sender, name, "Message", message)
        if kind == "typing":
            return _entry(
                session,
                "CONVERSATION_TYPING_STARTED_INDICATOR",
                sender,
                name,
                "TypingStartedIndicator",
                {},
            )
        if kind in ("joined", "left"):
            change = {
                "operation": "add" if kind == "joined" else "remove",
                "participant": sender,
                "displayName": name,
            }
            return _entry(
                session,
                "CONVERSATION_PARTICIPANT_CHANGED",
                _SYSTEM,
                "System",
                "ParticipantChanged",
                {"entries": [change]},
            )
        ended = {"sessionStatus": "Ended", "sessionEndedByRole": "Agent"}
        return _entry(
            session,
            "CONVERSATION_SESSION_STATUS_CHANGED",
            _SYSTEM,
            "System",
            "SessionStatusChanged",
            ended,
        )

    def deliver(
        self, session: DeskSession, event: dict[str, Any] | bytes, *, retries: int | None = None
    ) -> requests.Response:
        """Put the event on the guest's stream (each delivery a new SSE id; a re-delivered
        entry keeps its identifier)."""
        if isinstance(event, bytes):
            event = json.loads(event)
        assert isinstance(event, dict)
        entry = str(event["data"]["conversationEntry"]["identifier"])
        if session.status == "ended":
            # The customer closed the conversation or the agent ended the session: Salesforce
            # takes nothing more into it [I], so the copilot never hears of it (what a webhook
            # hub's copilot answers "ignored").
            return _answered(200, [{"event_id": entry, "status": "ignored"}])
        with self._changed:
            before = self.acknowledged.get(entry, 0)
        self._publish(str(session.hub["subject"]), event["event"], event["data"])
        if event["event"] != "CONVERSATION_MESSAGE":
            return _answered(202, [])
        # The hub learns what the client did with an agent's message from its delivery
        # acknowledgement; the desk reports it in the copilot's webhook terms: the entry's
        # first acknowledgement "applied", a later one "duplicate", none (yet) "held".
        with self._changed:
            taken = self._changed.wait_for(
                lambda: self.acknowledged.get(entry, 0) > before, self.ack_timeout
            )
        found = "held" if not taken else "duplicate" if before else "applied"
        return _answered(200 if taken else 202, [{"event_id": entry, "status": found}])

    def tampered(self, session: DeskSession, event: dict[str, Any]) -> list[Tampered]:
        # No inbound webhook exists: the copilot only reads its own guest's stream, with its
        # own token, so there is nothing to forge. The adapter still drops malformed events and
        # events of other conversations (tests/unit/test_salesforce_hub.py).
        return []

    def _publish(self, subject: str, event: str, data: dict[str, Any]) -> None:
        with self._changed:
            self._log.append(
                {"id": str(len(self._log) + 1), "subject": subject, "event": event, "data": data}
            )
            self._changed.notify_all()

    def last_event_id(self) -> str:
        with self._changed:
            return str(len(self._log))

    # --- tokens ------------------------------------------------------------------------------

    def _issue(self, subject: str) -> str:
        claims = {"sub": subject, "iat": int(time.time()), "jti": uuid.uuid4().hex}
        body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        token = f"eyJhbGciOiJSUzI1NiJ9.{body}.{secrets.token_urlsafe(24)}"
        with self._lock:
            self._tokens[token] = {"subject": subject, "expires": time.time() + self.token_seconds}
        return token

    def _guest(self, request: Request) -> str | None:
        """The subject of a valid Bearer token, else None."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        with self._lock:
            known = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if known is None or known["expires"] < time.time():
            return None
        return str(known["subject"])

    def _on_access_token(self, request: Request) -> Response:
        data = request.get_json(silent=True) or {}
        if data.get("orgId") != self.org_id or data.get("esDeveloperName") != self.deployment:
            return self._answer(request, 400, _error(400, "Invalid orgId or esDeveloperName"))
        if not data.get("capabilitiesVersion") or data.get("platform") not in ("Web", "Mobile"):
            return self._answer(request, 400, _error(400, "capabilitiesVersion and platform"))
        subject = f"v2/iamessage/UNAUTH/NA/uid:{uuid.uuid4()}"
        answer = {
            "accessToken": self._issue(subject),
            "lastEventId": self.last_event_id(),
            "context": {"deviceId": str(uuid.uuid4()), "configuration": {}},
        }
        return self._answer(request, 200, answer)

    def _on_continuation(self, request: Request) -> Response:
        # The old token may have expired (not been revoked): the same guest continues [I].
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        with self._lock:
            known = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if known is None:
            return self._answer(request, 401, _error(401, "Invalid token"))
        answer = {"accessToken": self._issue(str(known["subject"])), "lastEventId": ""}
        return self._answer(request, 200, answer)

    # --- conversations -------------------------------------------------------------------------

    def _refused(self, request: Request) -> tuple[Response | None, str]:
        if self.fail_with is not None:
            return self._answer(request, self.fail_with, _error(self.fail_with, "Unavailable")), ""
        subject = self._guest(request)
        if subject is None:
            return self._answer(request, 401, _error(401, "Unauthorized")), ""
        return None, subject

    def _on_create(self, request: Request) -> Response:
        refused, subject = self._refused(request)
        if refused is not None:
            return refused
        data = request.get_json(silent=True) or {}
        conversation = str(data.get("conversationId") or "")
        attributes = data.get("routingAttributes") or {}
        if not _UUID.match(conversation) or data.get("esDeveloperName") != self.deployment:
            return self._answer(request, 400, _error(400, "conversationId: a lowercase UUID"))
        if not isinstance(attributes, dict) or not all(
            isinstance(v, str) for v in attributes.values()
        ):
            return self._answer(request, 400, _error(400, "routingAttributes: strings"))
        with self._lock:
            known = self._conversations.get(conversation)
            if known is not None:
                if known.hub["subject"] == subject:
                    self.duplicates += 1
                return self._answer(request, 409, _error(409, "Conversation already exists"))
            session = _session_of(conversation, attributes, data)
            session.hub.update(subject=subject, notes=0)
            self._conversations[conversation] = session
            self.received.append({"type": "conversation", "body": data})
        result = {
            "entryType": "RoutingResult",
            "routingType": "Initial",
            "failureType": "None",
            "estimatedWaitTime": {
                "estimatedWaitTimeInSeconds": self.wait_seconds,
                "isEWTRequested": True,
            },
        }
        self._publish(
            subject,
            **_entry(
                session, "CONVERSATION_ROUTING_RESULT", _SYSTEM, "System", "RoutingResult", result
            ),
        )
        return self._answer(request, 201, {})

    def _owned(self, request: Request, conversation: str) -> Response | DeskSession:
        """The guest's conversation, or the answer refusing the call."""
        refused, subject = self._refused(request)
        if refused is not None:
            return refused
        session = self._conversations.get(conversation)
        if session is None or session.hub["subject"] != subject:
            return self._answer(request, 404, _error(404, "No such conversation"))
        return session

    def _on_message(self, request: Request, conversation: str) -> Response:
        session = self._owned(request, conversation)
        if isinstance(session, Response):
            return session
        data = request.get_json(silent=True) or {}
        message: dict[str, Any] = data["message"] if isinstance(data.get("message"), dict) else {}
        text = (message.get("staticContent") or {}).get("text")
        message_id = str(message.get("id") or "")
        if not _UUID.match(message_id) or not isinstance(text, str) or not text:
            return self._answer(request, 400, _error(400, "message.id and a text"))
        if session.hub.get("closed"):
            return self._answer(request, 400, _error(400, "The conversation is closed"))
        with self._lock:
            if (conversation, message_id) in self._messages:
                self.duplicates += 1  # the same message id: taken once [I]
                return self._answer(request, 202, {})
            self._messages.add((conversation, message_id))
            self.received.append({"type": "message", "body": data})
            first = not session.hub["notes"]
            session.hub["notes"] = 1
            if first:  # the copilot's hand-off note: the transcript, for the desk
                session.transcript = read_context_message(text)[2]
                self.add_session(session)  # the agent is offered it with its transcript
            else:
                self.customer_said(session, text, len(session.customer) + 1, message_id)
        guest = {"role": "EndUser", "appType": "iamessage", "subject": session.hub["subject"]}
        echo = {
            "messageType": "StaticContentMessage",
            "id": message_id,
            "staticContent": {"formatType": "Text", "text": text},
        }
        self._publish(
            session.hub["subject"],
            **_entry(
                session, "CONVERSATION_MESSAGE", guest, "Guest", "Message", echo, ident=message_id
            ),
        )
        return self._answer(request, 202, {})

    def _on_close(self, request: Request, conversation: str) -> Response:
        session = self._owned(request, conversation)
        if isinstance(session, Response):
            return session
        if request.args.get("esDeveloperName") != self.deployment:
            return self._answer(request, 400, _error(400, "esDeveloperName"))
        with self._lock:
            if not session.hub.get("closed"):
                session.hub["closed"] = True
                self.customer_ended(session)
                self.received.append({"type": "close", "conversation": conversation})
        self._publish(
            session.hub["subject"],
            **_entry(
                session,
                "CONVERSATION_CLOSE_CONVERSATION",
                _SYSTEM,
                "System",
                "CloseConversation",
                {},
            ),
        )
        return self._answer(request, 204, None)

    def _on_acknowledge(self, request: Request, conversation: str) -> Response:
        session = self._owned(request, conversation)
        if isinstance(session, Response):
            return session
        data = request.get_json(silent=True) or {}
        acks = data.get("acks") if isinstance(data, dict) else None
        if not isinstance(acks, list) or not all(
            isinstance(a, dict)
            and a.get("entryType") in ("Delivery", "Read")
            and a.get("conversationEntryId")
            for a in acks
        ):
            return self._answer(
                request, 400, _error(400, "acks: [{id, entryType, conversationEntryId}]")
            )
        with self._changed:
            for ack in acks:
                entry = str(ack["conversationEntryId"])
                self.acknowledged[entry] = self.acknowledged.get(entry, 0) + 1
            self._changed.notify_all()
        return self._answer(request, 202, {})

    # --- the stream ----------------------------------------------------------------------------

    def _on_sse(self, request: Request) -> Response:
        refused, subject = self._refused(request)
        if refused is not None:
            return refused
        org = request.headers.get("X-Org-Id", "")
        if not org or not self.org_id.startswith(org[:15]):
            return self._answer(request, 400, _error(400, "X-Org-Id"))
        given = request.headers.get("Last-Event-ID", "")
        start = int(given) if given.isdigit() else len(self._log)
        self.record(request, 200)
        return Response(
            self._stream(subject, start),
            status=200,
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache"},
            direct_passthrough=True,
        )

    def _stream(self, subject: str, after: int) -> Iterator[bytes]:
        closes = time.monotonic() + STREAM_SECONDS
        yield b": connected\n\n"
        while time.monotonic() < closes and self._server is not None:
            with self._changed:
                pending = [e for e in self._log[after:] if e["subject"] == subject]
                after = len(self._log)
                if not pending:
                    self._changed.wait(KEEPALIVE_SECONDS)
            if not pending:
                yield b": keepalive\n\n"
            for event in pending:
                data = json.dumps(event["data"])
                yield f"id: {event['id']}\nevent: {event['event']}\ndata: {data}\n\n".encode()

    def _answer(self, request: Request, status: int, body: Any) -> Response:
        self.record(request, status)
        if body is None:
            return Response(status=status)
        return json_answer(body, status)


_SYSTEM = {"role": "System", "appType": "conversation", "subject": "005000000000001"}


def _entry(
    session: DeskSession,
    name: str,
    sender: dict[str, Any],
    display: str,
    entry_type: str,
    payload: dict[str, Any],
    ident: str | None = None,
) -> dict[str, Any]:
    """An SSE event's name and data: the conversation entry, its payload a JSON string [R]."""
    identifier = ident or str(uuid.uuid4())
    inner = {"entryType": entry_type, "id": identifier, **payload}
    if entry_type == "Message":
        inner = {"entryType": "Message", "id": identifier, "abstractMessage": payload}
    return {
        "event": name,
        "data": {
            "channelPlatformKey": "",
            "channelType": "embedded_messaging",
            "channelAddressIdentifier": "0Mj000000000001",
            "conversationId": session.handoff_id,
            "conversationEntry": {
                "identifier": identifier,
                "senderDisplayName": display,
                "sender": sender,
                "entryType": entry_type,
                "entryPayload": json.dumps(inner),
                "transcriptedTimestamp": int(time.time() * 1000),
                "relatedRecords": [],
            },
        },
    }


def _session_of(conversation: str, attributes: dict[str, str], body: dict[str, Any]) -> DeskSession:
    """The hand-off as the agent sees it, rebuilt from the routing attributes."""
    read: dict[str, Any] = {k: json.loads(v) if k in _LISTED else v for k, v in attributes.items()}
    context = {k: v for k, v in read.items() if k not in _OURS}
    context.setdefault("va_Phrases", [])
    return DeskSession(
        handoff_id=conversation,
        conversation_id=attributes.get("va_ConversationId", ""),
        copilot_id=attributes.get("copilot_id", ""),
        reply_to=None,
        initiate={"conversation": body},
        context=context,
        summary_text=attributes.get("summary"),
        unanswered_questions=read.get("unanswered_questions", []),
        routing={
            "queue": attributes.get("routing_queue"),
            "skill": attributes.get("routing_skill"),
        },
    )


def _answered(status: int, results: list[dict[str, str]]) -> requests.Response:
    """The desk's answer to a delivery, in the shape of the copilot's webhook answer."""
    answer = requests.Response()
    answer.status_code = status
    answer._content = json.dumps({"results": results}).encode()
    answer.headers["Content-Type"] = "application/json"
    return answer


def _error(status: int, message: str) -> dict[str, Any]:
    return {"code": status, "message": message}  # the shape is [I]
