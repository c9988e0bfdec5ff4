"""LivePerson Messaging through the Connector API (docs/hubs/liveperson.md): the copilot is a
custom messaging channel and talks to LivePerson as the customer ("consumer").

Outbound: the account's hosts from the Domain API (CSDS), an AppJWT by client credentials
(sentinel), a ConsumerJWS per customer (idp), then the Send API ("UMS"): CONVERSATION opens the
conversation with the customer's SDEs, the skill and the copilot's summary as its first message;
SEND publishes the customer's messages and closes the conversation when the customer cancels.

Inbound: webhooks ``ms.MessagingEventNotification`` (content, typing, read receipts) and
``cqm.ExConversationChangeNotification`` (agent assigned, removed, conversation closed), signed
``x-liveperson-signature: sha1=<base64 HMAC-SHA1 of the body>`` with the app's client secret.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from copilot.errors import ForbiddenError, HubRejectedError, HubUnavailableError
from copilot.handoff.hubs.credentials import parse_credentials, signing_key
from copilot.handoff.hubs.fields import context_message
from copilot.handoff.hubs.http import HubAuthError, HubHttp, json_of
from copilot.handoff.hubs.oauth import AccessToken, TokenCache, client_credentials
from copilot.handoff.hubs.once import Once
from copilot.handoff.hubs.signatures import check_hmac_header
from copilot.handoff.models import (
    Agent,
    HandoffContext,
    HubCommand,
    HubEvent,
    HubReceipt,
    HubSettings,
    LivePersonHubSettings,
)
from copilot.ports import HubAdapter, InboundRequest
from copilot.schema import parse_object

HUB = "LivePerson"
CSDS = "https://api.liveperson.net"
SIGNATURE_HEADER = "x-liveperson-signature"
ACCOUNT_HEADER = "x-liveperson-account-id"
CLIENT_HEADER = "x-liveperson-client-id"
UMS_VERSION = "3"
# No maximum message length was found in LivePerson's docs: the hand-off message is kept under
# this, dropping the transcript's oldest lines first (docs/hubs/liveperson.md §3) [I].
_COMMANDS_REMEMBERED = 10_000
_SERVICES = ("sentinel", "idp", "asyncMessagingEnt")
T = TypeVar("T")


class LivePersonCredentials(BaseModel):
    """The connector app installation's credentials; the client secret also signs webhooks."""

    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)


class Changes(BaseModel):
    model_config = ConfigDict(extra="ignore")

    changes: list[dict[str, Any]] = Field(max_length=100)


class Notification(BaseModel):
    """A webhook delivery: ``{"kind": "notification", "type": ..., "body": {"changes": [...]}}``."""

    model_config = ConfigDict(extra="ignore")

    kind: str | None = None
    type: str = Field(min_length=1, max_length=200)
    body: Changes


