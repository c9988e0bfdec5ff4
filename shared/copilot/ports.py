"""Ports: the small interfaces the services depend on. Adapters implement them."""

from __future__ import annotations

import abc
import builtins
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from copilot.admin.models import Copilot
from copilot.analytics.events import AnalyticsEvent
from copilot.conversation.models import Conversation, IdempotentOutcome, Message
from copilot.handoff.models import (
    HubCommand,
    HubEvent,
    HubLink,
    HubPullBatch,
    HubReceipt,
    HubSettings,
)
from copilot.ingest.models import DocumentStatus
from copilot.knowledge.models import Chunk, Passage
from copilot.limits import Rate


class CopilotRegistry(abc.ABC):
    @abc.abstractmethod
    def create(self, copilot: Copilot) -> None:
        """Store a new copilot; WriteConflict if its id is taken."""

    @abc.abstractmethod
    def get(self, copilot_id: str) -> Copilot | None: ...

    @abc.abstractmethod
    def replace(self, copilot: Copilot, *, expected_version: int) -> None:
        """Store ``copilot`` if the stored version is still ``expected_version``.

        Raises WriteConflict otherwise.
        """

    @abc.abstractmethod
    def list(self) -> list[Copilot]: ...


class ConversationStore(abc.ABC):
    @abc.abstractmethod
    def create(
        self,
        conversation: Conversation,
        messages: Sequence[Message],
        *,
        outcome: IdempotentOutcome | None = None,
        events: Sequence[AnalyticsEvent] = (),
    ) -> Conversation:
        """Store a new conversation; WriteConflict if its id is taken. ``outcome`` and
        ``events``: as in ``append``."""

    @abc.abstractmethod
    def get(self, conversation_id: str) -> Conversation | None: ...

    @abc.abstractmethod
    def append(
        self,
        conversation: Conversation,
        messages: Sequence[Message],
        *,
        claims: Sequence[str] = (),
        outcome: IdempotentOutcome | None = None,
        links: Sequence[HubLink] = (),
        events: Sequence[AnalyticsEvent] = (),
    ) -> Conversation:
        """Write ``messages`` and the new conversation state in one conditional write.

        ``conversation.version`` is the version that was read; the write succeeds only if it is
        still current, and returns the conversation at its new version. Message sequence numbers
        must continue from the stored ``last_seq``. Raises WriteConflict when another writer won.

        ``claims`` (e.g. a hub's message ids) are recorded in the same write, which fails with
        DuplicateError if any of them was claimed before: an event is applied exactly once.
        ``outcome`` (a client request's answer) is stored the same way under its claim, which
        counts as taken until the outcome's ``expires_at``.
        ``links`` (a hub's conversation id -> ours) are written the same way: a link already
        stored for the same conversation and hand-off is kept, one for another is a
        DuplicateError (a hub id is never re-pointed).
        ``events`` (analytics: copilot.analytics.events) are recorded in the same write: an
        event is recorded if and only if the change it reports is.
        """

    @abc.abstractmethod
    def linked(self, key: str) -> HubLink | None:
        """The link stored under ``key`` (HubLink.key_of), if any."""

    @abc.abstractmethod
    def outcome(self, claim: str) -> IdempotentOutcome | None:
        """The answer stored under ``claim``, unless it has expired."""

    @abc.abstractmethod
    def messages_after(
        self, conversation_id: str, after_seq: int, limit: int = 100
    ) -> list[Message]: ...

    @abc.abstractmethod
    def recent_messages(self, conversation_id: str, limit: int) -> list[Message]:
        """The last ``limit`` messages, oldest first."""


