"""Salesforce Messaging for In-App and Web, "Enhanced Chat" (docs/hubs/salesforce.md): the
copilot is a custom client of an Embedded Service deployment and talks to Salesforce as an
unauthenticated (guest) end user.

Outbound (``send``): an unauthenticated access token, then the conversation, created with a
conversationId derived from our conversation and hand-off (a retried start names the same
one) and the hand-off context as routing attributes (the deployment's hidden pre-chat
fields); the summary and transcript are its first message; the customer's messages follow,
each with a message id derived from our event id; a customer's cancel closes it (DELETE).

Inbound (``pull``): Salesforce has no webhook; agent events come only over Server-Sent Events
(``/eventrouter/v1/sse``). A pull job reads the stream for a bounded window from the stored
``Last-Event-ID`` and keeps the id of the last event it read.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import requests
from urllib3.exceptions import HTTPError as Urllib3Error

from copilot.errors import HubRejectedError, HubUnavailableError
from copilot.handoff.hubs.fields import context_message, va_fields
from copilot.handoff.hubs.http import HubAuthError, HubHttp, json_of
from copilot.handoff.hubs.oauth import AccessToken, TokenCache
from copilot.handoff.hubs.once import Once
from copilot.handoff.hubs.pulled import PulledHub
from copilot.handoff.models import (
    Agent,
    HubCommand,
    HubEvent,
    HubPullBatch,
    HubReceipt,
    HubSettings,
    SalesforceHubSettings,
)
from copilot.schema import MAX_MESSAGE_CHARS

log = logging.getLogger(__name__)

HUB = "Salesforce"
API = "/iamessage/api/v2"
SSE = "/eventrouter/v1/sse"
CAPABILITIES_VERSION = "1"  # what Salesforce's sample app sends [R S2]
PLATFORM = "Web"
# Hidden pre-chat fields are text fields; no maximum length for a routing attribute was found
# in the docs: each is kept under this [I].
MAX_ATTRIBUTE_CHARS = 255
# A quiet stream is reopened (from the same Last-Event-ID) after this long without a byte, so
# no read outlasts the pull's ``until`` by more than this.
READ_SLICE = 1.0
# Events of other conversations (and our own echoes) move the cursor; it is kept at most this
# often (seconds) when nothing of ours came, and at the end of the pull.
CURSOR_EVERY = 2.0
_COMMANDS_REMEMBERED = 10_000  # results of commands kept by event id in this process
# How long a start's guest is kept in this process for a retry of the same start.
GUEST_KEPT_SECONDS = 900
# Namespace of the conversation and message ids we derive (Salesforce wants lowercase UUIDs).
_IDS = uuid.UUID("8f4e5b8a-3c1d-4a57-9b0e-6c2f1d7a9e31")
_AGENT_ROLES = frozenset({"Agent", "Supervisor"})
_SPEAKING_ROLES = frozenset({"Agent", "Supervisor", "Chatbot", "System", "Router"})


def hub_conversation_id(command: HubCommand) -> str:
    """The conversationId of a hand-off: the same for every try of its start."""
    key = f"{command.copilot_id}:{command.conversation_id}:{command.handoff_id}"
    return str(uuid.uuid5(_IDS, key))


def message_id(event_id: str, part: str = "") -> str:
    """A message's id, from our event id: a retried send carries the same one."""
    return str(uuid.uuid5(_IDS, f"{event_id}{part}"))


