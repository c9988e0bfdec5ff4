"""The lexical side of retrieval: BM25 over a copilot's chunks, kept in segments.

A copilot's lexical index is a set of immutable **segments** in managed storage (S3, listed by
a manifest in DynamoDB; copilot.knowledge.lexical_snapshots). The ingest batch that indexes
some documents writes one segment with their chunks' terms; merges of small segments into
bigger ones run in the background. A change costs in proportion to the change, and a reader
fetches only the segments it has not seen.

Each segment lists its documents with a sequence number; where several segments name the same
document, the highest number wins and the others' chunks of it are dead (a segment can also
name a document with no version: it was removed). The :class:`LexicalIndex` that readers
search merges the segments at read time, with term statistics over the live chunks only, so
it scores exactly as one index built from those chunks would. Readers still filter hits by
each document's live version (the document store is the source of truth), as the dense side.

Segments hold no chunk text (the vector store has it; a hit's chunk is read back from there),
so a chat process's memory and cold-start load stay small at 100,000 chunks: terms and
postings as numpy arrays, chunk ids, titles and section names.
"""

from __future__ import annotations

import heapq
import json
import math
import struct
import zlib
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from copilot.knowledge.models import Chunk, title_path
from copilot.text import analyze

if TYPE_CHECKING:
    import numpy as np

K1 = 1.2
B = 0.75
FORMAT = 2
_MAGIC = b"CPLXSEG2"
_ARRAYS = ("doc_of", "positions", "lengths", "offsets", "post_chunks", "post_tfs")
_DTYPES = {
    "doc_of": "<i4",
    "positions": "<i4",
    "lengths": "<i4",
    "offsets": "<i8",
    "post_chunks": "<i4",
    "post_tfs": "<i4",
}


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


@dataclass(frozen=True)
class DocEntry:
    """A document as a segment names it: its version (None: removed) and sequence number."""

    doc_key: str
    version: str | None
    seq: int
    title: str = ""


