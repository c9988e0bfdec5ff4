"""Keeping each copilot's lexical index in step with its documents, and reading it."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from copilot.knowledge.lexical import LexicalIndex
from copilot.ports import DocumentStore, EventQueue, KnowledgeIndex, LexicalStore

log = logging.getLogger(__name__)

REBUILD_ACTION = "rebuild-lexical"
REBUILD_DELAY_SECONDS = 1  # coalesces a burst of uploads into one rebuild


def rebuild_message(copilot_id: str) -> str:
    return json.dumps({"action": REBUILD_ACTION, "copilot_id": copilot_id})


class LexicalMaintainer:
    """After documents change, schedule one rebuild (a delayed message on the ingest queue);
    the rebuild reads the live chunks from the vector store, so both sides hold the same chunks.
    Without a queue (tests, one-process use) it rebuilds at once."""

    def __init__(
        self,
        store: LexicalStore,
        index: Callable[[], KnowledgeIndex],
        documents: DocumentStore,
        queue: Callable[[], EventQueue | None],
    ) -> None:
        self._store = store
        self._index = index
        self._documents = documents
        self._queue = queue

    def changed(self, copilot_id: str) -> None:
        if not self._store.mark_dirty(copilot_id):
            return  # a rebuild is already scheduled and will see this change
        queue = self._queue()
        if queue is None:
            self.rebuild(copilot_id)
        else:
            queue.send_many([rebuild_message(copilot_id)], delay_seconds=REBUILD_DELAY_SECONDS)

    def give_up(self, copilot_id: str) -> None:
        """The queue gave up on a scheduled rebuild: try once more, and if that fails too,
        unschedule it, so the copilot's next change schedules a rebuild again (otherwise the
        'scheduled' mark would stay and no change would ever rebuild the snapshot)."""
        try:
            self.rebuild(copilot_id)
        except Exception:
            log.exception("lexical rebuild of %s failed again; the next change retries", copilot_id)
            self._store.begin_rebuild(copilot_id)  # clears the mark; publishes nothing

    def rebuild(self, copilot_id: str) -> int:
        generation = self._store.begin_rebuild(copilot_id)
        chunks = self._index().all_chunks(copilot_id)
        live = self._documents.active_versions(copilot_id, sorted({c.doc_key for c in chunks}))
        kept = [c for c in chunks if live.get(c.doc_key) == c.version]
        kept.sort(key=lambda c: (c.doc_key, c.position))
        snapshot = LexicalIndex.build(kept, generation)
        published = self._store.publish(copilot_id, generation, snapshot.dumps())
        log.info(
            "lexical index of %s: %d chunks, generation %d, published=%s",
            copilot_id,
            len(kept),
            generation,
            published,
        )
        return len(kept)


class LexicalReader:
    """Per-process cache of lexical snapshots, re-checked at most every ``max_age`` seconds."""

    def __init__(self, store: LexicalStore, max_age: float = 1.0) -> None:
        self._store = store
        self._max_age = max_age
        self._cache: dict[str, tuple[float, str | None, LexicalIndex | None]] = {}
        self._lock = threading.Lock()

    def get(self, copilot_id: str) -> LexicalIndex | None:
        now = time.monotonic()
        cached = self._cache.get(copilot_id)
        if cached is not None and now - cached[0] < self._max_age:
            return cached[2]
        pointer = self._store.pointer(copilot_id)
        if cached is not None and pointer == cached[1]:
            index = cached[2]
        elif pointer is None:
            index = None
        else:
            data = self._store.fetch(copilot_id, pointer)
            index = (
                LexicalIndex.loads(data) if data is not None else (cached[2] if cached else None)
            )
        with self._lock:
            self._cache[copilot_id] = (now, pointer, index)
        return index
