"""Versioned indexing through the real adapters (moto server S3 + DynamoDB, Chroma server):
idempotent re-delivery, replacement without a mixed window, and racing versions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from copilot.adapters.aws.s3 import S3BlobStore
from copilot.admin.models import CopilotSpec
from copilot.bootstrap import Container
from copilot.config import Settings
from copilot.ingest.service import IngestService, ObjectEvent
from copilot.ports import StoredObject
from tests.conftest import provisioned_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(moto_url: str, chroma_url: str) -> Settings:
    return provisioned_settings(moto_url, chroma_url)


@pytest.fixture
def env(settings: Settings) -> Iterator[tuple[Container, str, Any]]:
    container = Container(settings)
    copilot = container.admin.create(CopilotSpec(name="versions"))
    s3 = boto3.client("s3", endpoint_url=settings.aws_endpoint_url, region_name="us-east-1")
    yield container, copilot.copilot_id, s3


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
