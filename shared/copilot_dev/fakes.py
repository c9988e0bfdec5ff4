"""In-memory adapters: fakes that subclass the real ports, for unit tests and one-process use."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from copilot.admin.models import Copilot
from copilot.analytics.events import AnalyticsEvent
from copilot.bootstrap import Container
from copilot.config import Settings
from copilot.conflicts import WriteConflict
from copilot.conversation.models import Conversation, IdempotentOutcome, Message
from copilot.errors import DuplicateError, PermanentIngestError
from copilot.handoff.models import HubLink
from copilot.ingest.models import DocumentStatus
from copilot.knowledge.models import Chunk, Passage
from copilot.knowledge.vectors import cosine
from copilot.limits import Rate, admit
from copilot.ports import (
    BlobStore,
    ConversationStore,
    CopilotRegistry,
    DocumentStore,
    EventQueue,
    HubOutbox,
    KnowledgeIndex,
    LexicalManifest,
    LexicalStore,
    ObjectInfo,
    RateLimitStore,
    SecretStore,
    StateStore,
    StoredObject,
)
from copilot.schema import utcnow


class MemoryCopilotRegistry(CopilotRegistry):
    def __init__(self) -> None:
        self._items: dict[str, str] = {}
        self._lock = threading.Lock()

    def create(self, copilot: Copilot) -> None:
        with self._lock:
            if copilot.copilot_id in self._items:
                raise WriteConflict("copilot exists")
            self._items[copilot.copilot_id] = copilot.model_dump_json()

    def get(self, copilot_id: str) -> Copilot | None:
        raw = self._items.get(copilot_id)
        return Copilot.model_validate_json(raw) if raw else None

    def replace(self, copilot: Copilot, *, expected_version: int) -> None:
        with self._lock:
            current = self.get(copilot.copilot_id)
            if current is None or current.version != expected_version:
                raise WriteConflict("copilot changed")
            self._items[copilot.copilot_id] = copilot.model_dump_json()

    def list(self) -> list[Copilot]:
        return sorted(
            (Copilot.model_validate_json(v) for v in self._items.values()),
            key=lambda c: c.created_at,
        )


class MemoryConversationStore(ConversationStore):
    def __init__(self) -> None:
        self._meta: dict[str, str] = {}
        self._messages: dict[str, dict[int, str]] = {}
        self._claims: set[str] = set()
        self._links: dict[str, HubLink] = {}
        self._outcomes: dict[str, str] = {}
        self._lock = threading.Lock()
        self.events: list[AnalyticsEvent] = []  # analytics recorded with the writes

    def create(
        self,
        conversation: Conversation,
        messages: Sequence[Message],
        *,
        outcome: IdempotentOutcome | None = None,
        events: Sequence[AnalyticsEvent] = (),
    ) -> Conversation:
        with self._lock:
            if outcome is not None and self.outcome(outcome.claim) is not None:
                raise DuplicateError("already applied")
            if conversation.conversation_id in self._meta:
                raise WriteConflict("conversation exists")
            if outcome is not None:
                self._outcomes[outcome.claim] = outcome.model_dump_json()
            stored = conversation.model_copy(
                update={"version": 1, "last_seq": conversation.last_seq + len(messages)}
            )
            self._meta[stored.conversation_id] = stored.model_dump_json()
            self._messages[stored.conversation_id] = {m.seq: m.model_dump_json() for m in messages}
            self.events.extend(events)
            return stored

    def get(self, conversation_id: str) -> Conversation | None:
        raw = self._meta.get(conversation_id)
        return Conversation.model_validate_json(raw) if raw else None

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
        with self._lock:
            if self._claims.intersection(claims):
                raise DuplicateError("already applied")
            if any(self._links.get(link.key, link) != link for link in links):
                raise DuplicateError("the hub id is linked to another conversation")
            if outcome is not None and self.outcome(outcome.claim) is not None:
                raise DuplicateError("already applied")
            current = self.get(conversation.conversation_id)
            if current is None or current.version != conversation.version:
                raise WriteConflict("conversation changed")
            expected = list(range(current.last_seq + 1, current.last_seq + 1 + len(messages)))
            if [m.seq for m in messages] != expected:
                raise ValueError(f"message sequence numbers must be {expected}")
            stored = conversation.model_copy(
                update={
                    "version": conversation.version + 1,
                    "last_seq": conversation.last_seq + len(messages),
                }
            )
            self._meta[stored.conversation_id] = stored.model_dump_json()
            box = self._messages[stored.conversation_id]
            box.update({m.seq: m.model_dump_json() for m in messages})
            self._claims.update(claims)
            self._links.update((link.key, link) for link in links)
            if outcome is not None:
                self._outcomes[outcome.claim] = outcome.model_dump_json()
            self.events.extend(events)
            return stored

    def linked(self, key: str) -> HubLink | None:
        return self._links.get(key)

    def outcome(self, claim: str) -> IdempotentOutcome | None:
        raw = self._outcomes.get(claim)
        stored = IdempotentOutcome.model_validate_json(raw) if raw else None
        return stored if stored is not None and stored.expires_at > utcnow() else None

    def messages_after(
        self, conversation_id: str, after_seq: int, limit: int = 100
    ) -> list[Message]:
        box = self._messages.get(conversation_id, {})
        seqs = sorted(s for s in box if s > after_seq)[:limit]
        return [Message.model_validate_json(box[s]) for s in seqs]

    def recent_messages(self, conversation_id: str, limit: int) -> list[Message]:
        box = self._messages.get(conversation_id, {})
        seqs = sorted(box)[-limit:]
        return [Message.model_validate_json(box[s]) for s in seqs]


class MemoryDocumentStore(DocumentStore):
    def __init__(self) -> None:
        self._items: dict[tuple[str, str], DocumentStatus] = {}
        self._lock = threading.Lock()

    def save(self, status: DocumentStatus) -> DocumentStatus:
        with self._lock:
            key = (status.copilot_id, status.doc_key)
            current = self._items.get(key)
            if (current.rev if current else 0) != status.rev:
                raise WriteConflict("document status changed")
            stored = status.model_copy(update={"rev": status.rev + 1})
            self._items[key] = stored
            return stored

    def get(self, copilot_id: str, doc_key: str) -> DocumentStatus | None:
        return self._items.get((copilot_id, doc_key))

    def list(self, copilot_id: str) -> list[DocumentStatus]:
        return sorted(
            (s for (c, _), s in self._items.items() if c == copilot_id), key=lambda s: s.doc_key
        )

    def delete(self, copilot_id: str, doc_key: str, *, rev: int) -> None:
        with self._lock:
            current = self._items.get((copilot_id, doc_key))
            if current is None:
                return
            if current.rev != rev:
                raise WriteConflict("document status changed")
            del self._items[(copilot_id, doc_key)]

    def active_versions(self, copilot_id: str, doc_keys: Sequence[str]) -> dict[str, str]:
        out = {}
        for key in doc_keys:
            status = self._items.get((copilot_id, key))
            if status is not None and status.version is not None:
                out[key] = status.version
        return out


class MemoryBlobStore(BlobStore):
    def __init__(self) -> None:
        self.objects: dict[str, StoredObject] = {}
        self._versions: dict[str, int] = {}

    def get(self, key: str, max_bytes: int) -> StoredObject | None:
        obj = self.objects.get(key)
        if obj is not None and obj.size > max_bytes:
            raise PermanentIngestError(f"the file is over the {max_bytes / 1e6:.0f} MB limit")
        return obj

    def head(self, key: str) -> str | None:
        obj = self.objects.get(key)
        return obj.version if obj else None

    def put(
        self,
        key: str,
        body: bytes,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self._versions[key] = self._versions.get(key, 0) + 1
        self.objects[key] = StoredObject(
            key=key,
            body=body,
            version=str(self._versions[key]),
            size=len(body),
            last_modified=datetime.now(UTC),
            content_type=content_type,
            metadata=dict(metadata or {}),
        )

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    def list(self, prefix: str) -> list[ObjectInfo]:
        return [
            ObjectInfo(key=k, etag=hashlib.md5(o.body).hexdigest(), size=o.size)
            for k, o in sorted(self.objects.items())
            if k.startswith(prefix)
        ]


class MemoryStateStore(StateStore):
    def __init__(self) -> None:
        self._items: dict[tuple[str, str], str] = {}

    def get_state(self, copilot_id: str, name: str) -> dict[str, Any] | None:
        raw = self._items.get((copilot_id, name))
        return json.loads(raw) if raw else None

    def put_state(self, copilot_id: str, name: str, state: dict[str, Any]) -> None:
        self._items[(copilot_id, name)] = json.dumps(state)


class MemoryKnowledgeIndex(KnowledgeIndex):
    """Exact cosine search over a dict per copilot."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, tuple[Chunk, list[float]]]] = {}

    def add_chunks(
        self,
        copilot_id: str,
        chunks: Sequence[Chunk],
        embeddings: Sequence[Sequence[float]],
    ) -> None:
        rows = self._rows.setdefault(copilot_id, {})
        for chunk, emb in zip(chunks, embeddings, strict=True):
            rows[chunk.chunk_id] = (chunk, list(map(float, emb)))

    def delete_document(
        self, copilot_id: str, doc_key: str, *, keep_version: str | None = None
    ) -> int:
        rows = self._rows.get(copilot_id, {})
        gone = [
            i
            for i, (c, _) in rows.items()
            if c.doc_key == doc_key and (keep_version is None or c.version != keep_version)
        ]
        for chunk_id in gone:
            del rows[chunk_id]
        return len(gone)

    def query(
        self,
        copilot_id: str,
        embedding: Sequence[float],
        k: int,
        doc_keys: Collection[str] | None = None,
    ) -> list[Passage]:
        rows = self._rows.get(copilot_id, {})
        scored = [
            Passage(chunk=c, score=cosine(embedding, e))
            for c, e in rows.values()
            if doc_keys is None or c.doc_key in doc_keys
        ]
        return sorted(scored, key=lambda p: -p.score)[:k]

    def embedded(
        self, copilot_id: str, chunk_ids: Sequence[str]
    ) -> list[tuple[Chunk, list[float]]]:
        rows = self._rows.get(copilot_id, {})
        return [(rows[i][0], list(rows[i][1])) for i in chunk_ids if i in rows]

    def count(self, copilot_id: str) -> int:
        return len(self._rows.get(copilot_id, {}))

    def all_chunks(self, copilot_id: str) -> list[Chunk]:
        return [c for c, _ in self._rows.get(copilot_id, {}).values()]

    def drop(self, copilot_id: str) -> None:
        self._rows.pop(copilot_id, None)


