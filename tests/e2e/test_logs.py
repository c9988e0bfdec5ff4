"""The local stack's logs: JSON lines with correlation ids, one EMF metrics line per turn, and
never a conversation token, the admin key or a hub secret (docs/observability.md)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from copilot_dev.client import CopilotClient
from copilot_dev.emulators.agent_desk import AgentDesk
from copilot_dev.localstack import LocalStack, StackConfig
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.e2e

SECRET = "e2e-logs-hub-secret-7f3a"
FAQ = b"# Repairs\n\nA flat tyre repair costs 15 euros and takes about 30 minutes at any shop.\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = StackConfig.with_free_ports(REPO_ROOT, tmp_path_factory.mktemp("logs-stack"))
    config.extra_env = {"COPILOT_HUB_SECRET_DESK": SECRET, "COPILOT_LOG_LEVEL": "DEBUG"}
    with LocalStack(config) as running:
        yield running


def json_lines(path: Path) -> list[dict[str, Any]]:
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):  # a line a library printed
                found.append(json.loads(line))
    return found


def wait_until(check: Any, timeout: float = 60, what: str = "it") -> Any:
    deadline = time.time() + timeout
    while not (value := check()):
        if time.time() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.2)
    return value


def test_logs_correlate_turns_and_hold_no_secret(stack: LocalStack, desk: AgentDesk) -> None:
    admin_key = stack.config.admin_api_key
    client = CopilotClient(stack.config.function_url("chat"), admin_key=admin_key)

    # An admin call with the admin key, and a document through the ingest function.
    spec = {"name": "Spokes", "hub": {"type": "generic", "url": desk.hub_url, "secret_ref": "DESK"}}
    copilot_id = client.create_copilot(spec).copilot_id
    stack.client("s3").put_object(
        Bucket=stack.config.bucket, Key=f"{copilot_id}/repairs.md", Body=FAQ
    )
    wait_until(
        lambda: [d for d in client.documents(copilot_id) if d.status == "indexed"],
        what="the document to be indexed",
    )

    # A conversation with its token: a knowledge answer, then a hand-off over the hub secret.
    started = client.start(copilot_id)
    conv, token = started.conversation_id, started.token
    answer = client.send(conv, token, "How much does a flat tyre repair cost?")
    assert "15 euros" in answer.messages[-1].text
    client.send(conv, token, "I want to talk to a person")
    desk.wait_for_session(conv)
    assert desk.say(conv, "Hi, Sam here.").ok  # signed with the hub secret
    wait_until(
        lambda: any(m.text == "Hi, Sam here." for m in client.messages(conv, token).messages),
        what="the agent's message",
    )
    client.send(conv, token, "Thanks Sam")
    desk.wait_for_customer(conv, 1)

    logs = sorted((stack.config.data_dir / "logs").glob("*.log"))
    assert {p.stem for p in logs} >= {"chat", "handoff", "ingest", "outbox"}
    for path in logs:
        text = path.read_text(errors="replace")
        for name, secret in (
            ("token", token),
            ("admin key", admin_key),
            ("hub secret", SECRET),
        ):
            assert secret not in text, f"the {name} is in {path.name}"

    chat = json_lines(stack.config.data_dir / "logs" / "chat.log")
    records = [r for r in chat if "_aws" not in r]
    assert records and all({"timestamp", "level", "logger", "message"} <= r.keys() for r in records)
    ours = [r for r in records if r.get("conversation_id") == conv]
    assert ours and all(r["function"] == "chat" and r.get("request_id") for r in ours)
    access = [r for r in ours if r["logger"] == "copilot.entrypoints.http.router"]
    assert any(
        r["message"].startswith("POST /conversations/<conversation_id>/messages 200")
        for r in access
    )
    assert any(
        r["message"].startswith("POST /copilots/<copilot_id>/conversations 201") for r in access
    )

    turns = [r for r in chat if "_aws" in r and r.get("conversation_id") == conv and "turn" in r]
    assert len(turns) == 3  # one metrics line per customer message
    answered = turns[0]
    (directive,) = answered["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Copilot" and directive["Dimensions"] == [["function"]]
    names = {m["Name"] for m in directive["Metrics"]}
    assert {"turn", "topics", "retrieval", "generation", "storage"} <= names
    assert answered["turn"] >= answered["retrieval"] > 0 and answered["storage"] > 0

    ingest = json_lines(stack.config.data_dir / "logs" / "ingest.log")
    assert any(
        r.get("document_key") == "repairs.md" and r.get("copilot_id") == copilot_id and "_aws" in r
        for r in ingest
    )
    outbox = json_lines(stack.config.data_dir / "logs" / "outbox.log")
    assert any(r.get("conversation_id") == conv and r.get("function") == "outbox" for r in outbox)
