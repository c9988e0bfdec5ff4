"""CORS per copilot: browsers get answers only on the pages (origins) the copilot allows, and the
widget reads the copilot's appearance without the admin key. Through functions-framework's real
app, on in-memory adapters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from copilot.admin.models import Appearance, CopilotPatch, CopilotSpec
from copilot.admin.origins import ORIGINS_TTL_SECONDS, CopilotOrigins
from copilot.bootstrap import container, set_container
from copilot_dev.demo import demo_origins
from copilot_dev.fakes import (
    MemoryConversationStore,
)
from tests.conftest import chat_test_client

ADMIN = {"X-Admin-Key": "admin-secret"}
SHOP = "https://shop.example"
OTHER = "https://evil.example"


@pytest.fixture
def client() -> Iterator[Any]:
    yield chat_test_client()
    set_container(None)


def new_copilot(client: Any, **spec: Any) -> str:
    created = client.post("/admin/copilots", json={"name": "Helper", **spec}, headers=ADMIN)
    assert created.status_code == 201, created.json
    return str(created.json["copilot_id"])


@pytest.fixture
def chat(client: Any) -> dict[str, str]:
    """A copilot allowing SHOP, and one of its conversations."""
    copilot_id = new_copilot(client, allowed_origins=[SHOP])
    started = client.post(f"/copilots/{copilot_id}/conversations").json
    return {"copilot_id": copilot_id, **started}


def cors_headers(response: Any) -> dict[str, str]:
    return {h: v for h, v in response.headers if h.lower().startswith("access-control")}


# --- the setting: validated, normalized, reset by null ------------------------------------------


def test_origins_are_normalized_as_browsers_send_them() -> None:
    spec = CopilotSpec(
        name="x",
        allowed_origins=[
            "HTTPS://Shop.Example",
            "https://shop.example:443",  # the default port: browsers leave it out
            "http://localhost:8080",
            "http://[::1]:80",
        ],
    )
    assert spec.allowed_origins == ["https://shop.example", "http://localhost:8080", "http://[::1]"]
    assert CopilotSpec(name="x", allowed_origins=["*"]).allowed_origins == ["*"]
    assert CopilotSpec(name="x").allowed_origins == []  # the default: no browser page


@pytest.mark.parametrize(
    "origins",
    [
        ["https://shop.example/"],
        ["https://shop.example/chat"],
        ["https://shop.example?x=1"],
        ["https://shop.example#top"],
        ["ftp://shop.example"],
        ["shop.example"],
        ["https://shop.example:70000"],
        ["https://user@shop.example"],
        ["https://bücher.example"],
        ["*", SHOP],
        [f"https://s{i}.example" for i in range(21)],
    ],
)
def test_bad_origins_are_a_400_naming_the_field(client: Any, origins: list[str]) -> None:
    response = client.post(
        "/admin/copilots", json={"name": "x", "allowed_origins": origins}, headers=ADMIN
    )
    assert response.status_code == 400, response.json
    assert response.json["error"]["field"].startswith("allowed_origins")


@pytest.mark.parametrize(
    "appearance",
    [
        {"color": "blue"},
        {"color": "#12345"},
        {"avatar_url": "http://img.example/a.png"},
        {"avatar_url": "javascript:alert(1)"},
        {"title": "x" * 61},
        {"title": "   "},
        {"font": "Comic Sans"},
    ],
)
def test_bad_appearance_is_a_400(client: Any, appearance: dict[str, Any]) -> None:
    response = client.post(
        "/admin/copilots", json={"name": "x", "appearance": appearance}, headers=ADMIN
    )
    assert response.status_code == 400, response.json
    assert response.json["error"]["field"].startswith("appearance")


def test_patch_replaces_and_null_resets_to_the_default(client: Any) -> None:
    copilot_id = new_copilot(
        client,
        allowed_origins=[SHOP],
        appearance={"color": "#AA0000", "title": "Bikes", "avatar_url": "https://img.example/a"},
    )
    url = f"/admin/copilots/{copilot_id}"
    got = client.get(url, headers=ADMIN).json
    assert got["allowed_origins"] == [SHOP]
    assert got["appearance"] == {
        "color": "#aa0000",
        "title": "Bikes",
        "avatar_url": "https://img.example/a",
    }
    patched = client.patch(url, json={"appearance": {"title": "Help"}}, headers=ADMIN).json
    assert patched["appearance"] == {**Appearance().model_dump(), "title": "Help"}
    assert patched["allowed_origins"] == [SHOP]  # left out: unchanged
    reset = client.patch(url, json={"allowed_origins": None, "appearance": None}, headers=ADMIN)
    assert reset.status_code == 200, reset.json
    assert reset.json["allowed_origins"] == []
    assert reset.json["appearance"] == Appearance().model_dump()
    assert client.get(url, headers=ADMIN).json == reset.json
    assert CopilotPatch.model_validate({"allowed_origins": ["*"]}).allowed_origins == ["*"]
    with pytest.raises(ValidationError):
        CopilotPatch.model_validate({"allowed_origins": ["https://a.example/"]})


# --- the customer routes answer the copilot's origins only --------------------------------------


def customer_urls(chat: dict[str, str]) -> list[tuple[str, str]]:
    conversation = f"/conversations/{chat['conversation_id']}"
    return [
        (f"{conversation}/messages", "GET, HEAD, OPTIONS, POST"),
        (f"{conversation}/handoff/cancel", "OPTIONS, POST"),
        (f"/copilots/{chat['copilot_id']}/conversations", "OPTIONS, POST"),
        (f"/copilots/{chat['copilot_id']}/widget-config", "GET, HEAD, OPTIONS"),
    ]


def test_preflight_from_an_allowed_origin_echoes_it(client: Any, chat: dict[str, str]) -> None:
    for url, methods in customer_urls(chat):
        preflight = client.options(
            url, headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status_code == 204, url
        assert preflight.headers["Access-Control-Allow-Origin"] == SHOP
        assert preflight.headers["Access-Control-Allow-Methods"] == methods
        assert "Origin" in preflight.headers["Vary"]
        asked = {h.strip() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"Authorization", "Content-Type", "Idempotency-Key"} <= asked


def test_preflight_from_another_origin_is_a_403(client: Any, chat: dict[str, str]) -> None:
    for url, _ in customer_urls(chat):
        for origin in (OTHER, "https://shop.example.evil.example", "http://shop.example", "null"):
            preflight = client.options(url, headers={"Origin": origin})
            assert preflight.status_code == 403, (url, origin)
            assert preflight.mimetype == "application/json"
            assert preflight.json["error"]["code"] == "origin_not_allowed"
            assert not cors_headers(preflight)
            assert "Origin" in preflight.headers["Vary"]


def test_requests_from_an_allowed_origin_can_be_read(client: Any, chat: dict[str, str]) -> None:
    auth = {"Authorization": f"Bearer {chat['token']}", "Origin": SHOP}
    url = f"/conversations/{chat['conversation_id']}/messages"
    for response in (
        client.get(url, headers=auth),
        client.post(url, json={"text": "hello"}, headers=auth),
        client.get(url, headers={"Origin": SHOP}),  # a 401: the page reads the error too
        client.post(f"/copilots/{chat['copilot_id']}/conversations", headers={"Origin": SHOP}),
    ):
        assert response.status_code in (200, 201, 401)
        assert response.headers["Access-Control-Allow-Origin"] == SHOP
        assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]
        assert "Origin" in response.headers["Vary"]


def test_reads_from_another_origin_get_no_cors_headers(client: Any, chat: dict[str, str]) -> None:
    auth = {"Authorization": f"Bearer {chat['token']}", "Origin": OTHER}
    url = f"/conversations/{chat['conversation_id']}/messages"
    response = client.get(url, headers=auth)
    assert response.status_code == 200  # served; the browser keeps it from the page
    assert not cors_headers(response)
    assert "Origin" in response.headers["Vary"]


def test_writes_from_another_origin_are_refused_before_they_run(
    client: Any, chat: dict[str, str]
) -> None:
    """A simple request (no preflight: a POST without a JSON body, a form post) from a page of
    another origin would run, only its answer hidden from the page: it is refused instead."""
    conv, copilot_id = chat["conversation_id"], chat["copilot_id"]
    auth = {"Authorization": f"Bearer {chat['token']}"}
    before = client.get(f"/conversations/{conv}/messages", headers=auth).json["last_seq"]
    for response in (
        client.post(f"/copilots/{copilot_id}/conversations", headers={"Origin": OTHER}),
        client.post(
            f"/conversations/{conv}/messages",
            data='{"text": "from another site"}',
            headers={**auth, "Origin": OTHER, "Content-Type": "text/plain"},
        ),
    ):
        assert response.status_code == 403, response.json
        assert response.json["error"]["code"] == "origin_not_allowed"
        assert not cors_headers(response)
    assert client.get(f"/conversations/{conv}/messages", headers=auth).json["last_seq"] == before
    allowed = client.post(f"/copilots/{copilot_id}/conversations", headers={"Origin": SHOP})
    assert allowed.status_code == 201


def test_requests_without_origin_are_unaffected(client: Any, chat: dict[str, str]) -> None:
    url = f"/conversations/{chat['conversation_id']}/messages"
    page = client.get(url, headers={"Authorization": f"Bearer {chat['token']}"})
    assert page.status_code == 200 and page.json["last_seq"] >= 1
    assert not cors_headers(page)
    plain = client.options(url)  # no Origin: not a preflight
    assert plain.status_code == 204 and plain.headers["Allow"] == "GET, HEAD, OPTIONS, POST"
    assert not cors_headers(plain)


def test_no_origin_allowed_by_default(client: Any) -> None:
    copilot_id = new_copilot(client)
    url = f"/copilots/{copilot_id}/conversations"
    assert client.options(url, headers={"Origin": SHOP}).status_code == 403
    started = client.post(url, headers={"Origin": SHOP})
    assert started.status_code == 403 and not cors_headers(started)
    assert client.post(url).status_code == 201  # a server or an app: no Origin


def test_any_origin_echoes_the_origin_not_a_star(client: Any) -> None:
    copilot_id = new_copilot(client, allowed_origins=["*"])
    url = f"/copilots/{copilot_id}/conversations"
    for origin in (SHOP, OTHER):
        preflight = client.options(url, headers={"Origin": origin})
        assert preflight.status_code == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == origin
        started = client.post(url, headers={"Origin": origin})
        assert started.headers["Access-Control-Allow-Origin"] == origin


def test_a_conversation_answers_its_own_copilots_origins(client: Any, chat: dict[str, str]) -> None:
    other = new_copilot(client, allowed_origins=[OTHER])
    theirs = client.post(f"/copilots/{other}/conversations").json["conversation_id"]
    mine = chat["conversation_id"]
    assert (
        client.options(f"/conversations/{theirs}/messages", headers={"Origin": OTHER}).status_code
        == 204
    )
    assert (
        client.options(f"/conversations/{theirs}/messages", headers={"Origin": SHOP}).status_code
        == 403
    )
    assert (
        client.options(f"/conversations/{mine}/messages", headers={"Origin": OTHER}).status_code
        == 403
    )
    unknown = client.options("/conversations/nope/messages", headers={"Origin": SHOP})
    assert unknown.status_code == 403 and not cors_headers(unknown)


def test_admin_routes_send_no_cors_headers_even_to_an_allowed_origin(
    client: Any, chat: dict[str, str]
) -> None:
    url = f"/admin/copilots/{chat['copilot_id']}"
    for response in (
        client.get(url, headers={**ADMIN, "Origin": SHOP}),
        client.patch(url, json={"name": "y"}, headers={**ADMIN, "Origin": SHOP}),
        client.options(url, headers={"Origin": SHOP}),  # no preflight: a 405
    ):
        assert response.status_code in (200, 405)
        assert not cors_headers(response)


def test_health_and_openapi_answer_no_browser(client: Any) -> None:
    for url in ("/healthz", "/openapi.json"):
        assert client.options(url, headers={"Origin": SHOP}).status_code == 403
        assert not cors_headers(client.get(url, headers={"Origin": SHOP}))


# --- the allowed origins are remembered briefly -------------------------------------------------


class CountingConversations(MemoryConversationStore):
    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    def get(self, conversation_id: str) -> Any:
        self.gets += 1
        return super().get(conversation_id)


def test_origins_are_cached_briefly_and_owners_for_good(client: Any) -> None:
    copilot_id = new_copilot(client, allowed_origins=[SHOP])
    conversation_id = client.post(f"/copilots/{copilot_id}/conversations").json["conversation_id"]
    copilots, conversations = container().copilots, CountingConversations()
    stored = container().conversations.get(conversation_id)
    assert stored is not None
    conversations.create(stored, [])  # a store whose reads the test counts
    now = [1000.0]
    origins = CopilotOrigins(lambda: copilots, lambda: conversations, clock=lambda: now[0])
    assert origins.of_conversation(conversation_id) == {SHOP}
    patched = client.patch(
        f"/admin/copilots/{copilot_id}", json={"allowed_origins": [OTHER]}, headers=ADMIN
    )
    assert patched.status_code == 200
    now[0] += ORIGINS_TTL_SECONDS - 1
    assert origins.of_conversation(conversation_id) == {SHOP}  # still remembered
    now[0] += 2
    assert origins.of_conversation(conversation_id) == {OTHER}  # the change applies
    assert conversations.gets == 1  # a conversation's copilot never changes
    assert origins.of_copilot("unknown") == frozenset()
    assert origins.of_conversation("unknown") == frozenset()


# --- the widget's public configuration ----------------------------------------------------------


def test_widget_config_is_public_cacheable_and_minimal(client: Any) -> None:
    copilot_id = new_copilot(
        client,
        allowed_origins=[SHOP],
        appearance={"color": "#112233", "title": "Bike help"},
        instructions="secret tone",
        messages={"greeting": "Hi"},
        topics=[{"name": "t", "trigger_phrases": ["x"], "response": "y"}],
    )
    url = f"/copilots/{copilot_id}/widget-config"
    response = client.get(url, headers={"Origin": SHOP})  # no admin key
    assert response.status_code == 200
    assert response.json == {
        "copilot_id": copilot_id,
        "name": "Helper",
        "language": "en",
        "appearance": {"color": "#112233", "title": "Bike help", "avatar_url": None},
    }
    assert response.headers["Cache-Control"] == "public, max-age=60"
    assert response.headers["Access-Control-Allow-Origin"] == SHOP
    assert "Origin" in response.headers["Vary"]
    refused = client.get(url, headers={"Origin": OTHER})
    assert refused.status_code == 200 and not cors_headers(refused)
    missing = client.get("/copilots/nope/widget-config", headers={"Origin": SHOP})
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"
    assert "Cache-Control" not in missing.headers and not cors_headers(missing)


# --- the local stack's demo copilot ---------------------------------------------------------------


def test_demo_copilot_allows_the_local_pages() -> None:
    assert demo_origins("http://127.0.0.1:8080") == [
        "http://127.0.0.1:8080",
        "http://localhost:8080",
    ]
    assert demo_origins("http://127.0.0.1:8080/", extra=["http://127.0.0.1:8085"]) == [
        "http://127.0.0.1:8080",
        "http://localhost:8080",
        "http://127.0.0.1:8085",
    ]
    CopilotSpec(name="x", allowed_origins=demo_origins("http://127.0.0.1:8080"))


def test_openapi_states_the_origin_rule_and_the_widget_route(client: Any) -> None:
    import re

    doc = client.get("/openapi.json").json
    items = doc["components"]["schemas"]["CopilotSpec"]["properties"]["allowed_origins"]["items"]
    for good in ("https://shop.example", "http://127.0.0.1:8080", "*"):
        assert re.search(items["pattern"], good), good
    for bad in ("https://shop.example/", "ftp://shop.example", "*.example"):
        assert not re.search(items["pattern"], bad), bad
    widget = doc["paths"]["/copilots/{copilot_id}/widget-config"]["get"]
    assert "security" not in widget  # no admin key, no token
    assert widget["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/WidgetConfig"
    }