class MemoryEventQueue(EventQueue):
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.delays: list[int] = []

    def send_many(self, bodies: Sequence[str], delay_seconds: int = 0) -> None:
        self.messages.extend(bodies)
        self.delays.extend([delay_seconds] * len(bodies))


class MemoryLexicalStore(LexicalStore):
    def __init__(self) -> None:
        self._dirty: dict[str, int] = {}
        self._scheduled: set[str] = set()
        self._seq: dict[str, int] = {}
        self._manifests: dict[str, LexicalManifest] = {}
        self._objects: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()

    def mark_dirty(self, copilot_id: str) -> bool:
        with self._lock:
            self._dirty[copilot_id] = self._dirty.get(copilot_id, 0) + 1
            first = copilot_id not in self._scheduled
            self._scheduled.add(copilot_id)
            return first

    def begin_rebuild(self, copilot_id: str) -> int:
        with self._lock:
            self._scheduled.discard(copilot_id)
            return self._dirty.get(copilot_id, 0)

    def next_seq(self, copilot_id: str) -> int:
        with self._lock:
            self._seq[copilot_id] = self._seq.get(copilot_id, 0) + 1
            return self._seq[copilot_id]

    def add_segment(self, copilot_id: str, name: str, data: bytes) -> LexicalManifest:
        with self._lock:
            self._objects[(copilot_id, name)] = data
            current = self._manifests.get(copilot_id) or LexicalManifest(0, ())
            new = LexicalManifest(current.version + 1, (*current.segments, name))
            self._manifests[copilot_id] = new
            return new

    def replace_segments(self, copilot_id: str, old: Sequence[str], name: str, data: bytes) -> bool:
        with self._lock:
            current = self._manifests.get(copilot_id) or LexicalManifest(0, ())
            if not set(old) <= set(current.segments):
                return False
            kept = tuple(s for s in current.segments if s not in set(old))
            self._objects[(copilot_id, name)] = data
            self._manifests[copilot_id] = LexicalManifest(current.version + 1, (*kept, name))
            for gone in old:
                self._objects.pop((copilot_id, gone), None)
            return True

    def manifest(self, copilot_id: str) -> LexicalManifest | None:
        return self._manifests.get(copilot_id)

    def fetch(self, copilot_id: str, name: str) -> bytes | None:
        return self._objects.get((copilot_id, name))


