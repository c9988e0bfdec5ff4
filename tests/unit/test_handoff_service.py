"""The hand-off service on in-memory fakes of its ports and the collecting hub double."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from copilot.admin.models import CopilotSpec
from copilot.admin.service import AdminService
from copilot.conversation import survey
from copilot.conversation.dialog import OFFER_HANDOFF
from copilot.conversation.models import Message
from copilot.conversation.service import ConversationService
from copilot.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    HubUnavailableError,
    NotFoundError,
    UnauthorizedError,
    UnavailableError,
)
from copilot.handoff.customer import CONNECTING
from copilot.handoff.inbound import MAX_EVENTS_PER_WRITE, MAX_SKIPPED
from copilot.handoff.models import Agent, HubEvent, HubLink
from copilot.handoff.service import HandoffConfig, HandoffService, backoff_seconds
from copilot.knowledge.answer import Consulted
from copilot_dev.collecting_hub import CollectingHub
from copilot_dev.concurrency import run_concurrently
from copilot_dev.fakes import (
    MemoryConversationStore,
    MemoryCopilotRegistry,
    MemoryDocumentStore,
    MemoryHubOutbox,
    StaticSecretStore,
)

SECRET = "desk-secret"
MONDAY_10AM_PARIS = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


class NoAnswer:
    def consult(self, *args: Any, **kwargs: Any) -> Consulted:
        return Consulted(None)


class DynamoLimits(MemoryConversationStore):
    """The in-memory store with DynamoDB's limit on one write: a transaction of at most 100
    items (the conversation, its new messages, the claims, links and analytics events). ``budget``: writes that succeed
    before the store goes down (None: it stays up)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0
        self.budget: int | None = None

    def append(self, conversation: Any, messages: Sequence[Message], **kwargs: Any) -> Any:
        items = 1 + len(messages) + len(kwargs.get("claims", ())) + bool(kwargs.get("outcome"))
        items += len(kwargs.get("events", ())) + len(kwargs.get("links", ()))
        if items > 100:
            raise UnavailableError("ValidationException: at most 100 items in a transaction")
        if self.budget is not None:
            if self.budget <= 0:
                raise UnavailableError("the conversation store is unavailable")
            self.budget -= 1
        self.largest = max(self.largest, items)
        return super().append(conversation, messages, **kwargs)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    copilots: MemoryCopilotRegistry
    store: DynamoLimits
    outbox: MemoryHubOutbox
    hub: CollectingHub
    clock: Clock
    handoff: HandoffService
    chat: ConversationService
    admin: AdminService
    sequences: dict[str, int] = field(default_factory=dict)

    def copilot(self, **spec: Any) -> str:
        hub = {"type": "generic", "url": "http://hub.example/in", "secret_ref": "DESK"}
        body = {"name": "Bikes", "hub": hub, **spec}
        return self.admin.create(CopilotSpec.model_validate(body)).copilot_id

    def conversation(self, copilot_id: str, **variables: str) -> tuple[str, str]:
        from copilot.conversation.models import StartConversationRequest

        started = self.chat.start(copilot_id, StartConversationRequest(variables=variables))
        return started.conversation_id, started.token

    def texts(self, conversation_id: str, token: str) -> list[tuple[str, str]]:
        page = self.chat.messages(conversation_id, token, 0, 500)
        return [(m.role, m.text) for m in page.messages]

    def event(self, conversation_id: str, kind: str, **fields: Any) -> HubEvent:
        """The hub's next event in this conversation's current hand-off."""
        conversation = self.store.get(conversation_id)
        assert conversation and conversation.handoff
        hid = conversation.handoff.handoff_id
        self.sequences[hid] = self.sequences.get(hid, 0) + 1
        seq = fields.pop("sequence", self.sequences[hid])
        return HubEvent(
            kind=kind,  # type: ignore[arg-type]
            event_id=fields.pop("event_id", f"{hid}-{seq}"),
            conversation_id=conversation_id,
            handoff_id=hid,
            sequence=seq,
            agent=Agent(id="a1", name="Bob"),
            **fields,
        )

    def send(
        self, copilot_id: str, *events: HubEvent, secret: str = SECRET, hub: str = "generic"
    ) -> list[str]:
        ack = self.handoff.receive(hub, copilot_id, CollectingHub.request(list(events), secret))
        return [r.status for r in ack.results]


