"""Knowledge answers: retrieve the copilot's best passages, compose a cited answer or decline."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from copilot.models import Answer, Citation, Copilot, Message, Passage
from copilot.ports import DocumentStore, KnowledgeIndex
from copilot.text import content_tokens, sentences

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

SNIPPET_CHARS = 240


@dataclass(frozen=True)
class AnswerPolicy:
    k: int = 8
    dense_weight: float = 0.5  # the rest goes to lexical coverage of the question's words
    min_score: float = 0.30  # cosine similarity of the best passage
    min_overlap: float = 0.34  # share of the question's content words found in the passage
    max_sentences: int = 3


class KnowledgeAnswerer:
    """Offline default answer generator: extractive, grounded, cited; no LLM involved."""

    def __init__(
        self,
        index: KnowledgeIndex,
        embedder: Embeddings,
        documents: DocumentStore,
        policy: AnswerPolicy | None = None,
    ) -> None:
        self._index = index
        self._documents = documents
        self._embedder = embedder
        self._policy = policy or AnswerPolicy()

    def retrieve(self, copilot_id: str, question: str) -> tuple[list[float], list[Passage]]:
        query_vector = self._embedder.embed_query(question)
        passages = self._index.query(copilot_id, query_vector, self._policy.k)
        return query_vector, self._served(copilot_id, passages)

    def _served(self, copilot_id: str, passages: list[Passage]) -> list[Passage]:
        """Only chunks of the version each document currently answers from: while a new
        version is being indexed (or an old one cleaned up) both sit in the index."""
        if not passages:
            return passages
        active = self._documents.active_versions(copilot_id, [p.chunk.doc_key for p in passages])
        return [p for p in passages if active.get(p.chunk.doc_key) == p.chunk.version]

    def answer(
        self, copilot: Copilot, question: str, history: Sequence[Message] = ()
    ) -> Answer | None:
        copilot_id = copilot.copilot_id
        query_vector, passages = self.retrieve(copilot_id, question)
        q_terms = set(content_tokens(question))
        policy = self._policy
        ranked = []
        for p in passages:
            overlap = _overlap(q_terms, _passage_terms(p))
            if p.score >= policy.min_score and overlap >= policy.min_overlap:
                combined = policy.dense_weight * p.score + (1 - policy.dense_weight) * overlap
                ranked.append((combined, p))
        if not ranked:
            return None
        best = max(ranked, key=lambda item: item[0])[1]
        picked = self._best_sentences(query_vector, q_terms, best.chunk.text)
        citations = [_citation(1, best)]
        text = " ".join(picked) + " [1]"
        return Answer(text=text + "\n\n" + render_sources(citations), citations=citations)

    def _best_sentences(
        self, query_vector: Sequence[float], q_terms: set[str], passage: str
    ) -> list[str]:
        candidates = [s for s in sentences(passage) if len(s) > 2]
        if not candidates:
            return [passage.strip()]
        vectors = self._embedder.embed_documents(candidates)
        scores = [
            0.5 * _cos(query_vector, v) + 0.5 * _overlap(q_terms, set(content_tokens(s)))
            for s, v in zip(candidates, vectors, strict=True)
        ]
        top = max(range(len(candidates)), key=scores.__getitem__)
        keep = {top}
        # Extend with the following sentences while they still carry the answer (steps, details).
        for i in range(top + 1, min(len(candidates), top + self._policy.max_sentences)):
            if scores[i] >= 0.5 * scores[top] or candidates[top].endswith(":"):
                keep.add(i)
            else:
                break
        return [candidates[i] for i in sorted(keep)]


def render_sources(citations: Sequence[Citation]) -> str:
    lines = ["Sources:"]
    for c in citations:
        where = f"{c.title} › {c.section}" if c.section else c.title
        if c.page:
            where += f", p. {c.page}"
        lines.append(f"[{c.index}] {where} ({c.url or c.source})")
    return "\n".join(lines)


def _citation(index: int, passage: Passage) -> Citation:
    chunk = passage.chunk
    snippet = " ".join(chunk.text.split())
    if len(snippet) > SNIPPET_CHARS:
        snippet = snippet[: SNIPPET_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return Citation(
        index=index,
        title=chunk.title,
        source=chunk.doc_key,
        section=chunk.section,
        page=chunk.page,
        url=chunk.url,
        snippet=snippet,
    )


def _passage_terms(passage: Passage) -> set[str]:
    chunk = passage.chunk
    return set(content_tokens(f"{chunk.title} {chunk.section or ''} {chunk.text}"))


def _overlap(question_terms: set[str], other: set[str]) -> float:
    if not question_terms:
        return 0.0
    return len(question_terms & other) / len(question_terms)


def _cos(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    return dot / (na * nb) if na and nb else 0.0
