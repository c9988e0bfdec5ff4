"""The Salesforce Messaging for In-App and Web adapter against its emulator, over loopback HTTP:
the guest's token, the conversation with its routing attributes, the hand-off note, the
customer's messages and the close, token continuation, outages; and the pull of the guest's
Server-Sent Events stream (batches as events arrive, resume from Last-Event-ID, bounded by
``until``, other conversations filtered, malformed events dropped)."""

from __future__ import annotations

import json
import threading
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
)
from copilot.handoff.hubs.once import Once
from copilot.handoff.hubs.salesforce import (
    SalesforceHub,
    hub_conversation_id,
    stream_events,
)
from copilot.handoff.models import (
    HubCommand,
    HubEvent,
    HubPullBatch,
    HubReceipt,
    SalesforceHubSettings,
    TranscriptEntry,
)
from copilot.ports import InboundRequest
from copilot_dev.emulators.salesforce import SalesforceEmulator
from tests.hub_commands import handoff_context, hub_command

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
CID, HID, COPILOT = "c0nv", "h4nd", "cop1"


@pytest.fixture
def sf() -> Iterator[SalesforceEmulator]:
    with SalesforceEmulator() as emulator:
        emulator.ack_timeout = 0.0  # most tests act before they pull (see test_..._acknowledged)
        yield emulator


# The hand-off as the copilot hands it over (what the desk must read back from Salesforce).
CONTEXT: dict[str, Any] = dict(
    language="en-US",
    last_topic="Lights",
    phrases=["my front light flickers", "an agent please"],
    agent_message="Bought it last week",
    variables={"name": "Ann", "tier": "gold"},
    summary="The front light flickers;\nthe customer wants a replacement.",
    unanswered_questions=["Is it under warranty?"],
    queue="lights",
    skill="returns",
)
SAID = [("customer", "my front light\nflickers"), ("copilot", "Let me get you a person.")]


def settings(emulator: SalesforceEmulator, **fields: Any) -> SalesforceHubSettings:
    return SalesforceHubSettings.model_validate(emulator.hub_settings(**fields))


def command(kind: str, seq: int, **fields: Any) -> HubCommand:
    return hub_command(kind, seq, CID, COPILOT, HID, **fields)


def transcript() -> list[TranscriptEntry]:
    at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    return [
        TranscriptEntry(seq=n, role=role, text=text, created_at=at)  # type: ignore[arg-type]
        for n, (role, text) in enumerate(SAID, 1)
    ]


def start(hub: SalesforceHub, sf: SalesforceEmulator, **fields: Any) -> HubReceipt:
    receipt = hub.send(
        settings(sf, **fields),
        "",
        command(
            "start", 3, context=handoff_context(CID, COPILOT, **CONTEXT), transcript=transcript()
        ),
    )
    assert receipt is not None
    return receipt


def pull_all(
    hub: SalesforceHub,
    sf: SalesforceEmulator,
    receipt: HubReceipt,
    state: dict[str, Any],
    seconds: float,
) -> tuple[list[HubEvent], dict[str, Any]]:
    """Every event of one pull of ``seconds``, and the merged state after it."""
    events: list[HubEvent] = []
    kept = dict(state)
    for batch in hub.pull(settings(sf), "", receipt, kept, time.monotonic() + seconds):
        events += batch.events
        kept |= batch.state
    return events, kept


# --- outbound ----------------------------------------------------------------------------------