class DocumentStore(abc.ABC):
    """Per-document status; also the source of truth for which version answers come from."""

    @abc.abstractmethod
    def save(self, status: DocumentStatus) -> DocumentStatus:
        """Store ``status`` if the stored revision is still ``status.rev`` (0: none stored).

        Returns the stored record (revision + 1); raises WriteConflict otherwise.
        """

    @abc.abstractmethod
    def get(self, copilot_id: str, doc_key: str) -> DocumentStatus | None: ...

    @abc.abstractmethod
    def list(self, copilot_id: str) -> list[DocumentStatus]: ...

    @abc.abstractmethod
    def delete(self, copilot_id: str, doc_key: str, *, rev: int) -> None:
        """Delete if the stored revision is still ``rev``; WriteConflict otherwise."""

    @abc.abstractmethod
    def active_versions(self, copilot_id: str, doc_keys: Sequence[str]) -> dict[str, str]:
        """For each document that has an indexed version, that version."""

    def get_many(self, copilot_id: str, doc_keys: Sequence[str]) -> dict[str, DocumentStatus]:
        """The stored records of these documents (batched reads where the store has them)."""
        found = {k: self.get(copilot_id, k) for k in doc_keys}
        return {k: status for k, status in found.items() if status is not None}

    def save_many(self, statuses: Sequence[DocumentStatus]) -> Sequence[DocumentStatus | None]:
        """``save`` each (batched writes where the store has them): the stored record, or
        None for one whose stored revision moved (that one is not written)."""
        from copilot.conflicts import WriteConflict

        out: builtins.list[DocumentStatus | None] = []
        for status in statuses:
            try:
                out.append(self.save(status))
            except WriteConflict:
                out.append(None)
        return out


@dataclass(frozen=True)
class StoredObject:
    key: str
    body: bytes
    version: str | None
    size: int
    last_modified: datetime | None = None
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
    def head(self, key: str) -> str | None:
        """The current version (ETag or version id) of the object, or None if it is gone."""

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
    def add_chunks(
        self,
        copilot_id: str,
        chunks: Sequence[Chunk],
        embeddings: Sequence[Sequence[float]],
    ) -> None:
        """Insert or overwrite chunks (ids are version-specific, so this is idempotent)."""

    @abc.abstractmethod
    def delete_document(
        self, copilot_id: str, doc_key: str, *, keep_version: str | None = None
    ) -> int:
        """Remove the chunks of ``doc_key`` (all, or all but ``keep_version``'s); returns how many."""

    @abc.abstractmethod
    def query(
        self,
        copilot_id: str,
        embedding: Sequence[float],
        k: int,
        doc_keys: Collection[str] | None = None,
    ) -> list[Passage]:
        """The ``k`` nearest chunks; with ``doc_keys``, only of those documents (what one
        subject of the conversation is about: copilot.knowledge.subjects)."""

    @abc.abstractmethod
    def embedded(
        self, copilot_id: str, chunk_ids: Sequence[str]
    ) -> list[tuple[Chunk, list[float]]]:
        """These chunks with their stored embeddings (missing ids are left out): a new
        version of a document reuses the vectors of the chunks it did not change, and a
        lexical-only hit is scored without re-embedding it at query time."""

    @abc.abstractmethod
    def count(self, copilot_id: str) -> int: ...

    @abc.abstractmethod
    def all_chunks(self, copilot_id: str) -> list[Chunk]:
        """Every chunk of the copilot (the lexical index is rebuilt from them)."""

    @abc.abstractmethod
    def drop(self, copilot_id: str) -> None:
        """Remove the copilot's whole index (before rebuilding it with another model)."""


class EventQueue(abc.ABC):
    """A queue of JSON messages (SQS): re-index requests, and later the hub outbox."""

    @abc.abstractmethod
    def send_many(self, bodies: Sequence[str], delay_seconds: int = 0) -> None: ...


@dataclass(frozen=True)
class LexicalManifest:
    """The segments a copilot's lexical index is made of now; ``version`` changes with them."""

    version: int
    segments: tuple[str, ...]


class LexicalStore(abc.ABC):
    """Where a copilot's lexical (BM25) index lives: immutable segments and their manifest,
    and the bookkeeping of its background merges (at most one scheduled at a time)."""

    @abc.abstractmethod
    def mark_dirty(self, copilot_id: str) -> bool:
        """Ask for a merge. True when none was scheduled: the caller schedules one."""

    @abc.abstractmethod
    def begin_rebuild(self, copilot_id: str) -> int:
        """Unschedule (a merge begins); returns how many times one was asked for so far."""

    @abc.abstractmethod
    def next_seq(self, copilot_id: str) -> int:
        """A sequence number higher than every one handed out before for the copilot."""

    @abc.abstractmethod
    def add_segment(self, copilot_id: str, name: str, data: bytes) -> LexicalManifest:
        """Store a new segment and add it to the manifest; returns the new manifest."""

    @abc.abstractmethod
    def replace_segments(self, copilot_id: str, old: Sequence[str], name: str, data: bytes) -> bool:
        """Put one segment in place of ``old`` (a merge), unless one of them is no longer
        listed (another merge got there first): False then, and nothing changes."""

    @abc.abstractmethod
    def manifest(self, copilot_id: str) -> LexicalManifest | None: ...

    @abc.abstractmethod
    def fetch(self, copilot_id: str, name: str) -> bytes | None:
        """A segment's bytes; None if it was merged away meanwhile."""


