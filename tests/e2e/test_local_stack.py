"""End to end against the whole local stack, exactly as `copilot up` runs it: moto server,
Chroma server, the three functions under functions-framework, and the S3->SQS->ingest pump."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from copilot_dev.client import ApiError, CopilotClient
from copilot_dev.concurrency import run_concurrently
from copilot_dev.demo import seed_demo, upload_files, wait_indexed
from copilot_dev.localstack import LocalStack, StackConfig
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = StackConfig.with_free_ports(REPO_ROOT, tmp_path_factory.mktemp("stack"))
    config.visibility_timeout = 1  # redeliver failed events quickly
    with LocalStack(config) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> CopilotClient:
    return stack.copilot_client()


@pytest.fixture(scope="module")
def demo(stack: LocalStack, client: CopilotClient) -> str:
    copilot, docs = seed_demo(
        client, stack.client("s3"), stack.config.bucket, REPO_ROOT / "infra" / "demo"
    )
    assert docs and all(d.status == "indexed" for d in docs), docs
    return copilot.copilot_id


def test_scripted_session(client: CopilotClient, demo: str) -> None:
    copilot = client.get_copilot(demo)
    started = client.start(demo)
    assert started.messages[0].text == copilot.messages.conversation_start
    conv, token = started.conversation_id, started.token

    greeting = client.send(conv, token, "Hello!").messages[-1]
    assert greeting.text == copilot.messages.greeting

    answer = client.send(conv, token, "How long is the password reset link valid?").messages[-1]
    assert "60 minutes" in answer.text
    assert answer.citations and answer.citations[0].source == "account-and-password.md"
    assert "[1]" in answer.text and "Sources:" in answer.text

    unknown = client.send(conv, token, "What is the capital of France?").messages[-1]
    assert unknown.text == copilot.messages.no_match

    confirm = client.send(conv, token, "start over").messages[-1]
    assert confirm.suggestions == ["Yes", "No"]
    reset = client.send(conv, token, "yes").messages
    assert [m.text for m in reset[1:]] == [
        copilot.messages.reset_conversation,
        copilot.messages.start_over,
    ]

    page = client.messages(conv, token, after=0)
    assert [m.seq for m in page.messages] == list(range(1, page.last_seq + 1))
    assert page.state == "bot"


def test_no_match_threshold_offers_the_escalate_link(client: CopilotClient, demo: str) -> None:
    copilot = client.get_copilot(demo)
    s = client.start(demo)
    replies: list[str] = []
    for question in ["What is the capital of France?", "Who won the 1998 World Cup?"][
        : copilot.no_match_threshold
    ]:
        replies = [m.text for m in client.send(s.conversation_id, s.token, question).messages[1:]]
    assert replies == [copilot.messages.no_match, copilot.messages.escalate_link]


def test_concurrent_turns_on_one_conversation_lose_nothing(
    client: CopilotClient, demo: str
) -> None:
    s = client.start(demo)
    texts = [f"hello {i}" for i in range(16)]
    sends = [
        lambda t=t: CopilotClient(client.base_url).send(s.conversation_id, s.token, t)
        for t in texts
    ]
    assert run_concurrently(sends) == []
    page = client.messages(s.conversation_id, s.token)
    assert [m.seq for m in page.messages] == list(range(1, page.last_seq + 1))
    customer = [m.text for m in page.messages if m.role == "customer"]
    assert sorted(customer) == sorted(texts)
    # Each customer message is followed directly by its reply: turns never interleave.
    for i, m in enumerate(page.messages[1:], start=1):
        if m.role == "customer":
            assert page.messages[i + 1].role == "copilot"


def test_upload_replace_delete_and_failed_types(
    stack: LocalStack, client: CopilotClient, tmp_path: Path
) -> None:
    copilot = client.create_copilot({"name": "Docs bot"})
    s3 = stack.client("s3")
    bucket = stack.config.bucket
    good = tmp_path / "pricing.md"
    good.write_text("# Pricing\n\n## Tune-ups\n\nA basic tune-up costs 79 dollars.")
    bad = tmp_path / "brochure.psd"
    bad.write_bytes(b"8BPS not really")
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\x00\x01binary")
    keys = upload_files(s3, bucket, copilot.copilot_id, [good, bad, binary], tmp_path)
    docs = {d.doc_key: d for d in wait_indexed(client, copilot.copilot_id, keys, timeout=60)}
    assert docs["pricing.md"].status == "indexed"
    assert docs["brochure.psd"].status == "failed" and "unsupported file type" in (
        docs["brochure.psd"].reason or ""
    )
    assert docs["blob.txt"].status == "failed" and "binary" in (docs["blob.txt"].reason or "")

    s = client.start(copilot.copilot_id)
    assert (
        "79 dollars"
        in client.send(s.conversation_id, s.token, "How much does a basic tune-up cost?")
        .messages[-1]
        .text
    )

    # A new version replaces the old one.
    good.write_text("# Pricing\n\n## Tune-ups\n\nA basic tune-up costs 99 dollars.")
    upload_files(s3, bucket, copilot.copilot_id, [good], tmp_path)
    deadline = time.time() + 30
    while True:
        reply = (
            client.send(s.conversation_id, s.token, "How much does a basic tune-up cost?")
            .messages[-1]
            .text
        )
        if "99 dollars" in reply or time.time() > deadline:
            break
        time.sleep(0.3)
    assert "99 dollars" in reply and "79 dollars" not in reply

    # Deleting the file removes its knowledge and its status.
    s3.delete_object(Bucket=bucket, Key=f"{copilot.copilot_id}/pricing.md")
    deadline = time.time() + 30
    while (
        any(d.doc_key == "pricing.md" for d in client.documents(copilot.copilot_id))
        and time.time() < deadline
    ):
        time.sleep(0.2)
    assert not any(d.doc_key == "pricing.md" for d in client.documents(copilot.copilot_id))
    reply = client.send(s.conversation_id, s.token, "How much does a basic tune-up cost?").messages[
        -1
    ]
    assert not reply.citations

    # Every event was consumed: nothing loops on the queue, nothing went to the dead-letter queue.
    # (Delayed lexical-index rebuilds may still be on their way: give them a moment.)
    sqs = stack.client("sqs")

    def pending(url: str) -> int:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return sum(
            int(attrs[k])
            for k in (
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            )
        )

    deadline = time.time() + 15
    while pending(stack.queue_url) and time.time() < deadline:
        time.sleep(0.2)
    assert pending(stack.queue_url) == 0
    assert pending(stack.dlq_url) == 0


def test_errors_over_http(stack: LocalStack, client: CopilotClient, demo: str) -> None:
    base = stack.config.function_url("chat")
    with pytest.raises(ApiError) as info:
        CopilotClient(base, admin_key="wrong").get_copilot(demo)
    assert info.value.status == 403
    assert (
        requests.post(f"{base}/copilots/unknown/conversations", json={}, timeout=5).status_code
        == 404
    )
    r = requests.post(
        f"{base}/conversations/x/messages",
        data="{",
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert r.status_code == 400
    assert (
        requests.get(stack.config.function_url("handoff") + "/healthz", timeout=5).json()["status"]
        == "ok"
    )


def test_events_for_another_bucket_are_ignored(stack: LocalStack, demo: str) -> None:
    import json

    before = stack.pumped
    foreign = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": "someone-elses-bucket"},
                    "object": {"key": f"{demo}/x.md"},
                },
            }
        ]
    }
    stack.client("sqs").send_message(QueueUrl=stack.queue_url, MessageBody=json.dumps(foreign))
    deadline = time.time() + 20
    while stack.pumped == before and time.time() < deadline:
        time.sleep(0.1)
    assert stack.pumped == before + 1  # delivered once, acknowledged
    assert "x.md" not in {
        d.doc_key
        for d in CopilotClient(
            stack.config.function_url("chat"), stack.config.admin_api_key
        ).documents(demo)
    }


def test_reindex_rebuilds_the_index_from_the_files(
    stack: LocalStack, client: CopilotClient, tmp_path: Path
) -> None:
    copilot = client.create_copilot({"name": "Reindex bot"})
    doc = tmp_path / "hours.md"
    doc.write_text("# Hours\n\n## Weekdays\n\nThe shop opens at 8 a.m. on weekdays.")
    versions = upload_files(
        stack.client("s3"), stack.config.bucket, copilot.copilot_id, [doc], tmp_path
    )
    wait_indexed(client, copilot.copilot_id, versions, timeout=60)
    s = client.start(copilot.copilot_id)
    assert (
        "8 a.m."
        in client.send(s.conversation_id, s.token, "When does the shop open on weekdays?")
        .messages[-1]
        .text
    )

    assert client.reindex(copilot.copilot_id) == {"copilot_id": copilot.copilot_id, "queued": 1}
    statuses = wait_indexed(client, copilot.copilot_id, versions, timeout=60)
    assert [(d.doc_key, d.status, d.version) for d in statuses] == [
        ("hours.md", "indexed", versions["hours.md"])
    ]
    # The chat function had cached the dropped collection: it finds the rebuilt one.
    assert (
        "8 a.m."
        in client.send(s.conversation_id, s.token, "When does the shop open on weekdays?")
        .messages[-1]
        .text
    )
