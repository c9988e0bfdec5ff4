"""Pull jobs (handoff/pull.py) on in-memory fakes: hubs with no webhook are read by one leased
job at a time, re-scheduled while the hand-off is open, and never after it closes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from copilot.admin.models import CopilotSpec
from copilot.admin.service import AdminService
from copilot.conversation.models import StartConversationRequest
from copilot.conversation.service import ConversationService
from copilot.errors import HubUnavailableError
from copilot.handoff.models import Agent, HubEvent, HubPullBatch, HubPullState, HubReceipt
from copilot.handoff.pull import job_body, parse_job
from copilot.handoff.service import HandoffConfig, HandoffService
from copilot_dev.collecting_hub import CollectingHub
from copilot_dev.fakes import (
    MemoryConversationStore,
    MemoryCopilotRegistry,
    MemoryDocumentStore,
    MemoryEventQueue,
    MemoryHubOutbox,
    StaticSecretStore,
)

SALESFORCE = {
    "type": "salesforce",
    "scrt_url": "https://northwind.my.salesforce-scrt.com",
    "org_id": "00D000000000001",
    "deployment": "Northwind_Web",
}


class PullingHub(CollectingHub):
    """A hub whose agent events are read by pulls: each pull yields the batches queued."""

    pull_window = 20.0

    def __init__(self) -> None:
        super().__init__()
        self.receipts = True
        self.batches: list[HubPullBatch] = []
        self.down = False
        self.seen_states: list[dict[str, Any]] = []

    def pull(
        self, hub: Any, secret: str, receipt: HubReceipt, state: dict[str, Any], until: float
    ) -> Iterator[HubPullBatch]:
        self.seen_states.append(dict(state))
        if self.down:
            raise HubUnavailableError("the hub is down")
        assert until > time.monotonic()
        while self.batches:
            yield self.batches.pop(0)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def world() -> Any:
    copilots, store, queue, hub = (
        MemoryCopilotRegistry(),
        MemoryConversationStore(),
        MemoryEventQueue(),
        PullingHub(),
    )
    clock = Clock()
    handoff = HandoffService(
        copilots,
        store,
        outbox=MemoryHubOutbox,
        secrets=lambda: StaticSecretStore({}),
        hubs=lambda name: hub,
        config=HandoffConfig(reorder_window=10, pull_window=5),
        clock=clock,
        pull_queue=lambda: queue,
    )
    chat = ConversationService(copilots, store, lambda: None, handoff=handoff)  # type: ignore[arg-type, return-value]
    admin = AdminService(copilots, MemoryDocumentStore())
    copilot_id = admin.create(CopilotSpec.model_validate({"name": "B", "hub": SALESFORCE}))
    started = chat.start(copilot_id.copilot_id, StartConversationRequest())
    conv, token = started.conversation_id, started.token
    assert chat.post(conv, token, "talk to a person").state == "handoff_requested"
    handoff.deliver(conv, 1)  # the start reaches the hub: its first pull job is scheduled
    return type("World", (), locals())


def event(kind: str, n: int, **fields: Any) -> HubEvent:
    return HubEvent(
        kind=kind, event_id=f"e{n}", hub_conversation_id="hub-" + fields.pop("conv"), **fields
    )  # type: ignore[arg-type]


def agent_texts(world: Any) -> list[str]:
    page = world.chat.messages(world.conv, world.token, 0, 100)
    return [m.text for m in page.messages if m.role == "agent"]


def test_a_started_hand_off_schedules_one_job_that_applies_batches_and_keeps_the_cursor(
    world: Any,
) -> None:
    assert [parse_job(b) for b in world.queue.messages] == [
        (world.conv, world.store.get(world.conv).handoff.handoff_id)
    ]
    job = parse_job(world.queue.messages.pop())
    assert job is not None
    alex = Agent(id="a1", name="Alex")
    world.hub.batches = [
        HubPullBatch(
            events=[event("agent_joined", 1, conv=world.conv, agent=alex)], state={"c": 1}
        ),
        HubPullBatch(
            events=[event("agent_message", 2, conv=world.conv, text="Hi")], state={"c": 2}
        ),
    ]
    world.handoff.run_pull(*job)
    assert agent_texts(world) == ["Hi"]
    pull = world.store.get(world.conv).handoff.pull
    assert pull.state == {"c": 2} and pull.lease_until is None and pull.jobs == 1
    assert [parse_job(b) for b in world.queue.messages] == [job]  # its successor, once

    world.queue.messages.clear()
    world.hub.batches = [
        HubPullBatch(events=[event("agent_message", 2, conv=world.conv, text="Hi")], state={}),
        HubPullBatch(
            events=[event("agent_message", 3, conv=world.conv, text="More")], state={"c": 3}
        ),
    ]
    world.handoff.run_pull(*job)
    assert world.hub.seen_states[-1] == {"c": 2}  # read on from the kept cursor
    assert agent_texts(world) == ["Hi", "More"]  # a batch read twice applies once


def test_a_job_finding_the_lease_held_stops_without_a_successor(world: Any) -> None:
    job = parse_job(world.queue.messages.pop())
    assert job is not None
    conversation = world.store.get(world.conv)
    held = conversation.handoff.model_copy(
        update={"pull": HubPullState(lease_until=world.clock.now + timedelta(seconds=30))}
    )
    world.store.append(conversation.model_copy(update={"handoff": held}), [])
    world.handoff.run_pull(*job)
    assert world.hub.seen_states == [] and world.queue.messages == []
    world.clock.now += timedelta(seconds=31)  # the holder died: its lease runs out
    world.handoff.run_pull(*job)
    assert len(world.hub.seen_states) == 1 and len(world.queue.messages) == 1


def test_jobs_stop_once_the_hand_off_ends_and_a_down_hub_is_tried_again(world: Any) -> None:
    job = parse_job(world.queue.messages.pop())
    assert job is not None
    world.hub.down = True
    world.handoff.run_pull(*job)
    assert world.queue.delays == [0, 2] and len(world.queue.messages) == 1  # again, 2 s later
    world.queue.messages.clear()
    world.hub.down = False
    world.hub.batches = [
        HubPullBatch(events=[event("ended", 9, conv=world.conv)], state={"c": 9}),
    ]
    world.handoff.run_pull(*job)
    assert world.chat.messages(world.conv, world.token, 0, 100).state == "bot"
    assert world.queue.messages == []  # closed: no successor
    world.handoff.run_pull(*job)  # a stray duplicate of the last message
    assert world.queue.messages == [] and len(world.hub.seen_states) == 2


def test_a_silent_pull_is_revived_by_the_customers_poll(world: Any) -> None:
    world.queue.messages.clear()  # the first job's message was lost (queue down)
    world.chat.messages(world.conv, world.token, 0, 100)
    assert world.queue.messages == []  # not silent long enough yet
    world.clock.now += timedelta(seconds=25)
    world.chat.messages(world.conv, world.token, 0, 100)
    assert [parse_job(b)[0] for b in world.queue.messages] == [world.conv]  # type: ignore[index]
    world.chat.messages(world.conv, world.token, 0, 100)
    assert len(world.queue.messages) == 1  # once per window


def test_job_messages_round_trip_and_others_are_not_jobs() -> None:
    assert parse_job(job_body("c1", "h1")) == ("c1", "h1")
    for body in ('{"conversation_id": "c1"}', "not json", '{"kind": "hub_pull"}', "[]"):
        assert parse_job(body) is None
