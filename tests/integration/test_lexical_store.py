"""The LexicalStore contract on the in-memory fake and on DynamoDB + S3 (moto server)."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest

from copilot.adapters.aws.lexical_store import DynamoS3LexicalStore
from copilot_dev.fakes import MemoryLexicalStore
from tests.conftest import provisioned_settings

pytestmark = pytest.mark.integration


@pytest.fixture(params=["memory", "aws"])
def store(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return MemoryLexicalStore()
    moto_url = request.getfixturevalue("moto_url")
    s = provisioned_settings(moto_url, "http://127.0.0.1:9")
    kw = {"endpoint_url": moto_url, "region_name": "us-east-1"}
    return DynamoS3LexicalStore(
        boto3.client("dynamodb", **kw), s.documents_table, boto3.client("s3", **kw), s.bucket
    )


def test_a_burst_of_changes_schedules_one_rebuild(store: Any) -> None:
    copilot = uuid.uuid4().hex
    assert store.mark_dirty(copilot) is True
    assert store.mark_dirty(copilot) is False
    assert store.mark_dirty(copilot) is False
    assert store.begin_rebuild(copilot) == 3
    assert store.mark_dirty(copilot) is True  # a change after the rebuild began: another one


def test_only_newer_snapshots_are_published(store: Any) -> None:
    copilot = uuid.uuid4().hex
    assert store.pointer(copilot) is None
    assert store.publish(copilot, 2, b"two") is True
    first = store.pointer(copilot)
    assert first is not None and store.fetch(copilot, first) == b"two"
    assert store.publish(copilot, 1, b"one") is False  # a slow, older rebuild
    assert store.fetch(copilot, store.pointer(copilot)) == b"two"
    assert store.publish(copilot, 3, b"three") is True
    assert store.fetch(copilot, store.pointer(copilot)) == b"three"
