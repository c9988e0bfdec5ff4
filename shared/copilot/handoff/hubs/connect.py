"""Amazon Connect chat (docs/hubs/amazon-connect.md): our copilot is the chat's customer
participant; the agent works in Connect's agent workspace.

Outbound, with botocore clients: ``connect`` (SigV4, the function's IAM role) starts the chat
(``StartChatContact``, the hand-off context as contact attributes) and streams it to the
copilot's SNS topic (``StartContactStreaming``); ``connectparticipant`` (no SigV4: the
participant and connection tokens in ``X-Amz-Bearer``) connects the customer, sends the
transcript and the customer's messages, and disconnects. Every write carries a ``ClientToken``
(our event id), so a retried command is applied once.

Inbound, Connect publishes each chat item to the SNS topic, and SNS POSTs it to
``/hooks/connect/<copilot_id>`` (an HTTPS subscription). The SNS message signature is checked
with the signing certificate (fetched only from SNS's own hosts, or the hosts the local stack
allows), the topic must be the copilot's, and a subscription confirmation is confirmed by
fetching its SubscribeURL (same host rule). Connect numbers nothing contiguously: events apply
in arrival order, once each by the chat item's ``Id``.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from copilot.errors import (
    BadRequestError,
    ForbiddenError,
    HubRejectedError,
    HubUnavailableError,
    UnauthorizedError,
    UnavailableError,
)
from copilot.handoff.hubs.http import HubHttp
from copilot.handoff.models import (
    Agent,
    ConnectHubSettings,
    HandoffContext,
    HubCommand,
    HubEvent,
    HubEventKind,
    HubReceipt,
    HubSettings,
    TranscriptEntry,
)
from copilot.ports import HubAdapter, InboundRequest
from copilot.schema import load_json

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

log = logging.getLogger(__name__)

# --- Connect's limits (botocore's connect and connectparticipant service models) ----------
ATTRIBUTES_BYTES = 32_768  # UTF-8 bytes across all attribute keys and values, per contact
MESSAGE_CHARS = 1024  # InitialMessage and SendMessage content, text/plain and text/markdown
DISPLAY_NAME_CHARS = 256
TRANSCRIPT_MESSAGES = 8  # hand-off note messages at most (8 x 1024 chars); older lines dropped
CONTENT_TYPE_PREFIX = "application/vnd.amazonaws.connect."
RENEW_MARGIN = timedelta(minutes=5)  # a connection token this close to its expiry is renewed

# --- SNS (docs/hubs/amazon-connect.md §2.3): the string to sign, per message Type -----------
SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
SIGNED_KEYS["UnsubscribeConfirmation"] = SIGNED_KEYS["SubscriptionConfirmation"]
# AWS's own validators accept these hosts (aws-js-sns-message-validator's default pattern).
SNS_HOST = re.compile(r"sns\.[a-z0-9-]{3,}\.amazonaws\.com(\.cn)?")
# SNS retries a delivery for at most an hour; a message older than that (and 5 minutes of
# clock skew) is a replay. There is no documented window: docs/hubs/amazon-connect.md §2.3.
MAX_AGE = timedelta(seconds=3600 + 300)
MAX_SKEW = timedelta(seconds=300)
CERT_CACHE_SIZE = 32

_ATTRIBUTE_KEY = re.compile(r"[^A-Za-z0-9_-]")
_EVENTS: dict[str, HubEventKind] = {
    "event.participant.joined": "agent_joined",
    "event.typing": "agent_typing",
    "event.participant.left": "agent_left",
}
_AGENTS = ("AGENT", "SUPERVISOR")  # a supervisor who barges in speaks as an agent


class ConnectHub(HubAdapter):
    name = "connect"

    def __init__(self, timeout: float = 10, extra_cert_hosts: tuple[str, ...] = ()) -> None:
        self._timeout = timeout
        self._extra_hosts = frozenset(h.strip().lower() for h in extra_cert_hosts if h.strip())
        self._http = HubHttp("Amazon SNS", timeout)  # certificates and subscription confirmation
        self._clients: dict[tuple[str, str, str | None], Any] = {}
        self._certs: dict[str, RSAPublicKey] = {}
        self._lock = threading.Lock()  # the clients
        self._fetching = threading.Lock()  # the certificates

    # --- inbound: SNS notifications ---------------------------------------------------------

    def verify(
        self, request: InboundRequest, hub: HubSettings | None, secret: str, now: datetime
    ) -> None:
        """401 unsigned; 403 for a bad signature, a certificate from a host we do not allow,
        a stale message or another topic; 400 when the body is not an SNS message. Without
        ``hub`` (no such copilot), a valid message is left to the caller's 403."""
        message = _message(request.body)
        signature, cert_url = message.get("Signature"), message.get("SigningCertURL")
        if not signature or not cert_url or not message.get("SignatureVersion"):
            raise UnauthorizedError("sign the message: Signature, SignatureVersion, SigningCertURL")
        if not isinstance(cert_url, str) or not self.allowed(cert_url, pem=True):
            raise ForbiddenError("the signing certificate is not from an SNS host we trust")
        key = self._certificate(cert_url)
        _check_signature(key, message)
        _check_timestamp(message.get("Timestamp"), now)
        if hub is not None:
            assert isinstance(hub, ConnectHubSettings)
            if message.get("TopicArn") != hub.topic_arn:
                raise ForbiddenError("the message is from another topic")

    def parse(self, request: InboundRequest, hub: HubSettings) -> list[HubEvent]:
        assert isinstance(hub, ConnectHubSettings)
        message = _message(request.body)
        kind = message.get("Type")
        if kind == "SubscriptionConfirmation":
            self._confirm(message, hub)
            return []
        if kind != "Notification":
            log.info("SNS %s for topic %s", kind, hub.topic_arn)
            return []
        item = load_json(str(message.get("Message") or "").encode(), what="the SNS Message")
        if not isinstance(item, dict):
            raise BadRequestError("the SNS Message must be a Connect chat item (JSON object)")
        event = chat_event(item, _attributes(message), str(message.get("MessageId") or ""))
        return [event] if event is not None else []

    def allowed(self, url: str, *, pem: bool = False) -> bool:
        """``url`` is on SNS's own hosts (https) or on a host the configuration adds."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return False
        host = (parts.hostname or "").lower()
        if parts.username is not None or parts.password is not None:
            return False
        if pem and not parts.path.endswith(".pem"):
            return False
        if parts.scheme == "https" and SNS_HOST.fullmatch(host) and port in (None, 443):
            return True
        extra = f"{host}:{port}" if port is not None else host
        return parts.scheme in ("http", "https") and extra in self._extra_hosts

    def _certificate(self, url: str) -> RSAPublicKey:
        """The certificate's public key, fetched once per process (one fetch at a time: the
        deliveries waiting for it all need the same one)."""
        with self._fetching:
            cached = self._certs.get(url)
            if cached is None:
                cached = self._fetch_certificate(url)
                if len(self._certs) >= CERT_CACHE_SIZE:
                    self._certs.pop(next(iter(self._certs)))
                self._certs[url] = cached
            return cached

    def _fetch_certificate(self, url: str) -> RSAPublicKey:
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

        try:
            pem = self._http.call("GET", url, allow_redirects=False).content
        except HubRejectedError as e:
            raise ForbiddenError("the signing certificate could not be fetched") from e
        except HubUnavailableError as e:
            raise UnavailableError("the signing certificate's host did not answer") from e
        try:
            key = x509.load_pem_x509_certificate(pem).public_key()
        except ValueError as e:
            raise ForbiddenError("the signing certificate is not a PEM certificate") from e
        if not isinstance(key, RSAPublicKey):
            raise ForbiddenError("the signing certificate has no RSA key")
        return key

    def _confirm(self, message: dict[str, Any], hub: ConnectHubSettings) -> None:
        """GET the SubscribeURL: only on an SNS host (or one we allow), only for our topic."""
        url = message.get("SubscribeURL")
        if not isinstance(url, str) or not self.allowed(url):
            raise ForbiddenError("the SubscribeURL is not on an SNS host we trust")
        topics = parse_qs(urlsplit(url).query).get("TopicArn", [hub.topic_arn])
        if topics != [hub.topic_arn]:
            raise ForbiddenError("the SubscribeURL confirms another topic")
        self._http.call("GET", url, allow_redirects=False)
        log.info("confirmed the SNS subscription to %s", hub.topic_arn)

    # --- outbound: start, customer messages, end --------------------------------------------

    def send(self, hub: HubSettings, secret: str, command: HubCommand) -> HubReceipt | None:
        assert isinstance(hub, ConnectHubSettings)
        if command.kind == "start":
            return self._start(hub, command)
        receipt = command.receipt
        if receipt is None:
            raise HubRejectedError("no Connect chat was started for this hand-off", reason="gone")
        if command.kind == "message":
            parts = split(command.text or "", MESSAGE_CHARS)
            tokens = [_part_token(command.event_id, n) for n in range(len(parts))]
            return self._participant_calls(
                hub,
                receipt,
                [("send_message", _text(p, token=t)) for p, t in zip(parts, tokens, strict=True)],
            )
        return self._participant_calls(
            hub, receipt, [("disconnect_participant", {"ClientToken": command.event_id})]
        )

    def _start(self, hub: ConnectHubSettings, command: HubCommand) -> HubReceipt:
        ctx = command.context
        assert ctx is not None, "a start command carries the context"
        connect = self._client("connect", hub)
        started = _call(
            connect.start_chat_contact,
            InstanceId=hub.instance_id,
            ContactFlowId=hub.contact_flow_id,
            Attributes=attributes(command),
            ParticipantDetails={"DisplayName": display_name(ctx)},
            InitialMessage={"ContentType": "text/plain", "Content": initial_message(ctx)},
            SupportedMessagingContentTypes=["text/plain", "text/markdown"],
            ClientToken=command.event_id,  # Connect starts one contact per token
        )
        contact_id = str(started["ContactId"])
        streaming = _call(
            connect.start_contact_streaming,
            InstanceId=hub.instance_id,
            ContactId=contact_id,
            ChatStreamingConfiguration={"StreamingEndpointArn": hub.topic_arn},
            ClientToken=command.event_id,
        )
        state: dict[str, Any] = {
            "ContactId": contact_id,
            "ParticipantId": started.get("ParticipantId"),
            "ParticipantToken": started["ParticipantToken"],
            "StreamingId": streaming.get("StreamingId"),
        }
        state |= self._connection(hub, state["ParticipantToken"])
        receipt = HubReceipt(hub_conversation_id=contact_id, state=state)
        notes = handoff_note(ctx, command.transcript)
        calls = [
            ("send_message", _text(note, token=_part_token(command.event_id, n), markdown=True))
            for n, note in enumerate(notes)
        ]
        return self._participant_calls(hub, receipt, calls) or receipt

    def _participant_calls(
        self, hub: ConnectHubSettings, receipt: HubReceipt, calls: list[tuple[str, dict[str, Any]]]
    ) -> HubReceipt | None:
        """Participant Service calls with the receipt's connection token; a token about to
        expire, or refused (403), is renewed once with the participant token. Returns the
        receipt with the new token, or None when it did not change."""
        state = dict(receipt.state)
        renewed = _expiring(state.get("ConnectionExpiry"))
        if renewed:
            state |= self._connection(hub, state["ParticipantToken"])
        participant = self._client("connectparticipant", hub)
        for operation, body in calls:
            call = getattr(participant, operation)
            try:
                _call(call, ConnectionToken=state["ConnectionToken"], **body)
            except HubRejectedError as e:
                if e.reason != "AccessDeniedException":
                    raise
                log.info("Connect refused the connection token: renewing it")
                state |= self._connection(hub, state["ParticipantToken"])
                renewed = True
                _call(call, ConnectionToken=state["ConnectionToken"], **body)
        return receipt.model_copy(update={"state": state}) if renewed else None

    def _connection(self, hub: ConnectHubSettings, participant_token: str) -> dict[str, Any]:
        """A new connection token (CreateParticipantConnection, as the customer)."""
        answer = _call(
            self._client("connectparticipant", hub).create_participant_connection,
            ParticipantToken=participant_token,
            Type=["CONNECTION_CREDENTIALS"],
            ConnectParticipant=True,
        )
        credentials = answer.get("ConnectionCredentials") or {}
        if not credentials.get("ConnectionToken"):
            raise HubUnavailableError("Connect answered without a connection token")
        return {
            "ConnectionToken": credentials["ConnectionToken"],
            "ConnectionExpiry": credentials.get("Expiry"),
        }

    def _client(self, service: str, hub: ConnectHubSettings) -> Any:
        """A botocore client per service, region and endpoint, made once per process (clients
        are thread-safe; making one is not cheap). ``connectparticipant`` is unsigned: its
        calls carry the participant's tokens, not AWS credentials."""
        key = (service, hub.region, hub.endpoint_url)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                import boto3
                from botocore import UNSIGNED
                from botocore.config import Config

                config = Config(
                    connect_timeout=3,
                    read_timeout=self._timeout,
                    # No retry here: the outbox retries (with back-off) what fails, as it does
                    # for every hub; a retry inside the call only holds the delivery up.
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    **({"signature_version": UNSIGNED} if service == "connectparticipant" else {}),
                )
                client = boto3.session.Session().client(
                    service,
                    region_name=hub.region,
                    endpoint_url=hub.endpoint_url,
                    config=config,
                )
                self._clients[key] = client
        return client


