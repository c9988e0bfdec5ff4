"""Amazon Connect chat on loopback (docs/hubs/amazon-connect.md §5), with the agent desk in
front: one HTTP server speaks the three wire protocols the copilot uses.

* Connect's REST-JSON API as botocore calls it: ``PUT /contact/chat`` (StartChatContact),
  ``POST /contact/start-streaming`` and ``/contact/stop-streaming``; each call SigV4-signed
  with the configured access key (the signature is checked with botocore's own signer).
* The Participant Service: ``POST /participant/connection`` (``X-Amz-Bearer: <participant
  token>``), ``/participant/message``, ``/participant/event`` and ``/participant/disconnect``
  (``X-Amz-Bearer: <connection token>``). ``expire_tokens()`` expires every connection token
  issued so far: the next call gets Connect's 403 ``AccessDeniedException``.
* SNS: a self-signed signing certificate at ``/SimpleNotificationService-<id>.pem``;
  ``connect_copilot(copilot_id)`` subscribes ``<webhook>/hooks/connect/<copilot_id>`` to the
  copilot's topic (a signed SubscriptionConfirmation, confirmed when the copilot GETs its
  SubscribeURL, ``/?Action=ConfirmSubscription...``); then every chat item of a streamed contact
  is POSTed as a signed SNS Notification whose Message is Connect's streaming JSON.

Every write honours its ``ClientToken`` (the same token gives the same answer, counted in
``duplicates``). ``fail_with`` answers every Connect and Participant Service call with that
status (an outage); the SNS side stays up. The desk session is rebuilt from Connect's own
fields only: the contact attributes, the initial message and the copilot's hand-off note
(markdown messages; the customer's messages are text/plain).
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import queue
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import requests
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from copilot.handoff.hubs.connect import (
    ATTRIBUTES_BYTES,
    CONTENT_TYPE_PREFIX,
    MESSAGE_CHARS,
    string_to_sign,
)
from copilot_dev.emulators.desk import AgentAction, DeskSession, HubDesk, Tampered

ACCOUNT = "123456789012"
REGION = "us-east-1"
CONNECTION_LIFETIME = timedelta(days=1)  # "Expiry time for the connection token is 1 day"
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/"
    r"(?P<service>[a-z0-9-]+)/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;-]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})"
)
_ATTRIBUTE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# The copilot's calls: operation (its handler is ``_<operation>``) -> method, path and auth:
# SigV4 (Connect), or X-Amz-Bearer with the participant or the connection token.
OPERATIONS = {
    "start_chat": ("PUT", "/contact/chat", "sigv4"),
    "start_streaming": ("POST", "/contact/start-streaming", "sigv4"),
    "stop_streaming": ("POST", "/contact/stop-streaming", "sigv4"),
    "connection": ("POST", "/participant/connection", "participant"),
    "message": ("POST", "/participant/message", "connection"),
    "event": ("POST", "/participant/event", "connection"),
    "disconnect": ("POST", "/participant/disconnect", "connection"),
}
_EVENT_TYPES = {
    "joined": "event.participant.joined",
    "typing": "event.typing",
    "left": "event.participant.left",
    "ended": "event.chat.ended",
}


class ConnectError(Exception):
    """An error in Connect's shape: the status, ``X-Amzn-ErrorType`` and ``{"message"}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> Response:
        return Response(
            json.dumps({"message": self.message}),
            status=self.status,
            headers={"X-Amzn-ErrorType": self.code},
            content_type="application/json",
        )


@dataclass
class Subscription:
    topic_arn: str
    endpoint: str
    token: str
    arn: str
    confirmed: bool = True


