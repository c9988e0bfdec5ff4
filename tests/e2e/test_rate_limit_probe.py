"""Finding 4 of issue 13 through the whole local stack, limits on: one client's burst of
starts, posts and polls gets 429s with Retry-After, and a loop of hand-off requests reaches the
hub (the agent desk) once per interval."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from copilot_dev.emulators.agent_desk import AgentDesk
from copilot_dev.localstack import LocalStack
from tests.conftest import desk_stack

pytestmark = pytest.mark.e2e

SECRET = "e2e-limits-secret"
PROBE = 300  # requests of each kind, as in the finding


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with desk_stack(tmp_path_factory, "limits-stack", SECRET, rate_limits=True) as running:
        yield running


def admin(stack: LocalStack) -> dict[str, str]:
    return {"X-Admin-Key": stack.config.admin_api_key}


def test_one_client_flooding_starts_posts_and_polls_gets_429_with_retry_after(
    stack: LocalStack,
) -> None:
    base = stack.config.function_url("chat")
    http = requests.Session()
    copilot = http.post(
        f"{base}/admin/copilots", json={"name": "Limited"}, headers=admin(stack), timeout=10
    ).json()  # the default limits
    url = f"{base}/copilots/{copilot['copilot_id']}/conversations"
    starts = [http.post(url, json={}, timeout=10) for _ in range(PROBE)]
    served = [r for r in starts if r.status_code == 201]
    refused = [r for r in starts if r.status_code == 429]
    burst = copilot["limits"]["starts_per_client"]["burst"]
    assert len(served) + len(refused) == PROBE
    assert burst <= len(served) <= burst + 5  # plus what refilled meanwhile (10 a minute)
    assert {r.json()["error"]["code"] for r in refused} == {"rate_limited"}
    assert all(1 <= int(r.headers["Retry-After"]) <= 6 for r in refused)

    conv, token = served[0].json()["conversation_id"], served[0].json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    messages = f"{base}/conversations/{conv}/messages"
    posts = [
        http.post(messages, json={"text": "hi"}, headers=auth, timeout=10) for _ in range(PROBE)
    ]
    statuses = [r.status_code for r in posts]
    limit = copilot["limits"]["posts_per_conversation"]
    assert statuses[: limit["burst"]] == [200] * limit["burst"]
    assert statuses.count(200) <= limit["burst"] + 15  # 30 a minute refill over the probe
    assert statuses.count(429) + statuses.count(200) == PROBE
    assert all(int(r.headers["Retry-After"]) >= 1 for r in posts if r.status_code == 429)

    polls = [http.get(messages, headers=auth, timeout=10) for _ in range(PROBE)]
    statuses = [r.status_code for r in polls]
    limit = copilot["limits"]["polls_per_conversation"]
    assert statuses[: limit["burst"]] == [200] * limit["burst"]
    assert 429 in statuses and set(statuses) == {200, 429}
    assert all(r.headers["Retry-After"] == "1" for r in polls if r.status_code == 429)
    # Another conversation of the same client is not held back by this one's buckets.
    other = served[1].json()
    page = http.get(
        f"{base}/conversations/{other['conversation_id']}/messages",
        headers={"Authorization": f"Bearer {other['token']}"},
        timeout=10,
    )
    assert page.status_code == 200


def test_a_handoff_request_loop_reaches_the_hub_once_per_interval(
    stack: LocalStack, desk: AgentDesk
) -> None:
    base = stack.config.function_url("chat")
    http = requests.Session()
    hub = {"type": "generic", "url": desk.hub_url, "secret_ref": "DESK"}
    spec = {"name": "Desk", "hub": hub, "limits": {"handoff_interval_seconds": 60}}
    copilot_id = http.post(
        f"{base}/admin/copilots", json=spec, headers=admin(stack), timeout=10
    ).json()["copilot_id"]
    started = http.post(f"{base}/copilots/{copilot_id}/conversations", json={}, timeout=10).json()
    conv, auth = started["conversation_id"], {"Authorization": f"Bearer {started['token']}"}
    messages = f"{base}/conversations/{conv}/messages"

    began, states = time.time(), []
    for _ in range(16):  # ask for a person, cancel, ask again: 16 times in well under 20 s
        turn = http.post(messages, json={"text": "talk to a person"}, headers=auth, timeout=10)
        states.append(turn.json()["state"])
        if turn.json()["state"] == "handoff_requested":
            desk.wait_for_session(conv)  # the hub has it (a start cancelled first is never sent)
            http.post(f"{base}/conversations/{conv}/handoff/cancel", headers=auth, timeout=10)
    assert time.time() - began < 20
    assert states.count("handoff_requested") == 1
    assert "try again in" in turn.json()["messages"][-1]["text"]
    time.sleep(3)  # what the outbox was told has been delivered by now
    assert [s.conversation_id for s in desk.sessions()].count(conv) == 1
