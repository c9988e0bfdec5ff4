"""The Lambda entry points on real AWS-shaped events, against moto's server and Chroma."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest

from copilot.admin.models import CopilotSpec
from copilot.bootstrap import Container, set_container
from copilot.config import Settings
from tests.conftest import REPO_ROOT, load_event, provisioned_settings

pytestmark = pytest.mark.integration

ADMIN_KEY = "lambda-admin-key"


def load_function(name: str) -> ModuleType:
    path = REPO_ROOT / "functions" / name / "main.py"
    spec = importlib.util.spec_from_file_location(f"fn_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def settings(moto_url: str, chroma_url: str) -> Settings:
    return provisioned_settings(moto_url, chroma_url, admin_api_key=ADMIN_KEY)


@pytest.fixture
def container(settings: Settings) -> Iterator[Container]:
    c = Container(settings)
    set_container(c)
    yield c
    set_container(None)


def http_event(
    method: str, path: str, body: Any = None, token: str = "", query: str = ""
) -> dict[str, Any]:
    event = load_event(
        "http_api_v2",
        method=method,
        path=path,
        query=query,
        authorization=f"Bearer {token}" if token else "",
        admin_key=ADMIN_KEY,
        body="",
    )
    event["body"] = json.dumps(body) if body is not None else None
    return event


def call(fn: ModuleType, *args: Any, **kw: Any) -> tuple[int, Any]:
    response = fn.lambda_handler(http_event(*args, **kw), None)
    return response["statusCode"], json.loads(response["body"]) if response.get("body") else None


def test_ingest_batch_then_chat_answers_with_a_citation(
    container: Container, settings: Settings
) -> None:
    chat = load_function("chat")
    status, copilot = call(chat, "POST", "/admin/copilots", {"name": "Lambda bot"})
    assert status == 201
    copilot_id = copilot["copilot_id"]
    key = f"{copilot_id}/help pages/returns.md"
    s3 = boto3.client("s3", endpoint_url=settings.aws_endpoint_url, region_name="us-east-1")
    s3.put_object(
        Bucket=settings.bucket,
        Key=key,
        Body=b"# Returns\n\n## Return window\n\nYou can return a bike within 30 days of delivery for a full refund.",
    )
    s3.put_object(Bucket=settings.bucket, Key=f"{copilot_id}/manual.exe", Body=b"MZ...")

    ingest = load_function("ingest")
    batch = load_event(
        "sqs_s3_notification",
        bucket=settings.bucket,
        key=f"{copilot_id}/help+pages/returns.md",  # S3 URL-encodes keys in notifications
        bad_key=f"{copilot_id}/manual.exe",
    )
    assert ingest.lambda_handler(batch, None) == {"batchItemFailures": []}

    status, docs = call(chat, "GET", f"/admin/copilots/{copilot_id}/documents")
    by_key = {d["doc_key"]: d for d in docs["documents"]}
    assert by_key["help pages/returns.md"]["status"] == "indexed"
    assert by_key["help pages/returns.md"]["chunk_count"] == 1
    assert by_key["manual.exe"]["status"] == "failed"
    assert "unsupported file type '.exe'" in by_key["manual.exe"]["reason"]

    status, started = call(chat, "POST", f"/copilots/{copilot_id}/conversations", {})
    assert status == 201
    status, turn = call(
        chat,
        "POST",
        f"/conversations/{started['conversation_id']}/messages",
        {"text": "Within how many days can I return a bike?"},
        token=started["token"],
    )
    assert status == 200
    reply = turn["messages"][-1]
    assert "30 days" in reply["text"]
    assert reply["citations"][0]["source"] == "help pages/returns.md"
    assert reply["citations"][0]["section"] == "Return window"


def test_transient_failures_are_reported_for_retry(settings: Settings) -> None:
    # Chroma unreachable: the message must come back (partial batch failure), not be dropped.
    broken = Container(settings.model_copy(update={"chroma_url": "http://127.0.0.1:9"}))
    set_container(broken)
    try:
        chat_copilot = broken.admin.create(CopilotSpec(name="x"))
        key = f"{chat_copilot.copilot_id}/a.md"
        s3 = boto3.client("s3", endpoint_url=settings.aws_endpoint_url, region_name="us-east-1")
        s3.put_object(Bucket=settings.bucket, Key=key, Body=b"# A\n\ntext")
        batch = load_event("sqs_s3_notification", bucket=settings.bucket, key=key, bad_key=key)
        batch["Records"] = batch["Records"][:1]
        result = load_function("ingest").lambda_handler(batch, None)
        assert result == {"batchItemFailures": [{"itemIdentifier": "msg-created"}]}
    finally:
        set_container(None)


def test_handoff_health_route(container: Container) -> None:
    status, body = call(load_function("handoff"), "GET", "/handoff/healthz")
    assert status == 200 and body == {"status": "ok", "function": "handoff"}


def test_oversize_file_is_recorded_failed_and_its_message_acknowledged(
    settings: Settings,
) -> None:
    small = Container(settings.model_copy(update={"max_upload_bytes": 1000}))
    set_container(small)
    try:
        copilot_id = small.admin.create(CopilotSpec(name="small")).copilot_id
        key = f"{copilot_id}/big.md"
        s3 = boto3.client("s3", endpoint_url=settings.aws_endpoint_url, region_name="us-east-1")
        s3.put_object(Bucket=settings.bucket, Key=key, Body=b"# Big\n\n" + b"word " * 1000)
        batch = load_event("sqs_s3_notification", bucket=settings.bucket, key=key, bad_key=key)
        batch["Records"] = batch["Records"][:1]
        # Acknowledged: a size that can never pass is no reason to retry.
        assert load_function("ingest").lambda_handler(batch, None) == {"batchItemFailures": []}
        status = small.documents.get(copilot_id, "big.md")
        assert status is not None and status.status == "failed"
        assert status.reason is not None and "COPILOT_MAX_UPLOAD_BYTES" in status.reason
    finally:
        set_container(None)


def test_dead_letters_are_recorded_failed_and_the_admin_route_retries_them(
    settings: Settings,
) -> None:
    kw = {"endpoint_url": settings.aws_endpoint_url, "region_name": "us-east-1"}
    queue_url = boto3.client("sqs", **kw).create_queue(QueueName="lambda-retry")["QueueUrl"]
    down = Container(settings.model_copy(update={"chroma_url": "http://127.0.0.1:9"}))
    working = Container(settings.model_copy(update={"ingest_queue_url": queue_url}))
    copilot_id = working.admin.create(CopilotSpec(name="dead letters")).copilot_id
    key = f"{copilot_id}/a.md"
    boto3.client("s3", **kw).put_object(Bucket=settings.bucket, Key=key, Body=b"# A\n\ntext")
    batch = load_event("sqs_s3_notification", bucket=settings.bucket, key=key, bad_key=key)
    batch["Records"] = batch["Records"][:1]
    ingest = load_function("ingest")
    set_container(down)
    try:
        assert ingest.lambda_handler(batch, None)["batchItemFailures"]  # retried by the queue
        # ... until the queue gives up: the ingest DLQ's consumer gets the same message.
        assert ingest.dead_letter_handler(batch, None) == {"batchItemFailures": []}
    finally:
        set_container(None)
    status = working.documents.get(copilot_id, "a.md")
    assert status is not None and status.status == "failed"
    assert status.reason is not None and "the knowledge index is unavailable" in status.reason

    set_container(working)
    try:
        chat = load_function("chat")
        code, body = call(chat, "POST", f"/admin/copilots/{copilot_id}/documents/retry")
        assert code == 202
        assert body == {"copilot_id": copilot_id, "queued": ["a.md"], "skipped": []}
        code, body = call(
            chat, "POST", f"/admin/copilots/{copilot_id}/documents/retry", {"keys": ["a.md", "b"]}
        )
        assert code == 202
        assert body["queued"] == ["a.md"]
        assert body["skipped"] == [{"doc_key": "b", "reason": "no such document or file"}]
        event = http_event("POST", f"/admin/copilots/{copilot_id}/documents/retry")
        event["headers"].pop("x-admin-key")
        assert chat.lambda_handler(event, None)["statusCode"] == 401
        sqs = boto3.client("sqs", **kw)
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
        records = [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]
        assert ingest.lambda_handler({"Records": records}, None) == {"batchItemFailures": []}
    finally:
        set_container(None)
    status = working.documents.get(copilot_id, "a.md")
    assert status is not None and status.status == "indexed" and status.reason is None
