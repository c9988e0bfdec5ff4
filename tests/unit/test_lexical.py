from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from copilot.entrypoints.ingest import IngestHandler
from copilot.errors import UnavailableError
from copilot.ingest.chunking import chunk_document
from copilot.ingest.models import DocumentStatus, DocumentStatusValue
from copilot.knowledge.lexical import LexicalIndex, Segment
from copilot.knowledge.lexical_snapshots import (
    MERGE_FACTOR,
    LexicalMaintainer,
    LexicalReader,
    merge_due,
    segment_name,
)
from copilot.knowledge.models import Chunk
from copilot.text import analyze
from copilot_dev.fakes import (
    MemoryDocumentStore,
    MemoryEventQueue,
    MemoryKnowledgeIndex,
    MemoryLexicalStore,
)

DOCS = {
    "returns.md": b"# Returns\n\n## Window\n\nReturn bikes within 30 days for a refund.",
    "shipping.md": b"# Shipping\n\nStandard shipping takes 3 to 5 business days.",
    "battery.md": b"# Batteries\n\nStore e-bike batteries at 40 to 60 percent charge.",
}


def build() -> LexicalIndex:
    chunks = [c for k, b in DOCS.items() for c in chunk_document("c", k, b, "v1")]
    return LexicalIndex.build(chunks, generation=3)


def test_analysis_stems_folds_and_drops_stopwords() -> None:
    assert analyze("The e-bikes' Batteries are RETURNED") == ["ebik", "batteri", "return"]


def test_bm25_ranks_the_matching_chunk_first_and_ignores_unknown_terms() -> None:
    hits = build().search("how long does shipping take", 3)
    assert hits[0].chunk.doc_key == "shipping.md"
    assert build().search("zebra quantum", 3) == []


def test_segment_round_trip_keeps_scores() -> None:
    index = build()
    again = LexicalIndex([Segment.loads(s.dumps()) for s in index.segments], generation=3)
    assert again.generation == 3
    assert [(h.chunk.chunk_id, round(h.score, 6)) for h in again.search("refund window", 3)] == [
        (h.chunk.chunk_id, round(h.score, 6)) for h in index.search("refund window", 3)
    ]
    with pytest.raises(ValueError, match="not a lexical index segment"):
        Segment.loads(b"{}")


def test_text_outside_the_index_is_scored_like_indexed_text() -> None:
    index = build()
    chunk = chunk_document("c", "returns.md", DOCS["returns.md"], "v1")[0]
    assert index.contains(chunk.chunk_id) and not index.contains("other")
    indexed = next(
        h.score for h in index.search("refund window", 3) if h.chunk.chunk_id == chunk.chunk_id
    )
    from copilot.knowledge.lexical import chunk_text_for_index

    assert abs(index.score("refund window", chunk_text_for_index(chunk)) - indexed) < 1e-9


def _chunks(doc_key: str, body: bytes, version: str) -> list[Chunk]:
    return chunk_document("c", doc_key, body, version)


QUERIES = ["refund window", "how long does shipping take", "battery charge", "return bikes"]


def _ranked(index: LexicalIndex) -> list[list[tuple[str, float]]]:
    return [[(h.chunk.chunk_id, round(h.score, 9)) for h in index.search(q, 5)] for q in QUERIES]