class Segment:
    """An immutable part of a copilot's lexical index: some documents' chunks and their terms
    (postings by term: chunk numbers and term frequencies, as flat arrays)."""

    def __init__(
        self,
        docs: list[DocEntry],
        ids: list[str],
        sections: list[str | None],
        terms: list[str],
        arrays: dict[str, np.ndarray],
    ) -> None:
        self.docs = docs
        self.ids = ids
        self.sections = sections
        self.terms = terms
        self.doc_of = arrays["doc_of"]
        self.positions = arrays["positions"]
        self.lengths = arrays["lengths"]
        self.offsets = arrays["offsets"]
        self.post_chunks = arrays["post_chunks"]
        self.post_tfs = arrays["post_tfs"]
        self._term_numbers: dict[str, int] | None = None
        self._doc_numbers: dict[str, int] | None = None

    def doc_number(self, doc_key: str) -> int | None:
        """The document's number in this segment (its entry in ``docs``), or None."""
        if self._doc_numbers is None:
            self._doc_numbers = {d.doc_key: n for n, d in enumerate(self.docs)}
        return self._doc_numbers.get(doc_key)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(cls, chunks: Sequence[Chunk], seq: int, removed: Iterable[str] = ()) -> Segment:
        """A segment of these chunks (their documents at sequence ``seq``), naming the
        ``removed`` documents as removed."""
        import numpy as np

        docs: list[DocEntry] = []
        doc_numbers: dict[str, int] = {}
        per_chunk_terms: list[Counter[str]] = []
        doc_of, positions, lengths = [], [], []
        for chunk in chunks:
            number = doc_numbers.get(chunk.doc_key)
            if number is None:
                number = doc_numbers[chunk.doc_key] = len(docs)
                docs.append(DocEntry(chunk.doc_key, chunk.version or "", seq, chunk.title))
            terms = analyze(chunk_text_for_index(chunk))
            per_chunk_terms.append(Counter(terms))
            doc_of.append(number)
            positions.append(chunk.position)
            lengths.append(len(terms))
        for doc_key in removed:
            if doc_key not in doc_numbers:
                doc_numbers[doc_key] = len(docs)
                docs.append(DocEntry(doc_key, None, seq))
        postings: dict[str, list[tuple[int, int]]] = {}
        for number, counts in enumerate(per_chunk_terms):
            for term, tf in counts.items():
                postings.setdefault(term, []).append((number, tf))
        terms_sorted = sorted(postings)
        offsets = [0]
        flat_chunks: list[int] = []
        flat_tfs: list[int] = []
        for term in terms_sorted:
            for number, tf in postings[term]:
                flat_chunks.append(number)
                flat_tfs.append(tf)
            offsets.append(len(flat_chunks))
        arrays: dict[str, np.ndarray] = {
            "doc_of": np.asarray(doc_of, dtype=np.int32),
            "positions": np.asarray(positions, dtype=np.int32),
            "lengths": np.asarray(lengths, dtype=np.int32),
            "offsets": np.asarray(offsets, dtype=np.int64),
            "post_chunks": np.asarray(flat_chunks, dtype=np.int32),
            "post_tfs": np.asarray(flat_tfs, dtype=np.int32),
        }
        return cls(
            docs,
            [c.chunk_id for c in chunks],
            [c.section for c in chunks],
            terms_sorted,
            arrays,
        )

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Chunk numbers and term frequencies of the term's postings, or None."""
        if self._term_numbers is None:
            self._term_numbers = {t: n for n, t in enumerate(self.terms)}
        number = self._term_numbers.get(term)
        if number is None:
            return None
        start, end = int(self.offsets[number]), int(self.offsets[number + 1])
        return self.post_chunks[start:end], self.post_tfs[start:end]

    # --- (de)serialization: a JSON header and raw little-endian arrays, no pickle -----------

    def dumps(self) -> bytes:
        header = {
            "format": FORMAT,
            "docs": [[d.doc_key, d.version, d.seq, d.title] for d in self.docs],
            "ids": self.ids,
            "sections": self.sections,
            "terms": self.terms,
            "arrays": {name: len(getattr(self, name)) for name in _ARRAYS},
        }
        head = json.dumps(header, separators=(",", ":")).encode()
        body = b"".join(getattr(self, name).astype(_DTYPES[name]).tobytes() for name in _ARRAYS)
        return _MAGIC + zlib.compress(struct.pack("<Q", len(head)) + head + body, 3)

    @classmethod
    def loads(cls, data: bytes) -> Segment:
        import numpy as np

        if not data.startswith(_MAGIC):
            raise ValueError("not a lexical index segment (unknown format)")
        raw = zlib.decompress(data[len(_MAGIC) :])
        (head_len,) = struct.unpack_from("<Q", raw)
        header = json.loads(raw[8 : 8 + head_len])
        if header.get("format") != FORMAT:
            raise ValueError(f"unknown lexical segment format {header.get('format')!r}")
        arrays: dict[str, np.ndarray] = {}
        at = 8 + head_len
        for name in _ARRAYS:
            count = int(header["arrays"][name])
            dtype = np.dtype(_DTYPES[name])
            arrays[name] = np.frombuffer(raw, dtype=dtype, count=count, offset=at)
            at += count * dtype.itemsize
        return cls(
            [DocEntry(k, v, int(s), t) for k, v, s, t in header["docs"]],
            header["ids"],
            header["sections"],
            header["terms"],
            arrays,
        )

    @classmethod
    def merge(cls, segments: Sequence[Segment], keep: Callable[[DocEntry], bool]) -> Segment:
        """One segment of the given ones: per document, the entry with the highest sequence
        number among them, its chunks kept if ``keep`` says so (a removed document's entry
        stays, without chunks, while older segments may still hold it)."""
        import numpy as np

        best: dict[str, tuple[int, int, int]] = {}
        for s_no, segment in enumerate(segments):
            for d_no, doc in enumerate(segment.docs):
                current = best.get(doc.doc_key)
                if current is None or doc.seq >= current[0]:
                    best[doc.doc_key] = (doc.seq, s_no, d_no)
        docs: list[DocEntry] = []
        ids: list[str] = []
        sections: list[str | None] = []
        vocabulary: dict[str, int] = {}
        doc_parts, position_parts, length_parts = [], [], []
        term_parts, chunk_parts, tf_parts = [], [], []
        for s_no, segment in enumerate(segments):
            new_doc = np.full(len(segment.docs), -1, dtype=np.int64)
            for d_no, doc in enumerate(segment.docs):
                if best[doc.doc_key][1:] != (s_no, d_no):
                    continue
                alive = doc.version is not None and keep(doc)
                entry = (
                    doc if alive or doc.version is None else DocEntry(doc.doc_key, None, doc.seq)
                )
                docs.append(entry)
                if alive:
                    new_doc[d_no] = len(docs) - 1
            if not len(segment):
                continue
            kept = new_doc[segment.doc_of] >= 0
            renumber = np.cumsum(kept) - 1 + len(ids)
            ids.extend(i for i, k in zip(segment.ids, kept, strict=True) if k)
            sections.extend(s for s, k in zip(segment.sections, kept, strict=True) if k)
            doc_parts.append(new_doc[segment.doc_of][kept])
            position_parts.append(segment.positions[kept])
            length_parts.append(segment.lengths[kept])
            local = np.fromiter(
                (vocabulary.setdefault(t, len(vocabulary)) for t in segment.terms),
                dtype=np.int64,
                count=len(segment.terms),
            )
            term_of = np.repeat(local, np.diff(segment.offsets))
            live = kept[segment.post_chunks]
            term_parts.append(term_of[live])
            chunk_parts.append(renumber[segment.post_chunks[live]])
            tf_parts.append(segment.post_tfs[live])

        def joined(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

        term_ids = joined(term_parts, np.int64)
        chunk_numbers = joined(chunk_parts, np.int32)
        tfs = joined(tf_parts, np.int32)
        # Terms in sorted order; within a term, chunks in order.
        names = sorted(vocabulary)
        rank = np.empty(len(vocabulary), dtype=np.int64)
        for r, name in enumerate(names):
            rank[vocabulary[name]] = r
        term_ranks = rank[term_ids] if len(term_ids) else term_ids
        order = np.lexsort((chunk_numbers, term_ranks))
        term_ranks = term_ranks[order]
        present = np.unique(term_ranks)
        counts = np.bincount(term_ranks, minlength=len(names))[present] if len(names) else present
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        arrays = {
            "doc_of": joined(doc_parts, np.int32),
            "positions": joined(position_parts, np.int32),
            "lengths": joined(length_parts, np.int32),
            "offsets": offsets,
            "post_chunks": chunk_numbers[order],
            "post_tfs": tfs[order],
        }
        return cls(docs, ids, sections, [names[int(r)] for r in present], arrays)


def _best_first(
    scores: np.ndarray, order: np.ndarray, s_no: int
) -> Iterator[tuple[float, int, int]]:
    """A segment's hits in ``order`` as (minus the score, segment, chunk number): the order
    heapq.merge keeps across segments (best score, then segment, then chunk)."""
    for number in order.tolist():
        yield -float(scores[number]), s_no, number


class LexicalIndex:
    """BM25 over the live chunks of a copilot's segments (what a reader searches)."""

    def __init__(
        self, segments: Sequence[Segment], generation: int = 0, copilot_id: str = ""
    ) -> None:
        import numpy as np

        self.segments = list(segments)
        self.generation = generation
        self.copilot_id = copilot_id
        # What copilot.knowledge.subjects read from this index (built once per index).
        self.derived: dict[str, Any] = {}
        self._idf: dict[str, float] = {}
        self._df: dict[str, int] = {}
        self._ids: set[str] | None = None
        self._terms: dict[str, frozenset[str]] = {}
        best: dict[str, tuple[int, int, int]] = {}
        for s_no, segment in enumerate(self.segments):
            for d_no, doc in enumerate(segment.docs):
                current = best.get(doc.doc_key)
                if current is None or doc.seq >= current[0]:
                    best[doc.doc_key] = (doc.seq, s_no, d_no)
        self._alive: list[np.ndarray] = []
        self._live_docs: list[np.ndarray] = []
        total_length = 0
        count = 0
        for s_no, segment in enumerate(self.segments):
            live_doc = np.zeros(len(segment.docs), dtype=bool)
            for d_no, doc in enumerate(segment.docs):
                live_doc[d_no] = doc.version is not None and best[doc.doc_key][1:] == (s_no, d_no)
            alive = live_doc[segment.doc_of] if len(segment) else np.zeros(0, dtype=bool)
            self._alive.append(alive)
            self._live_docs.append(live_doc)
            count += int(alive.sum())
            total_length += int(segment.lengths[alive].sum())
        self._count = count
        self.avg_length = total_length / count if count else 0.0

    @classmethod
    def build(cls, chunks: Sequence[Chunk], generation: int = 0) -> LexicalIndex:
        """One index of these chunks (tests, one-process use)."""
        copilot_id = chunks[0].copilot_id if chunks else ""
        return cls([Segment.build(chunks, 0)], generation, copilot_id)

    def __len__(self) -> int:
        return self._count

    def df(self, term: str) -> int:
        """In how many live chunks the (analysed) term occurs."""
        cached = self._df.get(term)
        if cached is None:
            cached = 0
            for segment, alive in zip(self.segments, self._alive, strict=True):
                found = segment.postings(term)
                if found is not None:
                    cached += int(alive[found[0]].sum())
            self._df[term] = cached
        return cached

    def idf(self, term: str) -> float:
        cached = self._idf.get(term)
        if cached is None:
            df = self.df(term)
            cached = math.log(1 + (self._count - df + 0.5) / (df + 0.5))
            self._idf[term] = cached
        return cached

    def search(
        self, query: str, k: int, keep: Callable[[Chunk], bool] | None = None
    ) -> list[LexicalHit]:
        """The ``k`` best live chunks by BM25 (of those ``keep`` keeps). A hit's chunk has no
        text: the vector store has it."""
        import numpy as np

        terms = sorted(_query_terms(query))
        # Per segment, its hits best first (sorted by numpy); merged lazily across segments,
        # so only the hits looked at become Python objects (a question with a common word
        # scores tens of thousands of chunks at 100k).
        ranked: list[Iterator[tuple[float, int, int]]] = []
        for s_no, (segment, alive) in enumerate(zip(self.segments, self._alive, strict=True)):
            scores = None
            for term in terms:
                postings = segment.postings(term)
                if postings is None:
                    continue
                chunks, tfs = postings
                norm = K1 * (1 - B + B * segment.lengths[chunks] / (self.avg_length or 1))
                if scores is None:
                    scores = np.zeros(len(segment))
                scores[chunks] += self.idf(term) * tfs * (K1 + 1) / (tfs + norm)
            if scores is None:
                continue
            scores[~alive] = 0.0
            hits = np.flatnonzero(scores > 0)
            if len(hits):
                order = hits[np.lexsort((hits, -scores[hits]))]
                ranked.append(_best_first(scores, order, s_no))
        out: list[LexicalHit] = []
        for negative, s_no, number in heapq.merge(*ranked):
            chunk = self._chunk(s_no, number)
            if keep is None or keep(chunk):
                out.append(LexicalHit(chunk, -negative))
                if len(out) >= k:
                    break
        return out

    def _chunk(self, s_no: int, number: int) -> Chunk:
        segment = self.segments[s_no]
        doc = segment.docs[int(segment.doc_of[number])]
        return Chunk(
            chunk_id=segment.ids[number],
            copilot_id=self.copilot_id,
            doc_key=doc.doc_key,
            position=int(segment.positions[number]),
            text="",
            title=doc.title,
            section=segment.sections[number],
            version=doc.version or None,
        )

    def contains(self, chunk_id: str) -> bool:
        if self._ids is None:
            self._ids = {
                i
                for segment, alive in zip(self.segments, self._alive, strict=True)
                for i, live in zip(segment.ids, alive, strict=True)
                if live
            }
        return chunk_id in self._ids

    def titles(self) -> dict[str, str]:
        """Each live document's title."""
        return {
            doc.doc_key: doc.title
            for segment, live in zip(self.segments, self._live_docs, strict=True)
            for doc, is_live in zip(segment.docs, live, strict=True)
            if is_live
        }

    def term_spread(self, term: str, docs: Collection[str]) -> tuple[int, int]:
        """How many live chunks the (analysed) term occurs in: those of the given documents,
        and all of them. Counted with numpy per segment: a common word's postings run to tens
        of thousands of chunks at 100k, and a new chat process reads many while it builds the
        subjects (copilot.knowledge.subjects)."""
        import numpy as np

        inside = total = 0
        for segment, alive in zip(self.segments, self._alive, strict=True):
            found = segment.postings(term)
            if found is None:
                continue
            numbers = found[0][alive[found[0]]]
            total += len(numbers)
            wanted = [n for n in (segment.doc_number(d) for d in docs) if n is not None]
            if wanted and len(numbers):
                inside += int(np.isin(segment.doc_of[numbers], wanted).sum())
        return inside, total

    def score(self, query: str, text: str) -> float:
        """BM25 of a text that is not (yet) in the index, with the index's statistics."""
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
        """The analysed terms of a chunk's indexed text, once per index (chunks newer than
        the index too)."""
        terms = self._terms.get(chunk.chunk_id)
        if terms is None:
            terms = frozenset(analyze(chunk_text_for_index(chunk)))
            if chunk.text:  # not a hit's text-less copy
                self._terms[chunk.chunk_id] = terms
        return terms

    def _coverage(
        self, query: str, present: set[str] | frozenset[str], ignore: frozenset[str] = frozenset()
    ) -> float:
        terms = _query_terms(query) - ignore
        if not terms:
            return 0.0
        total = sum(self.idf(t) for t in terms)
        return sum(self.idf(t) for t in terms if t in present) / total if total else 0.0
