"""Pydantic models of knowledge: requests, responses and stored records."""

from __future__ import annotations

import hashlib
from typing import Protocol

from pydantic import BaseModel, Field

from copilot.text import LIST_MARKER as LIST_ITEM
from copilot.text import split_paragraphs

TITLE_PATH_SEPARATOR = " › "
MAX_ANSWER_PART = 400  # characters of an FAQ answer embedded on its own


def chunk_id(copilot_id: str, doc_key: str, position: int, version: str | None) -> str:
    """A chunk's id: its copilot, document, position and the document's version."""
    raw = f"{copilot_id}\x1f{doc_key}\x1f{position}\x1f{version or ''}"
    return hashlib.sha256(raw.encode()).hexdigest()[:40]


def title_path(*parts: str | None) -> str:
    """A title and section path as one line ("Returns › Refund timing"): a chunk's section
    path, the heading BM25 counts as the chunk's text, a cited source's place."""
    return TITLE_PATH_SEPARATOR.join(p for p in parts if p)


class Citation(BaseModel):
    index: int
    title: str
    source: str = Field(description="File name (or URL) the passage comes from.")
    section: str | None = None
    page: int | None = Field(None, description="PDF page or slide number.")
    url: str | None = Field(None, description="Web page the passage comes from, if any.")
    snippet: str


class Chunk(BaseModel):
    chunk_id: str
    copilot_id: str
    doc_key: str
    position: int
    text: str
    title: str
    section: str | None = None
    page: int | None = None
    url: str | None = None
    version: str | None = None
    # The embedding of the chunk's title and section path (copilot.knowledge.vectors.pack): a question
    # can match what a section is about (an FAQ's question, a page's title) better than its
    # body. None for chunks indexed before headings were embedded.
    heading_vector: str | None = None
    # A table chunk ends with this many rows (records, one per paragraph); what comes before
    # them is the table's caption. 0 for prose.
    rows: int = 0
    # The embeddings of its parts (part_texts: a table's rows with the caption, or the items
    # of its lists with their section; copilot.knowledge.vectors.pack, one after another): a
    # question about one row ("how much is a tune-up?") or one item matches it far better
    # than the several rows or items of its chunk together. None when not embedded.
    row_vectors: str | None = None


class Passage(BaseModel):
    """A retrieved chunk with its relevance to the query (cosine similarity, 0..1)."""

    chunk: Chunk
    score: float


class Answer(BaseModel):
    text: str
    citations: list[Citation]


class Utterance(Protocol):
    """One earlier message of the conversation, as knowledge reads it for follow-ups: who said
    it and what (``copilot.conversation.models.Message`` is one; knowledge does not depend on
    the conversation's storage model)."""

    @property
    def role(self) -> str: ...

    @property
    def text(self) -> str: ...


def table_rows(chunk: Chunk) -> list[str]:
    """The texts a table chunk's rows are embedded as: each row after the table's caption,
    which says what the rows are about ("Seattle Workshop ... Day: Monday; Hours: Closed")."""
    caption, rows = _table_parts(chunk)
    return [f"{caption}\n\n{row}" if caption else row for row in rows]


def part_texts(chunk: Chunk) -> list[str]:
    """The parts of a chunk embedded on their own beside it (its ``row_vectors``): a table's
    rows with its caption, or the items of a prose chunk's lists, each with the section it
    is in and the line that introduces it ("Returns and Refunds › Items that can't be
    returned: E-bike batteries sold separately that have been charged or installed"), and
    the answer of a question-and-answer pair (the line after a line that asks). A question
    about one item of a list matches the item far better than the whole section, whose other
    items are about other things; a question worded unlike an FAQ's own ("does it have a
    good choice of beers?" for "Do you serve alcohol?") often matches its answer ("Yes,
    Wagamama serves alcohol.") better than the pair, or the entry's question."""
    if chunk.rows:
        return table_rows(chunk)
    where = title_path(chunk.title, chunk.section)
    parts: list[str] = []
    intro = ""
    asked = False  # the line before was a question: this one is its answer
    for line in chunk.text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        item = LIST_ITEM.match(stripped)
        if item is None:
            intro = stripped if stripped.endswith(":") else ""
            if asked and not intro and not stripped.endswith("?") and len(stripped) > 2:
                parts.append(stripped[:MAX_ANSWER_PART])
            asked = stripped.endswith("?")
            continue
        asked = False
        text = stripped[item.end() :].strip()
        if len(text) > 2:
            lead = f"{where}: {intro}" if intro else where
            parts.append(f"{lead}\n\n{text}")
    return parts


def table_caption(chunk: Chunk) -> str:
    """What a table chunk says before its rows ("" for prose, or a table without one)."""
    return _table_parts(chunk)[0]


def _table_parts(chunk: Chunk) -> tuple[str, list[str]]:
    if not chunk.rows:
        return "", []
    paragraphs = split_paragraphs(chunk.text)
    return "\n\n".join(paragraphs[: -chunk.rows]), paragraphs[-chunk.rows :]
