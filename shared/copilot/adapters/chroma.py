"""Chroma adapter: one collection per copilot, so no query can reach another copilot's chunks."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

from copilot.errors import UnavailableError
from copilot.models import Chunk, Passage
from copilot.ports import KnowledgeIndex


def collection_name(copilot_id: str) -> str:
    # Chroma names: 3-512 chars of [a-zA-Z0-9._-], alphanumeric at both ends.
    digest = hashlib.sha256(copilot_id.encode()).hexdigest()[:32]
    return f"copilot-{digest}"


def chroma_http_client(url: str, token: str | None = None) -> Any:
    import chromadb  # heavy (~0.8 s): only when the index is first used

    parsed = urlparse(url)
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        return chromadb.HttpClient(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or (443 if parsed.scheme == "https" else 8000),
            ssl=parsed.scheme == "https",
            headers=headers,
            settings=chromadb.Settings(anonymized_telemetry=False),
        )
    except Exception as e:  # the client checks the server at construction
        raise UnavailableError("the knowledge index is unavailable") from e


_BATCH = 1000


class ChromaKnowledgeIndex(KnowledgeIndex):
    def __init__(self, client: Any) -> None:
        self._client = client
        self._collections: dict[str, Any] = {}

    def _collection(self, copilot_id: str) -> Any:
        collection = self._collections.get(copilot_id)
        if collection is None:
            try:
                collection = self._client.get_or_create_collection(
                    collection_name(copilot_id),
                    metadata={"hnsw:space": "cosine", "copilot_id": copilot_id},
                    embedding_function=None,
                )
            except Exception as e:  # chromadb raises assorted transport errors
                raise UnavailableError("the knowledge index is unavailable") from e
            self._collections[copilot_id] = collection
        return collection

    def add_chunks(
        self,
        copilot_id: str,
        chunks: Sequence[Chunk],
        embeddings: Sequence[Sequence[float]],
    ) -> None:
        if not chunks:
            return
        collection = self._collection(copilot_id)
        try:
            for start in range(0, len(chunks), _BATCH):
                part = chunks[start : start + _BATCH]
                collection.upsert(
                    ids=[c.chunk_id for c in part],
                    embeddings=[list(map(float, e)) for e in embeddings[start : start + _BATCH]],
                    documents=[c.text for c in part],
                    metadatas=[_metadata(c) for c in part],
                )
        except Exception as e:
            raise UnavailableError("the knowledge index is unavailable") from e

    def delete_document(
        self, copilot_id: str, doc_key: str, *, keep_version: str | None = None
    ) -> int:
        collection = self._collection(copilot_id)
        where: dict[str, Any] = {"doc_key": doc_key}
        if keep_version is not None:
            where = {"$and": [where, {"version": {"$ne": keep_version}}]}
        try:
            ids = collection.get(where=where, include=[])["ids"]
            if ids:
                collection.delete(ids=ids)
        except Exception as e:
            raise UnavailableError("the knowledge index is unavailable") from e
        return len(ids)

    def query(self, copilot_id: str, embedding: Sequence[float], k: int) -> list[Passage]:
        collection = self._collection(copilot_id)
        try:
            result = collection.query(
                query_embeddings=[list(map(float, embedding))],
                n_results=k,
                include=["documents", "metadatas", "distances"],
            )
        except Exception as e:
            raise UnavailableError("the knowledge index is unavailable") from e
        passages = []
        for chunk_id, text, meta, distance in zip(
            result["ids"][0],
            result["documents"][0],
            result["metadatas"][0],
            result["distances"][0],
            strict=True,
        ):
            chunk = Chunk(
                chunk_id=chunk_id,
                copilot_id=copilot_id,
                doc_key=str(meta["doc_key"]),
                position=int(meta["position"]),
                text=text,
                title=str(meta["title"]),
                section=str(meta["section"]) or None,
                page=int(meta["page"]) if meta.get("page") else None,
                url=str(meta.get("url") or "") or None,
                version=str(meta["version"]) or None,
            )
            passages.append(Passage(chunk=chunk, score=1.0 - float(distance)))
        return passages

    def count(self, copilot_id: str) -> int:
        try:
            return int(self._collection(copilot_id).count())
        except Exception as e:
            raise UnavailableError("the knowledge index is unavailable") from e


def _metadata(chunk: Chunk) -> dict[str, Any]:
    return {
        "doc_key": chunk.doc_key,
        "position": chunk.position,
        "title": chunk.title,
        "section": chunk.section or "",
        "page": chunk.page or 0,
        "url": chunk.url or "",
        "version": chunk.version or "",
    }