def test_start_creates_the_conversation_with_the_context_as_routing_attributes(
    sf: SalesforceEmulator,
) -> None:
    receipt = start(SalesforceHub(), sf, agent_note="VIP")
    assert receipt.hub_conversation_id == hub_conversation_id(command("start", 3))
    assert receipt.state["access_token"] and "last_event_id" in receipt.state
    session = sf.session(CID)
    body = session.initiate["conversation"]
    assert body["esDeveloperName"] == "Northwind_Web"
    assert body["conversationId"] == receipt.hub_conversation_id
    attributes = body["routingAttributes"]
    assert attributes["va_ConversationId"] == CID
    assert attributes["va_Phrases"] == json.dumps(CONTEXT["phrases"])
    assert attributes["routing_queue"] == "lights" and attributes["tier"] == "gold"
    assert attributes["copilot_id"] == COPILOT and attributes["handoff_id"] == HID
    assert session.conversation_id == CID and session.copilot_id == COPILOT
    assert session.context["va_LastTopic"] == "Lights"
    assert session.context["va_AgentMessage"] == "Bought it last week"
    assert session.context["va_BotName"] == "Northwind"
    assert session.context["va_Phrases"] == CONTEXT["phrases"]
    assert session.context["name"] == "Ann"
    assert session.summary_text == CONTEXT["summary"]
    assert session.unanswered_questions == ["Is it under warranty?"]
    assert session.routing == {"queue": "lights", "skill": "returns"}
    # The hand-off note (the first message) carries the transcript; it is no customer message.
    assert session.transcript == [
        {"from": {"role": "user"}, "text": "my front light flickers"},
        {"from": {"role": "bot"}, "text": "Let me get you a person."},
    ]
    assert session.customer_texts == []


def test_a_retried_start_is_the_same_conversation_and_note(sf: SalesforceEmulator) -> None:
    hub = SalesforceHub()
    first = start(hub, sf)
    assert start(hub, sf) == first and sf.duplicates == 0  # a repeat in this process: its answer
    # A try whose answer was lost (the command not remembered): the same guest tries again.
    hub._once = Once(10)
    assert start(hub, sf) == first
    assert len(sf.sessions()) == 1 and sf.duplicates == 2  # the create and the note
    assert len(sf.session(CID).transcript) == 2 and sf.session(CID).customer_texts == []


def test_a_start_retried_by_another_guest_is_refused(sf: SalesforceEmulator) -> None:
    start(SalesforceHub(), sf)
    # Another process has no copy of the first guest: the conversation is not its own.
    with pytest.raises(HubRejectedError):
        start(SalesforceHub(), sf)
    assert len(sf.sessions()) == 1


def test_messages_carry_stable_ids_and_a_retry_is_taken_once(sf: SalesforceEmulator) -> None:
    hub = SalesforceHub()
    receipt = start(hub, sf)
    hub.send(settings(sf), "", command("message", 4, text="Can it be today?", receipt=receipt))
    hub.send(settings(sf), "", command("message", 4, text="Can it be today?", receipt=receipt))
    assert sf.duplicates == 0  # sent once in this process
    # Another process retries it: the same message id, which Salesforce takes once.
    retry = command("message", 4, text="Can it be today?", receipt=receipt)
    SalesforceHub().send(settings(sf), "", retry)
    hub.send(settings(sf), "", command("message", 5, text="Thanks", receipt=receipt))
    assert sf.session(CID).customer_texts == ["Can it be today?", "Thanks"]
    assert sf.duplicates == 1


def test_cancel_closes_the_conversation_and_a_second_close_is_harmless(
    sf: SalesforceEmulator,
) -> None:
    hub = SalesforceHub()
    receipt = start(hub, sf)
    hub.send(settings(sf), "", command("end", 4, reason="cancelled", receipt=receipt))
    SalesforceHub().send(settings(sf), "", command("end", 4, reason="cancelled", receipt=receipt))
    session = sf.session(CID)
    assert session.status == "ended"
    closes = [r for r in sf.requests if r.method == "DELETE"]
    assert len(closes) == 2 and all(r.status == 204 for r in closes)


def test_an_expired_token_is_continued_and_the_new_receipt_returned(
    sf: SalesforceEmulator,
) -> None:
    hub = SalesforceHub()
    receipt = start(hub, sf)
    sf.expire_tokens()
    renewed = hub.send(
        settings(sf), "", command("message", 4, text="still there?", receipt=receipt)
    )
    assert renewed is not None
    assert renewed.hub_conversation_id == receipt.hub_conversation_id
    assert renewed.state["access_token"] != receipt.state["access_token"]
    assert hub.send(settings(sf), "", command("message", 5, text="ok", receipt=renewed)) is None
    assert sf.session(CID).customer_texts == ["still there?", "ok"]
    statuses = [r.status for r in sf.requests if r.path.endswith("/message")]
    assert 401 in statuses


