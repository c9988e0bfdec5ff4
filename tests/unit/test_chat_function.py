"""The chat function through functions-framework's real app, on in-memory adapters."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from functions_framework import create_app

from copilot import conflicts
from copilot.admin.models import CopilotSpec
from copilot.bootstrap import Container, set_container
from copilot.config import Settings
from copilot.conversation.idempotency import KEY_PATTERN, Done, IdempotentRequest
from copilot.conversation.models import (
    Conversation,
    IdempotentOutcome,
    Message,
    StartConversationResponse,
    TurnResponse,
)
from copilot.conversation.service import RENUDGE_AFTER, RENUDGE_MAX
from copilot.errors import UnavailableError
from copilot.schema import utcnow
from copilot_dev.concurrency import run_concurrently
from copilot_dev.fakes import (
    MemoryConversationStore,
    MemoryCopilotRegistry,
    MemoryDocumentStore,
    MemoryHubOutbox,
    MemoryKnowledgeIndex,
    MemoryRateLimitStore,
    StaticSecretStore,
    in_memory_container,
)
from tests.conftest import REPO_ROOT, chat_test_client

ADMIN = {"X-Admin-Key": "admin-secret"}


@pytest.fixture
def client() -> Iterator[Any]:
    yield chat_test_client()
    set_container(None)


def new_copilot(client: Any, **spec: Any) -> str:
    response = client.post("/admin/copilots", json={"name": "Helper", **spec}, headers=ADMIN)
    assert response.status_code == 201, response.json
    return str(response.json["copilot_id"])


def test_admin_create_read_update(client: Any) -> None:
    copilot_id = new_copilot(client, messages={"greeting": "Howdy!"})
    got = client.get(f"/admin/copilots/{copilot_id}", headers=ADMIN).json
    assert got["messages"]["greeting"] == "Howdy!"
    assert got["messages"]["no_match"]  # default filled in
    patched = client.patch(
        f"/admin/copilots/{copilot_id}",
        json={"messages": {"no_match": "No idea."}, "no_match_threshold": 3},
        headers=ADMIN,
    ).json
    assert patched["messages"] == {**got["messages"], "no_match": "No idea."}
    assert patched["no_match_threshold"] == 3 and patched["version"] == 2
    listed = client.get("/admin/copilots", headers=ADMIN).json["copilots"]
    assert [c["copilot_id"] for c in listed] == [copilot_id]


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"X-Admin-Key": "wrong"}, 403)],
)
def test_admin_api_needs_the_key_and_leaks_nothing(
    client: Any, headers: dict[str, str], status: int
) -> None:
    copilot_id = new_copilot(client, name="Secret Bot")
    for response in (
        client.get(f"/admin/copilots/{copilot_id}", headers=headers),
        client.get("/admin/copilots", headers=headers),
        client.post("/admin/copilots", json={"name": "x"}, headers=headers),
    ):
        assert response.status_code == status
        assert set(response.json) == {"error"}
        assert "Secret Bot" not in response.get_data(as_text=True)


def test_validation_errors_are_400_naming_the_field(client: Any) -> None:
    response = client.post(
        "/admin/copilots", json={"name": "x", "no_match_threshold": 0}, headers=ADMIN
    )
    assert response.status_code == 400
    assert response.json["error"]["field"] == "no_match_threshold"
    response = client.post(
        "/admin/copilots", data="{not json", headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json["error"]["message"]
    response = client.post("/admin/copilots", json=["a list"], headers=ADMIN)
    assert response.status_code == 400


def test_conversation_flow_and_token_protection(client: Any) -> None:
    copilot_id = new_copilot(client, messages={"conversation_start": "Welcome!", "greeting": "Hi!"})
    started = client.post(f"/copilots/{copilot_id}/conversations")
    assert started.status_code == 201
    conv, token = started.json["conversation_id"], started.json["token"]
    assert started.json["messages"][0]["text"] == "Welcome!"
    auth = {"Authorization": f"Bearer {token}"}

    turn = client.post(f"/conversations/{conv}/messages", json={"text": "hello"}, headers=auth)
    assert turn.status_code == 200
    assert [(m["seq"], m["role"], m["text"]) for m in turn.json["messages"]] == [
        (2, "customer", "hello"),
        (3, "copilot", "Hi!"),
    ]
    page = client.get(f"/conversations/{conv}/messages?after=1", headers=auth).json
    assert [m["seq"] for m in page["messages"]] == [2, 3] and page["last_seq"] == 3

    # Another customer's token, or none, reads and writes nothing; another's token gets the
    # same 404 as an unknown conversation (no existence oracle).
    other = client.post(f"/copilots/{copilot_id}/conversations").json["token"]
    for headers, status in (({}, 401), ({"Authorization": f"Bearer {other}"}, 404)):
        r = client.get(f"/conversations/{conv}/messages", headers=headers)
        assert r.status_code == status and set(r.json) == {"error"}
        r = client.post(f"/conversations/{conv}/messages", json={"text": "x"}, headers=headers)
        assert r.status_code == status
    assert client.get(f"/conversations/{conv}/messages", headers=auth).json["last_seq"] == 3


def test_unknown_ids_are_404(client: Any) -> None:
    assert client.post("/copilots/nope/conversations").status_code == 404
    r = client.get("/conversations/nope/messages", headers={"Authorization": "Bearer x"})
    assert r.status_code == 404
    assert client.get("/no/such/route").status_code == 404


def test_bad_messages_are_rejected_with_reasons(client: Any) -> None:
    copilot_id = new_copilot(client)
    started = client.post(f"/copilots/{copilot_id}/conversations").json
    url = f"/conversations/{started['conversation_id']}/messages"
    auth = {"Authorization": f"Bearer {started['token']}"}
    too_long = client.post(url, json={"text": "x" * 4001}, headers=auth)
    assert too_long.status_code == 400 and too_long.json["error"]["field"] == "text"
    assert "4000" in too_long.json["error"]["message"]
    assert client.post(url, json={}, headers=auth).json["error"]["field"] == "text"
    assert client.post(url, json={"text": "   "}, headers=auth).status_code == 400
    huge = client.post(
        url, data="x" * 300_000, headers={**auth, "Content-Type": "application/json"}
    )
    assert huge.status_code == 413
    bad_after = client.get(url + "?after=abc", headers=auth)
    assert bad_after.status_code == 400 and bad_after.json["error"]["field"] == "after"
    # Nothing was written by the rejected calls.
    assert client.get(url, headers=auth).json["last_seq"] == 1


def test_openapi_document_is_served_and_matches_the_committed_copy(client: Any) -> None:
    import json

    doc = client.get("/openapi.json").json
    assert doc["openapi"].startswith("3.")
    assert "/conversations/{conversation_id}/messages" in doc["paths"]
    assert "CopilotSpec" in doc["components"]["schemas"]
    committed = json.loads((REPO_ROOT / "docs" / "openapi.json").read_text())
    assert committed == doc, (
        "docs/openapi.json is stale: run `copilot openapi --out docs/openapi.json`"
    )


def test_cors_preflight_for_web_chat(client: Any) -> None:
    copilot_id = new_copilot(client, allowed_origins=["https://shop.example"])
    conversation = client.post(f"/copilots/{copilot_id}/conversations").json["conversation_id"]
    url = f"/conversations/{conversation}/messages"
    r = client.options(url, headers={"Origin": "https://shop.example"})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert client.options(url, headers={"Origin": "https://x.example"}).status_code == 403


# --- idempotent writes (Idempotency-Key) -------------------------------------------------------

KEY = "0b6f4d2c-7d1e-4c1b-9e2a-3f1c9a528e11"
REPLAYED = "Idempotent-Replayed"


class SwitchableOutbox(MemoryHubOutbox):
    """The hub outbox (SQS) as its adapter behaves when the queue is down: UnavailableError."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def nudge(self, conversation_id: str, dedup_id: str, attempt: int = 0) -> None:
        if self.down:
            raise UnavailableError("the hub outbox is unavailable")
        super().nudge(conversation_id, dedup_id, attempt)