# --- the wire mapping ------------------------------------------------------------------------


def attributes(command: HubCommand) -> dict[str, str]:
    """The hand-off context as Connect contact attributes (string values, keys of
    ``[A-Za-z0-9_-]``), within Connect's 32,768 UTF-8 bytes per contact: Copilot Studio's
    va_* fields, routing and ids first, then the customer's variables, the summary, and the
    newest transcript lines that still fit. Lists are JSON strings."""
    ctx = command.context
    assert ctx is not None
    fields: dict[str, Any] = {
        "va_ConversationId": ctx.conversation_id,
        "va_BotId": ctx.bot_id,
        "va_BotName": ctx.bot_name,
        "va_Language": ctx.language,
        "va_Scope": "bot",
        "va_LastTopic": ctx.last_topic,
        "va_LastPhrases": ctx.last_phrases,
        "va_AgentMessage": ctx.agent_message,
        "va_Topics": ctx.topics,
        "va_Phrases": ctx.phrases,
        "copilot_id": command.copilot_id,
        "copilot_handoff_id": command.handoff_id,
        "copilot_queue": ctx.queue,
        "copilot_skill": ctx.skill,
        "copilot_unanswered": ctx.unanswered_questions,
    }
    for name, value in ctx.variables.items():
        key = _ATTRIBUTE_KEY.sub("_", name)[:128]
        if key and key not in fields and not key.startswith(("va_", "copilot_")):
            fields[key] = value
    fields["copilot_summary"] = ctx.summary
    chosen: dict[str, str] = {}
    used = 0
    for key, value in fields.items():
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        size = len(key.encode()) + len(text.encode())
        if used + size > ATTRIBUTES_BYTES:
            log.warning("hand-off %s: attribute %s left out (32 KB)", command.handoff_id, key)
            continue
        chosen[key] = text
        used += size
    lines: list[dict[str, str]] = []
    budget = ATTRIBUTES_BYTES - used - len(b"copilot_transcript[]")
    for entry in reversed(command.transcript):
        line = {"role": entry.role, "text": entry.text}
        size = len(json.dumps(line, ensure_ascii=False).encode()) + 2
        if size > budget:
            break
        lines.insert(0, line)
        budget -= size
    if lines:
        chosen["copilot_transcript"] = json.dumps(lines, ensure_ascii=False)
    return chosen


