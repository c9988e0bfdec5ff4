"""Keeping each copilot's lexical index in step with its documents, and reading it.

Writing: the ingest batch that indexed (or removed) some documents adds one segment with
them (``LexicalMaintainer.add``): its cost is the batch's, not the corpus's. Segments of about
the same size are merged in the background, ``MERGE_FACTOR`` at a time (a tiered merge, as
search engines do), so a corpus of n chunks is rewritten O(log n) times in all and a reader
sees a few dozen segments at most. A merge drops the chunks of versions no longer live (the
document store says which are) and, where the live version is missing from the segments,
reads its chunks back from the vector store.

Reading: each process keeps the segments it has fetched (they never change) and, when the
manifest moves, fetches only the new ones.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from copilot.knowledge.lexical import DocEntry, LexicalIndex, Segment
from copilot.knowledge.models import Chunk, chunk_id
from copilot.ports import DocumentStore, EventQueue, KnowledgeIndex, LexicalStore

log = logging.getLogger(__name__)

REBUILD_ACTION = "rebuild-lexical"  # the queued merge job (its name predates segments)
REBUILD_DELAY_SECONDS = 1  # coalesces a burst of new segments into one merge job
MERGE_FACTOR = 8  # segments of one size tier merged together
_MAX_FETCHERS = 8


def rebuild_message(copilot_id: str) -> str:
    return json.dumps({"action": REBUILD_ACTION, "copilot_id": copilot_id})


def segment_name(seq: int, chunks: int) -> str:
    """A segment's name: its sequence number and size (what the merge policy reads), unique."""
    return f"{seq:012d}-{chunks}-{uuid.uuid4().hex[:8]}"


def segment_size(name: str) -> int:
    try:
        return int(name.split("-")[1])
    except (IndexError, ValueError):
        return 0


def tier(chunks: int) -> int:
    return int(math.log(max(chunks, 1), MERGE_FACTOR))


def merge_due(segments: Sequence[str]) -> list[str]:
    """The segments to merge next: the smallest tier holding MERGE_FACTOR of them, or none."""
    tiers: dict[int, list[str]] = {}
    for name in segments:
        tiers.setdefault(tier(segment_size(name)), []).append(name)
    for level in sorted(tiers):
        if len(tiers[level]) >= MERGE_FACTOR:
            return tiers[level]
    return []