def test_an_outage_is_retried_later_and_loses_nothing(sf: SalesforceEmulator) -> None:
    hub = SalesforceHub()
    receipt = start(hub, sf)
    sf.fail_with = 503
    with pytest.raises(HubUnavailableError):
        hub.send(settings(sf), "", command("message", 4, text="hello?", receipt=receipt))
    sf.fail_with = None
    hub.send(settings(sf), "", command("message", 4, text="hello?", receipt=receipt))
    assert sf.session(CID).customer_texts == ["hello?"]


def test_a_wrong_deployment_is_refused_for_good(sf: SalesforceEmulator) -> None:
    with pytest.raises(HubRejectedError):
        start(SalesforceHub(), sf, deployment="Other_Web")


def test_no_webhook_is_accepted() -> None:
    request = InboundRequest("POST", "/hooks/salesforce/cop1", {}, b"{}")
    hub = SalesforceHub()
    with pytest.raises(ForbiddenError):
        hub.verify(request, None, "", NOW)
    with pytest.raises(BadRequestError):
        hub.parse(request, SalesforceHubSettings.model_validate(_offline_settings()))


def _offline_settings() -> dict[str, Any]:
    return {
        "type": "salesforce",
        "scrt_url": "https://example.my.salesforce-scrt.com",
        "org_id": "00D000000000001",
        "deployment": "Web",
    }


# --- pull -------------------------------------------------------------------------------------


def test_pull_yields_each_agent_event_as_it_arrives(sf: SalesforceEmulator) -> None:
    hub = SalesforceHub()
    receipt = start(hub, sf)
    seen: list[tuple[float, HubPullBatch]] = []
    acted: list[float] = []

    def agent() -> None:
        time.sleep(0.3)
        for act in (
            lambda: sf.join(CID, "Sam"),
            lambda: sf.typing(CID),
            lambda: sf.say(CID, "Hi, I'm Sam"),
            lambda: sf.end(CID),
        ):
            acted.append(time.monotonic())
            act()
            time.sleep(0.2)

    thread = threading.Thread(target=agent)
    thread.start()
    until = time.monotonic() + 2.5
    for batch in hub.pull(settings(sf), "", receipt, {}, until):
        if batch.events and batch.events[0].kind != "noop":
            seen.append((time.monotonic(), batch))
    thread.join()
    kinds = [b.events[0].kind for _, b in seen]
    assert kinds == ["agent_joined", "agent_typing", "agent_message", "ended"]
    joined, _, said, _ = (b.events[0] for _, b in seen)
    assert joined.agent is not None and joined.agent.name == "Sam"
    assert said.text == "Hi, I'm Sam" and said.agent is not None and said.agent.name == "Sam"
    assert all(
        e.hub_conversation_id == receipt.hub_conversation_id for _, b in seen for e in b.events
    )
    assert all(e.sequence is None for _, b in seen for e in b.events)
    latencies = [at - acted_at for (at, _), acted_at in zip(seen, acted, strict=True)]
    assert max(latencies) < 0.5, latencies
    assert all(b.state.get("last_event_id") for _, b in seen)


def test_an_agent_message_taken_by_the_copilot_is_acknowledged(sf: SalesforceEmulator) -> None:
    hub = SalesforceHub()
    receipt = start(hub, sf)
    sf.ack_timeout = 5.0
    taken: list[str] = []

    def copilot() -> None:
        for batch in hub.pull(settings(sf), "", receipt, {}, time.monotonic() + 1.5):
            taken.extend(e.text or "" for e in batch.events if e.kind == "agent_message")

    reader = threading.Thread(target=copilot)
    reader.start()
    time.sleep(0.2)
    # Like a webhook's answer, the desk's delivery returns once the copilot has the message.
    assert sf.say(CID, "Hello").status_code == 200
    assert taken == ["Hello"]
    reader.join()
    assert len(sf.acknowledged) == 1
    sf.ack_timeout = 0.1
    assert sf.say(CID, "nobody reads this").status_code == 202  # accepted, not delivered


