"""Live-agent hand-off end to end, for every hub: the whole local stack (chat, hand-off webhooks,
the outbox on an SQS FIFO queue through its pump) and each hub's loopback emulator (the generic
hub's agent desk, Genesys Cloud, LivePerson, Amazon Connect), over each hub's real wire protocol.

The cases parametrized by ``hub`` run against every emulator; the rest are the generic hub's
own (business hours, declined starts, the desk's page and API)."""

from __future__ import annotations

import contextlib
import importlib.util
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
import requests

from copilot.conversation.models import Message
from copilot_dev.client import ApiError, CopilotClient
from copilot_dev.concurrency import run_concurrently
from copilot_dev.emulators.agent_desk import AgentDesk
from copilot_dev.emulators.desk import DeskSession, HubDesk
from copilot_dev.emulators.hubs import EMULATORS, emulator
from copilot_dev.localstack import LocalStack, StackConfig, free_port
from tests.conftest import REPO_ROOT, wait_for

pytestmark = pytest.mark.e2e

T = TypeVar("T")
HUBS = [h for h in EMULATORS if importlib.util.find_spec(EMULATORS[h].partition(":")[0])]
NAMED = [h for h in HUBS if h != "generic"]


@pytest.fixture(scope="module")
def desks() -> Iterator[dict[str, HubDesk]]:
    """Every hub's emulator, started before the stack (the functions' environment names them)."""
    started: dict[str, HubDesk] = {}
    try:
        for hub_type in HUBS:
            started[hub_type] = emulator(hub_type).start()
        yield started
    finally:
        for desk in started.values():
            desk.stop()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, desks: dict[str, HubDesk]
) -> Iterator[LocalStack]:
    config = StackConfig.with_free_ports(REPO_ROOT, tmp_path_factory.mktemp("handoff-stack"))
    config.extra_env = {k: v for desk in desks.values() for k, v in desk.stack_env().items()}
    config.hub_backoff_base = 1  # seconds: retries come quickly in tests
    config.hub_backoff_max = 1
    config.hub_max_attempts = 3
    config.outbox_visibility_timeout = 5
    # Order is asserted strictly here; skipping a gap that never fills is tested on a clock in
    # tests/unit. A loaded CI machine can take longer than the default 10 s to land 24
    # concurrent writes on one conversation, so the window is wider than any test needs.
    config.handoff_reorder_window = 120
    # Pull hubs (Salesforce, Dynamics 365): short windows, so every test crosses job handovers.
    config.hub_pull_window = 4
    with LocalStack(config) as running:
        for desk in desks.values():
            desk.webhook_url = config.function_url("handoff")
        yield running


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> CopilotClient:
    return stack.copilot_client()


@pytest.fixture(params=HUBS)
def hub(
    request: pytest.FixtureRequest, desks: dict[str, HubDesk], stack: LocalStack
) -> Iterator[HubDesk]:
    desk = desks[request.param]
    yield desk
    desk.fail_with = None
    end_open_handoffs(desk)


@pytest.fixture(params=NAMED)
def named_hub(
    request: pytest.FixtureRequest, desks: dict[str, HubDesk], stack: LocalStack
) -> Iterator[HubDesk]:
    yield desks[request.param]
    end_open_handoffs(desks[request.param])


def end_open_handoffs(desk: HubDesk) -> None:
    """Hand-offs a test left open would keep their hub busy for the rest of the module (pull
    hubs: a job every few seconds each): the agent ends them."""
    for session in desk.sessions():
        if session.status != "ended":
            with contextlib.suppress(Exception):
                desk.end(session.handoff_id)


@pytest.fixture
def desk(desks: dict[str, HubDesk], stack: LocalStack) -> AgentDesk:
    generic = desks["generic"]
    assert isinstance(generic, AgentDesk)
    return generic


def copilot_with_hub(client: CopilotClient, desk: HubDesk, **hub: Any) -> str:
    spec = {"name": "Northwind", "hub": desk.hub_settings(**hub)}
    copilot_id = client.create_copilot(spec).copilot_id
    desk.connect_copilot(copilot_id)
    return copilot_id


