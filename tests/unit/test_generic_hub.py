"""The generic hub's wire contract: signatures, inbound events, outbound payloads."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from copilot.errors import BadRequestError, ForbiddenError, UnauthorizedError
from copilot.handoff.hubs.generic import (
    GenericHub,
    signature,
    signed_headers,
    verify_signature,
    wire_payload,
)
from copilot.handoff.models import (
    GenericHubSettings,
    HandoffContext,
    HubCommand,
    TranscriptEntry,
)
from copilot.ports import InboundRequest

HUB_SETTINGS = GenericHubSettings(type="generic", url="http://127.0.0.1:9/h", secret_ref="S")

SECRET = "shared-secret"
NOW = 1_736_150_400  # 2025-01-06 08:00 UTC


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def test_signature_is_hmac_sha256_hex_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    body = b'{"a":1}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature(SECRET, "1700000000", body) == f"sha256={expected}"
    headers = signed_headers(SECRET, body, timestamp=1700000000)
    assert headers["X-Copilot-Signature"] == f"sha256={expected}"
    assert headers["X-Copilot-Timestamp"] == "1700000000"


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda h, b: ({}, b), UnauthorizedError),
        (lambda h, b: ({k: v for k, v in h.items() if "signature" not in k}, b), UnauthorizedError),
        (lambda h, b: ({**h, "x-copilot-timestamp": "yesterday"}, b), UnauthorizedError),
        (lambda h, b: ({**h, "x-copilot-signature": "sha256=zz"}, b), ForbiddenError),
        (lambda h, b: (h, b + b" "), ForbiddenError),  # tampered body
        (lambda h, b: ({**h, "x-copilot-timestamp": str(NOW + 1)}, b), ForbiddenError),
    ],
)
def test_verification_rejects_unsigned_malformed_and_forged_calls(
    mutate: Any, error: type[Exception]
) -> None:
    body = b'{"id":"e1"}'
    headers, body = mutate(lower(signed_headers(SECRET, body, timestamp=NOW)), body)
    with pytest.raises(error):
        verify_signature(headers, body, SECRET, NOW)


@pytest.mark.parametrize("ts", ["²", "١٧٣٦١٥٠٤٠٠", "+1736150400", " 1736150400", "1" * 13, "1.5"])
def test_a_timestamp_of_other_than_ascii_digits_is_401_even_when_signed(ts: str) -> None:
    """ "²".isdigit() is true and int("²") raises: signed by the hub itself, it was a 500."""
    body = b'{"id":"e1"}'
    headers = {"x-copilot-timestamp": ts, "x-copilot-signature": signature(SECRET, ts, body)}
    with pytest.raises(UnauthorizedError):
        verify_signature(headers, body, SECRET, NOW)


def test_verification_refuses_stale_and_far_future_timestamps() -> None:
    body = b"{}"
    for ts in (NOW - 301, NOW + 301):
        with pytest.raises(ForbiddenError):
            verify_signature(lower(signed_headers(SECRET, body, timestamp=ts)), body, SECRET, NOW)
    verify_signature(lower(signed_headers(SECRET, body, timestamp=NOW - 299)), body, SECRET, NOW)
    with pytest.raises(ForbiddenError):
        verify_signature(lower(signed_headers("other", body, timestamp=NOW)), body, SECRET, NOW)


def inbound(payload: Any) -> InboundRequest:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return InboundRequest("POST", "/hooks/generic/c1", lower(signed_headers(SECRET, body)), body)


EVENT = {
    "id": "ev-1",
    "type": "agent.message",
    "conversation_id": "conv-1",
    "handoff_id": "h-1",
    "sequence": 3,
    "agent": {"id": "a7", "name": "Bob"},
    "text": "Hello!",
    "unknown_future_field": True,
}


def test_parse_maps_events_to_neutral_form() -> None:
    hub = GenericHub()
    request = inbound(EVENT)
    hub.verify(request, None, SECRET, datetime.now(UTC))
    [event] = hub.parse(request, HUB_SETTINGS)
    assert (event.kind, event.event_id, event.sequence, event.text) == (
        "agent_message",
        "ev-1",
        3,
        "Hello!",
    )
    assert event.agent is not None and event.agent.name == "Bob"
    kinds = {
        "agent.joined": "agent_joined",
        "agent.typing": "agent_typing",
        "agent.left": "agent_left",
        "handoff.ended": "ended",
    }
    for wire, neutral in kinds.items():
        parsed = hub.parse(inbound({**EVENT, "type": wire, "text": None}), HUB_SETTINGS)
        assert parsed[0].kind == neutral
    failed = {**EVENT, "type": "handoff.status", "state": "failed", "reason": "no_agents"}
    assert hub.parse(inbound(failed), HUB_SETTINGS)[0].kind == "rejected"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"{not json", None),
        ([EVENT], None),
        ({k: v for k, v in EVENT.items() if k != "handoff_id"}, "handoff_id"),
        ({**EVENT, "sequence": 0}, "sequence"),
        ({**EVENT, "type": "agent.dance"}, "type"),
        ({**EVENT, "text": "   "}, None),
        ({**EVENT, "type": "handoff.status"}, None),
        ({**EVENT, "text": "x" * 4001}, "text"),
    ],
)
def test_malformed_events_are_400_naming_the_field(payload: Any, field: str | None) -> None:
    with pytest.raises(BadRequestError) as info:
        GenericHub().parse(inbound(payload), HUB_SETTINGS)
    assert info.value.field == field


CONTEXT = HandoffContext(
    conversation_id="conv-1",
    bot_id="bot-1",
    bot_name="Northwind Helper",
    language="en-GB",
    last_topic="Escalate",
    topics=["No match", "Escalate"],
    last_phrases="my frame is cracked",
    phrases=["hi", "my frame is cracked"],
    agent_message="Check the warranty",
    variables={"name": "Ann"},
    summary="Customer said: my frame is cracked",
    unanswered_questions=["do you ship to Canada?"],
    queue="repairs",
    skill="frames",
)


def command(kind: str, **fields: Any) -> HubCommand:
    return HubCommand(
        kind=kind,  # type: ignore[arg-type]
        event_id="conv-1:7",
        sequence=7,
        conversation_id="conv-1",
        copilot_id="bot-1",
        handoff_id="h-1",
        created_at=datetime(2025, 1, 6, 8, 0, tzinfo=UTC),
        **fields,
    )


def test_start_payload_mirrors_copilot_studio_handoff_initiate() -> None:
    transcript = [
        TranscriptEntry(
            seq=1, role="copilot", text="Hi!", created_at=datetime(2025, 1, 6, tzinfo=UTC)
        ),
        TranscriptEntry(
            seq=2,
            role="customer",
            text="my frame is cracked",
            created_at=datetime(2025, 1, 6, tzinfo=UTC),
        ),
    ]
    payload = wire_payload(
        command(
            "start",
            context=CONTEXT,
            transcript=transcript,
            reply_to="https://x/hooks/generic/bot-1",
        )
    )
    assert (payload["type"], payload["name"], payload["id"], payload["sequence"]) == (
        "event",
        "handoff.initiate",
        "conv-1:7",
        7,
    )
    assert payload["conversation"] == {"id": "conv-1"}
    assert payload["value"] == {
        "name": "Ann",
        "va_Scope": "bot",
        "va_LastTopic": "Escalate",
        "va_Topics": ["No match", "Escalate"],
        "va_LastPhrases": "my frame is cracked",
        "va_LastPhrase": "my frame is cracked",
        "va_Phrases": ["hi", "my frame is cracked"],
        "va_ConversationId": "conv-1",
        "va_AgentMessage": "Check the warranty",
        "va_Language": "en-GB",
        "va_BotId": "bot-1",
        "va_BotName": "Northwind Helper",
    }
    assert payload["routing"] == {"queue": "repairs", "skill": "frames"}
    assert payload["summary"].startswith("Customer said")
    assert payload["reply_to"] == "https://x/hooks/generic/bot-1"
    [attachment] = payload["attachments"]
    assert attachment["name"] == "Transcript"
    activities = attachment["content"]["activities"]
    assert [(a["from"]["role"], a["text"]) for a in activities] == [
        ("bot", "Hi!"),
        ("user", "my frame is cracked"),
    ]


def test_message_and_end_payloads() -> None:
    message = wire_payload(command("message", text="hello"))
    assert (message["type"], message["name"], message["text"], message["from"]) == (
        "message",
        "conversation.message",
        "hello",
        {"role": "user"},
    )
    end = wire_payload(command("end", reason="customer_ended"))
    assert (end["name"], end["reason"], end["handoff_id"]) == (
        "handoff.end",
        "customer_ended",
        "h-1",
    )
    assert end["timestamp"] == "2025-01-06T08:00:00Z"


def test_signed_headers_default_to_now() -> None:
    ts = int(signed_headers(SECRET, b"")["X-Copilot-Timestamp"])
    assert abs(ts - time.time()) < 5