def test_pull_resumes_from_the_last_event_id_without_repeats(sf: SalesforceEmulator) -> None:
    hub = SalesforceHub()
    receipt = start(hub, sf)
    sf.join(CID)
    sf.say(CID, "first")
    first, state = pull_all(hub, sf, receipt, {}, 0.6)
    assert [e.kind for e in first if e.kind != "noop"] == ["agent_joined", "agent_message"]
    sf.say(CID, "second")
    second, state = pull_all(hub, sf, receipt, state, 0.6)
    assert [e.text for e in second] == ["second"]
    third, _ = pull_all(hub, sf, receipt, state, 0.4)
    assert third == []
    # A batch read twice (a job died before storing its state) keeps its event ids.
    again, _ = pull_all(hub, sf, receipt, {}, 0.6)
    assert [e.event_id for e in again] == [e.event_id for e in first + second]


def test_pull_returns_by_until_on_a_quiet_stream(sf: SalesforceEmulator) -> None:
    hub = SalesforceHub()
    receipt = start(hub, sf)
    began = time.monotonic()
    events, _ = pull_all(hub, sf, receipt, {"last_event_id": sf.last_event_id()}, 0.7)
    took = time.monotonic() - began
    assert events == [] and 0.6 < took < 1.5


def test_pull_keeps_to_its_own_conversation(sf: SalesforceEmulator) -> None:
    hub = SalesforceHub()
    receipt = start(hub, sf)
    other = hub.send(
        settings(sf),
        "",
        hub_command("start", 3, "other", COPILOT, "h2", context=handoff_context("other", COPILOT)),
    )
    assert other is not None
    # The other hand-off's guest shares our token: its events are on our stream too.
    session = sf.session("other")
    session.hub["subject"] = sf.session(CID).hub["subject"]
    sf.say("other", "not for you")
    sf.say(CID, "for you")
    events, _ = pull_all(hub, sf, receipt, {}, 0.6)
    assert [e.text for e in events if e.kind == "agent_message"] == ["for you"]


def test_pull_continues_an_expired_token_and_keeps_it(sf: SalesforceEmulator) -> None:
    hub = SalesforceHub()
    receipt = start(hub, sf)
    sf.expire_tokens()
    sf.say(CID, "after expiry")
    events, state = pull_all(hub, sf, receipt, {}, 0.6)
    assert [e.text for e in events if e.kind == "agent_message"] == ["after expiry"]
    assert state["access_token"] != receipt.state["access_token"]
    # The kept token works for the next pull without another continuation.
    continued = len([r for r in sf.requests if "continuation" in r.path])
    pull_all(hub, sf, receipt, state, 0.3)
    assert len([r for r in sf.requests if "continuation" in r.path]) == continued


def test_pull_in_an_outage_is_unavailable(sf: SalesforceEmulator) -> None:
    hub = SalesforceHub()
    receipt = start(hub, sf)
    sf.fail_with = 503
    with pytest.raises(HubUnavailableError):
        pull_all(hub, sf, receipt, {}, 0.3)


def test_several_streams_are_served_at_once(sf: SalesforceEmulator) -> None:
    hub = SalesforceHub()
    receipt = start(hub, sf)
    results: list[list[str]] = []

    def read() -> None:
        events, _ = pull_all(hub, sf, receipt, {}, 1.2)
        results.append([e.text or "" for e in events if e.kind == "agent_message"])

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    time.sleep(0.3)
    sf.say(CID, "to all")
    for reader in readers:
        reader.join()
    assert results == [["to all"]] * 4


# --- the stream's events -------------------------------------------------------------------------


def _data(conversation: str, sender: dict[str, Any], payload: Any, **entry: Any) -> str:
    return json.dumps(
        {
            "conversationId": conversation,
            "conversationEntry": {
                "identifier": "e1",
                "sender": sender,
                "entryPayload": payload if isinstance(payload, str) else json.dumps(payload),
                **entry,
            },
        }
    )