class RacingConversations(MemoryConversationStore):
    """Holds each write that carries an idempotent outcome until a second one arrives: two
    tries of one request that both passed the replay check, racing to write."""

    def __init__(self) -> None:
        super().__init__()
        self.barrier = threading.Barrier(2, timeout=10)

    def append(
        self,
        conversation: Conversation,
        messages: Sequence[Message],
        *,
        claims: Sequence[str] = (),
        outcome: IdempotentOutcome | None = None,
        **kwargs: Any,
    ) -> Conversation:
        if outcome is not None:
            self.barrier.wait()
        return super().append(conversation, messages, claims=claims, outcome=outcome, **kwargs)


@dataclass
class App:
    http: Any
    container: Container
    conversations: MemoryConversationStore
    outbox: SwitchableOutbox


@pytest.fixture
def app() -> Iterator[App]:
    conversations, outbox = MemoryConversationStore(), SwitchableOutbox()
    container = Container(
        Settings(admin_api_key="admin-secret"),
        copilots=MemoryCopilotRegistry(),
        conversations=conversations,
        documents=MemoryDocumentStore(),
        index=MemoryKnowledgeIndex(),
        hub_outbox=outbox,
        hub_secrets=StaticSecretStore({"DESK": "desk-secret"}),
        rate_limits=MemoryRateLimitStore(),
    )
    set_container(container)
    function = create_app("chat", str(REPO_ROOT / "functions" / "chat" / "main.py"))
    yield App(function.test_client(), container, conversations, outbox)
    set_container(None)


