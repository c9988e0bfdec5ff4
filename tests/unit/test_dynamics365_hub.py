"""The Dynamics 365 (custom channel over Direct Line 3.0) adapter against its emulator, over
loopback HTTP: the start's native fields (the customer's identity, the context variables, the
first message), customer messages and the end, the pull of the agent's activities from the
watermark (batches as they arrive, resumed without repeats, bounded by ``until``), token refresh
and expiry in push and pull, outages, and Direct Line's own refusals."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from copilot.errors import ForbiddenError, HubRejectedError, HubUnavailableError, UnavailableError
from copilot.handoff.hubs.dynamics365 import Dynamics365Hub, customer_id, events_of
from copilot.handoff.models import (
    Dynamics365HubSettings,
    HandoffContext,
    HubCommand,
    HubEvent,
    HubPullBatch,
    HubReceipt,
    TranscriptEntry,
)
from copilot.ports import InboundRequest
from copilot_dev.emulators.dynamics365 import BOT_ID, Dynamics365Emulator
from tests.hub_commands import handoff_context, hub_command

NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
CID, HID, COPILOT = "c0nv", "h4nd", "cop1"


@pytest.fixture
def d365() -> Iterator[Dynamics365Emulator]:
    with Dynamics365Emulator() as emulator:
        emulator.read_timeout = 0  # the agent's actions return at once (no copilot reads)
        yield emulator


@pytest.fixture
def hub() -> Dynamics365Hub:
    return Dynamics365Hub(timeout=5)


def settings(emulator: Dynamics365Emulator) -> Dynamics365HubSettings:
    hub = emulator.hub_settings(queue="bikes", skill="repairs")
    return Dynamics365HubSettings.model_validate(hub)


def context() -> HandoffContext:
    return handoff_context(
        CID,
        COPILOT,
        language="en-US",
        last_topic="Repairs",
        phrases=["my chain snapped", "talk to a person"],
        agent_message="Loyal customer",
        summary="The customer's chain snapped on a new bike.",
        unanswered_questions=["Is it under warranty?"],
        queue="bikes",
        skill="repairs",
        variables={"name": "Dana", "email": "dana@example.com", "tier": "gold"},
    )


def command(kind: str, seq: int, **fields: Any) -> HubCommand:
    return hub_command(kind, seq, CID, COPILOT, HID, **fields)


def start(hub: Dynamics365Hub, d365: Dynamics365Emulator) -> HubReceipt:
    transcript = [
        TranscriptEntry(seq=1, role="customer", text="my chain snapped", created_at=NOW),
        TranscriptEntry(seq=2, role="copilot", text="Sorry to hear that.", created_at=NOW),
    ]
    receipt = hub.send(
        settings(d365),
        d365.secret_value,
        command("start", 3, context=context(), transcript=transcript),
    )
    assert receipt is not None
    return receipt


def pull_all(
    hub: Dynamics365Hub,
    d365: Dynamics365Emulator,
    receipt: HubReceipt,
    state: dict[str, Any],
    seconds: float,
) -> list[tuple[float, HubPullBatch]]:
    """Every batch of one pull of ``seconds``, with the time it came (monotonic)."""
    until = time.monotonic() + seconds
    return [
        (time.monotonic(), batch)
        for batch in hub.pull(settings(d365), d365.secret_value, receipt, state, until)
    ]


def events(batches: list[tuple[float, HubPullBatch]]) -> list[HubEvent]:
    return [e for _, b in batches for e in b.events]


def merged(state: dict[str, Any], batches: list[tuple[float, HubPullBatch]]) -> dict[str, Any]:
    for _, batch in batches:
        state = {**state, **batch.state}
    return state


# --- push --------------------------------------------------------------------------------------


def test_start_opens_a_conversation_with_the_context_in_the_channels_fields(
    hub: Dynamics365Hub, d365: Dynamics365Emulator
) -> None:
    receipt = start(hub, d365)

    paths = [(r.method, r.path) for r in d365.requests]
    base = "/v3/directline"
    assert paths[:3] == [
        ("POST", f"{base}/tokens/generate"),
        ("POST", f"{base}/conversations"),
        ("POST", f"{base}/conversations/{receipt.hub_conversation_id}/activities"),
    ]
    assert receipt.state["token"] and receipt.state["expires_at"] > time.time() + 1000
    assert receipt.state["user_id"] == customer_id(COPILOT, CID, HID)
    session = d365.session(CID)
    assert session.handoff_id == receipt.hub_conversation_id
    assert session.copilot_id == COPILOT
    first = session.initiate["activity"]
    assert first["from"] == {"id": customer_id(COPILOT, CID, HID), "name": "Dana", "role": "user"}
    data = first["channelData"]
    assert data["conversationcontext"]["va_LastTopic"] == "Repairs"
    assert data["conversationcontext"]["Queue"] == "bikes"
    assert data["customercontext"] == {"email": "dana@example.com"}
    assert data["clientActivityID"] == f"{CID}:3"
    assert session.context["va_ConversationId"] == CID
    assert session.context["va_AgentMessage"] == "Loyal customer"
    assert session.context["va_BotName"] == "Northwind"
    assert session.context["va_Phrases"] == ["my chain snapped", "talk to a person"]
    assert session.context["name"] == "Dana" and session.context["tier"] == "gold"
    assert session.summary_text == "The customer's chain snapped on a new bike."
    assert session.unanswered_questions == ["Is it under warranty?"]
    assert session.routing == {"queue": "bikes", "skill": "repairs"}
    assert session.transcript == [
        {"from": {"role": "user"}, "text": "my chain snapped"},
        {"from": {"role": "bot"}, "text": "Sorry to hear that."},
    ]


def test_customer_messages_then_the_end(hub: Dynamics365Hub, d365: Dynamics365Emulator) -> None:
    receipt = start(hub, d365)
    for seq, text in ((4, "it is a road bike"), (5, "bought in May")):
        assert (
            hub.send(
                settings(d365),
                d365.secret_value,
                command("message", seq, text=text, receipt=receipt),
            )
            is None
        )
    assert hub.send(settings(d365), d365.secret_value, command("end", 6, receipt=receipt)) is None

    session = d365.session(CID)
    assert session.customer_texts == ["it is a road bike", "bought in May"]
    assert session.status == "ended"
    posted = d365.received[-1]
    assert posted["type"] == "endOfConversation"
    assert posted["from"]["id"] == receipt.state["user_id"]


def test_a_command_is_posted_once_and_a_repeat_by_another_process_is_recognised(
    d365: Dynamics365Emulator,
) -> None:
    receipt = start(Dynamics365Hub(), d365)
    message = command("message", 4, text="hello?", receipt=receipt)
    one, other = Dynamics365Hub(), Dynamics365Hub()
    one.send(settings(d365), d365.secret_value, message)
    one.send(settings(d365), d365.secret_value, message)  # this process: not posted again
    assert d365.duplicates == 0
    other.send(settings(d365), d365.secret_value, message)  # same clientActivityID
    assert d365.duplicates == 1
    assert d365.session(CID).customer_texts == ["hello?"]


def test_a_token_about_to_expire_is_refreshed_and_the_new_receipt_returned(
    hub: Dynamics365Hub, d365: Dynamics365Emulator
) -> None:
    receipt = start(hub, d365)
    near = receipt.model_copy(update={"state": {**receipt.state, "expires_at": time.time() + 30}})
    renewed = hub.send(
        settings(d365), d365.secret_value, command("message", 4, text="hi", receipt=near)
    )

    assert renewed is not None and renewed.state["token"] != receipt.state["token"]
    assert renewed.hub_conversation_id == receipt.hub_conversation_id
    assert renewed.state["user_id"] == receipt.state["user_id"]
    assert ("POST", "/v3/directline/tokens/refresh") in [(r.method, r.path) for r in d365.requests]
    assert d365.session(CID).customer_texts == ["hi"]


def test_an_expired_token_is_replaced_by_reopening_the_conversation(
    hub: Dynamics365Hub, d365: Dynamics365Emulator
) -> None:
    receipt = start(hub, d365)
    d365.expire_tokens()
    renewed = hub.send(
        settings(d365), d365.secret_value, command("message", 4, text="still here", receipt=receipt)
    )

    assert renewed is not None and renewed.state["token"] != receipt.state["token"]
    calls = [(r.method, r.path, r.status) for r in d365.requests]
    conversation = f"/v3/directline/conversations/{receipt.hub_conversation_id}"
    assert ("POST", f"{conversation}/activities", 403) in calls  # TokenExpired
    assert ("GET", conversation, 200) in calls  # re-opened with the secret
    assert d365.session(CID).customer_texts == ["still here"]


def test_outage_and_refusals(hub: Dynamics365Hub, d365: Dynamics365Emulator) -> None:
    receipt = start(hub, d365)
    d365.fail_with = 503
    with pytest.raises(HubUnavailableError):
        hub.send(
            settings(d365), d365.secret_value, command("message", 4, text="x", receipt=receipt)
        )
    with pytest.raises(HubUnavailableError):
        list(hub.pull(settings(d365), d365.secret_value, receipt, {}, time.monotonic() + 1))
    d365.fail_with = None
    with pytest.raises(HubRejectedError):  # a wrong secret: Direct Line answers 403
        hub.send(
            settings(d365),
            '{"directline_secret": "guessed"}',
            command("start", 9, context=context()),
        )
    with pytest.raises(UnavailableError):
        hub.send(settings(d365), '{"secret": "x"}', command("start", 9, context=context()))
    with pytest.raises(HubRejectedError):
        hub.send(settings(d365), d365.secret_value, command("message", 4, text="x"))


def test_no_webhook_reaches_the_copilot(hub: Dynamics365Hub, d365: Dynamics365Emulator) -> None:
    start(hub, d365)
    request = InboundRequest("POST", "/hooks/dynamics365/cop1", {}, b"{}")
    for configured in (settings(d365), None):
        with pytest.raises(ForbiddenError):
            hub.verify(request, configured, d365.secret_value, NOW)
    assert d365.tampered(d365.session(CID), {}) == []  # nothing is pushed: nothing to forge


# --- pull --------------------------------------------------------------------------------------


def test_pull_yields_each_batch_as_the_agent_acts(
    hub: Dynamics365Hub, d365: Dynamics365Emulator
) -> None:
    receipt = start(hub, d365)
    d365.read_timeout = 5  # each agent action returns once the copilot has read it
    acted: dict[str, float] = {}

    def agent() -> None:
        time.sleep(0.5)
        d365.join(CID, "Alex")
        acted["joined"] = time.monotonic()
        time.sleep(0.6)
        d365.typing(CID)
        d365.say(CID, "Hi Dana, I am Alex.")
        acted["message"] = time.monotonic()

    worker = threading.Thread(target=agent)
    worker.start()
    batches = pull_all(hub, d365, receipt, {}, 2.5)
    worker.join()

    got = events(batches)
    assert [e.kind for e in got] == ["agent_joined", "agent_typing", "agent_message"]
    assert got[2].text == "Hi Dana, I am Alex." and got[2].agent is not None
    assert got[2].agent.name == "Alex" and got[2].agent.id == BOT_ID
    assert all(e.hub_conversation_id == receipt.hub_conversation_id for e in got)
    assert all(e.sequence is None for e in got)
    assert len({e.event_id for e in got}) == 3
    arrived = {e.kind: at for at, b in batches for e in b.events}
    assert arrived["agent_joined"] - acted["joined"] < 1.0  # a GET every 0.4 s
    assert arrived["agent_message"] - acted["message"] < 1.0
    assert arrived["agent_joined"] < acted["message"]  # not held until the window ends
    assert arrived["agent_message"] <= acted["message"]  # the desk's say waited for the read


def test_pull_resumes_from_the_watermark_and_ignores_our_own(
    hub: Dynamics365Hub, d365: Dynamics365Emulator
) -> None:
    receipt = start(hub, d365)
    d365.say(CID, "first")
    batches = pull_all(hub, d365, receipt, {}, 0.3)
    state = merged({}, batches)
    # the desk's agent joins to say it; our own first message is no event
    assert [(e.kind, e.text) for e in events(batches)] == [
        ("agent_joined", None),
        ("agent_message", "first"),
    ]
    assert state["watermark"]

    hub.send(settings(d365), d365.secret_value, command("message", 4, text="mine", receipt=receipt))
    d365.say(CID, "second")
    again = pull_all(hub, d365, receipt, state, 0.3)
    assert [e.text for e in events(again)] == ["second"]
    assert pull_all(hub, d365, receipt, merged(state, again), 0.3) == []  # nothing new: no batch


def test_pull_stops_by_until(hub: Dynamics365Hub, d365: Dynamics365Emulator) -> None:
    receipt = start(hub, d365)
    began = time.monotonic()
    pull_all(hub, d365, receipt, {}, 1.0)
    assert 0.95 <= time.monotonic() - began < 1.5


def test_pull_maps_leave_end_and_the_queue(hub: Dynamics365Hub, d365: Dynamics365Emulator) -> None:
    receipt = start(hub, d365)
    session = d365.session(CID)
    d365.queue_position(session, "You are number 2 in the queue.")
    d365.join(CID, "Alex")
    d365.leave(CID)
    d365.join(CID, "Sam")
    d365.end(CID)
    got = events(pull_all(hub, d365, receipt, {}, 0.3))
    assert [e.kind for e in got] == [
        "queued",
        "agent_joined",
        "agent_left",
        "agent_joined",
        "ended",
    ]
    assert got[0].text == "You are number 2 in the queue."
    assert got[3].agent is not None and got[3].agent.name == "Sam"


def test_pull_after_the_tokens_expire_keeps_the_new_token(
    hub: Dynamics365Hub, d365: Dynamics365Emulator
) -> None:
    receipt = start(hub, d365)
    d365.expire_tokens()
    d365.say(CID, "are you there?")
    batches = pull_all(hub, d365, receipt, {}, 0.3)
    state = merged({}, batches)
    assert [e.text for e in events(batches)] == [None, "are you there?"]  # joined, said
    assert state["token"] != receipt.state["token"] and state["expires_at"] > time.time()
    d365.say(CID, "next")
    reads = len(d365.requests)
    assert [e.text for e in events(pull_all(hub, d365, receipt, state, 0.3))] == ["next"]
    assert all(r.status == 200 for r in d365.requests[reads:])  # the kept token is used


def test_activities_malformed_or_of_another_conversation_are_left_out() -> None:
    own = customer_id(COPILOT, CID, HID)
    good = {
        "id": "x|1",
        "type": "message",
        "conversation": {"id": "x"},
        "text": "hi",
        "from": {"id": BOT_ID, "name": "Alex"},
    }
    activities = [
        good,
        {**good, "id": None},
        {**good, "conversation": {"id": "other"}},
        {**good, "from": {"id": own, "role": "user"}},
        {**good, "type": "conversationUpdate"},
        "not an activity",
        {
            **good,
            "id": "x|2",
            "text": "",
            "attachments": [{"name": "r.pdf", "contentUrl": "https://f/r.pdf"}],
        },
    ]
    got = events_of(activities, "x", own)
    assert [(e.event_id, e.text) for e in got] == [("x|1", "hi"), ("x|2", "r.pdf: https://f/r.pdf")]


# --- the emulator answers as Direct Line ---------------------------------------------------


def test_direct_line_refusals(hub: Dynamics365Hub, d365: Dynamics365Emulator) -> None:
    receipt = start(hub, d365)
    url = f"{d365.url}/v3/directline/conversations/{receipt.hub_conversation_id}/activities"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 403
    other = requests.post(
        f"{d365.url}/v3/directline/tokens/generate",
        headers={"Authorization": f"Bearer {d365.directline_secret}"},
        timeout=5,
    ).json()["token"]
    assert (
        requests.get(url, headers={"Authorization": f"Bearer {other}"}, timeout=5).status_code
        == 403
    )
    token = receipt.state["token"]
    assert (
        requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code
        == 200
    )
    d365.expire_tokens()
    expired = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert expired.status_code == 403 and expired.json()["error"]["code"] == "TokenExpired"


def test_the_desks_delivery_says_what_the_copilot_read(
    hub: Dynamics365Hub, d365: Dynamics365Emulator
) -> None:
    receipt = start(hub, d365)
    session = d365.session(CID)
    d365.read_timeout = 5
    reader = threading.Thread(target=pull_all, args=(hub, d365, receipt, {}, 2.0))
    reader.start()
    event = d365.event(session, "message", text="once")
    statuses = [d365.deliver(session, event).json()["results"][0]["status"] for _ in range(2)]
    reader.join()
    assert statuses == ["applied", "duplicate"]  # read, then read again (the copilot dedupes)

    d365.read_timeout = 0.2  # nobody reads now
    held = d365.deliver(session, d365.event(session, "message", text="later"))
    assert held.status_code == 202 and held.json()["results"][0]["status"] == "held"
    hub.send(settings(d365), d365.secret_value, command("end", 4, receipt=receipt))
    late = d365.deliver(session, d365.event(session, "message", text="too late"))
    assert late.json()["results"][0]["status"] == "ignored"


def test_pull_of_a_conversation_gone_ends_the_hand_off_and_a_refused_secret_retries(
    hub: Dynamics365Hub, d365: Dynamics365Emulator
) -> None:
    receipt = start(hub, d365)
    gone = receipt.model_copy(update={"hub_conversation_id": "f" * 32})
    got = events(pull_all(hub, d365, gone, {}, 0.3))
    assert [(e.kind, e.event_id, e.reason) for e in got] == [
        ("ended", f"{'f' * 32}|gone", "conversation_gone")
    ]
    d365.expire_tokens()  # the token is refused, and so is the secret that would renew it
    with pytest.raises(HubUnavailableError):
        list(
            hub.pull(
                settings(d365), '{"directline_secret": "x"}', receipt, {}, time.monotonic() + 1
            )
        )