def test_segments_merged_at_read_time_score_as_one_index_of_the_live_chunks() -> None:
    """A later segment's version of a document hides the earlier one's, a removal hides it
    altogether, and the term statistics count live chunks only."""
    first = [c for k, b in DOCS.items() for c in _chunks(k, b, "v1")]
    returns_v2 = _chunks("returns.md", b"# Returns\n\nReturn bikes within 60 days.", "v2")
    segments = [
        Segment.build(first, seq=1),
        Segment.build(returns_v2, seq=2, removed=["battery.md"]),
    ]
    live = [c for c in first if c.doc_key == "shipping.md"] + returns_v2
    merged, alone = LexicalIndex(segments), LexicalIndex.build(live)

    assert _ranked(merged) == _ranked(alone)
    assert len(merged) == len(alone) == len(live)
    assert merged.df("return") == 1 and merged.df("batteri") == 0
    assert merged.titles() == {"shipping.md": "Shipping", "returns.md": "Returns"}
    assert not merged.contains(first[0].chunk_id) and merged.contains(returns_v2[0].chunk_id)
    # A segment that arrives out of order (lower sequence number) does not win.
    assert _ranked(LexicalIndex(list(reversed(segments)))) == _ranked(alone)

    # Merging the segments into one keeps what a reader sees, and the removal's mark.
    one = Segment.merge(segments, keep=lambda doc: True)
    assert _ranked(LexicalIndex([one])) == _ranked(alone)
    assert {d.doc_key: d.version for d in one.docs} == {
        "returns.md": "v2",
        "shipping.md": "v1",
        "battery.md": None,
    }
    # ... and a document the merge is told is no longer live leaves its chunks behind.
    without = Segment.merge(segments, keep=lambda doc: doc.doc_key != "shipping.md")
    assert len(without) == len(returns_v2)
    assert LexicalIndex([Segment.loads(without.dumps())]).df("ship") == 0


def test_coverage_weights_rare_terms() -> None:
    index = build()
    assert index.coverage("battery charge", "Store e-bike batteries at 40 percent charge.") == 1.0
    assert 0 < index.coverage("battery shipping", "Store e-bike batteries.") < 1.0


def test_one_analyzer_joins_hyphens_and_apostrophes_and_folds_accents() -> None:
    assert analyze("Wi-Fi at the Café") == analyze("wifi at the cafe") == ["wifi", "cafe"]
    assert analyze("Don’t") == analyze("dont") == ["dont"]
    assert analyze("that is all") == []
    assert analyze("that is all", keep_stopwords=True) == ["that", "is", "all"]
    assert analyze("x" * 40 + " key") == ["key"]  # ids and hashes are not words


class _Documents(MemoryDocumentStore):
    """Each document indexed at a version; reads fail while ``down``."""

    def __init__(self, versions: dict[str, tuple[str, int]] | None = None) -> None:
        super().__init__()
        self.down = False
        for doc_key, (version, chunks) in (versions or {}).items():
            self.save(
                DocumentStatus(
                    copilot_id="c",
                    doc_key=doc_key,
                    status=DocumentStatusValue.INDEXED,
                    version=version,
                    chunk_count=chunks,
                )
            )

    def active_versions(self, copilot_id: str, doc_keys: Sequence[str]) -> dict[str, str]:
        if self.down:
            raise UnavailableError("the document store is unavailable")
        return super().active_versions(copilot_id, doc_keys)


class _CountingStore(MemoryLexicalStore):
    def __init__(self) -> None:
        super().__init__()
        self.fetched: list[str] = []

    def fetch(self, copilot_id: str, name: str) -> bytes | None:
        self.fetched.append(name)
        return super().fetch(copilot_id, name)


def _page(n: int, version: str = "v1") -> list[Chunk]:
    body = f"# Page {n}\n\nPart number {n} fits frame size {n % 7} and wheel {n % 5}.".encode()
    return _chunks(f"p{n}.md", body, version)