class ConnectEmulator(HubDesk):
    hub_type = "connect"
    ordered = False  # SNS: best-effort order, no sequence numbers

    def __init__(self, **options: Any) -> None:
        """``options``: HubDesk's (host, port, webhook_url, agent_name, retries, token)."""
        # The AWS key the functions sign with: the local stack's (StackConfig.env); the unit
        # tests' process uses "test".
        self.access_key = "local"
        self.secret_key = "local"
        self.instance_id = str(uuid.uuid4())
        self.contact_flow_id = str(uuid.uuid4())
        self.signature_version = "2"  # what our topics are set to (SetTopicAttributes)
        self.echo_customer = True  # publish the customer's own messages back, as Connect does
        # SNS's default HTTP/S policy is 3 retries 20 s apart; here the same retries, 0.25 s
        # then doubling (post_retrying): under 2 s in all.
        self.delivery_backoff = 0.25
        self.cert_id = uuid.uuid4().hex
        self._key, self._cert_pem = _signing_pair()
        self._contacts: dict[str, dict[str, Any]] = {}
        self._answers: dict[tuple[str, str], dict[str, Any]] = {}  # (operation, ClientToken)
        self._gates: dict[tuple[str, str], threading.Lock] = {}  # one call per key at a time
        self._participants: dict[str, str] = {}  # participant token -> contact id
        self._connections: dict[str, tuple[str, datetime]] = {}  # token -> (contact, expiry)
        self._subscriptions: list[Subscription] = []
        self._topics: list[str] = []  # made by hub_settings(), in order
        self._subscribed: set[str] = set()
        self._echoes: queue.Queue[tuple[Subscription, dict[str, Any] | bytes]] | None = None
        super().__init__(**options)

    # --- what a copilot needs -----------------------------------------------------------------

    def hub_rules(self) -> list[Rule]:
        return [
            *(
                Rule(path, endpoint="api", methods=[method], defaults={"operation": operation})
                for operation, (method, path, _) in OPERATIONS.items()
            ),
            Rule("/SimpleNotificationService-<cert_id>.pem", endpoint="cert", methods=["GET"]),
        ]

    def hub_settings(self, **fields: Any) -> dict[str, Any]:
        """A copilot's Connect settings; each call has a topic of its own (one topic per
        copilot, as docs/hubs/amazon-connect.md advises), unless ``topic_arn`` is given."""
        topic = fields.pop("topic_arn", None) or self._new_topic()
        return {
            "type": "connect",
            "region": REGION,
            "instance_id": self.instance_id,
            "contact_flow_id": self.contact_flow_id,
            "topic_arn": topic,
            "endpoint_url": self.url,
            **fields,
        }

    @property
    def secret_ref(self) -> str:
        return ""  # Connect takes no secret: the function's IAM role

    @property
    def secret_value(self) -> str:
        return ""

    def stack_env(self) -> dict[str, str]:
        """The functions may fetch SNS signing certificates (and confirm subscriptions) here."""
        if self._server is None:
            raise RuntimeError("start the emulator first (its port goes in the allow-list)")
        return {"COPILOT_SNS_CERT_HOSTS": f"{self._host}:{self._server.port}"}

    def connect_copilot(
        self, copilot_id: str, topic_arn: str | None = None, timeout: float = 10
    ) -> None:
        """Subscribe the copilot's webhook to its topic (the oldest topic hub_settings() made
        that has no subscriber yet, else the last one) and wait for its confirmation."""
        with self._lock:
            if topic_arn is None:
                fresh = [t for t in self._topics if t not in self._subscribed]
                topic_arn = fresh[0] if fresh else (self._topics or [self._new_topic()])[-1]
            self._subscribed.add(topic_arn)
            sub = Subscription(
                topic_arn=topic_arn,
                endpoint=self.webhook(copilot_id),
                token=secrets.token_hex(32),
                arn=f"{topic_arn}:{uuid.uuid4()}",
                confirmed=False,
            )
            self._subscriptions.append(sub)
        url = (
            f"{self.url}/?Action=ConfirmSubscription&TopicArn={quote(topic_arn, safe='')}"
            f"&Token={sub.token}"
        )
        confirmation = self.sign(
            {
                "Type": "SubscriptionConfirmation",
                "MessageId": str(uuid.uuid4()),
                "Token": sub.token,
                "TopicArn": topic_arn,
                "Message": f"You have chosen to subscribe to the topic {topic_arn}.\n"
                "To confirm the subscription, visit the SubscribeURL included in this message.",
                "SubscribeURL": url,
                "Timestamp": _now(),
            }
        )
        response = self._post(sub, confirmation)
        deadline = time.time() + timeout
        while not sub.confirmed:
            if time.time() > deadline:
                raise TimeoutError(
                    f"{sub.endpoint} did not confirm the subscription ({response.status_code}: "
                    f"{response.text[:200]})"
                )
            time.sleep(0.02)

    def expire_tokens(self) -> None:
        past = datetime.now(UTC) - timedelta(seconds=1)
        with self._lock:
            for token, (contact, _) in list(self._connections.items()):
                self._connections[token] = (contact, past)

    def _new_topic(self) -> str:
        topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:connect-chat-{uuid.uuid4().hex[:12]}"
        with self._lock:
            self._topics.append(topic)
        return topic

    # --- agent events: chat items published to the contact's topic --------------------------

    def event(
        self,
        session: DeskSession,
        kind: AgentAction | str,
        *,
        agent: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """The SNS Notification (not yet signed) of the agent's ``kind`` of chat item. Fields:
        ``text``; ``role`` (ParticipantRole, default AGENT), ``visibility`` (MessageVisibility,
        default ALL) and ``content_type`` to publish other items."""
        name = agent or session.agent or self.agent_name
        role = fields.get("role") or ("SYSTEM" if kind == "ended" else "AGENT")
        if kind == "message":
            item_type, content_type = "MESSAGE", fields.get("content_type") or "text/plain"
        else:
            item_type = "EVENT"
            content_type = fields.get("content_type") or CONTENT_TYPE_PREFIX + _EVENT_TYPES[kind]
        item = {
            "AbsoluteTime": _now(),
            "ContentType": content_type,
            "Id": str(uuid.uuid4()),
            "Type": item_type,
            "ParticipantId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"agent:{name}")),
            "DisplayName": name,
            "ParticipantRole": role,
            "InitialContactId": session.handoff_id,
            "ContactId": session.handoff_id,
        }
        if fields.get("text") is not None:
            item["Content"] = fields["text"]
        visibility = fields.get("visibility") or "ALL"
        return self.notification(session.hub["topic"], item, visibility)

    def notification(
        self, topic_arn: str, item: dict[str, Any], visibility: str = "ALL"
    ) -> dict[str, Any]:
        attributes = {
            "InitialContactId": item["InitialContactId"],
            "ContactId": item["ContactId"],
            "MessageVisibility": visibility,
            "Type": item["Type"],
            "ContentType": item["ContentType"],
            "ParticipantRole": item["ParticipantRole"],
            "AccountId": ACCOUNT,
            "InstanceId": self.instance_id,
        }
        message_id = str(uuid.uuid4())
        return {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": topic_arn,
            "Message": json.dumps(item),
            "Timestamp": _now(),
            "UnsubscribeURL": f"{self.url}/?Action=Unsubscribe&SubscriptionArn={message_id}",
            "MessageAttributes": {k: {"Type": "String", "Value": v} for k, v in attributes.items()},
        }

    def sign(
        self, message: dict[str, Any], *, version: str | None = None, cert_url: str | None = None
    ) -> dict[str, Any]:
        """``message`` signed as SNS signs: RSA PKCS#1 v1.5, SHA1 (1) or SHA256 (2)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        version = version or self.signature_version
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        unsigned = {k: v for k, v in message.items() if k not in ("Signature",)}
        unsigned |= {
            "SignatureVersion": version,
            "SigningCertURL": cert_url
            or f"{self.url}/SimpleNotificationService-{self.cert_id}.pem",
        }
        raw = self._key.sign(string_to_sign(unsigned), padding.PKCS1v15(), algorithm)
        return {**unsigned, "Signature": base64.b64encode(raw).decode()}

    def deliver(
        self,
        session: DeskSession,
        event: dict[str, Any] | bytes,
        *,
        retries: int | None = None,
        signed: bool = True,
        copilot_id: str | None = None,
    ) -> requests.Response:
        """Publish ``event`` to the session's topic: POSTed to each confirmed subscriber, the
        session copilot's first (its answer is returned; the others' in the background).
        ``copilot_id``: to that copilot's webhook only, subscribed or not. ``signed=False``:
        as given (already signed, or not at all)."""
        topic = session.hub["topic"]
        message = self.sign(event) if signed and isinstance(event, dict) else event
        if copilot_id is not None:
            target = Subscription(topic, self.webhook(copilot_id), "", f"{topic}:{copilot_id}")
            return self._post(target, message, retries)
        own = self.webhook(session.copilot_id)
        with self._lock:
            subs = [s for s in self._subscriptions if s.topic_arn == topic and s.confirmed]
        mine = [s for s in subs if s.endpoint == own]
        if not mine:
            raise RuntimeError(f"no confirmed subscription of {own}: call connect_copilot()")
        for other in subs:
            if other is not mine[0]:
                self._queue_echo(other, message)
        return self._post(mine[0], message, retries)

    def _post(
        self,
        sub: Subscription,
        message: dict[str, Any] | bytes,
        retries: int | None = None,
    ) -> requests.Response:
        body = message if isinstance(message, bytes) else json.dumps(message).encode()
        kind = message.get("Type", "Notification") if isinstance(message, dict) else "Notification"
        mid = message.get("MessageId", "") if isinstance(message, dict) else ""
        headers = {
            "Content-Type": "text/plain; charset=UTF-8",
            "User-Agent": "Amazon Simple Notification Service Agent",
            "x-amz-sns-message-type": str(kind),
            "x-amz-sns-message-id": str(mid),
            "x-amz-sns-topic-arn": sub.topic_arn,
        }
        if kind == "Notification":
            headers["x-amz-sns-subscription-arn"] = sub.arn
        attempts = retries if retries is not None else self.retries + 1  # first + 3 retries
        return self.post_retrying(sub.endpoint, body, headers, attempts, self.delivery_backoff)

    def tampered(self, session: DeskSession, event: dict[str, Any]) -> list[Tampered]:
        """Bad SNS deliveries of ``event``, each with the status the copilot must answer."""
        good = self.sign(event)
        forged = {**good, "Message": good["Message"].replace('"AGENT"', '"SUPERVISOR"', 1)}
        if forged["Message"] == good["Message"]:
            forged["Message"] += " "
        unsigned = {
            k: v
            for k, v in event.items()
            if k not in ("Signature", "SigningCertURL", "SignatureVersion")
        }
        port = self._server.port if self._server is not None else 0
        lookalike = self.sign(
            event, cert_url="https://sns.us-east-1.amazonaws.com.example.net/Sns-x.pem"
        )
        other_host = self.sign(
            event, cert_url=f"http://localhost:{port}/SimpleNotificationService-{self.cert_id}.pem"
        )
        other_topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:someone-else"
        stale = (datetime.now(UTC) - timedelta(hours=2)).isoformat(timespec="milliseconds")
        stale = stale.replace("+00:00", "Z")

        def send(message: dict[str, Any] | bytes, copilot_id: str | None = None) -> Any:
            copilot = copilot_id or session.copilot_id
            return self.deliver(session, message, signed=False, retries=1, copilot_id=copilot)

        def signed(**changes: Any) -> dict[str, Any]:
            return self.sign({**event, **changes})

        return [
            Tampered("forged signature", send(forged), 403),
            Tampered("unsigned", send(unsigned), 401),
            Tampered("certificate on an SNS look-alike host", send(lookalike), 403),
            Tampered("certificate on a host not allowed", send(other_host), 403),
            Tampered("another topic", send(signed(TopicArn=other_topic)), 403),
            Tampered("stale", send(signed(Timestamp=stale)), 403),
            Tampered("signature version 3", send({**good, "SignatureVersion": "3"}), 403),
            Tampered("not JSON", send(b'{"Type": "Notification", "Message": '), 400),
            Tampered("unknown copilot", send(good, copilot_id="f" * 32), 403),
        ]

    # --- the customer's own items, published back (in the background, as Connect does) ------

    def _publish_customer(self, contact: dict[str, Any], item: dict[str, Any]) -> None:
        topic = contact.get("topic")
        if not self.echo_customer or topic is None:
            return
        message = self.sign(self.notification(topic, item))
        with self._lock:
            subs = [s for s in self._subscriptions if s.topic_arn == topic and s.confirmed]
        for sub in subs:
            self._queue_echo(sub, message)

    def _queue_echo(self, sub: Subscription, message: dict[str, Any] | bytes) -> None:
        """Deliver in the background, one at a time (SNS delivers on its own time too)."""
        with self._lock:
            if self._echoes is None:
                self._echoes = queue.Queue()
                threading.Thread(target=self._echo_loop, name="connect-sns", daemon=True).start()
            echoes = self._echoes
        echoes.put((sub, message))

    def _echo_loop(self) -> None:
        assert self._echoes is not None
        while True:
            sub, message = self._echoes.get()
            if self._server is None:
                continue  # stopped
            with contextlib.suppress(requests.RequestException):  # SNS gives up too
                self._post(sub, message)

    # --- Connect: /contact/* (SigV4) ----------------------------------------------------------

    def _start_chat(self, body: dict[str, Any], _: str) -> dict[str, Any]:
        self._instance(body)
        if body.get("ContactFlowId") != self.contact_flow_id:
            raise ConnectError(404, "ResourceNotFoundException", "Contact flow not found")
        name = (body.get("ParticipantDetails") or {}).get("DisplayName")
        if not isinstance(name, str) or not 1 <= len(name) <= 256:
            raise ConnectError(400, "InvalidParameterException", "DisplayName: 1-256 chars")
        attrs = body.get("Attributes") or {}
        size = sum(len(k.encode()) + len(str(v).encode()) for k, v in attrs.items())
        if size > ATTRIBUTES_BYTES or not all(_ATTRIBUTE_KEY.fullmatch(k) for k in attrs):
            raise ConnectError(400, "InvalidParameterException", "Attributes: keys or size")
        if not all(isinstance(v, str) for v in attrs.values()):
            raise ConnectError(400, "InvalidParameterException", "Attributes: string values")
        first = body.get("InitialMessage") or {}
        if first and not 1 <= len(str(first.get("Content") or "")) <= MESSAGE_CHARS:
            raise ConnectError(400, "InvalidParameterException", "InitialMessage: 1-1024 chars")
        if self.reject_with:
            raise ConnectError(400, "InvalidRequestException", self.reject_with)
        contact_id = str(uuid.uuid4())
        token = secrets.token_urlsafe(48)
        contact: dict[str, Any] = {
            "ContactId": contact_id,
            "ParticipantId": str(uuid.uuid4()),
            "ParticipantToken": token,
            "request": body,
            "topic": None,
            "session": None,
            "notes": [],
            "said": 0,
        }
        with self._lock:
            self._contacts[contact_id] = contact
            self._participants[token] = contact_id
        return {
            "ContactId": contact_id,
            "ParticipantId": contact["ParticipantId"],
            "ParticipantToken": token,
        }

    def _start_streaming(self, body: dict[str, Any], _: str) -> dict[str, Any]:
        self._instance(body)
        contact = self._contacts.get(str(body.get("ContactId")))
        if contact is None:
            raise ConnectError(404, "ResourceNotFoundException", "Contact not found")
        arn = str((body.get("ChatStreamingConfiguration") or {}).get("StreamingEndpointArn"))
        if not arn.startswith("arn:aws:sns:"):
            raise ConnectError(400, "InvalidParameterException", "StreamingEndpointArn: SNS")
        with self._lock:
            contact["topic"] = arn
            contact["streaming"] = contact.get("streaming") or str(uuid.uuid4())
        return {"StreamingId": contact["streaming"]}

    def _stop_streaming(self, body: dict[str, Any], _: str) -> dict[str, Any]:
        self._instance(body)
        contact = self._contacts.get(str(body.get("ContactId")))
        if contact is None or contact.get("streaming") != body.get("StreamingId"):
            raise ConnectError(404, "ResourceNotFoundException", "Streaming not found")
        contact["topic"] = None
        return {}

    def _instance(self, body: dict[str, Any]) -> None:
        if body.get("InstanceId") != self.instance_id:
            raise ConnectError(404, "ResourceNotFoundException", "Instance not found")

    # --- the Participant Service: /participant/* (X-Amz-Bearer) ------------------------------

    def _connection(self, body: dict[str, Any], contact_id: str) -> dict[str, Any]:
        contact = self._contacts[contact_id]
        if "CONNECTION_CREDENTIALS" not in (body.get("Type") or []):
            raise ConnectError(400, "ValidationException", "Type: CONNECTION_CREDENTIALS")
        if body.get("ConnectParticipant") and contact["topic"] is None:
            raise ConnectError(400, "ValidationException", "ConnectParticipant needs streaming")
        token = secrets.token_urlsafe(48)
        expiry = datetime.now(UTC) + CONNECTION_LIFETIME
        with self._lock:
            self._connections[token] = (contact_id, expiry)
        return {
            "ConnectionCredentials": {
                "ConnectionToken": token,
                "Expiry": expiry.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            }
        }

    def _message(self, body: dict[str, Any], contact_id: str) -> dict[str, Any]:
        contact = self._contacts[contact_id]
        kind, text = body.get("ContentType"), body.get("Content")
        if kind not in ("text/plain", "text/markdown"):
            raise ConnectError(400, "ValidationException", "ContentType not supported")
        if not isinstance(text, str) or not 1 <= len(text) <= MESSAGE_CHARS:
            raise ConnectError(400, "ValidationException", "Content: 1-1024 characters")
        message_id, at = str(uuid.uuid4()), _now()
        with self._lock:
            if kind == "text/markdown":
                contact["notes"].append(text)  # the copilot's hand-off note, for the agent
                session = self._session_of(contact)
                session.log.append({"from": "copilot", "type": "note", "text": text})
            else:
                contact["said"] += 1
                self.customer_said(self._session_of(contact), text, contact["said"], message_id)
        self._publish_customer(contact, self._customer_item(contact, kind, text, message_id))
        return {"Id": message_id, "AbsoluteTime": at}

    def _event(self, body: dict[str, Any], contact_id: str) -> dict[str, Any]:
        if not str(body.get("ContentType") or "").startswith(CONTENT_TYPE_PREFIX + "event."):
            raise ConnectError(400, "ValidationException", "ContentType not supported")
        return {"Id": str(uuid.uuid4()), "AbsoluteTime": _now()}

    def _disconnect(self, body: dict[str, Any], contact_id: str) -> dict[str, Any]:
        contact = self._contacts[contact_id]
        with self._lock:
            self.customer_ended(self._session_of(contact))
        ended = CONTENT_TYPE_PREFIX + "event.chat.ended"
        self._publish_customer(
            contact, self._customer_item(contact, ended, None, str(uuid.uuid4()))
        )
        return {}

    def _customer_item(
        self, contact: dict[str, Any], content_type: str, text: str | None, item_id: str
    ) -> dict[str, Any]:
        is_event = content_type.startswith(CONTENT_TYPE_PREFIX)
        item = {
            "AbsoluteTime": _now(),
            "ContentType": content_type,
            "Id": item_id,
            "Type": "EVENT" if is_event else "MESSAGE",
            "ParticipantId": contact["ParticipantId"],
            "DisplayName": contact["request"]["ParticipantDetails"]["DisplayName"],
            "ParticipantRole": "SYSTEM" if is_event else "CUSTOMER",
            "InitialContactId": contact["ContactId"],
            "ContactId": contact["ContactId"],
        }
        if text is not None:
            item["Content"] = text
        return item

    def _session_of(self, contact: dict[str, Any]) -> DeskSession:
        """The contact's desk session, made on first use from Connect's own fields."""
        if contact["session"] is None:
            contact["session"] = self.add_session(_desk_session(contact))
        session: DeskSession = contact["session"]
        session.initiate["notes"] = list(contact["notes"])
        return session

    # --- SNS: the certificate and subscription confirmation ---------------------------------

    def _on_cert(self, request: Request, cert_id: str) -> Response:
        found = cert_id == self.cert_id
        self.record(request, 200 if found else 404)
        if not found:
            return Response("not found", status=404)
        return Response(self._cert_pem, mimetype="application/x-pem-file")

    def _on_page(self, request: Request) -> Response:
        if request.args.get("Action") != "ConfirmSubscription":
            return super()._on_page(request)
        token, topic = request.args.get("Token", ""), request.args.get("TopicArn", "")
        with self._lock:
            found = [
                s
                for s in self._subscriptions
                if s.topic_arn == topic and hmac.compare_digest(s.token, token)
            ]
            for sub in found:
                sub.confirmed = True
        self.record(request, 200 if found else 400)
        if not found:
            return Response(
                "<ErrorResponse><Error><Code>InvalidParameter</Code></Error></ErrorResponse>",
                status=400,
                mimetype="text/xml",
            )
        return Response(
            '<ConfirmSubscriptionResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">'
            f"<ConfirmSubscriptionResult><SubscriptionArn>{found[0].arn}</SubscriptionArn>"
            "</ConfirmSubscriptionResult></ConfirmSubscriptionResponse>",
            mimetype="text/xml",
        )

    # --- one copilot call: outage, auth, idempotency, record ---------------------------------

    def _on_api(self, request: Request, operation: str) -> Response:
        _, _, auth = OPERATIONS[operation]
        return self._serve(request, getattr(self, f"_{operation}"), auth=auth)

    def _serve(self, request: Request, handler: Any, *, auth: str) -> Response:
        try:
            if self.fail_with is not None:
                raise ConnectError(self.fail_with, "InternalServiceException", "unavailable")
            body = request.get_json(force=True, silent=True)
            if not isinstance(body, dict):
                raise ConnectError(400, "SerializationException", "not a JSON object")
            contact_id = self._authorize(request, auth)
            token = body.get("ClientToken")
            key = (f"{request.path}:{contact_id}", str(token))
            with self._lock:  # two calls with one ClientToken at once: the second waits
                gate = self._gates.setdefault(key, threading.Lock())
            with gate:
                with self._lock:
                    answer = self._answers.get(key) if token else None
                    if answer is not None:
                        self.duplicates += 1
                if answer is None:
                    answer = handler(body, contact_id)
                    if token:
                        with self._lock:
                            answer = self._answers.setdefault(key, answer)
                    with self._lock:
                        self.received.append({"path": request.path, **body})
            response = Response(json.dumps(answer), content_type="application/json")
        except ConnectError as e:
            response = e.response()
        self.record(request, response.status_code)
        return response

    def _authorize(self, request: Request, auth: str) -> str:
        """The contact a Participant Service token is for ("" for SigV4 calls)."""
        if auth == "sigv4":
            self._check_sigv4(request)
            return ""
        bearer = request.headers.get("X-Amz-Bearer", "")
        with self._lock:
            if auth == "participant":
                contact = self._participants.get(bearer)
            else:
                contact, expiry = self._connections.get(
                    bearer, (None, datetime.min.replace(tzinfo=UTC))
                )
                if contact is not None and expiry <= datetime.now(UTC):
                    contact = None
        if not contact:
            raise ConnectError(403, "AccessDeniedException", "You do not have sufficient access")
        return contact

    def _check_sigv4(self, request: Request) -> None:
        """The Authorization header botocore signs with: this key, scope and signature."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        found = _AUTH.fullmatch(request.headers.get("Authorization", ""))
        stamp = request.headers.get("X-Amz-Date", "")
        if found is None or not stamp:
            raise ConnectError(403, "MissingAuthenticationTokenException", "Missing token")
        if found["key"] != self.access_key or found["service"] != "connect":
            raise ConnectError(403, "UnrecognizedClientException", "The security token is invalid")
        signed = found["signed"].split(";")
        aws = AWSRequest(
            method=request.method,
            url=request.url,
            data=request.get_data(),
            headers={name: request.headers.get(name, "") for name in signed},
        )
        aws.context["timestamp"] = stamp
        signer = SigV4Auth(
            Credentials(self.access_key, self.secret_key), "connect", found["region"]
        )
        expected = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
        if not hmac.compare_digest(expected, found["signature"]):
            raise ConnectError(403, "InvalidSignatureException", "The signature does not match")


