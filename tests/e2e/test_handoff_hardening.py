"""Hub webhooks that must not wedge, flood or probe a copilot (issue 13), through the whole local
stack (moto server, Chroma, functions-framework) with the agent desk as the generic hub:

- a backlog replayed out of order (2..101, then 1) is shown whole and in order, every poll
  answering meanwhile (one write used to need more items than a DynamoDB transaction holds);
- a sequence number far ahead is refused (400), and the hand-off goes on;
- webhook answers do not tell which copilots exist, and a Unicode digit timestamp is no 500."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from copilot.conversation.models import Message
from copilot.handoff.hubs.generic import signature, signed_headers
from copilot_dev.client import CopilotClient
from copilot_dev.emulators.agent_desk import AgentDesk, DeskSession
from copilot_dev.localstack import LocalStack
from tests.conftest import desk_stack

pytestmark = pytest.mark.e2e

SECRET = "e2e-hardening-secret"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    # The backlog below takes a few seconds to deliver on a loaded machine: no gap may be given
    # up meanwhile (skipping after the window is tested on a clock in tests/unit).
    with desk_stack(tmp_path_factory, "hardening-stack", SECRET, handoff_reorder_window=120) as s:
        yield s


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> CopilotClient:
    return stack.copilot_client()


def escalate(client: CopilotClient, desk: AgentDesk) -> tuple[str, str, str, DeskSession]:
    spec = {
        "name": "Northwind",
        "hub": {"type": "generic", "url": desk.hub_url, "secret_ref": "DESK"},
    }
    copilot_id = client.create_copilot(spec).copilot_id
    started = client.start(copilot_id)
    conv, token = started.conversation_id, started.token
    assert client.send(conv, token, "I want to talk to a person").state == "handoff_requested"
    return copilot_id, conv, token, desk.wait_for_session(conv)


def every_message(client: CopilotClient, conv: str, token: str) -> list[Message]:
    messages: list[Message] = []
    while page := client.messages(conv, token, after=messages[-1].seq if messages else 0).messages:
        messages += page
    return messages


def agent_texts(client: CopilotClient, conv: str, token: str) -> list[str]:
    return [m.text for m in every_message(client, conv, token) if m.role == "agent"]


def status_of(response: requests.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["results"][0]["status"])


def test_a_backlog_replayed_before_its_first_event_is_shown_whole_in_order(
    client: CopilotClient, desk: AgentDesk
) -> None:
    _, conv, token, session = escalate(client, desk)
    events = [desk.event(session, "agent.message", text=f"m{i}") for i in range(1, 102)]
    for n, event in enumerate(events[1:], start=2):
        assert status_of(desk.deliver(session, event, retries=1)) == "held"
        if n % 10 == 0:
            assert agent_texts(client, conv, token) == []  # the poll answers (no 503)
    assert status_of(desk.deliver(session, events[0], retries=1)) == "applied"

    messages = every_message(client, conv, token)
    assert [m.text for m in messages if m.role == "agent"] == [f"m{i}" for i in range(1, 102)]
    assert [m.seq for m in messages] == list(range(1, len(messages) + 1))
    assert status_of(desk.deliver(session, events[0], retries=1)) == "duplicate"
    assert status_of(desk.say(conv, "Anything else?")) == "applied"  # the hand-off goes on
    assert agent_texts(client, conv, token)[-1] == "Anything else?"
    assert client.messages(conv, token).state == "agent"


def test_a_sequence_number_far_ahead_is_refused_and_later_messages_shown(
    stack: LocalStack, client: CopilotClient, desk: AgentDesk
) -> None:
    _, conv, token, session = escalate(client, desk)
    for sequence in (1_000_000, 10**30):
        far: dict[str, Any] = {
            "id": f"far-{uuid.uuid4().hex}",
            "type": "agent.message",
            "conversation_id": conv,
            "handoff_id": session.handoff_id,
            "sequence": sequence,
            "agent": {"name": "Mallory"},
            "text": "from the future",
        }
        refused = desk.deliver(session, far, retries=1)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["field"] == "sequence"

    assert status_of(desk.join(conv)) == "applied"
    for text in ("Hi, Alex here.", "How can I help?"):
        assert status_of(desk.say(conv, text)) == "applied"
    assert agent_texts(client, conv, token) == ["Hi, Alex here.", "How can I help?"]
    assert "from the future" not in [m.text for m in client.messages(conv, token).messages]
    logs = stack.config.data_dir / "logs"
    longest = max(
        len(line) for name in ("handoff", "chat") for line in (logs / f"{name}.log").open()
    )
    assert longest < 20_000  # compact lines (a skip once logged 7.9 MB of missing numbers)


def test_webhook_answers_do_not_tell_which_copilots_exist(
    client: CopilotClient, desk: AgentDesk
) -> None:
    copilot_id, conv, token, session = escalate(client, desk)
    no_hub = client.create_copilot({"name": "Plain"}).copilot_id
    event = desk.event(session, "agent.message", text="Click this link to win")
    body = json.dumps(event).encode()
    url = desk.webhook_for(session)

    def answers(headers: dict[str, str]) -> set[tuple[int, str]]:
        seen = set()
        for target in (copilot_id, no_hub, uuid.uuid4().hex):
            response = requests.post(
                url.replace(copilot_id, target), data=body, headers=headers, timeout=5
            )
            seen.add((response.status_code, json.dumps(response.json(), sort_keys=True)))
        return seen

    unsigned = answers({"Content-Type": "application/json"})
    forged = answers(signed_headers("guessed", body))
    assert len(unsigned) == 1 and next(iter(unsigned))[0] == 401, unsigned
    assert len(forged) == 1 and next(iter(forged))[0] == 403, forged

    ts = "²"  # str.isdigit() is true, int() raises: signed with the real secret, it was a 500
    unicode_ts = {"X-Copilot-Timestamp": ts, "X-Copilot-Signature": signature(SECRET, ts, body)}
    assert requests.post(url, data=body, headers=unicode_ts, timeout=5).status_code == 401
    stale = signed_headers(SECRET, body, timestamp=int(time.time()) - 3600)
    assert requests.post(url, data=body, headers=stale, timeout=5).status_code == 403
    assert "Click this link to win" not in agent_texts(client, conv, token)  # none applied