class SalesforceHub(PulledHub):
    title = "Salesforce"
    name = "salesforce"
    pull_window = 20.0

    def __init__(self, timeout: float = 10) -> None:
        self._http = HubHttp(HUB, timeout)
        self._guests = TokenCache()  # the guest of each start in this process
        self._once = Once(_COMMANDS_REMEMBERED)

    # --- inbound: none by webhook ------------------------------------------------------------

    # --- outbound ----------------------------------------------------------------------------

    def send(self, hub: HubSettings, secret: str, command: HubCommand) -> HubReceipt | None:
        assert isinstance(hub, SalesforceHubSettings)
        # Each command once per process, by its event id: the outbox may run two deliveries of
        # one conversation at once (after an outage); the second waits and gets the first's
        # answer instead of sending the same message again.
        key = f"{_base(hub)}|{command.event_id}"
        return self._once.run(key, lambda: self._send(hub, command))

    def _send(self, hub: SalesforceHubSettings, command: HubCommand) -> HubReceipt | None:
        if command.kind == "start":
            return self._start(hub, command)
        receipt = command.started_receipt(HUB)
        conversation = receipt.hub_conversation_id
        session = _Session(self, hub, receipt)
        if command.kind == "message":
            body = _message_body(hub, message_id(command.event_id), command.text or "")
            session.call("POST", f"{_base(hub)}{API}/conversation/{conversation}/message", body)
        else:
            url = f"{_base(hub)}{API}/conversation/{conversation}"
            try:
                session.call("DELETE", url, None, params={"esDeveloperName": hub.deployment})
            except HubRejectedError as e:
                if e.reason not in ("http_404", "http_409"):  # already closed or gone [I]
                    raise
        return session.renewed()

    def _start(self, hub: SalesforceHubSettings, command: HubCommand) -> HubReceipt:
        ctx = command.context
        assert ctx is not None, "a start command carries the context"
        conversation = hub_conversation_id(command)
        # The guest that creates the conversation is the only one that can use it: a retried
        # start in this process is the same guest (its token kept by conversation id). In
        # another process a new guest finds the conversation taken (409) and cannot write to
        # it: the start is refused (docs/hubs/salesforce.md, "As built").
        guest = json.loads(
            self._guests.get(f"{_base(hub)}|{conversation}", lambda: self._access_token(hub))
        )
        receipt = HubReceipt(
            hub_conversation_id=conversation,
            state={"access_token": guest["accessToken"], "last_event_id": guest["lastEventId"]},
        )
        session = _Session(self, hub, receipt)
        body = {
            "conversationId": conversation,
            "esDeveloperName": hub.deployment,
            "routingAttributes": routing_attributes(hub, command),
            "language": ctx.language,
        }
        try:
            session.call("POST", f"{_base(hub)}{API}/conversation", body)
        except HubRejectedError as e:
            if e.reason != "http_409":  # created by an earlier try of this start [I]
                raise
        # What the agent reads first: the summary and the conversation so far.
        note = _message_body(
            hub, message_id(command.event_id, ":note"), context_message(ctx, command.transcript)
        )
        session.call("POST", f"{_base(hub)}{API}/conversation/{conversation}/message", note)
        return session.renewed() or receipt

    def _access_token(self, hub: SalesforceHubSettings) -> AccessToken:
        """A new guest: its token and the stream position it starts at (as one JSON value)."""
        body = {
            "orgId": hub.org_id,
            "esDeveloperName": hub.deployment,
            "capabilitiesVersion": CAPABILITIES_VERSION,
            "platform": PLATFORM,
        }
        url = f"{_base(hub)}{API}/authorization/unauthenticated/access-token"
        answer = json_of(self._http.call("POST", url, json=body), HUB)
        if not isinstance(answer, dict) or not isinstance(answer.get("accessToken"), str):
            raise HubUnavailableError(f"{HUB}'s access-token endpoint answered without a token")
        guest = {
            "accessToken": answer["accessToken"],
            "lastEventId": str(answer.get("lastEventId") or ""),
        }
        return AccessToken(json.dumps(guest), time.time() + GUEST_KEPT_SECONDS)

    def continued(self, hub: SalesforceHubSettings, token: str) -> str:
        """The same guest's next token (continuation-access-token: same subject, new client)
        [R S2]. Refused: the guest is lost, and so is the conversation (HubRejectedError)."""
        url = f"{_base(hub)}{API}/authorization/continuation-access-token"
        try:
            response = self._http.call("GET", url, headers={"Authorization": f"Bearer {token}"})
        except HubAuthError:
            raise HubRejectedError(
                f"{HUB} refused to continue the guest's session", reason="token_lost"
            ) from None
        answer = json_of(response, HUB)
        if not isinstance(answer, dict) or not isinstance(answer.get("accessToken"), str):
            raise HubUnavailableError(f"{HUB}'s continuation endpoint answered without a token")
        return str(answer["accessToken"])

    # --- inbound: the Server-Sent Events stream -----------------------------------------------

    def pull(
        self,
        hub: HubSettings,
        secret: str,
        receipt: HubReceipt,
        state: dict[str, Any],
        until: float,
    ) -> Iterator[HubPullBatch]:
        assert isinstance(hub, SalesforceHubSettings)
        token = str(state.get("access_token") or receipt.state.get("access_token") or "")
        cursor = state.get("last_event_id", receipt.state.get("last_event_id")) or None
        conversation = receipt.hub_conversation_id
        renewed = False
        kept, kept_at = cursor, time.monotonic()
        while time.monotonic() < until:
            read = max(0.05, min(READ_SLICE, until - time.monotonic()))
            headers = {
                "Accept": "text/event-stream",
                "Authorization": f"Bearer {token}",
                "X-Org-Id": hub.org_id,
                **({"Last-Event-ID": str(cursor)} if cursor else {}),
            }
            try:
                response = self._http.call(
                    "GET", f"{_base(hub)}{SSE}", headers=headers, stream=True, timeout=(3, read)
                )
            except HubAuthError:
                if renewed:
                    raise
                try:
                    token, renewed = self.continued(hub, token), True
                except HubRejectedError as e:
                    # The guest is lost: nothing of this hand-off can be read any more. The
                    # next job tries again (a pull knows no "refused for good").
                    raise HubUnavailableError(str(e)) from e
                yield HubPullBatch(state={"access_token": token})
                continue
            renewed = False
            with response:
                for chunk in _read_events(response, until):
                    # Every event of one read in one batch (one write for a burst).
                    events = []
                    for sse in chunk:
                        cursor = sse.id
                        events += stream_events(sse.event, sse.data, conversation, sse.id)
                    if not events and time.monotonic() - kept_at < CURSOR_EVERY:
                        continue  # nothing of ours: the cursor is kept later
                    kept, kept_at = cursor, time.monotonic()
                    yield HubPullBatch(events=events, state={"last_event_id": cursor})
                    # Back here, the copilot has taken the batch: the agent's messages are
                    # acknowledged as delivered (the agent's console shows it).
                    said = [e.event_id for e in events if e.kind == "agent_message"]
                    if said:
                        self._acknowledge(hub, token, conversation, said)
        if cursor != kept:
            yield HubPullBatch(state={"last_event_id": cursor})

    def _acknowledge(
        self, hub: SalesforceHubSettings, token: str, conversation: str, entries: list[str]
    ) -> None:
        """Delivery acknowledgements of these entries (best effort: the events are the
        copilot's already; a refused acknowledgement only leaves "Delivered" unshown) [I S5]."""
        acks = [
            {"id": message_id(f"ack:{e}"), "entryType": "Delivery", "conversationEntryId": e}
            for e in entries
        ]
        url = f"{_base(hub)}{API}/conversation/{conversation}/acknowledge-entries"
        try:
            self._http.call(
                "POST", url, json={"acks": acks}, headers={"Authorization": f"Bearer {token}"}
            )
        except (HubUnavailableError, HubRejectedError) as e:
            log.info("%s delivery acknowledgement not taken: %s", HUB, e)


