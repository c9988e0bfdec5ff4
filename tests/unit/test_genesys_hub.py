"""The Genesys Cloud Open Messaging adapter against its emulator, over loopback HTTP: the start's
wire fields (participant data, summary and transcript), customer messages and the end, token
renewal, error mapping, the webhook's signature and the parsing of each outbound message."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from werkzeug.wrappers import Request, Response

from copilot.errors import (
    BadRequestError,
    CopilotError,
    ForbiddenError,
    HubRejectedError,
    HubUnavailableError,
    UnauthorizedError,
)
from copilot.handoff.hubs.genesys import (
    LEFT_TEXT,
    MAX_ATTRIBUTE_CHARS,
    MAX_TEXT_CHARS,
    GenesysHub,
    customer_id,
)
from copilot.handoff.hubs.signatures import signature_header
from copilot.handoff.models import (
    GenesysHubSettings,
    HandoffContext,
    HubCommand,
    HubReceipt,
    TranscriptEntry,
)
from copilot.ports import InboundRequest
from copilot_dev.emulators import LoopbackServer
from copilot_dev.emulators.genesys import GenesysEmulator
from tests.hub_commands import handoff_context, hub_command

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
CID, HID, COPILOT = "c0nv", "h4nd", "cop1"


@pytest.fixture
def genesys() -> Iterator[GenesysEmulator]:
    with GenesysEmulator(retries=3) as emulator:
        emulator.connect_copilot(COPILOT)
        yield emulator


def settings(emulator: GenesysEmulator, **fields: Any) -> GenesysHubSettings:
    return GenesysHubSettings.model_validate(emulator.hub_settings(queue="billing", **fields))


def context(**fields: Any) -> HandoffContext:
    values: dict[str, Any] = {
        "language": "en",
        "last_topic": "Refunds",
        "topics": ["Greeting", "Refunds"],
        "last_phrases": "I want a person",
        "phrases": ["my order is late", "I want a person"],
        "agent_message": "VIP customer",
        "variables": {"name": "Dana", "order id": "A-17"},
        "summary": "Order A-17 is late; the customer wants a refund.",
        "unanswered_questions": ["Can I get a refund?"],
        "skill": "refunds",
    }
    return handoff_context(CID, COPILOT, **(values | fields))


def command(kind: str, seq: int, **fields: Any) -> HubCommand:
    return hub_command(kind, seq, CID, COPILOT, HID, **fields)


def start(**fields: Any) -> HubCommand:
    transcript = [
        TranscriptEntry(seq=1, role="customer", text="my order is late", created_at=NOW),
        TranscriptEntry(seq=2, role="copilot", text="Sorry to hear.\nLet me look.", created_at=NOW),
        TranscriptEntry(seq=3, role="customer", text="I want a person", created_at=NOW),
    ]
    return command("start", 4, context=context(**fields), transcript=transcript)


def started(genesys: GenesysEmulator, hub: GenesysHub | None = None) -> HubReceipt:
    receipt = (hub or GenesysHub(timeout=5)).send(settings(genesys), genesys.secret_value, start())
    assert receipt is not None
    return receipt


# --- outbound: start, messages, end ----------------------------------------------------------


def test_the_start_is_an_inbound_open_message_carrying_the_context(
    genesys: GenesysEmulator,
) -> None:
    receipt = started(genesys)

    session = genesys.wait_for_session(CID)
    assert receipt.hub_conversation_id == session.handoff_id  # prefetchConversationId
    assert receipt.state["from_id"] == customer_id(CID, HID)
    channel = session.initiate["channel"]
    assert channel["from"] == {"id": f"{CID}:{HID}", "idType": "Opaque", "nickname": "Dana"}
    assert channel["messageId"] == f"{CID}:4"
    assert channel["time"].endswith("Z")
    # Copilot Studio's fields, rebuilt from Genesys's participant data (str -> str).
    assert session.context["va_ConversationId"] == CID
    assert session.context["va_BotName"] == "Northwind"
    assert session.context["va_LastTopic"] == "Refunds"
    assert session.context["va_AgentMessage"] == "VIP customer"
    assert session.context["va_Phrases"] == ["my order is late", "I want a person"]
    assert session.context["name"] == "Dana"
    assert session.context["order_id"] == "A-17"  # participant data keys: [A-Za-z0-9_]
    assert all(isinstance(v, str) for v in channel["metadata"]["customAttributes"].values())
    assert session.summary_text == "Order A-17 is late; the customer wants a refund."
    assert session.unanswered_questions == ["Can I get a refund?"]
    assert session.routing == {"queue": "billing", "skill": "refunds"}
    # The agent's first message: the summary, then the transcript.
    text = session.initiate["text"]
    assert text.startswith("Hand-off from Northwind (Refunds)\nSummary: Order A-17")
    assert "Customer: my order is late\nCopilot: Sorry to hear.\nLet me look." in text
    assert session.transcript == [
        {"from": {"role": "user"}, "text": "my order is late"},
        {"from": {"role": "bot"}, "text": "Sorry to hear.\nLet me look."},
        {"from": {"role": "user"}, "text": "I want a person"},
    ]
    assert session.copilot_id == COPILOT
    assert (genesys.requests[0].path, genesys.requests[0].status) == ("/oauth/token", 200)


def test_a_retried_start_is_recognised_by_its_message_id(genesys: GenesysEmulator) -> None:
    first, again = started(genesys), started(genesys)

    assert again.hub_conversation_id == first.hub_conversation_id
    assert len(genesys.sessions()) == 1
    assert genesys.duplicates == 1


def test_customer_messages_arrive_in_order_once_each(genesys: GenesysEmulator) -> None:
    hub = GenesysHub(timeout=5)
    receipt = started(genesys, hub)
    for seq, text in [(5, "hello?"), (6, "still there"), (6, "still there")]:
        sent = command("message", seq, text=text, receipt=receipt)
        assert hub.send(settings(genesys), genesys.secret_value, sent) is None

    assert genesys.wait_for_customer(CID, 2) == ["hello?", "still there"]
    assert genesys.duplicates == 1
    message = genesys.received[-1]
    assert message["channel"]["from"]["id"] == f"{CID}:{HID}"
    assert message["channel"]["messageId"] == f"{CID}:6"


def test_the_customer_leaving_disconnects_the_customer_participant(
    genesys: GenesysEmulator,
) -> None:
    hub = GenesysHub(timeout=5)
    receipt = started(genesys, hub)
    hub.send(settings(genesys), genesys.secret_value, command("end", 5, receipt=receipt))

    session = genesys.session(CID)
    assert session.status == "ended"
    customer = session.hub["participants"][0]
    assert (customer["purpose"], customer["state"]) == ("customer", "disconnected")
    assert session.customer_texts == []  # no stray text: the participant left
    # The Open user's next message would open a new conversation.
    again = hub.send(settings(genesys), genesys.secret_value, start())
    assert again is not None and again.hub_conversation_id == receipt.hub_conversation_id
    assert genesys.duplicates == 1  # (the same start id: Genesys answers as before)


@pytest.mark.parametrize("why", ["no permission to disconnect", "no Genesys conversation id"])
def test_when_the_customer_cannot_be_disconnected_the_end_is_a_last_text(
    genesys: GenesysEmulator, why: str
) -> None:
    hub = GenesysHub(timeout=5)
    receipt = started(genesys, hub)
    if why == "no permission to disconnect":
        genesys.may_disconnect = False  # PATCH answers 403
    else:
        receipt = HubReceipt(hub_conversation_id=customer_id(CID, HID))
    hub.send(settings(genesys), genesys.secret_value, command("end", 5, receipt=receipt))

    assert genesys.wait_for_customer(CID, 1) == [LEFT_TEXT]
    assert genesys.session(CID).hub["participants"][0]["state"] == "connected"


def test_a_poll_of_the_participants_tells_joined_left_and_ended(
    genesys: GenesysEmulator,
) -> None:
    hub = GenesysHub(timeout=5)
    receipt = started(genesys, hub)

    def polled() -> list[tuple[str, str | None]]:
        events = hub.poll(settings(genesys), genesys.secret_value, receipt)
        assert all((e.conversation_id, e.handoff_id) == (CID, HID) for e in events)
        return [(e.kind, e.agent.name if e.agent else None) for e in events]

    assert polled() == []  # waiting in the queue
    genesys.join(CID)
    assert polled() == [("agent_joined", "Alex")]  # the participant's display name
    genesys.leave(CID)
    genesys.join(CID, agent="Sam")
    assert polled() == [("agent_joined", "Alex"), ("agent_left", "Alex"), ("agent_joined", "Sam")]
    genesys.end(CID)
    kinds = [kind for kind, _ in polled()]
    # Everyone disconnected: the end says it (no "left" before it, which the customer would see)
    assert kinds == ["agent_joined", "agent_joined", "ended"]
    ids = [e.event_id for e in hub.poll(settings(genesys), genesys.secret_value, receipt)]
    assert ids == [e.event_id for e in hub.poll(settings(genesys), genesys.secret_value, receipt)]
    unknown = HubReceipt(hub_conversation_id=customer_id(CID, HID), state=receipt.state)
    assert hub.poll(settings(genesys), genesys.secret_value, unknown) == []


def test_an_expired_token_is_renewed_once_and_nothing_is_lost(genesys: GenesysEmulator) -> None:
    hub = GenesysHub(timeout=5)
    receipt = started(genesys, hub)
    genesys.expire_tokens()
    sent = command("message", 5, text="after expiry", receipt=receipt)
    hub.send(settings(genesys), genesys.secret_value, sent)

    assert genesys.session(CID).customer_texts == ["after expiry"]
    calls = [(r.path.rsplit("/", 1)[-1], r.status) for r in genesys.requests]
    renewed = [("message", 401), ("token", 200), ("message", 200)]
    assert calls == [("token", 200), ("message", 200), *renewed]


def test_answers_map_to_retry_later_or_refused(genesys: GenesysEmulator) -> None:
    hub = GenesysHub(timeout=5)
    genesys.fail_with = 503
    with pytest.raises(HubUnavailableError):
        hub.send(settings(genesys), genesys.secret_value, start())
    genesys.fail_with = 429
    with pytest.raises(HubUnavailableError):
        hub.send(settings(genesys), genesys.secret_value, start())
    genesys.fail_with = None
    other = settings(genesys, integration_id="0" * 8 + "-0000-0000-0000-" + "0" * 12)
    with pytest.raises(HubRejectedError):  # 404: no such integration
        hub.send(other, genesys.secret_value, start())
    wrong = json.dumps({**json.loads(genesys.secret_value), "client_id": "x", "client_secret": "y"})
    with pytest.raises(HubUnavailableError):  # our credentials are wrong: retried, not dropped
        GenesysHub(timeout=5).send(settings(genesys), wrong, start())
    assert genesys.sessions() == []


def test_the_start_stays_within_the_attribute_and_text_bounds(genesys: GenesysEmulator) -> None:
    many = {f"v{i}": "x" * 5000 for i in range(80)}
    long = start(summary="s" * 9000, phrases=["p" * 900] * 20, variables=many)
    long = long.model_copy(
        update={
            "transcript": [
                TranscriptEntry(
                    seq=i, role="customer", text=f"line {i} " + "t" * 300, created_at=NOW
                )
                for i in range(1, 60)
            ]
        }
    )
    receipt = GenesysHub(timeout=5).send(settings(genesys), genesys.secret_value, long)

    assert receipt is not None  # the emulator refuses (400) anything beyond the bounds
    session = genesys.session(CID)
    attributes = session.initiate["channel"]["metadata"]["customAttributes"]
    assert max(len(v) for v in attributes.values()) <= MAX_ATTRIBUTE_CHARS
    assert len(session.initiate["text"]) <= MAX_TEXT_CHARS
    assert "earlier messages left out" in session.initiate["text"]
    assert session.transcript[-1]["text"].startswith("line 59 ")
    assert session.context["va_Phrases"][-1] == "p" * 500


# --- inbound: the outbound webhook -----------------------------------------------------------


def request(body: bytes, headers: dict[str, str] | None = None) -> InboundRequest:
    return InboundRequest("POST", f"/hooks/genesys/{COPILOT}", headers or {}, body)


def signed(genesys: GenesysEmulator, event: dict[str, Any] | bytes) -> InboundRequest:
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    header = signature_header(genesys.webhook_secret, body)
    return request(body, {"x-hub-signature-256": header})


def test_verification_takes_the_integration_signature_only(genesys: GenesysEmulator) -> None:
    hub, hub_settings, body = GenesysHub(), settings(genesys), b'{"id":"m1"}'
    hub.verify(signed(genesys, body), hub_settings, genesys.secret_value, NOW)
    cases: list[tuple[dict[str, str], type[CopilotError]]] = [
        ({}, UnauthorizedError),
        ({"x-hub-signature-256": signature_header("guessed", body)}, ForbiddenError),
        ({"x-hub-signature-256": "sha256=not base64!"}, ForbiddenError),
        (
            {"x-hub-signature-256": signature_header(genesys.webhook_secret, body, "sha1")},
            ForbiddenError,
        ),
        (
            {"x-hub-signature-256": signature_header(genesys.webhook_secret, body + b" ")},
            ForbiddenError,
        ),
    ]
    for headers, error in cases:
        with pytest.raises(error):
            hub.verify(request(body, headers), hub_settings, genesys.secret_value, NOW)
    stale = json.dumps({"id": "m1", "channel": {"time": "2026-01-05T09:10:00.000Z"}}).encode()
    with pytest.raises(ForbiddenError):  # 20 minutes before NOW: a replay
        hub.verify(signed(genesys, stale), hub_settings, genesys.secret_value, NOW)
    recent = stale.replace(b"09:10", b"09:29")
    hub.verify(signed(genesys, recent), hub_settings, genesys.secret_value, NOW)
    # A copilot without this hub: the same answers as a wrong signature.
    with pytest.raises(ForbiddenError):
        hub.verify(signed(genesys, body), None, "random", NOW)
    with pytest.raises(UnauthorizedError):
        hub.verify(request(body), None, "random", NOW)


def test_agent_messages_and_typing_parse_into_events(genesys: GenesysEmulator) -> None:
    started(genesys)
    session, hub = genesys.session(CID), GenesysHub()
    message = genesys.event(session, "message", text="Hi, I'm Alex")
    typing = genesys.event(session, "typing")

    [said] = hub.parse(signed(genesys, message), settings(genesys))
    assert (said.kind, said.event_id, said.text) == ("agent_message", message["id"], "Hi, I'm Alex")
    assert (said.conversation_id, said.handoff_id, said.sequence) == (CID, HID, None)
    assert said.agent is None  # not in the payload: the copilot names the agent it knows
    [typed] = hub.parse(signed(genesys, typing), settings(genesys))
    assert (typed.kind, typed.event_id) == ("agent_typing", f"{typing['id']}:0")
    attachment = {
        **message,
        "text": None,
        "content": [
            {
                "contentType": "Attachment",
                "attachment": {"url": "https://x.test/a.png", "filename": "a.png"},
            }
        ],
    }
    [sent] = hub.parse(signed(genesys, attachment), settings(genesys))
    assert sent.text == "a.png: https://x.test/a.png"


def test_receipts_echoes_and_other_events_are_of_no_interest(genesys: GenesysEmulator) -> None:
    started(genesys)
    session, hub = genesys.session(CID), GenesysHub()
    receipt = genesys.event(session, "Receipt", status="Delivered", isFinalReceipt=True)
    echo = {**genesys.event(session, "message", text="hi"), "direction": "Inbound"}
    other = {**genesys.event(session, "typing"), "events": [{"eventType": "Presence"}]}
    blank = genesys.event(session, "message", text="  ")
    stranger = genesys.event(session, "message", text="hi")
    stranger["channel"]["to"]["id"] = ":someone"
    for event in (receipt, echo, other, blank, stranger):
        assert hub.parse(signed(genesys, event), settings(genesys)) == []
    for bad in (b'{"id": "x"', b"[]", json.dumps({"id": "x", "type": "Text"}).encode()):
        with pytest.raises(BadRequestError):
            hub.parse(signed(genesys, bad), settings(genesys))


class Copilot(LoopbackServer):
    """The hand-off function's webhook, as far as the adapter answers it (5xx at first)."""

    def __init__(self, genesys: GenesysEmulator, failures: int = 0) -> None:
        super().__init__()
        self.genesys, self.failures, self.events = genesys, failures, []  # type: ignore[var-annotated]
        self.lock = threading.Lock()

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        http = Request(environ)
        copilot = http.path.rsplit("/", 1)[-1]
        hub_settings = settings(self.genesys) if copilot == COPILOT else None
        inbound = InboundRequest(
            "POST", http.path, {k.lower(): v for k, v in http.headers.items()}, http.get_data()
        )
        with self.lock:
            if self.failures:
                self.failures -= 1
                return Response(status=503)(environ, start_response)
        try:
            now = datetime.now(UTC)
            GenesysHub().verify(inbound, hub_settings, self.genesys.secret_value, now)
            if hub_settings is None:
                raise ForbiddenError("no such copilot")
            self.events += GenesysHub().parse(inbound, hub_settings)
        except CopilotError as e:
            return Response(status=e.status)(environ, start_response)
        return Response(status=200)(environ, start_response)


def test_deliveries_are_signed_and_retried_and_tampered_ones_refused(
    genesys: GenesysEmulator,
) -> None:
    started(genesys)
    session = genesys.session(CID)
    with Copilot(genesys, failures=2) as copilot:
        genesys.webhook_url = copilot.url
        response = genesys.say(CID, "Hello from Genesys")
        assert response.status_code == 200  # on the third try
        assert [e.text for e in copilot.events] == ["Hello from Genesys"]
        assert genesys.typing(CID).status_code == 200
        assert genesys.end(CID).status_code == 204  # no wire event: the desk shows it only
        for tampered in genesys.tampered(session, genesys.event(session, "message", text="x")):
            assert tampered.response.status_code == tampered.status, tampered.what
        assert [e.kind for e in copilot.events] == ["agent_message", "agent_typing"]
    agents = [p for p in session.hub["participants"] if p["purpose"] == "agent"]
    assert [(a["name"], a["state"]) for a in agents] == [("Alex", "disconnected")]