def start(client: Any, copilot_id: str) -> tuple[str, dict[str, str]]:
    started = client.post(f"/copilots/{copilot_id}/conversations").json
    return started["conversation_id"], {"Authorization": f"Bearer {started['token']}"}


def texts(client: Any, conv: str, auth: dict[str, str]) -> list[str]:
    page = client.get(f"/conversations/{conv}/messages", headers=auth).json
    return [m["text"] for m in page["messages"]]


def test_a_retried_post_is_answered_from_the_first_and_stored_once(client: Any) -> None:
    copilot_id = new_copilot(client, messages={"conversation_start": "Hello", "greeting": "Hi!"})
    conv, auth = start(client, copilot_id)
    url, once = f"/conversations/{conv}/messages", {**auth, "Idempotency-Key": KEY}

    first = client.post(url, json={"text": "hello"}, headers=once)
    retries = [client.post(url, json={"text": "hello"}, headers=once) for _ in range(3)]

    assert first.status_code == 200 and REPLAYED not in first.headers
    for again in retries:
        assert (again.status_code, again.json) == (200, first.json)
        assert again.headers[REPLAYED] == "true"
    assert texts(client, conv, auth) == ["Hello", "hello", "Hi!"]

    # The same key with another text is a client bug: refused, nothing stored.
    reused = client.post(url, json={"text": "goodbye"}, headers=once)
    assert reused.status_code == 422
    assert reused.json["error"]["field"] == "Idempotency-Key"
    assert "different request" in reused.json["error"]["message"]
    # A new key is a new message; no key is a new message each time (as before).
    client.post(url, json={"text": "hello"}, headers={**auth, "Idempotency-Key": KEY + "-2"})
    client.post(url, json={"text": "hello"}, headers=auth)
    client.post(url, json={"text": "hello"}, headers=auth)
    assert texts(client, conv, auth).count("hello") == 4

    # Keys are scoped to their conversation: another one's post with this key is its own.
    other, other_auth = start(client, copilot_id)
    elsewhere = client.post(
        f"/conversations/{other}/messages",
        json={"text": "hello"},
        headers={**other_auth, "Idempotency-Key": KEY},
    )
    assert elsewhere.status_code == 200 and REPLAYED not in elsewhere.headers
    # ...and a replay still needs the conversation's token.
    stranger = client.post(url, json={"text": "hello"}, headers={"Idempotency-Key": KEY})
    assert stranger.status_code == 401


