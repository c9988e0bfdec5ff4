"""A new version of a document embeds only the chunks it changed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from langchain_core.embeddings import Embeddings

from copilot.adapters.providers.offline import MiniLMEmbeddings
from copilot.admin.models import CopilotSpec
from copilot.bootstrap import Container
from copilot.config import Settings
from copilot.ingest import service as ingest
from copilot.ingest.service import IngestResult, ObjectEvent
from copilot.knowledge.vectors import unpack, unpack_all
from copilot_dev.fakes import in_memory_container


class CountingEmbeddings(Embeddings):
    """The real default model, counting what it is asked to embed."""

    def __init__(self) -> None:
        self.inner = MiniLMEmbeddings()
        self.texts: list[str] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.texts.extend(texts)
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)


def shop(
    file_name: str,
) -> tuple[CountingEmbeddings, Container, str, Callable[[str], IngestResult]]:
    """A fresh copilot on in-memory stores, and a way to upload a new version of one file."""
    embedder = CountingEmbeddings()
    container = in_memory_container(Settings(bucket="kb"), embedder=embedder)
    copilot_id = container.admin.create(CopilotSpec(name="Shop")).copilot_id
    key = f"{copilot_id}/{file_name}"

    def upload(text: str) -> IngestResult:
        container.blobs.put(key, text.encode())
        return container.ingest.handle(ObjectEvent(bucket="kb", key=key, created=True))

    return embedder, container, copilot_id, upload


V1 = """# Returns

## Window

You can return a bike within 30 days of delivery.

## Refunds

Refunds reach your card within five business days.
"""


def test_an_edit_embeds_only_the_sections_it_changed() -> None:
    embedder, container, copilot_id, upload = shop("returns.md")

    upload(V1)
    # Two chunks, and each chunk's heading (title and section path) once.
    assert sorted(embedder.texts) == sorted(
        [
            "Returns — Window\nYou can return a bike within 30 days of delivery.",
            "Returns — Refunds\nRefunds reach your card within five business days.",
            "Returns — Window",
            "Returns — Refunds",
        ]
    )
    embedder.texts.clear()

    upload(V1.replace("five business days", "three business days"))
    assert len(embedder.texts) == 1 and "three business days" in embedder.texts[0]

    chunks = {c.text: c for c in container.index.all_chunks(copilot_id)}
    assert set(chunks) == {
        "You can return a bike within 30 days of delivery.",
        "Refunds reach your card within three business days.",
    }
    # The unchanged section kept the vector the model gives for its text, under the new id.
    window = chunks["You can return a bike within 30 days of delivery."]
    assert window.version == container.documents.get(copilot_id, "returns.md").version
    reused = container.index.embedded(copilot_id, [window.chunk_id])[0][1]
    fresh = embedder.inner.embed_documents([f"Returns — Window\n{window.text}"])[0]
    assert max(abs(a - b) for a, b in zip(reused, fresh, strict=True)) < 1e-5
    # Its heading's vector came along too (half precision).
    assert window.heading_vector is not None
    heading = embedder.inner.embed_query("Returns — Window")
    assert (
        max(abs(a - b) for a, b in zip(unpack(window.heading_vector), heading, strict=True)) < 1e-3
    )


PRICES = """# Workshop

## Prices

| Service | Price |
|---|---|
| Wheel true | $25 per wheel |
| Basic tune-up | $69 |
"""


def test_table_rows_are_embedded_one_by_one_and_kept_across_edits() -> None:
    embedder, container, copilot_id, upload = shop("prices.md")

    upload(PRICES)
    rows = ["Service: Wheel true; Price: $25 per wheel", "Service: Basic tune-up; Price: $69"]
    assert sorted(embedder.texts) == sorted(
        ["Workshop — Prices\n" + "\n\n".join(rows), "Workshop — Prices", *rows]
    )
    [chunk] = container.index.all_chunks(copilot_id)
    assert chunk.rows == 2 and chunk.row_vectors is not None
    stored = unpack_all(chunk.row_vectors, 384)
    fresh = embedder.inner.embed_documents(rows)
    assert len(stored) == 2
    assert all(
        max(abs(a - b) for a, b in zip(s, f, strict=True)) < 1e-3
        for s, f in zip(stored, fresh, strict=True)
    )
    embedder.texts.clear()

    # A new price: the chunk and that row are embedded again; the other row's vector is kept.
    upload(PRICES.replace("$69", "$75"))
    assert sorted(embedder.texts) == sorted(
        [
            "Workshop — Prices\n" + rows[0] + "\n\nService: Basic tune-up; Price: $75",
            "Service: Basic tune-up; Price: $75",
        ]
    )
    [chunk] = container.index.all_chunks(copilot_id)
    assert chunk.row_vectors is not None
    kept, changed = unpack_all(chunk.row_vectors, 384)
    assert max(abs(a - b) for a, b in zip(kept, fresh[0], strict=True)) < 1e-3
    assert max(abs(a - b) for a, b in zip(changed, fresh[1], strict=True)) > 1e-2


def test_a_big_table_embeds_rows_one_by_one_only_up_to_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ingest, "MAX_ROW_VECTORS", 1)
    embedder, container, copilot_id, upload = shop("prices.md")
    assert upload(PRICES).status == "indexed"
    assert "Service: Wheel true; Price: $25 per wheel" in embedder.texts
    assert "Service: Basic tune-up; Price: $69" not in embedder.texts
    [chunk] = container.index.all_chunks(copilot_id)
    assert chunk.row_vectors is not None and len(unpack_all(chunk.row_vectors, 384)) == 1
