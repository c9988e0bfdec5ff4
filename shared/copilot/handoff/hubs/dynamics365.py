"""Dynamics 365 Contact Center (Customer Service) through a custom messaging channel over
Direct Line 3.0 (docs/hubs/dynamics365.md): the copilot is the channel's connector and talks to
Contact Center as the customer, through the Direct Line channel of the Azure bot that the
custom channel account relays through.

Outbound: ``tokens/generate`` with the channel's Direct Line secret (bound to one customer id
per hand-off), ``POST conversations`` with that token, then Bot Framework activities: the first
message carries the customer's identity (``from``), the hand-off context as the workstream's
context variables (``channelData.conversationcontext``) and customer fields
(``channelData.customercontext``), and the summary and transcript as its text; the customer's
messages follow; the customer's cancel is an ``endOfConversation`` activity.

Inbound: none is pushed. ``pull`` reads the conversation's activities from the Direct Line
watermark (``GET .../activities?watermark=``) every 0.4 s for a bounded window: the agent side's
messages, typing, and the events that mark an agent joining, leaving and the end.

Tokens: a conversation's token expires (``expires_in``); it is refreshed (``tokens/refresh``)
before then, and a refused one (403 TokenExpired) replaced by re-opening the conversation with
the secret (``GET conversations/{id}``). Push keeps its token in the receipt, pull in its state.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from pydantic import BaseModel, Field

from copilot.errors import HubRejectedError, HubUnavailableError
from copilot.handoff.hubs.credentials import parse_credentials
from copilot.handoff.hubs.fields import context_message
from copilot.handoff.hubs.http import HubAuthError, HubHttp, json_of
from copilot.handoff.hubs.once import Once
from copilot.handoff.hubs.pulled import PulledHub
from copilot.handoff.models import (
    Agent,
    Dynamics365HubSettings,
    HandoffContext,
    HubCommand,
    HubEvent,
    HubEventKind,
    HubPullBatch,
    HubReceipt,
    HubSettings,
)

HUB = "Dynamics 365"
DIRECTLINE = "https://directline.botframework.com/v3/directline"
CHANNEL_TYPE = "copilot"  # channelData.channeltype: the channel's name as Contact Center shows it
REFRESH_MARGIN = 120  # seconds before its expiry a token is refreshed (tokens last 30 min [R])
DEFAULT_LIFETIME = 1800
POLL_INTERVAL = 0.4  # seconds between two GETs of the activities (the sample polls too [R S2])
_COMMANDS_REMEMBERED = 10_000

# The names Contact Center gives its event activities (the messaging API's webhook list [R S6]);
# that the Direct Line route names them the same way is [I] (docs/hubs/dynamics365.md §3).
JOINED = frozenset(
    {
        "agentaccepted",
        "agentassigned",
        "agentjoinedcustomerconversation",
        "transferagentacceptsession",
    }
)
LEFT = frozenset({"agentendsession", "agentdisconnected", "transfertoqueueinitiated"})
ENDED = frozenset(
    {
        "primaryagentendconversation",
        "conversationclose",
        "conversationclosed",
        "agentclosed",
        "supervisorforceclosedconversation",
    }
)
# Automated messages that tell the customer their place or wait in the queue, tagged so [I].
QUEUE_TAGS = frozenset({"queueposition", "averagewaittime"})

log = logging.getLogger(__name__)


class DirectLineCredentials(BaseModel):
    """The Direct Line secret of the Azure bot the custom channel account relays through."""

    directline_secret: str = Field(min_length=1)


@dataclass(frozen=True)
class ConversationToken:
    """A Direct Line conversation's token and when it expires (time.time() seconds)."""

    value: str
    expires_at: float

    @staticmethod
    def of(state: dict[str, Any]) -> ConversationToken | None:
        value, expires_at = state.get("token"), state.get("expires_at")
        if isinstance(value, str) and value and isinstance(expires_at, int | float):
            return ConversationToken(value, float(expires_at))
        return None

    def state(self) -> dict[str, Any]:
        return {"token": self.value, "expires_at": self.expires_at}


