"""The KnowledgeIndex contract against the in-memory fake and a real Chroma server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from copilot.adapters.chroma import (
    ChromaKnowledgeIndex,
    EmbedderMismatchError,
    collection_name,
)
from copilot.adapters.providers.offline import WordLlamaEmbeddings
from copilot.ingest.chunking import chunk_document
from copilot.knowledge.vectors import pack, pack_all
from copilot_dev.fakes import MemoryKnowledgeIndex

pytestmark = pytest.mark.integration

EMBEDDER = WordLlamaEmbeddings()


@pytest.fixture(params=["memory", "chroma"])
def index(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryKnowledgeIndex()
    else:
        yield ChromaKnowledgeIndex(
            request.getfixturevalue("chroma_url"), embedder_id="test-embedder"
        )


def put(index: Any, copilot_id: str, doc_key: str, text: str, version: str = "v1") -> int:
    chunks = chunk_document(copilot_id, doc_key, text.encode(), version)
    index.add_chunks(copilot_id, chunks, EMBEDDER.embed_documents([c.text for c in chunks]))
    index.delete_document(copilot_id, doc_key, keep_version=version)
    return len(chunks)


RETURNS = "# Returns\n\n## Window\n\nReturn bikes within 30 days.\n\n## Refunds\n\nRefunds take five days."
SHIPPING = "# Shipping\n\nStandard shipping takes 3 to 5 business days."


def test_query_ranks_the_relevant_chunk_first(index: Any) -> None:
    copilot = uuid.uuid4().hex
    put(index, copilot, "returns.md", RETURNS)
    put(index, copilot, "shipping.md", SHIPPING)
    hits = index.query(copilot, EMBEDDER.embed_query("how long does shipping take"), 3)
    assert hits[0].chunk.doc_key == "shipping.md"
    assert hits[0].chunk.title == "Shipping"
    assert 0 < hits[0].score <= 1.0001
    assert hits == sorted(hits, key=lambda h: -h.score)
    assert index.count(copilot) == 3


def test_a_query_keeps_to_the_documents_it_is_given(index: Any) -> None:
    """What a conversation's subject scope asks for: the nearest chunks of some documents,
    however near another document's chunks are."""
    copilot = uuid.uuid4().hex
    put(index, copilot, "returns.md", RETURNS)
    put(index, copilot, "shipping.md", SHIPPING)
    question = EMBEDDER.embed_query("how long does shipping take")
    hits = index.query(copilot, question, 3, doc_keys={"returns.md"})
    assert {h.chunk.doc_key for h in hits} == {"returns.md"} and len(hits) == 2
    assert hits == sorted(hits, key=lambda h: -h.score)
    assert index.query(copilot, question, 3, doc_keys=set()) == []
    assert index.query(copilot, question, 3, doc_keys={"gone.md"}) == []


def test_stored_chunks_come_back_with_their_vectors_heading_and_row_vectors(index: Any) -> None:
    copilot = uuid.uuid4().hex
    chunks = chunk_document(copilot, "returns.md", RETURNS.encode(), "v1")
    heading = pack(EMBEDDER.embed_query("Returns"))
    rows = pack_all(EMBEDDER.embed_documents(["Item: Bike; Window: 30 days", "Item: Helmet"]))
    chunks = [
        c.model_copy(update={"heading_vector": heading, "rows": 2, "row_vectors": rows})
        for c in chunks
    ]
    vectors = EMBEDDER.embed_documents([c.text for c in chunks])
    index.add_chunks(copilot, chunks, vectors)
    # By chunk id: a new version reuses the vectors of unchanged chunks, and a lexical-only
    # hit is scored without re-embedding it.
    [(chunk, vector)] = index.embedded(copilot, [chunks[1].chunk_id, "no-such-chunk"])
    assert chunk == chunks[1]
    assert chunk.heading_vector == heading
    assert chunk.rows == 2 and chunk.row_vectors == rows
    assert vector == pytest.approx(vectors[1], abs=1e-5)
    assert index.embedded(uuid.uuid4().hex, [chunks[1].chunk_id]) == []
    # And from a query.
    hits = index.query(copilot, vectors[0], 1)
    assert hits[0].chunk.heading_vector == heading
    assert hits[0].chunk.row_vectors == rows


def test_both_versions_coexist_until_the_old_one_is_deleted(index: Any) -> None:
    copilot = uuid.uuid4().hex
    v1 = chunk_document(copilot, "returns.md", RETURNS.encode(), "v1")
    v2 = chunk_document(copilot, "returns.md", b"# Returns\n\nReturns are not accepted.", "v2")
    for chunks in (v1, v2):
        index.add_chunks(copilot, chunks, EMBEDDER.embed_documents([c.text for c in chunks]))
    assert index.count(copilot) == 3
    assert index.delete_document(copilot, "returns.md", keep_version="v2") == 2
    assert {h.chunk.version for h in index.query(copilot, EMBEDDER.embed_query("returns"), 10)} == {
        "v2"
    }


