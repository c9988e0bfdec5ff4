"""The chat function through functions-framework's real app, on in-memory adapters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from functions_framework import create_app

from copilot.bootstrap import Container, set_container
from copilot.config import Settings
from copilot_dev.fakes import (
    MemoryConversationStore,
    MemoryCopilotRegistry,
    MemoryDocumentStore,
    MemoryKnowledgeIndex,
    MemoryRateLimitStore,
)
from tests.conftest import REPO_ROOT

ADMIN = {"X-Admin-Key": "admin-secret"}


@pytest.fixture
def client() -> Iterator[Any]:
    set_container(
        Container(
            Settings(admin_api_key="admin-secret"),
            copilots=MemoryCopilotRegistry(),
            conversations=MemoryConversationStore(),
            documents=MemoryDocumentStore(),
            index=MemoryKnowledgeIndex(),
            rate_limits=MemoryRateLimitStore(),
        )
    )
    app = create_app("chat", str(REPO_ROOT / "functions" / "chat" / "main.py"))
    yield app.test_client()
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
    r = client.options("/conversations/x/messages")
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "*"