class HubOutbox(abc.ABC):
    """Calls to hubs wait here until they are delivered, in order per conversation (SQS FIFO).

    A message only says "this conversation has something for its hub": the conversation's
    messages are the source of truth, so a lost or dead-lettered nudge loses no message.
    """

    @abc.abstractmethod
    def nudge(self, conversation_id: str, dedup_id: str, attempt: int = 0) -> None: ...

    @abc.abstractmethod
    def retry_later(self, receipt_handle: str, seconds: int) -> None:
        """Hide a received message for ``seconds`` (back-off before its next delivery)."""


class SecretStore(abc.ABC):
    @abc.abstractmethod
    def get(self, ref: str) -> str | None:
        """The secret named ``ref`` (HubSettings.secret_ref), or None if none is configured."""


@dataclass(frozen=True)
class InboundRequest:
    """A hub's HTTP call to us, as received: what adapters verify and parse."""

    method: str
    path: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class HubAdapter(abc.ABC):
    """One live-agent hub's wire protocol (reference/hubs.md), behind one neutral interface.

    Inbound: ``verify`` the caller (signature or credentials), then ``parse`` the call into
    neutral events. Outbound: ``send`` a neutral command (start, message, end). What a hub's
    webhook does not carry, ``poll`` reads from the hub.
    """

    name: str

    @abc.abstractmethod
    def verify(
        self, request: InboundRequest, hub: HubSettings | None, secret: str, now: datetime
    ) -> None:
        """Raise UnauthorizedError (no credentials) or ForbiddenError (wrong or stale ones).
        ``hub`` is None when the copilot has no such hub: answer exactly as for a wrong
        signature. ``secret``: the resolved secret_ref (a JSON object for the named hubs)."""

    @abc.abstractmethod
    def parse(self, request: InboundRequest, hub: HubSettings) -> list[HubEvent]:
        """Neutral events of a verified call; BadRequestError when it is malformed. May be
        empty (a subscription confirmation, an event of no interest)."""

    @abc.abstractmethod
    def send(self, hub: HubSettings, secret: str, command: HubCommand) -> HubReceipt | None:
        """Deliver a command. A start returns the hub's receipt (its conversation id and
        state); any call may return a replacement receipt (a renewed token), None: unchanged.
        HubUnavailableError: try again later (the outbox will); HubRejectedError: the hub
        refused for good (e.g. no agents available)."""

    # The hub's webhook leaves things out (Genesys Open Messaging: who the agent is, and the
    # end): ``poll`` reads them from the hub for one hand-off. Called on the customer's polls
    # (at most every few seconds per conversation) and before applying an event from an agent
    # the copilot cannot name yet. Events must have stable ids: asking again repeats nothing.
    supports_poll = False

    def poll(self, hub: HubSettings, secret: str, receipt: HubReceipt) -> list[HubEvent]:
        """The hand-off's events the webhook does not carry (HubUnavailableError: not now)."""
        return []

    # Hubs with no webhook at all (Salesforce MIAW's Server-Sent Events, Dynamics 365's Direct
    # Line): a pull job reads the hand-off's events for up to ``pull_window`` seconds at a time
    # and schedules the next job (handoff/pull.py), as long as the hand-off is open.
    pull_window: float = 0.0

    def pull(
        self,
        hub: HubSettings,
        secret: str,
        receipt: HubReceipt,
        state: dict[str, Any],
        until: float,
    ) -> Iterator[HubPullBatch]:
        """The hand-off's events from the cursor kept in ``state`` (the merged ``state`` of
        every batch yielded so far; {} at first), each batch as soon as it is read, with the
        state to keep after it, until ``time.monotonic()`` reaches ``until``. Events need
        stable ids (a batch may be read twice if a job dies before its state is kept).
        HubUnavailableError: the next job tries again."""
        raise NotImplementedError(f"the {self.name} hub delivers events by webhook")


class RateLimitStore(abc.ABC):
    """Token buckets shared by every instance of a function (copilot.limits)."""

    @abc.abstractmethod
    def take(self, key: str, rate: Rate, now: float) -> float:
        """Take one request from the bucket ``key`` (created full): 0 when taken, else the
        seconds until one will be available (nothing taken). UnavailableError when the store
        cannot be reached."""
