"""Indexing of knowledge files: S3 object events -> parse -> chunk -> embed -> copilot's index."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from copilot.chunking import chunk_document
from copilot.errors import PermanentIngestError
from copilot.models import DocumentStatus, DocumentStatusValue, utcnow
from copilot.ports import BlobStore, CopilotRegistry, DocumentStore, KnowledgeIndex

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

log = logging.getLogger(__name__)

# S3 user metadata on crawled pages and synced articles: where the knowledge came from, so
# citations link to it.
SOURCE_URL_META = "source-url"


@dataclass(frozen=True)
class ObjectEvent:
    bucket: str
    key: str
    created: bool
    version: str | None = None

    @property
    def copilot_id(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def doc_key(self) -> str:
        return self.key.split("/", 1)[1] if "/" in self.key else ""


@dataclass(frozen=True)
class IngestResult:
    key: str
    status: str
    reason: str | None = None
    chunks: int = 0


def parse_s3_notification(body: dict[str, Any]) -> list[ObjectEvent]:
    """Object events of an S3 event notification (``{"Records": [...]}``); test events: none."""
    events = []
    for record in body.get("Records") or []:
        name = str(record.get("eventName", ""))
        s3 = record.get("s3") or {}
        bucket = (s3.get("bucket") or {}).get("name")
        obj = s3.get("object") or {}
        if (
            not bucket
            or "key" not in obj
            or not name.startswith(("ObjectCreated", "ObjectRemoved"))
        ):
            raise ValueError(f"not an S3 object event: {name or record!r}")
        events.append(
            ObjectEvent(
                bucket=bucket,
                key=unquote_plus(str(obj["key"])),  # S3 URL-encodes keys in notifications
                created=name.startswith("ObjectCreated"),
                version=obj.get("versionId") or obj.get("eTag"),
            )
        )
    return events


class IngestService:
    def __init__(
        self,
        copilots: CopilotRegistry,
        documents: DocumentStore,
        blobs: BlobStore,
        index: Callable[[], KnowledgeIndex],
        embedder: Callable[[], Embeddings],
        max_bytes: int,
        bucket: str,
    ) -> None:
        self._bucket = bucket
        self._copilots = copilots
        self._documents = documents
        self._blobs = blobs
        self._index = index
        self._embedder = embedder
        self._max_bytes = max_bytes

    def handle(self, event: ObjectEvent) -> IngestResult:
        """Apply one object event. Permanent problems are recorded and returned, never raised;
        transient ones (storage or index unavailable) raise so the queue redelivers."""
        if event.bucket != self._bucket:
            log.warning(
                "dropping event for bucket %s (this deployment reads %s)",
                event.bucket,
                self._bucket,
            )
            return IngestResult(
                event.key, "ignored", f"not this deployment's bucket: {event.bucket}"
            )
        if not event.doc_key or event.key.endswith("/"):
            return IngestResult(event.key, "ignored", "not a file under a copilot prefix")
        if self._copilots.get(event.copilot_id) is None:
            log.warning("dropping event for unknown copilot: %s", event.key)
            return IngestResult(event.key, "ignored", "no copilot owns this prefix")
        if not event.created:
            removed = self._index().delete_document(event.copilot_id, event.doc_key)
            self._documents.delete(event.copilot_id, event.doc_key)
            return IngestResult(event.key, "deleted", chunks=removed)
        return self._index_object(event)

    def _index_object(self, event: ObjectEvent) -> IngestResult:
        status = DocumentStatus(
            copilot_id=event.copilot_id,
            doc_key=event.doc_key,
            status=DocumentStatusValue.PENDING,
            version=event.version,
        )
        self._documents.put(status)
        try:
            obj = self._blobs.get(event.key, self._max_bytes)
            if obj is None:  # deleted before we got to it: its removal event cleans up
                self._documents.delete(event.copilot_id, event.doc_key)
                return IngestResult(event.key, "ignored", "the file no longer exists")
            chunks = chunk_document(
                event.copilot_id,
                event.doc_key,
                obj.body,
                obj.version,
                url=obj.metadata.get(SOURCE_URL_META),
            )
        except PermanentIngestError as e:
            self._documents.put(
                status.model_copy(
                    update={
                        "status": DocumentStatusValue.FAILED,
                        "reason": e.message,
                        "updated_at": utcnow(),
                    }
                )
            )
            return IngestResult(event.key, "failed", e.message)
        embeddings = self._embedder().embed_documents(
            [_embedding_text(c.title, c.section, c.text) for c in chunks]
        )
        self._index().replace_document(event.copilot_id, event.doc_key, chunks, embeddings)
        self._documents.put(
            status.model_copy(
                update={
                    "status": DocumentStatusValue.INDEXED,
                    "chunk_count": len(chunks),
                    "version": obj.version,
                    "size": obj.size,
                    "updated_at": utcnow(),
                }
            )
        )
        return IngestResult(event.key, "indexed", chunks=len(chunks))


def _embedding_text(title: str, section: str | None, text: str) -> str:
    heading = f"{title} — {section}" if section else title
    return f"{heading}\n{text}"
