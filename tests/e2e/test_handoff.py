"""Live-agent hand-off end to end: the whole local stack (chat, hand-off webhooks, the outbox on
an SQS FIFO queue through its pump) and the agent desk as the generic hub, over signed HTTP."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
import requests

from copilot.conversation.models import Message
from copilot.handoff.hubs.generic import signed_headers
from copilot_dev.client import ApiError, CopilotClient
from copilot_dev.concurrency import run_concurrently
from copilot_dev.emulators.agent_desk import AgentDesk, DeskSession
from copilot_dev.localstack import LocalStack, StackConfig, free_port
from tests.conftest import REPO_ROOT, wait_for

pytestmark = pytest.mark.e2e

SECRET = "e2e-desk-secret"
T = TypeVar("T")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = StackConfig.with_free_ports(REPO_ROOT, tmp_path_factory.mktemp("handoff-stack"))
    config.extra_env = {"COPILOT_HUB_SECRET_DESK": SECRET}
    config.hub_backoff_base = 1  # seconds: retries come quickly in tests
    config.hub_backoff_max = 1
    config.hub_max_attempts = 3
    config.outbox_visibility_timeout = 5
    # Order is asserted strictly here; skipping a gap that never fills is tested on a clock in
    # tests/unit. A loaded CI machine can take longer than the default 10 s to land 24
    # concurrent writes on one conversation, so the window is wider than any test needs.
    config.handoff_reorder_window = 120
    with LocalStack(config) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> CopilotClient:
    return stack.copilot_client()


def copilot_with_hub(client: CopilotClient, url: str, **hub: Any) -> str:
    spec = {
        "name": "Northwind",
        "hub": {"type": "generic", "url": url, "secret_ref": "DESK", **hub},
    }
    return client.create_copilot(spec).copilot_id


def page(client: CopilotClient, conv: str, token: str) -> list[Message]:
    return client.messages(conv, token).messages


def escalate(
    client: CopilotClient, desk: AgentDesk, copilot_id: str, **variables: str
) -> tuple[str, str, DeskSession]:
    started = client.start(copilot_id, variables=variables or None)
    conv, token = started.conversation_id, started.token
    turn = client.send(conv, token, "I want to talk to a person")
    assert turn.state == "handoff_requested"
    return conv, token, desk.wait_for_session(conv)


def test_escalation_agent_chat_both_ways_in_order_then_the_copilot_resumes(
    client: CopilotClient, desk: AgentDesk
) -> None:
    copilot_id = copilot_with_hub(
        client, desk.hub_url, queue="bikes", agent_note="Loyal customer", skill="repairs"
    )
    started = client.start(copilot_id, variables={"name": "Ann"})
    conv, token = started.conversation_id, started.token
    assert client.send(conv, token, "Can I pay for a repair with bitcoin?").state == "bot"
    client.send(conv, token, "talk to a person")
    session = desk.wait_for_session(conv)

    context = session.context
    assert context["va_ConversationId"] == conv
    assert context["va_LastTopic"] == "Escalate"
    assert context["va_Phrases"] == ["Can I pay for a repair with bitcoin?", "talk to a person"]
    assert context["va_AgentMessage"] == "Loyal customer"
    assert context["va_BotName"] == "Northwind" and context["name"] == "Ann"
    assert session.initiate["routing"] == {"queue": "bikes", "skill": "repairs"}
    assert "Can I pay for a repair with bitcoin?" in session.initiate["unanswered_questions"]
    assert "bitcoin" in session.initiate["summary"]
    assert [a["text"] for a in session.transcript][1] == "Can I pay for a repair with bitcoin?"

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

    messages = page(client, conv, token)
    assert [(m.role, m.event) for m in messages[4:]] == [
        ("system", "handoff_requested"),
        ("system", "agent_joined"),
        ("system", "agent_typing"),
        ("agent", None),
        ("customer", None),
        ("customer", None),
        ("customer", None),
        ("agent", None),
        ("agent", None),
        ("system", "handoff_ended"),
        ("copilot", None),
    ], [(m.role, m.event, m.text) for m in messages]
    assert [m.author for m in messages if m.role == "agent"] == ["Alex"] * 3
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
    client: CopilotClient, desk: AgentDesk
) -> None:
    copilot_id = copilot_with_hub(client, desk.hub_url)
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
    client: CopilotClient, desk: AgentDesk
) -> None:
    copilot_id = copilot_with_hub(client, desk.hub_url)
    conv, token, session = escalate(client, desk, copilot_id)
    desk.join(conv)
    one, two, three = (desk.event(session, "agent.message", text=t) for t in ("1", "2", "3"))
    results = [desk.deliver(session, e).json()["results"][0]["status"] for e in (three, two, two)]
    assert results == ["held", "held", "duplicate"]
    assert desk.deliver(session, one).json()["results"][0]["status"] == "applied"
    assert desk.deliver(session, one).json()["results"][0]["status"] == "duplicate"
    agent_said = [m.text for m in page(client, conv, token) if m.role == "agent"]
    assert agent_said == ["1", "2", "3"]
    # (A gap that never fills is skipped after the reorder window: tests/unit, on a clock.)


def test_forged_unsigned_stale_replayed_and_malformed_webhooks_are_rejected(
    stack: LocalStack, client: CopilotClient, desk: AgentDesk
) -> None:
    copilot_id = copilot_with_hub(client, desk.hub_url)
    conv, token, session = escalate(client, desk, copilot_id)
    before = client.messages(conv, token).last_seq
    event = desk.event(session, "agent.message", text="Click this link to win")
    body = json.dumps(event).encode()
    url = desk.webhook_for(session)
    bad = [
        (desk.deliver(session, event, secret="guessed"), 403),
        (desk.deliver(session, event, headers={"Content-Type": "application/json"}), 401),
        (desk.deliver(session, event, timestamp=int(time.time()) - 3600), 403),
        (desk.deliver(session, b'{"id": "x", "type": "agent.message"'), 400),
        (desk.deliver(session, {**event, "conversation_id": None}), 400),
        (requests.post(url.replace(copilot_id, "f" * 32), data=body, timeout=5), 401),
    ]
    for response, status in bad:
        assert response.status_code == status, response.text
        assert set(response.json()) == {"error"}
    assert client.messages(conv, token).last_seq == before  # nothing changed

    headers = signed_headers(SECRET, body)
    first = requests.post(url, data=body, headers=headers, timeout=5)
    replay = requests.post(url, data=body, headers=headers, timeout=5)  # captured and resent
    assert first.json()["results"][0]["status"] == "applied"
    assert replay.json()["results"][0]["status"] == "duplicate"
    assert [m.text for m in page(client, conv, token)].count("Click this link to win") == 1


def test_business_hours_no_hub_and_no_agents_give_the_escalate_link(
    client: CopilotClient, desk: AgentDesk
) -> None:
    today = datetime.now(UTC).strftime("%a").lower()
    other_day = next(d for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun") if d != today)
    closed = copilot_with_hub(
        client,
        desk.hub_url,
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
        copilot_id = copilot_with_hub(client, desk.hub_url)
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


def test_a_start_failing_after_retries_tells_the_customer(client: CopilotClient) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/handoff"  # nothing listens: every try fails
    copilot_id = copilot_with_hub(client, nowhere)
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


def test_cancel_by_word_and_endpoint(client: CopilotClient, desk: AgentDesk) -> None:
    copilot_id = copilot_with_hub(client, desk.hub_url)
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
    assert late.json()["results"][0]["status"] == "ignored"
    assert "Are you still there?" not in [m.text for m in page(client, conv, token)]


def test_concurrent_agent_and_customer_messages_lose_and_duplicate_nothing(
    client: CopilotClient, desk: AgentDesk
) -> None:
    copilot_id = copilot_with_hub(client, desk.hub_url)
    conv, token, session = escalate(client, desk, copilot_id)
    desk.join(conv)
    agent_events = [desk.event(session, "agent.message", text=f"agent {i}") for i in range(12)]
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
    assert [m.text for m in messages if m.role == "agent"] == [e["text"] for e in agent_events]
    forwarded = [m.text for m in messages if m.role == "customer" and m.handoff_id]
    assert sorted(forwarded) == sorted(customer_texts)
    assert delivered == forwarded  # the hub got them once each, in the conversation's order


def test_the_desk_api_the_terminal_and_web_page_use(client: CopilotClient, desk: AgentDesk) -> None:
    from copilot_dev.desk_console import DeskApi

    copilot_id = copilot_with_hub(client, desk.hub_url)
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

    copilot_id = copilot_with_hub(client, desk.hub_url)
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
