"""The Amazon Connect hub against its emulator over loopback HTTP: the adapter's botocore calls
(start with the context in Connect's own fields, messages, end, token renewal, errors) and the
SNS side (signatures, certificate hosts, topic, subscription confirmation, each chat item)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from werkzeug.wrappers import Request, Response

from copilot.errors import CopilotError, ForbiddenError, HubRejectedError, HubUnavailableError
from copilot.handoff.hubs.connect import (
    ATTRIBUTES_BYTES,
    MESSAGE_CHARS,
    ConnectHub,
    attributes,
    handoff_note,
)
from copilot.handoff.models import (
    ConnectHubSettings,
    HandoffContext,
    HubCommand,
    HubEvent,
    HubReceipt,
    TranscriptEntry,
)
from copilot.ports import InboundRequest
from copilot_dev.emulators import LoopbackServer
from copilot_dev.emulators.connect import ConnectEmulator
from copilot_dev.emulators.desk import DeskSession
from tests.hub_commands import handoff_context

COPILOT = "c0ffee00c0ffee00c0ffee00c0ffee00"


class Copilot(LoopbackServer):
    """The copilot's webhook, as the hand-off function runs it: the adapter's verify, then
    parse; an unknown copilot is verified without settings and refused (inbound.receive)."""

    def __init__(self, hub: ConnectHub) -> None:
        super().__init__()
        self.adapter = hub
        self.hubs: dict[str, ConnectHubSettings] = {}
        self.events: list[HubEvent] = []

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        inbound = InboundRequest(
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=request.get_data(),
        )
        hub = self.hubs.get(request.path.rsplit("/", 1)[-1])
        try:
            self.adapter.verify(inbound, hub, "", datetime.now(UTC))
            if hub is None:
                raise ForbiddenError("the signature does not match")
            events = self.adapter.parse(inbound, hub)
        except CopilotError as e:
            return Response(e.message, status=e.status)(environ, start_response)
        self.events += events
        body = json.dumps([e.model_dump(mode="json") for e in events])
        return Response(body, mimetype="application/json")(environ, start_response)


@pytest.fixture(scope="module")
def desk() -> Iterator[ConnectEmulator]:
    with ConnectEmulator() as running:
        running.access_key = running.secret_key = "test"  # tests/conftest.py's AWS key
        yield running


@pytest.fixture(scope="module")
def adapter(desk: ConnectEmulator) -> ConnectHub:
    hosts = desk.stack_env()["COPILOT_SNS_CERT_HOSTS"]
    return ConnectHub(timeout=5, extra_cert_hosts=(hosts,))


@pytest.fixture(scope="module")
def copilot(desk: ConnectEmulator, adapter: ConnectHub) -> Iterator[Copilot]:
    with Copilot(adapter) as running:
        desk.webhook_url = running.url
        running.hubs[COPILOT] = ConnectHubSettings.model_validate(desk.hub_settings(queue="q1"))
        desk.connect_copilot(COPILOT)
        yield running


@pytest.fixture()
def hub(copilot: Copilot) -> ConnectHubSettings:
    return copilot.hubs[COPILOT]


def context(**fields: Any) -> HandoffContext:
    values: dict[str, Any] = {
        "language": "en",
        "last_topic": "Billing",
        "topics": ["Greeting", "Billing"],
        "last_phrases": "I was charged twice",
        "phrases": ["hi", "I was charged twice"],
        "agent_message": "VIP customer",
        "variables": {"name": "Ann", "plan gold": "yes"},
        "summary": "Ann was charged twice for her order.",
        "unanswered_questions": ["Why twice?"],
        "queue": "billing",
        "skill": "refunds",
    }
    return handoff_context(fields.pop("conversation_id", "conv-1"), COPILOT, **(values | fields))


def entry(seq: int, role: str, text: str) -> TranscriptEntry:
    return TranscriptEntry(seq=seq, role=role, text=text, created_at=datetime.now(UTC))  # type: ignore[arg-type]


def start(conversation: str, **fields: Any) -> HubCommand:
    return HubCommand(
        kind="start",
        event_id=f"{conversation}:5",
        sequence=5,
        conversation_id=conversation,
        copilot_id=COPILOT,
        handoff_id=f"h-{conversation}",
        context=context(conversation_id=conversation),
        transcript=[entry(1, "customer", "hi"), entry(2, "copilot", "Hello! How can I help?")],
        **fields,
    )


def command(kind: str, receipt: HubReceipt, seq: int, text: str | None = None) -> HubCommand:
    return HubCommand(
        kind=kind,  # type: ignore[arg-type]
        event_id=f"{receipt.hub_conversation_id}:{seq}",
        sequence=seq,
        conversation_id="conv",
        copilot_id=COPILOT,
        handoff_id="h",
        text=text,
        receipt=receipt,
    )


def started(
    desk: ConnectEmulator, adapter: ConnectHub, hub: ConnectHubSettings, conversation: str
) -> tuple[HubReceipt, DeskSession]:
    receipt = adapter.send(hub, "", start(conversation))
    assert receipt is not None
    return receipt, desk.session(receipt.hub_conversation_id)


# --- outbound ---------------------------------------------------------------------------------


def test_a_start_carries_the_context_in_connects_own_fields(
    desk: ConnectEmulator, adapter: ConnectHub, hub: ConnectHubSettings
) -> None:
    receipt, session = started(desk, adapter, hub, "conv-start")
    assert session.conversation_id == "conv-start"
    assert session.copilot_id == COPILOT
    assert session.context["va_LastTopic"] == "Billing"
    assert session.context["va_AgentMessage"] == "VIP customer"
    assert session.context["va_BotName"] == "Northwind"
    assert session.context["va_Phrases"] == ["hi", "I was charged twice"]
    assert session.context["name"] == "Ann"
    assert session.context["plan_gold"] == "yes"  # an attribute key is [A-Za-z0-9_-]
    assert session.summary_text == "Ann was charged twice for her order."
    assert session.unanswered_questions == ["Why twice?"]
    assert session.routing == {"queue": "billing", "skill": "refunds"}
    assert session.transcript == [
        {"from": {"role": "user"}, "text": "hi"},
        {"from": {"role": "bot"}, "text": "Hello! How can I help?"},
    ]
    chat = session.initiate["StartChatContact"]
    assert chat["ClientToken"] == "conv-start:5"
    assert chat["ParticipantDetails"] == {"DisplayName": "Ann"}
    assert chat["InitialMessage"]["Content"] == "Ann was charged twice for her order."
    # The agent sees the conversation before the hand-off in the chat (markdown), which is
    # not a customer message.
    assert "Customer: hi" in session.initiate["notes"][0]
    assert session.customer == []
    assert receipt.hub_conversation_id == session.handoff_id
    assert set(receipt.state) >= {"ContactId", "ParticipantToken", "ConnectionToken", "StreamingId"}


def test_a_retried_start_opens_no_second_contact(
    desk: ConnectEmulator, adapter: ConnectHub, hub: ConnectHubSettings
) -> None:
    before = desk.duplicates
    first = adapter.send(hub, "", start("conv-retry"))
    again = adapter.send(hub, "", start("conv-retry"))
    assert first is not None and again is not None
    assert again.hub_conversation_id == first.hub_conversation_id
    assert desk.duplicates >= before + 3  # the chat, the streaming and the note: one each
    assert len([s for s in desk.sessions() if s.conversation_id == "conv-retry"]) == 1


def test_customer_messages_arrive_once_in_order_and_the_end_disconnects(
    desk: ConnectEmulator, adapter: ConnectHub, hub: ConnectHubSettings
) -> None:
    receipt, session = started(desk, adapter, hub, "conv-messages")
    long = "x" * (MESSAGE_CHARS + 10)
    for seq, text in enumerate(["first", "second", long], start=6):
        assert adapter.send(hub, "", command("message", receipt, seq, text)) is None
    adapter.send(hub, "", command("message", receipt, 7, "second"))  # the outbox retrying
    assert session.customer_texts == ["first", "second", "x" * MESSAGE_CHARS, "x" * 10]
    adapter.send(hub, "", command("end", receipt, 9))
    assert session.status == "ended"


def test_an_expired_connection_token_is_renewed_and_nothing_is_lost(
    desk: ConnectEmulator, adapter: ConnectHub, hub: ConnectHubSettings
) -> None:
    receipt, session = started(desk, adapter, hub, "conv-expiry")
    desk.expire_tokens()
    renewed = adapter.send(hub, "", command("message", receipt, 6, "after expiry"))
    assert renewed is not None
    assert renewed.hub_conversation_id == receipt.hub_conversation_id
    assert renewed.state["ConnectionToken"] != receipt.state["ConnectionToken"]
    assert renewed.state["ParticipantToken"] == receipt.state["ParticipantToken"]
    assert (
        adapter.send(
            hub, "", command("message", receipt.model_copy(update=renewed.model_dump()), 7, "next")
        )
        is None
    )
    assert session.customer_texts == ["after expiry", "next"]
    statuses = [r.status for r in desk.requests if r.path == "/participant/message"]
    assert 403 in statuses


def test_a_connection_token_about_to_expire_is_renewed_before_the_call(
    desk: ConnectEmulator, adapter: ConnectHub, hub: ConnectHubSettings
) -> None:
    receipt, session = started(desk, adapter, hub, "conv-expiring")
    soon = receipt.model_copy(
        update={"state": {**receipt.state, "ConnectionExpiry": "2020-01-01T00:00:00.000Z"}}
    )
    refused = sum(r.status == 403 for r in desk.requests)
    renewed = adapter.send(hub, "", command("message", soon, 6, "just in time"))
    assert renewed is not None
    assert renewed.state["ConnectionToken"] != receipt.state["ConnectionToken"]
    assert renewed.state["ConnectionExpiry"] > "2020"
    assert sum(r.status == 403 for r in desk.requests) == refused  # renewed before, not after
    assert session.customer_texts == ["just in time"]


def test_an_outage_is_retried_later_and_a_refusal_is_final(
    desk: ConnectEmulator, adapter: ConnectHub, hub: ConnectHubSettings
) -> None:
    receipt, session = started(desk, adapter, hub, "conv-outage")
    desk.fail_with = 503
    try:
        with pytest.raises(HubUnavailableError):
            adapter.send(hub, "", command("message", receipt, 6, "during the outage"))
        with pytest.raises(HubUnavailableError):
            adapter.send(hub, "", start("conv-outage-2"))
    finally:
        desk.fail_with = None
    adapter.send(hub, "", command("message", receipt, 6, "during the outage"))
    assert session.customer_texts == ["during the outage"]
    wrong_flow = hub.model_copy(update={"contact_flow_id": "0" * 8 + "-0000-0000-0000-" + "0" * 12})
    with pytest.raises(HubRejectedError) as refused:
        adapter.send(wrong_flow, "", start("conv-refused"))
    assert refused.value.reason == "ResourceNotFoundException"


def test_connect_calls_are_sigv4_signed_with_the_functions_key(
    desk: ConnectEmulator, adapter: ConnectHub, hub: ConnectHubSettings
) -> None:
    desk.secret_key = "another-secret"
    try:
        with pytest.raises(HubRejectedError) as refused:
            adapter.send(hub, "", start("conv-badkey"))
    finally:
        desk.secret_key = "test"
    assert refused.value.reason == "InvalidSignatureException"


def test_attributes_stay_within_connects_32_kb_keeping_the_newest_transcript() -> None:
    lines = [entry(n, "customer", f"{n}:" + "é" * 900) for n in range(1, 80)]
    cmd = start("conv-big").model_copy(update={"transcript": lines})
    attrs = attributes(cmd)
    size = sum(len(k.encode()) + len(v.encode()) for k, v in attrs.items())
    assert size <= ATTRIBUTES_BYTES
    kept = json.loads(attrs["copilot_transcript"])
    assert kept[-1]["text"].startswith("79:") and len(kept) < 79
    assert json.loads(attrs["va_Topics"]) == ["Greeting", "Billing"]
    assert attrs["va_ConversationId"] == "conv-big"
    notes = handoff_note(context(), lines)
    assert all(len(n) <= MESSAGE_CHARS for n in notes) and "(earlier messages left out)" in notes[0]


# --- inbound: SNS -------------------------------------------------------------------------------


def test_the_copilot_confirmed_its_subscription_and_caches_the_certificate(
    desk: ConnectEmulator, adapter: ConnectHub, hub: ConnectHubSettings, copilot: Copilot
) -> None:
    confirmed = [r for r in desk.requests if r.path == "/" and r.method == "GET"]
    assert [r.status for r in confirmed] == [200]
    subscribed = [s for s in desk._subscriptions if s.endpoint.endswith(COPILOT)]
    assert subscribed and all(s.confirmed for s in subscribed)
    _, session = started(desk, adapter, hub, "conv-cert")
    desk.join(session.handoff_id)
    desk.say(session.handoff_id, "hi")
    certificates = [r for r in desk.requests if r.path.endswith(".pem")]
    assert len(certificates) == 1  # fetched once per process


def test_each_agent_action_arrives_as_its_event(
    desk: ConnectEmulator, adapter: ConnectHub, hub: ConnectHubSettings, copilot: Copilot
) -> None:
    receipt, session = started(desk, adapter, hub, "conv-agent")
    for act in (
        lambda: desk.join(session.handoff_id),
        lambda: desk.typing(session.handoff_id),
        lambda: desk.say(session.handoff_id, "Hello Ann, I'm Alex."),
        lambda: desk.leave(session.handoff_id),
        lambda: desk.end(session.handoff_id),
    ):
        response = act()
        assert response.status_code == 200, response.text
    events = [e for e in copilot.events if e.hub_conversation_id == receipt.hub_conversation_id]
    assert [e.kind for e in events] == [
        "agent_joined",
        "agent_typing",
        "agent_message",
        "agent_left",
        "ended",
    ]
    assert events[0].agent is not None and events[0].agent.name == "Alex"
    assert events[2].text == "Hello Ann, I'm Alex."
    assert all(e.sequence is None and e.conversation_id is None for e in events)


def test_a_redelivery_carries_the_same_event_id(
    desk: ConnectEmulator, adapter: ConnectHub, hub: ConnectHubSettings
) -> None:
    _, session = started(desk, adapter, hub, "conv-redeliver")
    event = desk.event(session, "message", text="once")
    first, second = desk.replayed(session, event)
    ids = [json.loads(r.text)[0]["event_id"] for r in (first, second)]
    assert ids[0] == ids[1] == json.loads(event["Message"])["Id"]
    sha1 = desk.deliver(session, desk.sign(event, version="1"), signed=False)
    assert sha1.status_code == 200 and json.loads(sha1.text)[0]["event_id"] == ids[0]


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"role": "CUSTOMER"}, "the customer's own message, echoed"),
        ({"visibility": "AGENT"}, "for the agent only (a whisper)"),
        ({"role": "SYSTEM"}, "a flow prompt"),
        (
            {"content_type": "application/vnd.amazonaws.connect.event.transfer.succeeded"},
            "transfer",
        ),
    ],
)
def test_items_of_no_interest_are_taken_and_ignored(
    desk: ConnectEmulator,
    adapter: ConnectHub,
    hub: ConnectHubSettings,
    fields: dict[str, str],
    why: str,
) -> None:
    _, session = started(desk, adapter, hub, f"conv-ignore-{len(why)}")
    kind = "joined" if "content_type" in fields else "message"
    response = desk.deliver(session, desk.event(session, kind, text="hidden", **fields))
    assert response.status_code == 200 and json.loads(response.text) == [], why


def test_tampered_deliveries_get_the_sns_schemes_answers(
    desk: ConnectEmulator, adapter: ConnectHub, hub: ConnectHubSettings, copilot: Copilot
) -> None:
    _, session = started(desk, adapter, hub, "conv-tampered")
    before = len(copilot.events)
    for bad in desk.tampered(session, desk.event(session, "message", text="forged")):
        assert bad.response.status_code == bad.status, (bad.what, bad.response.text)
    assert len(copilot.events) == before


def test_certificate_and_subscribe_hosts(adapter: ConnectHub) -> None:
    ok = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem"
    assert adapter.allowed(ok, pem=True)
    assert adapter.allowed("https://sns.cn-north-1.amazonaws.com.cn/x.pem", pem=True)
    for bad in (
        "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem",  # not https
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.txt",  # not .pem
        "https://sns.eu-west-1.amazonaws.com.evil.example/x.pem",
        "https://evil.example@sns.eu-west-1.amazonaws.com/x.pem",  # userinfo
        "https://sns.eu-west-1.amazonaws.com:8443/x.pem",
        "http://127.0.0.1:1/x.pem",  # a local host not in the allow-list
    ):
        assert not adapter.allowed(bad, pem=True), bad
    assert not ConnectHub().allowed(ok.replace("https", "http"), pem=True)


def test_a_subscribe_url_off_the_sns_hosts_is_not_fetched(
    desk: ConnectEmulator, adapter: ConnectHub, copilot: Copilot
) -> None:
    """SSRF guard: a signed confirmation naming another host is refused without a GET."""
    sub = desk._subscriptions[0]
    message = desk.sign(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "m-1",
            "Token": "t",
            "TopicArn": sub.topic_arn,
            "Message": "confirm",
            "SubscribeURL": "http://169.254.169.254/latest/meta-data/",
            "Timestamp": datetime.now(UTC).isoformat(),
        }
    )
    response = desk.http().post(sub.endpoint, data=json.dumps(message), timeout=5)
    assert response.status_code == 403