AGENT = {"role": "Agent", "subject": "005x"}


@pytest.mark.parametrize(
    ("name", "sender", "payload", "expected"),
    [
        (
            "CONVERSATION_MESSAGE",
            {"role": "EndUser"},
            {"entryType": "Message", "abstractMessage": {"staticContent": {"text": "me"}}},
            [],
        ),
        (
            "CONVERSATION_MESSAGE",
            {"role": "Chatbot"},
            {"entryType": "Message", "abstractMessage": {"choices": {"text": "Pick one"}}},
            ["agent_message"],
        ),
        (
            "CONVERSATION_TYPING_STOPPED_INDICATOR",
            AGENT,
            {"entryType": "TypingStoppedIndicator"},
            [],
        ),
        ("CONVERSATION_TYPING_STARTED_INDICATOR", {"role": "EndUser"}, {}, []),
        ("CONVERSATION_CLOSE_CONVERSATION", {"role": "System"}, {}, ["ended"]),
        (
            "CONVERSATION_SESSION_STATUS_CHANGED",
            {"role": "System"},
            {"entryType": "SessionStatusChanged", "sessionStatus": "Active"},
            [],
        ),
        (
            "CONVERSATION_PARTICIPANT_CHANGED",
            {"role": "System"},
            {
                "entryType": "ParticipantChanged",
                "entries": [
                    {"operation": "add", "participant": {"role": "Chatbot"}, "displayName": "Bot"},
                    {"operation": "remove", "participant": AGENT, "displayName": "Sam"},
                ],
            },
            ["agent_left"],
        ),
        (
            "CONVERSATION_ROUTING_RESULT",
            {"role": "System"},
            {"entryType": "RoutingResult", "estimatedWaitTime": {"estimatedWaitTimeInSeconds": -1}},
            [],
        ),
        ("CONVERSATION_DELIVERY_ACKNOWLEDGEMENT", {"role": "System"}, {}, []),
        ("SOME_FUTURE_EVENT", {"role": "System"}, {}, []),
    ],
)
def test_stream_events_map_to_neutral_kinds(
    name: str, sender: dict[str, Any], payload: Any, expected: list[str]
) -> None:
    events = stream_events(name, _data("conv-1", sender, payload), "conv-1", "7")
    assert [e.kind for e in events] == expected


def test_queue_position_and_wait_are_shown() -> None:
    payload = {
        "entryType": "RoutingResult",
        "estimatedWaitTime": {"estimatedWaitTimeInSeconds": 240},
    }
    data = _data("conv-1", {"role": "System"}, payload)
    (event,) = stream_events("CONVERSATION_ROUTING_RESULT", data, "conv-1", "3")
    assert event.kind == "queued" and event.text == "The wait is about 4 minutes."
    position = _data("conv-1", {"role": "System"}, {"queuePosition": 3})
    (event,) = stream_events("CONVERSATION_QUEUE_POSITION", position, "conv-1", "4")
    assert event.text == "You are number 3 in the queue."


def test_the_emulators_wait_reaches_the_customer(sf: SalesforceEmulator) -> None:
    sf.wait_seconds = 90
    hub = SalesforceHub()
    receipt = start(hub, sf)
    events, _ = pull_all(hub, sf, receipt, {}, 0.5)
    assert [(e.kind, e.text) for e in events if e.kind == "queued"] == [
        ("queued", "The wait is about 2 minutes.")
    ]


@pytest.mark.parametrize(
    "data",
    [
        "not json",
        json.dumps(["a list"]),
        json.dumps({"conversationId": "conv-1"}),
        json.dumps({"conversationId": "conv-1", "conversationEntry": {"entryPayload": "{bad"}}),
        _data(
            "conv-2",
            AGENT,
            {"entryType": "Message", "abstractMessage": {"staticContent": {"text": "x"}}},
        ),
    ],
)
def test_malformed_or_foreign_events_are_dropped(data: str) -> None:
    assert stream_events("CONVERSATION_MESSAGE", data, "conv-1", "9") == []
