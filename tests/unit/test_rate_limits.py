"""Rate limits: the token bucket, its DynamoDB store (moto), the chat routes' 429 with
Retry-After, failing open, the client address, and the hand-off interval."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from langchain_core.embeddings import Embeddings
from moto import mock_aws
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from copilot.adapters.aws.dynamo import create_tables
from copilot.adapters.aws.rate_limits import DynamoRateLimitStore
from copilot.admin.models import CopilotSpec, Limits, RateLimit
from copilot.admin.service import AdminService
from copilot.bootstrap import set_container
from copilot.config import Settings
from copilot.conversation.limits import ChatLimits
from copilot.conversation.models import ConversationState
from copilot.conversation.service import ConversationService
from copilot.entrypoints.http.clients import client_address
from copilot.errors import TooManyRequestsError, UnavailableError
from copilot.handoff.customer import JUST_REQUESTED
from copilot.handoff.service import HandoffConfig, HandoffService
from copilot.knowledge.answer import Consulted
from copilot.limits import Rate, admit
from copilot.ports import RateLimitStore
from copilot_dev.collecting_hub import CollectingHub
from copilot_dev.fakes import (
    MemoryConversationStore,
    MemoryCopilotRegistry,
    MemoryDocumentStore,
    MemoryHubOutbox,
    MemoryLexicalStore,
    MemoryRateLimitStore,
    StaticSecretStore,
)
from tests.conftest import chat_test_client

ADMIN = {"X-Admin-Key": "admin-secret"}
T0 = 1_700_000_000.0


# --- the bucket -------------------------------------------------------------------------


def test_a_bucket_admits_its_burst_then_one_request_per_interval() -> None:
    rate = Rate(burst=3, per_minute=60)  # one a second
    tat: float | None = None
    for _ in range(3):
        tat, wait = admit(tat, T0, rate)
        assert wait == 0 and tat is not None
    refused, wait = admit(tat, T0, rate)
    assert refused is None and wait == pytest.approx(1.0)
    tat, wait = admit(tat, T0 + 1.0, rate)  # a token came back
    assert wait == 0
    _, wait = admit(tat, T0 + 1.0, rate)
    assert wait == pytest.approx(1.0)
    tat, wait = admit(tat, T0 + 3600, rate)  # idle: full again, no credit beyond the burst
    assert wait == 0 and tat == pytest.approx(T0 + 3601)


@pytest.fixture
def dynamo() -> Iterator[DynamoRateLimitStore]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client, copilots="c", conversations="conv", documents="d")
        yield DynamoRateLimitStore(client, "conv")


@pytest.fixture(params=["memory", "dynamo"])
def store(request: pytest.FixtureRequest) -> RateLimitStore:
    if request.param == "memory":
        return MemoryRateLimitStore()
    return request.getfixturevalue("dynamo")


def test_the_stores_keep_the_same_buckets(store: RateLimitStore) -> None:
    rate = Rate(burst=2, per_minute=30)  # a token every 2 s
    assert [store.take("a", rate, T0) for _ in range(3)] == [0, 0, pytest.approx(2.0)]
    assert store.take("b", rate, T0) == 0  # buckets are independent
    assert store.take("a", rate, T0 + 1.5) == pytest.approx(0.5)
    assert store.take("a", rate, T0 + 2.0) == 0
    assert store.take("a", rate, T0 + 100) == 0  # idle for long: full again
    assert store.take("a", rate, T0 + 100) == 0
    assert store.take("a", rate, T0 + 100) == pytest.approx(2.0)


def test_concurrent_requests_take_exactly_the_burst() -> None:
    # The memory store only: moto applies a conditional UpdateItem without a lock, so threads
    # racing on one item there can both pass the condition (DynamoDB evaluates it atomically).
    # The DynamoDB store's retry path (a failed condition hands back the stored tat) is the
    # sequential test above: every take after the first on a bucket goes through it.
    store = MemoryRateLimitStore()
    rate = Rate(burst=5, per_minute=1)
    waits: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        wait = store.take("busy", rate, T0)
        with lock:
            waits.append(wait)

    threads = [threading.Thread(target=take) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(w == 0 for w in waits) == 5
    assert all(w > 0 for w in waits if w != 0)


def test_dynamo_bucket_items_expire_after_they_refill(dynamo: DynamoRateLimitStore) -> None:
    dynamo.take("x", Rate(burst=10, per_minute=60), T0)
    item = dynamo._db.get_item(TableName="conv", Key={"pk": {"S": "rate#x"}, "sk": {"N": "0"}})
    expires = int(item["Item"]["expires_at"]["N"])
    assert T0 + 10 <= expires <= T0 + 10 + 120  # full again after 10 s; gone soon after


# --- the chat API -------------------------------------------------------------------------


class DownStore(RateLimitStore):
    def take(self, key: str, rate: Rate, now: float) -> float:
        raise UnavailableError("the rate-limit store is unavailable")


@pytest.fixture
def client() -> Iterator[Any]:
    yield chat_test_client()
    set_container(None)


TIGHT = {
    "starts_per_client": {"burst": 2, "per_minute": 1},
    "posts_per_client": {"burst": 100, "per_minute": 100},
    "posts_per_conversation": {"burst": 2, "per_minute": 1},
    "polls_per_conversation": {"burst": 3, "per_minute": 1},
}


def new_copilot(client: Any, **limits: Any) -> str:
    spec = {"name": "Limited", "limits": limits} if limits else {"name": "Plain"}
    response = client.post("/admin/copilots", json=spec, headers=ADMIN)
    assert response.status_code == 201, response.json
    return str(response.json["copilot_id"])


def start(client: Any, copilot_id: str, address: str = "198.51.100.7") -> Any:
    environ = {"REMOTE_ADDR": address}
    return client.post(f"/copilots/{copilot_id}/conversations", json={}, environ_base=environ)


def assert_limited(response: Any, code: str = "rate_limited") -> int:
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.json["error"]["code"] == code
    assert "try again in" in response.json["error"]["message"]
    retry_after = int(response.headers["Retry-After"])
    assert retry_after >= 1
    return retry_after


def test_starts_posts_and_polls_get_429_with_retry_after(client: Any) -> None:
    copilot_id = new_copilot(client, **TIGHT)
    first, second = start(client, copilot_id), start(client, copilot_id)
    assert first.status_code == second.status_code == 201
    assert assert_limited(start(client, copilot_id)) == 60  # one start a minute refills
    assert start(client, copilot_id, address="203.0.113.9").status_code == 201  # another client

    conv, token = first.json["conversation_id"], first.json["token"]
    auth = {"Authorization": f"Bearer {token}"}
    url = f"/conversations/{conv}/messages"
    for _ in range(2):
        assert client.post(url, json={"text": "hello"}, headers=auth).status_code == 200
    assert assert_limited(client.post(url, json={"text": "hello"}, headers=auth)) == 60
    other = second.json
    other_auth = {"Authorization": f"Bearer {other['token']}"}
    other_url = f"/conversations/{other['conversation_id']}/messages"
    assert client.post(other_url, json={"text": "hi"}, headers=other_auth).status_code == 200

    for _ in range(3):
        assert client.get(url, headers=auth).status_code == 200
    assert_limited(client.get(url, headers=auth))
    # A wrong token takes from its own bucket, never the customer's, and is still refused.
    stranger = {"Authorization": "Bearer guessed"}
    assert client.get(other_url, headers=stranger).status_code == 404
    assert client.get(other_url, headers=other_auth).status_code == 200


def test_ratings_and_surveys_take_from_the_conversations_posts(client: Any) -> None:
    copilot_id = new_copilot(client, **TIGHT)
    started = start(client, copilot_id).json
    auth = {"Authorization": f"Bearer {started['token']}"}
    conv = started["conversation_id"]
    rate = f"/conversations/{conv}/messages/1/feedback"
    assert client.post(rate, json={"rating": "up"}, headers=auth).status_code == 200
    assert (
        client.post(f"/conversations/{conv}/survey", json={"score": 5}, headers=auth).status_code
        == 200
    )
    assert_limited(client.post(rate, json={"rating": "down"}, headers=auth))
    assert_limited(
        client.post(f"/conversations/{conv}/messages", json={"text": "hi"}, headers=auth)
    )


def test_the_defaults_let_a_chat_through_and_stop_a_loop(client: Any) -> None:
    copilot_id = new_copilot(client)
    started = start(client, copilot_id).json
    auth = {"Authorization": f"Bearer {started['token']}"}
    url = f"/conversations/{started['conversation_id']}/messages"
    statuses = [
        client.post(url, json={"text": "hello"}, headers=auth).status_code for i in range(30)
    ]
    defaults = Limits().posts_per_conversation
    assert statuses[: defaults.burst] == [200] * defaults.burst
    assert set(statuses[defaults.burst + 1 :]) == {429}  # (one may refill while they run)
    polls = [client.get(url, headers=auth).status_code for _ in range(40)]
    assert polls[: Limits().polls_per_conversation.burst] == [200] * 30 and 429 in polls


def test_limits_are_per_copilot_and_patchable(client: Any) -> None:
    copilot_id = new_copilot(client)
    got = client.get(f"/admin/copilots/{copilot_id}", headers=ADMIN).json
    assert got["limits"] == Limits().model_dump()
    tight = {"limits": {"starts_per_client": {"burst": 1, "per_minute": 2}}}
    patched = client.patch(f"/admin/copilots/{copilot_id}", json=tight, headers=ADMIN)
    assert patched.json["limits"]["starts_per_client"] == {"burst": 1, "per_minute": 2.0}
    assert patched.json["limits"]["posts_per_conversation"] == {"burst": 20, "per_minute": 30.0}
    null = client.patch(f"/admin/copilots/{copilot_id}", json={"limits": None}, headers=ADMIN)
    assert null.status_code == 400
    bad = {"limits": {"starts_per_client": {"burst": 0, "per_minute": 1}}}
    assert client.patch(f"/admin/copilots/{copilot_id}", json=bad, headers=ADMIN).status_code == 400


def test_a_down_limiter_fails_open_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    client = chat_test_client(rate_limits=DownStore())
    try:
        copilot_id = new_copilot(client, **TIGHT)
        with caplog.at_level(logging.WARNING, logger="copilot.conversation.limits"):
            statuses = [start(client, copilot_id).status_code for _ in range(5)]
        assert statuses == [201] * 5
        assert any("not checked" in r.getMessage() for r in caplog.records)
    finally:
        set_container(None)


def test_the_global_switch_turns_every_limit_off() -> None:
    client = chat_test_client(Settings(admin_api_key="admin-secret", rate_limits_enabled=False))
    try:
        copilot_id = new_copilot(client, **TIGHT)
        assert {start(client, copilot_id).status_code for _ in range(5)} == {201}
    finally:
        set_container(None)


def test_x_forwarded_for_is_only_believed_when_configured() -> None:
    client = chat_test_client()
    try:
        copilot_id = new_copilot(client, **TIGHT)
        spoofed = [
            client.post(
                f"/copilots/{copilot_id}/conversations",
                json={},
                headers={"X-Forwarded-For": f"10.0.0.{i}"},
            ).status_code
            for i in range(3)
        ]
        assert spoofed == [201, 201, 429]  # one client, whatever the header says
    finally:
        set_container(None)


def test_the_client_address() -> None:
    def request(headers: dict[str, str], context: Any = None) -> Request:
        environ = EnvironBuilder(
            headers=list(headers.items()), environ_base={"REMOTE_ADDR": "10.9.9.9"}
        )
        built = environ.get_environ()
        if context is not None:
            built["apig_wsgi.request_context"] = context
        return Request(built)

    gateway = {"requestId": "r", "http": {"sourceIp": "198.51.100.1"}}
    assert client_address(request({}, gateway)) == "198.51.100.1"
    assert client_address(request({})) == "10.9.9.9"
    forwarded = {"X-Forwarded-For": "1.1.1.1, 203.0.113.5, 198.51.100.1"}
    assert client_address(request(forwarded, gateway)) == "198.51.100.1"  # not trusted
    assert client_address(request(forwarded, gateway), forwarded_hops=2) == "203.0.113.5"
    assert client_address(request({"X-Forwarded-For": "1.1.1.1"}), 2) == "10.9.9.9"  # too short


def test_chat_limits_refusal_says_what_and_when() -> None:
    copilots = MemoryCopilotRegistry()
    admin = AdminService(copilots, MemoryDocumentStore())
    limits = Limits(starts_per_client=RateLimit(burst=1, per_minute=0.5))
    copilot_id = admin.create(CopilotSpec(name="x", limits=limits)).copilot_id
    now = [T0]
    chat_limits = ChatLimits(
        MemoryRateLimitStore, lambda: copilots, MemoryConversationStore, clock=lambda: now[0]
    )
    store = MemoryRateLimitStore()
    chat_limits._store = lambda: store
    chat_limits.start(copilot_id, "c")
    with pytest.raises(TooManyRequestsError) as refused:
        chat_limits.start(copilot_id, "c")
    assert refused.value.retry_after == 120
    assert "1 at once, then 0.5 a minute" in refused.value.message
    now[0] += 119.2
    with pytest.raises(TooManyRequestsError) as refused:
        chat_limits.start(copilot_id, "c")
    assert refused.value.retry_after == 1  # rounded up: never "try again in 0 s"
    chat_limits.start("unknown-copilot", "c")  # no copilot, no bucket: the route answers 404


# --- the hand-off interval ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def handoff_world(enabled: bool = True) -> tuple[ConversationService, Any, Any, Clock, str]:
    copilots, store = MemoryCopilotRegistry(), MemoryConversationStore()
    outbox, hub, clock = MemoryHubOutbox(), CollectingHub(), Clock()
    handoff = HandoffService(
        copilots,
        store,
        outbox=lambda: outbox,
        secrets=lambda: StaticSecretStore({"DESK": "s"}),
        hubs=lambda name: hub,
        config=HandoffConfig(request_interval=enabled),
        clock=clock,
    )

    class NoAnswer:
        def consult(self, *args: Any, **kwargs: Any) -> Consulted:
            return Consulted(None)

    chat = ConversationService(copilots, store, lambda: NoAnswer(), handoff=handoff)  # type: ignore[arg-type, return-value]
    hub_settings = {"type": "generic", "url": "http://hub.example/in", "secret_ref": "DESK"}
    spec = CopilotSpec.model_validate({"name": "Bikes", "hub": hub_settings})
    copilot_id = AdminService(copilots, MemoryDocumentStore()).create(spec).copilot_id
    return chat, handoff, outbox, clock, copilot_id


def test_a_handoff_loop_reaches_the_hub_once_per_interval() -> None:
    chat, _, outbox, clock, copilot_id = handoff_world()
    started = chat.start(copilot_id)
    conv, token = started.conversation_id, started.token
    interval = Limits().handoff_interval_seconds
    states = []
    for _ in range(16):  # ask, cancel, ask again...
        turn = chat.post(conv, token, "talk to a person")
        states.append(turn.state)
        if turn.state == "handoff_requested":
            chat.post(conv, token, "cancel")
        clock.now += timedelta(seconds=1)
    assert states.count(ConversationState.HANDOFF_REQUESTED) == 1
    refused = chat.post(conv, token, "talk to a person").messages[-1]
    wait = interval - 16
    assert refused.role == "copilot" and refused.text == JUST_REQUESTED.format(wait=wait)
    nudges = len(outbox.nudges)
    assert chat.messages(conv, token, 0, 500).state == "bot"
    clock.now += timedelta(seconds=wait)
    assert chat.post(conv, token, "talk to a person").state == "handoff_requested"
    assert len(outbox.nudges) == nudges + 1  # refused requests told the outbox nothing


def test_without_limits_a_handoff_may_be_asked_again_at_once() -> None:
    chat, _, _, _, copilot_id = handoff_world(enabled=False)
    started = chat.start(copilot_id)
    conv, token = started.conversation_id, started.token
    assert chat.post(conv, token, "talk to a person").state == "handoff_requested"
    chat.post(conv, token, "cancel")
    assert chat.post(conv, token, "talk to a person").state == "handoff_requested"


class CountingEmbeddings(Embeddings):
    """Deterministic vectors; counts the queries it embeds (the turn's costly work)."""

    def __init__(self) -> None:
        self.queries = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[float(len(t) % 7 + 1), 1.0, 0.5] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        self.queries += 1
        return [1.0, 1.0, 0.5]


def test_a_refused_post_does_no_costly_work_and_stores_nothing() -> None:
    embedder = CountingEmbeddings()
    client = chat_test_client(embedder=embedder, lexical_store=MemoryLexicalStore())
    try:
        limits = {**TIGHT, "posts_per_conversation": {"burst": 1, "per_minute": 1}}
        started = start(client, new_copilot(client, **limits)).json
        auth = {"Authorization": f"Bearer {started['token']}"}
        url = f"/conversations/{started['conversation_id']}/messages"
        question = {"text": "How long is the warranty on e-bike batteries?"}
        assert client.post(url, json=question, headers=auth).status_code == 200
        embedded = embedder.queries
        assert embedded >= 1  # a knowledge question is embedded when it is let through

        assert_limited(client.post(url, json=question, headers=auth))

        assert embedder.queries == embedded  # refused before embedding or querying
        page = client.get(url, headers=auth).json
        assert [m["role"] for m in page["messages"]].count("customer") == 1
    finally:
        set_container(None)
