"""Ports: the small interfaces the services depend on. Adapters implement them."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from copilot.models import (
    Chunk,
    Conversation,
    Copilot,
    DocumentStatus,
    Message,
    Passage,
)


class CopilotRegistry(abc.ABC):
    @abc.abstractmethod
    def create(self, copilot: Copilot) -> None: ...

    @abc.abstractmethod
    def get(self, copilot_id: str) -> Copilot | None: ...

    @abc.abstractmethod
    def replace(self, copilot: Copilot, *, expected_version: int) -> None:
        """Store ``copilot`` if the stored version is still ``expected_version``.

        Raises ConflictError otherwise.
        """

    @abc.abstractmethod
    def list(self) -> list[Copilot]: ...


class ConversationStore(abc.ABC):
    @abc.abstractmethod
    def create(self, conversation: Conversation, messages: Sequence[Message]) -> Conversation: ...

    @abc.abstractmethod
    def get(self, conversation_id: str) -> Conversation | None: ...

    @abc.abstractmethod
    def append(self, conversation: Conversation, messages: Sequence[Message]) -> Conversation:
        """Write ``messages`` and the new conversation state in one conditional write.

        ``conversation.version`` is the version that was read; the write succeeds only if it is
        still current, and returns the conversation at its new version. Message sequence numbers
        must continue from the stored ``last_seq``. Raises ConflictError when another writer won.
        """

    @abc.abstractmethod
    def messages_after(
        self, conversation_id: str, after_seq: int, limit: int = 100
    ) -> list[Message]: ...

    @abc.abstractmethod
    def recent_messages(self, conversation_id: str, limit: int) -> list[Message]:
        """The last ``limit`` messages, oldest first."""


class DocumentStore(abc.ABC):
    @abc.abstractmethod
    def put(self, status: DocumentStatus) -> None: ...

    @abc.abstractmethod
    def get(self, copilot_id: str, doc_key: str) -> DocumentStatus | None: ...

    @abc.abstractmethod
    def list(self, copilot_id: str) -> list[DocumentStatus]: ...

    @abc.abstractmethod
    def delete(self, copilot_id: str, doc_key: str) -> None: ...


@dataclass(frozen=True)
class StoredObject:
    key: str
    body: bytes
    version: str | None
    size: int
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)  # e.g. source-url, title


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    etag: str
    size: int


class BlobStore(abc.ABC):
    @abc.abstractmethod
    def get(self, key: str, max_bytes: int) -> StoredObject | None:
        """The object, or None if it no longer exists. Raises PermanentIngestError if larger."""

    @abc.abstractmethod
    def put(
        self,
        key: str,
        body: bytes,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None: ...

    @abc.abstractmethod
    def delete(self, key: str) -> None: ...

    @abc.abstractmethod
    def list(self, prefix: str) -> list[ObjectInfo]: ...


class StateStore(abc.ABC):
    """Small JSON state per copilot: crawl and sync watermarks."""

    @abc.abstractmethod
    def get_state(self, copilot_id: str, name: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def put_state(self, copilot_id: str, name: str, state: dict[str, Any]) -> None: ...


class KnowledgeIndex(abc.ABC):
    """Vector index of chunks, one isolated collection per copilot."""

    @abc.abstractmethod
    def replace_document(
        self,
        copilot_id: str,
        doc_key: str,
        chunks: Sequence[Chunk],
        embeddings: Sequence[Sequence[float]],
    ) -> None:
        """Make ``chunks`` the only chunks of ``doc_key`` in the copilot's collection."""

    @abc.abstractmethod
    def delete_document(self, copilot_id: str, doc_key: str) -> int:
        """Remove every chunk of ``doc_key``; returns how many were removed."""

    @abc.abstractmethod
    def query(self, copilot_id: str, embedding: Sequence[float], k: int) -> list[Passage]: ...

    @abc.abstractmethod
    def count(self, copilot_id: str) -> int: ...