class _Session:
    """Calls as the receipt's guest: a refused (expired) token is continued once, and the
    receipt carrying the new one is what ``renewed`` gives back."""

    def __init__(self, hub_adapter: SalesforceHub, hub: SalesforceHubSettings, receipt: HubReceipt):
        self._adapter = hub_adapter
        self._hub = hub
        self._receipt = receipt
        self._token = str(receipt.state.get("access_token") or "")
        self._changed = False

    def _current(self, renew: bool) -> str:
        if renew:
            self._token = self._adapter.continued(self._hub, self._token)
            self._changed = True
        return self._token

    def call(self, method: str, url: str, body: Any, **kwargs: Any) -> requests.Response:
        token: Callable[[bool], str] = self._current
        return self._adapter._http.authorized(method, url, token, json=body, **kwargs)

    def renewed(self) -> HubReceipt | None:
        if not self._changed:
            return None
        state = {**self._receipt.state, "access_token": self._token}
        return self._receipt.model_copy(update={"state": state})


# --- the start's native fields ---------------------------------------------------------------


def routing_attributes(hub: SalesforceHubSettings, command: HubCommand) -> dict[str, str]:
    """The hand-off context as routing attributes: the deployment's hidden pre-chat fields,
    named as Copilot Studio names them (``fields.va_fields``: va_*, summary, unanswered
    questions, routing), our ids, then the customer's variables; each within
    MAX_ATTRIBUTE_CHARS (a list keeps its newest items, so it stays JSON)."""
    ctx = command.context
    assert ctx is not None
    attributes = va_fields(ctx, hub) | {
        "copilot_id": command.copilot_id,
        "handoff_id": command.handoff_id,
    }
    for name, value in ctx.variables.items():
        key = "".join(c if c.isalnum() or c == "_" else "_" for c in name)[:80]
        if key and key not in attributes and not key.startswith("va_"):
            attributes[key] = value
    lists = {"va_Topics": ctx.topics, "va_Phrases": ctx.phrases}
    lists["unanswered_questions"] = ctx.unanswered_questions
    return {
        key: _listed(lists[key]) if key in lists else _clip(value)
        for key, value in attributes.items()
    }