@pytest.fixture
def world() -> World:
    copilots, store = MemoryCopilotRegistry(), DynamoLimits()
    outbox, hub, clock = MemoryHubOutbox(), CollectingHub(), Clock(MONDAY_10AM_PARIS)
    handoff = HandoffService(
        copilots,
        store,
        outbox=lambda: outbox,
        secrets=lambda: StaticSecretStore({"DESK": SECRET}),
        hubs=lambda name: hub,
        config=HandoffConfig(reorder_window=10, max_attempts=3, reply_to="https://api.example"),
        clock=clock,
    )
    chat = ConversationService(copilots, store, lambda: NoAnswer(), handoff=handoff)  # type: ignore[arg-type, return-value]
    admin = AdminService(copilots, MemoryDocumentStore())
    return World(copilots, store, outbox, hub, clock, handoff, chat, admin)


def escalated(world: World, **spec: Any) -> tuple[str, str, str]:
    copilot_id = world.copilot(**spec)
    conv, token = world.conversation(copilot_id)
    turn = world.chat.post(conv, token, "I want to talk to a person")
    assert turn.state == "handoff_requested"
    return copilot_id, conv, token


def test_escalation_carries_the_context_summary_transcript_and_routing(world: World) -> None:
    copilot_id = world.copilot(
        topics=[
            {
                "name": "Broken frame",
                "trigger_phrases": ["my frame is cracked"],
                "response": "Oh no! Let me get a mechanic for you.",
                "handoff": True,
                "agent_note": "Frame damage: check the warranty first.",
            }
        ]
    )
    world.admin.update(copilot_id, _patch(hub_extra={"queue": "repairs", "skill": "frames"}))
    conv, token = world.conversation(copilot_id, name="Ann", order="NW-1042")
    world.chat.post(conv, token, "Do you ship e-bike batteries to Canada?")  # no answer
    turn = world.chat.post(conv, token, "my frame is cracked")
    assert [(m.role, m.text) for m in turn.messages] == [
        ("customer", "my frame is cracked"),
        ("copilot", "Oh no! Let me get a mechanic for you."),
        ("system", CONNECTING),
    ]
    assert turn.messages[-1].event == "handoff_requested"
    assert turn.state == "handoff_requested"
    assert world.outbox.nudges and world.outbox.nudges[-1][0] == conv

    world.handoff.deliver(conv, 1)
    [start] = world.hub.sent
    ctx = start.context
    assert start.kind == "start" and ctx is not None
    assert ctx.last_topic == "Broken frame"
    assert ctx.topics == ["No match", "Broken frame"]
    assert ctx.phrases == ["Do you ship e-bike batteries to Canada?", "my frame is cracked"]
    assert ctx.last_phrases == "my frame is cracked"
    assert ctx.agent_message == "Frame damage: check the warranty first."
    assert ctx.variables == {"name": "Ann", "order": "NW-1042"}
    assert (ctx.queue, ctx.skill, ctx.bot_name, ctx.language) == (
        "repairs",
        "frames",
        "Bikes",
        "en",
    )
    assert ctx.unanswered_questions == ["Do you ship e-bike batteries to Canada?"]
    assert "Do you ship e-bike batteries to Canada?" in ctx.summary
    assert "Broken frame" in ctx.summary
    assert [e.text for e in start.transcript][:2] == [
        "Hi! I'm a virtual assistant. Ask me a question, or type 'agent' to reach a person.",
        "Do you ship e-bike batteries to Canada?",
    ]
    assert start.transcript[-1].text == "Oh no! Let me get a mechanic for you."
    assert start.reply_to == f"https://api.example/hooks/generic/{copilot_id}"


def _patch(hub_extra: dict[str, Any]) -> Any:
    from copilot.admin.models import CopilotPatch

    hub = {"type": "generic", "url": "http://hub.example/in", "secret_ref": "DESK", **hub_extra}
    return CopilotPatch.model_validate({"hub": hub})


