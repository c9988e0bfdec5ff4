"""ServiceNow Virtual Agent's Bot Integration API (docs/hubs/servicenow.md §5) on loopback,
with the agent desk in front as Agent Chat.

What the copilot calls, checked the way ServiceNow checks it:

* ``POST /oauth_token.do``: ``grant_type=client_credentials`` with the client in the form;
  random tokens that ``expire_tokens()`` makes expire at once (then 401 on use);
* ``POST /api/sn_va_as_service/bot/integration``: Basic user/password or a Bearer token
  (401 otherwise, ServiceNow's REST error shape), and the Message Auth ``token`` header when one
  is configured (a wrong one is answered 200 and dropped, as ServiceNow does); the body
  validated (``requestId``, ``userId``, ``message.typed``, ``message.text``, the ``action``
  values, ``contextVariables`` of strings, ``history`` entries), 400 otherwise. ``AGENT`` opens
  an Agent Chat session (the desk's), its context rebuilt from ``contextVariables`` and its
  transcript from ``history``; plain requests are the customer's messages; ``END_CONVERSATION``
  is the customer leaving. A repeated ``requestId`` is answered as before and counted in
  ``duplicates``.

The agent's side goes to the copilot's response endpoint (``/hooks/servicenow/<copilot id>``)
as ServiceNow's "VA response body", with the Basic credential and header we issued, retried on
5xx and connection errors. ServiceNow has no wire event for an agent leaving without ending
(``emits``); a wait-time spinner before the agent joins is sent when ``announce_queue`` is set.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import secrets
import threading
import time
import uuid
from typing import Any

import requests
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from copilot.handoff.hubs.credentials import basic_pair
from copilot.handoff.hubs.servicenow import (
    API_PATH,
    CALLBACK_TOKEN_HEADER,
    HASH_HEADER,
    TOKEN_HEADER,
)
from copilot.handoff.hubs.signatures import hmac_hex
from copilot_dev.emulators.desk import AgentAction, DeskSession, HubDesk, Tampered, json_answer

ACTIONS = frozenset(
    {
        "AGENT",
        "CREATE_CONVERSATION",
        "END_CONVERSATION",
        "FAULT_CONVERSATION",
        "SEND_HISTORY",
        "SET_USER_TIMEZONE",
        "START_CONVERSATION",
        "START_CREATED_CONVERSATION",
        "SWITCH",
        "TYPING",
        "VIEWING",
        "UPDATE_MESSAGES",
    }
)  # [R S1]
_LISTS = ("va_Topics", "va_Phrases", "unanswered_questions")
# ServiceNow's retries of a failed call to the response endpoint are not documented [I]: three
# tries, 0.2 s apart (doubling), keep a retry test short.
RETRIES = 3
BACKOFF = 0.2


class ServiceNowEmulator(HubDesk):
    hub_type = "servicenow"
    ordered = False  # ServiceNow numbers nothing: the copilot applies events as they come
    announces_queue = True  # the wait-time spinner before an agent joins
    # No wire event tells the bot an agent left without ending [I]: "left" shows on the desk.
    emits = frozenset({"joined", "message", "typing", "ended"})
    reported = frozenset({"joined", "message", "typing", "ended"})

    def __init__(self, *, retries: int = RETRIES, token_lifetime: int = 1800, **desk: Any) -> None:
        """``desk``: HubDesk's other keywords (host, port, webhook_url, agent_name, token)."""
        self.username = "copilot.integration"
        self.password = secrets.token_urlsafe(18)
        self.client_id = uuid.uuid4().hex
        self.client_secret = secrets.token_urlsafe(18)
        self.message_token: str | None = secrets.token_urlsafe(24)  # Message Auth static token
        self.hash_secret: str | None = None  # Message Auth hash token, instead (when set)
        self.callback_username = "servicenow"
        self.callback_password = secrets.token_urlsafe(24)
        self.callback_token = secrets.token_urlsafe(24)
        self.token_lifetime = token_lifetime
        self.announce_queue = True  # a wait-time spinner when a session opens
        self.dropped: list[dict[str, Any]] = []  # calls whose Message Auth token was wrong
        self._tokens: dict[str, float] = {}  # access token -> expiry (time.time())
        self._answers: dict[str, tuple[int, dict[str, Any]]] = {}  # requestId -> answer
        self._live: dict[str, str] = {}  # clientSessionId -> its session's handoff_id
        super().__init__(retries=retries, **desk)

    def hub_rules(self) -> list[Rule]:
        return [
            Rule("/oauth_token.do", endpoint="token", methods=["POST"]),
            Rule(API_PATH, endpoint="integration", methods=["POST"]),
        ]

    def hub_settings(self, **fields: Any) -> dict[str, Any]:
        return {
            "type": "servicenow",
            "instance_url": self.url,
            "secret_ref": self.secret_ref,
            **fields,
        }

    @property
    def secret_value(self) -> str:
        return json.dumps(self.credentials())

    def credentials(self, *, oauth: bool = True) -> dict[str, str]:
        """The copilot's secret: OAuth (else Basic) to the API, the Message Auth token, and
        what this instance calls the copilot with."""
        outbound = (
            {"client_id": self.client_id, "client_secret": self.client_secret}
            if oauth
            else {"username": self.username, "password": self.password}
        )
        if self.message_token:
            outbound["token"] = self.message_token
        if self.hash_secret:
            outbound["hash_secret"] = self.hash_secret
        return {
            **outbound,
            "callback_username": self.callback_username,
            "callback_password": self.callback_password,
            "callback_token": self.callback_token,
        }

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
        """A "VA response body" [R S1] as Agent Chat sends it during a live chat; ``kind`` may
        also be "queued" (the wait-time spinner) or an ``actionType`` itself."""
        name = agent or session.agent or self.agent_name
        info = {
            "sentFromAgent": True,
            "agentName": name,
            "agentId": uuid.uuid5(uuid.NAMESPACE_DNS, name).hex,  # a live_profile sys_id
        }
        items: list[dict[str, Any]]
        if kind == "message":
            items = [
                {
                    "uiType": "OutputText",
                    "group": "DefaultText",
                    "value": fields.pop("text", ""),
                    "maskType": "NONE",
                    "agentInfo": info,
                }
            ]
        elif kind == "typing":
            items = [{"uiType": "ActionMsg", "actionType": "StartTypingIndicator"}]
        elif kind == "joined":
            items = [
                {"uiType": "ActionMsg", "actionType": "SwitchToLiveAgent", "agentInfo": info},
                {"uiType": "ActionMsg", "actionType": "System", "message": _entered(name)},
            ]
        elif kind == "ended":
            items = [
                {
                    "uiType": "ActionMsg",
                    "actionType": "System",
                    "message": f"{name} has closed the support session.",
                },
                {"uiType": "ActionMsg", "actionType": "SwitchToVirtualAgent"},
            ]
        elif kind == "queued":
            items = [
                {
                    "uiType": "ActionMsg",
                    "actionType": "StartSpinner",
                    "spinnerType": "wait_time",
                    "message": fields.pop("message", "You are number 1 in the queue."),
                    "waitTime": fields.pop("wait", "2 Minutes"),
                }
            ]
        else:
            items = [{"uiType": "ActionMsg", "actionType": kind}]
        for item in items:  # Virtual Agent API 4.0+ sends a message id [R S2]
            item.setdefault("messageId", uuid.uuid4().hex)
        return {
            "requestId": uuid.uuid4().hex,
            "clientSessionId": session.hub["client_session"],
            "userId": session.hub["user_id"],
            "interactionId": session.handoff_id,
            "agentChat": True,
            "body": items,
            "score": 1,
            **fields,
        }

    def deliver(
        self,
        session: DeskSession,
        event: dict[str, Any] | bytes,
        *,
        headers: dict[str, str] | None = None,
        copilot_id: str | None = None,
        retries: int | None = None,
    ) -> requests.Response:
        """POST to the copilot's response endpoint with the credentials it issued."""
        raw = event if isinstance(event, bytes) else json.dumps(event).encode()
        sent = self.callback_headers() if headers is None else headers
        url = self.webhook(copilot_id or session.copilot_id)
        return self.post_retrying(url, raw, sent, retries, backoff=BACKOFF)

    def callback_headers(
        self, *, password: str | None = None, token: str | None = None
    ) -> dict[str, str]:
        pair = f"{self.callback_username}:{password or self.callback_password}".encode()
        return {
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(pair).decode(),
            CALLBACK_TOKEN_HEADER: token or self.callback_token,
        }

    def tampered(self, session: DeskSession, event: dict[str, Any]) -> list[Tampered]:
        body = json.dumps(event).encode()
        right = self.callback_headers()
        plain = {"Content-Type": "application/json"}
        token_only = {**plain, CALLBACK_TOKEN_HEADER: self.callback_token}
        no_session = json.dumps({**event, "clientSessionId": None}).encode()
        stranger = "f" * 32
        return [
            Tampered("no credentials", self.deliver(session, body, headers=plain), 401),
            Tampered(
                "wrong password",
                self.deliver(session, body, headers=self.callback_headers(password="guessed")),
                403,
            ),
            Tampered(
                "wrong token",
                self.deliver(session, body, headers=self.callback_headers(token="guessed")),
                403,
            ),
            Tampered("no Basic", self.deliver(session, body, headers=token_only), 403),
            Tampered(
                "not JSON", self.deliver(session, b'{"clientSessionId": ', headers=right), 400
            ),
            Tampered("no session", self.deliver(session, no_session, headers=right), 400),
            Tampered("unknown copilot", self.deliver(session, body, copilot_id=stranger), 403),
        ]

    # --- the hub's endpoints ---------------------------------------------------------------

    def _on_token(self, request: Request) -> Response:
        status, answer = self._token(request)
        self.record(request, status)
        return json_answer(answer, status)

    def _token(self, request: Request) -> tuple[int, dict[str, Any]]:
        form = request.form
        if not (
            hmac.compare_digest(form.get("client_id", "").encode(), self.client_id.encode())
            and hmac.compare_digest(
                form.get("client_secret", "").encode(), self.client_secret.encode()
            )
        ):
            return 401, {"error": "server_error", "error_description": "access_denied"}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type", "error_description": "bad grant"}
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.time() + self.token_lifetime
        return 200, {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "scope": "useraccount",
        }

    def _on_integration(self, request: Request) -> Response:
        status, answer = self._api(request) or self._integration(request)
        self.record(request, status)
        return json_answer(answer, status)

    def _api(self, request: Request) -> tuple[int, dict[str, Any]] | None:
        """The answer when the call may not go on: an outage, no or wrong credentials."""
        if self.fail_with is not None:
            return self.fail_with, _error("Service Unavailable", "the instance is down")
        authorization = request.headers.get("Authorization", "")
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() == "bearer":
            with self._lock:
                expiry = self._tokens.get(given.strip())
            if expiry is not None and expiry > time.time():
                return None
        pair = basic_pair(authorization)
        if pair is not None and (
            hmac.compare_digest(pair[0].encode(), self.username.encode())
            and hmac.compare_digest(pair[1].encode(), self.password.encode())
        ):
            return None
        return 401, _error("User Not Authenticated", "Required to provide Auth information")

    def _integration(self, request: Request) -> tuple[int, dict[str, Any]]:
        try:
            payload = json.loads(request.get_data())
            problem = _invalid(payload)
        except ValueError:
            problem = "the body is not JSON"
        if problem:
            return 400, _error("Bad Request", problem)
        if not self._message_auth(request, payload):
            # ServiceNow answers 200 and drops a request failing token validation [R S1].
            with self._lock:
                self.dropped.append(payload)
            return 200, {"status": "success"}
        with self._lock:
            known = self._answers.get(payload["requestId"])
            if known is not None:
                self.duplicates += 1
                return known
            answer = self._apply(payload)
            self._answers[payload["requestId"]] = answer
            self.received.append(payload)
        return answer

    def _message_auth(self, request: Request, payload: dict[str, Any]) -> bool:
        """Message Auth: the static ``token`` header, or the hex HMAC-SHA1 of the payload as
        ServiceNow re-serialises it (compact JSON) in ``x-b2b-signature`` [R S4]."""
        if self.message_token:
            given = request.headers.get(TOKEN_HEADER, "")
            return hmac.compare_digest(given.encode(), self.message_token.encode())
        if self.hash_secret:
            signed = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
            expected = hmac_hex(self.hash_secret, signed, "sha1")
            given = request.headers.get(HASH_HEADER, "")
            return hmac.compare_digest(given.encode(), expected.encode())
        return True

    def _apply(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One accepted request's effect (under the lock)."""
        action = payload.get("action")
        client_session = str(payload.get("clientSessionId") or "")
        live = self._sessions.get(self._live.get(client_session, ""))
        if action == "AGENT":
            if live is None or live.status == "ended":
                live = self._open(payload)
                if self.announce_queue and self.webhook_url:  # (unit tests may have none)
                    threading.Thread(target=self._announce, args=(live,), daemon=True).start()
            return 200, {"status": "success"}
        if live is None:
            # No Agent Chat for this session: the Virtual Agent would take it [I].
            return 200, {"status": "success"}
        message = payload.get("message") or {}
        if action == "END_CONVERSATION":
            if live.status != "ended":
                self._live.pop(client_session, None)
                self.customer_ended(live)
        elif action == "SEND_HISTORY":
            live.transcript += _transcript(payload.get("history") or [])
        elif action is None and live.status != "ended":
            live.hub["said"] += 1
            self.customer_said(
                live,
                str(message.get("text") or ""),
                live.hub["said"],
                message.get("clientMessageId"),
            )
        return 200, {"status": "success"}

    def _open(self, payload: dict[str, Any]) -> DeskSession:
        """An Agent Chat session for an AGENT request, its context read from the request."""
        variables: dict[str, str] = dict(payload.get("contextVariables") or {})
        context: dict[str, Any] = dict(variables)
        for name in _LISTS:
            if name in context:
                context[name] = _listed(context[name])
        client_session = str(payload["clientSessionId"])
        ours, _, _ = client_session.partition(".")
        session = DeskSession(
            handoff_id=uuid.uuid4().hex,  # the interaction's sys_id
            conversation_id=variables.get("va_ConversationId") or ours,
            copilot_id=variables.get("va_BotId") or self.copilot_id or "",
            reply_to=None,
            initiate=payload,
            context=context,
            summary_text=variables.get("summary"),
            unanswered_questions=list(context.get("unanswered_questions") or []),
            routing={
                "queue": variables.get("routing_queue"),
                "skill": variables.get("routing_skill"),
            },
            transcript=_transcript(payload.get("history") or []),
            hub={"client_session": client_session, "user_id": payload["userId"], "said": 0},
        )
        self._live[client_session] = session.handoff_id
        return self.add_session(session)

    def _announce(self, session: DeskSession) -> None:
        """The Virtual Agent's words and the wait-time spinner, as the transfer starts."""
        notice = self.event(session, "queued")
        notice["body"].insert(
            0,
            {
                "uiType": "OutputText",
                "group": "DefaultText",
                "value": "Please stand by while I connect you to a live agent.",
                "maskType": "NONE",
                "messageId": uuid.uuid4().hex,
            },
        )
        with contextlib.suppress(requests.RequestException):  # the copilot is gone
            self.deliver(session, notice)


def _entered(name: str) -> str:
    return f"{name} has entered the chat."


def _invalid(payload: Any) -> str | None:
    """Why ServiceNow would refuse this request (400), or None [R S1: required fields]."""
    if not isinstance(payload, dict):
        return "the body must be a JSON object"
    for name in ("requestId", "userId"):
        if not isinstance(payload.get(name), str) or not payload[name]:
            return f"{name} is required"
    action = payload.get("action")
    if action is not None and action not in ACTIONS:
        return f"action {str(action)[:40]!r} is not valid"
    if not isinstance(payload.get("clientSessionId", ""), str):
        return "clientSessionId must be a string"
    message = payload.get("message")
    if action not in ("SEND_HISTORY", "TYPING", "VIEWING", "SWITCH", "FAULT_CONVERSATION"):
        if not isinstance(message, dict) or not isinstance(message.get("typed"), bool):
            return "message.typed is required"
        text = message.get("text")
        if not isinstance(text, str) or (action is None and not text.strip()):
            return "message.text is required"
        if action == "END_CONVERSATION" and text:
            return "message.text must be empty to END_CONVERSATION"
    variables = payload.get("contextVariables", {})
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        return "contextVariables must map names to strings"
    entries = payload.get("history", [])
    if not isinstance(entries, list):
        return "history must be a list"
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("isBotMessage"), bool):
            return "history entries need isBotMessage"
        if entry.get("type") != "text" or not isinstance(entry.get("value"), str):
            return "history entries are text with a value"
        if not str(entry.get("timestamp", "")).isdigit():
            return "history timestamps are epoch milliseconds"
    return None


def _transcript(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"from": {"role": "bot" if e.get("isBotMessage") else "user"}, "text": e.get("value")}
        for e in entries
    ]


def _listed(value: str) -> Any:
    """A list the copilot sent as a JSON string (the string itself if it is not)."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def _error(message: str, detail: str) -> dict[str, Any]:
    """ServiceNow's REST error body [R S1]."""
    return {"error": {"message": message, "detail": detail}, "status": "failure"}
