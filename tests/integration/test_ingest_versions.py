"""Versioned indexing through the real adapters (moto server S3 + DynamoDB, Chroma server):
idempotent re-delivery, replacement without a mixed window, racing versions; and every object
ending with a record (failed with a reason, dead-lettered, retried)."""

from __future__ import annotations

import json
import threading
from typing import Any

import boto3
import pytest

from copilot.adapters.aws.s3 import S3BlobStore
from copilot.bootstrap import Container
from copilot.config import Settings
from copilot.errors import UnavailableError
from copilot.ingest.models import RetrySkip
from copilot.ingest.service import IngestService, ObjectEvent
from copilot.ports import StoredObject

pytestmark = pytest.mark.integration


def put(s3: Any, settings: Settings, key: str, price: int) -> str:
    body = f"# Pricing\n\n## Tune-ups\n\nA basic tune-up costs {price} dollars.".encode()
    return str(s3.put_object(Bucket=settings.bucket, Key=key, Body=body)["ETag"].strip('"'))


def answer_texts(container: Container, copilot_id: str) -> set[str]:
    retrieval = container.answerer.retrieve(copilot_id, "how much is a basic tune-up")
    return {c.chunk.text for c in retrieval.candidates}


def test_redelivered_event_is_idempotent(
    env: tuple[Container, str, Any], settings: Settings
) -> None:
    container, copilot_id, s3 = env
    key = f"{copilot_id}/pricing.md"
    etag = put(s3, settings, key, 79)
    event = ObjectEvent(bucket=settings.bucket, key=key, created=True)
    assert container.ingest.handle(event).status == "indexed"
    assert container.ingest.handle(event).status == "unchanged"
    assert container.index.count(copilot_id) == 1
    status = container.documents.get(copilot_id, "pricing.md")
    assert status is not None and status.version == etag and status.chunk_count == 1


def test_new_version_replaces_old_and_delete_removes_all(
    env: tuple[Container, str, Any], settings: Settings
) -> None:
    container, copilot_id, s3 = env
    key = f"{copilot_id}/pricing.md"
    put(s3, settings, key, 79)
    container.ingest.handle(ObjectEvent(bucket=settings.bucket, key=key, created=True))
    put(s3, settings, key, 99)
    container.ingest.handle(ObjectEvent(bucket=settings.bucket, key=key, created=True))
    assert answer_texts(container, copilot_id) == {"A basic tune-up costs 99 dollars."}
    assert container.index.count(copilot_id) == 1
    s3.delete_object(Bucket=settings.bucket, Key=key)
    assert (
        container.ingest.handle(ObjectEvent(bucket=settings.bucket, key=key, created=False)).status
        == "deleted"
    )
    assert container.index.count(copilot_id) == 0
    assert container.documents.get(copilot_id, "pricing.md") is None


class SlowReader(S3BlobStore):
    """The real S3 adapter, holding its first read until released: a slow ingest worker."""

    def __init__(self, client: Any, bucket: str) -> None:
        super().__init__(client, bucket)
        self.read_done = threading.Event()
        self.release = threading.Event()
        self._first = True

    def get(self, key: str, max_bytes: int) -> StoredObject | None:
        obj = super().get(key, max_bytes)
        if self._first:
            self._first = False
            self.read_done.set()
            self.release.wait(10)
        return obj