def test_agent_conversation_both_ways_then_the_copilot_resumes(world: World) -> None:
    copilot_id, conv, token = escalated(world)
    world.handoff.deliver(conv, 1)
    # The copilot never answers while a hand-off is pending or an agent owns the chat.
    waiting = world.chat.post(conv, token, "hello? my order NW-1 is late")
    assert [m.role for m in waiting.messages] == ["customer"]
    assert world.send(copilot_id, world.event(conv, "agent_joined")) == ["applied"]
    assert world.send(copilot_id, world.event(conv, "agent_typing")) == ["applied"]
    assert world.send(copilot_id, world.event(conv, "agent_message", text="Hi, Bob here.")) == [
        "applied"
    ]
    assert world.chat.post(conv, token, "hi Bob").state == "agent"
    world.handoff.deliver(conv, 1)
    assert [(c.kind, c.text) for c in world.hub.sent] == [
        ("start", None),
        ("message", "hello? my order NW-1 is late"),
        ("message", "hi Bob"),
    ]
    assert [c.sequence for c in world.hub.sent] == sorted(c.sequence for c in world.hub.sent)
    assert world.send(copilot_id, world.event(conv, "ended")) == ["applied"]
    page = world.chat.messages(conv, token, 0, 100)
    assert page.state == "bot"
    tail = [(m.role, m.event, m.author, m.text) for m in page.messages[-8:]]
    assert tail == [
        ("customer", None, None, "hello? my order NW-1 is late"),
        ("system", "agent_joined", None, "Bob joined the conversation."),
        ("system", "agent_typing", None, "Bob is typing…"),
        ("agent", None, "Bob", "Hi, Bob here."),
        ("customer", None, None, "hi Bob"),
        ("system", "handoff_ended", None, "Bob ended the chat."),
        ("copilot", None, None, "I'm back. Is there anything else I can help you with?"),
        ("copilot", None, None, survey.ASK),  # how did it go? (the copilot's survey)
    ]
    # The hand-off's milestones were recorded with the messages that tell them.
    recorded = [(e.type, e.outcome) for e in world.store.events if e.conversation_id == conv]
    assert [t for t, _ in recorded if t != "turn"] == [
        "conversation_started",
        "escalated",
        "agent_joined",
        "handoff_ended",
    ]
    assert ("turn", "agent") in recorded  # "hi Bob" went to the agent
    # The copilot answers again; nothing more goes to the hub.
    assert [m.role for m in world.chat.post(conv, token, "thanks").messages] == [
        "customer",
        "copilot",
    ]
    world.handoff.deliver(conv, 1)
    assert len(world.hub.sent) == 3
    assert world.store.get(conv).hub_outbox.started is None  # type: ignore[union-attr]


def test_agent_end_can_close_the_conversation(world: World) -> None:
    copilot_id = world.copilot()
    world.admin.update(copilot_id, _patch({"on_agent_end": "end"}))
    conv, token = world.conversation(copilot_id)
    world.chat.post(conv, token, "agent")
    world.send(copilot_id, world.event(conv, "ended"))
    assert world.chat.messages(conv, token, 0, 100).state == "ended"
    assert "ended" in world.chat.post(conv, token, "hello?").messages[-1].text


def test_out_of_order_events_are_applied_in_hub_order_and_duplicates_once(world: World) -> None:
    copilot_id, conv, token = escalated(world)
    joined = world.event(conv, "agent_joined")
    one, two, three = (world.event(conv, "agent_message", text=t) for t in ("one", "two", "three"))
    assert world.send(copilot_id, three) == ["held"]
    assert world.send(copilot_id, two) == ["held"]
    assert world.send(copilot_id, three) == ["duplicate"]  # a hub retry of a held event
    assert world.texts(conv, token)[-1] == ("system", CONNECTING)  # nothing shown yet
    assert world.send(copilot_id, joined, one) == ["applied", "applied"]
    assert world.send(copilot_id, one) == ["duplicate"]
    # The same position under another id (a hub that re-sent it with a new id): once.
    assert world.send(copilot_id, world.event(conv, "agent_message", text="x", sequence=2)) == [
        "duplicate"
    ]
    said = [text for role, text in world.texts(conv, token) if role == "agent"]
    assert said == ["one", "two", "three"]


def test_a_gap_that_never_fills_is_skipped_after_the_window(world: World) -> None:
    copilot_id, conv, token = escalated(world)
    world.send(copilot_id, world.event(conv, "agent_joined"))
    late = world.event(conv, "agent_message", text="late")  # sequence 2 is held up
    assert world.send(copilot_id, world.event(conv, "agent_message", text="after")) == ["held"]
    world.clock.now += timedelta(seconds=5)
    assert "after" not in [t for _, t in world.texts(conv, token)]
    world.clock.now += timedelta(seconds=6)
    assert world.texts(conv, token)[-1] == ("agent", "after")  # the customer's poll applied it
    assert world.store.get(conv).handoff.hub_seq == 3  # type: ignore[union-attr]
    # When the skipped event comes after all, it is shown late rather than lost; once.
    assert world.send(copilot_id, late) == ["applied"]
    assert world.send(copilot_id, late.model_copy(update={"event_id": "again"})) == ["duplicate"]
    assert [t for r, t in world.texts(conv, token) if r == "agent"] == ["after", "late"]