def page(client: CopilotClient, conv: str, token: str) -> list[Message]:
    return client.messages(conv, token).messages


def escalate(
    client: CopilotClient, desk: HubDesk, copilot_id: str, **variables: str
) -> tuple[str, str, DeskSession]:
    started = client.start(copilot_id, variables=variables or None)
    conv, token = started.conversation_id, started.token
    turn = client.send(conv, token, "I want to talk to a person")
    assert turn.state == "handoff_requested"
    return conv, token, desk.wait_for_session(conv)


def status_of(response: requests.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["results"][0]["status"])


def test_escalation_agent_chat_both_ways_in_order_then_the_copilot_resumes(
    client: CopilotClient, hub: HubDesk
) -> None:
    desk = hub
    copilot_id = copilot_with_hub(
        client, desk, queue="bikes", agent_note="Loyal customer", skill="repairs"
    )
    started = client.start(copilot_id, variables={"name": "Ann"})
    conv, token = started.conversation_id, started.token
    assert client.send(conv, token, "Can I pay for a repair with bitcoin?").state == "bot"
    client.send(conv, token, "talk to a person")
    session = desk.wait_for_session(conv)

    if desk.announces_queue:  # the customer hears their place in the queue while waiting
        wait_for(
            lambda: any(m.event == "handoff_queued" for m in page(client, conv, token)),
            what="the queue position",
        )
    # What the hub holds in its own fields (each emulator reads the context back from them).
    context = session.context
    assert session.initiate, "the hub's native start payload"
    assert context["va_ConversationId"] == conv
    assert context["va_LastTopic"] == "Escalate"
    assert context["va_Phrases"] == ["Can I pay for a repair with bitcoin?", "talk to a person"]
    assert context["va_AgentMessage"] == "Loyal customer"
    assert context["va_BotName"] == "Northwind" and context["name"] == "Ann"
    assert session.routing == {"queue": "bikes", "skill": "repairs"}
    assert "Can I pay for a repair with bitcoin?" in session.unanswered_questions
    assert "bitcoin" in (session.summary_text or "")
    said = [a["text"] for a in session.transcript]
    assert "Can I pay for a repair with bitcoin?" in said

    assert desk.join(conv).ok and desk.typing(conv).ok
    assert desk.say(conv, "Hi Ann, Alex here. How can I help?").ok
    for text in ("My chain snapped", "on the Seattle ride", "can you help?"):
        assert [m.role for m in client.send(conv, token, text).messages] == ["customer"]
    assert desk.wait_for_customer(conv, 3) == [
        "My chain snapped",
        "on the Seattle ride",
        "can you help?",
    ]
    desk.say(conv, "Sure, bring it to the workshop.")
    desk.say(conv, "We fix chains while you wait.")
    assert desk.end(conv).ok

    messages = wait_for(
        lambda: (m := page(client, conv, token)) and m[-1].role == "copilot" and m,
        what="the copilot to resume",
    )
    expected = [
        ("system", "handoff_requested"),
        *([("system", "agent_joined")] if "joined" in desk.reported else []),
        *([("system", "agent_typing")] if "typing" in desk.reported else []),
        ("agent", None),
        ("customer", None),
        ("customer", None),
        ("customer", None),
        ("agent", None),
        ("agent", None),
        ("system", "handoff_ended"),
        ("copilot", None),
        ("copilot", None),  # the survey: how did it go? (copilot.conversation.survey)
    ]
    queued = [m for m in messages if m.event == "handoff_queued"]  # the hub's waiting notices
    assert bool(queued) == desk.announces_queue
    shown = [(m.role, m.event) for m in messages[4:] if m.event != "handoff_queued"]
    assert shown == expected, [(m.role, m.event, m.text) for m in messages]
    name = "Alex" if desk.names_agents else "Agent"  # LivePerson never names the agent
    assert [m.author for m in messages if m.role == "agent"] == [name] * 3
    assert [m.seq for m in messages] == list(range(1, len(messages) + 1))
    resumed = client.send(conv, token, "thanks!")
    assert resumed.state == "bot" and [m.role for m in resumed.messages] == ["customer", "copilot"]
    time.sleep(0.5)
    assert desk.session(conv).customer_texts == [
        "My chain snapped",
        "on the Seattle ride",
        "can you help?",
    ]