class LivePersonHub(HubAdapter):
    name = "liveperson"

    def __init__(self, timeout: float = 10) -> None:
        self._http = HubHttp(HUB, timeout)
        self._tokens = TokenCache()
        self._lock = threading.Lock()
        self._domains: dict[tuple[str, str], dict[str, str]] = {}
        # The Send API has no idempotency key and no read of a consumer's open conversations
        # [I]: each command is sent once per process, by its event id (a retried start gets
        # the same conversation back, a message delivered twice at once is sent once).
        self._once = Once(_COMMANDS_REMEMBERED)

    # --- inbound ---------------------------------------------------------------------------

    def verify(
        self, request: InboundRequest, hub: HubSettings | None, secret: str, now: datetime
    ) -> None:
        key = signing_key(hub is not None, secret, LivePersonCredentials, "client_secret", HUB)
        check_hmac_header(request, SIGNATURE_HEADER, key, algorithms=("sha1", "sha256"))
        assert isinstance(hub, LivePersonHubSettings)
        client_id = parse_credentials(secret, LivePersonCredentials, HUB).client_id
        for header, expected, what in (
            (ACCOUNT_HEADER, hub.account_id, "account"),
            (CLIENT_HEADER, client_id, "app installation"),
        ):
            given = request.header(header)
            if given is not None and given != expected:
                raise ForbiddenError(f"{header} names another LivePerson {what}")

    def parse(self, request: InboundRequest, hub: HubSettings) -> list[HubEvent]:
        note = parse_object(request.body, Notification, what="the notification")
        events: list[HubEvent] = []
        for change in note.body.changes:
            if note.type == "ms.MessagingEventNotification":
                event = _messaging_event(change)
            elif note.type == "cqm.ExConversationChangeNotification":
                event = _conversation_change(change)
            else:
                event = None  # a type the app install subscribed to that we do not use
            if event is not None:
                events.append(event)
        return events

    # --- outbound --------------------------------------------------------------------------

    def send(self, hub: HubSettings, secret: str, command: HubCommand) -> HubReceipt | None:
        assert isinstance(hub, LivePersonHubSettings)
        creds = parse_credentials(secret, LivePersonCredentials, HUB)
        key = f"{hub.account_id}|{command.event_id}"
        return self._once.run(key, lambda: self._send(hub, creds, command))

    def _send(
        self, hub: LivePersonHubSettings, creds: LivePersonCredentials, command: HubCommand
    ) -> HubReceipt | None:
        if command.kind == "start":
            return self._start(hub, creds, command)
        receipt = command.started_receipt(HUB)
        conversation_id = receipt.hub_conversation_id
        if command.kind == "message":
            request = _publish(conversation_id, command.text or "")
        else:
            request = {
                "kind": "req",
                "id": command.event_id,
                "type": "cm.UpdateConversationField",
                "body": {
                    "conversationId": conversation_id,
                    "conversationField": {
                        "field": "ConversationStateField",
                        "conversationState": "CLOSE",
                    },
                },
            }
        answer, renewed = self._ums(hub, creds, receipt, "/conversation/send", request)
        _check_ok(answer, "SEND")
        return renewed

    def _start(
        self, hub: LivePersonHubSettings, creds: LivePersonCredentials, command: HubCommand
    ) -> HubReceipt:
        ctx = command.context
        assert ctx is not None, "a start command carries the context"
        ext_id = f"{command.copilot_id}:{command.conversation_id}"
        receipt = HubReceipt(
            hub_conversation_id="-",
            state={"ext_consumer_id": ext_id, "consumer_jws": self._consumer(hub, creds, ext_id)},
        )
        skill = hub.skill_id or (ctx.skill if (ctx.skill or "").lstrip("-").isdigit() else "-1")
        batch = [
            {
                "kind": "req",
                "id": "1,",
                "type": "userprofile.SetUserProfile",
                "body": {"authenticatedData": {"lp_sdes": _sdes(ctx)}},
            },
            {
                "kind": "req",
                "id": "2,",
                "type": "cm.ConsumerRequestConversation",
                "body": {
                    "brandId": hub.account_id,
                    "channelType": "MESSAGING",
                    "skillId": skill,
                    "ttrDefName": "NORMAL",
                    "conversationContext": {"type": "SharkContext", "lang": ctx.language},
                },
            },
            # The copilot's summary, the context and the transcript: the first line the agent
            # reads (a consumer message: the Send API has no private note), opening the conversation
            # with it (LivePerson's "Create & Send" example, docs/hubs/liveperson.md S16).
            {**_publish(None, context_message(ctx, command.transcript)), "id": "3,"},
        ]
        answer, renewed = self._ums(hub, creds, receipt, "/conversation", batch)
        items = answer if isinstance(answer, list) else []
        for item in items:
            if not isinstance(item, dict) or item.get("code") not in ("OK", 200):
                raise HubRejectedError(f"{HUB} refused the conversation: {str(item)[:200]}")
        opened = [i["body"].get("conversationId") for i in items if isinstance(i.get("body"), dict)]
        conversation_id = next((c for c in opened if isinstance(c, str) and c), None)
        if conversation_id is None:
            raise HubUnavailableError(f"{HUB} answered CONVERSATION without a conversationId")
        state = (renewed or receipt).state
        return HubReceipt(hub_conversation_id=conversation_id, state=state)

    def _ums(
        self,
        hub: LivePersonHubSettings,
        creds: LivePersonCredentials,
        receipt: HubReceipt,
        path: str,
        payload: Any,
    ) -> tuple[Any, HubReceipt | None]:
        """A Send API call as the receipt's consumer. A 401 renews the AppJWT once (HubHttp);
        refused again, the ConsumerJWS is renewed (the same ext_consumer_id: the same LivePerson
        consumer) and the call made once more. Returns the answer and the renewed receipt."""
        base = self._service(hub, "asyncMessagingEnt")
        url = f"{base}/api/account/{hub.account_id}/messaging/consumer{path}?v={UMS_VERSION}"
        renewed: HubReceipt | None = None
        for fresh in (False, True):
            current = renewed or receipt
            headers = {"X-LP-ON-BEHALF": str(current.state.get("consumer_jws", ""))}
            try:
                response = self._http.authorized(
                    "POST",
                    url,
                    lambda renew: self._app_jwt(hub, creds, renew),
                    scheme=None,  # LivePerson wants the bare AppJWT in Authorization [R S3]
                    headers=headers,
                    json=payload,
                )
                return json_of(response, HUB), renewed
            except HubAuthError:
                if fresh:
                    raise
                ext_id = str(current.state.get("ext_consumer_id", ""))
                jws = self._consumer(hub, creds, ext_id)
                renewed = current.model_copy(
                    update={"state": {**current.state, "consumer_jws": jws}}
                )
        raise AssertionError("unreachable")

    def _consumer(
        self, hub: LivePersonHubSettings, creds: LivePersonCredentials, ext_id: str
    ) -> str:
        """A ConsumerJWS for our customer ``ext_id`` (idp; LivePerson keeps one consumer per
        ext_consumer_id)."""
        url = f"{self._service(hub, 'idp')}/api/account/{hub.account_id}/consumer?v=1.0"
        response = self._http.authorized(
            "POST",
            url,
            lambda renew: self._app_jwt(hub, creds, renew),
            scheme=None,
            json={"ext_consumer_id": ext_id},
        )
        answer = json_of(response, HUB)
        if not isinstance(answer, dict) or not isinstance(answer.get("token"), str):
            raise HubUnavailableError(f"{HUB}'s idp answered without a token")
        return str(answer["token"])

    def _app_jwt(
        self, hub: LivePersonHubSettings, creds: LivePersonCredentials, renew: bool
    ) -> str:
        sentinel = self._service(hub, "sentinel")
        url = (
            f"{sentinel}/sentinel/api/account/{hub.account_id}/app/token"
            "?v=1.0&grant_type=client_credentials"
        )

        def fetch() -> AccessToken:
            token = client_credentials(
                self._http, url, creds.client_id, creds.client_secret, basic=False
            )
            expiry = _jwt_expiry(token.value)  # the answer has no expires_in [R S3]
            return AccessToken(token.value, expiry) if expiry else token

        return self._tokens.get(f"{url}|{creds.client_id}", fetch, renew=renew)

    def _service(self, hub: LivePersonHubSettings, service: str) -> str:
        """The base URL of one of the account's services, from the Domain API (cached)."""
        csds = (hub.csds_base or CSDS).rstrip("/")
        key = (csds, hub.account_id)
        with self._lock:
            known = self._domains.get(key)
        if known is None:
            url = f"{csds}/api/account/{hub.account_id}/service/baseURI.json?version=1.0"
            answer = json_of(self._http.call("GET", url), HUB)
            uris = answer.get("baseURIs") if isinstance(answer, dict) else None
            found = {
                str(u.get("service")): str(u.get("baseURI"))
                for u in uris or []
                if isinstance(u, dict) and u.get("baseURI")
            }
            missing = [s for s in _SERVICES if s not in found]
            if missing:
                raise HubUnavailableError(f"{HUB}'s Domain API lists no {', '.join(missing)}")
            # The hosts are bare names; they are reached with the Domain API's own scheme
            # (https, or http for a loopback emulator) [I].
            scheme = csds.partition("://")[0]
            known = {s: f"{scheme}://{found[s].rstrip('/')}" for s in _SERVICES}
            with self._lock:
                self._domains[key] = known
        return known[service]


