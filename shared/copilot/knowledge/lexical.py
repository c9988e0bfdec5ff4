"""The lexical side of retrieval: a BM25 index over a copilot's chunks.

The index is a snapshot kept in managed storage (S3, pointed to from DynamoDB), rebuilt from
the vector store's chunks after documents change, so it answers from the same chunks as the
dense side; readers filter both by each document's live version.
"""

from __future__ import annotations

import gzip
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from copilot.knowledge.models import Chunk, title_path
from copilot.text import analyze

K1 = 1.2
B = 0.75
FORMAT = 1


@lru_cache(maxsize=256)
def _query_terms(query: str) -> frozenset[str]:
    return frozenset(analyze(query))


def chunk_text_for_index(chunk: Chunk) -> str:
    """Title and section path count as text of the chunk: they name what it is about."""
    return f"{title_path(chunk.title, chunk.section)}\n{chunk.text}"


@dataclass
class LexicalHit:
    chunk: Chunk
    score: float


@dataclass
class LexicalIndex:
    chunks: list[Chunk]
    lengths: list[int]
    postings: dict[str, list[tuple[int, int]]]  # term -> [(chunk number, term frequency)]
    avg_length: float = 0.0
    generation: int = 0
    _idf: dict[str, float] = field(default_factory=dict, repr=False)
    _ids: set[str] | None = field(default=None, repr=False)
    _terms: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)
    # What copilot.knowledge.subjects read from this snapshot (built once per snapshot).
    derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, chunks: Sequence[Chunk], generation: int = 0) -> LexicalIndex:
        postings: dict[str, list[tuple[int, int]]] = {}
        lengths = []
        for number, chunk in enumerate(chunks):
            terms = analyze(chunk_text_for_index(chunk))
            lengths.append(len(terms))
            for term, tf in Counter(terms).items():
                postings.setdefault(term, []).append((number, tf))
        avg = sum(lengths) / len(lengths) if lengths else 0.0
        return cls(list(chunks), lengths, postings, avg, generation)

    def __len__(self) -> int:
        return len(self.chunks)

    def idf(self, term: str) -> float:
        cached = self._idf.get(term)
        if cached is None:
            df = len(self.postings.get(term, ()))
            n = len(self.chunks)
            cached = math.log(1 + (n - df + 0.5) / (df + 0.5))
            self._idf[term] = cached
        return cached

    def df(self, term: str) -> int:
        """In how many chunks the (analysed) term occurs."""
        return len(self.postings.get(term, ()))

    def search(
        self, query: str, k: int, keep: Callable[[Chunk], bool] | None = None
    ) -> list[LexicalHit]:
        """The ``k`` best chunks by BM25 (of those ``keep`` keeps)."""
        scores: dict[int, float] = {}
        for term in set(analyze(query)):
            idf = self.idf(term)
            for number, tf in self.postings.get(term, ()):
                norm = K1 * (1 - B + B * self.lengths[number] / (self.avg_length or 1))
                scores[number] = scores.get(number, 0.0) + idf * tf * (K1 + 1) / (tf + norm)
        ranked = sorted(scores.items(), key=lambda item: -item[1])
        if keep is not None:
            ranked = [(n, s) for n, s in ranked if keep(self.chunks[n])]
        return [LexicalHit(self.chunks[n], s) for n, s in ranked[:k]]

    def contains(self, chunk_id: str) -> bool:
        if self._ids is None:
            self._ids = {c.chunk_id for c in self.chunks}
        return chunk_id in self._ids

    def score(self, query: str, text: str) -> float:
        """BM25 of a text that is not (yet) in the snapshot, with the snapshot's statistics."""
        terms = Counter(analyze(text))
        length = sum(terms.values())
        norm = K1 * (1 - B + B * length / (self.avg_length or 1))
        return sum(
            self.idf(t) * terms[t] * (K1 + 1) / (terms[t] + norm)
            for t in set(analyze(query))
            if terms[t]
        )

    def coverage(self, query: str, text: str, ignore: frozenset[str] = frozenset()) -> float:
        """Share of the query's IDF mass whose terms occur in ``text`` (0..1), leaving out
        the ``ignore``d terms."""
        return self._coverage(query, set(analyze(text)), ignore)

    def chunk_coverage(self, query: str, chunk: Chunk) -> float:
        """``coverage`` of a chunk's indexed text."""
        return self._coverage(query, self.chunk_terms(chunk))

    def chunk_terms(self, chunk: Chunk) -> frozenset[str]:
        """The analysed terms of a chunk's indexed text, once per snapshot (chunks newer
        than the snapshot too)."""
        terms = self._terms.get(chunk.chunk_id)
        if terms is None:
            terms = self._terms[chunk.chunk_id] = frozenset(analyze(chunk_text_for_index(chunk)))
        return terms

    def _coverage(
        self, query: str, present: set[str] | frozenset[str], ignore: frozenset[str] = frozenset()
    ) -> float:
        terms = _query_terms(query) - ignore
        if not terms:
            return 0.0
        total = sum(self.idf(t) for t in terms)
        return sum(self.idf(t) for t in terms if t in present) / total if total else 0.0

    # --- snapshot (de)serialization: gzip'd JSON, no pickle ----------------------------------

    def dumps(self) -> bytes:
        payload = {
            "format": FORMAT,
            "generation": self.generation,
            # Heading and row vectors stay in the vector store: the snapshot is read on every
            # cold start.
            "chunks": [
                c.model_dump(mode="json", exclude={"heading_vector", "row_vectors"})
                for c in self.chunks
            ],
            "lengths": self.lengths,
            "postings": self.postings,
            "avg_length": self.avg_length,
        }
        return gzip.compress(json.dumps(payload, separators=(",", ":")).encode(), compresslevel=5)

    @classmethod
    def loads(cls, data: bytes) -> LexicalIndex:
        payload = json.loads(gzip.decompress(data))
        if payload.get("format") != FORMAT:
            raise ValueError(f"unknown lexical index format {payload.get('format')!r}")
        return cls(
            chunks=[Chunk.model_validate(c) for c in payload["chunks"]],
            lengths=payload["lengths"],
            postings={t: [(n, tf) for n, tf in p] for t, p in payload["postings"].items()},
            avg_length=payload["avg_length"],
            generation=payload["generation"],
        )
