"""The LivePerson Connector API adapter against its emulator, over loopback HTTP: the Domain
API, AppJWT and ConsumerJWS, the start's native fields (SDEs, skill, the copilot's first
message), customer messages and the close, token renewal, outages, the webhook signature
(with LivePerson's own test vector) and the parsing of each notification."""

from __future__ import annotations

import json
import threading
import time
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
from copilot.handoff.hubs.fields import context_message
from copilot.handoff.hubs.liveperson import LivePersonHub
from copilot.handoff.models import (
    HandoffContext,
    HubCommand,
    HubEvent,
    HubReceipt,
    LivePersonHubSettings,
    TranscriptEntry,
)
from copilot.ports import InboundRequest
from copilot_dev.emulators import LoopbackServer
from copilot_dev.emulators.liveperson import LivePersonEmulator
from tests.hub_commands import handoff_context, hub_command

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
CID, HID, COPILOT = "c0nv", "h4nd", "cop1"


@pytest.fixture
def lp() -> Iterator[LivePersonEmulator]:
    with LivePersonEmulator() as emulator:
        yield emulator


def settings(emulator: LivePersonEmulator, **fields: Any) -> LivePersonHubSettings:
    hub = emulator.hub_settings(queue="bikes", skill="repairs", **fields)
    return LivePersonHubSettings.model_validate(hub)


def context(**fields: Any) -> HandoffContext:
    values: dict[str, Any] = {
        "language": "en-US",
        "last_topic": "Repairs",
        "phrases": ["my chain snapped", "talk to a person"],
        "agent_message": "Loyal customer",
        "variables": {"name": "Ann", "tier": "gold"},
        "summary": "The chain snapped;\nthe customer wants a repair.",
        "unanswered_questions": ["Can you fix it today?"],
        "queue": "bikes",
        "skill": "repairs",
    }
    return handoff_context(CID, COPILOT, **(values | fields))


def command(kind: str, seq: int, **fields: Any) -> HubCommand:
    return hub_command(kind, seq, CID, COPILOT, HID, **fields)


def transcript() -> list[TranscriptEntry]:
    at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    return [
        TranscriptEntry(seq=1, role="customer", text="my chain\nsnapped", created_at=at),
        TranscriptEntry(seq=2, role="copilot", text="Sorry to hear that!", created_at=at),
    ]


def start(hub: LivePersonHub, lp: LivePersonEmulator) -> HubReceipt:
    receipt = hub.send(
        settings(lp),
        lp.secret_value,
        command("start", 3, context=context(), transcript=transcript()),
    )
    assert receipt is not None
    return receipt


def test_start_carries_the_context_in_livepersons_own_fields(lp: LivePersonEmulator) -> None:
    hub = LivePersonHub(timeout=5)
    receipt = start(hub, lp)
    session = lp.session(CID)
    assert receipt.hub_conversation_id == session.handoff_id
    assert receipt.state["ext_consumer_id"] == f"{COPILOT}:{CID}"
    assert session.copilot_id == COPILOT
    assert session.context["va_ConversationId"] == CID
    assert session.context["va_LastTopic"] == "Repairs"
    assert session.context["va_AgentMessage"] == "Loyal customer"
    assert session.context["va_BotName"] == "Northwind"
    assert session.context["va_Phrases"] == ["my chain snapped", "talk to a person"]
    assert session.context["va_Language"] == "en-US"
    assert session.context["name"] == "Ann" and session.context["tier"] == "gold"
    assert session.summary_text == "The chain snapped; the customer wants a repair."
    assert session.unanswered_questions == ["Can you fix it today?"]
    assert session.routing == {"queue": "bikes", "skill": "repairs"}
    assert session.transcript == [
        {"from": {"role": "user"}, "text": "my chain snapped"},
        {"from": {"role": "bot"}, "text": "Sorry to hear that!"},
    ]
    profile, ask, first = session.initiate["conversation"]
    sdes = {s["type"]: s for s in profile["body"]["authenticatedData"]["lp_sdes"]}
    assert sdes["ctmrinfo"]["info"] == {"customerId": CID, "ctype": "gold", "userName": "Ann"}
    assert sdes["personal"]["personal"]["firstname"] == "Ann"
    assert ask["body"]["skillId"] == lp.skill("repairs")
    assert ask["body"]["channelType"] == "MESSAGING" and ask["body"]["brandId"] == lp.account_id
    assert first["body"]["event"]["message"].startswith("[Copilot hand-off: summary by Northwind")
    # The domain lookup, one AppJWT and one ConsumerJWS, then CONVERSATION.
    paths = [r.path for r in lp.requests]
    assert paths[0].endswith("/service/baseURI.json") and paths[-1].endswith("/conversation")
    assert sum(p.endswith("/app/token") for p in paths) == 1


