"""No input gets a 500 or a redirect; CORS only where browsers call; the OpenAPI document states
the rules the server enforces. Through functions-framework's real app, on in-memory adapters."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from copilot.bootstrap import set_container
from copilot.errors import BadRequestError
from copilot.schema import MAX_JSON_DEPTH, load_json
from tests.conftest import chat_test_client

ADMIN = {"X-Admin-Key": "admin-secret"}
JSON = {"Content-Type": "application/json"}
DEEP = b"[" * 50_000 + b"]" * 50_000


@pytest.fixture
def client() -> Iterator[Any]:
    yield chat_test_client()
    set_container(None)


@pytest.fixture
def chat(client: Any) -> dict[str, str]:
    """A copilot and one of its conversations: the ids and the conversation's token."""
    copilot_id = client.post("/admin/copilots", json={"name": "Helper"}, headers=ADMIN).json[
        "copilot_id"
    ]
    started = client.post(f"/copilots/{copilot_id}/conversations").json
    return {"copilot_id": copilot_id, **started}


def bearer(chat: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {chat['token']}"}


def assert_json_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.get_data()[:300])
    assert response.mimetype == "application/json"
    return dict(response.json["error"])


# --- bodies: bounded before validation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (DEEP, "nests deeper than 32 levels"),
        (b'{"text": ' + b'{"a": ' * 40 + b"1" + b"}" * 41, "nests deeper"),
        (b'{"text": ' + b"9" * 5000 + b"}", "number over 40 characters"),
        (b'{"text": 1e999}', "out of range"),
        (b'{"text": NaN}', "NaN is not a JSON number"),
    ],
)
def test_deep_or_huge_numbers_are_a_400_on_every_json_route(
    client: Any, chat: dict[str, str], body: bytes, says: str
) -> None:
    for method, url, headers in (
        ("POST", f"/copilots/{chat['copilot_id']}/conversations", {}),  # no credentials needed
        ("POST", f"/conversations/{chat['conversation_id']}/messages", bearer(chat)),
        ("POST", "/admin/copilots", ADMIN),
        ("PATCH", f"/admin/copilots/{chat['copilot_id']}", ADMIN),
    ):
        response = client.open(url, method=method, data=body, headers={**JSON, **headers})
        assert says in assert_json_error(response, 400)["message"]


