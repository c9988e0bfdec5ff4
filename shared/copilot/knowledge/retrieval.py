"""Hybrid retrieval: dense vectors (the copilot's Chroma collection) fused with BM25 (its
lexical index segments), both filtered to the version each document currently answers from."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from copilot.knowledge.lexical import LexicalHit, LexicalIndex, chunk_text_for_index
from copilot.knowledge.models import Chunk, Utterance
from copilot.knowledge.subjects import Scope
from copilot.knowledge.vectors import cosine, similarities
from copilot.ports import DocumentStore, KnowledgeIndex
from copilot.text import analyze

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

    from copilot.knowledge.lexical_snapshots import LexicalReader

RRF_K = 60


@dataclass(frozen=True)
class RetrievalPolicy:
    k_dense: int = 20
    k_lexical: int = 20
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    refuse_parts: bool = True  # the dense rank counts a chunk's best row or list item


@dataclass
class Candidate:
    chunk: Chunk
    fused: float
    cosine: float | None = None
    bm25: float | None = None
    coverage: float = 0.0  # IDF-weighted share of the query's terms the passage contains
    heading: float | None = None  # dense similarity of the query to the title/section path
    row: float | None = None  # the best dense similarity of the query to one of its table rows


@dataclass
class Retrieval:
    query: str
    query_vector: list[float]
    candidates: list[Candidate]
    lexical: LexicalIndex | None
    # A follow-up as the customer asked it, when the query is condensed with the history.
    asked: str | None = None
    scope: Scope | None = None  # the subjects it was limited to


class HybridRetriever:
    def __init__(
        self,
        index: KnowledgeIndex,
        embedder: Embeddings,
        documents: DocumentStore,
        lexical: LexicalReader | None = None,
        policy: RetrievalPolicy | None = None,
    ) -> None:
        self._index = index
        self._embedder = embedder
        self._documents = documents
        self._lexical = lexical
        self._policy = policy or RetrievalPolicy()

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Texts embedded as passages (sentences whose meaning is weighed)."""
        return self._embedder.embed_documents(texts)

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        """Texts embedded as questions are (for a comparison with a query's vector)."""
        return [self._embedder.embed_query(t) for t in texts]

    def lexical(self, copilot_id: str) -> LexicalIndex | None:
        return self._lexical.get(copilot_id) if self._lexical else None

    def retrieve(self, copilot_id: str, query: str, scope: Scope | None = None) -> Retrieval:
        """With ``scope`` (the subjects the conversation is about), another subject's
        documents are never candidates, and the subjects' own documents are searched on
        their own too, so among thousands of near-identical entries ("Is there free
        wifi?" at 33 hotels) theirs are found."""
        p = self._policy
        vector = self._embedder.embed_query(query)
        dense = self._index.query(copilot_id, vector, p.k_dense)
        lexical = self.lexical(copilot_id)
        lexical_hits = lexical.search(query, p.k_lexical) if lexical else []
        if scope is not None:
            own = self._index.query(copilot_id, vector, p.k_dense, doc_keys=scope.docs)
            seen = {d.chunk.chunk_id for d in own}
            dense = sorted(
                [*own, *(d for d in dense if d.chunk.chunk_id not in seen)], key=lambda d: -d.score
            )
            dense = [d for d in dense if scope.allows(d.chunk.doc_key)][: p.k_dense]
            if lexical is not None:
                lexical_hits = lexical.search(
                    query, p.k_lexical, keep=lambda c: scope.allows(c.doc_key)
                )
        if lexical is not None:
            # Chunks in no segment yet (indexed a moment ago) are scored with the index's
            # statistics, so a new document ranks on both sides at once.
            fresh = [d for d in dense if not lexical.contains(d.chunk.chunk_id)]
            if fresh:
                extra = [
                    LexicalHit(d.chunk, lexical.score(query, chunk_text_for_index(d.chunk)))
                    for d in fresh
                ]
                lexical_hits = sorted(
                    [*lexical_hits, *(h for h in extra if h.score > 0)], key=lambda h: -h.score
                )[: p.k_lexical]

        by_id: dict[str, Candidate] = {}
        for rank, passage in enumerate(dense):
            c = by_id.setdefault(passage.chunk.chunk_id, Candidate(passage.chunk, 0.0))
            c.cosine = passage.score
            c.fused += p.dense_weight / (RRF_K + rank + 1)
        for rank, hit in enumerate(lexical_hits):
            c = by_id.setdefault(hit.chunk.chunk_id, Candidate(hit.chunk, 0.0))
            c.bm25 = hit.score
            c.fused += p.lexical_weight / (RRF_K + rank + 1)

        candidates = sorted(self._live(copilot_id, list(by_id.values())), key=lambda c: -c.fused)
        # Lexical-only hits get their dense similarity too, so confidence is comparable.
        # Their stored vectors are read back: re-embedding them would cost more than the
        # whole rest of the turn with a transformer embedder. (The lexical index's copy of a
        # chunk has neither text nor heading vector; the stored one has both.)
        missing = [c for c in candidates if c.cosine is None]
        if missing:
            stored = {
                chunk.chunk_id: (chunk, v)
                for chunk, v in self._index.embedded(
                    copilot_id, [c.chunk.chunk_id for c in missing]
                )
            }
            for c in missing:
                found = stored.get(c.chunk.chunk_id)
                if found is None:
                    continue  # gone from the vector store: nothing to answer from
                c.chunk, stored_vector = found
                c.cosine = cosine(vector, stored_vector)
            candidates = [c for c in candidates if c.cosine is not None]
        headings = similarities(vector, [c.chunk.heading_vector for c in candidates])
        rows = similarities(vector, [c.chunk.row_vectors for c in candidates])
        # A page's title speaks for the whole page, not for the paragraph before its first
        # section: "Shipping" matches every question about shipping, and its opening lines
        # answer none of them. The title counts for a chunk without a section only on a
        # page without sections (an FAQ entry titled with its question).
        # For the same reason a section's heading ("Warranty of the trailer › Steps") and its
        # list items (embedded with that heading) count only where they match better than the
        # page's title alone (the lead chunk's heading, when it is a candidate): a match on
        # the title is no reason to quote the Steps.
        sectioned = {c.chunk.doc_key for c in candidates if c.chunk.section}
        title: dict[str, float] = {}
        for c, heading, row in zip(candidates, headings, rows, strict=True):
            c.heading, c.row = heading, row
            if not c.chunk.section and c.chunk.doc_key in sectioned:
                if heading is not None:
                    title[c.chunk.doc_key] = max(heading, title.get(c.chunk.doc_key, heading))
                c.heading = None
        for c in candidates:
            lead = title.get(c.chunk.doc_key)
            if not c.chunk.section or lead is None:
                continue
            if c.heading is not None and c.heading <= lead:
                c.heading = None
            if c.row is not None and c.row <= lead:
                c.row = None
        if p.refuse_parts and any(c.row for c in candidates):
            # The dense side ranks a chunk by its best part too (a table row, a list item):
            # "can I return a charged e-bike battery?" is one item of the returns page's
            # exclusions, a middling match for the whole section.
            lexical_rank = {h.chunk.chunk_id: r for r, h in enumerate(lexical_hits)}
            by_dense = sorted(candidates, key=lambda c: -max(c.cosine or 0.0, c.row or 0.0))
            for rank, c in enumerate(by_dense):
                c.fused = p.dense_weight / (RRF_K + rank + 1)
                if c.chunk.chunk_id in lexical_rank:
                    c.fused += p.lexical_weight / (RRF_K + lexical_rank[c.chunk.chunk_id] + 1)
            candidates.sort(key=lambda c: -c.fused)
        for c in candidates:
            c.coverage = (
                lexical.chunk_coverage(query, c.chunk)
                if lexical is not None
                else coverage(None, query, chunk_text_for_index(c.chunk))
            )
        return Retrieval(query, vector, candidates, lexical, scope=scope)

    def _live(self, copilot_id: str, candidates: list[Candidate]) -> list[Candidate]:
        """Only chunks of the version each document currently answers from: while a new
        version is being indexed (or an old one cleaned up) both can sit in an index."""
        if not candidates:
            return []
        keys = sorted({c.chunk.doc_key for c in candidates})
        active = self._documents.active_versions(copilot_id, keys)
        return [c for c in candidates if active.get(c.chunk.doc_key) == c.chunk.version]


