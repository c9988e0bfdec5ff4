"""One contract suite for each storage port, run against the in-memory fake and the DynamoDB
adapter talking HTTP to moto's server."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest

from copilot.adapters.aws.dynamo import (
    DynamoConversationStore,
    DynamoCopilotRegistry,
    DynamoDocumentStore,
    create_tables,
)
from copilot.admin.models import Copilot
from copilot.conflicts import WriteConflict
from copilot.conversation.models import Conversation, IdempotentOutcome, Message
from copilot.errors import DuplicateError
from copilot.ingest.models import DocumentStatus, DocumentStatusValue
from copilot.schema import utcnow
from copilot_dev.fakes import (
    MemoryConversationStore,
    MemoryCopilotRegistry,
    MemoryDocumentStore,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dynamodb(moto_url: str) -> Any:
    client = boto3.client("dynamodb", endpoint_url=moto_url, region_name="us-east-1")
    create_tables(
        client,
        copilots="t-copilots",
        conversations="t-conversations",
        documents="t-documents",
        analytics_events="t-analytics",
    )
    return client


@pytest.fixture(params=["memory", "dynamo"])
def stores(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any, Any]]:
    if request.param == "memory":
        yield MemoryCopilotRegistry(), MemoryConversationStore(), MemoryDocumentStore()
    else:
        db = request.getfixturevalue("dynamodb")
        yield (
            DynamoCopilotRegistry(db, "t-copilots"),
            DynamoConversationStore(db, "t-conversations", events_table="t-analytics"),
            DynamoDocumentStore(db, "t-documents"),
        )


def make_copilot() -> Copilot:
    now = utcnow()
    return Copilot(copilot_id=uuid.uuid4().hex, name="Bot", created_at=now, updated_at=now)


def make_conversation() -> Conversation:
    return Conversation(conversation_id=uuid.uuid4().hex, copilot_id="c", token_hash="h")


def msg(seq: int, text: str = "x") -> Message:
    return Message(seq=seq, role="customer", text=text)


def test_copilot_registry_round_trip_and_optimistic_replace(stores: tuple[Any, Any, Any]) -> None:
    registry, _, _ = stores
    copilot = make_copilot()
    registry.create(copilot)
    assert registry.get(copilot.copilot_id) == copilot
    with pytest.raises(WriteConflict):
        registry.create(copilot)
    renamed = copilot.model_copy(update={"name": "New", "version": 2})
    registry.replace(renamed, expected_version=1)
    assert registry.get(copilot.copilot_id).name == "New"  # type: ignore[union-attr]
    with pytest.raises(WriteConflict):
        registry.replace(renamed.model_copy(update={"version": 3}), expected_version=1)
    assert registry.get("missing") is None
    assert copilot.copilot_id in {c.copilot_id for c in registry.list()}


def test_conversation_append_is_conditional_on_version(stores: tuple[Any, Any, Any]) -> None:
    _, conversations, _ = stores
    created = conversations.create(make_conversation(), [msg(1, "start")])
    assert (created.version, created.last_seq) == (1, 1)
    after = conversations.append(created, [msg(2), msg(3)])
    assert (after.version, after.last_seq) == (2, 3)
    with pytest.raises(WriteConflict):
        conversations.append(created, [msg(2, "stale writer")])  # read version 1: lost the race
    assert [m.text for m in conversations.messages_after(created.conversation_id, 0)] == [
        "start",
        "x",
        "x",
    ]
    assert [m.seq for m in conversations.messages_after(created.conversation_id, 1)] == [2, 3]
    assert [m.seq for m in conversations.recent_messages(created.conversation_id, 2)] == [2, 3]
    assert conversations.get(created.conversation_id) == after
    assert conversations.get("missing") is None


def test_concurrent_appends_lose_and_duplicate_nothing(stores: tuple[Any, Any, Any]) -> None:
    _, conversations, _ = stores
    conv = conversations.create(make_conversation(), [msg(1, "start")])
    writers, per_writer = 4, 5

    def writer(name: str) -> None:
        for i in range(per_writer):
            while True:
                current = conversations.get(conv.conversation_id)
                try:
                    conversations.append(current, [msg(current.last_seq + 1, f"{name}-{i}")])
                    break
                except WriteConflict:
                    continue

    threads = [threading.Thread(target=writer, args=(f"w{n}",)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = conversations.messages_after(conv.conversation_id, 0, limit=500)
    assert [m.seq for m in stored] == list(range(1, 2 + writers * per_writer))
    texts = [m.text for m in stored[1:]]
    assert sorted(texts) == sorted(f"w{n}-{i}" for n in range(writers) for i in range(per_writer))
    for n in range(writers):  # each writer's messages stay in its order
        mine = [t for t in texts if t.startswith(f"w{n}-")]
        assert mine == [f"w{n}-{i}" for i in range(per_writer)]


def test_document_status_revisions_and_active_versions(stores: tuple[Any, Any, Any]) -> None:
    _, _, documents = stores
    copilot_id = uuid.uuid4().hex
    status = DocumentStatus(
        copilot_id=copilot_id, doc_key="a.md", status=DocumentStatusValue.FAILED, reason="bad"
    )
    saved = documents.save(status)
    assert saved.rev == 1 and documents.get(copilot_id, "a.md") == saved
    with pytest.raises(WriteConflict):
        documents.save(status)  # rev 0 again: it exists already
    indexed = documents.save(
        saved.model_copy(update={"status": DocumentStatusValue.INDEXED, "version": "e1"})
    )
    with pytest.raises(WriteConflict):
        documents.save(saved.model_copy(update={"version": "stale"}))
    b = documents.save(
        DocumentStatus(copilot_id=copilot_id, doc_key="b.md", status=DocumentStatusValue.PENDING)
    )
    assert sorted(d.doc_key for d in documents.list(copilot_id)) == ["a.md", "b.md"]
    assert documents.list("other-copilot") == []
    assert documents.active_versions(copilot_id, ["a.md", "b.md", "missing.md"]) == {"a.md": "e1"}
    assert documents.active_versions("other-copilot", ["a.md"]) == {}
    with pytest.raises(WriteConflict):
        documents.delete(copilot_id, "a.md", rev=1)
    documents.delete(copilot_id, "a.md", rev=indexed.rev)
    documents.delete(copilot_id, "b.md", rev=b.rev)
    assert documents.get(copilot_id, "a.md") is None
    assert documents.list(copilot_id) == []


def test_state_lives_beside_documents_without_showing_as_one(dynamodb: Any) -> None:
    store = DynamoDocumentStore(dynamodb, "t-documents")
    copilot_id = uuid.uuid4().hex
    assert store.get_state(copilot_id, "crawl:example.com") is None
    store.put_state(copilot_id, "crawl:example.com", {"hashes": {"a": "1"}})
    store.save(
        DocumentStatus(copilot_id=copilot_id, doc_key="a.md", status=DocumentStatusValue.PENDING)
    )
    assert store.get_state(copilot_id, "crawl:example.com") == {"hashes": {"a": "1"}}
    assert [d.doc_key for d in store.list(copilot_id)] == ["a.md"]


def make_outcome(claim: str, body: str = '{"ok": true}', ttl: float = 3600) -> IdempotentOutcome:
    return IdempotentOutcome(
        claim=claim,
        fingerprint="f",
        status=200,
        body=body,
        expires_at=utcnow() + timedelta(seconds=ttl),
    )


def test_an_outcome_is_written_with_the_messages_and_claims_its_key_once(
    stores: tuple[Any, Any, Any],
) -> None:
    _, conversations, _ = stores
    claim = uuid.uuid4().hex
    created = conversations.create(make_conversation(), [msg(1, "start")])
    assert conversations.outcome(claim) is None
    outcome = make_outcome(claim)
    after = conversations.append(created, [msg(2, "hello")], outcome=outcome)
    assert conversations.outcome(claim) == outcome
    # A retry that read the same version, or the new one: refused as a duplicate either way,
    # and nothing of it is written.
    for read in (created, after):
        with pytest.raises(DuplicateError):
            conversations.append(
                read, [msg(read.last_seq + 1, "hello again")], outcome=make_outcome(claim, "{}")
            )
    assert conversations.get(created.conversation_id) == after
    assert [m.text for m in conversations.messages_after(created.conversation_id, 0)] == [
        "start",
        "hello",
    ]
    assert conversations.outcome(claim).body == '{"ok": true}'


def test_racing_starts_with_one_claim_create_one_conversation(
    stores: tuple[Any, Any, Any],
) -> None:
    _, conversations, _ = stores
    claim = uuid.uuid4().hex
    candidates = [make_conversation() for _ in range(4)]
    duplicates: list[Exception] = []

    def create(conversation: Conversation) -> None:
        try:
            conversations.create(conversation, [msg(1)], outcome=make_outcome(claim))
        except DuplicateError as e:
            duplicates.append(e)

    threads = [threading.Thread(target=create, args=(c,)) for c in candidates]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    created = [c for c in candidates if conversations.get(c.conversation_id) is not None]
    assert len(created) == 1 and len(duplicates) == 3
    assert conversations.outcome(claim) is not None


def test_an_expired_outcome_is_gone_and_its_key_free_again(stores: tuple[Any, Any, Any]) -> None:
    _, conversations, _ = stores
    claim = uuid.uuid4().hex
    created = conversations.create(
        make_conversation(), [msg(1)], outcome=make_outcome(claim, ttl=-5)
    )
    assert conversations.outcome(claim) is None  # stored, but past its window
    conversations.append(created, [msg(2)], outcome=make_outcome(claim, '{"new": 1}'))
    assert conversations.outcome(claim).body == '{"new": 1}'


def test_an_expired_conversation_reads_as_gone_before_ttl_deletes_it(dynamodb: Any) -> None:
    """DynamoDB's TTL deletes expired items within days, not at once: until then the store
    answers as if the conversation were gone (the customer gets a 404 and starts anew)."""
    lasting = DynamoConversationStore(dynamodb, "t-conversations", ttl_days=30)
    expiring = DynamoConversationStore(dynamodb, "t-conversations", ttl_days=0)
    kept = lasting.create(make_conversation(), [msg(1)])
    expired = expiring.create(make_conversation(), [msg(1)])
    assert lasting.get(kept.conversation_id) == kept
    assert lasting.get(expired.conversation_id) is None
