"""Dynamics 365 Contact Center behind a custom messaging channel, as the copilot reaches it: a
Direct Line 3.0 service on loopback with the agent desk in front (docs/hubs/dynamics365.md §5).

The copilot is the channel's connector: it takes a token with the channel's Direct Line secret
(``tokens/generate``), opens a conversation with it, posts the customer's activities and reads
the conversation's activities from a watermark. The first customer activity carrying the
workstream's context variables (``channelData.conversationcontext``) reaches the agent as a new
session; the agent's actions (page, console, JSON API) become activities of the conversation,
sent by the relay bot (``from.role`` "bot") with the agent's name, which the copilot pulls:
messages, ``typing``, ``event`` activities named as Contact Center names them (AgentAccepted,
AgentEndSession) and ``endOfConversation``.

Auth as Direct Line answers it: no credentials 401; a wrong secret or token, or a token of
another conversation, 403; an expired token 403 ``TokenExpired``. Tokens last
``token_seconds``; ``expire_tokens()`` makes every token issued so far expire now.
``fail_with`` answers the conversation endpoints (not the token ones) with that status.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any

import requests
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from copilot.entrypoints.http.directline_models import (
    Activity,
    ActivitySet,
    ChannelAccount,
    ConversationAccount,
    DirectLineConversation,
    DirectLineToken,
    ResourceResponse,
)
from copilot_dev.emulators.desk import (
    AgentAction,
    DeskSession,
    HubDesk,
    Tampered,
    json_answer,
    read_context_message,
)

TOKEN_SECONDS = 1800  # Direct Line tokens last 30 minutes [R S4]
BOT_ID = "d365-relay-bot"  # the Azure bot the custom channel account relays through
PREFIX = "/v3/directline"
READ_TIMEOUT = 30.0  # seconds deliver() waits for the copilot to read and apply an activity
READ_GRACE = 1.0  # and for its next read after an end (none comes: it stops reading)
ROUTING = ("Queue", "Skill")  # context variables the adapter routes with (not the customer's)
EVENT_NAMES: dict[AgentAction, str] = {"joined": "AgentAccepted", "left": "AgentEndSession"}


class Dynamics365Emulator(HubDesk):
    hub_type = "dynamics365"
    ordered = False  # watermarks order the activities, but no contiguous per-event number
    emits: frozenset[AgentAction] = frozenset({"joined", "message", "typing", "left", "ended"})

    def __init__(self, **desk: Any) -> None:
        self.directline_secret = secrets.token_urlsafe(32)
        self.token_seconds = TOKEN_SECONDS
        self._tokens: dict[str, dict[str, Any]] = {}  # token -> conversation, user, expiry
        self._conversations: dict[str, dict[str, Any]] = {}  # id -> activities, users...
        self._ids = 0
        self.read_timeout = READ_TIMEOUT  # deliver() waits this long for the copilot's read
        super().__init__(**desk)
        self._read = threading.Condition(self._lock)

    def hub_rules(self) -> list[Rule]:
        conversation = f"{PREFIX}/conversations/<conversation>"
        return [
            Rule(f"{PREFIX}/tokens/generate", endpoint="generate", methods=["POST"]),
            Rule(f"{PREFIX}/tokens/refresh", endpoint="refresh", methods=["POST"]),
            Rule(f"{PREFIX}/conversations", endpoint="start", methods=["POST"]),
            Rule(conversation, endpoint="reconnect", methods=["GET"]),
            Rule(f"{conversation}/activities", endpoint="activities", methods=["GET", "POST"]),
        ]

    def hub_settings(self, **fields: Any) -> dict[str, Any]:
        return {
            "type": "dynamics365",
            "directline_url": self.url + PREFIX,
            "secret_ref": self.secret_ref,
            **fields,
        }

    @property
    def secret_value(self) -> str:
        return json.dumps({"directline_secret": self.directline_secret})

    def expire_tokens(self) -> None:
        with self._lock:
            for issued in self._tokens.values():
                issued["expires_at"] = 0.0

    # --- agent events: activities the copilot pulls ----------------------------------------

    def event(
        self, session: DeskSession, kind: AgentAction, *, agent: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        name = agent or session.agent or self.agent_name
        sender = ChannelAccount(id=BOT_ID, name=name, role="bot")
        if kind == "message":
            return self._activity(session, "message", sender, text=str(fields.get("text", "")))
        if kind == "typing":
            return self._activity(session, "typing", sender)
        if kind == "ended":
            return self._activity(session, "endOfConversation", sender)
        return self._activity(session, "event", sender, name=EVENT_NAMES[kind])

    def queue_position(self, session: DeskSession, text: str) -> dict[str, Any]:
        """An automated message of the queue (tagged so, [I] docs/hubs/dynamics365.md §3)."""
        sender = ChannelAccount(id=BOT_ID, name="System", role="bot")
        activity = self._activity(
            session, "message", sender, text=text, channel_data={"tags": "system,queueposition"}
        )
        self.deliver(session, activity)
        return activity

    def _activity(
        self, session: DeskSession, kind: str, sender: ChannelAccount, **fields: Any
    ) -> dict[str, Any]:
        """A new activity of the session's conversation (its id taken, not yet visible)."""
        channel_data = fields.pop("channel_data", None)
        return Activity(
            type=kind,
            id=self._next_id(session.handoff_id),
            timestamp=datetime.now(UTC),
            conversation=ConversationAccount(id=session.handoff_id),
            from_=sender,
            channel_data=channel_data,
            **fields,
        ).model_dump(mode="json")

    def _next_id(self, conversation: str) -> str:
        with self._lock:
            self._ids += 1
            return f"{conversation}|{self._ids:07d}"

    def deliver(
        self, session: DeskSession, event: dict[str, Any] | bytes, *, retries: int | None = None
    ) -> requests.Response:
        """Make ``event`` visible in the conversation (Direct Line holds it until the copilot
        reads past it). Delivering one twice shows it twice: the copilot keeps it once by id.

        Returns once the copilot has read it and asked for what follows (so it has applied
        it), or after ``read_timeout`` seconds, as a webhook hub's delivery returns once the
        copilot answered (Direct Line itself never waits, and tells the agent nothing). The
        answer says in the copilot's webhook terms what the emulator saw: the activity read
        for the first time "applied", read again "duplicate", not read "held" (202), and
        "ignored" at once after the customer ended the conversation (nobody reads it)."""
        activity = json.loads(event) if isinstance(event, bytes) else event
        activity_id = str(activity.get("id"))
        with self._read:
            state = self._conversations[session.handoff_id]
            state["activities"].append(activity)
            position = len(state["activities"])
            delivered = state.setdefault("delivered", set())
            again, found = activity_id in delivered, "held"
            if state.get("customer_ended"):
                found = "ignored"
            elif self._read.wait_for(lambda: state.get("read", 0) >= position, self.read_timeout):
                delivered.add(activity_id)
                found = "duplicate" if again else "applied"
                # The copilot's next read comes once it applied this one (a pull job reads on
                # only after its batch is kept); none comes after an end (it stops reading).
                last = activity.get("type") == "endOfConversation"
                gets, wait = state.get("gets", 0), READ_GRACE if last else self.read_timeout
                self._read.wait_for(lambda: state.get("gets", 0) > gets, wait)
        answer = requests.Response()
        answer.status_code = 202 if found == "held" else 200
        answer._content = json.dumps(
            {"results": [{"event_id": activity_id, "status": found}]}
        ).encode()
        answer.headers["Content-Type"] = "application/json"
        return answer

    def tampered(self, session: DeskSession, event: dict[str, Any]) -> list[Tampered]:
        # Nothing is pushed to the copilot: it reads the activities from Direct Line with its
        # own secret and tokens, so there is no delivery to forge (the adapter still leaves
        # out malformed activities and those of another conversation, unit-tested).
        return []

    # --- Direct Line: tokens ---------------------------------------------------------------

    def _on_generate(self, request: Request) -> Response:
        def handle() -> tuple[int, Any]:
            if not self._is_secret(request):
                return self._refused(request)
            data = request.get_json(silent=True) if request.get_data() else {}
            user = data.get("user") if isinstance(data, dict) else None
            if user is not None and not (isinstance(user, dict) and user.get("id")):
                return 400, _error("BadArgument", "user.id is required")
            conversation = secrets.token_hex(16)
            with self._lock:
                self._conversations[conversation] = {"activities": [], "started": False}
            return 200, self._issue(conversation, user).model_dump()

        return self._answer(request, handle, outage=False)

    def _on_refresh(self, request: Request) -> Response:
        def handle() -> tuple[int, Any]:
            issued = self._token(request)
            if not isinstance(issued, dict):
                return issued
            return 200, self._issue(issued["conversation"], issued["user"]).model_dump()

        return self._answer(request, handle, outage=False)

    def _issue(self, conversation: str, user: dict[str, Any] | None) -> DirectLineToken:
        token = secrets.token_urlsafe(48)
        with self._lock:
            self._tokens[token] = {
                "conversation": conversation,
                "user": user,
                "expires_at": time.time() + self.token_seconds,
            }
        return DirectLineToken(
            conversation_id=conversation, token=token, expires_in=self.token_seconds
        )

    # --- Direct Line: conversations --------------------------------------------------------

    def _on_start(self, request: Request) -> Response:
        def handle() -> tuple[int, Any]:
            if self._is_secret(request):
                conversation, user = secrets.token_hex(16), None
                with self._lock:
                    self._conversations[conversation] = {"activities": [], "started": False}
            else:
                issued = self._token(request)
                if not isinstance(issued, dict):
                    return issued
                conversation, user = issued["conversation"], issued["user"]
            with self._lock:
                state = self._conversations[conversation]
                first, state["started"] = not state["started"], True
            token = self._issue(conversation, user)
            answer = DirectLineConversation(**token.model_dump())
            return (201 if first else 200), answer.model_dump()

        return self._answer(request, handle)

    def _on_reconnect(self, request: Request, conversation: str) -> Response:
        def handle() -> tuple[int, Any]:
            refused = self._conversation_refused(request, conversation)
            if refused is not None:
                return refused
            user = None
            with self._lock:
                for issued in self._tokens.values():
                    if issued["conversation"] == conversation and issued["user"]:
                        user = issued["user"]
            return 200, self._issue(conversation, user).model_dump()

        return self._answer(request, handle)

    def _on_activities(self, request: Request, conversation: str) -> Response:
        def handle() -> tuple[int, Any]:
            refused = self._conversation_refused(request, conversation)
            if refused is not None:
                return refused
            if request.method == "GET":
                return 200, self._activity_set(conversation, request.args.get("watermark"))
            try:
                posted = json.loads(request.get_data())
            except ValueError:
                return 400, _error("BadArgument", "the body is not JSON")
            return self._posted(conversation, posted)

        return self._answer(request, handle)

    def _activity_set(self, conversation: str, watermark: str | None) -> dict[str, Any]:
        with self._read:
            state = self._conversations[conversation]
            activities = list(state["activities"])
            state["read"], state["gets"] = len(activities), state.get("gets", 0) + 1
            self._read.notify_all()
        start = int(watermark) if watermark and watermark.isdigit() else 0
        found = ActivitySet(
            activities=[Activity.model_validate(a) for a in activities[start:]],
            watermark=str(len(activities)),
        )
        return found.model_dump(mode="json")

    def _posted(self, conversation: str, posted: Any) -> tuple[int, Any]:
        """A customer activity: shown to the agent (the first with the context variables opens
        the session), echoed into the conversation as Direct Line does."""
        if not isinstance(posted, dict) or not isinstance(posted.get("type"), str):
            return 400, _error("BadArgument", "an activity with a type")
        data, sender = _dict(posted.get("channelData")), _dict(posted.get("from"))
        client_id = data.get("clientActivityID")
        with self._lock:
            state = self._conversations[conversation]
            seen = state.setdefault("client_ids", {})
            if client_id and client_id in seen:
                # The same clientActivityID again: the emulator counts the repeat and shows the
                # agent the first only (Direct Line documents no de-duplication [I]).
                self.duplicates += 1
                return 200, {"id": seen[client_id]}
            activity_id = self._next_id(conversation)
            if client_id:
                seen[client_id] = activity_id
            echo = Activity(
                type=posted["type"],
                id=activity_id,
                timestamp=datetime.now(UTC),
                conversation=ConversationAccount(id=conversation),
                from_=ChannelAccount(
                    id=str(sender.get("id") or "user"), name=sender.get("name"), role="user"
                ),
                text=_text(posted.get("text")) or None,
                channel_data=data or None,
            )
            state["activities"].append(echo.model_dump(mode="json"))
            self.received.append(posted)
        self._show_agent(conversation, posted, data, activity_id)
        return 200, ResourceResponse(id=activity_id).model_dump()

    def _show_agent(
        self, conversation: str, posted: dict[str, Any], data: dict[str, Any], activity_id: str
    ) -> None:
        context = data.get("conversationcontext")
        text = _text(posted.get("text"))
        with self._lock:
            session = self._sessions.get(conversation)
            if session is None:
                if posted["type"] == "message" and isinstance(context, dict):
                    self.add_session(_session_of(conversation, posted, data, text))
                return  # before the context arrives, nothing reaches an agent
            if posted["type"] == "endOfConversation":
                self._conversations[conversation]["customer_ended"] = True
                self.customer_ended(session)
            elif posted["type"] == "message" and text:
                counter = session.hub.setdefault("customer", 0) + 1
                session.hub["customer"] = counter
                self.customer_said(session, text, counter, activity_id)

    # --- auth and answers ------------------------------------------------------------------

    def _answer(self, request: Request, handle: Any, *, outage: bool = True) -> Response:
        if outage and self.fail_with is not None:
            status, answer = self.fail_with, _error("ServiceError", "try again later")
        else:
            status, answer = handle()
        self.record(request, status)
        return json_answer(answer, status)

    def _bearer(self, request: Request) -> str | None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None

    def _is_secret(self, request: Request) -> bool:
        given = self._bearer(request) or ""
        return hmac.compare_digest(given.encode(), self.directline_secret.encode())

    def _refused(self, request: Request) -> tuple[int, Any]:
        if self._bearer(request) is None:
            return 401, _error("BadArgument", "Missing token or secret")
        return 403, _error("BadArgument", "the token or secret is not valid")

    def _token(self, request: Request) -> dict[str, Any] | tuple[int, Any]:
        """The token's grant, or the refusal to answer."""
        with self._lock:
            issued = self._tokens.get(self._bearer(request) or "")
        if issued is None:
            return self._refused(request)
        if issued["expires_at"] <= time.time():
            return 403, _error("TokenExpired", "Token expired")
        return issued

    def _conversation_refused(self, request: Request, conversation: str) -> tuple[int, Any] | None:
        with self._lock:
            known = self._conversations.get(conversation, {}).get("started", False)
        if not self._is_secret(request):
            issued = self._token(request)
            if not isinstance(issued, dict):
                return issued
            if issued["conversation"] != conversation:
                return 403, _error("BadArgument", "the token is not for this conversation")
        if not known:
            return 404, _error("BadArgument", "Conversation not found")
        return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _error(code: str, message: str) -> dict[str, Any]:
    """Direct Line's ErrorResponse [R S3]."""
    return {"error": {"code": code, "message": message}}