def test_a_retried_start_in_the_same_process_opens_no_second_conversation(
    lp: LivePersonEmulator,
) -> None:
    hub = LivePersonHub(timeout=5)
    first, again = start(hub, lp), start(hub, lp)
    assert first == again and len(lp.sessions()) == 1


def test_messages_and_the_close_go_to_the_conversation_as_its_consumer(
    lp: LivePersonEmulator,
) -> None:
    hub = LivePersonHub(timeout=5)
    receipt = start(hub, lp)
    for seq, text in ((4, "hello"), (5, "anyone?")):
        sent = hub.send(
            settings(lp), lp.secret_value, command("message", seq, text=text, receipt=receipt)
        )
        assert sent is None  # nothing renewed
    assert lp.session(CID).customer_texts == ["hello", "anyone?"]
    # The first message (the summary) took sequence 0: the customer's are 1 and 2.
    assert [m["sequence"] for m in lp.session(CID).customer] == [1, 2]
    assert hub.send(settings(lp), lp.secret_value, command("end", 6, receipt=receipt)) is None
    assert lp.session(CID).status == "ended"
    with pytest.raises(HubRejectedError):  # closed: LivePerson refuses more
        hub.send(settings(lp), lp.secret_value, command("message", 7, text="x", receipt=receipt))


def test_expired_tokens_are_renewed_and_the_message_sent_once(lp: LivePersonEmulator) -> None:
    hub = LivePersonHub(timeout=5)
    receipt = start(hub, lp)
    lp.expire_tokens()
    renewed = hub.send(
        settings(lp), lp.secret_value, command("message", 4, text="still there?", receipt=receipt)
    )
    assert renewed is not None and renewed.hub_conversation_id == receipt.hub_conversation_id
    assert renewed.state["consumer_jws"] != receipt.state["consumer_jws"]
    assert lp.session(CID).customer_texts == ["still there?"]
    # 401 (AppJWT), renewed; 401 (ConsumerJWS), renewed; then sent.
    sends = [r.status for r in lp.requests if r.path.endswith("/send")]
    assert sends == [401, 401, 200]
    again = hub.send(
        settings(lp), lp.secret_value, command("message", 5, text="hi", receipt=renewed)
    )
    assert again is None


def test_outages_and_refusals_map_to_the_outboxs_errors(lp: LivePersonEmulator) -> None:
    hub = LivePersonHub(timeout=5)
    receipt = start(hub, lp)
    lp.fail_with = 503
    with pytest.raises(HubUnavailableError):
        hub.send(settings(lp), lp.secret_value, command("message", 4, text="x", receipt=receipt))
    lp.fail_with = None
    with pytest.raises(HubRejectedError):  # no such conversation: 400
        gone = receipt.model_copy(update={"hub_conversation_id": "nope"})
        hub.send(settings(lp), lp.secret_value, command("message", 4, text="x", receipt=gone))
    wrong = json.dumps({"client_id": lp.client_id, "client_secret": "wrong"})
    with pytest.raises(HubUnavailableError):  # sentinel refuses: our configuration, retried
        LivePersonHub(timeout=5).send(settings(lp), wrong, command("start", 3, context=context()))
    assert lp.session(CID).customer_texts == []