class LexicalMaintainer:
    """Adds a segment per change and merges segments in the background (a delayed message on
    the ingest queue, one at a time per copilot). Without a queue (tests, one-process use)
    merges run at once."""

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

    def add(self, copilot_id: str, chunks: Sequence[Chunk], removed: Sequence[str] = ()) -> None:
        """The documents of ``chunks`` were indexed at their chunks' version, the ``removed``
        ones removed: one segment says so."""
        if not chunks and not removed:
            return
        seq = self._store.next_seq(copilot_id)
        segment = Segment.build(chunks, seq, removed)
        manifest = self._store.add_segment(
            copilot_id, segment_name(seq, len(segment)), segment.dumps()
        )
        if merge_due(manifest.segments):
            self._schedule(copilot_id)

    def _schedule(self, copilot_id: str) -> None:
        if not self._store.mark_dirty(copilot_id):
            return  # a merge is already scheduled and will see this segment
        queue = self._queue()
        if queue is None:
            self.compact(copilot_id)
        else:
            queue.send_many([rebuild_message(copilot_id)], delay_seconds=REBUILD_DELAY_SECONDS)

    def give_up(self, copilot_id: str) -> None:
        """The queue gave up on a scheduled merge: try once more, and if that fails too,
        unschedule it, so the copilot's next segment schedules a merge again (otherwise the
        'scheduled' mark would stay and segments would pile up unmerged)."""
        try:
            self.compact(copilot_id)
        except Exception:
            log.exception("lexical merge of %s failed again; the next change retries", copilot_id)
            self._store.begin_rebuild(copilot_id)  # clears the mark

    def compact(self, copilot_id: str) -> int:
        """Merge segments while a tier holds MERGE_FACTOR of them; returns the merges done."""
        self._store.begin_rebuild(copilot_id)  # segments added from now on schedule again
        merges = 0
        for _ in range(64):
            manifest = self._store.manifest(copilot_id)
            group = merge_due(manifest.segments if manifest else ())
            if not group:
                break
            loaded = [self._store.fetch(copilot_id, name) for name in group]
            if any(data is None for data in loaded):
                continue  # merged by someone else meanwhile
            segments = [Segment.loads(data) for data in loaded if data is not None]
            merged = self._merge(copilot_id, segments)
            seq = max((d.seq for s in segments for d in s.docs), default=0)
            name = segment_name(seq, len(merged))
            if self._store.replace_segments(copilot_id, group, name, merged.dumps()):
                merges += 1
                log.info(
                    "lexical index of %s: merged %d segments into %d chunks",
                    copilot_id,
                    len(group),
                    len(merged),
                )
        return merges

    def _merge(self, copilot_id: str, segments: Sequence[Segment]) -> Segment:
        """The segments as one, with only live versions; live versions missing from them (a
        change raced this merge) read back from the vector store."""
        docs = sorted({d.doc_key for s in segments for d in s.docs})
        live = self._documents.active_versions(copilot_id, docs)
        winners: dict[str, DocEntry] = {}
        for segment in segments:
            for doc in segment.docs:
                if doc.doc_key not in winners or doc.seq >= winners[doc.doc_key].seq:
                    winners[doc.doc_key] = doc
        stale = [k for k, d in winners.items() if k in live and live[k] != d.version]
        parts = list(segments)
        if stale:
            repaired = self._read_back(copilot_id, stale)
            parts.append(Segment.build(repaired, self._store.next_seq(copilot_id)))
        return Segment.merge(parts, keep=lambda d: live.get(d.doc_key) == d.version)

    def _read_back(self, copilot_id: str, doc_keys: Sequence[str]) -> list[Chunk]:
        ids = []
        for doc_key in doc_keys:
            status = self._documents.get(copilot_id, doc_key)
            if status is not None and status.version is not None:
                ids += [
                    chunk_id(copilot_id, doc_key, i, status.version)
                    for i in range(status.chunk_count)
                ]
        return [chunk for chunk, _ in self._index().embedded(copilot_id, ids)] if ids else []

    def rebuild(self, copilot_id: str) -> int:
        """One segment of every live chunk in the vector store, in place of every segment
        there is (re-indexing, or a copilot indexed without segments); returns its size."""
        self._store.begin_rebuild(copilot_id)
        for _ in range(8):
            seq = self._store.next_seq(copilot_id)
            manifest = self._store.manifest(copilot_id)
            chunks = self._index().all_chunks(copilot_id)
            live = self._documents.active_versions(copilot_id, sorted({c.doc_key for c in chunks}))
            kept = [c for c in chunks if live.get(c.doc_key) == c.version]
            kept.sort(key=lambda c: (c.doc_key, c.position))
            segment = Segment.build(kept, seq)
            name = segment_name(seq, len(segment))
            old = manifest.segments if manifest else ()
            if old:
                if self._store.replace_segments(copilot_id, old, name, segment.dumps()):
                    break
            else:
                self._store.add_segment(copilot_id, name, segment.dumps())
                break
        log.info("lexical index of %s rebuilt: %d chunks", copilot_id, len(kept))
        return len(kept)


class LexicalReader:
    """Per-process cache of each copilot's lexical index, re-checked at most every ``max_age``
    seconds; only segments it has not seen are fetched."""

    def __init__(self, store: LexicalStore, max_age: float = 1.0) -> None:
        self._store = store
        self._max_age = max_age
        self._cache: dict[str, tuple[float, int | None, LexicalIndex | None]] = {}
        self._segments: dict[str, dict[str, Segment]] = {}
        self._lock = threading.Lock()

    def get(self, copilot_id: str) -> LexicalIndex | None:
        now = time.monotonic()
        cached = self._cache.get(copilot_id)
        if cached is not None and now - cached[0] < self._max_age:
            return cached[2]
        index = cached[2] if cached else None
        version = cached[1] if cached else None
        for _ in range(3):
            manifest = self._store.manifest(copilot_id)
            if manifest is None:
                index, version = None, None
                break
            if manifest.version == version:
                break
            held = self._segments.get(copilot_id, {})
            loaded = self._load(copilot_id, [n for n in manifest.segments if n not in held])
            if loaded is None:
                continue  # a segment was merged away meanwhile: read the manifest again
            segments = {**{n: held[n] for n in manifest.segments if n in held}, **loaded}
            index = LexicalIndex(
                [segments[n] for n in manifest.segments], manifest.version, copilot_id
            )
            version = manifest.version
            with self._lock:
                self._segments[copilot_id] = segments
            break
        with self._lock:
            self._cache[copilot_id] = (now, version, index)
        return index

    def _load(self, copilot_id: str, names: list[str]) -> dict[str, Segment] | None:
        if not names:
            return {}

        def fetch(name: str) -> Segment | None:
            data = self._store.fetch(copilot_id, name)
            return None if data is None else Segment.loads(data)

        # Each segment is decoded on the thread that fetched it: zlib lets go of the GIL,
        # so a new process's first turn at 100k chunks decompresses on every core.
        if len(names) == 1:
            found = [fetch(names[0])]
        else:
            with ThreadPoolExecutor(min(_MAX_FETCHERS, len(names))) as pool:
                found = list(pool.map(fetch, names))
        if any(segment is None for segment in found):
            return None
        return {n: segment for n, segment in zip(names, found, strict=True) if segment is not None}