def display_name(ctx: HandoffContext) -> str:
    name = (ctx.variables.get("name") or "").strip()
    return name[:DISPLAY_NAME_CHARS] or "Customer"


def initial_message(ctx: HandoffContext) -> str:
    """The chat's first message, what the agent reads first: the summary."""
    text = ctx.summary.strip() or ctx.last_phrases or "The customer asked for an agent."
    return _cut(text, MESSAGE_CHARS)


def handoff_note(ctx: HandoffContext, transcript: list[TranscriptEntry]) -> list[str]:
    """The conversation before the hand-off, as markdown messages the agent sees in the chat
    (at most TRANSCRIPT_MESSAGES of them; the oldest lines are left out beyond that)."""
    title = f"**Conversation with {ctx.bot_name} before the hand-off**"
    lines = [f"{_speaker(e)}: {e.text}" for e in transcript] or ["(no messages)"]
    parts: list[str] = []
    for line in reversed(lines):
        for piece in reversed(split(line, MESSAGE_CHARS - 2)):
            if parts and len(parts[0]) + 1 + len(piece) <= MESSAGE_CHARS:
                parts[0] = piece + "\n" + parts[0]
            else:
                parts.insert(0, piece)
    dropped = len(parts) > TRANSCRIPT_MESSAGES
    parts = parts[-TRANSCRIPT_MESSAGES:]
    head = title + ("\n(earlier messages left out)" if dropped else "")
    if len(head) + 2 + len(parts[0]) <= MESSAGE_CHARS:
        parts[0] = f"{head}\n\n{parts[0]}"
    else:
        parts.insert(0, head)
    return parts