def test_the_context_message_keeps_under_its_limit_dropping_the_oldest_lines() -> None:
    at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    lines = [
        TranscriptEntry(seq=i, role="customer", text=f"line {i} " + "x" * 200, created_at=at)
        for i in range(100)
    ]
    text = context_message(context(), lines)
    assert len(text) <= 8000 and "line 99" in text and "line 0 " not in text


# --- webhooks -------------------------------------------------------------------------------

# LivePerson's own test vector (lp-demo-app-connector-api test/notifications.test.js).
VECTOR_SECRET = "rl9hacst6kqilbofup64n11ga3"
VECTOR_BODY = (
    b'{"kind":"notification","body":{"changes":[{"originatorId":"2969e404f3be1c8cdda63f0b72d205a'
    b'b5afb3fe3e3d7d72ab58245f564fdfd91","originatorMetadata":{"id":"2969e404f3be1c8cdda63f0b72d'
    b'205ab5afb3fe3e3d7d72ab58245f564fdfd91","role":"CONSUMER"},"event":{"type":"ChatStateEvent",'
    b'"chatState":"PAUSE"},"conversationId":"b8b83fe9-75f0-46f2-baaa-2930f7192cfb","dialogId":"b8'
    b'b83fe9-75f0-46f2-baaa-2930f7192cfb"}]},"type":"ms.MessagingEventNotification"}'
)


def inbound(body: bytes, headers: dict[str, str]) -> InboundRequest:
    return InboundRequest(
        "POST", "/hooks/liveperson/x", {k.lower(): v for k, v in headers.items()}, body
    )


def test_livepersons_test_vector_verifies_and_tampering_is_refused() -> None:
    hub = LivePersonHub()
    secret = json.dumps(
        {"client_id": "81fad476-88af-4d08-bc0e-20bc69439ed4", "client_secret": VECTOR_SECRET}
    )
    vector = LivePersonHubSettings(type="liveperson", account_id="42257269", secret_ref="LP")
    good = {
        "x-liveperson-account-id": "42257269",
        "x-liveperson-client-id": "81fad476-88af-4d08-bc0e-20bc69439ed4",
        "x-liveperson-signature": "sha1=e/TfS0wv1HbvEsMqcBMmFLcMslI=",
    }
    hub.verify(inbound(VECTOR_BODY, good), vector, secret, NOW)
    assert hub.parse(inbound(VECTOR_BODY, good), vector) == []  # the consumer pausing: nothing
    cases: list[tuple[dict[str, str], bytes, type[CopilotError]]] = [
        (
            {**good, "x-liveperson-signature": "sha1=AAAAAAAAAAAAAAAAAAAAAAAAAAA="},
            VECTOR_BODY,
            ForbiddenError,
        ),
        ({k: v for k, v in good.items() if "signature" not in k}, VECTOR_BODY, UnauthorizedError),
        (
            {**good, "x-liveperson-signature": "md5=e/TfS0wv1HbvEsMqcBMmFLcMslI="},
            VECTOR_BODY,
            ForbiddenError,
        ),
        (
            {**good, "x-liveperson-signature": "e/TfS0wv1HbvEsMqcBMmFLcMslI="},
            VECTOR_BODY,
            ForbiddenError,
        ),
        ({**good, "x-liveperson-account-id": "1"}, VECTOR_BODY, ForbiddenError),
        ({**good, "x-liveperson-client-id": "other"}, VECTOR_BODY, ForbiddenError),
        (good, VECTOR_BODY + b" ", ForbiddenError),
    ]
    for headers, body, error in cases:
        with pytest.raises(error):
            hub.verify(inbound(body, headers), vector, secret, NOW)
    with pytest.raises(ForbiddenError):  # no such copilot: as a wrong signature
        hub.verify(inbound(VECTOR_BODY, good), None, "random", NOW)
    with pytest.raises(UnauthorizedError):
        hub.verify(inbound(VECTOR_BODY, {}), None, "random", NOW)