def test_events_of_a_closed_or_unknown_handoff_are_ignored(world: World) -> None:
    copilot_id, conv, token = escalated(world)
    late = world.event(conv, "agent_message", text="too late", sequence=5)
    world.handoff.cancel(conv)
    assert world.send(copilot_id, late) == ["ignored"]
    assert "too late" not in [t for _, t in world.texts(conv, token)]
    stranger = late.model_copy(update={"handoff_id": "another", "event_id": "z"})
    assert world.send(copilot_id, stranger) == ["ignored"]


def test_webhook_verification_and_ownership(world: World) -> None:
    copilot_id, conv, _ = escalated(world)
    event = world.event(conv, "agent_joined")
    with pytest.raises(ForbiddenError):
        world.send(copilot_id, event, secret="wrong")
    request = CollectingHub.request([event], SECRET)
    unsigned = type(request)(request.method, request.path, {}, request.body)
    with pytest.raises(UnauthorizedError):
        world.handoff.receive("generic", copilot_id, unsigned)
    # No copilot, or one without this hub: answered as a wrong signature is (403; 401 when
    # unsigned), so a caller without the secret cannot tell which copilots exist or have hubs.
    with pytest.raises(ForbiddenError):
        world.handoff.receive("generic", "no-such-copilot", request)
    with pytest.raises(UnauthorizedError):
        world.handoff.receive("generic", "no-such-copilot", unsigned)
    other = world.copilot()  # another tenant's hook cannot touch this conversation
    with pytest.raises(NotFoundError):
        world.send(other, event)
    no_hub = world.admin.create(CopilotSpec(name="No hub")).copilot_id
    with pytest.raises(ForbiddenError):
        world.send(no_hub, event)
    with pytest.raises(NotFoundError):
        world.handoff.receive("teams", copilot_id, request)  # no such hub type (public)
    assert world.store.get(conv).state == "handoff_requested"  # type: ignore[union-attr]


def test_hub_outage_delays_messages_then_delivers_each_once_in_order(world: World) -> None:
    _copilot_id, conv, token = escalated(world)
    world.hub.unavailable = True
    for text in ("first", "second", "third"):
        world.chat.post(conv, token, text)
    for attempt in (1, 2):  # under max_attempts: the start is not given up on
        with pytest.raises(HubUnavailableError):
            world.handoff.deliver(conv, attempt)
    assert world.texts(conv, token)[-1] == ("customer", "third")
    world.hub.unavailable = False
    world.handoff.deliver(conv, 2)
    world.handoff.deliver(conv, 2)  # a redelivered nudge: nothing new
    assert [(c.kind, c.text) for c in world.hub.sent] == [
        ("start", None),
        ("message", "first"),
        ("message", "second"),
        ("message", "third"),
    ]


def test_messages_outlast_the_queue_retries_on_a_fresh_nudge(world: World) -> None:
    _copilot_id, conv, token = escalated(world)
    world.handoff.deliver(conv, 1)
    world.hub.unavailable = True
    world.chat.post(conv, token, "still there?")
    before = len(world.outbox.nudges)
    with pytest.raises(HubUnavailableError):
        world.handoff.process_outbox(conv, 1, last_delivery=False)
    world.handoff.process_outbox(conv, 5, last_delivery=True)  # no raise: work handed on
    assert world.outbox.nudges[before:][-1][0] == conv
    assert world.outbox.nudges[-1][2] == 5  # the back-off keeps growing from here


def test_start_failing_after_retries_gives_the_escalate_link(world: World) -> None:
    copilot_id, conv, token = escalated(world)
    world.hub.unavailable = True
    with pytest.raises(HubUnavailableError):
        world.handoff.deliver(conv, 2)
    world.handoff.deliver(conv, 3)  # max_attempts: give up, tell the customer
    page = world.chat.messages(conv, token, 0, 100)
    assert page.state == "bot"
    assert [(m.role, m.event) for m in page.messages[-2:]] == [
        ("system", "handoff_failed"),
        ("copilot", None),
    ]
    assert page.messages[-1].text == world.copilots.get(copilot_id).messages.escalate_link  # type: ignore[union-attr]
    world.hub.unavailable = False
    world.chat.post(conv, token, "ok")
    world.handoff.deliver(conv, 1)
    assert world.hub.sent == []  # a failed hand-off never starts later


def test_hub_declining_the_start_gives_the_escalate_link(world: World) -> None:
    copilot_id, conv, token = escalated(world)
    world.hub.reject_start = "no_agents"
    world.handoff.deliver(conv, 1)
    texts = world.texts(conv, token)
    assert texts[-2] == ("system", "Sorry, no agent is available right now.")
    assert texts[-1][1] == world.copilots.get(copilot_id).messages.escalate_link  # type: ignore[union-attr]