class MemoryHubOutbox(HubOutbox):
    def __init__(self) -> None:
        self.nudges: list[tuple[str, str, int]] = []  # (conversation id, dedup id, attempt)
        self.delays: list[tuple[str, int]] = []

    def nudge(self, conversation_id: str, dedup_id: str, attempt: int = 0) -> None:
        self.nudges.append((conversation_id, dedup_id, attempt))

    def retry_later(self, receipt_handle: str, seconds: int) -> None:
        self.delays.append((receipt_handle, seconds))


class StaticSecretStore(SecretStore):
    def __init__(self, secrets: dict[str, str] | None = None) -> None:
        self.secrets = dict(secrets or {})

    def get(self, ref: str) -> str | None:
        return self.secrets.get(ref)


def in_memory_container(settings: Settings | None = None, **overrides: Any) -> Container:
    """A Container on the in-memory fakes of every store (tests, in-process calibration)."""

    stores: dict[str, Any] = {
        "copilots": MemoryCopilotRegistry,
        "conversations": MemoryConversationStore,
        "documents": MemoryDocumentStore,
        "index": MemoryKnowledgeIndex,
        "lexical_store": MemoryLexicalStore,
        "blobs": MemoryBlobStore,
        "rate_limits": MemoryRateLimitStore,
    }
    for name, fake in stores.items():
        overrides.setdefault(name, fake())
    return Container(settings or Settings(bucket="memory"), **overrides)


class MemoryRateLimitStore(RateLimitStore):
    def __init__(self) -> None:
        self.buckets: dict[str, float] = {}  # key -> theoretical arrival time
        self._lock = threading.Lock()

    def take(self, key: str, rate: Rate, now: float) -> float:
        with self._lock:
            tat, wait = admit(self.buckets.get(key), now, rate)
            if tat is not None:
                self.buckets[key] = tat
            return wait