def _speaker(entry: TranscriptEntry) -> str:
    if entry.role == "customer":
        return "Customer"
    return entry.author or {"copilot": "Copilot"}.get(entry.role, entry.role.capitalize())


def split(text: str, size: int) -> list[str]:
    """``text`` in parts of at most ``size`` characters (at least one part)."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [text]


def _cut(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def _text(content: str, *, token: str, markdown: bool = False) -> dict[str, Any]:
    kind = "text/markdown" if markdown else "text/plain"
    return {"ContentType": kind, "Content": content or " ", "ClientToken": token}


def _part_token(event_id: str, n: int) -> str:
    """The ClientToken of part ``n`` of a command (the event id itself for the first)."""
    return event_id if n == 0 else f"{event_id}:{n}"


def chat_event(item: dict[str, Any], attrs: dict[str, str], message_id: str) -> HubEvent | None:
    """A Connect chat item (the SNS Message) as a neutral event; None when it is of no
    interest: the customer's own messages coming back, agent-only ones (visibility AGENT),
    flow (SYSTEM) and bot messages, transfers and receipts. Forwarding rule: Connect's admin
    guide, "Use the Amazon SNS payload" (docs/hubs/amazon-connect.md §2.2)."""

    def field(name: str) -> str:
        value = item.get(name)
        return str(value) if value not in (None, "") else attrs.get(name, "")

    content_type, role = field("ContentType"), field("ParticipantRole")
    visibility = attrs.get("MessageVisibility") or str(item.get("MessageVisibility") or "ALL")
    hub_id = field("InitialContactId") or field("ContactId")
    event_id = str(item.get("Id") or message_id)
    if not hub_id or not event_id:
        raise BadRequestError("the chat item names no contact (InitialContactId) or Id")
    agent = Agent(id=item.get("ParticipantId") or None, name=field("DisplayName") or "Agent")
    base: dict[str, Any] = {"event_id": event_id[:200], "hub_conversation_id": hub_id}
    if content_type == CONTENT_TYPE_PREFIX + "event.chat.ended":
        return HubEvent(kind="ended", reason="chat_ended", **base)
    if role not in _AGENTS or visibility not in ("CUSTOMER", "ALL"):
        return None
    kind: HubEventKind | None = None
    text = None
    if field("Type") == "MESSAGE" and content_type in ("text/plain", "text/markdown"):
        kind, text = "agent_message", str(item.get("Content") or "")
        if not text.strip():
            return None
    elif content_type.startswith(CONTENT_TYPE_PREFIX) and role == "AGENT":
        kind = _EVENTS.get(content_type.removeprefix(CONTENT_TYPE_PREFIX))
    if kind is None:
        return None
    return HubEvent(kind=kind, text=text, agent=agent, **base)


def _message(body: bytes) -> dict[str, Any]:
    message = load_json(body, what="the SNS message")
    if not isinstance(message, dict):
        raise BadRequestError("the SNS message must be a JSON object")
    return message


def _attributes(message: dict[str, Any]) -> dict[str, str]:
    """SNS MessageAttributes ``{"Name": {"Type": "String", "Value": "..."}}`` as name -> value."""
    raw = message.get("MessageAttributes")
    if not isinstance(raw, dict):
        return {}
    return {
        str(k): str(v.get("Value")) for k, v in raw.items() if isinstance(v, dict) and "Value" in v
    }


def string_to_sign(message: dict[str, Any]) -> bytes:
    """What SNS signs: ``key\\nvalue\\n`` of the Type's keys, in order, those present."""
    keys = SIGNED_KEYS.get(str(message.get("Type")))
    if keys is None:
        raise ForbiddenError("not an SNS message type that is signed")
    out = []
    for key in keys:
        value = message.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ForbiddenError(f"the SNS field {key} is not a string")
        out.append(f"{key}\n{value}\n")
    return "".join(out).encode()


