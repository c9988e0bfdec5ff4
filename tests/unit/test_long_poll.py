"""The long-poll (GET messages ?wait=S) on in-memory stores and a fake clock: its waits take no
real time, and what arrives while it waits is written by the fake clock's sleep."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from functions_framework import create_app

from copilot.admin.models import CopilotSpec
from copilot.bootstrap import set_container
from copilot.config import Settings
from copilot.conversation.models import MAX_WAIT_SECONDS, Message
from copilot.conversation.service import WAIT_PAUSES, ConversationService
from copilot.ports import ConversationStore
from copilot_dev.fakes import in_memory_container
from tests.conftest import REPO_ROOT
from tests.unit.test_handoff_service import World, escalated, world  # noqa: F401 (fixture)


class FakeClock:
    """Monotonic seconds that move only when the service sleeps; ``on_sleep`` runs after each
    sleep (a message arriving while the poll waits)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[], None] = lambda: None

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds
        self.on_sleep()


class CountingStore:
    """Counts the reads a long-poll makes of the real in-memory store underneath."""

    def __init__(self, inner: ConversationStore) -> None:
        self.inner = inner
        self.gets = 0
        self.queries = 0

    def get(self, conversation_id: str) -> Any:
        self.gets += 1
        return self.inner.get(conversation_id)

    def messages_after(self, conversation_id: str, after: int, limit: int = 100) -> Any:
        self.queries += 1
        return self.inner.messages_after(conversation_id, after, limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def setup(clock: FakeClock) -> tuple[ConversationService, CountingStore, str, str]:
    container = in_memory_container()
    store = CountingStore(container.conversations)
    chat = ConversationService(
        container.copilots,
        store,  # type: ignore[arg-type]
        lambda: container.answerer,
        clock=clock,
        sleep=clock.sleep,
    )
    copilot = container.admin.create(CopilotSpec(name="Bikes"))
    started = chat.start(copilot.copilot_id)
    return chat, store, started.conversation_id, started.token


def agent_says(store: CountingStore, conversation_id: str, text: str) -> None:
    """A message stored the way every writer stores one: a conditional append."""
    conversation = store.inner.get(conversation_id)
    assert conversation is not None
    message = Message(seq=conversation.last_seq + 1, role="agent", text=text, author="Bob")
    store.inner.append(conversation, [message])


def test_returns_at_once_when_there_are_messages(setup: Any, clock: FakeClock) -> None:
    chat, store, conv, token = setup
    page = chat.messages(conv, token, 0, 100, wait=20)
    assert [m.seq for m in page.messages] == [1] and page.last_seq == 1
    assert clock.sleeps == [] and store.queries == 1


def test_returns_when_a_message_arrives_during_the_wait(setup: Any, clock: FakeClock) -> None:
    chat, store, conv, token = setup
    clock.on_sleep = lambda: (
        agent_says(store, conv, "Hi, Bob here") if len(clock.sleeps) == 7 else None
    )
    page = chat.messages(conv, token, 1, 100, wait=20)
    assert [(m.seq, m.role, m.text) for m in page.messages] == [(2, "agent", "Hi, Bob here")]
    assert page.last_seq == 2
    # It stopped waiting at the read after the message (the 7th pause), and only then queried
    # the messages: each pause before cost one read of the conversation, nothing else.
    assert len(clock.sleeps) == 7 and clock.sleeps[:5] == list(WAIT_PAUSES)
    assert store.gets == 8 and store.queries == 1
    assert clock.now - 1000 < 2  # well before the 20 s wait was over


def test_a_page_holds_no_message_newer_than_its_state(setup: Any, clock: FakeClock) -> None:
    """A write between the poll's read of the conversation and its message query (the agent's
    end, then the copilot's "I'm back" with the state back to the copilot) must not come back
    with the earlier read's state: the client would hold the newest seq with the old state and
    wait a whole long-poll for a change it already has. The page stops at the state's seq; the
    next poll brings the rest, with its state."""
    chat, store, conv, token = setup
    agent_says(store, conv, "Alex ended the chat.")
    query = store.messages_after

    def racing_query(conversation_id: str, after: int, limit: int = 100) -> Any:
        agent_says(store, conv, "I'm back")  # lands after the read, before the query
        store.messages_after = query  # type: ignore[method-assign]
        return query(conversation_id, after, limit)

    store.messages_after = racing_query  # type: ignore[method-assign]
    page = chat.messages(conv, token, 1, 100, wait=20)
    assert [m.text for m in page.messages] == ["Alex ended the chat."]
    assert page.last_seq == 2
    rest = chat.messages(conv, token, page.last_seq, 100, wait=20)
    assert [m.text for m in rest.messages] == ["I'm back"] and rest.last_seq == 3


def test_returns_an_empty_page_when_the_wait_is_over(setup: Any, clock: FakeClock) -> None:
    chat, store, conv, token = setup
    page = chat.messages(conv, token, 1, 100, wait=3)
    assert page.messages == [] and page.last_seq == 1
    assert clock.now == pytest.approx(1003)  # waited the whole 3 s, not a pause longer
    assert max(clock.sleeps) <= WAIT_PAUSES[-1]
    assert store.queries == 0  # nothing new: the message query was never made


def test_wait_zero_answers_at_once_as_before(setup: Any, clock: FakeClock) -> None:
    chat, store, conv, token = setup
    page = chat.messages(conv, token, 1, 100)
    assert page.messages == [] and page.last_seq == 1 and clock.sleeps == []
    assert store.gets == 1 and store.queries == 0  # one read of the conversation, no query


def test_the_reads_while_waiting_are_bounded(setup: Any, clock: FakeClock) -> None:
    chat, store, conv, token = setup
    chat.messages(conv, token, 1, 100, wait=MAX_WAIT_SECONDS)
    # 4 reads a second once the pauses reach their longest, plus the first few quicker ones.
    assert store.gets <= 4 * MAX_WAIT_SECONDS + len(WAIT_PAUSES) + 1


def test_an_agent_event_held_for_a_gap_is_applied_while_the_poll_waits(world: World) -> None:  # noqa: F811
    """A held event whose reorder window runs out during the wait is applied (as a short poll
    would) and returned by the same long-poll."""
    copilot_id, conv, token = escalated(world)
    world.send(copilot_id, world.event(conv, "agent_joined"))
    world.event(conv, "agent_message", text="late")  # sequence 2 never comes
    assert world.send(copilot_id, world.event(conv, "agent_message", text="after")) == ["held"]
    last = world.chat.messages(conv, token, 0, 500).last_seq
    clock = FakeClock()

    def tick(seconds: float) -> None:
        clock.sleep(seconds)
        world.clock.now += timedelta(seconds=seconds)  # the hand-off service's wall clock

    chat = ConversationService(
        world.copilots,
        world.store,
        lambda: None,  # type: ignore[arg-type, return-value]  # never asked: no questions
        handoff=world.handoff,
        clock=clock,
        sleep=tick,
    )
    page = chat.messages(conv, token, last, 100, wait=20)
    assert [(m.role, m.text) for m in page.messages] == [("agent", "after")]
    assert 10 <= clock.now - 1000 < 11  # the 10 s reorder window, then the next read


# --- through the HTTP route ---------------------------------------------------------------------


@pytest.fixture
def client() -> Iterator[Any]:
    set_container(in_memory_container(Settings(admin_api_key="admin-secret")))
    app = create_app("chat", str(REPO_ROOT / "functions" / "chat" / "main.py"))
    yield app.test_client()
    set_container(None)


@pytest.mark.parametrize("wait", ["-1", "21", "abc", "1.5", ""])
def test_a_bad_wait_is_a_400_naming_it(client: Any, wait: str) -> None:
    copilot = client.post(
        "/admin/copilots", json={"name": "Bikes"}, headers={"X-Admin-Key": "admin-secret"}
    ).json
    started = client.post(f"/copilots/{copilot['copilot_id']}/conversations").json
    response = client.get(
        f"/conversations/{started['conversation_id']}/messages?after=0&wait={wait}",
        headers={"Authorization": f"Bearer {started['token']}"},
    )
    assert response.status_code == 400
    assert response.json["error"]["field"] == "wait"


def test_the_route_long_polls_and_answers_at_once_when_messages_exist(client: Any) -> None:
    copilot = client.post(
        "/admin/copilots", json={"name": "Bikes"}, headers={"X-Admin-Key": "admin-secret"}
    ).json
    started = client.post(f"/copilots/{copilot['copilot_id']}/conversations").json
    response = client.get(
        f"/conversations/{started['conversation_id']}/messages?after=0&wait={MAX_WAIT_SECONDS}",
        headers={"Authorization": f"Bearer {started['token']}"},
    )
    assert response.status_code == 200 and [m["seq"] for m in response.json["messages"]] == [1]


def test_the_openapi_document_states_the_wait_bounds(client: Any) -> None:
    op = client.get("/openapi.json").json["paths"]["/conversations/{conversation_id}/messages"]
    [wait] = [p for p in op["get"]["parameters"] if p["name"] == "wait"]
    assert wait["in"] == "query" and not wait.get("required")
    assert wait["schema"] == {
        "type": "integer",
        "minimum": 0,
        "maximum": MAX_WAIT_SECONDS,
        "default": 0,
    }