def test_each_change_adds_a_segment_and_merges_keep_them_few() -> None:
    """A change costs a segment of its own size; same-size segments are merged, so after
    many changes a reader sees a few segments with every live chunk, fetches only the
    segments it has not seen, and scores as one index of the live chunks would."""
    pages = 200
    documents = _Documents({f"p{n}.md": ("v1", 1) for n in range(pages)})
    store = _CountingStore()
    maintainer = LexicalMaintainer(store, MemoryKnowledgeIndex, documents, lambda: None)
    reader = LexicalReader(store, max_age=0)
    for n in range(pages):
        maintainer.add("c", _page(n))
        if n == 100:
            assert reader.get("c") is not None
    manifest = store.manifest("c")
    assert manifest is not None
    assert len(manifest.segments) < 2 * MERGE_FACTOR  # 200 one-page changes
    index = reader.get("c")
    assert index is not None and len(index) == pages
    alone = LexicalIndex.build([c for n in range(pages) for c in _page(n)])
    for query in ["part number 17", "frame size 3 wheel 4"]:
        assert [(h.chunk.chunk_id, round(h.score, 9)) for h in index.search(query, 5)] == [
            (h.chunk.chunk_id, round(h.score, 9)) for h in alone.search(query, 5)
        ]
    # One more change: the reader fetches that one segment, not the index again.
    store.fetched.clear()
    documents.save(
        documents.get("c", "p3.md").model_copy(update={"version": "v2"})  # type: ignore[union-attr]
    )
    maintainer.add("c", _page(3, "v2"), removed=["p4.md"])
    again = reader.get("c")
    assert again is not None and len(again) == pages - 1
    assert len(store.fetched) == 1 or merge_due(manifest.segments)
    assert {
        h.chunk.version for h in again.search("part number 3", 10) if h.chunk.doc_key == "p3.md"
    } == {"v2"}


def test_a_merge_reads_back_a_live_version_its_segments_miss() -> None:
    """A change that raced a merge (its segment numbered below an older version's) is
    restored from the vector store when the segments are merged."""
    v1, v2 = _page(1, "v1"), _page(1, "v2")
    documents = _Documents({"p1.md": ("v2", len(v2))})
    index = MemoryKnowledgeIndex()
    index.add_chunks("c", v2, [[1.0, 0.0]] * len(v2))
    store = MemoryLexicalStore()
    maintainer = LexicalMaintainer(store, lambda: index, documents, lambda: None)
    # v2's segment got its number first, but was added after v1's: v1 wins at read time.
    v2_seq, v1_seq = store.next_seq("c"), store.next_seq("c")
    store.add_segment("c", segment_name(v1_seq, 1), Segment.build(v1, v1_seq).dumps())
    store.add_segment("c", segment_name(v2_seq, 1), Segment.build(v2, v2_seq).dumps())
    for n in range(3, MERGE_FACTOR + 1):  # the merge is due once MERGE_FACTOR segments exist
        documents.save(
            DocumentStatus(
                copilot_id="c",
                doc_key=f"p{n}.md",
                status=DocumentStatusValue.INDEXED,
                version="v1",
                chunk_count=1,
            )
        )
        maintainer.add("c", _page(n))
    reader = LexicalReader(store, max_age=0).get("c")
    assert reader is not None
    assert len(store.manifest("c").segments) == 1  # type: ignore[union-attr]
    found = {
        h.chunk.version for h in reader.search("part number 1", 20) if h.chunk.doc_key == "p1.md"
    }
    assert found == {"v2"}


@pytest.mark.parametrize("documents_up", [False, True])
def test_a_dead_lettered_merge_never_leaves_the_copilot_unschedulable(documents_up: bool) -> None:
    """A merge the ingest queue gave up on is tried once more by the dead-letter consumer;
    if it fails again, the next change still schedules a merge."""
    store, queue = MemoryLexicalStore(), MemoryEventQueue()
    documents = _Documents({f"p{n}.md": ("v1", 1) for n in range(2 * MERGE_FACTOR)})
    maintainer = LexicalMaintainer(store, MemoryKnowledgeIndex, documents, lambda: queue)
    handler = IngestHandler(_unused, lambda: maintainer, _unused)
    for n in range(MERGE_FACTOR + 1):
        maintainer.add("c", _page(n))
    assert len(queue.messages) == 1  # one merge scheduled for the changes that made it due

    documents.down = not documents_up
    handler.dead_letter(json.loads(queue.messages[0]))

    segments = store.manifest("c").segments  # type: ignore[union-attr]
    assert (len(segments) < MERGE_FACTOR) is documents_up  # merged on the second chance
    for n in range(MERGE_FACTOR + 1, 2 * MERGE_FACTOR + 1):
        maintainer.add("c", _page(n))
    assert len(queue.messages) == 2  # scheduled again either way


def _unused() -> Any:
    raise AssertionError("not used by a lexical merge")