def coverage(
    lexical: LexicalIndex | None, query: str, text: str, ignore: frozenset[str] = frozenset()
) -> float:
    if lexical is not None:
        return lexical.coverage(query, text, ignore)
    terms = set(analyze(query)) - ignore  # no lexical index yet: unweighted share of terms
    return len(terms & set(analyze(text))) / len(terms) if terms else 0.0


# --- follow-up questions ------------------------------------------------------------------

_ANAPHORA = re.compile(
    r"\b(it|its|it's|that|this|these|those|they|them|their|theirs|he|she|his|her|there|one|ones|"
    r"same|such|former|latter)\b",
    re.IGNORECASE,
)
_CONTINUATION = re.compile(
    r"^\s*(and|also|what about|how about|what if|then|but|so|or|plus|besides|more|why|how come)\b",
    re.IGNORECASE,
)
FOLLOW_UP_MAX_TERMS = 4


def is_follow_up(question: str) -> bool:
    """A question that leans on the conversation: few content words of its own, a pronoun
    standing for something said before, or an opening like "and what about ..."."""
    terms = analyze(question)
    if len(terms) <= 1:
        return True
    if _CONTINUATION.match(question):
        return True
    return bool(_ANAPHORA.search(question)) and len(terms) <= FOLLOW_UP_MAX_TERMS


History = Callable[[], Sequence[Utterance]]


def condense(question: str, history: History) -> str:
    """A standalone query for retrieval, without an LLM: a follow-up borrows the words of the
    customer's previous question (the topic it continues); a self-contained question stands
    alone, so a change of subject is not dragged back to the old one. History is only read
    for follow-ups."""
    if not is_follow_up(question):
        return question
    previous = previous_question(question, history)
    return f"{previous} {question}" if previous else question


def previous_question(question: str, history: History) -> str | None:
    """The customer's question before this one (the topic a follow-up continues)."""
    previous = [
        m.text for m in history() if m.role == "customer" and m.text.strip() != question.strip()
    ]
    return previous[-1] if previous else None


def last_reply(history: History) -> str | None:
    """What the copilot said last (a follow-up should not be told it again)."""
    said = [m.text for m in history() if m.role == "copilot"]
    return said[-1] if said else None


def remembered(history: History) -> History:
    """``history`` read at most once (it is a store query)."""
    kept: list[Sequence[Utterance]] = []

    def read() -> Sequence[Utterance]:
        if not kept:
            kept.append(history())
        return kept[0]

    return read