def test_the_depth_limit_counts_nesting_not_brackets() -> None:
    assert load_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    with pytest.raises(BadRequestError, match="nests deeper"):
        load_json(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    # Brackets in strings are text; many siblings are wide, not deep.
    assert load_json(b'{"a": "' + b"[{" * 10_000 + b'"}') == {"a": "[{" * 10_000}
    assert len(load_json(b"[" + b"[1]," * 10_000 + b"[]]")) == 10_001  # type: ignore[arg-type]
    # Depth built from interleaved levels ([[], [[], ...) is still depth.
    interleaved = b"[[]," * 40 + b"1" + b"]" * 40
    with pytest.raises(BadRequestError, match="nests deeper"):
        load_json(interleaved)
    # Long digit runs inside strings are text too.
    assert load_json(b'{"a": "' + b"9" * 5000 + b'"}') == {"a": "9" * 5000}


def test_bounding_a_body_stays_cheap() -> None:
    # The scan's worst case: 256 KB of branches, each as deep as allowed, one past it.
    levels = MAX_JSON_DEPTH - 2  # a branch nests levels + 1 deep, in the body's array
    branch = b"[[]," * levels + b"[]" + b"]" * levels
    body = b"[" + b",".join([branch] * (250_000 // len(branch))) + b"]"
    deep_one = b"[" + b"[[]," * MAX_JSON_DEPTH + b"1" + b"]" * (MAX_JSON_DEPTH + 1)
    assert len(load_json(body)) > 1000  # type: ignore[arg-type]
    for rejected in (body[:-1] + b"," + deep_one + b"]", DEEP[:250_000]):
        started = time.perf_counter()
        with pytest.raises(BadRequestError, match="nests deeper"):
            load_json(rejected)
        assert time.perf_counter() - started < 0.5  # ~30 ms on an idle core


# --- PATCH: explicit nulls ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "name",
        "language",
        "topics",
        "strictness",
        "no_match_threshold",
        "websites",
        "knowledge_bases",
        "messages",
    ],
)
def test_patch_with_null_for_a_field_without_empty_value_is_a_400(
    client: Any, chat: dict[str, str], name: str
) -> None:
    url = f"/admin/copilots/{chat['copilot_id']}"
    before = client.get(url, headers=ADMIN).json
    error = assert_json_error(client.patch(url, json={name: None}, headers=ADMIN), 400)
    assert error["field"] == name and "send a value or leave the field out" in error["message"]
    nested = client.patch(url, json={"messages": {"greeting": None}}, headers=ADMIN)
    assert assert_json_error(nested, 400)["field"] == "messages.greeting"
    assert client.get(url, headers=ADMIN).json == before  # nothing stored, still readable


def test_patch_with_null_clears_instructions_and_hub(client: Any, chat: dict[str, str]) -> None:
    url = f"/admin/copilots/{chat['copilot_id']}"
    hub = {"type": "generic", "url": "https://hub.example/events", "secret_ref": "HUB"}
    set_ = client.patch(url, json={"instructions": "Be brief.", "hub": hub}, headers=ADMIN).json
    assert set_["instructions"] == "Be brief." and set_["hub"]["url"] == hub["url"]
    cleared = client.patch(url, json={"instructions": None, "hub": None}, headers=ADMIN)
    assert cleared.status_code == 200
    assert cleared.json["instructions"] is None and cleared.json["hub"] is None


# --- routing: no redirects, 405 with Allow, CORS only for browsers -----------------------------


@pytest.mark.parametrize("bad_id", ["a%2F", "%2F", "a%2F%2Fb", "%2Fa", "a%0Ab", "%0A"])
def test_ids_holding_an_encoded_slash_or_newline_are_a_json_404_never_a_redirect(
    client: Any, chat: dict[str, str], bad_id: str
) -> None:
    text = {"text": "hi"}
    for method, url, headers, body in (
        ("POST", f"/copilots/{bad_id}/conversations", {}, {}),
        ("GET", f"/conversations/{bad_id}/messages", bearer(chat), None),
        ("POST", f"/conversations/{bad_id}/messages", bearer(chat), text),
        ("POST", f"/conversations/{bad_id}/handoff/cancel", bearer(chat), None),
        ("GET", f"/admin/copilots/{bad_id}", ADMIN, None),
        ("PATCH", f"/admin/copilots/{bad_id}", ADMIN, {"name": "x"}),
        ("GET", f"/admin/copilots/{bad_id}/documents", ADMIN, None),
    ):
        response = client.open(url, method=method, json=body, headers=headers)
        assert_json_error(response, 404)
        assert "Location" not in response.headers


def test_405_names_the_allowed_methods(client: Any, chat: dict[str, str]) -> None:
    cases = [
        ("DELETE", "/admin/copilots", "GET, HEAD, POST"),
        ("PUT", f"/admin/copilots/{chat['copilot_id']}", "GET, HEAD, PATCH"),
        (
            "DELETE",
            f"/conversations/{chat['conversation_id']}/messages",
            "GET, HEAD, OPTIONS, POST",
        ),
        ("GET", f"/copilots/{chat['copilot_id']}/conversations", "OPTIONS, POST"),
    ]
    for method, url, allow in cases:
        response = client.open(url, method=method, headers=ADMIN)
        assert assert_json_error(response, 405)["code"] == "method_not_allowed"
        assert response.headers["Allow"] == allow


def test_admin_routes_send_no_cors_headers(client: Any, chat: dict[str, str]) -> None:
    for response in (
        client.get("/admin/copilots", headers=ADMIN),
        client.get(f"/admin/copilots/{chat['copilot_id']}", headers=ADMIN),
        client.get("/admin/copilots"),  # 401
        client.delete("/admin/copilots"),  # 405
        client.options("/admin/copilots"),  # no preflight: a 405
    ):
        assert response.status_code in (200, 401, 405)
        assert not [h for h, _ in response.headers if h.lower().startswith("access-control")]


def test_customer_routes_answer_browsers(client: Any, chat: dict[str, str]) -> None:
    shop = {"Origin": "https://shop.example"}  # the copilot's allowed origin
    client.patch(
        f"/admin/copilots/{chat['copilot_id']}",
        json={"allowed_origins": [shop["Origin"]]},
        headers=ADMIN,
    )
    conversation = f"/conversations/{chat['conversation_id']}"
    for url, methods in (
        (f"{conversation}/messages", "GET, HEAD, OPTIONS, POST"),
        (f"{conversation}/handoff/cancel", "OPTIONS, POST"),
        (f"/copilots/{chat['copilot_id']}/conversations", "OPTIONS, POST"),
    ):
        preflight = client.options(url, headers=shop)
        assert preflight.status_code == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == shop["Origin"]
        assert preflight.headers["Access-Control-Allow-Methods"] == methods
        asked = {h.strip() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"Authorization", "Content-Type", "Idempotency-Key"} <= asked
    page = client.get(f"{conversation}/messages", headers={**bearer(chat), **shop})
    assert page.status_code == 200
    assert page.headers["Access-Control-Allow-Origin"] == shop["Origin"]
    assert "Retry-After" in page.headers["Access-Control-Expose-Headers"]
    missing = client.get(f"{conversation}/messages", headers=shop)  # a browser reads the error
    assert missing.status_code == 401
    assert missing.headers["Access-Control-Allow-Origin"] == shop["Origin"]


# --- the OpenAPI document states the rules ----------------------------------------------------


@pytest.fixture
def doc(client: Any) -> dict[str, Any]:
    return dict(client.get("/openapi.json").json)


def test_openapi_states_the_field_rules(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    url_pattern = schemas["GenericHubSettings"]["properties"]["url"]["pattern"]
    assert re.search(url_pattern, "https://hub.example") and not re.search(url_pattern, "ftp://x")
    phrase = schemas["Topic"]["properties"]["trigger_phrases"]["items"]
    assert (phrase["minLength"], phrase["maxLength"], phrase["pattern"]) == (1, 200, r"\S")
    site = schemas["WebsiteSource"]["properties"]["start_urls"]["items"]["pattern"]
    assert site == url_pattern
    variables = schemas["StartConversationRequest"]["properties"]["variables"]
    assert not re.search(variables["propertyNames"]["pattern"], "1st")
    assert variables["additionalProperties"]["maxLength"] == 500
    assert schemas["PostMessageRequest"]["properties"]["text"]["pattern"] == r"\S"
    patch = schemas["CopilotPatch"]
    assert "null" in patch["description"]
    nullable = {
        name
        for name, prop in patch["properties"].items()
        if {"type": "null"} in prop.get("anyOf", [])
    }
    assert nullable == {
        "instructions",
        "hub",
        "answer_bar",
        "answer_margin_weight",
        "allowed_origins",
        "appearance",
        "analytics",
    }


def test_openapi_states_the_query_bounds_the_server_enforces(
    client: Any, chat: dict[str, str], doc: dict[str, Any]
) -> None:
    path = "/conversations/{conversation_id}/messages"
    query = {p["name"]: p["schema"] for p in doc["paths"][path]["get"]["parameters"]}
    url = f"/conversations/{chat['conversation_id']}/messages"
    for name, bounds in query.items():
        if name == "conversation_id":
            continue
        for value in (bounds["minimum"], bounds["maximum"]):
            assert client.get(f"{url}?{name}={value}", headers=bearer(chat)).status_code == 200
        for value in (bounds["minimum"] - 1, bounds["maximum"] + 1):
            response = client.get(f"{url}?{name}={value}", headers=bearer(chat))
            assert assert_json_error(response, 400)["field"] == name


def test_openapi_lists_the_error_answers(doc: dict[str, Any]) -> None:
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}

    def errors(path: str, method: str) -> dict[str, Any]:
        responses = doc["paths"][path][method]["responses"]
        for code, answer in responses.items():
            if code.startswith(("4", "5")):
                assert answer["content"]["application/json"]["schema"] == error_ref
        return dict(responses)

    cancel = errors("/conversations/{conversation_id}/handoff/cancel", "post")
    assert {"401", "404", "409", "503"} <= set(cancel)
    assert "429" not in cancel  # cancel takes from no bucket: no 429 is promised
    assert "429" not in errors("/copilots/{copilot_id}/widget-config", "get")
    post = errors("/conversations/{conversation_id}/messages", "post")
    assert {"400", "401", "404", "413", "429", "503"} <= set(post)
    assert post["429"]["headers"]["Retry-After"]["schema"]["type"] == "integer"
    body = doc["paths"]["/conversations/{conversation_id}/messages"]["post"]["requestBody"]
    assert "256 KB" in body["description"] and "32 levels" in body["description"]
    assert {"401", "403", "404"} <= set(errors("/admin/copilots/{copilot_id}", "patch"))
    assert set(errors("/healthz", "get")) == {"200"}
