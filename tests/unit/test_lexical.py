from __future__ import annotations

import json
from typing import Any

import pytest

from copilot.entrypoints.ingest import IngestHandler
from copilot.errors import UnavailableError
from copilot.ingest.chunking import chunk_document
from copilot.knowledge.lexical import LexicalIndex
from copilot.knowledge.lexical_snapshots import LexicalMaintainer
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


def test_snapshot_round_trip_keeps_scores() -> None:
    index = build()
    again = LexicalIndex.loads(index.dumps())
    assert again.generation == 3
    assert [(h.chunk.chunk_id, round(h.score, 6)) for h in again.search("refund window", 3)] == [
        (h.chunk.chunk_id, round(h.score, 6)) for h in index.search("refund window", 3)
    ]


def test_text_outside_the_snapshot_is_scored_like_indexed_text() -> None:
    index = build()
    chunk = next(c for c in index.chunks if c.doc_key == "returns.md")
    assert index.contains(chunk.chunk_id) and not index.contains("other")
    indexed = next(
        h.score for h in index.search("refund window", 3) if h.chunk.chunk_id == chunk.chunk_id
    )
    from copilot.knowledge.lexical import chunk_text_for_index

    assert abs(index.score("refund window", chunk_text_for_index(chunk)) - indexed) < 1e-9


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


class _DownIndex(MemoryKnowledgeIndex):
    def all_chunks(self, copilot_id: str) -> list[Chunk]:
        raise UnavailableError("the knowledge index is unavailable")


@pytest.mark.parametrize("index_up", [False, True])
def test_a_dead_lettered_rebuild_never_leaves_the_copilot_unschedulable(index_up: bool) -> None:
    """A rebuild the ingest queue gave up on is tried once more by the dead-letter consumer;
    if it fails again, the next change still schedules a rebuild."""
    store, queue = MemoryLexicalStore(), MemoryEventQueue()
    index = MemoryKnowledgeIndex() if index_up else _DownIndex()
    maintainer = LexicalMaintainer(store, lambda: index, MemoryDocumentStore(), lambda: queue)
    handler = IngestHandler(_unused, lambda: maintainer, _unused)
    maintainer.changed("c1")
    maintainer.changed("c1")
    assert len(queue.messages) == 1  # one rebuild scheduled for both changes

    handler.dead_letter(json.loads(queue.messages[0]))

    assert (store.pointer("c1") is not None) is index_up  # rebuilt on the second chance
    maintainer.changed("c1")
    assert len(queue.messages) == 2  # scheduled again either way


def _unused() -> Any:
    raise AssertionError("not used by a lexical rebuild")
