"""Chroma adapter over Chroma's HTTP API (v2): one collection per copilot, so no query can
reach another copilot's chunks.

It speaks the REST API directly (urllib3, already loaded by boto3) instead of importing the
``chromadb`` client, whose import alone costs ~1.2 s: on a serverless cold start that is most
of the budget. The contract tests check it against a real Chroma server and against what the
official client reads back.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Collection, Sequence
from typing import Any
from urllib.parse import quote

from copilot.errors import EmbedderMismatchError, UnavailableError
from copilot.knowledge.models import Chunk, Passage
from copilot.ports import KnowledgeIndex

_BATCH = 1000
_TENANT = "default_tenant"
_DATABASE = "default_database"


def collection_name(copilot_id: str) -> str:
    # Chroma names: 3-512 chars of [a-zA-Z0-9._-], alphanumeric at both ends.
    digest = hashlib.sha256(copilot_id.encode()).hexdigest()[:32]
    return f"copilot-{digest}"


class _CollectionGone(Exception):
    """The cached collection id no longer exists (dropped and rebuilt by another process)."""


class ChromaKnowledgeIndex(KnowledgeIndex):
    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        embedder_id: str | None = None,
        timeout: float = 10.0,
        tenant: str = _TENANT,
        database: str = _DATABASE,
    ) -> None:
        import urllib3

        self._base = f"{url.rstrip('/')}/api/v2/tenants/{tenant}/databases/{database}/collections"
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers |= {"Authorization": f"Bearer {token}", "X-Chroma-Token": token}
        self._http = urllib3.PoolManager(
            maxsize=8, timeout=urllib3.Timeout(connect=3.0, read=timeout), retries=False
        )
        self._embedder_id = embedder_id
        self._ids: dict[str, str] = {}
        self._lock = threading.Lock()

    # --- the port -------------------------------------------------------------------------

    def add_chunks(
        self, copilot_id: str, chunks: Sequence[Chunk], embeddings: Sequence[Sequence[float]]
    ) -> None:
        if not chunks:
            return
        self._retrying(copilot_id, lambda: self._upsert(copilot_id, chunks, embeddings))

    def _upsert(
        self, copilot_id: str, chunks: Sequence[Chunk], embeddings: Sequence[Sequence[float]]
    ) -> None:
        cid = self._collection(copilot_id, create=True)
        for start in range(0, len(chunks), _BATCH):
            part = chunks[start : start + _BATCH]
            self._post(
                f"{cid}/upsert",
                {
                    "ids": [c.chunk_id for c in part],
                    "embeddings": [list(map(float, e)) for e in embeddings[start : start + _BATCH]],
                    "documents": [c.text for c in part],
                    "metadatas": [_metadata(c) for c in part],
                },
            )

    def delete_document(
        self, copilot_id: str, doc_key: str, *, keep_version: str | None = None
    ) -> int:
        return int(
            self._retrying(copilot_id, lambda: self._delete(copilot_id, doc_key, keep_version))
        )

    def _delete(self, copilot_id: str, doc_key: str, keep_version: str | None) -> int:
        cid = self._collection(copilot_id, create=False)
        if cid is None:
            return 0
        where: dict[str, Any] = {"doc_key": doc_key}
        if keep_version is not None:
            where = {"$and": [where, {"version": {"$ne": keep_version}}]}
        ids = self._post(f"{cid}/get", {"where": where, "include": []})["ids"]
        if ids:
            self._post(f"{cid}/delete", {"ids": ids})
        return len(ids)

    def query(
        self,
        copilot_id: str,
        embedding: Sequence[float],
        k: int,
        doc_keys: Collection[str] | None = None,
    ) -> list[Passage]:
        return list(
            self._retrying(copilot_id, lambda: self._query(copilot_id, embedding, k, doc_keys))
        )

    def _query(
        self,
        copilot_id: str,
        embedding: Sequence[float],
        k: int,
        doc_keys: Collection[str] | None,
    ) -> list[Passage]:
        cid = self._collection(copilot_id, create=False)
        if cid is None or (doc_keys is not None and not doc_keys):
            return []
        body: dict[str, Any] = {
            "query_embeddings": [list(map(float, embedding))],
            "n_results": k,
            "include": ["documents", "metadatas", "distances"],
        }
        if doc_keys is not None:
            body["where"] = {"doc_key": {"$in": sorted(doc_keys)}}
        result = self._post(f"{cid}/query", body)
        passages = []
        for chunk_id, text, meta, distance in zip(
            result["ids"][0],
            result["documents"][0],
            result["metadatas"][0],
            result["distances"][0],
            strict=True,
        ):
            passages.append(
                Passage(chunk=_chunk(copilot_id, chunk_id, text, meta), score=1.0 - float(distance))
            )
        return passages

    def embedded(
        self, copilot_id: str, chunk_ids: Sequence[str]
    ) -> list[tuple[Chunk, list[float]]]:
        def read() -> list[tuple[Chunk, list[float]]]:
            cid = self._collection(copilot_id, create=False)
            if cid is None or not chunk_ids:
                return []
            page = self._post(
                f"{cid}/get",
                {"ids": list(chunk_ids), "include": ["documents", "metadatas", "embeddings"]},
            )
            return [
                (_chunk(copilot_id, i, t, m), list(map(float, e)))
                for i, t, m, e in zip(
                    page["ids"],
                    page["documents"],
                    page["metadatas"],
                    page["embeddings"],
                    strict=True,
                )
            ]

        return list(self._retrying(copilot_id, read))

    def count(self, copilot_id: str) -> int:
        def count() -> int:
            cid = self._collection(copilot_id, create=False)
            return 0 if cid is None else int(self._request("GET", f"{cid}/count"))

        return int(self._retrying(copilot_id, count))

    def all_chunks(self, copilot_id: str) -> list[Chunk]:
        def read() -> list[Chunk]:
            cid = self._collection(copilot_id, create=False)
            if cid is None:
                return []
            out: list[Chunk] = []
            while True:
                page = self._post(
                    f"{cid}/get",
                    {"include": ["documents", "metadatas"], "limit": _BATCH, "offset": len(out)},
                )
                out.extend(
                    _chunk(copilot_id, i, t, m)
                    for i, t, m in zip(
                        page["ids"], page["documents"], page["metadatas"], strict=True
                    )
                )
                if len(page["ids"]) < _BATCH:
                    return out

        return list(self._retrying(copilot_id, read))

    def drop(self, copilot_id: str) -> None:
        """Delete the copilot's whole collection (re-indexing with another embedder)."""
        with self._lock:
            self._ids.pop(copilot_id, None)
        response = self._http.request(
            "DELETE", f"{self._base}/{collection_name(copilot_id)}", headers=self._headers
        )
        if response.status >= 500:
            raise UnavailableError("the knowledge index is unavailable")

    # --- collections ----------------------------------------------------------------------

    def _retrying(self, copilot_id: str, job: Callable[[], Any]) -> Any:
        try:
            return job()
        except _CollectionGone:
            with self._lock:  # another process dropped it: look it up again, once
                self._ids.pop(copilot_id, None)
        try:
            return job()
        except _CollectionGone as e:
            raise UnavailableError("the knowledge index changed while it was being read") from e

    def _collection(self, copilot_id: str, *, create: bool) -> str | None:
        cached = self._ids.get(copilot_id)
        if cached:
            return cached
        name = collection_name(copilot_id)
        if create:
            body = self._request(
                "POST",
                "",
                {
                    "name": name,
                    "metadata": {
                        "hnsw:space": "cosine",
                        "copilot_id": copilot_id,
                        "embedder": self._embedder_id or "unknown",
                    },
                    "get_or_create": True,
                },
            )
        else:
            body = self._request("GET", quote(name), missing_ok=True)
            if body is None:
                return None
        recorded = (body.get("metadata") or {}).get("embedder")
        if self._embedder_id and recorded and recorded != self._embedder_id:
            raise EmbedderMismatchError(
                f"this copilot's knowledge was indexed with the embedding model '{recorded}', "
                f"but '{self._embedder_id}' is configured: run `copilot reindex --copilot "
                f"{copilot_id}` to rebuild it, or configure '{recorded}' again"
            )
        with self._lock:
            self._ids[copilot_id] = str(body["id"])
        return str(body["id"])

    # --- HTTP -----------------------------------------------------------------------------

    def _post(self, path: str, payload: dict[str, Any]) -> Any:
        return self._request("POST", path, payload)

    def _request(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> Any:
        url = f"{self._base}/{path}" if path else self._base
        try:
            response = self._http.request(
                method,
                url,
                body=json.dumps(payload).encode() if payload is not None else None,
                headers=self._headers,
            )
        except Exception as e:  # urllib3 transport errors: refused, timed out, reset
            raise UnavailableError("the knowledge index is unavailable") from e
        if response.status == 404 and missing_ok:
            return None
        if response.status == 404 and path:
            raise _CollectionGone(path)
        if response.status >= 400:
            raise UnavailableError(
                f"the knowledge index refused the request (HTTP {response.status}): "
                f"{response.data[:200].decode(errors='replace')}"
            )
        return json.loads(response.data) if response.data else None


def _metadata(chunk: Chunk) -> dict[str, Any]:
    return {
        "doc_key": chunk.doc_key,
        "position": chunk.position,
        "title": chunk.title,
        "section": chunk.section or "",
        "page": chunk.page or 0,
        "url": chunk.url or "",
        "version": chunk.version or "",
        "heading_vector": chunk.heading_vector or "",
        "rows": chunk.rows,
        "row_vectors": chunk.row_vectors or "",
    }


def _chunk(copilot_id: str, chunk_id: str, text: str, meta: dict[str, Any]) -> Chunk:
    return Chunk(
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
        heading_vector=str(meta.get("heading_vector") or "") or None,
        rows=int(meta.get("rows") or 0),
        row_vectors=str(meta.get("row_vectors") or "") or None,
    )