def test_hub_status_failed_webhook_falls_back_too(world: World) -> None:
    copilot_id, conv, token = escalated(world)
    world.handoff.deliver(conv, 1)
    world.send(copilot_id, world.event(conv, "rejected", reason="no_agents"))
    assert world.chat.messages(conv, token, 0, 100).state == "bot"
    world.handoff.deliver(conv, 1)
    assert world.store.get(conv).hub_outbox.started is None  # type: ignore[union-attr]


def test_cancel_by_word_and_by_endpoint(world: World) -> None:
    _copilot_id, conv, token = escalated(world)
    world.handoff.deliver(conv, 1)
    turn = world.chat.post(conv, token, "cancel")
    assert turn.state == "bot"
    assert [m.event for m in turn.messages] == [None, "handoff_cancelled", None]
    world.handoff.deliver(conv, 1)
    assert [c.kind for c in world.hub.sent] == ["start", "end"]
    assert world.hub.sent[-1].reason == "customer_ended"
    with pytest.raises(ConflictError):
        world.chat.cancel_handoff(conv, token)

    # Cancelled before the start reached the hub: the hub never hears of it.
    world.clock.now += timedelta(seconds=60)  # the copilot's hand-off interval (limits)
    world.chat.post(conv, token, "agent")
    assert world.chat.cancel_handoff(conv, token).state == "bot"
    world.handoff.deliver(conv, 1)
    assert [c.kind for c in world.hub.sent] == ["start", "end"]


def test_no_means_no_only_for_the_copilot(world: World) -> None:
    """While waiting, 'no' is for the agent; only cancel words stop the wait."""
    _copilot_id, conv, token = escalated(world)
    assert world.chat.post(conv, token, "no").state == "handoff_requested"


def test_outside_business_hours_or_without_hub_the_escalate_link(world: World) -> None:
    hours = {"business_hours": [{"days": ["sat"], "start": "09:00", "end": "17:00"}]}
    closed = world.copilot()
    world.admin.update(closed, _patch({**hours, "timezone": "Europe/Paris"}))
    no_hub = world.admin.create(CopilotSpec(name="Plain")).copilot_id
    for copilot_id in (closed, no_hub):
        conv, token = world.conversation(copilot_id)
        turn = world.chat.post(conv, token, "talk to a human")
        link = world.copilots.get(copilot_id).messages.escalate_link  # type: ignore[union-attr]
        assert turn.state == "bot"
        assert [m.text for m in turn.messages[1:]] == [link]
    world.clock.now = datetime(2025, 1, 11, 10, 0, tzinfo=UTC)  # Saturday 11:00 in Paris
    conv, token = world.conversation(closed)
    assert world.chat.post(conv, token, "talk to a human").state == "handoff_requested"


def test_no_match_threshold_offers_a_person_and_waits_for_yes(world: World) -> None:
    copilot_id = world.copilot(no_match_threshold=1)
    conv, token = world.conversation(copilot_id)
    offer = world.chat.post(conv, token, "what is the airspeed of a swallow")
    assert offer.messages[-1].text == OFFER_HANDOFF
    assert offer.messages[-1].suggestions == ["Yes", "No"]
    assert world.chat.post(conv, token, "no").state == "bot"
    world.chat.post(conv, token, "what is the airspeed of a swallow")
    assert world.chat.post(conv, token, "yes").state == "handoff_requested"


def test_backoff_grows_and_is_capped() -> None:
    assert [backoff_seconds(n, 2, 60) for n in (1, 2, 3, 4, 5, 6, 7)] == [2, 4, 8, 16, 32, 60, 60]


def test_concurrent_agent_events_and_customer_messages_lose_nothing(world: World) -> None:
    copilot_id, conv, token = escalated(world)
    world.handoff.deliver(conv, 1)
    world.send(copilot_id, world.event(conv, "agent_joined"))
    events = [world.event(conv, "agent_message", text=f"agent {i}") for i in range(20)]
    customer = [f"customer {i}" for i in range(20)]
    actions: list[Callable[[], object]] = [
        lambda e=e: world.send(copilot_id, e) for e in reversed(events)
    ]
    actions += [lambda t=t: world.chat.post(conv, token, t) for t in customer]
    actions += [lambda: world.handoff.deliver(conv, 1) for _ in range(5)]
    assert run_concurrently(actions) == []
    world.handoff.deliver(conv, 1)
    messages: list[Message] = world.chat.messages(conv, token, 0, 500).messages
    assert [m.seq for m in messages] == list(range(1, len(messages) + 1))
    assert [m.text for m in messages if m.role == "agent"] == [e.text for e in events]
    said = [m.text for m in messages if m.role == "customer" and m.text.startswith("customer ")]
    assert sorted(said) == sorted(customer)
    sent = [c.text for c in world.hub.sent if c.kind == "message"]
    forwarded = [m.text for m in messages if m.role == "customer" and m.handoff_id]
    assert sent == forwarded and sorted(sent) == sorted(customer)


