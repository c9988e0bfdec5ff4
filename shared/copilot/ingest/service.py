"""Indexing of knowledge files: S3 object events -> parse -> chunk -> embed -> copilot's index."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from copilot.conflicts import retry_on_conflict
from copilot.errors import CopilotError, PermanentIngestError
from copilot.ingest.chunking import chunk_document, chunk_id
from copilot.ingest.models import SOURCE_URL_META, DocumentStatus, DocumentStatusValue
from copilot.knowledge.lexical_snapshots import LexicalMaintainer
from copilot.knowledge.models import Chunk, part_texts
from copilot.knowledge.vectors import pack, pack_all, unpack, unpack_all
from copilot.ports import BlobStore, CopilotRegistry, DocumentStore, KnowledgeIndex, StoredObject
from copilot.schema import utcnow

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

log = logging.getLogger(__name__)

MAX_CHASES = 5  # re-index rounds while the object keeps changing during indexing
# Table rows and list items embedded one by one, per document: a price list, opening hours
# or an FAQ's lists, not a whole product catalogue (each costs an embedding on top of its
# chunk's).
MAX_ROW_VECTORS = 1000
# Ends the reason of a pending document whose last attempt failed for a transient cause.
RETRYING = "; retrying"


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
    # What the lexical index learns from it: the chunks of an indexed version.
    indexed: tuple[Chunk, ...] = field(default=(), repr=False, compare=False)


def s3_notification(bucket: str, key: str, event_name: str = "ObjectCreated:Reindex") -> str:
    """An S3-notification-shaped message, as the bucket would send (keys URL-encoded)."""
    from urllib.parse import quote_plus

    record = {
        "eventSource": "aws:s3",
        "eventName": event_name,
        "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key, safe="/")}},
    }
    return json.dumps({"Records": [record]})


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
        lexical: LexicalMaintainer | None = None,
    ) -> None:
        self._bucket = bucket
        self._lexical = lexical
        self._copilots = copilots
        self._documents = documents
        self._blobs = blobs
        self._index = index
        self._embedder = embedder
        self._max_bytes = max_bytes

    def handle(self, event: ObjectEvent) -> IngestResult:
        try:
            result = self._handle(event)
        except Exception as e:
            self._note_retrying(event, e)
            raise
        self._tell_lexical([(event, result)])
        return result

    def handle_batch(self, events: Sequence[ObjectEvent]) -> list[IngestResult | Exception]:
        """Apply a batch of object events (a queue batch): the new and changed files of each
        copilot are read concurrently, their statuses read and written in batches, their
        chunks embedded in one model call and written in one upsert. Removals, unreadable
        files and lost races take the one-file path. Each event's result, or the transient
        error it failed with (that event is to be retried; the others are done)."""
        outcome: dict[int, IngestResult | Exception] = {}
        last = {e.key: i for i, e in enumerate(events)}  # one object's events: its state now
        owners: dict[str, bool] = {}
        fast: list[int] = []
        slow: list[int] = []
        for i, event in enumerate(events):
            if last[event.key] != i:
                continue
            try:
                skipped = self._skip(event, owners)
            except Exception as e:
                outcome[i] = e
                continue
            if skipped is not None:
                outcome[i] = skipped
            else:
                (fast if event.created else slow).append(i)
        by_copilot: dict[str, list[int]] = {}
        for i in fast:
            by_copilot.setdefault(events[i].copilot_id, []).append(i)
        for copilot_id, numbers in by_copilot.items():
            try:
                done, rest = self._index_batch(copilot_id, [events[i] for i in numbers])
            except Exception as e:
                log.warning("batch indexing failed for %s; each file is retried", copilot_id)
                for i in numbers:
                    self._note_retrying(events[i], e)
                    outcome[i] = e
                continue
            for i, event in zip(numbers, [events[i] for i in numbers], strict=True):
                if event.key in done:
                    got = outcome[i] = done[event.key]
                    if isinstance(got, Exception):
                        self._note_retrying(event, got)
                elif event.key in rest:
                    slow.append(i)
        for i in slow:
            try:
                outcome[i] = self._handle(events[i])
            except Exception as e:
                self._note_retrying(events[i], e)
                outcome[i] = e
        self._tell_lexical(
            [(events[i], r) for i, r in outcome.items() if isinstance(r, IngestResult)]
        )
        return [outcome[last[e.key]] for e in events]

    def _index_batch(
        self, copilot_id: str, events: Sequence[ObjectEvent]
    ) -> tuple[dict[str, IngestResult | Exception], set[str]]:
        """One copilot's share of a batch: the results (or transient errors) of the files it
        indexed or found unchanged, and the keys left to the one-file path (gone, too large
        to read, or written by someone else meanwhile)."""
        done: dict[str, IngestResult | Exception] = {}
        rest: set[str] = set()
        fetched = _concurrently(lambda e: self._blobs.get(e.key, self._max_bytes), events)
        objects: list[StoredObject] = []
        for event, got in zip(events, fetched, strict=True):
            if got is None or isinstance(got, PermanentIngestError):
                rest.add(event.key)
            elif isinstance(got, Exception):
                done[event.key] = got
            else:
                objects.append(got)
        if not objects:
            return done, rest
        doc_keys = {o.key: o.key.split("/", 1)[1] for o in objects}
        current = self._documents.get_many(copilot_id, list(doc_keys.values()))
        todo: list[tuple[StoredObject, DocumentStatus | None]] = []
        for obj in objects:
            status = current.get(doc_keys[obj.key])
            if (
                status is not None
                and status.version == obj.version
                and status.status == DocumentStatusValue.INDEXED
            ):
                done[obj.key] = IngestResult(obj.key, "unchanged", chunks=status.chunk_count)
            else:
                todo.append((obj, status))
        marks = self._documents.save_many(
            [_pending(status, copilot_id, doc_keys[obj.key], obj) for obj, status in todo]
        )
        parsed: list[tuple[StoredObject, DocumentStatus | None, DocumentStatus, list[Chunk]]] = []
        failed: list[tuple[StoredObject, DocumentStatus, str]] = []
        for (obj, status), mark in zip(todo, marks, strict=True):
            if mark is None:
                rest.add(obj.key)  # another writer got there first
                continue
            url = obj.metadata.get(SOURCE_URL_META)
            try:
                chunks = chunk_document(copilot_id, mark.doc_key, obj.body, obj.version, url=url)
            except PermanentIngestError as e:
                failed.append((obj, mark, e.message))
                continue
            parsed.append((obj, status, mark, chunks))
        index = self._index()
        embedded = self._embed_many(
            index,
            copilot_id,
            [(mark.doc_key, status, chunks) for _, status, mark, chunks in parsed],
        )
        index.add_chunks(
            copilot_id,
            [c for chunks, _ in embedded for c in chunks],
            [v for _, vectors in embedded for v in vectors],
        )
        outcomes: list[tuple[StoredObject, DocumentStatus, list[Chunk], str | None]] = [
            (obj, mark, chunks, None)
            for (obj, _, mark, _), (chunks, _) in zip(parsed, embedded, strict=True)
        ] + [(obj, mark, [], why) for obj, mark, why in failed]
        settled = [
            _settled(
                mark,
                obj,
                chunks=len(chunks),
                url=obj.metadata.get(SOURCE_URL_META),
                failure=why,
            )
            for obj, mark, chunks, why in outcomes
        ]
        written = self._documents.save_many([r for r, _ in settled if r is not None])
        stored = iter(written)
        first = {obj.key: status is None for obj, status, _, _ in parsed}
        for (obj, mark, chunks, why), (record, served) in zip(outcomes, settled, strict=True):
            ok = next(stored) is not None if record is not None else True
            if not ok:  # someone wrote the record since our mark: record it the one-file way
                served, _ = self._finish(
                    copilot_id,
                    mark.doc_key,
                    obj,
                    chunks=len(chunks),
                    url=obj.metadata.get(SOURCE_URL_META),
                    failure=why,
                )
            if why is not None:
                done[obj.key] = IngestResult(obj.key, "failed", why)
                continue
            fresh = ok and first.get(obj.key, False)
            done[obj.key] = self._settle_index(
                index, copilot_id, mark.doc_key, obj, chunks, served, fresh
            )
        # An object that changed while it was indexed is indexed again as it is now.
        indexed = [o for o in objects if isinstance(done.get(o.key), IngestResult)]
        now = _concurrently(lambda o: self._blobs.head(o.key), indexed)
        for obj, version in zip(indexed, now, strict=True):
            if version != obj.version:
                rest.add(obj.key)
                done.pop(obj.key, None)
        return done, rest

    def _tell_lexical(self, results: Sequence[tuple[ObjectEvent, IngestResult]]) -> None:
        """One lexical segment per copilot for what these results changed."""
        if self._lexical is None:
            return
        changes: dict[str, tuple[list[Chunk], list[str]]] = {}
        for event, result in results:
            chunks, removed = changes.setdefault(event.copilot_id, ([], []))
            if result.status == "indexed":
                chunks.extend(result.indexed)
            elif result.status == "deleted":
                removed.append(event.doc_key)
        for copilot_id, (chunks, removed) in changes.items():
            try:
                self._lexical.add(copilot_id, chunks, removed)
            except Exception:
                # The documents are indexed and answerable (the dense side, and the lexical
                # score of chunks missing from the index); a full rebuild restores it.
                log.exception("could not add a lexical segment for %s", copilot_id)

    def give_up(self, event: ObjectEvent) -> IngestResult:
        """The queue gave up on this event (dead-lettered after its retries): the document is
        recorded as failed with the last cause seen, so a person sees it and can retry it."""
        skipped = self._skip(event)
        if skipped is not None:
            return skipped
        copilot_id, doc_key = event.copilot_id, event.doc_key
        version = self._blobs.head(event.key)
        outcome = [IngestResult(event.key, "failed")]

        def fail(current: DocumentStatus | None) -> None:
            if current is None and version is None:
                outcome[0] = IngestResult(event.key, "ignored", "the file no longer exists")
                return
            if (
                current is not None
                and current.status == DocumentStatusValue.INDEXED
                and current.version == version
                and current.pending_version is None
            ):
                # A later delivery of the same file succeeded: nothing is missing.
                outcome[0] = IngestResult(event.key, "unchanged", chunks=current.chunk_count)
                return
            base = current or DocumentStatus(
                copilot_id=copilot_id, doc_key=doc_key, status=DocumentStatusValue.PENDING
            )
            reason = gave_up_reason(copilot_id, base.reason, removing=version is None)
            if base.version is not None and version is not None:
                reason += "; answers still use the previously indexed version"
            outcome[0] = IngestResult(event.key, "failed", reason)
            self._documents.save(
                base.model_copy(
                    update={
                        "status": DocumentStatusValue.FAILED,
                        "reason": reason,
                        "pending_version": None,
                        "attempted_version": version or base.attempted_version,
                        "updated_at": utcnow(),
                    }
                )
            )

        self._update(copilot_id, doc_key, fail)
        return outcome[0]

    def _skip(
        self, event: ObjectEvent, owners: dict[str, bool] | None = None
    ) -> IngestResult | None:
        """Why an event names no copilot's document (then no record can hold it), or None.
        ``owners``: which copilots exist, as read earlier in the batch."""
        if event.bucket != self._bucket:
            log.warning(
                "dropping event for bucket %s (this deployment reads %s)",
                event.bucket,
                self._bucket,
            )
            return IngestResult(
                event.key, "ignored", f"not this deployment's bucket: {event.bucket}"
            )
        if not event.doc_key or event.key.endswith("/") or event.key.startswith("_"):
            # Folder markers, internal files (lexical segments under _...) and files at the
            # bucket's root: no copilot's document, so no record can show them.
            log.warning("ignoring %s: not a file under a copilot prefix", event.key)
            return IngestResult(event.key, "ignored", "not a file under a copilot prefix")
        known = owners.get(event.copilot_id) if owners is not None else None
        if known is None:
            known = self._copilots.get(event.copilot_id) is not None
            if owners is not None:
                owners[event.copilot_id] = known
        if not known:
            log.warning("dropping event for unknown copilot: %s", event.key)
            return IngestResult(event.key, "ignored", "no copilot owns this prefix")
        return None

    def _handle(self, event: ObjectEvent) -> IngestResult:
        """Apply one object event. Permanent problems are recorded and returned, never raised;
        transient ones (storage or index unavailable) raise so the queue redelivers."""
        skipped = self._skip(event)
        if skipped is not None:
            return skipped
        if not event.created and self._blobs.head(event.key) is not None:
            # Removed, then uploaded again before this event arrived: index what is there now.
            return self._index_object(event)
        if not event.created:
            return self._remove(event)
        return self._index_object(event)

    def _note_retrying(self, event: ObjectEvent, error: Exception) -> None:
        """Keep a transient failure's cause on the document while the queue redelivers, so
        ``copilot docs`` says why it is still pending. Best effort: the store may be what is
        down, and the event is retried either way."""
        if not event.doc_key or event.bucket != self._bucket or event.key.startswith("_"):
            return
        reason = f"{transient_cause(error)}{RETRYING}"

        def note(current: DocumentStatus | None) -> None:
            if current is None and event.created:
                current = DocumentStatus(
                    copilot_id=event.copilot_id,
                    doc_key=event.doc_key,
                    status=DocumentStatusValue.PENDING,
                )
            # Indexed or failed records still describe what answers use: left as they are.
            if current is None or current.status != DocumentStatusValue.PENDING:
                return
            self._documents.save(
                current.model_copy(update={"reason": reason, "updated_at": utcnow()})
            )

        try:
            if self._copilots.get(event.copilot_id) is not None:
                self._update(event.copilot_id, event.doc_key, note)
        except Exception:
            log.warning("could not record why %s is retried", event.key, exc_info=True)

    def _remove(self, event: ObjectEvent) -> IngestResult:
        copilot_id, doc_key = event.copilot_id, event.doc_key

        def forget(current: DocumentStatus | None) -> None:
            if current is not None:
                self._documents.delete(copilot_id, doc_key, rev=current.rev)

        self._update(copilot_id, doc_key, forget)
        removed = self._index().delete_document(copilot_id, doc_key)
        return IngestResult(event.key, "deleted", chunks=removed)

    def _index_object(self, event: ObjectEvent) -> IngestResult:
        """Index the object as it is now; repeat while it keeps changing under us.

        Readers only see chunks of the version the document's status names, so switching
        that one field switches answers from the old version to the new one at once.
        """
        copilot_id, doc_key = event.copilot_id, event.doc_key
        result = IngestResult(event.key, "ignored", "the file no longer exists")
        for _ in range(MAX_CHASES):
            version = self._blobs.head(event.key)
            try:
                obj = self._blobs.get(event.key, self._max_bytes) if version else None
            except PermanentIngestError as e:
                # Too large to read: recorded as failed like any file that cannot be indexed.
                return self._unreadable(copilot_id, doc_key, event.key, version, e.message)
            if obj is None:
                return self._remove(event) if self._documents.get(copilot_id, doc_key) else result
            result = self._index_version(copilot_id, doc_key, obj)
            if self._blobs.head(event.key) == obj.version:
                return result
        return result

    def _unreadable(
        self, copilot_id: str, doc_key: str, key: str, version: str | None, why: str
    ) -> IngestResult:
        reason = (
            f"{why}: split the file into smaller ones, or raise the limit "
            f"(COPILOT_MAX_UPLOAD_BYTES, now {self._max_bytes} bytes)"
        )
        stand_in = StoredObject(key=key, body=b"", version=version, size=0)
        self._finish(copilot_id, doc_key, stand_in, failure=reason)
        return IngestResult(key, "failed", reason)

    def _index_version(self, copilot_id: str, doc_key: str, obj: StoredObject) -> IngestResult:
        current = self._documents.get(copilot_id, doc_key)
        if (
            current is not None
            and current.version == obj.version
            and current.status == DocumentStatusValue.INDEXED
        ):
            return IngestResult(obj.key, "unchanged", chunks=current.chunk_count)

        marked: list[int] = [0]  # the revision of our pending record, if it was the first

        def mark_pending(status: DocumentStatus | None) -> None:
            saved = self._documents.save(_pending(status, copilot_id, doc_key, obj))
            marked[0] = saved.rev if status is None else 0

        self._update(copilot_id, doc_key, mark_pending, read=(current,))
        url = obj.metadata.get(SOURCE_URL_META)
        try:
            chunks = chunk_document(copilot_id, doc_key, obj.body, obj.version, url=url)
        except PermanentIngestError as e:
            self._finish(copilot_id, doc_key, obj, failure=e.message)
            return IngestResult(obj.key, "failed", e.message)
        index = self._index()
        [(chunks, embeddings)] = self._embed_many(index, copilot_id, [(doc_key, current, chunks)])
        index.add_chunks(copilot_id, chunks, embeddings)
        served, over = self._finish(copilot_id, doc_key, obj, chunks=len(chunks), url=url)
        fresh = marked[0] != 0 and over == marked[0]
        return self._settle_index(index, copilot_id, doc_key, obj, chunks, served, fresh)

    def _settle_index(
        self,
        index: KnowledgeIndex,
        copilot_id: str,
        doc_key: str,
        obj: StoredObject,
        chunks: list[Chunk],
        served: str | None,
        fresh: bool,
    ) -> IngestResult:
        """After the outcome is recorded: no other version's chunks linger in the index.
        ``fresh``: the document had no record before this attempt's and no other writer
        touched it since, so no other version can have chunks (one request less)."""
        if served == obj.version:
            if not fresh:
                index.delete_document(copilot_id, doc_key, keep_version=obj.version)
            return IngestResult(obj.key, "indexed", chunks=len(chunks), indexed=tuple(chunks))
        # A newer version was already serving: ours must not linger in the index.
        index.delete_document(copilot_id, doc_key, keep_version=served)
        return IngestResult(obj.key, "superseded", "a newer version is already indexed")

    def _embed_many(
        self,
        index: KnowledgeIndex,
        copilot_id: str,
        documents: Sequence[tuple[str, DocumentStatus | None, list[Chunk]]],
    ) -> list[tuple[list[Chunk], list[list[float]]]]:
        """For each (document, its current status, its new chunks): the chunks with their
        heading's embedding (one per distinct title and section path) and their table rows'
        (the first MAX_ROW_VECTORS rows of each document), and the chunks' embeddings.

        What a new version did not change keeps the vectors its previous version has in the
        index (re-crawls and edits embed only what changed: embedding is most of the cost of
        indexing). Everything else is embedded in one model call (the embedder batches by
        length), and the previous versions' vectors are read in one request."""
        plans = []
        old_ids: list[str] = []
        for doc_key, current, chunks in documents:
            texts = [_embedding_text(c.title, c.section, c.text) for c in chunks]
            headings = [_heading(c.title, c.section) for c in chunks]
            rows: list[list[str]] = []
            budget = MAX_ROW_VECTORS
            for c in chunks:
                rows.append(part_texts(c)[:budget] if budget > 0 else [])
                budget -= len(rows[-1])
            plans.append((chunks, texts, headings, rows))
            if current is not None and current.version and current.chunk_count:
                old_ids += [
                    chunk_id(copilot_id, doc_key, i, current.version)
                    for i in range(current.chunk_count)
                ]
        known: dict[str, list[float]] = {}
        for old, vector in index.embedded(copilot_id, old_ids) if old_ids else []:
            known[_embedding_text(old.title, old.section, old.text)] = vector
            if old.heading_vector:
                known[_heading(old.title, old.section)] = unpack(old.heading_vector)
            if old.row_vectors:
                known.update(
                    zip(part_texts(old), unpack_all(old.row_vectors, len(vector)), strict=False)
                )
        wanted = [
            t
            for _, texts, headings, rows in plans
            for t in (*texts, *headings, *(r for chunk_rows in rows for r in chunk_rows))
        ]
        missing = [t for t in dict.fromkeys(wanted) if t not in known]
        if missing:
            known.update(zip(missing, self._embedder().embed_documents(missing), strict=True))
        out = []
        for chunks, texts, headings, rows in plans:
            embedded = [
                c.model_copy(
                    update={
                        "heading_vector": pack(known[h]),
                        "row_vectors": (
                            pack_all([known[r] for r in chunk_rows]) if chunk_rows else None
                        ),
                    }
                )
                for c, h, chunk_rows in zip(chunks, headings, rows, strict=True)
            ]
            out.append((embedded, [known[t] for t in texts]))
        return out

    def _finish(
        self,
        copilot_id: str,
        doc_key: str,
        obj: StoredObject,
        *,
        chunks: int = 0,
        url: str | None = None,
        failure: str | None = None,
    ) -> tuple[str | None, int]:
        """Record the outcome; returns the version answers come from afterwards, and the
        revision of the record the outcome was written over (0: none)."""
        served: list[str | None] = [None]
        over = [0]

        def apply(status: DocumentStatus | None) -> None:
            base = status or DocumentStatus(
                copilot_id=copilot_id, doc_key=doc_key, status=DocumentStatusValue.PENDING
            )
            record, served[0] = _settled(base, obj, chunks=chunks, url=url, failure=failure)
            over[0] = base.rev
            if record is not None:
                self._documents.save(record)

        self._update(copilot_id, doc_key, apply)
        return served[0], over[0]

    def _update(
        self,
        copilot_id: str,
        doc_key: str,
        change: Callable[[DocumentStatus | None], None],
        read: tuple[DocumentStatus | None] | None = None,
    ) -> None:
        """Read-modify-write of a document's status, retried when another writer got there first.

        ``read``: the status just read by the caller, used for the first attempt (one read less).
        """

        def attempt() -> None:
            nonlocal read
            current = read[0] if read is not None else self._documents.get(copilot_id, doc_key)
            read = None
            change(current)

        retry_on_conflict(attempt, what=f"the status of '{doc_key}'")