class Dynamics365Hub(PulledHub):
    title = "Dynamics 365"
    name = "dynamics365"
    pull_window = 20.0

    def __init__(self, timeout: float = 10) -> None:
        self._http = HubHttp(HUB, timeout)
        # Direct Line documents no idempotency key on posted activities [I]: each command is
        # posted once per process, by its event id (a start retried at once gets the same
        # conversation back; a message delivered twice at once is posted once).
        self._once = Once(_COMMANDS_REMEMBERED)

    # --- inbound: none (the webhook route is docs/hubs/dynamics365.md §6) ---------------------

    # --- outbound --------------------------------------------------------------------------

    def send(self, hub: HubSettings, secret: str, command: HubCommand) -> HubReceipt | None:
        assert isinstance(hub, Dynamics365HubSettings)
        creds = parse_credentials(secret, DirectLineCredentials, HUB)
        key = f"{_base(hub)}|{command.event_id}"
        return self._once.run(key, lambda: self._send(hub, creds, command))

    def _send(
        self, hub: Dynamics365HubSettings, creds: DirectLineCredentials, command: HubCommand
    ) -> HubReceipt | None:
        if command.kind == "start":
            return self._start(hub, creds, command)
        receipt = command.started_receipt(HUB)
        customer = _customer(receipt.state)
        if command.kind == "message":
            activity = _activity("message", customer, command.event_id, text=command.text or "")
        else:
            activity = _activity("endOfConversation", customer, command.event_id)
        token = self._post_activity(hub, creds, receipt.hub_conversation_id, receipt, activity)
        if token is None:
            return None
        return receipt.model_copy(update={"state": {**receipt.state, **token.state()}})

    def _start(
        self, hub: Dynamics365HubSettings, creds: DirectLineCredentials, command: HubCommand
    ) -> HubReceipt:
        ctx = command.context
        assert ctx is not None, "a start command carries the context"
        user_id = customer_id(command.copilot_id, command.conversation_id, command.handoff_id)
        customer = {"id": user_id, "name": _one_line(ctx.variables.get("name")) or "Customer"}
        base = _base(hub)
        # A token bound to this customer id [R S4], then the conversation it opens [R S3].
        generated = self._http.call(
            "POST",
            f"{base}/tokens/generate",
            headers=_bearer(creds.directline_secret),
            json={"user": customer},
        )
        token = _token_of(json_of(generated, HUB))
        opened = self._http.call("POST", f"{base}/conversations", headers=_bearer(token.value))
        answer = json_of(opened, HUB)
        conversation = answer.get("conversationId") if isinstance(answer, dict) else None
        if not isinstance(conversation, str) or not conversation:
            raise HubUnavailableError(f"{HUB}'s Direct Line answered without a conversationId")
        if isinstance(answer.get("token"), str):
            token = _token_of(answer)
        state = {**token.state(), "user_id": user_id, "user_name": customer["name"]}
        receipt = HubReceipt(hub_conversation_id=conversation, state=state)
        first = _activity(
            "message",
            customer,
            command.event_id,
            text=context_message(ctx, command.transcript),
            channel_data={
                "channeltype": CHANNEL_TYPE,
                "conversationcontext": context_variables(ctx),
                "customercontext": customer_context(ctx),
            },
        )
        renewed = self._post_activity(hub, creds, conversation, receipt, first)
        if renewed is not None:
            receipt = receipt.model_copy(update={"state": {**state, **renewed.state()}})
        return receipt

    def _post_activity(
        self,
        hub: Dynamics365HubSettings,
        creds: DirectLineCredentials,
        conversation: str,
        receipt: HubReceipt,
        activity: dict[str, Any],
    ) -> ConversationToken | None:
        url = f"{_base(hub)}/conversations/{quote(conversation, safe='')}/activities"
        _, token = self._conversation_call(
            hub, creds, conversation, ConversationToken.of(receipt.state), "POST", url, activity
        )
        return token

    # --- tokens ----------------------------------------------------------------------------

    def _conversation_call(
        self,
        hub: Dynamics365HubSettings,
        creds: DirectLineCredentials,
        conversation: str,
        token: ConversationToken | None,
        method: str,
        url: str,
        body: dict[str, Any] | None = None,
    ) -> tuple[requests.Response, ConversationToken | None]:
        """A call with the conversation's token: refreshed first when it is about to expire;
        refused (401, or 403 TokenExpired), replaced by re-opening the conversation with the
        secret and the call made once more. Returns the answer and the new token, if any."""
        renewed: ConversationToken | None = None
        if token is None or token.expires_at - REFRESH_MARGIN <= time.time():
            token = renewed = self._refresh(hub, creds, conversation, token)
        for retry in (False, True):
            try:
                response = self._http.call(method, url, headers=_bearer(token.value), json=body)
                return response, renewed
            except (HubAuthError, HubRejectedError) as e:
                refused = isinstance(e, HubAuthError) or e.reason == "http_403"
                if retry or not refused:
                    raise
            token = renewed = self._reopen(hub, creds, conversation)
        raise AssertionError("unreachable")

    def _refresh(
        self,
        hub: Dynamics365HubSettings,
        creds: DirectLineCredentials,
        conversation: str,
        token: ConversationToken | None,
    ) -> ConversationToken:
        """A fresh token for the conversation: ``tokens/refresh`` [R S4], or, when there is none
        or it is refused (expired already), the conversation re-opened with the secret."""
        if token is not None and token.expires_at > time.time():
            try:
                answer = self._http.call(
                    "POST", f"{_base(hub)}/tokens/refresh", headers=_bearer(token.value)
                )
                return _token_of(json_of(answer, HUB))
            except (HubAuthError, HubRejectedError):
                pass  # refused: the secret re-opens the conversation
        return self._reopen(hub, creds, conversation)

    def _reopen(
        self, hub: Dynamics365HubSettings, creds: DirectLineCredentials, conversation: str
    ) -> ConversationToken:
        """``GET conversations/{id}`` with the secret: the conversation's new token [R S5]."""
        url = f"{_base(hub)}/conversations/{quote(conversation, safe='')}"
        try:
            answer = self._http.call("GET", url, headers=_bearer(creds.directline_secret))
        except HubAuthError as e:
            raise HubRejectedError(f"{HUB}'s Direct Line refused the secret") from e
        return _token_of(json_of(answer, HUB))

    # --- pull ------------------------------------------------------------------------------

    def pull(
        self,
        hub: HubSettings,
        secret: str,
        receipt: HubReceipt,
        state: dict[str, Any],
        until: float,
    ) -> Iterator[HubPullBatch]:
        """The conversation's activities after ``state["watermark"]``, polled every 0.4 s until
        ``until``: a batch whenever the watermark moves (or the token is renewed)."""
        assert isinstance(hub, Dynamics365HubSettings)
        creds = parse_credentials(secret, DirectLineCredentials, HUB)
        conversation = receipt.hub_conversation_id
        own = str(receipt.state.get("user_id") or "")
        token = _newest(ConversationToken.of(state), ConversationToken.of(receipt.state))
        watermark = state.get("watermark")
        base = f"{_base(hub)}/conversations/{quote(conversation, safe='')}/activities"
        while time.monotonic() < until:
            url = base if watermark is None else f"{base}?watermark={quote(str(watermark))}"
            try:
                response, renewed = self._conversation_call(
                    hub, creds, conversation, token, "GET", url
                )
            except HubRejectedError as e:
                if e.reason == "http_404":
                    # Direct Line no longer knows the conversation: nothing more will come.
                    gone = HubEvent(
                        kind="ended",
                        event_id=f"{conversation}|gone",
                        hub_conversation_id=conversation,
                        reason="conversation_gone",
                    )
                    yield HubPullBatch(events=[gone])
                    return
                # Refused otherwise (the secret itself, a 400): the next job tries again.
                raise HubUnavailableError(f"{HUB}'s Direct Line refused the read: {e}") from e
            answer = json_of(response, HUB)
            if not isinstance(answer, dict):
                raise HubUnavailableError(f"{HUB}'s Direct Line answered no activity set")
            activities = answer.get("activities")
            events = events_of(
                activities if isinstance(activities, list) else [], conversation, own
            )
            kept: dict[str, Any] = {}
            moved = answer.get("watermark")
            if isinstance(moved, str | int) and str(moved) != str(watermark):
                watermark = kept["watermark"] = str(moved)
            if renewed is not None:
                token = renewed
                kept |= renewed.state()
            if events or kept:
                yield HubPullBatch(events=events, state=kept)
            left = until - time.monotonic()
            if left > 0 and not activities:  # a full page: the next one at once [R S3]
                time.sleep(min(POLL_INTERVAL, left))


