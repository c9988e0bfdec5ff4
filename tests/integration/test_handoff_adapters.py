"""Hand-off adapters against real servers on loopback: the conversation store's claims (memory
fake and DynamoDB on moto's server, one contract), the SQS FIFO outbox, and the Lambda outbox
handler delivering to the agent desk (a generic hub) over signed HTTP."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from copilot.adapters.aws.dynamo import DynamoConversationStore, create_tables
from copilot.adapters.aws.sqs import SqsHubOutbox
from copilot.admin.models import CopilotSpec
from copilot.bootstrap import Container, set_container
from copilot.config import Settings
from copilot.conflicts import WriteConflict
from copilot.conversation.models import Conversation, Message
from copilot.errors import DuplicateError
from copilot.handoff.models import HubLink
from copilot_dev.emulators.agent_desk import AgentDesk
from copilot_dev.fakes import MemoryConversationStore, StaticSecretStore
from tests.integration.test_lambda_handlers import load_function

pytestmark = pytest.mark.integration

SECRET = "desk-secret"


@pytest.fixture(scope="module")
def tables(moto_url: str) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    names = {
        "copilots": f"h-copilots-{suffix}",
        "conversations": f"h-conversations-{suffix}",
        "documents": f"h-documents-{suffix}",
        "analytics_events": f"h-analytics-{suffix}",
    }
    create_tables(boto3.client("dynamodb", endpoint_url=moto_url, region_name="us-east-1"), **names)
    return names


@pytest.fixture(params=["memory", "dynamo"])
def store(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return MemoryConversationStore()
    moto_url = request.getfixturevalue("moto_url")
    table = request.getfixturevalue("tables")["conversations"]
    client = boto3.client("dynamodb", endpoint_url=moto_url, region_name="us-east-1")
    return DynamoConversationStore(client, table)


def fresh(store: Any) -> Conversation:
    conversation = Conversation(conversation_id=uuid.uuid4().hex, copilot_id="c", token_hash="h")
    return store.create(conversation, [Message(seq=1, role="copilot", text="hi")])  # type: ignore[no-any-return]


def test_a_claim_applies_once_and_a_duplicate_writes_nothing(store: Any) -> None:
    conversation = fresh(store)
    first = store.append(
        conversation, [Message(seq=2, role="agent", text="one")], claims=["hub#c#generic#e1"]
    )
    with pytest.raises(DuplicateError):
        store.append(first, [Message(seq=3, role="agent", text="one")], claims=["hub#c#generic#e1"])
    assert store.get(conversation.conversation_id) == first
    assert [m.text for m in store.messages_after(conversation.conversation_id, 0)] == ["hi", "one"]
    with pytest.raises(WriteConflict):  # a stale version is still a conflict, not a duplicate
        store.append(conversation, [Message(seq=2, role="agent", text="x")], claims=["e2"])
    second = store.append(first, [], claims=["hub#c#generic#e2"])  # a held event: no message
    assert second.version == first.version + 1 and second.last_seq == first.last_seq


def test_a_hub_link_is_written_with_the_conversation_and_never_repointed(store: Any) -> None:
    conversation = fresh(store)
    cid = conversation.conversation_id
    key = HubLink.key_of("genesys", "c", f"hub-{uuid.uuid4().hex}")
    link = HubLink(key=key, conversation_id=cid, handoff_id="h1")
    assert store.linked(key) is None
    first = store.append(conversation, [], links=[link])
    assert store.linked(key) == link
    again = store.append(first, [], links=[link])  # a retried write of the same link: kept
    assert again.version == first.version + 1 and store.linked(key) == link
    other = fresh(store)
    elsewhere = link.model_copy(update={"conversation_id": other.conversation_id})
    with pytest.raises(DuplicateError):  # the hub's id already names another conversation
        store.append(other, [Message(seq=2, role="agent", text="x")], links=[elsewhere])
    assert store.linked(key) == link
    assert store.get(other.conversation_id) == other  # the whole write was refused
    with pytest.raises(WriteConflict):  # the link is written only with a current version
        store.append(first, [], links=[HubLink(key=key + "x", conversation_id=cid, handoff_id="h")])
    assert store.linked(key + "x") is None


def test_racing_writers_with_one_claim_apply_it_once(store: Any) -> None:
    conversation = fresh(store)
    results: list[str] = []

    def apply() -> None:
        for _ in range(50):
            current = store.get(conversation.conversation_id)
            message = Message(seq=current.last_seq + 1, role="agent", text="once")
            try:
                store.append(current, [message], claims=["hub#c#generic#same"])
                results.append("applied")
                return
            except DuplicateError:
                results.append("duplicate")
                return
            except WriteConflict:
                continue

    threads = [threading.Thread(target=apply) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["applied"] + ["duplicate"] * 7
    texts = [m.text for m in store.messages_after(conversation.conversation_id, 0)]
    assert texts == ["hi", "once"]


@pytest.fixture(scope="module")
def sqs(moto_url: str) -> Any:
    return boto3.client("sqs", endpoint_url=moto_url, region_name="us-east-1")


def fifo_queue(sqs: Any) -> str:
    url: str = sqs.create_queue(
        QueueName=f"outbox-{uuid.uuid4().hex[:8]}.fifo",
        Attributes={"FifoQueue": "true", "VisibilityTimeout": "30"},
    )["QueueUrl"]
    return url


def test_fifo_outbox_keeps_order_per_conversation_and_backs_off(sqs: Any) -> None:
    url = fifo_queue(sqs)
    outbox = SqsHubOutbox(sqs, url)
    outbox.nudge("conv-a", "conv-a:1")
    outbox.nudge("conv-a", "conv-a:1")  # the same write nudging twice: deduplicated by SQS
    outbox.nudge("conv-a", "conv-a:2", attempt=3)
    outbox.nudge("conv-b", "conv-b:1")
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])
    bodies = [json.loads(m["Body"]) for m in got["Messages"]]
    assert [(b["conversation_id"], b["attempt"]) for b in bodies] == [
        ("conv-a", 0),
        ("conv-a", 3),
        ("conv-b", 0),
    ]
    assert {m["Attributes"]["MessageGroupId"] for m in got["Messages"]} == {"conv-a", "conv-b"}
    # While conv-a's messages are in flight, a new one for conv-a waits behind them.
    outbox.nudge("conv-a", "conv-a:3")
    assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages") is None
    # A failed delivery backs off its message and the ones behind it (the group stays
    # blocked while any of its messages is in flight); then they come back in order.
    for message in got["Messages"][:2]:
        outbox.retry_later(message["ReceiptHandle"], 0)
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"])["attempt"] for m in again] == [0, 3, 0]


@pytest.fixture
def lambda_world(moto_url: str, tables: dict[str, str], sqs: Any) -> Iterator[dict[str, Any]]:
    url = fifo_queue(sqs)
    settings = Settings(
        aws_endpoint_url=moto_url,
        copilots_table=tables["copilots"],
        conversations_table=tables["conversations"],
        documents_table=tables["documents"],
        analytics_table=tables["analytics_events"],
        hub_outbox_queue_url=url,
        hub_max_attempts=5,
    )
    container = Container(settings, hub_secrets=StaticSecretStore({"DESK": SECRET}))
    set_container(container)
    with AgentDesk(SECRET) as desk:
        yield {"container": container, "desk": desk, "queue": url}
    set_container(None)


def test_lambda_outbox_batch_delivers_and_reports_failures_per_conversation(
    lambda_world: dict[str, Any], sqs: Any
) -> None:
    container, desk, url = (lambda_world[k] for k in ("container", "desk", "queue"))
    hub = {"type": "generic", "url": desk.hub_url, "secret_ref": "DESK"}
    copilot = container.admin.create(CopilotSpec.model_validate({"name": "Bikes", "hub": hub}))
    started = container.chat.start(copilot.copilot_id)
    conv, token = started.conversation_id, started.token
    container.chat.post(conv, token, "talk to a person")
    handoff = load_function("handoff")

    def batch() -> dict[str, Any]:
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", [])
        records = [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m["Attributes"],
                "eventSource": "aws:sqs",
            }
            for m in messages
        ]
        return {"Records": records}

    first = batch()
    assert handoff.lambda_handler(first, None) == {"batchItemFailures": []}
    for record in first["Records"]:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=record["receiptHandle"])
    assert desk.session(conv).status == "waiting"
    assert desk.session(conv).context["va_LastPhrases"] == "talk to a person"

    # The desk is down: the first record fails and the one behind it, same conversation,
    # is reported failed without being tried (FIFO order), both backed off.
    desk.fail_with = 503
    container.chat.post(conv, token, "one")
    container.chat.post(conv, token, "two")
    failing = batch()
    assert len(failing["Records"]) == 2
    calls = len(desk.requests)
    result = handoff.lambda_handler(failing, None)
    assert result == {
        "batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in failing["Records"]]
    }
    assert len(desk.requests) == calls + 1
    desk.fail_with = None
    assert sqs.receive_message(QueueUrl=url).get("Messages") is None  # backing off (2 s)
