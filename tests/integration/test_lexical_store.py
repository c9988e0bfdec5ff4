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


def test_a_burst_of_changes_schedules_one_merge(store: Any) -> None:
    copilot = uuid.uuid4().hex
    assert store.mark_dirty(copilot) is True
    assert store.mark_dirty(copilot) is False
    assert store.mark_dirty(copilot) is False
    assert store.begin_rebuild(copilot) == 3
    assert store.mark_dirty(copilot) is True  # a change after the merge began: another one


def test_segments_are_added_and_replaced_in_the_manifest(store: Any) -> None:
    copilot = uuid.uuid4().hex
    assert store.manifest(copilot) is None
    first, second = store.next_seq(copilot), store.next_seq(copilot)
    assert second > first
    one = store.add_segment(copilot, f"{first}-1-a", b"one")
    two = store.add_segment(copilot, f"{second}-1-b", b"two")
    assert one.segments == (f"{first}-1-a",)
    assert two.segments == (f"{first}-1-a", f"{second}-1-b") and two.version > one.version
    assert store.fetch(copilot, f"{second}-1-b") == b"two"

    # A merge replaces what it merged; a segment added meanwhile stays listed.
    third = store.add_segment(copilot, "9-1-c", b"three")
    assert store.replace_segments(copilot, [f"{first}-1-a", f"{second}-1-b"], "8-2-m", b"m")
    now = store.manifest(copilot)
    assert set(now.segments) == {"9-1-c", "8-2-m"} and now.version > third.version
    assert store.fetch(copilot, "8-2-m") == b"m"
    assert store.fetch(copilot, f"{first}-1-a") is None  # merged away

    # A second merge of segments that are gone changes nothing.
    assert not store.replace_segments(copilot, [f"{first}-1-a"], "8-1-x", b"x")
    assert store.manifest(copilot) == now