def _clip(value: str) -> str:
    return value if len(value) <= MAX_ATTRIBUTE_CHARS else value[: MAX_ATTRIBUTE_CHARS - 1] + "…"


def _listed(items: list[str]) -> str:
    """A JSON list within an attribute: the newest items kept."""
    kept = [_clip(item) for item in items]
    while len(kept) > 1 and len(json.dumps(kept)) > MAX_ATTRIBUTE_CHARS:
        kept.pop(0)
    return json.dumps(kept)


def _message_body(hub: SalesforceHubSettings, message: str, text: str) -> dict[str, Any]:
    return {
        "message": {
            "id": message,
            "messageType": "StaticContentMessage",
            "staticContent": {"formatType": "Text", "text": text},
        },
        "esDeveloperName": hub.deployment,
        "isNewMessagingSession": False,
    }


def _base(hub: SalesforceHubSettings) -> str:
    return hub.scrt_url.rstrip("/")


# --- Server-Sent Events ----------------------------------------------------------------------


class ServerSentEvent:
    __slots__ = ("data", "event", "id")

    def __init__(self, event: str, data: str, id: str) -> None:
        self.event, self.data, self.id = event, data, id


def _read_events(response: requests.Response, until: float) -> Iterator[list[ServerSentEvent]]:
    """The stream's events with an id, as they arrive, those of one read together (the WHATWG
    event-stream format: ``field: value`` lines, a blank line ends an event, ``:`` lines are
    comments), until ``until``, the stream's end, or a read timeout on a quiet stream."""
    raw = response.raw
    buffer = b""
    fields: dict[str, list[str]] = {}
    while time.monotonic() < until:
        try:
            chunk = raw.read1(65536, decode_content=True)  # gunzipped if the hub gzips
        except (requests.RequestException, Urllib3Error, OSError, ValueError) as e:
            # A quiet stream's read timeout (ReadTimeoutError), or a dropped connection.
            log.debug("%s stream read ended: %s", HUB, type(e).__name__)
            return
        if not chunk:
            return
        buffer += chunk
        *lines, buffer = buffer.replace(b"\r\n", b"\n").split(b"\n")
        read: list[ServerSentEvent] = []
        for raw_line in lines:
            line = raw_line.decode("utf-8", "replace")
            if not line:
                ids = fields.get("id")
                if ids and ids[-1]:
                    event = (fields.get("event") or ["message"])[-1]
                    read.append(ServerSentEvent(event, "\n".join(fields.get("data", [])), ids[-1]))
                fields = {}
            elif not line.startswith(":"):  # ":" starts a keepalive comment
                name, _, value = line.partition(":")
                fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)
        if read:
            yield read


