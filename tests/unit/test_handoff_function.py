"""The hand-off function (webhooks + outbox target) and the hand-off parts of the chat function,
through functions-framework's real apps, on in-memory adapters."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from functions_framework import create_app

from copilot.bootstrap import Container, set_container
from copilot.config import Settings
from copilot.handoff.hubs.generic import GenericHub, signature, signed_headers
from copilot_dev.collecting_hub import CollectingHub
from copilot_dev.fakes import (
    MemoryConversationStore,
    MemoryCopilotRegistry,
    MemoryDocumentStore,
    MemoryHubOutbox,
    MemoryKnowledgeIndex,
    MemoryRateLimitStore,
    StaticSecretStore,
)
from tests.conftest import REPO_ROOT

ADMIN = {"X-Admin-Key": "admin-secret"}
SECRET = "hub-secret"
HANDOFF_MAIN = str(REPO_ROOT / "functions" / "handoff" / "main.py")


@dataclass
class Apps:
    chat: Any
    hooks: Any
    outbox: Any
    store: MemoryConversationStore
    queue: MemoryHubOutbox
    hub: CollectingHub


class Routed(CollectingHub):
    """Collects outbound calls, but checks inbound ones exactly as the generic hub does."""

    def __init__(self) -> None:
        super().__init__()
        self._generic = GenericHub()
        self.verify = self._generic.verify  # type: ignore[method-assign]
        self.parse = self._generic.parse  # type: ignore[method-assign]


@pytest.fixture
def apps() -> Iterator[Apps]:
    store, queue, hub = MemoryConversationStore(), MemoryHubOutbox(), Routed()
    set_container(
        Container(
            Settings(admin_api_key="admin-secret", hub_max_attempts=2),
            copilots=MemoryCopilotRegistry(),
            conversations=store,
            documents=MemoryDocumentStore(),
            index=MemoryKnowledgeIndex(),
            rate_limits=MemoryRateLimitStore(),
            hub_outbox=queue,
            hub_secrets=StaticSecretStore({"DESK": SECRET}),
            hubs={"generic": hub},
        )
    )
    chat = create_app("chat", str(REPO_ROOT / "functions" / "chat" / "main.py")).test_client()
    hooks = create_app("handoff", HANDOFF_MAIN).test_client()
    outbox = create_app("outbox", HANDOFF_MAIN, "cloudevent").test_client()
    yield Apps(chat, hooks, outbox, store, queue, hub)
    set_container(None)


HUB = {"type": "generic", "url": "https://hub.example/in", "secret_ref": "DESK"}


def new_copilot(apps: Apps, **spec: Any) -> str:
    response = apps.chat.post("/admin/copilots", json={"name": "Helper", **spec}, headers=ADMIN)
    assert response.status_code == 201, response.json
    return str(response.json["copilot_id"])


def escalate(apps: Apps) -> tuple[str, str, dict[str, str], str]:
    copilot_id = new_copilot(apps, hub=HUB)
    started = apps.chat.post(f"/copilots/{copilot_id}/conversations", json={})
    conv = started.json["conversation_id"]
    auth = {"Authorization": f"Bearer {started.json['token']}"}
    turn = apps.chat.post(f"/conversations/{conv}/messages", json={"text": "agent"}, headers=auth)
    assert turn.json["state"] == "handoff_requested"
    hid = turn.json["messages"][-1]["handoff_id"]
    return copilot_id, conv, auth, hid


def post_hook(
    apps: Apps, copilot_id: str, event: Any, *, secret: str = SECRET, timestamp: int | None = None
) -> Any:
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    headers = signed_headers(secret, body, timestamp=timestamp)
    return apps.hooks.post(f"/hooks/generic/{copilot_id}", data=body, headers=headers)


def event(
    conv: str, hid: str, seq: int, kind: str = "agent.message", **extra: Any
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "type": kind,
        "conversation_id": conv,
        "handoff_id": hid,
        "sequence": seq,
        "agent": {"name": "Bob"},
        "text": f"message {seq}",
        **extra,
    }


def test_signed_webhooks_apply_and_bad_ones_change_nothing(apps: Apps) -> None:
    copilot_id, conv, auth, hid = escalate(apps)
    before = apps.store.get(conv)
    joined = event(conv, hid, 1, "agent.joined")
    body = json.dumps(joined).encode()
    rejected = [
        (apps.hooks.post(f"/hooks/generic/{copilot_id}", data=body), 401),
        (post_hook(apps, copilot_id, joined, secret="forged"), 403),
        (post_hook(apps, copilot_id, joined, timestamp=int(time.time()) - 600), 403),
        (post_hook(apps, copilot_id, b"{not json"), 400),
        (post_hook(apps, copilot_id, {**joined, "sequence": "first"}), 400),
        (post_hook(apps, "nobody", joined), 403),  # as a wrong signature: no existence oracle
        (apps.hooks.post("/hooks/generic/nobody", data=body), 401),
        (post_hook(apps, copilot_id, b"x" * (300 * 1024)), 413),
        (apps.hooks.post(f"/hooks/teams/{copilot_id}", data=body), 404),
    ]
    for response, status in rejected:
        assert response.status_code == status, response.get_data(as_text=True)
        assert set(response.json) == {"error"}
    assert post_hook(apps, copilot_id, {**joined, "sequence": "x"}).json["error"]["field"] == (
        "sequence"
    )
    assert apps.store.get(conv) == before  # nothing changed

    ok = post_hook(apps, copilot_id, joined)
    assert ok.status_code == 200
    assert ok.json == {"results": [{"event_id": joined["id"], "status": "applied"}]}
    replay = post_hook(apps, copilot_id, joined)  # the same id again (hub retry or replay)
    assert replay.json["results"][0]["status"] == "duplicate"
    page = apps.chat.get(f"/conversations/{conv}/messages", headers=auth).json
    assert page["state"] == "agent"
    assert [m["event"] for m in page["messages"]].count("agent_joined") == 1


def test_webhooks_say_nothing_about_which_copilots_exist_or_have_a_hub(apps: Apps) -> None:
    """Unsigned, or signed without the copilot's secret: the same status and body whether the
    copilot exists with this hub, exists without a hub, or does not exist."""
    copilot_id, conv, _, hid = escalate(apps)
    no_hub = new_copilot(apps)
    body = json.dumps(event(conv, hid, 1)).encode()
    for targets, signed in (
        ((copilot_id, no_hub, "f" * 32), True),
        ((copilot_id, no_hub, "x"), False),
    ):
        answers = set()
        for target in targets:
            headers = signed_headers("guessed", body) if signed else {}
            response = apps.hooks.post(f"/hooks/generic/{target}", data=body, headers=headers)
            answers.add((response.status_code, json.dumps(response.json, sort_keys=True)))
        assert len(answers) == 1, answers
        assert next(iter(answers))[0] == (403 if signed else 401)


def test_a_unicode_digit_timestamp_is_401_not_500(apps: Apps) -> None:
    copilot_id, conv, _, hid = escalate(apps)
    body = json.dumps(event(conv, hid, 1)).encode()
    headers = {
        "X-Copilot-Timestamp": "²",
        "X-Copilot-Signature": signature(SECRET, "²", body),  # signed: only the format is bad
    }
    response = apps.hooks.post(f"/hooks/generic/{copilot_id}", data=body, headers=headers)
    assert response.status_code == 401, response.get_data(as_text=True)
    assert set(response.json) == {"error"}


def test_a_sequence_number_far_ahead_is_refused_with_400(apps: Apps) -> None:
    copilot_id, conv, auth, hid = escalate(apps)
    response = post_hook(apps, copilot_id, event(conv, hid, 1_000_000))
    assert response.status_code == 400 and response.json["error"]["field"] == "sequence"
    assert post_hook(apps, copilot_id, event(conv, hid, 1)).json["results"][0]["status"] == (
        "applied"
    )
    page = apps.chat.get(f"/conversations/{conv}/messages", headers=auth).json
    assert [m["text"] for m in page["messages"] if m["role"] == "agent"] == ["message 1"]


def test_webhook_for_a_conversation_of_another_copilot_is_404(apps: Apps) -> None:
    _, conv, _, hid = escalate(apps)
    other = new_copilot(apps, hub=HUB)
    response = post_hook(apps, other, event(conv, hid, 1))
    assert response.status_code == 404


def test_outbox_target_delivers_drops_malformed_and_asks_for_retries(apps: Apps) -> None:
    _, conv, _, _ = escalate(apps)

    def record(body: Any, receives: int = 1) -> dict[str, Any]:
        return {
            "messageId": uuid.uuid4().hex,
            "body": body if isinstance(body, str) else json.dumps(body),
            "attributes": {"ApproximateReceiveCount": str(receives), "MessageGroupId": conv},
        }

    def deliver(data: dict[str, Any]) -> int:
        headers = {
            "ce-specversion": "1.0",
            "ce-id": uuid.uuid4().hex,
            "ce-source": "aws:sqs",
            "ce-type": "com.amazonaws.sqs.message",
            "Content-Type": "application/json",
        }
        return int(apps.outbox.post("/", json=data, headers=headers).status_code)

    apps.hub.unavailable = True
    assert deliver(record({"conversation_id": conv})) == 500  # retry later
    nudges = len(apps.queue.nudges)
    assert deliver(record({"conversation_id": conv}, receives=2)) == 200  # last try: given up
    assert len(apps.queue.nudges) == nudges  # a start is not handed on: the customer was told
    assert apps.store.get(conv).state == "bot"  # type: ignore[union-attr]
    assert deliver(record("not json")) == 200  # dropped, logged
    assert apps.hub.sent == []


def test_cancel_route(apps: Apps) -> None:
    _, conv, auth, _ = escalate(apps)
    assert apps.chat.post(f"/conversations/{conv}/handoff/cancel").status_code == 401
    cancelled = apps.chat.post(f"/conversations/{conv}/handoff/cancel", headers=auth)
    assert cancelled.status_code == 200 and cancelled.json["state"] == "bot"
    again = apps.chat.post(f"/conversations/{conv}/handoff/cancel", headers=auth)
    assert again.status_code == 409 and set(again.json) == {"error"}


def test_hub_settings_are_validated_naming_the_field(apps: Apps) -> None:
    bad = [
        ({**HUB, "url": "ftp://x"}, "hub.url"),
        ({**HUB, "type": "teams"}, "hub.type"),
        ({**HUB, "secret_ref": "has space"}, "hub.secret_ref"),
        ({**HUB, "timezone": "Mars/Olympus"}, "hub.timezone"),
        ({**HUB, "secret": "s3cret"}, "hub.secret"),
        ({**HUB, "business_hours": [{"days": ["mon"], "start": "17:00", "end": "09:00"}]}, None),
        (
            {**HUB, "business_hours": [{"days": ["someday"], "start": "09:00", "end": "17:00"}]},
            None,
        ),
        ({**HUB, "on_agent_end": "vanish"}, "hub.on_agent_end"),
    ]
    for hub, field in bad:
        response = apps.chat.post("/admin/copilots", json={"name": "x", "hub": hub}, headers=ADMIN)
        assert response.status_code == 400, hub
        if field:
            assert response.json["error"]["field"] == field
        else:
            assert response.json["error"]["field"].startswith("hub.business_hours.0")
    topic = {"name": "t", "trigger_phrases": ["x"], "response": "y", "handoff": "maybe"}
    response = apps.chat.post(
        "/admin/copilots", json={"name": "x", "topics": [topic]}, headers=ADMIN
    )
    assert response.json["error"]["field"] == "topics.0.handoff"


def test_hub_settings_round_trip_without_any_secret(apps: Apps) -> None:
    hub = {
        **HUB,
        "queue": "bikes",
        "skill": "repairs",
        "business_hours": [
            {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}
        ],
        "timezone": "Europe/Paris",
        "agent_note": "VIP",
    }
    copilot_id = new_copilot(apps, hub=hub)
    got = apps.chat.get(f"/admin/copilots/{copilot_id}", headers=ADMIN)
    assert got.json["hub"] == {**hub, "on_agent_end": "resume"}
    assert SECRET not in got.get_data(as_text=True)
    removed = apps.chat.patch(f"/admin/copilots/{copilot_id}", json={"hub": None}, headers=ADMIN)
    assert removed.json["hub"] is None


def test_start_takes_the_sites_variables(apps: Apps) -> None:
    copilot_id = new_copilot(apps)
    ok = apps.chat.post(
        f"/copilots/{copilot_id}/conversations", json={"variables": {"name": "Ann"}, "locale": "fr"}
    )
    assert ok.status_code == 201
    assert apps.store.get(ok.json["conversation_id"]).context.variables == {"name": "Ann"}  # type: ignore[union-attr]
    bad = apps.chat.post(
        f"/copilots/{copilot_id}/conversations", json={"variables": {"not ok": "x"}}
    )
    assert bad.status_code == 400 and bad.json["error"]["field"] == "variables"