def test_a_handoff_requested_while_the_outbox_reads_is_still_started(world: World) -> None:
    copilot_id, conv, token = escalated(world)
    world.handoff.deliver(conv, 1)
    world.send(copilot_id, world.event(conv, "ended"))
    original = world.store.messages_after

    def racing(*args: Any, **kwargs: Any) -> list[Message]:
        world.store.messages_after = original  # type: ignore[method-assign]
        world.clock.now += timedelta(seconds=60)  # the copilot's hand-off interval (limits)
        world.chat.post(conv, token, "talk to a person")  # between the outbox's two reads
        return original(*args, **kwargs)

    world.store.messages_after = racing  # type: ignore[method-assign]
    world.handoff.deliver(conv, 1)
    assert [c.kind for c in world.hub.sent] == ["start", "start"]
    assert world.hub.sent[1].handoff_id == world.store.get(conv).handoff.handoff_id  # type: ignore[union-attr]


def agent_messages(world: World, conv: str, token: str) -> list[str]:
    return [text for role, text in world.texts(conv, token) if role == "agent"]


def test_a_late_first_event_behind_a_backlog_applies_it_all_in_writes_that_fit(
    world: World,
) -> None:
    """A hub replays 2..101 before 1: event 1 makes 101 events ready at once, more than one
    DynamoDB transaction holds. They are applied in writes that fit, in order, all of them."""
    copilot_id, conv, token = escalated(world)
    events = [world.event(conv, "agent_message", text=f"m{i}") for i in range(1, 102)]
    for event in events[1:]:
        assert world.send(copilot_id, event) == ["held"]
    assert agent_messages(world, conv, token) == []  # polls answer (nothing to show yet)
    assert world.send(copilot_id, events[0]) == ["applied"]
    assert agent_messages(world, conv, token) == [f"m{i}" for i in range(1, 102)]
    handoff = world.store.get(conv).handoff  # type: ignore[union-attr]
    assert handoff is not None and handoff.hub_seq == 101 and handoff.held == []
    assert world.store.largest <= 100
    assert world.send(copilot_id, world.event(conv, "agent_message", text="next")) == ["applied"]
    assert agent_messages(world, conv, token)[-1] == "next"


def test_events_queued_by_an_interrupted_call_are_applied_by_the_next_poll(
    world: World,
) -> None:
    copilot_id, conv, token = escalated(world)
    events = [world.event(conv, "agent_message", text=f"m{i}") for i in range(1, 101)]
    for event in events[1:]:
        world.send(copilot_id, event)
    world.store.budget = 1  # the store fails right after the write that takes event 1 in
    assert world.send(copilot_id, events[0]) == ["applied"]
    world.store.budget = None
    queued = world.store.get(conv).handoff.held  # type: ignore[union-attr]
    assert len(queued) == 100 - MAX_EVENTS_PER_WRITE  # in order, waiting for a write: nothing lost
    assert world.send(copilot_id, events[50]) == ["duplicate"]  # a hub retry changes nothing
    assert agent_messages(world, conv, token) == [f"m{i}" for i in range(1, 101)]


def test_a_backlog_beyond_max_held_skips_the_gap_and_shows_the_late_event(world: World) -> None:
    copilot_id, conv, token = escalated(world)
    events = [world.event(conv, "agent_message", text=f"m{i}") for i in range(1, 103)]
    statuses = [world.send(copilot_id, event)[0] for event in events[1:]]
    assert statuses == ["held"] * 100 + ["applied"]  # the 101st held: the gap is given up
    assert agent_messages(world, conv, token) == [f"m{i}" for i in range(2, 103)]
    assert world.send(copilot_id, events[0]) == ["applied"]  # late, but shown
    assert agent_messages(world, conv, token)[-1] == "m1"
    assert world.store.largest <= 100