# --- the start's native fields ------------------------------------------------------------


def _sdes(ctx: HandoffContext) -> list[dict[str, Any]]:
    """Customer Info and Personal Info: the only SDEs a connector may send [R S5]."""
    variables = ctx.variables
    info = {"customerId": ctx.conversation_id}
    if variables.get("tier"):
        info["ctype"] = variables["tier"]
    if variables.get("name"):
        info["userName"] = variables["name"]
    personal: dict[str, Any] = {"language": ctx.language}
    if variables.get("name"):
        personal["firstname"] = variables["name"]
    if variables.get("email") or variables.get("phone"):
        contact = {k: variables[k] for k in ("email", "phone") if variables.get(k)}
        personal["contacts"] = [contact]
    return [{"type": "ctmrinfo", "info": info}, {"type": "personal", "personal": personal}]


def _publish(conversation_id: str | None, text: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event": {"type": "ContentEvent", "contentType": "text/plain", "message": text}
    }
    if conversation_id is not None:
        body = {"dialogId": conversation_id, **body}
    return {"kind": "req", "id": "1", "type": "ms.PublishEvent", "body": body}


def _check_ok(answer: Any, what: str) -> None:
    code = answer.get("code") if isinstance(answer, dict) else None
    if code not in ("OK", 200):
        raise HubRejectedError(f"{HUB} refused the {what}: {str(answer)[:200]}")