def test_replacing_a_document_leaves_only_the_new_version(index: Any) -> None:
    copilot = uuid.uuid4().hex
    put(index, copilot, "returns.md", RETURNS, "v1")
    put(index, copilot, "returns.md", "# Returns\n\nReturns are not accepted.", "v2")
    hits = index.query(copilot, EMBEDDER.embed_query("returns"), 10)
    assert [(h.chunk.version, h.chunk.text) for h in hits] == [("v2", "Returns are not accepted.")]
    # The same version again is idempotent.
    put(index, copilot, "returns.md", "# Returns\n\nReturns are not accepted.", "v2")
    assert index.count(copilot) == 1


def test_delete_removes_every_chunk_of_the_document(index: Any) -> None:
    copilot = uuid.uuid4().hex
    put(index, copilot, "returns.md", RETURNS)
    put(index, copilot, "shipping.md", SHIPPING)
    assert index.delete_document(copilot, "returns.md") == 2
    assert {h.chunk.doc_key for h in index.query(copilot, EMBEDDER.embed_query("refund"), 10)} == {
        "shipping.md"
    }
    assert index.delete_document(copilot, "returns.md") == 0


def test_copilots_never_see_each_others_knowledge(index: Any) -> None:
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    put(index, a, "secret.md", "# Secret\n\nThe launch code is 1234.")
    put(index, b, "public.md", "# Public\n\nWe sell bikes.")
    hits = index.query(b, EMBEDDER.embed_query("launch code"), 10)
    assert {h.chunk.copilot_id for h in hits} == {b}
    assert all("1234" not in h.chunk.text for h in hits)


def test_the_official_chroma_client_reads_what_the_adapter_wrote(chroma_url: str) -> None:
    """The adapter speaks Chroma's REST API itself (cold start): check it against chromadb."""
    import chromadb

    index = ChromaKnowledgeIndex(chroma_url, embedder_id="test-embedder")
    copilot = uuid.uuid4().hex
    put(index, copilot, "returns.md", RETURNS)
    host, port = chroma_url.rsplit(":", 1)
    client = chromadb.HttpClient(host=host.split("//")[1], port=int(port))
    collection = client.get_collection(collection_name(copilot))
    assert collection.metadata["hnsw:space"] == "cosine"
    assert collection.metadata["embedder"] == "test-embedder"
    got = collection.get(include=["documents", "metadatas"])
    assert sorted(got["documents"]) == ["Refunds take five days.", "Return bikes within 30 days."]
    assert {m["doc_key"] for m in got["metadatas"]} == {"returns.md"}
    hits = collection.query(query_embeddings=[EMBEDDER.embed_query("refund")], n_results=1)
    ours = index.query(copilot, EMBEDDER.embed_query("refund"), 1)
    assert hits["ids"][0] == [ours[0].chunk.chunk_id]


def test_querying_with_another_embedding_model_is_refused(chroma_url: str) -> None:
    copilot = uuid.uuid4().hex
    put(ChromaKnowledgeIndex(chroma_url, embedder_id="model-a"), copilot, "returns.md", RETURNS)
    other = ChromaKnowledgeIndex(chroma_url, embedder_id="model-b")
    with pytest.raises(EmbedderMismatchError, match="reindex"):
        other.query(copilot, EMBEDDER.embed_query("refund"), 3)
    other.drop(copilot)
    assert other.count(copilot) == 0


def test_unknown_copilot_has_no_knowledge(index: Any) -> None:
    assert index.query(uuid.uuid4().hex, EMBEDDER.embed_query("anything"), 3) == []


def test_a_collection_rebuilt_by_another_process_is_found_again(chroma_url: str) -> None:
    copilot = uuid.uuid4().hex
    reader = ChromaKnowledgeIndex(chroma_url, embedder_id="m")
    writer = ChromaKnowledgeIndex(chroma_url, embedder_id="m")
    put(writer, copilot, "returns.md", RETURNS)
    assert len(reader.query(copilot, EMBEDDER.embed_query("refund"), 5)) == 2  # caches the id
    writer.drop(copilot)
    assert reader.query(copilot, EMBEDDER.embed_query("refund"), 5) == []
    put(writer, copilot, "shipping.md", SHIPPING)
    hits = reader.query(copilot, EMBEDDER.embed_query("shipping"), 5)
    assert [h.chunk.doc_key for h in hits] == ["shipping.md"]
