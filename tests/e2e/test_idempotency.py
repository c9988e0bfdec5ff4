"""Idempotent customer writes through the whole local stack: a client whose request times out
retries it with the same Idempotency-Key, and the stored conversation holds it once; a message
saved while the hub outbox's queue is gone is answered 200 and still reaches the agent once the
queue is back (a customer poll nudges the outbox again)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from copilot.config import Settings
from copilot_dev.client import CopilotClient
from copilot_dev.emulators.agent_desk import AgentDesk
from copilot_dev.localstack import LocalStack, StackConfig
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.e2e

SECRET = "e2e-idempotency-desk-secret"
TIMES_OUT = (5.0, 0.001)  # connect normally, then give up on the answer at once


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = StackConfig.with_free_ports(REPO_ROOT, tmp_path_factory.mktemp("idempotency-stack"))
    config.extra_env = {"COPILOT_HUB_SECRET_DESK": SECRET}
    config.hub_backoff_base = 1
    config.hub_backoff_max = 1
    config.outbox_visibility_timeout = 5
    with LocalStack(config) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> CopilotClient:
    return stack.copilot_client()


def timed_out(method: str, url: str, **kwargs: Any) -> None:
    """Send a request and stop waiting for its answer: the server still runs it."""
    with pytest.raises(requests.exceptions.Timeout):
        requests.request(method, url, timeout=TIMES_OUT, **kwargs)


def stored_texts(client: CopilotClient, conv: str, token: str) -> list[str]:
    return [m.text for m in client.messages(conv, token).messages if m.role == "customer"]


def test_posts_retried_after_a_timeout_are_stored_once(client: CopilotClient) -> None:
    copilot_id = client.create_copilot({"name": "Retry Shop"}).copilot_id
    started = client.start(copilot_id)
    conv, token = started.conversation_id, started.token
    url = f"{client.base_url}/conversations/{conv}/messages"
    auth = {"Authorization": f"Bearer {token}"}

    replayed = 0
    for i in range(10):
        key = str(uuid.uuid4())
        timed_out(
            "POST", url, json={"text": f"question {i}"}, headers={**auth, "Idempotency-Key": key}
        )
        turn = client.send(conv, token, f"question {i}", idempotency_key=key)
        assert turn.messages[0].text == f"question {i}"
        assert client.last_response is not None
        replayed += client.last_response.headers.get("Idempotent-Replayed") == "true"
        # Once more, well after the first has finished: the stored answer, nothing new.
        assert client.send(conv, token, f"question {i}", idempotency_key=key) == turn

    texts = stored_texts(client, conv, token)
    assert texts == [f"question {i}" for i in range(10)]  # 10 of 10 stored once, in order
    assert replayed >= 1  # at least one retry found the first try's stored answer
    page = client.messages(conv, token)
    assert [m.seq for m in page.messages] == list(range(1, page.last_seq + 1))

    # The control: the same timeout and retry without a key stores the message twice.
    timed_out("POST", url, json={"text": "no key"}, headers=auth)
    client.send(conv, token, "no key")
    deadline = time.time() + 10
    while stored_texts(client, conv, token).count("no key") < 2 and time.time() < deadline:
        time.sleep(0.1)
    assert stored_texts(client, conv, token).count("no key") == 2


def test_a_start_retried_after_a_timeout_gives_one_conversation_and_a_working_token(
    stack: LocalStack, client: CopilotClient
) -> None:
    copilot_id = client.create_copilot({"name": "Retry Start"}).copilot_id
    key = str(uuid.uuid4())
    url = f"{client.base_url}/copilots/{copilot_id}/conversations"
    body = {"variables": {"name": "Ann"}}

    timed_out("POST", url, json=body, headers={"Idempotency-Key": key})
    time.sleep(1)  # the first try has written its conversation by now
    again = client.start(copilot_id, variables={"name": "Ann"}, idempotency_key=key)
    assert client.last_response is not None
    assert client.last_response.headers.get("Idempotent-Replayed") == "true"
    once_more = client.start(copilot_id, variables={"name": "Ann"}, idempotency_key=key)
    assert once_more == again

    turn = client.send(again.conversation_id, again.token, "hello")
    assert turn.messages[0].text == "hello"
    # One conversation for the copilot, and its token is nowhere in the table in clear text.
    dynamodb = stack.client("dynamodb")
    table = Settings().conversations_table  # the stack's functions use the default names
    items = [
        item
        for page in dynamodb.get_paginator("scan").paginate(TableName=table)
        for item in page["Items"]
    ]
    assert any(i["pk"]["S"].startswith("claim#outcome:") for i in items)
    conversations = [i for i in items if i["pk"]["S"].startswith("conv#") and i["sk"]["N"] == "0"]
    mine = [i for i in conversations if copilot_id in i["body"]["S"]]
    assert len(mine) == 1 and again.conversation_id in mine[0]["pk"]["S"]
    assert not any(again.token in str(i) or key in str(i) for i in items)


def test_a_message_saved_while_the_outbox_queue_is_down_reaches_the_agent_later(
    stack: LocalStack, client: CopilotClient, desk: AgentDesk
) -> None:
    hub = {"type": "generic", "url": desk.hub_url, "secret_ref": "DESK"}
    copilot_id = client.create_copilot({"name": "Outbox Shop", "hub": hub}).copilot_id
    started = client.start(copilot_id)
    conv, token = started.conversation_id, started.token
    sqs = stack.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=stack.outbox_url, AttributeNames=["All"])[
        "Attributes"
    ]
    settable = ("FifoQueue", "ContentBasedDeduplication", "VisibilityTimeout", "RedrivePolicy")
    sqs.delete_queue(QueueUrl=stack.outbox_url)
    try:
        asked = client.send(conv, token, "I want to talk to a person")
        said = client.send(conv, token, "my chain snapped", idempotency_key=str(uuid.uuid4()))
    finally:
        name = stack.outbox_url.rsplit("/", 1)[1]
        recreated = sqs.create_queue(
            QueueName=name, Attributes={k: v for k, v in attributes.items() if k in settable}
        )["QueueUrl"]
        assert recreated == stack.outbox_url
    assert asked.state == "handoff_requested"  # answered 200, not the 503 that invites a retry
    assert [m.role for m in said.messages] == ["customer"]
    assert stored_texts(client, conv, token).count("my chain snapped") == 1
    assert all(s.conversation_id != conv for s in desk.sessions())  # nothing reached the hub

    # The web chat polls every couple of seconds; a poll finds the outbox behind and nudges it.
    # (Polled a little faster here: the servers close connections idle for 2 s, and a pooled
    # connection reused just as it is closed fails for reasons that are not under test.)
    deadline = time.time() + 90
    while time.time() < deadline:
        client.messages(conv, token)
        if any(s.conversation_id == conv and s.customer_texts for s in desk.sessions()):
            break
        time.sleep(0.5)
    assert desk.wait_for_customer(conv, 1, timeout=5) == ["my chain snapped"]