def _desk_session(contact: dict[str, Any]) -> DeskSession:
    """What the agent sees, rebuilt from the contact's attributes and initial message."""
    start = contact["request"]
    attrs: dict[str, str] = dict(start.get("Attributes") or {})
    context: dict[str, Any] = {k: v for k, v in attrs.items() if k.startswith("va_")}
    for key in ("va_Topics", "va_Phrases"):
        context[key] = _listed(attrs.get(key))
    context |= {k: v for k, v in attrs.items() if not k.startswith(("va_", "copilot_"))}
    transcript = [
        {"from": {"role": "user" if e.get("role") == "customer" else "bot"}, "text": e.get("text")}
        for e in _listed(attrs.get("copilot_transcript"))
        if isinstance(e, dict)
    ]
    first = (start.get("InitialMessage") or {}).get("Content")
    return DeskSession(
        handoff_id=contact["ContactId"],
        conversation_id=attrs.get("va_ConversationId", ""),
        copilot_id=attrs.get("copilot_id", ""),
        reply_to=None,
        initiate={"StartChatContact": start, "notes": []},
        context=context,
        summary_text=attrs.get("copilot_summary") or first,
        unanswered_questions=[str(q) for q in _listed(attrs.get("copilot_unanswered"))],
        routing={"queue": attrs.get("copilot_queue"), "skill": attrs.get("copilot_skill")},
        transcript=transcript,
        hub={"topic": contact["topic"], "contact_id": contact["ContactId"]},
    )


def _listed(value: str | None) -> list[Any]:
    try:
        data = json.loads(value) if value else []
    except ValueError:
        return []
    return data if isinstance(data, list) else []


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _signing_pair() -> tuple[Any, bytes]:
    """An RSA key and its self-signed certificate (PEM), like SNS's signing certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)
