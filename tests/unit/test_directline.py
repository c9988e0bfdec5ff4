"""Direct Line 3.0 over the chat API: the activity mapping, and the routes through
functions-framework's real app on in-memory adapters (as botframework-directlinejs calls them
in polling mode)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from copilot.bootstrap import container, set_container
from copilot.conversation.models import Message
from copilot.entrypoints.http.directline_activities import activities, split_token
from copilot.errors import NotFoundError, UnauthorizedError
from copilot.knowledge.models import Citation
from tests.conftest import chat_test_client

ADMIN = {"X-Admin-Key": "admin-secret"}
SHOP = "https://shop.example"
OTHER = "https://evil.example"
DL = "/v3/directline"
CONV = "0123456789abcdef0123456789abcdef"
AT = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def dumped(messages: list[Message]) -> list[dict[str, Any]]:
    return [a.model_dump(mode="json") for a in activities(CONV, messages)]


# --- the mapping ---------------------------------------------------------------------------


def test_an_answer_is_a_markdown_message_with_its_sources_as_citations_and_link_definitions() -> (
    None
):
    answer = Message(
        seq=3,
        role="copilot",
        created_at=AT,
        text="Refunds take 5 days [1]. Keep the receipt [2].\n\nSources:\n[1] Returns (x)\n[2] y",
        citations=[
            Citation(
                index=1,
                title="Returns",
                section="Refund timing",
                source="https://bikes.example/returns",
                url="https://bikes.example/returns",
                snippet="Refunds take 5 days.",
            ),
            Citation(index=2, title='The "Guide"', source="guide.pdf", page=4, snippet="Keep it."),
        ],
    )
    [activity] = dumped([answer])
    assert activity["type"] == "message" and activity["textFormat"] == "markdown"
    assert activity["id"] == f"{CONV}|0000003"
    assert activity["from"] == {"id": "copilot", "name": "Copilot", "role": "bot"}
    assert activity["conversation"] == {"id": CONV}
    assert activity["timestamp"].startswith("2026-12-03T12:00:00")
    assert activity["channelData"] == {"webchat:sequence-id": 3}
    assert activity["text"] == (
        "Refunds take 5 days [1]. Keep the receipt [2].\n\n"
        '[1]: <https://bikes.example/returns> "Returns › Refund timing"\n'
        "[2]: <cite:2> \"The 'Guide', p. 4\""
    )
    [entity] = activity["entities"]
    assert entity["type"] == "https://schema.org/Message" and entity["@id"] == ""
    web, file = entity["citation"]
    assert web["@type"] == "Claim" and web["position"] == 1
    assert web["appearance"]["url"] == "https://bikes.example/returns"
    assert web["appearance"]["text"] == "Refunds take 5 days."
    assert file["position"] == 2 and "url" not in file["appearance"]  # Web Chat: a dialog
    assert file["appearance"]["text"] == "Keep it." and file["name"] == "The 'Guide', p. 4"
    assert "suggestedActions" not in activity and "name" not in activity  # absent, not null


def test_quick_replies_are_imback_suggested_actions_to_the_customer() -> None:
    offer = Message(seq=4, role="copilot", text="Talk to a person?", suggestions=["Yes", "No"])
    [activity] = dumped([offer])
    assert activity["suggestedActions"] == {
        "actions": [
            {"type": "imBack", "title": "Yes", "value": "Yes"},
            {"type": "imBack", "title": "No", "value": "No"},
        ]
    }  # no "to": Web Chat would hide actions addressed to another id than its own
    assert "entities" not in activity and activity["text"] == "Talk to a person?"


def test_the_customer_message_echoes_its_client_activity_id() -> None:
    mine = Message(seq=2, role="customer", text="hi", client_activity_id="abc123")
    old = Message(seq=5, role="customer", text="before Direct Line")
    first, second = dumped([mine, old])
    assert first["from"] == {"id": "customer", "role": "user"}
    assert first["channelData"] == {"webchat:sequence-id": 2, "clientActivityID": "abc123"}
    assert "textFormat" not in first
    assert second["channelData"] == {"webchat:sequence-id": 5}


def test_agents_speak_under_their_name_and_typing_is_a_typing_activity() -> None:
    typing = Message(seq=6, role="system", text="Alex is typing", event="agent_typing")
    said = Message(seq=7, role="agent", text="Hi, Alex here", author="Alex")
    first, second = dumped([typing, said])
    assert first["type"] == "typing" and "text" not in first
    assert first["from"] == {"id": "agent", "name": "Agent", "role": "bot"}  # typing: no name
    assert second["type"] == "message" and second["text"] == "Hi, Alex here"
    assert second["from"] == {"id": "agent", "name": "Alex", "role": "bot"}


def test_a_hand_off_event_is_an_event_activity_and_a_visible_notice() -> None:
    joined = Message(
        seq=8, role="system", text="Alex joined the chat.", event="agent_joined", author="Alex"
    )
    event, notice = dumped([joined])
    assert event["type"] == "event" and event["name"] == "handoff.status"
    assert event["value"] == {
        "status": "agent_joined",
        "text": "Alex joined the chat.",
        "agent": "Alex",
    }
    assert event["id"] == f"{CONV}|0000008-event"
    assert notice["type"] == "message" and notice["text"] == "Alex joined the chat."
    assert notice["id"] == f"{CONV}|0000008"


@pytest.mark.parametrize("token", [None, ""])
def test_no_direct_line_token_is_a_401(token: str | None) -> None:
    with pytest.raises(UnauthorizedError):
        split_token(token)


@pytest.mark.parametrize(
    "token", ["wrong", f"{CONV}.", f"{CONV[:-1]}.{'a' * 43}", f"{CONV}.a b", f"{CONV}.{'a' * 8}"]
)
def test_another_token_names_no_conversation_a_404(token: str) -> None:
    with pytest.raises(NotFoundError):
        split_token(token)


# --- the routes ----------------------------------------------------------------------------


class NoModel:
    """The embedder: these tests never embed (topics only), and without a model the container
    starts no background load that could still run when a short test run ends (an abort)."""


@pytest.fixture
def client() -> Iterator[Any]:
    yield chat_test_client(embedder=NoModel())
    set_container(None)


@pytest.fixture
def copilot_id(client: Any) -> str:
    created = client.post(
        "/admin/copilots", json={"name": "Helper", "allowed_origins": [SHOP]}, headers=ADMIN
    )
    assert created.status_code == 201, created.json
    return str(created.json["copilot_id"])


def bearer(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


def generate(client: Any, copilot_id: str, **headers: str) -> dict[str, Any]:
    answer = client.post(f"/copilots/{copilot_id}/directline/tokens/generate", headers=headers)
    assert answer.status_code == 200, answer.json
    return dict(answer.json)


def say(client: Any, conv: str, token: str, text: str, client_id: str) -> Any:
    activity = {
        "type": "message",
        "text": text,
        "from": {"id": "r_123", "role": "user"},
        "channelData": {"clientActivityID": client_id},
        "attachments": [],
        "entities": [{"type": "ClientCapabilities", "requiresBotState": True}],
        "locale": "en-US",
        "localTimestamp": "2026-12-03T12:00:00.000+00:00",
    }
    return client.post(
        f"{DL}/conversations/{conv}/activities", json=activity, headers=bearer(token)
    )


def poll(client: Any, conv: str, token: str, watermark: str = "") -> dict[str, Any]:
    got = client.get(
        f"{DL}/conversations/{conv}/activities?watermark={watermark}&wait=0", headers=bearer(token)
    )
    assert got.status_code == 200, got.json
    return dict(got.json)


def test_a_web_page_chats_through_direct_line(client: Any, copilot_id: str) -> None:
    issued = generate(client, copilot_id)
    conv, token = issued["conversationId"], issued["token"]
    assert token.startswith(conv + ".") and issued["expires_in"] == 3600

    started = client.post(f"{DL}/conversations", json={"user": {}}, headers=bearer(token))
    assert started.status_code == 201, started.json
    assert started.json == {"conversationId": conv, "token": token, "expires_in": 3600}

    first = poll(client, conv, token)
    assert first["watermark"] == "1"
    assert [(a["type"], a["from"]["role"]) for a in first["activities"]] == [("message", "bot")]

    posted = say(client, conv, token, "start over", "c1")
    assert posted.status_code == 200, posted.json
    assert posted.json == {"id": f"{conv}|0000002"}

    turn = poll(client, conv, token, first["watermark"])
    echo, reply = turn["activities"]
    assert echo["id"] == posted.json["id"] and echo["channelData"]["clientActivityID"] == "c1"
    assert echo["text"] == "start over" and echo["from"]["role"] == "user"
    assert [a["value"] for a in reply["suggestedActions"]["actions"]] == ["Yes", "No"]
    assert turn["watermark"] == "3"
    assert poll(client, conv, token, "3") == {"activities": [], "watermark": "3"}

    reconnected = client.get(f"{DL}/conversations/{conv}?watermark=3", headers=bearer(token))
    assert reconnected.status_code == 200 and reconnected.json["conversationId"] == conv
    refreshed = client.post(f"{DL}/tokens/refresh", headers=bearer(token))
    assert refreshed.status_code == 200 and refreshed.json["token"] == token


def test_a_retried_post_with_the_same_client_activity_id_is_one_message(
    client: Any, copilot_id: str
) -> None:
    issued = generate(client, copilot_id)
    conv, token = issued["conversationId"], issued["token"]
    first = say(client, conv, token, "hello", "retry-me")
    again = say(client, conv, token, "hello", "retry-me")
    assert first.status_code == again.status_code == 200
    assert first.json == again.json
    texts = [a.get("text") for a in poll(client, conv, token)["activities"]]
    assert texts.count("hello") == 1, texts


def test_other_activity_types_are_accepted_and_ignored(client: Any, copilot_id: str) -> None:
    issued = generate(client, copilot_id)
    conv, token = issued["conversationId"], issued["token"]
    for activity in (
        {"type": "typing", "from": {"id": "u"}},
        {"type": "event", "name": "webchat/join", "value": {}},
    ):
        sent = client.post(
            f"{DL}/conversations/{conv}/activities", json=activity, headers=bearer(token)
        )
        assert sent.status_code == 200 and sent.json["id"].startswith(f"{conv}|ignored-")
    assert poll(client, conv, token)["watermark"] == "1"  # nothing stored


@pytest.mark.parametrize(
    ("activity", "field"),
    [
        ({"type": "message", "text": "  "}, "text"),
        ({"type": "message", "text": "x" * 4001}, "text"),
        (
            {"type": "message", "text": "hi", "attachments": [{"contentType": "image/png"}]},
            "attachments",
        ),
        (
            {"type": "message", "text": "hi", "channelData": {"clientActivityID": "a b"}},
            "channelData.clientActivityID",
        ),
    ],
)
def test_a_message_the_copilot_cannot_take_is_a_400_naming_why(
    client: Any, copilot_id: str, activity: dict[str, Any], field: str
) -> None:
    issued = generate(client, copilot_id)
    conv, token = issued["conversationId"], issued["token"]
    sent = client.post(
        f"{DL}/conversations/{conv}/activities", json=activity, headers=bearer(token)
    )
    assert sent.status_code == 400, sent.json
    assert sent.json["error"]["field"] == field


def test_tokens_open_only_their_own_conversation(client: Any, copilot_id: str) -> None:
    mine = generate(client, copilot_id)
    theirs = generate(client, copilot_id)
    url = f"{DL}/conversations/{theirs['conversationId']}/activities?wait=0"
    assert client.get(url, headers=bearer(mine["token"])).status_code == 404
    assert client.get(url).status_code == 401
    forged = f"{theirs['conversationId']}.{mine['token'].split('.', 1)[1]}"
    assert client.get(url, headers=bearer(forged)).status_code == 404
    assert client.post(f"{DL}/conversations", headers=bearer(forged)).status_code == 404
    assert client.post(f"{DL}/tokens/refresh").status_code == 401
    assert client.post(f"{DL}/tokens/refresh", headers=bearer("wrong")).status_code == 404
    bad_mark = client.get(
        f"{DL}/conversations/{mine['conversationId']}/activities?watermark=x",
        headers=bearer(mine["token"]),
    )
    assert bad_mark.status_code == 400


def test_the_secret_based_token_endpoint_names_the_per_copilot_one(client: Any) -> None:
    answer = client.post(f"{DL}/tokens/generate", headers=bearer("a-secret"))
    assert answer.status_code == 400
    assert "/copilots/{copilot_id}/directline/tokens/generate" in answer.json["error"]["message"]
    assert client.post("/copilots/nope/directline/tokens/generate").status_code == 404


def test_cors_holds_on_every_direct_line_route(client: Any, copilot_id: str) -> None:
    issued = generate(client, copilot_id, Origin=SHOP)
    conv, token = issued["conversationId"], issued["token"]
    asked = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-ms-bot-agent,x-requested-with",
    }
    # No conversation in the path: any page passes the preflight...
    for path in (f"{DL}/conversations", f"{DL}/tokens/refresh"):
        pre = client.options(path, headers={"Origin": OTHER, **asked})
        assert pre.status_code == 204, pre.json
        allowed = {
            h.strip().lower() for h in pre.headers["Access-Control-Allow-Headers"].split(",")
        }
        assert {"authorization", "content-type", "x-ms-bot-agent", "x-requested-with"} <= allowed
    # ... and the request itself is refused to a page the copilot does not allow.
    refused = client.post(f"{DL}/conversations", headers=bearer(token, Origin=OTHER))
    assert refused.status_code == 403 and refused.json["error"]["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in refused.headers
    ok = client.post(f"{DL}/conversations", headers=bearer(token, Origin=SHOP))
    assert ok.status_code == 201 and ok.headers["Access-Control-Allow-Origin"] == SHOP
    # With the conversation in the path, the preflight itself decides.
    path = f"{DL}/conversations/{conv}/activities"
    assert client.options(path, headers={"Origin": OTHER, **asked}).status_code == 403
    assert client.options(path, headers={"Origin": SHOP, **asked}).status_code == 204
    got = client.get(path + "?wait=0", headers=bearer(token, Origin=OTHER))
    assert got.status_code == 403 and got.json["error"]["code"] == "origin_not_allowed"
    posted = client.post(
        path, json={"type": "message", "text": "hi"}, headers=bearer(token, Origin=OTHER)
    )
    assert posted.status_code == 403 and posted.json["error"]["code"] == "origin_not_allowed"
    assert client.get(path + "?wait=0", headers=bearer(token)).status_code == 200  # no page
    # The per-copilot token endpoint is a start: the copilot's origins decide its preflight.
    start = f"/copilots/{copilot_id}/directline/tokens/generate"
    assert client.options(start, headers={"Origin": OTHER, **asked}).status_code == 403
    simple = client.post(start, headers={"Origin": OTHER})  # a simple request: no preflight
    assert simple.status_code == 403 and simple.json["error"]["code"] == "origin_not_allowed"


def test_the_token_endpoint_takes_the_start_rate_limit(client: Any) -> None:
    created = client.post(
        "/admin/copilots",
        json={"name": "Tight", "limits": {"starts_per_client": {"burst": 1, "per_minute": 1}}},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.json
    url = f"/copilots/{created.json['copilot_id']}/directline/tokens/generate"
    assert client.post(url).status_code == 200
    refused = client.post(url)
    assert refused.status_code == 429 and "Retry-After" in refused.headers


# --- the service: the client's id is kept on the customer message ----------------------------


def test_post_once_keeps_the_client_activity_id_and_defaults_to_none(client: Any) -> None:
    chat = container().chat
    created = client.post("/admin/copilots", json={"name": "Helper"}, headers=ADMIN)
    started = chat.start(created.json["copilot_id"])
    conv, token = started.conversation_id, started.token
    with_id = chat.post_once(conv, token, "hello", None, client_activity_id="abc").response
    without = chat.post(conv, token, "start over")
    assert with_id.messages[0].client_activity_id == "abc"
    assert without.messages[0].client_activity_id is None
    stored = chat.messages(conv, token, 0, 100).messages
    assert [m.client_activity_id for m in stored if m.role == "customer"] == ["abc", None]
