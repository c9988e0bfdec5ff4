"""One error model for optimistic writes: a lost conditional write is retried with fresh state,
anything else (an index built with another embedding model) fails at once with a clear 409."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from copilot.admin.models import CopilotPatch, CopilotSpec
from copilot.conflicts import MAX_ATTEMPTS, WriteConflict, retry_on_conflict
from copilot.conversation.models import Conversation, Message
from copilot.errors import ConflictError, CopilotError, EmbedderMismatchError
from copilot.knowledge.models import Passage
from copilot_dev.fakes import (
    MemoryConversationStore,
    MemoryCopilotRegistry,
    MemoryKnowledgeIndex,
    in_memory_container,
)


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("copilot.conflicts.pause_after_conflict", lambda attempt: None)


class MismatchedIndex(MemoryKnowledgeIndex):
    """An index built with another embedding model, as the Chroma adapter reports it."""

    def __init__(self) -> None:
        super().__init__()
        self.queries = 0

    def query(
        self,
        copilot_id: str,
        embedding: Sequence[float],
        k: int,
        doc_keys: Collection[str] | None = None,
    ) -> list[Passage]:
        self.queries += 1
        raise EmbedderMismatchError(
            "this copilot's knowledge was indexed with the embedding model 'a', but 'b' is "
            f"configured: run `copilot reindex --copilot {copilot_id}` to rebuild it"
        )


class CountingConversations(MemoryConversationStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.appends = 0

    def get(self, conversation_id: str) -> Conversation | None:
        self.reads += 1
        return super().get(conversation_id)

    def append(
        self, conversation: Conversation, messages: Sequence[Message], **kwargs: Any
    ) -> Conversation:
        self.appends += 1
        return super().append(conversation, messages, **kwargs)


def test_a_turn_on_a_mismatched_index_fails_at_once_with_a_409_saying_reindex() -> None:
    index, conversations = MismatchedIndex(), CountingConversations()
    container = in_memory_container(
        index=index, conversations=conversations, embedder=DeterministicFakeEmbedding(size=8)
    )
    copilot = container.admin.create(CopilotSpec(name="Shop"))
    started = container.chat.start(copilot.copilot_id)
    reads_before = conversations.reads

    with pytest.raises(CopilotError) as raised:
        container.chat.post(started.conversation_id, started.token, "How long do refunds take?")

    assert index.queries == 1  # one attempt: the old ConflictError subclass was tried 30 times
    assert conversations.reads - reads_before == 1  # the authorizing read, no re-reads
    assert conversations.appends == 0
    assert not isinstance(raised.value, ConflictError)
    assert raised.value.status == 409
    assert "reindex" in raised.value.message


def test_a_lost_write_is_retried_with_fresh_state_and_a_409_only_after_the_last_attempt() -> None:
    calls: list[int] = []

    def always_loses() -> None:
        calls.append(1)
        raise WriteConflict("changed")

    with pytest.raises(ConflictError, match="the copilot 'x' kept changing") as raised:
        retry_on_conflict(always_loses, what="the copilot 'x'")
    assert len(calls) == MAX_ATTEMPTS
    assert isinstance(raised.value.__cause__, WriteConflict)

    outcomes: list[Any] = [WriteConflict("changed"), WriteConflict("changed"), "stored"]

    def wins_third_time() -> Any:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert retry_on_conflict(wins_third_time, what="it") == "stored"


def test_the_write_conflict_signal_is_no_client_error() -> None:
    assert not issubclass(WriteConflict, CopilotError)
    assert not issubclass(EmbedderMismatchError, WriteConflict)


class RacingRegistry(MemoryCopilotRegistry):
    """Another writer changes the copilot between our read and our first write."""

    def __init__(self) -> None:
        super().__init__()
        self.raced = False

    def replace(self, copilot: Any, *, expected_version: int) -> None:
        if not self.raced:
            self.raced = True
            current = self.get(copilot.copilot_id)
            assert current is not None
            rival = current.model_copy(update={"name": "Rival", "version": current.version + 1})
            super().replace(rival, expected_version=current.version)
        super().replace(copilot, expected_version=expected_version)


def test_a_copilot_update_that_loses_a_race_is_applied_on_the_winners_state() -> None:
    registry = RacingRegistry()
    container = in_memory_container(copilots=registry)
    copilot = container.admin.create(CopilotSpec(name="Shop"))
    updated = container.admin.update(
        copilot.copilot_id, CopilotPatch.model_validate({"no_match_threshold": 3})
    )
    assert registry.raced
    assert updated.version == 3  # on top of the rival's version 2
    assert updated.name == "Rival" and updated.no_match_threshold == 3


def test_creating_a_copilot_with_a_taken_id_is_a_409() -> None:
    container = in_memory_container()
    container.admin.create(CopilotSpec(name="Shop"), copilot_id="shop")
    with pytest.raises(ConflictError, match="exists already"):
        container.admin.create(CopilotSpec(name="Shop again"), copilot_id="shop")


def test_threads_changing_one_record_take_turns_and_other_records_do_not_wait() -> None:
    """With a key, threads of one process writing the same record run one change at a time
    (so none loses a race to its neighbour), while another record's change is not held up."""
    import threading
    import time

    version = {"a": 0}
    lost: list[int] = []
    inside = {"a": 0, "max": 0}
    guard = threading.Lock()

    def change() -> None:
        read = version["a"]
        with guard:
            inside["a"] += 1
            inside["max"] = max(inside["max"], inside["a"])
        time.sleep(0.01)  # a store's round trip between the read and the conditional write
        with guard:
            inside["a"] -= 1
            if version["a"] != read:
                lost.append(1)
                raise WriteConflict("changed")
            version["a"] = read + 1

    threads = [
        threading.Thread(target=retry_on_conflict, args=(change,), kwargs={"what": "a", "key": "a"})
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.005)
    started = time.monotonic()
    assert retry_on_conflict(lambda: "b", what="b", key="b") == "b"
    assert time.monotonic() - started < 0.05  # not behind the 8 changes of 'a' (80 ms)
    for thread in threads:
        thread.join()
    assert version["a"] == 8 and inside["max"] == 1 and lost == []

    version["a"] = 0
    unkeyed = [
        threading.Thread(target=retry_on_conflict, args=(change,), kwargs={"what": "a"})
        for _ in range(8)
    ]
    for thread in unkeyed:
        thread.start()
    for thread in unkeyed:
        thread.join()
    assert version["a"] == 8 and lost  # without a key they race, and losers read again