# --- the start's native fields ------------------------------------------------------------


def customer_id(copilot_id: str, conversation_id: str, handoff_id: str) -> str:
    """The customer's Direct Line user id: stable per conversation and hand-off, ``dl_``-
    prefixed as Direct Line wants user ids in a token request [R S4]."""
    digest = hashlib.sha256(f"{copilot_id}:{conversation_id}:{handoff_id}".encode()).hexdigest()
    return f"dl_{digest[:32]}"


def context_variables(ctx: HandoffContext) -> dict[str, str]:
    """``channelData.conversationcontext``: the workstream's context variables (strings [R S2])
    under Copilot Studio's hand-off names, plus the customer's variables and routing."""
    values: dict[str, str] = {
        "va_ConversationId": ctx.conversation_id,
        "va_BotId": ctx.bot_id,
        "va_BotName": ctx.bot_name,
        "va_Language": ctx.language,
        "va_LastTopic": ctx.last_topic or "",
        "va_AgentMessage": ctx.agent_message or "",
        "va_Phrases": "\n".join(_one_line(p) for p in ctx.phrases),
        "Queue": ctx.queue or "",
        "Skill": ctx.skill or "",
    }
    for key, value in ctx.variables.items():
        values.setdefault(str(key), _one_line(value))
    return {k: v for k, v in values.items() if v}