def test_held_events_are_bounded_in_size_too(world: World) -> None:
    """Held events live on the conversation's item (400 KB at most in DynamoDB)."""
    copilot_id, conv, token = escalated(world)
    limit = world.handoff.config.max_held_bytes
    events = [world.event(conv, "agent_message", text=f"{i} " + "x" * 3990) for i in range(60)]
    for event in events[1:]:
        world.send(copilot_id, event)
        held = world.store.get(conv).handoff.held  # type: ignore[union-attr]
        assert sum(len(e.model_dump_json()) for e in held) <= limit
    assert len(agent_messages(world, conv, token)) == 59  # skipped to, never dropped
    assert world.send(copilot_id, events[0]) == ["applied"]
    assert len(agent_messages(world, conv, token)) == 60


def test_a_sequence_number_far_ahead_is_refused_and_later_events_shown(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    copilot_id, conv, token = escalated(world)
    far = world.event(conv, "agent_message", text="from the future", sequence=1_000_000)
    caplog.set_level(logging.WARNING)
    with pytest.raises(BadRequestError) as refused:
        world.send(copilot_id, far)
    assert refused.value.field == "sequence" and refused.value.status == 400
    with pytest.raises(BadRequestError) as huge:
        world.send(copilot_id, far.model_copy(update={"sequence": 10**4000, "event_id": "e2"}))
    assert len(huge.value.message) < 200
    assert [len(r.getMessage()) < 300 for r in caplog.records] == [True, True]
    handoff = world.store.get(conv).handoff  # type: ignore[union-attr]
    assert handoff is not None and handoff.hub_seq == 0 and handoff.held == []
    for seq, text in enumerate(("hello", "how can I help?"), start=1):
        event = world.event(conv, "agent_message", text=text, sequence=seq)
        assert world.send(copilot_id, event) == ["applied"]
    assert agent_messages(world, conv, token) == ["hello", "how can I help?"]
    assert "from the future" not in [t for _, t in world.texts(conv, token)]


def test_the_furthest_gap_allowed_is_skipped_with_a_compact_log_and_bounded_memory(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    copilot_id, conv, token = escalated(world)
    ahead = world.handoff.config.max_ahead
    world.send(copilot_id, world.event(conv, "agent_message", text="first", sequence=1))
    assert world.send(
        copilot_id, world.event(conv, "agent_message", text="far", sequence=1 + ahead)
    ) == ["held"]
    with pytest.raises(BadRequestError):
        world.send(copilot_id, world.event(conv, "agent_message", text="x", sequence=2 + ahead))
    caplog.set_level(logging.WARNING)
    world.clock.now += timedelta(seconds=11)  # the reorder window is over: the poll skips
    assert agent_messages(world, conv, token) == ["first", "far"]
    skipped_lines = [r.getMessage() for r in caplog.records if "did not arrive" in r.getMessage()]
    assert len(skipped_lines) == 1 and f"2-{ahead}" in skipped_lines[0]
    assert len(skipped_lines[0]) < 300
    handoff = world.store.get(conv).handoff  # type: ignore[union-attr]
    assert handoff is not None and handoff.hub_seq == 1 + ahead
    assert len(handoff.skipped) <= max(MAX_SKIPPED, ahead)
    late = world.event(conv, "agent_message", text="late", sequence=2)
    assert world.send(copilot_id, late) == ["applied"]  # remembered as skipped: shown late
    assert agent_messages(world, conv, token)[-1] == "late"


def test_max_ahead_must_leave_room_for_the_held_events() -> None:
    with pytest.raises(ValueError):
        HandoffConfig(max_held=100, max_ahead=100)


GENESYS = {
    "type": "genesys",
    "integration_id": "0f6b1a1e-7c55-4d39-9d4c-2a9f3e8b5c11",
    "secret_ref": "DESK",
    "inactivity_minutes": 30,
}


def test_a_hub_without_an_end_event_ends_after_its_inactivity_limit(world: World) -> None:
    copilot_id, conv, token = escalated(world, hub=GENESYS)
    world.clock.now += timedelta(minutes=20)
    assert world.send(copilot_id, world.event(conv, "agent_message", text="hi"), hub="genesys")
    world.clock.now += timedelta(minutes=29)  # 49 since the request, 29 since the agent spoke
    assert world.chat.messages(conv, token, 0, 100).state == "agent"
    world.clock.now += timedelta(minutes=2)
    page = world.chat.messages(conv, token, 0, 100)
    assert page.state == "bot"
    assert [(m.role, m.text) for m in page.messages[-3:]] == [
        ("system", "The agent is no longer in this chat."),
        ("copilot", "I'm back. Is there anything else I can help you with?"),
        ("copilot", survey.ASK),
    ]
    late = world.event(conv, "agent_message", text="still there?")
    assert world.send(copilot_id, late, hub="genesys") == ["ignored"]


def test_the_hub_id_a_start_returns_is_kept_and_finds_the_conversation(world: World) -> None:
    world.hub.receipts = True
    copilot_id, conv, token = escalated(world)
    world.chat.post(conv, token, "hello?")
    world.handoff.deliver(conv, 1)
    stored = world.store.get(conv)
    assert stored is not None and stored.handoff is not None
    receipt = stored.hub_outbox.receipt
    assert receipt is not None and receipt.hub_conversation_id == f"hub-{conv}"
    link = world.store.linked(HubLink.key_of("generic", copilot_id, f"hub-{conv}"))
    assert link is not None and link.conversation_id == conv
    assert link.handoff_id == stored.handoff.handoff_id
    start, message = world.hub.sent
    assert start.receipt is None and message.receipt == receipt  # later calls carry it

    by_hub_id = HubEvent(
        kind="agent_message", event_id="e1", hub_conversation_id=f"hub-{conv}", text="Hi there"
    )
    assert world.send(copilot_id, by_hub_id) == ["applied"]
    assert world.texts(conv, token)[-1] == ("agent", "Hi there")
    another = world.copilot()  # the same hub id under another copilot names nothing
    with pytest.raises(UnavailableError):
        world.send(another, by_hub_id.model_copy(update={"event_id": "e2"}))
    unknown = by_hub_id.model_copy(update={"event_id": "e3", "hub_conversation_id": "nope"})
    with pytest.raises(UnavailableError):  # 503: the hub delivers again once it is linked
        world.send(copilot_id, unknown)


def test_what_a_hubs_webhook_leaves_out_is_polled_from_the_hub(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Genesys's webhook names no agent and tells no end: the hub is asked (HubAdapter.poll)
    before an unnamed agent's event is applied, and on the customer's polls (at most every
    POLL_INTERVAL seconds per conversation)."""
    import copilot.handoff.inbound as inbound

    world.hub.receipts = True
    copilot_id, conv, token = escalated(world)
    world.handoff.deliver(conv, 1)
    participants: list[HubEvent] = []
    asked: list[str] = []

    def poll(hub: Any, secret: str, receipt: Any) -> list[HubEvent]:
        asked.append(receipt.hub_conversation_id)
        return list(participants)

    world.hub.supports_poll = True
    world.hub.poll = poll  # type: ignore[method-assign]
    joined = HubEvent(
        kind="agent_joined",
        event_id="p1:joined",
        hub_conversation_id=f"hub-{conv}",
        agent=Agent(id="u1", name="Alex"),
    )
    participants.append(joined)
    unnamed = HubEvent(kind="agent_message", event_id="m1", hub_conversation_id=f"hub-{conv}")
    assert world.send(copilot_id, unnamed.model_copy(update={"text": "Hi!"})) == ["applied"]
    assert world.texts(conv, token)[-2:] == [
        ("system", "Alex joined the conversation."),
        ("agent", "Hi!"),
    ]
    participants.append(
        HubEvent(kind="ended", event_id="p1:ended", hub_conversation_id=f"hub-{conv}")
    )
    assert world.chat.messages(conv, token, 0, 100).state == "agent"  # asked < 2 s ago
    monkeypatch.setattr(inbound, "POLL_INTERVAL", 0.0)
    page = world.chat.messages(conv, token, 0, 100)  # the customer's poll asks the hub
    assert page.state == "bot" and page.messages[-3].text == "Alex ended the chat."
    assert asked == [f"hub-{conv}"] * 3
    world.chat.messages(conv, token, 0, 100)
    assert len(asked) == 3  # the hand-off is over: nothing more to ask


def test_the_queue_position_a_hub_sends_is_shown_while_waiting_only(world: World) -> None:
    copilot_id, conv, token = escalated(world)
    place = "You are number 3 in the queue; the wait is about 4 minutes."
    assert world.send(copilot_id, world.event(conv, "queued", text=place)) == ["applied"]
    messages = world.chat.messages(conv, token, 0, 100).messages
    assert (messages[-1].role, messages[-1].event, messages[-1].text) == (
        "system",
        "handoff_queued",
        place,
    )
    assert world.chat.messages(conv, token, 0, 100).state == "handoff_requested"
    world.send(copilot_id, world.event(conv, "agent_joined"))
    later = world.event(conv, "queued", text="You are number 1 in the queue.")
    world.send(copilot_id, later)
    assert "You are number 1 in the queue." not in [t for _, t in world.texts(conv, token)]