_FETCHERS = 8  # objects read at once in a batch


def _concurrently(job: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``job`` of each item on a few threads (storage round trips overlap); an item's
    exception is its result."""

    def attempt(item: Any) -> Any:
        try:
            return job(item)
        except Exception as e:
            return e

    if len(items) <= 1:
        return [attempt(i) for i in items]
    with ThreadPoolExecutor(min(_FETCHERS, len(items))) as pool:
        return list(pool.map(attempt, items))


def _pending(
    status: DocumentStatus | None, copilot_id: str, doc_key: str, obj: StoredObject
) -> DocumentStatus:
    """The record of an attempt at indexing ``obj`` (what ``copilot docs`` shows meanwhile)."""
    base = status or DocumentStatus(
        copilot_id=copilot_id, doc_key=doc_key, status=DocumentStatusValue.PENDING
    )
    return base.model_copy(
        update={
            "status": DocumentStatusValue.PENDING,
            "reason": None,  # a new attempt: the last one's cause is history
            "pending_version": obj.version,
            "updated_at": utcnow(),
        }
    )


def _settled(
    base: DocumentStatus,
    obj: StoredObject,
    *,
    chunks: int = 0,
    url: str | None = None,
    failure: str | None = None,
) -> tuple[DocumentStatus | None, str | None]:
    """What recording an attempt's outcome on ``base`` writes (None: nothing), and the
    version answers come from afterwards."""
    newer_serving = (
        base.version is not None
        and base.source_modified is not None
        and obj.last_modified is not None
        and base.source_modified > obj.last_modified
    )
    update: dict[str, object]
    if newer_serving:
        if base.pending_version == obj.version:
            update = {"pending_version": None, "attempted_version": obj.version}
            return base.model_copy(update=update), base.version
        return None, base.version
    pending = None if base.pending_version == obj.version else base.pending_version
    if failure is not None:
        reason = failure
        if base.version is not None:
            reason += "; answers still use the previously indexed version"
        update = {
            "status": DocumentStatusValue.FAILED,
            "reason": reason,
            "pending_version": pending,
        }
        served = base.version
    else:
        update = {
            "status": DocumentStatusValue.INDEXED,
            "reason": None,
            "version": obj.version,
            "source_modified": obj.last_modified,
            "chunk_count": chunks,
            "size": obj.size,
            "url": url,
            "pending_version": pending,
        }
        served = obj.version
    update["attempted_version"] = obj.version
    return base.model_copy(update={**update, "updated_at": utcnow()}), served


def transient_cause(error: Exception) -> str:
    if isinstance(error, CopilotError):
        return error.message
    return f"an unexpected error ({type(error).__name__}; the ingest function's log has details)"


def gave_up_reason(copilot_id: str, last: str | None, *, removing: bool) -> str:
    """The reason of a document whose event was dead-lettered: the last cause seen (kept on
    the record while retrying), and what to do."""
    cause = (
        last.removesuffix(RETRYING)
        if last and last.endswith(RETRYING)
        else "the ingest function failed on every attempt (its log has the cause)"
    )
    what = "removing it from the index" if removing else "indexing"
    return (
        f"{what} was given up after repeated failures: {cause}. Once that is fixed, retry it "
        f"(`copilot docs retry`, or POST /admin/copilots/{copilot_id}/documents/retry)"
    )


def _heading(title: str, section: str | None) -> str:
    return f"{title} — {section}" if section else title


def _embedding_text(title: str, section: str | None, text: str) -> str:
    return f"{_heading(title, section)}\n{text}"
