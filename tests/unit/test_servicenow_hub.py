"""The ServiceNow Bot Integration API adapter against its emulator, over loopback HTTP: the
AGENT request's native fields (contextVariables, history), customer messages and the end,
Basic, OAuth and the Message Auth token, token renewal, outages, the credentials ServiceNow
calls us with, and the parsing of each response-endpoint body."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from copilot.errors import (
    BadRequestError,
    ForbiddenError,
    HubRejectedError,
    HubUnavailableError,
    UnauthorizedError,
    UnavailableError,
)
from copilot.handoff.hubs.servicenow import ServiceNowHub
from copilot.handoff.models import (
    HandoffContext,
    HubCommand,
    HubEvent,
    HubReceipt,
    ServiceNowHubSettings,
    TranscriptEntry,
)
from copilot.ports import InboundRequest
from copilot_dev.emulators.servicenow import ServiceNowEmulator
from tests.hub_commands import HookServer, deliver_at_once, handoff_context, hub_command

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
CID, HID, COPILOT = "c0nv", "h4nd", "cop1"


@pytest.fixture
def sn() -> Iterator[ServiceNowEmulator]:
    with ServiceNowEmulator() as emulator:
        emulator.connect_copilot(COPILOT)
        yield emulator


def settings(emulator: ServiceNowEmulator) -> ServiceNowHubSettings:
    hub = emulator.hub_settings(queue="bikes", skill="repairs")
    return ServiceNowHubSettings.model_validate(hub)


def context(**fields: Any) -> HandoffContext:
    values: dict[str, Any] = {
        "language": "en-US",
        "last_topic": "Repairs",
        "phrases": ["my chain snapped", "talk to a person"],
        "agent_message": "Loyal customer",
        "variables": {"name": "Ann", "email": "ann@example.com", "summary": "mine"},
        "summary": "The chain snapped;\nthe customer wants a repair.",
        "unanswered_questions": ["Can you fix it today?"],
        "queue": "bikes",
        "skill": "repairs",
    }
    return handoff_context(CID, COPILOT, **(values | fields))


def command(kind: str, seq: int, handoff: str = HID, **fields: Any) -> HubCommand:
    return hub_command(kind, seq, CID, COPILOT, handoff, **fields)


def transcript() -> list[TranscriptEntry]:
    at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    return [
        TranscriptEntry(seq=1, role="customer", text="my chain\nsnapped", created_at=at),
        TranscriptEntry(seq=2, role="copilot", text="Sorry to hear that!", created_at=at),
        TranscriptEntry(seq=3, role="system", text="(hand-off requested)", created_at=at),
    ]


def start(
    hub: ServiceNowHub,
    sn: ServiceNowEmulator,
    secret: str | None = None,
    handoff: str = HID,
    seq: int = 3,
) -> HubReceipt:
    receipt = hub.send(
        settings(sn),
        secret or sn.secret_value,
        command("start", seq, handoff, context=context(), transcript=transcript()),
    )
    assert receipt is not None
    return receipt


def test_the_agent_request_carries_the_context_in_servicenows_own_fields(
    sn: ServiceNowEmulator,
) -> None:
    receipt = start(ServiceNowHub(timeout=5), sn)
    session = sn.session(CID)
    assert receipt.hub_conversation_id == session.hub["client_session"] == f"{CID}.{HID}"
    assert session.copilot_id == COPILOT
    assert session.context["va_ConversationId"] == CID
    assert session.context["va_LastTopic"] == "Repairs"
    assert session.context["va_AgentMessage"] == "Loyal customer"
    assert session.context["va_BotName"] == "Northwind"
    assert session.context["va_Phrases"] == ["my chain snapped", "talk to a person"]
    assert session.context["name"] == "Ann"
    # Our fields win over a customer variable of the same name.
    assert session.summary_text == "The chain snapped;\nthe customer wants a repair."
    assert session.unanswered_questions == ["Can you fix it today?"]
    assert session.routing == {"queue": "bikes", "skill": "repairs"}
    assert session.transcript == [
        {"from": {"role": "user"}, "text": "my chain\nsnapped"},
        {"from": {"role": "bot"}, "text": "Sorry to hear that!"},
    ]
    sent = session.initiate
    assert sent["action"] == "AGENT" and sent["emailId"] == "ann@example.com"
    assert sent["message"]["text"].startswith("[Copilot hand-off from Northwind] The chain")
    assert sent["message"]["clientMessageId"] == f"{CID}:3"
    assert sent["contextVariables"]["live_agent_only"] == "true"
    assert [h["displayName"] for h in sent["history"]] == ["Ann", "Northwind"]
    assert all(len(h["timestamp"]) == 13 for h in sent["history"])
    # OAuth: one token, then the call.
    assert [(r.path, r.status) for r in sn.requests] == [
        ("/oauth_token.do", 200),
        ("/api/sn_va_as_service/bot/integration", 200),
    ]
    assert sn.session(CID).customer_texts == []  # the opening is not the customer's


def test_messages_and_the_end_go_to_the_session_once(sn: ServiceNowEmulator) -> None:
    hub = ServiceNowHub(timeout=5)
    receipt = start(hub, sn)
    for seq, text in ((4, "hello"), (5, "anyone?")):
        assert (
            hub.send(
                settings(sn), sn.secret_value, command("message", seq, text=text, receipt=receipt)
            )
            is None
        )
    again = command("message", 4, text="hello", receipt=receipt)
    ServiceNowHub(timeout=5).send(settings(sn), sn.secret_value, again)  # another process
    assert sn.duplicates == 1  # the same requestId: ServiceNow's answer again
    session = sn.session(CID)
    assert session.customer_texts == ["hello", "anyone?"]
    assert [m["id"] for m in session.customer] == [f"{CID}:4", f"{CID}:5"]
    assert hub.send(settings(sn), sn.secret_value, command("end", 6, receipt=receipt)) is None
    assert session.status == "ended"
    assert sn.received[-1]["action"] == "END_CONVERSATION"
    assert sn.received[-1]["message"]["text"] == ""


def test_a_second_handoff_of_the_chat_is_another_servicenow_session(
    sn: ServiceNowEmulator,
) -> None:
    hub = ServiceNowHub(timeout=5)
    first = start(hub, sn)
    hub.send(settings(sn), sn.secret_value, command("end", 4, receipt=first))
    second = start(hub, sn, handoff="h2", seq=5)
    assert second.hub_conversation_id != first.hub_conversation_id
    assert len(sn.sessions()) == 2 and sn.session(CID).status == "waiting"
    assert first.state["user_id"] == second.state["user_id"]  # the same customer


def test_basic_auth_and_the_message_auth_token(sn: ServiceNowEmulator) -> None:
    basic = json.dumps(sn.credentials(oauth=False))
    receipt = start(ServiceNowHub(timeout=5), sn, secret=basic)
    assert sn.session(CID).status == "waiting"
    wrong = json.dumps({**sn.credentials(oauth=False), "password": "guessed"})
    with pytest.raises(HubUnavailableError):  # 401: our configuration, retried
        ServiceNowHub(timeout=5).send(
            settings(sn), wrong, command("message", 4, text="x", receipt=receipt)
        )
    no_token = {k: v for k, v in sn.credentials(oauth=False).items() if k != "token"}
    ServiceNowHub(timeout=5).send(
        settings(sn), json.dumps(no_token), command("message", 5, text="lost", receipt=receipt)
    )
    # ServiceNow answers a failed token validation 200 and drops the request [R].
    assert sn.session(CID).customer_texts == [] and len(sn.dropped) == 1


def test_the_message_auth_hash_token_signs_each_request(sn: ServiceNowEmulator) -> None:
    sn.message_token, sn.hash_secret = None, "b2b-secret"
    secret = sn.credentials(oauth=False)
    assert "token" not in secret and secret["hash_secret"] == "b2b-secret"
    hub = ServiceNowHub(timeout=5)
    receipt = start(hub, sn, secret=json.dumps(secret))
    text = "caf\u00e9 \u2615"  # non-ASCII: signed as the UTF-8 JSON ServiceNow reads
    hub.send(settings(sn), json.dumps(secret), command("message", 4, text=text, receipt=receipt))
    assert sn.session(CID).customer_texts == [text] and sn.dropped == []
    forged = json.dumps({**secret, "hash_secret": "guessed"})
    ServiceNowHub(timeout=5).send(
        settings(sn), forged, command("message", 5, text="x", receipt=receipt)
    )
    assert len(sn.dropped) == 1 and sn.session(CID).customer_texts == [text]


def test_expired_tokens_are_renewed_and_the_message_sent_once(sn: ServiceNowEmulator) -> None:
    hub = ServiceNowHub(timeout=5)
    receipt = start(hub, sn)
    sn.expire_tokens()
    sent = hub.send(
        settings(sn), sn.secret_value, command("message", 4, text="still there?", receipt=receipt)
    )
    assert sent is None  # the token lives in the process, not the receipt
    assert sn.session(CID).customer_texts == ["still there?"]
    calls = [(r.path.rsplit("/", 1)[-1], r.status) for r in sn.requests]
    assert calls[-3:] == [("integration", 401), ("oauth_token.do", 200), ("integration", 200)]


def test_outages_refusals_and_bad_secrets(sn: ServiceNowEmulator) -> None:
    hub = ServiceNowHub(timeout=5)
    receipt = start(hub, sn)
    sn.fail_with = 503
    with pytest.raises(HubUnavailableError):
        hub.send(settings(sn), sn.secret_value, command("message", 4, text="x", receipt=receipt))
    sn.fail_with = None
    with pytest.raises(HubRejectedError):  # 400: an empty message
        hub.send(settings(sn), sn.secret_value, command("message", 5, text=" ", receipt=receipt))
    with pytest.raises(HubRejectedError):
        hub.send(settings(sn), sn.secret_value, command("message", 6, text="x"))  # no receipt
    for bad in ("not json", json.dumps({"username": "u"}), json.dumps({"token": "t"})):
        with pytest.raises(UnavailableError):
            hub.send(settings(sn), bad, command("message", 7, text="x", receipt=receipt))
    assert sn.session(CID).customer_texts == []


def test_a_command_delivered_twice_at_once_is_sent_once_in_order(sn: ServiceNowEmulator) -> None:
    hub = ServiceNowHub(timeout=5)
    receipt = start(hub, sn)
    commands = [command("message", seq, text=f"m{seq}", receipt=receipt) for seq in (4, 5, 6)]
    deliver_at_once(lambda c: hub.send(settings(sn), sn.secret_value, c), commands)
    assert sn.session(CID).customer_texts == ["m4", "m5", "m6"]
    assert sn.duplicates == 0


# --- the response endpoint ------------------------------------------------------------------


def inbound(body: bytes, headers: dict[str, str]) -> InboundRequest:
    return InboundRequest(
        "POST", "/hooks/servicenow/x", {k.lower(): v for k, v in headers.items()}, body
    )


def test_servicenows_calls_need_the_credentials_we_issued(sn: ServiceNowEmulator) -> None:
    start(ServiceNowHub(timeout=5), sn)
    body = json.dumps(sn.event(sn.session(CID), "typing")).encode()
    hub, good = ServiceNowHub(), sn.callback_headers()
    hub.verify(inbound(body, good), settings(sn), sn.secret_value, NOW)
    cases: list[tuple[dict[str, str], type[Exception]]] = [
        ({}, UnauthorizedError),
        (sn.callback_headers(password="guessed"), ForbiddenError),
        (sn.callback_headers(token="guessed"), ForbiddenError),
        ({"x-copilot-token": sn.callback_token}, ForbiddenError),  # no Basic
        ({**good, "Authorization": "Basic !!"}, ForbiddenError),
        ({**good, "Authorization": "Bearer " + sn.callback_password}, ForbiddenError),
    ]
    for headers, error in cases:
        with pytest.raises(error):
            hub.verify(inbound(body, headers), settings(sn), sn.secret_value, NOW)
    with pytest.raises(ForbiddenError):  # no such copilot: as wrong credentials
        hub.verify(inbound(body, good), None, "random", NOW)
    with pytest.raises(UnauthorizedError):
        hub.verify(inbound(body, {}), None, "random", NOW)
    # Only a header token issued: Basic is not asked for.
    token_only = json.dumps({"username": "u", "password": "p", "callback_token": sn.callback_token})
    hub.verify(inbound(body, {"x-copilot-token": sn.callback_token}), settings(sn), token_only, NOW)


def parsed(sn: ServiceNowEmulator, event: dict[str, Any]) -> list[HubEvent]:
    body = json.dumps(event).encode()
    request = inbound(body, sn.callback_headers())
    hub = ServiceNowHub()
    hub.verify(request, settings(sn), sn.secret_value, NOW)
    return hub.parse(request, settings(sn))


def test_each_response_body_becomes_its_neutral_events(sn: ServiceNowEmulator) -> None:
    receipt = start(ServiceNowHub(timeout=5), sn)
    session = sn.session(CID)
    conv = receipt.hub_conversation_id
    queued = parsed(sn, sn.event(session, "queued", message="You are number 3.", wait="4 Minutes"))
    assert [(e.kind, e.text, e.hub_conversation_id) for e in queued] == [
        ("queued", "You are number 3. Estimated wait: 4 Minutes.", conv)
    ]
    joined = parsed(sn, sn.event(session, "joined", agent="Beth Anglin"))
    assert [(e.kind, e.agent.name if e.agent else None) for e in joined] == [
        ("agent_joined", "Beth Anglin")
    ]
    typing = parsed(sn, sn.event(session, "typing"))
    assert [e.kind for e in typing] == ["agent_typing"]
    said = sn.event(session, "message", agent="Beth Anglin", text="Hi, I'm Beth\n")
    events = parsed(sn, said)
    assert [(e.kind, e.text, e.sequence) for e in events] == [
        ("agent_message", "Hi, I'm Beth", None)
    ]
    assert events[0].event_id == f"sn:{said['body'][0]['messageId']}"
    assert events[0].agent is not None and events[0].agent.name == "Beth Anglin"
    assert parsed(sn, said)[0].event_id == events[0].event_id  # a retry: the same id
    ended = parsed(sn, sn.event(session, "ended"))
    assert [(e.kind, e.event_id) for e in ended] == [("ended", f"sn:{conv}:ended")]
    completed = {**sn.event(session, "EndSpinner"), "completed": True}
    assert [(e.kind, e.event_id) for e in parsed(sn, completed)] == [("ended", f"sn:{conv}:ended")]
    back = {**sn.event(session, "EndSpinner"), "takeControl": True}
    assert [(e.kind, e.reason) for e in parsed(sn, back)] == [("ended", "take_control")]


def test_what_servicenow_says_besides_the_agent(sn: ServiceNowEmulator) -> None:
    start(ServiceNowHub(timeout=5), sn)
    session = sn.session(CID)
    va = sn.event(session, "message", text="Please stand by while I connect you.")
    del va["body"][0]["agentInfo"]  # the Virtual Agent's own words: a waiting notice
    assert [(e.kind, e.text) for e in parsed(sn, va)] == [
        ("queued", "Please stand by while I connect you.")
    ]
    entered = sn.event(session, "System", message="Beth Anglin has entered the chat.")
    entered["body"][0]["message"] = "Beth Anglin has entered the chat."
    assert [(e.kind, e.agent.name if e.agent else None) for e in parsed(sn, entered)] == [
        ("agent_joined", "Beth Anglin")
    ]
    for action in ("EndTypingIndicator", "EndSpinner", "SubscribeToSupportQueue"):
        assert parsed(sn, sn.event(session, action)) == []
    no_ids = {
        "clientSessionId": "s1",
        "body": [{"uiType": "ActionMsg", "actionType": "StartTypingIndicator"}],
    }
    first, again = parsed(sn, no_ids), parsed(sn, no_ids)
    assert first[0].event_id == again[0].event_id  # the delivery's bytes name it
    for bad in (b'{"clientSessionId":', b"[]", b'{"body": []}', b'{"clientSessionId": ""}'):
        with pytest.raises(BadRequestError):
            ServiceNowHub().parse(inbound(bad, {}), settings(sn))


def test_deliveries_are_authenticated_retried_and_tampered_ones_refused(
    sn: ServiceNowEmulator,
) -> None:
    hook = HookServer(ServiceNowHub, COPILOT, settings(sn), lambda: sn.secret_value, failures=2)
    with hook as copilot:
        sn.webhook_url = copilot.url
        sn.announce_queue = True
        start(ServiceNowHub(timeout=5), sn)
        assert sn.say(CID, "Hello from ServiceNow").status_code == 200  # joins, then says
        assert sn.typing(CID).status_code == 200
        assert sn.leave(CID).status_code == 204  # no wire event: the desk only
        assert sn.end(CID).status_code == 200
        session = sn.session(CID)
        for tampered in sn.tampered(session, sn.event(session, "typing")):
            assert tampered.response.status_code == tampered.status, tampered.what
        deadline = time.time() + 10
        while len(copilot.events) < 6 and time.time() < deadline:
            time.sleep(0.05)  # the queue notice comes in the background
    kinds = sorted(e.kind for e in copilot.events)
    assert kinds == [
        "agent_joined",
        "agent_message",
        "agent_typing",
        "ended",
        "queued",
        "queued",
    ], kinds