def customer_context(ctx: HandoffContext) -> dict[str, str]:
    """``channelData.customercontext``: what identifies the contact record [R S1]."""
    names = {"email": "email", "phone": "phonenumber"}
    return {
        wire: _one_line(ctx.variables[ours])
        for ours, wire in names.items()
        if ctx.variables.get(ours)
    }


def _activity(
    kind: str,
    customer: dict[str, str],
    event_id: str,
    *,
    text: str | None = None,
    channel_data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A customer activity; ``clientActivityID`` (Web Chat's own key for its posts [I]) is our
    event id, so a repeat of the same command can be told apart from a new one."""
    activity: dict[str, Any] = {
        "type": kind,
        "from": {**customer, "role": "user"},
        "channelData": {**(channel_data or {}), "clientActivityID": event_id},
    }
    if text is not None:
        activity["text"] = text
    return activity


def _customer(state: dict[str, Any]) -> dict[str, str]:
    return {"id": str(state.get("user_id") or ""), "name": str(state.get("user_name") or "")}


# --- pulled activities ------------------------------------------------------------------------


def events_of(activities: list[Any], conversation: str, own_id: str) -> list[HubEvent]:
    """The agent side's activities of ``conversation`` as neutral events (the customer's own,
    echoed back by Direct Line, and anything malformed or of another conversation, left out).
    The webhook route would parse its activities with this too (§6)."""
    events = []
    for activity in activities:
        event = activity_event(activity, conversation, own_id)
        if event is not None:
            events.append(event)
    return events


def activity_event(activity: Any, conversation: str, own_id: str) -> HubEvent | None:
    if not isinstance(activity, dict):
        return None
    activity_id, kind = activity.get("id"), activity.get("type")
    sender = activity.get("from")
    sender = sender if isinstance(sender, dict) else {}
    of = activity.get("conversation")
    if not isinstance(activity_id, str) or not activity_id or not isinstance(kind, str):
        log.warning("skipped a %s activity without an id or type", HUB)
        return None
    if not isinstance(of, dict) or of.get("id") != conversation:
        log.warning("skipped a %s activity of another conversation", HUB)
        return None
    if sender.get("id") == own_id or sender.get("role") == "user":
        return None  # the customer's own activity (ours), echoed
    agent = Agent(id=_str(sender.get("id")), name=_one_line(sender.get("name")) or "Agent")
    base: dict[str, Any] = {"event_id": activity_id, "hub_conversation_id": conversation}
    name = str(activity.get("name") or "").lower()
    found: HubEventKind | None = None
    if kind == "endOfConversation" or name in ENDED:
        found = "ended"
    elif name in JOINED:
        found = "agent_joined"
    elif name in LEFT:
        found = "agent_left"
    elif kind == "typing":
        found = "agent_typing"
    if found == "ended":
        reason = _str(activity.get("code")) or name or "ended"
        return HubEvent(kind="ended", reason=reason[:100], **base)
    if found is not None:
        return HubEvent(kind=found, agent=agent, **base)
    text = _text_of(activity)
    if kind != "message" or text is None:
        return None  # conversationUpdate, an event of no interest...
    if _tags(activity) & QUEUE_TAGS:
        return HubEvent(kind="queued", text=text, **base)
    return HubEvent(kind="agent_message", text=text, agent=agent, **base)


def _text_of(activity: dict[str, Any]) -> str | None:
    """A message's text, and its attachments' names and links."""
    lines = []
    text = activity.get("text")
    if isinstance(text, str) and text.strip():
        lines.append(text.rstrip())
    for attachment in activity.get("attachments") or []:
        if isinstance(attachment, dict) and isinstance(attachment.get("contentUrl"), str):
            lines.append(f"{attachment.get('name') or 'Attachment'}: {attachment['contentUrl']}")
    return "\n".join(lines) or None


def _tags(activity: dict[str, Any]) -> set[str]:
    data = activity.get("channelData")
    tags = data.get("tags") if isinstance(data, dict) else None
    if isinstance(tags, str):
        return {t.strip().lower() for t in tags.split(",")}
    if isinstance(tags, list):
        return {str(t).strip().lower() for t in tags}
    return set()


# --- wire helpers ---------------------------------------------------------------------------


def _base(hub: Dynamics365HubSettings) -> str:
    return (hub.directline_url or DIRECTLINE).rstrip("/")


def _bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def _token_of(answer: Any) -> ConversationToken:
    """A conversation token from ``{conversationId, token, expires_in}`` [R S3]."""
    if not isinstance(answer, dict) or not isinstance(answer.get("token"), str):
        raise HubUnavailableError(f"{HUB}'s Direct Line answered without a token")
    lifetime = answer.get("expires_in")
    seconds = lifetime if isinstance(lifetime, int | float) and lifetime > 0 else DEFAULT_LIFETIME
    return ConversationToken(answer["token"], time.time() + float(seconds))


def _newest(*tokens: ConversationToken | None) -> ConversationToken | None:
    known = [t for t in tokens if t is not None]
    return max(known, key=lambda t: t.expires_at) if known else None


def _one_line(text: Any) -> str:
    return " ".join(str(text or "").split())


def _str(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and str(value) else None
