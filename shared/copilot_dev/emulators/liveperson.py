"""LivePerson Messaging (Connector API) on loopback, with the agent desk in front
(docs/hubs/liveperson.md §5).

The copilot is the connector: it finds the account's hosts through this emulator's Domain API
(every service points back here), takes an AppJWT from ``sentinel``, a ConsumerJWS per customer
from ``idp``, and talks to the Send API as that consumer. The agent's side (page, console, JSON
API) is the desk's; each agent action becomes the webhook LivePerson would send:
``cqm.ExConversationChangeNotification`` (assigned, removed, closed) or
``ms.MessagingEventNotification`` (ContentEvent with the conversation's next ``sequence``,
ChatStateEvent COMPOSING), signed ``x-liveperson-signature: sha1=<base64 HMAC-SHA1>`` with the
app's client secret. The consumer's own messages come back the same way (LivePerson echoes
them, numbered in the same counter), in the background like LivePerson's webhooks service.

``expire_tokens()`` makes every AppJWT and ConsumerJWS issued so far expire (401 with LivePerson's
error codes); ``fail_with`` answers the Send API (not the token endpoints) with that status.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import threading
import time
import uuid
from typing import Any

import requests
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from copilot.handoff.hubs.signatures import signature_header
from copilot_dev.emulators.desk import (
    AgentAction,
    DeskSession,
    HubDesk,
    Tampered,
    json_answer,
    read_context_message,
)

# LivePerson retries a failed webhook up to max_retries (0-5) times, 30 s apart [R S11]; here
# up to 5 deliveries 0.2, 0.4, 0.8, 1.6 s apart, so tests do not wait minutes.
WEBHOOK_ATTEMPTS = 5
WEBHOOK_BACKOFF = 0.2
TOKEN_SECONDS = 3600  # "An AppJWT is valid for one hour" [R S3]
ERRORS = {  # errorCode: (title, details) [R S3, S10]
    40102: ("Invalid AppJWT", "AppJWT is invalid"),
    40103: ("Invalid ConsumerJWS", "ConsumerJWS is invalid"),
    40104: ("ConsumerJWS is missing", "X_ON_BEHALF_HEADER is not present"),
    40105: ("AppJWT is missing", "AUTHORIZATION header is not present"),
}


class LivePersonEmulator(HubDesk):
    hub_type = "liveperson"
    ordered = True  # content events carry the conversation's contiguous sequence (from 0)
    emits: frozenset[AgentAction] = frozenset({"joined", "message", "typing", "left", "ended"})
    names_agents = False  # a connector is never told the agent's name (docs/hubs/liveperson.md)

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_url: str | None = None,
        agent_name: str = "Alex",
        retries: int = WEBHOOK_ATTEMPTS,
        token: str | None = None,
    ) -> None:
        self.account_id = str(10_000_000 + secrets.randbelow(89_999_999))
        self.client_id = str(uuid.uuid4())
        self.client_secret = secrets.token_urlsafe(18)
        self.token_seconds = TOKEN_SECONDS
        self._app_tokens: dict[str, float] = {}  # AppJWT -> expiry
        self._consumer_tokens: dict[str, str] = {}  # ConsumerJWS -> ext_consumer_id
        self._skills: dict[str, str] = {}  # skill id -> name (the account's skills)
        self._last_ts: dict[str, int] = {}  # conversation -> metaDataLastUpdateTs
        super().__init__(
            host=host,
            port=port,
            webhook_url=webhook_url,
            agent_name=agent_name,
            retries=retries,
            token=token,
        )

    def hub_rules(self) -> list[Rule]:
        acct = "/api/account/<account>"
        return [
            Rule(f"{acct}/service/baseURI.json", endpoint="domains", methods=["GET"]),
            Rule(f"{acct}/service/<service>/baseURI.json", endpoint="domain", methods=["GET"]),
            Rule(f"/sentinel{acct}/app/token", endpoint="app_token", methods=["POST"]),
            Rule(f"{acct}/consumer", endpoint="consumer", methods=["POST"]),
            Rule(
                f"{acct}/messaging/consumer/conversation",
                endpoint="conversation",
                methods=["POST"],
            ),
            Rule(f"{acct}/messaging/consumer/conversation/send", endpoint="send", methods=["POST"]),
        ]

    def skill(self, name: str) -> str:
        """The id of the account's skill ``name`` (created on first use, as an admin would)."""
        with self._lock:
            for skill_id, known in self._skills.items():
                if known == name:
                    return skill_id
            skill_id = str(1_000_000 + len(self._skills))
            self._skills[skill_id] = name
            return skill_id

    def hub_settings(self, **fields: Any) -> dict[str, Any]:
        # LivePerson routes by skill id; the copilot's ``skill`` names it (docs/hubs/liveperson.md).
        skill_id = self.skill(str(fields.get("skill") or "general"))
        return {
            "type": "liveperson",
            "account_id": self.account_id,
            "skill_id": skill_id,
            "csds_base": self.url,
            "secret_ref": self.secret_ref,
            **fields,
        }

    @property
    def secret_value(self) -> str:
        return json.dumps({"client_id": self.client_id, "client_secret": self.client_secret})

    def expire_tokens(self) -> None:
        with self._lock:
            self._app_tokens.clear()
            self._consumer_tokens.clear()

    # --- agent events ----------------------------------------------------------------------

    def event(
        self, session: DeskSession, kind: AgentAction, *, agent: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        name = agent or session.agent or self.agent_name
        agent_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"liveperson-agent:{name}"))
        if kind == "message":
            return self._content(session, agent_id, "ASSIGNED_AGENT", str(fields.get("text", "")))
        if kind == "typing":
            change = {
                "originatorId": agent_id,
                "originatorMetadata": {"id": agent_id, "role": "ASSIGNED_AGENT"},
                "event": {"type": "ChatStateEvent", "chatState": "COMPOSING"},
                "dialogId": session.handoff_id,
            }
            return _notification("ms.MessagingEventNotification", change)
        state = "CLOSE" if kind == "ended" else "OPEN"
        agents = [agent_id] if kind == "joined" else []
        return self._change(session, state, agents, close_reason="AGENT")

    def _content(
        self, session: DeskSession, originator: str, role: str, text: str
    ) -> dict[str, Any]:
        """A ContentEvent notification with the conversation's next sequence (from 0)."""
        with self._lock:
            sequence = session.hub.setdefault("sequence", 0)
            session.hub["sequence"] = sequence + 1
        change = {
            "sequence": sequence,
            "originatorId": originator,
            "originatorMetadata": {"id": originator, "role": role},
            "serverTimestamp": int(time.time() * 1000),
            "event": {"type": "ContentEvent", "message": text, "contentType": "text/plain"},
            "dialogId": session.handoff_id,
        }
        return _notification("ms.MessagingEventNotification", change)

    def _change(
        self, session: DeskSession, state: str, agents: list[str], close_reason: str
    ) -> dict[str, Any]:
        """A cqm change: the conversation's participants and state now."""
        conversation = session.handoff_id
        with self._lock:
            # metaDataLastUpdateTs moves on with every change (ms; never twice the same here).
            now = max(int(time.time() * 1000), self._last_ts.get(conversation, 0) + 1)
            start = session.hub.setdefault("start_ts", now)
            self._last_ts[conversation] = now
        consumer = str(session.hub.get("consumer_id", ""))
        participants = [{"id": consumer, "role": "CONSUMER"}]
        participants += [{"id": a, "role": "ASSIGNED_AGENT"} for a in agents]
        details: dict[str, Any] = {
            "skillId": session.hub.get("skill_id", "-1"),
            "participants": participants,
            "dialogs": [
                {
                    "dialogId": conversation,
                    "participantsDetails": [{**p, "state": "ACTIVE"} for p in participants],
                    "dialogType": "MAIN",
                    "channelType": "MESSAGING",
                    "state": state,
                    "creationTs": start,
                    "metaDataLastUpdateTs": now,
                }
            ],
            "brandId": self.account_id,
            "state": state,
            "stage": state,
            "startTs": start,
            "metaDataLastUpdateTs": now,
            "ttr": {"ttrType": "NORMAL", "value": 3600},
        }
        if state == "CLOSE":
            details |= {"closeReason": close_reason, "endTs": now}
            details["dialogs"][0] |= {"endTs": now, "closedBy": close_reason}
        change = {
            "type": "UPSERT",
            "result": {"convId": conversation, "effectiveTTR": -1, "conversationDetails": details},
        }
        return _notification("cqm.ExConversationChangeNotification", change)

    def deliver(
        self,
        session: DeskSession,
        event: dict[str, Any] | bytes,
        *,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
        retries: int | None = None,
        url: str | None = None,
    ) -> requests.Response:
        """POST one notification the webhooks service's way: compact JSON, signed sha1=."""
        body = event if isinstance(event, bytes) else _compact(event)
        sent = headers if headers is not None else self.signed(body, secret)
        target = url or self.webhook(session.copilot_id)
        return self.post_retrying(target, body, sent, retries, backoff=WEBHOOK_BACKOFF)

    def signed(self, body: bytes, secret: str | None = None) -> dict[str, str]:
        key = self.client_secret if secret is None else secret
        return {
            "Content-Type": "application/json",
            "x-liveperson-account-id": self.account_id,
            "x-liveperson-client-id": self.client_id,
            "x-liveperson-signature": signature_header(key, body, "sha1"),
        }

    def tampered(self, session: DeskSession, event: dict[str, Any]) -> list[Tampered]:
        body = _compact(event)
        unsigned = {k: v for k, v in self.signed(body).items() if k != "x-liveperson-signature"}
        malformed = {**self.signed(body), "x-liveperson-signature": "sha1"}
        other_account = {**self.signed(body), "x-liveperson-account-id": "1"}
        not_json = b'{"kind":"notification","type":"ms.MessagingEventNotification"'
        stranger = self.webhook(session.copilot_id).replace(session.copilot_id, "f" * 32)
        return [
            Tampered("wrong secret", self.deliver(session, event, secret="guessed"), 403),
            Tampered("unsigned", self.deliver(session, event, headers=unsigned), 401),
            Tampered("malformed signature", self.deliver(session, event, headers=malformed), 403),
            Tampered("another account", self.deliver(session, event, headers=other_account), 403),
            Tampered("not JSON", self.deliver(session, not_json), 400),
            Tampered("unknown copilot", self.deliver(session, event, url=stranger), 403),
        ]

    def _later(self, session: DeskSession, event: dict[str, Any]) -> None:
        """Deliver in the background, as LivePerson's webhooks service does (a failure after
        the retries is dropped, as LivePerson drops it [R S11])."""

        def run() -> None:
            with contextlib.suppress(requests.RequestException, RuntimeError):
                self.deliver(session, event)

        threading.Thread(target=run, daemon=True).start()

    # --- the Domain API, sentinel and idp ----------------------------------------------------

    def _on_domains(self, request: Request, account: str) -> Response:
        status, answer = self._domains(account, None)
        self.record(request, status)
        return json_answer(answer, status)

    def _on_domain(self, request: Request, account: str, service: str) -> Response:
        status, answer = self._domains(account, service)
        self.record(request, status)
        return json_answer(answer, status)

    def _domains(self, account: str, service: str | None) -> tuple[int, dict[str, Any]]:
        if account != self.account_id:
            return 400, {"error": f"no account {account}"}
        here = self.url.partition("://")[2]
        uris = [
            {"service": name, "account": account, "baseURI": here}
            for name in ("sentinel", "idp", "asyncMessagingEnt", "msgHist", "leDataReporting")
        ]
        if service is None:
            return 200, {"baseURIs": uris}
        found = [u for u in uris if u["service"] == service]
        return (200, found[0]) if found else (400, {"error": f"no service {service}"})

    def _on_app_token(self, request: Request, account: str) -> Response:
        status, answer = self._app_token(request, account)
        self.record(request, status)
        return json_answer(answer, status)

    def _app_token(self, request: Request, account: str) -> tuple[int, dict[str, Any]]:
        # client_id/client_secret in the form, or in the query as older docs show [R S3, S4].
        given = {
            k: request.form.get(k) or request.args.get(k) for k in ("client_id", "client_secret")
        }
        grant = request.args.get("grant_type") or request.form.get("grant_type")
        if account != self.account_id or request.args.get("v") != "1.0":
            return 400, _error(400, "Bad request", "unknown account or API version", 40000)
        if grant != "client_credentials":
            return 400, _error(400, "Bad request", "grant_type must be client_credentials", 40000)
        if given["client_id"] != self.client_id or not secrets.compare_digest(
            str(given["client_secret"] or ""), self.client_secret
        ):
            return 401, _error(401, "Unauthorized", "invalid client credentials", 40100)
        now = int(time.time())
        expiry = now + self.token_seconds
        claims: dict[str, Any] = {
            "aud": f"le{account}",
            "azp": self.client_id,
            "scope": "msg.consumer",
            "iss": "Sentinel",
            "exp": expiry,
            "iat": now,
            "jti": uuid.uuid4().hex,
        }
        token = _jwt({"alg": "RS256", "kid": "appjwt-emulator"}, claims)
        with self._lock:
            self._app_tokens[token] = expiry
        return 200, {"access_token": token, "token_type": "Bearer"}

    def _on_consumer(self, request: Request, account: str) -> Response:
        status, answer = self._consumer(request, account)
        self.record(request, status)
        return json_answer(answer, status)

    def _consumer(self, request: Request, account: str) -> tuple[int, dict[str, Any]]:
        refused = self._app_jwt_refused(request)
        if refused is not None:
            return refused
        data = request.get_json(silent=True)
        ext_id = data.get("ext_consumer_id") if isinstance(data, dict) else None
        if account != self.account_id or not isinstance(ext_id, str) or not ext_id:
            return 400, _error(400, "Bad request", "ext_consumer_id is required", 40000)
        lp_consumer_id = hashlib.sha256(f"{account}:{ext_id}".encode()).hexdigest()
        claims = {
            "account_id": account,
            "ext_consumer_id": ext_id,
            "lp_consumer_id": lp_consumer_id,
        }
        token = _jwt({"alg": "RS256", "typ": "JWT"}, {**claims, "jti": uuid.uuid4().hex})
        with self._lock:
            self._consumer_tokens[token] = ext_id
        return 201, {"token": token}

    def _app_jwt_refused(self, request: Request) -> tuple[int, dict[str, Any]] | None:
        given = request.headers.get("Authorization")
        if not given:
            return 401, _error(401, *ERRORS[40105], 40105)
        with self._lock:
            expiry = self._app_tokens.get(given)  # the bare token: "Bearer x" is not one [I]
        if expiry is None or expiry < time.time():
            return 401, _error(401, *ERRORS[40102], 40102)
        return None

    # --- the Send API --------------------------------------------------------------------------

    def _on_conversation(self, request: Request, account: str) -> Response:
        status, answer = self._ums(request, account, self._open)
        self.record(request, status)
        return json_answer(answer, status)

    def _on_send(self, request: Request, account: str) -> Response:
        status, answer = self._ums(request, account, self._send)
        self.record(request, status)
        return json_answer(answer, status)

    def _ums(self, request: Request, account: str, handle: Any) -> tuple[int, Any]:
        if self.fail_with is not None:
            return self.fail_with, _error(self.fail_with, "Unavailable", "try again later", 50300)
        refused = self._app_jwt_refused(request)
        if refused is not None:
            return refused
        jws = request.headers.get("X-LP-ON-BEHALF")
        if not jws:
            return 401, _error(401, *ERRORS[40104], 40104)
        with self._lock:
            ext_id = self._consumer_tokens.get(jws)
        if ext_id is None:
            return 401, _error(401, *ERRORS[40103], 40103)
        if account != self.account_id or request.args.get("v") != "3":
            return 400, _error(400, "Bad request", "unknown account or API version", 40000)
        try:
            payload = json.loads(request.get_data())
        except ValueError:
            return 400, _error(400, "Bad request", "the body is not JSON", 40000)
        result: tuple[int, Any] = handle(payload, ext_id)
        return result

    def _open(self, batch: Any, ext_id: str) -> tuple[int, Any]:
        """CONVERSATION: [SetUserProfile, ConsumerRequestConversation, (PublishEvent)] [R S5]."""
        problem = _invalid_batch(batch, self.account_id)
        if problem:
            return 400, _error(400, "Bad request", problem, 40001)
        profile, ask = batch[0], batch[1]
        first = batch[2] if len(batch) > 2 else None
        conversation = str(uuid.uuid4())
        sdes = profile["body"].get("authenticatedData", {}).get("lp_sdes") or []
        text = first["body"]["event"]["message"] if first else ""
        consumer_id = hashlib.sha256(f"{self.account_id}:{ext_id}".encode()).hexdigest()
        copilot_id = ext_id.partition(":")[0]  # "<copilot>:<conversation>" (the adapter's)
        skill_id = str(ask["body"].get("skillId") or "-1")
        session = _session_of(conversation, copilot_id, batch, sdes, text)
        session.routing["skill"] = self._skills.get(skill_id)
        session.hub.update(consumer_id=consumer_id, skill_id=skill_id)
        with self._lock:
            self.add_session(session)
            self.received.append({"type": "CONVERSATION", "batch": batch})
        answers = [
            {
                "code": "OK",
                "body": {"msg": "OK User Profile set successfully"},
                "reqId": profile["id"],
            },
            {"code": "OK", "body": {"conversationId": conversation}, "reqId": ask["id"]},
        ]
        self._later(session, self._change(session, "OPEN", [], close_reason=""))
        if first is not None:
            echo = self._content(session, consumer_id, "CONSUMER", text)
            answers.append(
                {
                    "code": "OK",
                    "body": {"sequence": echo["body"]["changes"][0]["sequence"]},
                    "reqId": first["id"],
                }
            )
            self._later(session, echo)
        return 200, answers

    def _send(self, request: Any, ext_id: str) -> tuple[int, Any]:
        """SEND: one request, ms.PublishEvent or cm.UpdateConversationField [R S5, S9]."""
        if not isinstance(request, dict) or not isinstance(request.get("body"), dict):
            return 400, _error(400, "Bad request", "one request object", 40001)
        body, kind, req_id = request["body"], request.get("type"), request.get("id")
        conversation = body.get("dialogId") or body.get("conversationId")
        try:
            session = self._sessions[str(conversation)]
        except KeyError:
            return 400, _error(400, "Bad request", "no such conversation", 40001)
        consumer_id = hashlib.sha256(f"{self.account_id}:{ext_id}".encode()).hexdigest()
        if session.hub.get("consumer_id") != consumer_id:
            return 400, _error(400, "Bad request", "not this consumer's conversation", 40001)
        if session.hub.get("closed"):
            return 400, _error(400, "Bad request", "the conversation is closed", 40001)
        if kind == "ms.PublishEvent":
            event = body.get("event")
            if not isinstance(event, dict):
                return 400, _error(400, "Bad request", "body.event is required", 40001)
            if event.get("type") == "ChatStateEvent":
                return 200, {"reqId": req_id, "code": "OK", "body": {}}
            text = event.get("message")
            if event.get("type") != "ContentEvent" or not isinstance(text, str) or not text:
                return 400, _error(400, "Bad request", "a ContentEvent with a message", 40001)
            echo = self._content(session, consumer_id, "CONSUMER", text)
            sequence = echo["body"]["changes"][0]["sequence"]
            with self._lock:
                self.customer_said(session, text, sequence, f"{conversation}:{sequence}")
                self.received.append(request)
            self._later(session, echo)
            return 200, {"reqId": req_id, "code": "OK", "body": {"sequence": sequence}}
        field = body.get("conversationField")
        if (
            kind == "cm.UpdateConversationField"
            and isinstance(field, dict)
            and field.get("field") == "ConversationStateField"
            and field.get("conversationState") == "CLOSE"
        ):
            with self._lock:
                session.hub["closed"] = True
                self.customer_ended(session)
                self.received.append(request)
            self._later(session, self._change(session, "CLOSE", [], close_reason="CONSUMER"))
            return 200, {"reqId": req_id, "code": "OK", "body": {}}
        return 400, _error(400, "Bad request", f"unsupported request {kind!r}", 40001)

    def _record_agent(
        self, session: DeskSession, kind: AgentAction, name: str, text: str | None
    ) -> None:
        super()._record_agent(session, kind, name, text)
        if kind == "ended":
            with self._lock:
                session.hub["closed"] = True


