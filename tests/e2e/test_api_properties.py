"""Property-based tests of the chat API: schemathesis generates requests from the committed
OpenAPI document (valid and invalid ones) and sends them to the chat function on the local stack.

Every answer must be no server error and conform to the document: a documented status, JSON
where JSON is stated, a body that validates against the response schema, the stated headers.
Half of the cases use a real copilot, conversation, token and admin key (so the routes behind
authentication and ids are reached), half keep what was generated (unknown ids, no or wrong
credentials). The number of examples is bounded so the module runs in well under two minutes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import ignored_auth, positive_data_acceptance

from copilot_dev.localstack import LocalStack, StackConfig
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 30
schema = schemathesis.openapi.from_path(REPO_ROOT / "docs" / "openapi.json")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = StackConfig.with_free_ports(REPO_ROOT, tmp_path_factory.mktemp("stack"))
    with LocalStack(config) as running:
        yield running


@pytest.fixture(scope="module")
def real(stack: LocalStack) -> dict[str, str]:
    """A copilot with a topic, one of its conversations with a turn, and the credentials."""
    client = stack.copilot_client()
    copilot = client.create_copilot(
        {
            "name": "Properties",
            "topics": [
                {"name": "Hours", "trigger_phrases": ["opening hours"], "response": "9 to 5."}
            ],
        }
    )
    started = client.start(copilot.copilot_id)
    client.send(started.conversation_id, started.token, "opening hours")
    return {
        "copilot_id": copilot.copilot_id,
        "conversation_id": started.conversation_id,
        "seq": "3",  # the copilot's reply to the turn (feedback is given on it)
        "token": started.token,
        "admin_key": stack.config.admin_api_key,
        "url": stack.config.function_url("chat"),
    }


@schema.parametrize()
@schema.given(use_real=st.booleans())
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,  # the same cases every run: a failure here is reproducible
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_every_answer_conforms_to_the_document(
    case: schemathesis.Case, use_real: bool, real: dict[str, str]
) -> None:
    if use_real:
        for name in ("copilot_id", "conversation_id"):
            if name in (case.path_parameters or {}):
                case.path_parameters[name] = real[name]
        case.headers = {
            **(case.headers or {}),
            "Authorization": f"Bearer {real['token']}",
            "X-Admin-Key": real["admin_key"],
        }
    case.call_and_validate(
        base_url=real["url"], timeout=30, excluded_checks=[positive_data_acceptance, ignored_auth]
    )


# --- the findings of issue 13 that bad input caused, through the real stack -------------------


def call(real: dict[str, str], method: str, path: str, **kw: Any) -> requests.Response:
    return requests.request(method, real["url"] + path, timeout=30, **kw)


def assert_json_error(response: requests.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"] == "application/json"
    return dict(response.json()["error"])


VALID_BODIES = {
    "PostMessageRequest": {"text": "hi"},
    "CopilotSpec": {"name": "x"},
    "IncomingActivity": {"type": "message", "text": "hi"},
    "CalibrationRequest": {"questions": [{"question": "hi", "answerable": False}]},
    "FeedbackRequest": {"rating": "up"},
    "SurveyRequest": {"score": 5},
}


def test_secured_operations_refuse_missing_and_wrong_credentials(real: dict[str, str]) -> None:
    """What schemathesis' ignored_auth check would probe, with this API's rule: a wrong
    conversation token gets the 404 of an unknown conversation (no existence oracle)."""
    doc = json.loads((REPO_ROOT / "docs" / "openapi.json").read_text())
    checked = 0
    for template, operations in doc["paths"].items():
        path = template.format(**real)
        for method, op in operations.items():
            scheme = next(iter(op["security"][0])) if op.get("security") else None
            if scheme is None:
                continue
            wrong = (
                ({"X-Admin-Key": "wrong"}, 403)
                if scheme == "adminKey"
                else ({"Authorization": "Bearer wrong"}, 404)
            )
            content = op.get("requestBody", {}).get("content", {})
            model = content.get("application/json", {}).get("schema", {}).get("$ref", "")
            body = VALID_BODIES.get(model.rsplit("/", 1)[-1], {})  # bodies are checked first
            for headers, status in (({}, 401), wrong):
                response = call(real, method.upper(), path, headers=headers, json=body)
                assert_json_error(response, status)
            checked += 1
    assert checked >= 10


@pytest.mark.parametrize(
    "body",
    [b"[" * 50_000 + b"]" * 50_000, b'{"locale": ' + b"9" * 5000 + b"}"],
    ids=["nested-50000-deep", "5000-digit-integer"],
)
def test_deep_json_and_huge_numbers_are_a_400(real: dict[str, str], body: bytes) -> None:
    response = call(
        real,
        "POST",
        f"/copilots/{real['copilot_id']}/conversations",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert_json_error(response, 400)


def test_patch_nulls_are_a_400_and_the_copilot_stays_readable(real: dict[str, str]) -> None:
    admin = {"X-Admin-Key": real["admin_key"]}
    url = f"/admin/copilots/{real['copilot_id']}"
    for name in ("name", "language", "topics", "strictness", "no_match_threshold", "websites"):
        response = call(real, "PATCH", url, json={name: None}, headers=admin)
        assert assert_json_error(response, 400)["field"] == name
    assert call(real, "GET", url, headers=admin).status_code == 200


def test_no_redirects_405_allow_and_no_cors_on_admin(real: dict[str, str]) -> None:
    admin = {"X-Admin-Key": real["admin_key"]}
    slashed = call(real, "POST", "/copilots/a%2F/conversations", allow_redirects=False)
    assert_json_error(slashed, 404)
    not_allowed = call(real, "DELETE", "/admin/copilots", headers=admin)
    assert_json_error(not_allowed, 405)
    assert not_allowed.headers["Allow"] == "GET, HEAD, POST"
    allowed = {"allowed_origins": ["https://x.example"]}  # the copilot's only browser page
    url = f"/admin/copilots/{real['copilot_id']}"
    assert call(real, "PATCH", url, json=allowed, headers=admin).status_code == 200
    listed = call(real, "GET", "/admin/copilots", headers={**admin, "Origin": "https://x.example"})
    assert listed.status_code == 200 and "Access-Control-Allow-Origin" not in listed.headers
    for origin, echoed in (("https://x.example", "https://x.example"), ("https://y.example", None)):
        page = call(
            real,
            "GET",
            f"/conversations/{real['conversation_id']}/messages",
            headers={"Authorization": f"Bearer {real['token']}", "Origin": origin},
        )
        assert page.status_code == 200
        assert page.headers.get("Access-Control-Allow-Origin") == echoed


def test_webhook_paths_flask_cannot_route_get_a_json_answer(stack: LocalStack) -> None:
    hooks = stack.config.function_url("handoff")
    # An unsigned call is a 401 whatever the copilot id; an unknown hub type or path a 404.
    for path, status in (
        ("/hooks/generic/a%0Ab", 401),
        ("/hooks/generic%0A/x", 404),
        ("/nope%0A", 404),
    ):
        response = requests.post(hooks + path, data=b"{}", timeout=10, allow_redirects=False)
        assert_json_error(response, status)