def stream_events(name: str, data: str, conversation: str, sse_id: str) -> list[HubEvent]:
    """One SSE event of the guest's stream as neutral events: none when it is of another
    conversation (the stream carries all of the guest's), malformed, or of no interest
    (Salesforce adds event types: unknown ones are ignored [R S3])."""
    try:
        payload = json.loads(data)
    except ValueError:
        log.warning("%s event %s is not JSON: skipped", HUB, sse_id)
        return []
    if not isinstance(payload, dict) or payload.get("conversationId") != conversation:
        return []
    entry = payload.get("conversationEntry")
    if not isinstance(entry, dict):
        return []
    try:
        body = entry.get("entryPayload")
        inner = json.loads(body) if isinstance(body, str) else body
    except ValueError:
        log.warning("%s event %s has an entryPayload that is not JSON: skipped", HUB, sse_id)
        return []
    if not isinstance(inner, dict):
        return []
    sender: dict[str, Any] = entry["sender"] if isinstance(entry.get("sender"), dict) else {}
    role = str(sender.get("role") or "")
    entry_id = str(entry.get("identifier") or inner.get("id") or sse_id)
    who = Agent(
        id=str(sender.get("subject") or "") or None,
        name=str(entry.get("senderDisplayName") or "").strip() or "Agent",
    )
    base: dict[str, Any] = {"hub_conversation_id": conversation}
    kind = inner.get("entryType")
    if name == "CONVERSATION_MESSAGE" or kind == "Message":
        if role == "EndUser":
            return []  # the echo of our own message (no numbering to keep a place in)
        text = _text_of(inner.get("abstractMessage"))
        if role in _SPEAKING_ROLES and text:
            return [HubEvent(kind="agent_message", event_id=entry_id, text=text, agent=who, **base)]
        return []
    if name == "CONVERSATION_PARTICIPANT_CHANGED" or kind == "ParticipantChanged":
        return _participants(inner, entry_id, base)
    if name == "CONVERSATION_TYPING_STARTED_INDICATOR":
        if role in _AGENT_ROLES:
            return [HubEvent(kind="agent_typing", event_id=entry_id, agent=who, **base)]
        return []
    if name == "CONVERSATION_CLOSE_CONVERSATION":
        return [HubEvent(kind="ended", event_id=entry_id, reason="closed", **base)]
    if name == "CONVERSATION_SESSION_STATUS_CHANGED" or kind == "SessionStatusChanged":
        if inner.get("sessionStatus") == "Ended":
            by = str(inner.get("sessionEndedByRole") or "hub")[:100]
            return [HubEvent(kind="ended", event_id=entry_id, reason=f"ended_by_{by}", **base)]
        return []
    if name in ("CONVERSATION_ROUTING_RESULT", "CONVERSATION_QUEUE_POSITION"):
        text = _queue_text(inner)
        return [HubEvent(kind="queued", event_id=entry_id, text=text, **base)] if text else []
    return []


def _text_of(message: Any) -> str | None:
    """The text of a StaticContentMessage, or the prompt of a ChoicesMessage."""
    if not isinstance(message, dict):
        return None
    content = message.get("staticContent") or message.get("choices")
    text = content.get("text") if isinstance(content, dict) else None
    return text.strip()[:MAX_MESSAGE_CHARS] or None if isinstance(text, str) else None


def _participants(inner: dict[str, Any], entry_id: str, base: dict[str, Any]) -> list[HubEvent]:
    """An agent added (joined) or removed (left); bots and the end user are not agents."""
    events: list[HubEvent] = []
    entries = inner.get("entries")
    for n, change in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(change, dict) or not isinstance(change.get("participant"), dict):
            continue
        participant = change["participant"]
        if participant.get("role") not in _AGENT_ROLES:
            continue
        operation = change.get("operation")
        kind = {"add": "agent_joined", "remove": "agent_left"}.get(str(operation))
        if kind is None:
            continue
        agent = Agent(
            id=str(participant.get("subject") or "") or None,
            name=str(change.get("displayName") or "").strip() or "Agent",
        )
        events.append(HubEvent(kind=kind, event_id=f"{entry_id}:{n}", agent=agent, **base))
    return events


def _queue_text(inner: dict[str, Any]) -> str | None:
    """The customer's place or wait: a queue position, or an estimated wait (seconds; -1 or
    missing: unknown) [I for the position's field name]."""
    position = inner.get("queuePosition", inner.get("position"))
    wait = inner.get("estimatedWaitTime")
    seconds = wait.get("estimatedWaitTimeInSeconds") if isinstance(wait, dict) else None
    parts = []
    if isinstance(position, int) and not isinstance(position, bool) and position > 0:
        parts.append(f"You are number {position} in the queue.")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
        minutes = max(1, round(seconds / 60))
        parts.append(f"The wait is about {minutes} minute{'s' if minutes != 1 else ''}.")
    return " ".join(parts) or None