def test_customer_messages_during_a_hub_outage_arrive_after_recovery_once_in_order(
    client: CopilotClient, hub: HubDesk
) -> None:
    desk = hub
    copilot_id = copilot_with_hub(client, desk)
    conv, token, _ = escalate(client, desk, copilot_id)
    desk.join(conv)
    duplicates = desk.duplicates
    desk.fail_with = 503
    try:
        texts = [f"message {i}" for i in range(1, 5)]
        for text in texts:
            client.send(conv, token, text)
        wait_for(
            lambda: sum(r.status == 503 for r in desk.requests) >= 3,
            what="the outbox to retry against the outage",
        )
        assert desk.session(conv).customer_texts == []
    finally:
        desk.fail_with = None
    assert desk.wait_for_customer(conv, 4, timeout=15) == texts
    time.sleep(1.5)  # any stray redelivery would show up now
    assert desk.session(conv).customer_texts == texts
    assert desk.duplicates == duplicates


def test_duplicate_and_out_of_order_webhooks_apply_once_in_hub_order(
    client: CopilotClient, hub: HubDesk
) -> None:
    desk = hub
    copilot_id = copilot_with_hub(client, desk)
    conv, token, session = escalate(client, desk, copilot_id)
    desk.join(conv)
    one, two, three = (desk.event(session, "message", text=t) for t in ("1", "2", "3"))
    if desk.ordered:  # the hub numbers its events: the copilot restores their order
        results = [status_of(desk.deliver(session, e)) for e in (three, two, two)]
        assert results == ["held", "held", "duplicate"]
        assert status_of(desk.deliver(session, one)) == "applied"
        assert status_of(desk.deliver(session, one)) == "duplicate"
    else:  # arrival order (the hub gives no numbers): each once, however often delivered
        for event in (one, two, three):
            assert status_of(desk.deliver(session, event)) == "applied"
            assert status_of(desk.deliver(session, event)) == "duplicate"
    agent_said = [m.text for m in page(client, conv, token) if m.role == "agent"]
    assert agent_said == ["1", "2", "3"]
    # (A gap that never fills is skipped after the reorder window: tests/unit, on a clock.)


def test_forged_unsigned_stale_replayed_and_malformed_webhooks_are_rejected(
    client: CopilotClient, hub: HubDesk
) -> None:
    desk = hub
    copilot_id = copilot_with_hub(client, desk)
    conv, token, session = escalate(client, desk, copilot_id)
    desk.join(conv)
    before = client.messages(conv, token).last_seq
    event = desk.event(session, "message", text="Click this link to win")
    for bad in desk.tampered(session, event):
        assert bad.response.status_code == bad.status, (bad.what, bad.response.text)
        assert set(bad.response.json()) == {"error"}, bad.what
    assert client.messages(conv, token).last_seq == before  # nothing changed

    first, replay = desk.replayed(session, event)  # captured and sent again
    assert status_of(first) == "applied"
    assert status_of(replay) == "duplicate"
    assert [m.text for m in page(client, conv, token)].count("Click this link to win") == 1


def test_an_expired_hub_token_is_renewed_without_losing_a_message(
    client: CopilotClient, named_hub: HubDesk
) -> None:
    desk = named_hub
    copilot_id = copilot_with_hub(client, desk)
    conv, token, _ = escalate(client, desk, copilot_id)
    desk.say(conv, "Hello, how can I help?")
    client.send(conv, token, "before")
    assert desk.wait_for_customer(conv, 1) == ["before"]
    desk.expire_tokens()  # every token the hub gave the copilot is refused from now on
    for text in ("after 1", "after 2"):
        client.send(conv, token, text)
    assert desk.wait_for_customer(conv, 3, timeout=15) == ["before", "after 1", "after 2"]
    time.sleep(1)
    assert desk.session(conv).customer_texts == ["before", "after 1", "after 2"]