def _session_of(
    conversation: str, posted: dict[str, Any], data: dict[str, Any], text: str
) -> DeskSession:
    """The hand-off as the agent sees it, rebuilt from the channel's fields: the context
    variables, the customer context and the first message (summary, lists, transcript)."""
    variables = {str(k): str(v) for k, v in (data.get("conversationcontext") or {}).items()}
    customer = data.get("customercontext") or {}
    labels, lists, transcript = read_context_message(text)
    context: dict[str, Any] = {
        k: v for k, v in variables.items() if not k.startswith("va_") and k not in ROUTING
    }
    if isinstance(posted.get("from"), dict) and posted["from"].get("name"):
        context.setdefault("name", posted["from"]["name"])
    for wire, ours in (("email", "email"), ("phonenumber", "phone")):
        if customer.get(wire):
            context.setdefault(ours, customer[wire])
    phrases = variables.get("va_Phrases", "")
    context |= {
        "va_ConversationId": variables.get("va_ConversationId"),
        "va_LastTopic": variables.get("va_LastTopic"),
        "va_AgentMessage": variables.get("va_AgentMessage"),
        "va_BotName": variables.get("va_BotName"),
        "va_Language": variables.get("va_Language"),
        "va_Phrases": phrases.split("\n") if phrases else [],
    }
    return DeskSession(
        handoff_id=conversation,
        conversation_id=variables.get("va_ConversationId", ""),
        copilot_id=variables.get("va_BotId", ""),
        reply_to=None,
        initiate={"activity": posted},
        context=context,
        summary_text=labels.get("Summary"),
        unanswered_questions=list(lists.get("Unanswered questions:", [])),
        routing={"queue": variables.get("Queue"), "skill": variables.get("Skill")},
        transcript=transcript,
    )