# --- wire helpers ---------------------------------------------------------------------------


def _notification(kind: str, change: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "notification", "body": {"changes": [change]}, "type": kind}


def _compact(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A token shaped like LivePerson's (the copilot never verifies it, only reads ``exp``)."""
    parts = [_b64url(_compact(header)), _b64url(_compact(claims)), _b64url(secrets.token_bytes(32))]
    return ".".join(parts)


def _error(status: int, title: str, details: str, code: int) -> dict[str, Any]:
    """LivePerson's error envelope [R S3]."""
    return {
        "kind": "resp",
        "code": status,
        "body": {"title": title, "details": details, "errorCode": code},
        "type": ".ReqBody$ErrorResp",
    }


def _invalid_batch(batch: Any, account: str) -> str | None:
    if not isinstance(batch, list) or len(batch) not in (2, 3):
        return "the body must be the array [SetUserProfile, ConsumerRequestConversation, ...]"
    if not all(isinstance(r, dict) and isinstance(r.get("body"), dict) for r in batch):
        return "each request needs a body"
    types = [r.get("type") for r in batch]
    expected = ["userprofile.SetUserProfile", "cm.ConsumerRequestConversation", "ms.PublishEvent"]
    if types != expected[: len(batch)]:
        return f"requests must come in the order {expected}"
    ask = batch[1]["body"]
    if ask.get("brandId") != account:
        return "brandId must be the account id"
    if ask.get("channelType") not in (None, "MESSAGING"):
        return "channelType must be MESSAGING"
    if len(batch) == 3:
        event = batch[2]["body"].get("event")
        if not isinstance(event, dict) or event.get("type") != "ContentEvent":
            return "the first message must be a ContentEvent"
        if not isinstance(event.get("message"), str) or not event["message"]:
            return "the first message needs a message"
    return None


def _session_of(
    conversation: str, copilot_id: str, batch: list[Any], sdes: list[Any], text: str
) -> DeskSession:
    """The hand-off as the agent sees it, rebuilt from LivePerson's fields: the SDEs and the
    copilot's first message (its ``Label: value`` lines, then the transcript)."""
    info: dict[str, Any] = {}
    personal: dict[str, Any] = {}
    for sde in sdes:
        if isinstance(sde, dict) and sde.get("type") == "ctmrinfo":
            info = dict(sde.get("info") or {})
        if isinstance(sde, dict) and sde.get("type") == "personal":
            personal = dict(sde.get("personal") or {})
    labels, lists, transcript = read_context_message(text)
    context: dict[str, Any] = dict(lists.get("Customer details:", {}))
    if personal.get("firstname"):
        context["name"] = personal["firstname"]
    ask = batch[1]["body"]
    context |= {
        "va_ConversationId": info.get("customerId"),
        "va_LastTopic": labels.get("Last topic"),
        "va_AgentMessage": labels.get("Note for the agent"),
        "va_BotName": labels.get("Bot"),
        "va_Language": (ask.get("conversationContext") or {}).get("lang"),
        "va_Phrases": list(lists.get("Customer's words:", [])),
    }
    return DeskSession(
        handoff_id=conversation,
        conversation_id=str(info.get("customerId") or ""),
        copilot_id=copilot_id,
        reply_to=None,
        initiate={"conversation": batch},
        context=context,
        summary_text=labels.get("Summary"),
        unanswered_questions=list(lists.get("Unanswered questions:", [])),
        routing={"queue": labels.get("Queue")},
        transcript=transcript,
    )