@pytest.mark.parametrize(
    "key", ["short-key", "k" * 129, "has spaces in it 123", "semi;colon-0123456789", ""]
)
def test_a_malformed_idempotency_key_is_a_400_naming_the_header(client: Any, key: str) -> None:
    copilot_id = new_copilot(client)
    conv, auth = start(client, copilot_id)
    for response in (
        client.post(
            f"/conversations/{conv}/messages",
            json={"text": "hi"},
            headers={**auth, "Idempotency-Key": key},
        ),
        client.post(f"/copilots/{copilot_id}/conversations", headers={"Idempotency-Key": key}),
    ):
        assert response.status_code == 400, response.json
        assert response.json["error"]["field"] == "Idempotency-Key"
    assert len(texts(client, conv, auth)) == 1  # nothing was written


def test_a_retried_start_returns_the_same_conversation_and_a_token_that_works(
    client: Any,
) -> None:
    copilot_id = new_copilot(client)
    url, once = f"/copilots/{copilot_id}/conversations", {"Idempotency-Key": KEY}
    body = {"variables": {"name": "Ann"}}

    first = client.post(url, json=body, headers=once)
    again = client.post(url, json=body, headers=once)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json == first.json and again.headers[REPLAYED] == "true"
    auth = {"Authorization": f"Bearer {again.json['token']}"}
    turn = client.post(
        f"/conversations/{again.json['conversation_id']}/messages",
        json={"text": "hi"},
        headers=auth,
    )
    assert turn.status_code == 200
    reused = client.post(url, json={"variables": {"name": "Bob"}}, headers=once)
    assert reused.status_code == 422 and reused.json["error"]["field"] == "Idempotency-Key"
    # Scoped to the copilot: the same key starts its own conversation elsewhere.
    other = client.post(f"/copilots/{new_copilot(client)}/conversations", json=body, headers=once)
    assert (
        other.status_code == 201 and other.json["conversation_id"] != first.json["conversation_id"]
    )


def test_the_start_token_is_stored_only_sealed_with_the_key() -> None:
    started = StartConversationResponse(
        conversation_id="c1", token="secret-token-value", state="bot", messages=[]
    )
    request = IdempotentRequest("start:copilot", KEY, "{}")
    outcome = request.outcome(201, started, secret="token")
    stored = outcome.model_dump_json()
    assert "secret-token-value" not in stored and KEY not in stored
    assert request.replay(outcome, StartConversationResponse).response == started
    # Sealed again, the same token reads differently (a fresh salt each time).
    assert request.outcome(201, started, secret="token").sealed != outcome.sealed


def test_racing_tries_of_one_post_store_it_once_and_both_get_the_same_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The two tries run as in two instances: threads of one process take turns with one
    # conversation (copilot.conflicts), so only instances can race each other's writes.
    monkeypatch.setattr(conflicts, "_key_lock", lambda key: conflicts._KeyLock())
    conversations = RacingConversations()
    container = in_memory_container(conversations=conversations)
    copilot = container.admin.create(CopilotSpec(name="Shop"))
    started = container.chat.start(copilot.copilot_id)
    conv, token = started.conversation_id, started.token
    answers: list[Done[TurnResponse]] = []
    errors = run_concurrently(
        [lambda: answers.append(container.chat.post_once(conv, token, "hello", KEY))] * 2
    )

    assert errors == []

    assert sorted(a.replayed for a in answers) == [False, True]
    assert answers[0].response == answers[1].response
    stored = conversations.messages_after(conv, 0)
    assert [m.text for m in stored].count("hello") == 1
    assert [m.seq for m in stored] == list(range(1, len(stored) + 1))


