"""Copilot administration: create, read, update, list; knowledge document status."""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Callable

from copilot.admin.lookup import require_copilot
from copilot.admin.models import BehaviourMessages, Copilot, CopilotPatch, CopilotSpec
from copilot.conflicts import WriteConflict, retry_on_conflict
from copilot.errors import ConflictError, UnavailableError
from copilot.ingest.models import (
    DocumentStatus,
    DocumentStatusValue,
    ReindexResult,
    RetryResult,
    RetrySkip,
)
from copilot.ingest.service import s3_notification
from copilot.ports import BlobStore, CopilotRegistry, DocumentStore, EventQueue, KnowledgeIndex
from copilot.schema import new_id, utcnow


class AdminService:
    def __init__(
        self,
        copilots: CopilotRegistry,
        documents: DocumentStore,
        *,
        index: Callable[[], KnowledgeIndex] | None = None,
        blobs: Callable[[], BlobStore] | None = None,
        ingest_queue: Callable[[], EventQueue] | None = None,
        bucket: str = "",
    ) -> None:
        self._copilots = copilots
        self._documents = documents
        self._index = index
        self._blobs = blobs
        self._queue = ingest_queue
        self._bucket = bucket

    def create(self, spec: CopilotSpec, copilot_id: str | None = None) -> Copilot:
        now = utcnow()
        copilot = Copilot(
            **spec.model_dump(),
            copilot_id=copilot_id or new_id(),
            created_at=now,
            updated_at=now,
            version=1,
        )
        try:
            self._copilots.create(copilot)
        except WriteConflict:
            raise ConflictError(
                f"a copilot with id '{copilot.copilot_id}' exists already"
            ) from None
        return copilot

    def get(self, copilot_id: str) -> Copilot:
        return require_copilot(self._copilots, copilot_id)

    def list(self) -> list[Copilot]:
        return self._copilots.list()

    def update(self, copilot_id: str, patch: CopilotPatch) -> Copilot:
        def change() -> Copilot:
            current = self.get(copilot_id)
            # The sent fields as models (not dicts), so the copy below serializes cleanly.
            changes = {name: getattr(patch, name) for name in patch.model_fields_set - {"messages"}}
            if patch.messages is not None:
                merged = current.messages.model_dump() | patch.messages.model_dump(
                    exclude_unset=True, exclude_none=True
                )
                changes["messages"] = BehaviourMessages(**merged)
            updated = current.model_copy(
                update={**changes, "version": current.version + 1, "updated_at": utcnow()}
            )
            # Re-validate the merged whole (e.g. topic names unique across the new list).
            updated = Copilot.model_validate(updated.model_dump())
            self._copilots.replace(updated, expected_version=current.version)
            return updated

        return retry_on_conflict(change, what=f"the copilot '{copilot_id}'")

    def documents(self, copilot_id: str) -> builtins.list[DocumentStatus]:
        self.get(copilot_id)
        return sorted(self._documents.list(copilot_id), key=lambda d: d.doc_key)

    def reindex(self, copilot_id: str) -> ReindexResult:
        """Rebuild the copilot's index from its files (e.g. with a new embedding model).

        The old index is dropped, every document's status reset, and one re-index event per
        file is queued for the ingest function, exactly like an upload.
        """
        self.get(copilot_id)
        if self._index is None or self._blobs is None or self._queue is None:
            raise UnavailableError("re-indexing is not configured here (no ingest queue)")
        self._index().drop(copilot_id)
        for status in self._documents.list(copilot_id):
            # A conflict means it is being indexed right now: that run writes the new index.
            with contextlib.suppress(WriteConflict):
                self._documents.save(
                    status.model_copy(
                        update={
                            "status": DocumentStatusValue.PENDING,
                            "version": None,
                            "chunk_count": 0,
                            "pending_version": None,
                            "attempted_version": None,
                            "updated_at": utcnow(),
                        }
                    )
                )
        keys = [o.key for o in self._blobs().list(f"{copilot_id}/") if not o.key.endswith("/")]
        self._queue().send_many([s3_notification(self._bucket, key) for key in keys])
        return ReindexResult(copilot_id=copilot_id, queued=len(keys))

    def retry(self, copilot_id: str, keys: builtins.list[str] | None = None) -> RetryResult:
        """Queue failed documents for another attempt, as if they had just been uploaded.

        No keys: every failed document, and every file of the copilot's prefix without a record
        (e.g. one whose event was lost before records were kept for every upload). Named keys:
        those documents unless already indexed or not there at all.
        """
        self.get(copilot_id)
        if self._blobs is None or self._queue is None:
            raise UnavailableError("retrying is not configured here (no ingest queue)")
        records = {d.doc_key: d for d in self._documents.list(copilot_id)}
        files = {
            o.key.removeprefix(f"{copilot_id}/")
            for o in self._blobs().list(f"{copilot_id}/")
            if not o.key.endswith("/")
        }
        queued: builtins.list[str] = []
        skipped: builtins.list[RetrySkip] = []
        if not keys:
            failed = [k for k, d in records.items() if d.status == DocumentStatusValue.FAILED]
            queued = sorted({*failed, *(files - records.keys())})
        for key in dict.fromkeys(keys or []):
            record = records.get(key)
            if record is None and key not in files:
                skipped.append(RetrySkip(doc_key=key, reason="no such document or file"))
            elif record is not None and record.status == DocumentStatusValue.INDEXED:
                skipped.append(RetrySkip(doc_key=key, reason="already indexed"))
            else:
                queued.append(key)
        self._queue().send_many(
            [
                s3_notification(self._bucket, f"{copilot_id}/{key}", "ObjectCreated:Retry")
                for key in queued
            ]
        )
        for key in queued:
            record = records.get(key)
            # Shown as pending until the ingest function picks it up (queued first: a record
            # never says queued when nothing is). A conflict means the ingest function got there
            # first: its record stands.
            if record is not None:
                with contextlib.suppress(WriteConflict):
                    self._documents.save(
                        record.model_copy(
                            update={
                                "status": DocumentStatusValue.PENDING,
                                "reason": "queued for another attempt",
                                "updated_at": utcnow(),
                            }
                        )
                    )
        return RetryResult(copilot_id=copilot_id, queued=queued, skipped=skipped)