def test_business_hours_no_hub_and_no_agents_give_the_escalate_link(
    client: CopilotClient, desk: AgentDesk
) -> None:
    today = datetime.now(UTC).strftime("%a").lower()
    other_day = next(d for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun") if d != today)
    closed = copilot_with_hub(
        client,
        desk,
        business_hours=[{"days": [other_day], "start": "00:00", "end": "24:00"}],
        timezone="UTC",
    )
    no_hub = client.create_copilot({"name": "Plain"}).copilot_id
    for copilot_id in (closed, no_hub):
        started = client.start(copilot_id)
        turn = client.send(started.conversation_id, started.token, "talk to a human")
        link = client.get_copilot(copilot_id).messages.escalate_link
        assert turn.state == "bot" and turn.messages[-1].text == link

    desk.reject_with = "no_agents"
    try:
        copilot_id = copilot_with_hub(client, desk)
        started = client.start(copilot_id)
        conv, token = started.conversation_id, started.token
        client.send(conv, token, "talk to a human")
        messages = wait_for(
            lambda: (m := page(client, conv, token)) and m[-1].role == "copilot" and m,
            what="the declined hand-off",
        )
    finally:
        desk.reject_with = None
    assert messages[-2].event == "handoff_failed"
    assert messages[-1].text == client.get_copilot(copilot_id).messages.escalate_link
    assert client.messages(conv, token).state == "bot"


def test_a_start_failing_after_retries_tells_the_customer(
    client: CopilotClient, desk: AgentDesk
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/handoff"  # nothing listens: every try fails
    copilot_id = copilot_with_hub(client, desk, url=nowhere)
    started = client.start(copilot_id)
    conv, token = started.conversation_id, started.token
    client.send(conv, token, "talk to a human")
    client.send(conv, token, "hello?")  # waits with the start; never sent
    messages = wait_for(
        lambda: (m := page(client, conv, token)) and m[-1].role == "copilot" and m,
        timeout=20,
        what="the hand-off to fail",
    )
    assert [(m.role, m.event) for m in messages[-2:]] == [
        ("system", "handoff_failed"),
        ("copilot", None),
    ]
    assert messages[-2].text == "Sorry, I couldn't reach an agent right now."
    assert messages[-1].text == client.get_copilot(copilot_id).messages.escalate_link
    assert client.messages(conv, token).state == "bot"


def test_cancel_by_word_and_endpoint(client: CopilotClient, hub: HubDesk) -> None:
    desk = hub
    copilot_id = copilot_with_hub(client, desk)
    conv, token, session = escalate(client, desk, copilot_id)
    turn = client.send(conv, token, "cancel")
    assert turn.state == "bot"
    assert [m.event for m in turn.messages] == [None, "handoff_cancelled", None]
    wait_for(lambda: session.status == "ended", what="the desk to hear of the cancel")

    client.send(conv, token, "talk to a person")
    second = wait_for(
        lambda: (s := desk.session(conv)) is not session and s, what="the second hand-off"
    )
    desk.join(conv)
    cancelled = client.cancel_handoff(conv, token)  # leaving the agent's chat
    assert cancelled.state == "bot"
    wait_for(lambda: second.status == "ended", what="the desk to hear the customer left")
    with pytest.raises(ApiError) as info:
        client.cancel_handoff(conv, token)
    assert info.value.status == 409
    late = desk.say(conv, "Are you still there?")  # the agent was too late: ignored
    assert status_of(late) == "ignored"
    assert "Are you still there?" not in [m.text for m in page(client, conv, token)]


def test_concurrent_agent_and_customer_messages_lose_and_duplicate_nothing(
    client: CopilotClient, hub: HubDesk
) -> None:
    desk = hub
    copilot_id = copilot_with_hub(client, desk)
    conv, token, session = escalate(client, desk, copilot_id)
    desk.join(conv)
    agent_events = [desk.event(session, "message", text=f"agent {i}") for i in range(12)]
    customer_texts = [f"customer {i}" for i in range(12)]
    jobs: list[Callable[[], Any]] = [
        lambda e=e: desk.deliver(session, e).raise_for_status() for e in agent_events
    ]
    jobs += [
        lambda t=t: CopilotClient(client.base_url).send(conv, token, t) for t in customer_texts
    ]
    random.Random(7).shuffle(jobs)
    assert run_concurrently(jobs) == []
    delivered = desk.wait_for_customer(conv, len(customer_texts), timeout=20)
    messages = page(client, conv, token)
    assert [m.seq for m in messages] == list(range(1, len(messages) + 1))
    agent_said = [m.text for m in messages if m.role == "agent"]
    expected = [f"agent {i}" for i in range(12)]
    if desk.ordered:
        assert agent_said == expected  # in the hub's order, whatever order they arrived in
    else:
        assert sorted(agent_said) == sorted(expected)  # arrival order: each once
    forwarded = [m.text for m in messages if m.role == "customer" and m.handoff_id]
    assert sorted(forwarded) == sorted(customer_texts)
    assert delivered == forwarded  # the hub got them once each, in the conversation's order


def test_the_desk_api_the_terminal_and_web_page_use(client: CopilotClient, desk: AgentDesk) -> None:
    """The desk's API is the same in front of every emulator (HubDesk): tested on the generic
    hub's; each hub's own fields reach it as the escalation case above shows."""
    from copilot_dev.desk_console import DeskApi

    copilot_id = copilot_with_hub(client, desk)
    conv, token, session = escalate(client, desk, copilot_id)
    api = DeskApi(desk.url, desk.token)
    waiting = [s for s in api.sessions() if s["handoff_id"] == session.handoff_id]
    assert waiting and waiting[0]["status"] == "waiting"
    detail = api.session(session.handoff_id)
    assert detail["context"]["va_ConversationId"] == conv and detail["transcript"]
    assert api.act(session.handoff_id, "say", agent="Sam", text="Hello from the web page")
    assert [(m.author, m.text) for m in page(client, conv, token) if m.role == "agent"] == [
        ("Sam", "Hello from the web page")
    ]
    auth = {"Authorization": f"Bearer {desk.token}"}
    form_post = requests.post(
        f"{desk.url}/api/sessions/{session.handoff_id}/end", data="x=1", headers=auth, timeout=5
    )
    assert form_post.status_code == 415  # only JSON: another site's form cannot drive the desk
    missing = requests.post(f"{desk.url}/api/sessions/nope/end", json={}, headers=auth, timeout=5)
    assert missing.status_code == 404
    assert "Agent desk" in requests.get(desk.url, timeout=5).text


def test_the_desk_wants_its_token_and_its_own_host(client: CopilotClient, desk: AgentDesk) -> None:
    """Anyone who reaches the desk's API would read every handed-off conversation and speak as
    the agent: without the token nothing is read or said, and a page on another host name
    (DNS rebinding to 127.0.0.1) is turned away even with it."""
    from copilot_dev.desk_console import DeskApi

    copilot_id = copilot_with_hub(client, desk)
    conv, token, session = escalate(client, desk, copilot_id)
    base, hid = desk.url, session.handoff_id
    say = f"{base}/api/sessions/{hid}/say"
    for headers, status in (
        ({}, 401),
        ({"Authorization": "Bearer guessed"}, 403),
        ({"Authorization": f"Basic {desk.token}"}, 401),
    ):
        assert (
            requests.get(f"{base}/api/sessions", headers=headers, timeout=5).status_code == status
        )
        assert (
            requests.get(f"{base}/api/sessions/{hid}", headers=headers, timeout=5).status_code
            == status
        )
        sent = requests.post(say, json={"text": "I am the agent"}, headers=headers, timeout=5)
        assert sent.status_code == status
    port = base.rsplit(":", 1)[1]
    rebound = {"Authorization": f"Bearer {desk.token}", "Host": f"evil.example:{port}"}
    assert requests.get(f"{base}/api/sessions", headers=rebound, timeout=5).status_code == 421
    assert requests.get(base, headers={"Host": "evil.example"}, timeout=5).status_code == 421
    assert not [m for m in page(client, conv, token) if m.role == "agent"]
    assert desk.token not in requests.get(base, timeout=5).text  # the page carries no secret
    api = DeskApi(base, desk.token)
    assert [s["handoff_id"] for s in api.sessions()].count(hid) == 1
    assert api.act(hid, "end")
    assert api.act(session.handoff_id, "end")
    assert client.messages(conv, token).state == "bot"