def _jwt_expiry(token: str) -> float | None:
    """The ``exp`` of a JWT, read without verifying it (only to renew in time)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


# --- webhooks -------------------------------------------------------------------------------


def _messaging_event(change: dict[str, Any]) -> HubEvent | None:
    """One ``ms.MessagingEventNotification`` change. LivePerson numbers a conversation's content
    and accept-status events, the consumer's and the agent's, with one counter from 0 [R S6]:
    each is emitted with LivePerson's number, the consumer's own as "noop", so the copilot
    restores the agent's order. Number 0 is always the copilot's first message, sent with the
    start (its echo may come before the start's link is written: it is never needed, as ours
    start at 1). Typing has no number: arrival order."""
    event = change.get("event")
    dialog = change.get("dialogId") or change.get("conversationId")
    if not isinstance(event, dict) or not isinstance(dialog, str) or not dialog:
        return None
    meta = change.get("originatorMetadata")
    role = meta.get("role") if isinstance(meta, dict) else None
    agent_id = str(change.get("originatorId") or (meta or {}).get("id") or "") or None
    kind = event.get("type")
    sequence = change.get("sequence")
    if isinstance(sequence, int) and not isinstance(sequence, bool) and sequence >= 0:
        base = {
            "event_id": f"ms:{dialog}:{sequence}",
            "hub_conversation_id": dialog,
            "sequence": sequence,
        }
        text = _text_of(event)
        if role == "ASSIGNED_AGENT" and text:
            return HubEvent(
                kind="agent_message", text=text, agent=Agent(id=agent_id, name="Agent"), **base
            )
        return HubEvent(kind="noop", **base)  # the consumer's echo, a read receipt...
    if (
        kind == "ChatStateEvent"
        and role == "ASSIGNED_AGENT"
        and event.get("chatState") == "COMPOSING"
    ):
        # No id and no number on typing: the delivery's own bytes identify it (a retry is
        # byte-identical) [I].
        digest = hashlib.sha256(json.dumps(change, sort_keys=True).encode()).hexdigest()[:32]
        return HubEvent(
            kind="agent_typing",
            event_id=f"ms:{dialog}:typing:{digest}",
            hub_conversation_id=dialog,
            agent=Agent(id=agent_id, name="Agent"),
        )
    return None


def _text_of(event: dict[str, Any]) -> str | None:
    """An agent's text: a plain ContentEvent, or the text elements of structured content."""
    message = event.get("message")
    plain = event.get("contentType", "text/plain") == "text/plain"
    if event.get("type") == "ContentEvent" and isinstance(message, str) and plain:
        return message.rstrip() or None
    if event.get("type") == "RichContentEvent":
        texts: list[str] = []
        _rich_texts(event.get("content"), texts)
        return "\n".join(texts) or None
    return None


def _rich_texts(element: Any, into: list[str], depth: int = 0) -> None:
    if not isinstance(element, dict) or depth > 10:
        return
    if element.get("type") == "text" and isinstance(element.get("text"), str):
        into.append(element["text"].strip())
    for child in element.get("elements") or []:
        _rich_texts(child, into, depth + 1)


def _conversation_change(change: dict[str, Any]) -> HubEvent | None:
    """One ``cqm.ExConversationChangeNotification`` change: CLOSE ends the hand-off; an
    ASSIGNED_AGENT participant joined; none after the start: the agent left (back to the
    queue, a transfer). No sequence: these are another stream than the messaging events."""
    result = change.get("result")
    if not isinstance(result, dict):
        return None
    details = result.get("conversationDetails")
    conversation = result.get("convId")
    if not isinstance(details, dict) or not isinstance(conversation, str) or not conversation:
        return None
    base = {"hub_conversation_id": conversation}
    if details.get("state") == "CLOSE":
        reason = str(details.get("closeReason") or "closed")[:100]
        return HubEvent(kind="ended", event_id=f"cqm:{conversation}:closed", reason=reason, **base)
    participants = details.get("participants")
    agents = [
        str(p.get("id"))
        for p in (participants if isinstance(participants, list) else [])
        if isinstance(p, dict) and p.get("role") == "ASSIGNED_AGENT"
    ]
    if agents:
        # Every later change repeats the participants: one "joined" per agent and conversation.
        return HubEvent(
            kind="agent_joined",
            event_id=f"cqm:{conversation}:joined:{agents[0]}",
            agent=Agent(id=agents[0], name="Agent"),
            **base,
        )
    updated, started = details.get("metaDataLastUpdateTs"), details.get("startTs")
    if isinstance(updated, int) and isinstance(started, int) and updated > started:
        return HubEvent(kind="agent_left", event_id=f"cqm:{conversation}:left:{updated}", **base)
    return None  # the conversation opened, waiting in the queue
