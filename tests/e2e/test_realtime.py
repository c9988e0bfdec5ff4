"""Real-time delivery end to end: long-polls (GET messages ?wait=S) on the local stack, with the
agent desk as the generic hub, answer when the agent speaks, not at the end of their wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from copilot.conversation.models import MessagesPage
from copilot_dev.client import CopilotClient
from copilot_dev.concurrency import run_concurrently
from copilot_dev.emulators.agent_desk import AgentDesk
from copilot_dev.localstack import LocalStack
from tests.conftest import desk_stack
from tests.e2e.test_handoff import copilot_with_hub, escalate

SECRET = "e2e-realtime-secret"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with desk_stack(tmp_path_factory, "realtime-stack", SECRET) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> CopilotClient:
    return stack.copilot_client()


class LongPoll(threading.Thread):
    """One long-poll on its own HTTP session; notes when it returned."""

    def __init__(self, stack: LocalStack, conv: str, token: str, after: int, wait: int) -> None:
        super().__init__(daemon=True)
        self.client = stack.copilot_client()
        self.args = (conv, token, after, wait)
        self.page: MessagesPage | None = None
        self.returned_at = 0.0

    def run(self) -> None:
        self.page = self.client.messages(*self.args)
        self.returned_at = time.perf_counter()


def test_a_long_poll_returns_the_agents_message_as_soon_as_it_is_said(
    stack: LocalStack, client: CopilotClient, desk: AgentDesk
) -> None:
    conv, token, _ = escalate(client, desk, copilot_with_hub(client, desk))
    assert desk.join(conv).ok
    after = client.messages(conv, token).last_seq  # the joined notice seen
    poll = LongPoll(stack, conv, token, after, wait=20)
    poll.start()
    time.sleep(1.5)  # the poll is waiting: nothing new yet
    assert poll.is_alive()
    said = time.perf_counter()
    assert desk.say(conv, "Hi, Alex here. How can I help?").ok
    poll.join(10)
    assert poll.page is not None, "the long-poll did not return"
    assert [(m.role, m.text) for m in poll.page.messages] == [
        ("agent", "Hi, Alex here. How can I help?")
    ]
    assert poll.page.state == "agent"
    latency = poll.returned_at - said
    assert latency < 0.75, f"agent -> long-poll return took {latency:.3f} s"


def test_a_long_poll_returns_typing_and_the_end_of_the_handoff(
    stack: LocalStack, client: CopilotClient, desk: AgentDesk
) -> None:
    conv, token, _ = escalate(client, desk, copilot_with_hub(client, desk))
    assert desk.join(conv).ok
    after = client.messages(conv, token).last_seq
    poll = LongPoll(stack, conv, token, after, wait=20)
    poll.start()
    assert desk.typing(conv).ok
    poll.join(10)
    assert poll.page is not None and [m.event for m in poll.page.messages] == ["agent_typing"]
    after = poll.page.last_seq
    poll = LongPoll(stack, conv, token, after, wait=20)
    poll.start()
    assert desk.end(conv).ok
    poll.join(10)
    assert poll.page is not None and poll.page.messages and poll.page.state == "bot"


def test_a_long_poll_with_nothing_new_returns_empty_after_its_wait(
    client: CopilotClient, desk: AgentDesk
) -> None:
    started = client.start(copilot_with_hub(client, desk))
    t0 = time.perf_counter()
    page = client.messages(started.conversation_id, started.token, after=1, wait=1)
    took = time.perf_counter() - t0
    assert page.messages == [] and page.last_seq == 1
    assert 1 <= took < 3


def test_waiting_long_polls_do_not_starve_other_requests(
    stack: LocalStack, client: CopilotClient, desk: AgentDesk
) -> None:
    """Twelve idle long-polls (more than the 8 threads the other functions get) are waiting while
    customers start conversations and send messages: those answer at their usual speed."""
    copilot_id = copilot_with_hub(client, desk)
    idle = client.start(copilot_id)
    polls = [LongPoll(stack, idle.conversation_id, idle.token, after=1, wait=5) for _ in range(12)]
    for poll in polls:
        poll.start()
    time.sleep(0.5)  # they are all waiting
    t0 = time.perf_counter()

    took: list[float] = []

    def turn() -> None:
        other = stack.copilot_client()
        started = other.start(copilot_id)
        other.send(started.conversation_id, started.token, "hello")
        took.append(time.perf_counter() - t0)

    assert run_concurrently([turn] * 4) == []
    assert len(took) == 4 and max(took) < 3, took
    assert all(poll.is_alive() for poll in polls)  # still waiting: they did not answer early
    for poll in polls:
        poll.join(10)
        assert poll.page is not None and poll.page.messages == []