def test_racing_versions_end_with_the_newest_indexed_once(
    env: tuple[Container, str, Any], settings: Settings
) -> None:
    container, copilot_id, s3 = env
    key = f"{copilot_id}/pricing.md"
    put(s3, settings, key, 79)
    slow_blobs = SlowReader(container.blobs._s3, settings.bucket)  # type: ignore[attr-defined]
    slow = IngestService(
        container.copilots,
        container.documents,
        slow_blobs,
        index=lambda: container.index,
        embedder=lambda: container.embedder,
        max_bytes=settings.max_upload_bytes,
        bucket=settings.bucket,
    )
    event = ObjectEvent(bucket=settings.bucket, key=key, created=True)
    worker = threading.Thread(target=slow.handle, args=(event,))
    worker.start()
    assert slow_blobs.read_done.wait(10)  # the slow worker holds version 1
    newest = put(s3, settings, key, 99)
    assert container.ingest.handle(event).status == "indexed"  # a fast worker indexes version 2
    slow_blobs.release.set()  # the slow worker now writes version 1 late
    worker.join(20)
    assert not worker.is_alive()

    status = container.documents.get(copilot_id, "pricing.md")
    assert status is not None and status.version == newest and status.status == "indexed"
    assert answer_texts(container, copilot_id) == {"A basic tune-up costs 99 dollars."}
    assert container.index.count(copilot_id) == 1  # once: no copy of either version left over


# --- every object ends with a record: failures, dead letters and retries ----------------------


def test_oversize_file_is_recorded_failed_with_what_to_do(
    env: tuple[Container, str, Any], settings: Settings
) -> None:
    container, copilot_id, s3 = env
    small = Container(settings.model_copy(update={"max_upload_bytes": 1000}))
    key = f"{copilot_id}/big.md"
    body = b"# Big\n\n" + b"word " * 1000
    etag = s3.put_object(Bucket=settings.bucket, Key=key, Body=body)["ETag"].strip('"')

    result = small.ingest.handle(ObjectEvent(bucket=settings.bucket, key=key, created=True))

    assert result.status == "failed"
    status = container.documents.get(copilot_id, "big.md")
    assert status is not None and status.status == "failed"
    assert status.attempted_version == etag and status.pending_version is None
    assert status.reason is not None
    assert "0.0 MB, over the 0 MB limit" in status.reason  # the size and the limit
    assert "split the file" in status.reason and "COPILOT_MAX_UPLOAD_BYTES" in status.reason


@pytest.mark.parametrize(
    ("name", "body", "reason"),
    [
        ("manual.exe", b"MZ\x90\x00", "unsupported file type '.exe'"),
        ("empty.md", b"", "the file is empty"),
        ("blank.txt", b"  \n\n ", "the file is empty"),
        ("broken.pdf", b"%PDF-1.7\nnot really a pdf", "PDF"),
        ("broken.docx", b"PK\x03\x04 not really a zip", "not a valid Office document"),
    ],
)
def test_files_that_cannot_be_indexed_are_recorded_failed(
    env: tuple[Container, str, Any], settings: Settings, name: str, body: bytes, reason: str
) -> None:
    container, copilot_id, s3 = env
    s3.put_object(Bucket=settings.bucket, Key=f"{copilot_id}/{name}", Body=body)
    event = ObjectEvent(bucket=settings.bucket, key=f"{copilot_id}/{name}", created=True)
    assert container.ingest.handle(event).status == "failed"
    status = container.documents.get(copilot_id, name)
    assert status is not None and status.status == "failed"
    assert status.reason is not None and reason in status.reason


@pytest.mark.parametrize(
    "key", ["stray.md", "_lexical/snapshot.json", "folder/", "no-such-copilot/faq.md"]
)
def test_objects_outside_any_copilot_are_ignored_without_a_record(
    env: tuple[Container, str, Any], settings: Settings, key: str
) -> None:
    container, copilot_id, s3 = env
    s3.put_object(Bucket=settings.bucket, Key=key, Body=b"# FAQ\n\nWe open at nine.")
    result = container.ingest.handle(ObjectEvent(bucket=settings.bucket, key=key, created=True))
    assert result.status == "ignored" and result.reason
    assert container.documents.list(key.split("/", 1)[0]) == []
    assert container.documents.list(copilot_id) == []