def test_sha256_signatures_are_accepted_too(lp: LivePersonEmulator) -> None:
    from copilot.handoff.hubs.signatures import signature_header

    headers = {
        **lp.signed(VECTOR_BODY),
        "x-liveperson-signature": signature_header(lp.client_secret, VECTOR_BODY, "sha256"),
    }
    LivePersonHub().verify(inbound(VECTOR_BODY, headers), settings(lp), lp.secret_value, NOW)


def parsed(lp: LivePersonEmulator, event: dict[str, Any]) -> list[HubEvent]:
    body = json.dumps(event, separators=(",", ":")).encode()
    request = inbound(body, lp.signed(body))
    hub = LivePersonHub()
    hub.verify(request, settings(lp), lp.secret_value, NOW)
    return hub.parse(request, settings(lp))


def test_each_notification_becomes_its_neutral_event(lp: LivePersonEmulator) -> None:
    start(LivePersonHub(timeout=5), lp)
    session = lp.session(CID)
    conv = session.handoff_id
    joined = parsed(lp, lp.event(session, "joined"))
    assert [(e.kind, e.hub_conversation_id, e.sequence) for e in joined] == [
        ("agent_joined", conv, None)
    ]
    assert joined[0].agent is not None and joined[0].agent.id
    typing = parsed(lp, lp.event(session, "typing"))
    assert [(e.kind, e.sequence) for e in typing] == [("agent_typing", None)]
    said = parsed(lp, lp.event(session, "message", text="Hello from the Agent\n"))
    # The summary took LivePerson's sequence 0: the agent's first message is 1.
    assert [(e.kind, e.text, e.sequence, e.event_id) for e in said] == [
        ("agent_message", "Hello from the Agent", 1, f"ms:{conv}:1")
    ]
    left = parsed(lp, lp.event(session, "left"))
    assert [e.kind for e in left] == ["agent_left"]
    ended = parsed(lp, lp.event(session, "ended"))
    assert [(e.kind, e.reason) for e in ended] == [("ended", "AGENT")]
    # A retried delivery is byte-identical: the same event ids.
    event = lp.event(session, "typing")
    assert parsed(lp, event)[0].event_id == parsed(lp, event)[0].event_id


def test_the_consumers_echoes_and_read_receipts_only_take_their_place(
    lp: LivePersonEmulator,
) -> None:
    start(LivePersonHub(timeout=5), lp)
    session = lp.session(CID)
    echo = lp.event(session, "message", text="mine")
    change = echo["body"]["changes"][0]
    change["originatorMetadata"]["role"] = "CONSUMER"
    assert [(e.kind, e.sequence) for e in parsed(lp, echo)] == [("noop", change["sequence"])]
    receipt = {
        **echo,
        "body": {
            "changes": [
                {
                    **change,
                    "event": {"type": "AcceptStatusEvent", "status": "READ", "sequenceList": [0]},
                    "originatorMetadata": {"id": "a", "role": "ASSIGNED_AGENT"},
                }
            ]
        },
    }
    assert [e.kind for e in parsed(lp, receipt)] == ["noop"]
    rich = {
        **echo,
        "body": {
            "changes": [
                {
                    **change,
                    "originatorMetadata": {"id": "a", "role": "ASSIGNED_AGENT"},
                    "event": {
                        "type": "RichContentEvent",
                        "content": {
                            "type": "vertical",
                            "elements": [
                                {"type": "text", "text": "Pick a slot"},
                                {"type": "button", "title": "9:00"},
                            ],
                        },
                    },
                }
            ]
        },
    }
    assert [(e.kind, e.text) for e in parsed(lp, rich)] == [("agent_message", "Pick a slot")]
    opened = lp.event(session, "left")  # as the start's own change: no agent, not updated
    opened["body"]["changes"][0]["result"]["conversationDetails"]["metaDataLastUpdateTs"] = (
        session.hub["start_ts"]
    )
    assert parsed(lp, opened) == []
    other = {"kind": "notification", "type": "ms.SomethingNew", "body": {"changes": [{}]}}
    assert parsed(lp, other) == []
    for bad in (
        b'{"kind":"notification"',
        b"[]",
        b'{"type":"cqm.ExConversationChangeNotification"}',
    ):
        with pytest.raises(BadRequestError):
            LivePersonHub().parse(inbound(bad, {}), settings(lp))