def test_an_outbox_failure_after_the_save_answers_success_and_a_poll_renudges(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    hub = {"type": "generic", "url": "http://hub.example/in", "secret_ref": "DESK"}
    copilot_id = new_copilot(app.http, hub=hub)
    conv, auth = start(app.http, copilot_id)
    url = f"/conversations/{conv}/messages"
    app.outbox.down = True

    asked = app.http.post(url, json={"text": "talk to a person"}, headers=auth)
    said = app.http.post(url, json={"text": "my chain snapped"}, headers=auth)

    assert (asked.status_code, said.status_code) == (200, 200)
    assert asked.json["state"] == "handoff_requested"
    assert [m["role"] for m in said.json["messages"]] == ["customer"]
    assert "hub outbox unavailable" in caplog.text
    assert texts(app.http, conv, auth).count("my chain snapped") == 1
    assert app.outbox.nudges == []

    # The queue is back. A poll soon after the failed nudge leaves the outbox alone and
    # writes nothing (polls are cheap); one after RENUDGE_AFTER nudges it again, once.
    app.outbox.down = False
    version = app.conversations.get(conv).version  # type: ignore[union-attr]
    app.http.get(url, headers=auth)
    assert app.outbox.nudges == []
    assert app.conversations.get(conv).version == version  # type: ignore[union-attr]
    backdate_nudge(app.conversations, conv, RENUDGE_AFTER + timedelta(seconds=1))
    for _ in range(3):
        assert app.http.get(url, headers=auth).status_code == 200
    assert [n[0] for n in app.outbox.nudges] == [conv]
    # Once the outbox has delivered up to the customer's message, polls never nudge again.
    delivered = app.conversations.get(conv)
    assert delivered is not None
    cursor = delivered.hub_outbox.model_copy(update={"delivered_seq": delivered.last_seq})
    app.conversations.append(delivered.model_copy(update={"hub_outbox": cursor}), [])
    backdate_nudge(app.conversations, conv, RENUDGE_MAX)
    app.http.get(url, headers=auth)
    assert len(app.outbox.nudges) == 1


def test_a_cancel_saved_while_the_outbox_is_down_answers_success_and_a_poll_renudges(
    app: App,
) -> None:
    hub = {"type": "generic", "url": "http://hub.example/in", "secret_ref": "DESK"}
    conv, auth = start(app.http, new_copilot(app.http, hub=hub))
    url = f"/conversations/{conv}/messages"
    assert app.http.post(url, json={"text": "talk to a person"}, headers=auth).status_code == 200
    app.outbox.down = True

    cancelled = app.http.post(f"/conversations/{conv}/handoff/cancel", headers=auth)

    assert cancelled.status_code == 200 and cancelled.json["state"] == "bot"
    app.outbox.down = False
    nudged = len(app.outbox.nudges)
    backdate_nudge(app.conversations, conv, RENUDGE_AFTER + timedelta(seconds=1))
    assert app.http.get(url, headers=auth).status_code == 200
    # The hub hears of the end: the poll tells the outbox again.
    assert [n[0] for n in app.outbox.nudges[nudged:]] == [conv]


def backdate_nudge(conversations: MemoryConversationStore, conv: str, ago: timedelta) -> None:
    """As if the last nudge had been ``ago`` earlier (the service reads the wall clock)."""
    current = conversations.get(conv)
    assert current is not None
    conversations.append(current.model_copy(update={"outbox_nudged_at": utcnow() - ago}), [])


def test_the_openapi_document_states_the_idempotency_key_rules(client: Any) -> None:
    doc = client.get("/openapi.json").json
    for path in (
        "/conversations/{conversation_id}/messages",
        "/copilots/{copilot_id}/conversations",
    ):
        op = doc["paths"][path]["post"]
        [header] = [p for p in op["parameters"] if p["in"] == "header"]
        assert header["name"] == "Idempotency-Key" and not header["required"]
        assert header["schema"]["pattern"] == KEY_PATTERN
        assert "422" in op["responses"]
        ok = next(v for k, v in op["responses"].items() if k.startswith("2"))
        assert REPLAYED in ok["headers"]