def test_index_outage_keeps_its_reason_then_dead_letter_fails_it_and_retry_indexes_it(
    env: tuple[Container, str, Any], settings: Settings
) -> None:
    container, copilot_id, s3 = env
    sqs = boto3.client("sqs", endpoint_url=settings.aws_endpoint_url, region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName=f"ingest-{copilot_id}")["QueueUrl"]
    working = Container(settings.model_copy(update={"ingest_queue_url": queue_url}))
    down = Container(settings.model_copy(update={"chroma_url": "http://127.0.0.1:9"}))
    key = f"{copilot_id}/pricing.md"
    etag = put(s3, settings, key, 79)
    event = ObjectEvent(bucket=settings.bucket, key=key, created=True)

    # While the index is down, each delivery fails (the queue redelivers), and the record says why.
    with pytest.raises(UnavailableError):
        down.ingest.handle(event)
    status = container.documents.get(copilot_id, "pricing.md")
    assert status is not None and status.status == "pending"
    assert status.reason == "the knowledge index is unavailable; retrying"

    # The queue gives up (dead-letter): failed, with the cause and what to do.
    assert down.ingest.give_up(event).status == "failed"
    status = container.documents.get(copilot_id, "pricing.md")
    assert status is not None and status.status == "failed" and status.pending_version is None
    assert status.reason is not None
    assert "given up after repeated failures: the knowledge index is unavailable" in status.reason
    assert "copilot docs retry" in status.reason

    # Retry queues it again as an S3 event; the ingest function then indexes it.
    result = working.admin.retry(copilot_id)
    assert result.queued == ["pricing.md"] and result.skipped == []
    status = container.documents.get(copilot_id, "pricing.md")
    assert status is not None and status.status == "pending"
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 1
    outcomes = working.ingest_handler.handle(json.loads(messages[0]["Body"]))
    assert [r.status for r in outcomes] == ["indexed"]
    status = container.documents.get(copilot_id, "pricing.md")
    assert status is not None and status.status == "indexed" and status.version == etag
    assert status.reason is None
    assert answer_texts(container, copilot_id) == {"A basic tune-up costs 79 dollars."}

    # A late dead letter of an event that later succeeded changes nothing.
    assert down.ingest.give_up(event).status == "unchanged"
    assert working.admin.retry(copilot_id, ["pricing.md", "nope.md"]).skipped == [
        RetrySkip(doc_key="pricing.md", reason="already indexed"),
        RetrySkip(doc_key="nope.md", reason="no such document or file"),
    ]


def test_dead_letter_of_a_new_version_keeps_the_old_one_answering(
    env: tuple[Container, str, Any], settings: Settings
) -> None:
    container, copilot_id, s3 = env
    key = f"{copilot_id}/pricing.md"
    put(s3, settings, key, 79)
    event = ObjectEvent(bucket=settings.bucket, key=key, created=True)
    container.ingest.handle(event)
    put(s3, settings, key, 99)
    down = Container(settings.model_copy(update={"chroma_url": "http://127.0.0.1:9"}))
    with pytest.raises(UnavailableError):
        down.ingest.handle(event)
    down.ingest.give_up(event)
    status = container.documents.get(copilot_id, "pricing.md")
    assert status is not None and status.status == "failed"
    assert status.reason is not None
    assert status.reason.endswith("answers still use the previously indexed version")
    assert answer_texts(container, copilot_id) == {"A basic tune-up costs 79 dollars."}


def test_retry_queues_files_that_have_no_record(
    env: tuple[Container, str, Any], settings: Settings
) -> None:
    # e.g. an oversize upload from before every object got a record: retry finds it in the bucket.
    container, copilot_id, s3 = env
    sqs = boto3.client("sqs", endpoint_url=settings.aws_endpoint_url, region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName=f"ingest-{copilot_id}")["QueueUrl"]
    working = Container(settings.model_copy(update={"ingest_queue_url": queue_url}))
    put(s3, settings, f"{copilot_id}/lost.md", 50)
    assert working.admin.retry(copilot_id).queued == ["lost.md"]
    body = sqs.receive_message(QueueUrl=queue_url)["Messages"][0]["Body"]
    assert [r.status for r in working.ingest_handler.handle(json.loads(body))] == ["indexed"]
    status = container.documents.get(copilot_id, "lost.md")
    assert status is not None and status.status == "indexed"