class Copilot(LoopbackServer):
    """The hand-off function's webhook, as far as the adapter answers it (5xx at first)."""

    def __init__(self, lp: LivePersonEmulator, failures: int = 0) -> None:
        super().__init__()
        self.lp, self.failures = lp, failures
        self.events: list[HubEvent] = []
        self.lock = threading.Lock()

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        http = Request(environ)
        copilot = http.path.rsplit("/", 1)[-1]
        hub = settings(self.lp) if copilot == COPILOT else None
        request = inbound(http.get_data(), dict(http.headers.items()))
        with self.lock:
            if self.failures:
                self.failures -= 1
                return Response(status=503)(environ, start_response)
        try:
            LivePersonHub().verify(request, hub, self.lp.secret_value, NOW)
            assert hub is not None
            events = LivePersonHub().parse(request, hub)
        except CopilotError as e:
            return Response(status=e.status)(environ, start_response)
        with self.lock:
            self.events += events
        return Response(status=200)(environ, start_response)


def test_deliveries_are_signed_retried_and_echoed_and_tampered_ones_refused(
    lp: LivePersonEmulator,
) -> None:
    with Copilot(lp, failures=2) as copilot:
        lp.webhook_url = copilot.url
        receipt = start(LivePersonHub(timeout=5), lp)
        assert lp.say(CID, "Hello from LivePerson").status_code == 200  # joins, then says
        assert lp.typing(CID).status_code == 200
        LivePersonHub(timeout=5).send(
            settings(lp), lp.secret_value, command("message", 4, text="hi", receipt=receipt)
        )
        assert lp.end(CID).status_code == 200
        session = lp.session(CID)
        for tampered in lp.tampered(session, lp.event(session, "typing")):
            assert tampered.response.status_code == tampered.status, tampered.what
        deadline = time.time() + 10
        while len(copilot.events) < 6 and time.time() < deadline:
            time.sleep(0.05)  # the open and the consumer's echoes come in the background
    kinds = sorted((e.kind, e.sequence) for e in copilot.events if e.sequence is not None)
    assert kinds == [
        ("agent_message", 1),
        ("noop", 0),  # the summary's echo (number 0: already taken on our side)
        ("noop", 2),  # the customer's "hi"
    ], kinds
    others = sorted(e.kind for e in copilot.events if e.sequence is None)
    assert others == ["agent_joined", "agent_typing", "ended"]


def test_a_command_delivered_twice_at_once_is_sent_once_in_order(lp: LivePersonEmulator) -> None:
    # No idempotency key on the Send API: two deliveries of the same outbox at once (the
    # outbox is at-least-once) must not make LivePerson show the customer's words twice.
    hub = LivePersonHub(timeout=5)
    receipt = start(hub, lp)
    commands = [command("message", seq, text=f"m{seq}", receipt=receipt) for seq in (4, 5, 6)]

    def deliver() -> None:
        for c in commands:
            hub.send(settings(lp), lp.secret_value, c)

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert lp.session(CID).customer_texts == ["m4", "m5", "m6"]
    assert [m["sequence"] for m in lp.session(CID).customer] == [1, 2, 3]