def _hash(version: object) -> Any:
    from cryptography.hazmat.primitives import hashes

    if version == "1":
        return hashes.SHA1()  # SNS SignatureVersion 1 is SHA1withRSA
    if version == "2":
        return hashes.SHA256()
    raise ForbiddenError("SignatureVersion must be 1 or 2")


def _check_signature(key: RSAPublicKey, message: dict[str, Any]) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import padding

    algorithm = _hash(message.get("SignatureVersion"))
    try:
        signature = base64.b64decode(str(message.get("Signature")), validate=True)
        key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm)
    except (InvalidSignature, ValueError):
        raise ForbiddenError("the signature does not match") from None


def _check_timestamp(value: object, now: datetime) -> None:
    try:
        sent = datetime.fromisoformat(str(value))
    except ValueError:
        raise ForbiddenError("the message's Timestamp is not a time") from None
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=UTC)
    if now - sent > MAX_AGE or sent - now > MAX_SKEW:
        raise ForbiddenError("the message's Timestamp is too far from our clock (a replay?)")


def _expiring(expiry: object) -> bool:
    if not expiry:
        return False
    try:
        when = datetime.fromisoformat(str(expiry))
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when - datetime.now(UTC) < RENEW_MARGIN


# --- botocore errors -> the outbox's two errors -----------------------------------------------

_RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "TooManyRequestsException",
        "LimitExceededException",  # the instance's concurrent active chats: wait for one
        "InternalServiceException",
        "InternalServerException",
        "ServiceUnavailableException",
        "ServiceQuotaExceededException",
    }
)


def _code(error: Any) -> str:
    return str(error.response.get("Error", {}).get("Code") or "")


def _mapped(error: Any) -> Exception:
    """A botocore ClientError as HubUnavailableError (throttled, 5xx) or HubRejectedError."""
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    code = _code(error)
    if status >= 500 or status in (408, 429) or code in _RETRYABLE_CODES:
        return HubUnavailableError(f"Amazon Connect answered {status} {code}")
    message = str(error.response.get("Error", {}).get("Message") or "")[:200]
    return HubRejectedError(
        f"Amazon Connect refused the call ({status} {code}: {message})", reason=code or "rejected"
    )


def _call(operation: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    """One botocore call, its errors mapped to the outbox's two."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return operation(**kwargs)
    except ClientError as e:
        raise _mapped(e) from e
    except BotoCoreError as e:  # no connection, a timeout, no credentials...
        raise HubUnavailableError(f"Amazon Connect did not answer ({type(e).__name__})") from e
