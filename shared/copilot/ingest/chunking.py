"""Turn a parsed document into chunks that keep their title path, page and source."""

from __future__ import annotations

import re
from dataclasses import replace

from copilot.ingest.parsing.document import ParsedDocument, ParseLimits, Section
from copilot.ingest.parsing.registry import parse
from copilot.knowledge.models import Chunk, chunk_id, title_path
from copilot.text import split_paragraphs

# Sized for the default embedder: all-MiniLM-L6-v2 reads at most 256 word pieces (about
# 1,000 characters of English) and was trained on passages of up to 128; text past its window
# would not be embedded at all, and long mixed passages match any one question weakly.
TARGET_CHARS = 700
MAX_CHARS = 1000
RECORD_CHARS = 350  # table rows: a few per chunk, so one row's match is not drowned out
CAPTION_CHARS = 200  # a table's lead-in paragraph, repeated with its rows, at most this long


def chunk_document(
    copilot_id: str,
    doc_key: str,
    body: bytes,
    version: str | None,
    *,
    url: str | None = None,
    limits: ParseLimits | None = None,
) -> list[Chunk]:
    return chunk_parsed(copilot_id, doc_key, parse(doc_key, body, limits), version, url=url)


def chunk_parsed(
    copilot_id: str,
    doc_key: str,
    document: ParsedDocument,
    version: str | None,
    *,
    url: str | None = None,
) -> list[Chunk]:
    chunks: list[Chunk] = []
    for section in with_table_captions(document.sections):
        rows: list[int] = []
        if section.atomic:
            pieces = [section.text.strip()]
        elif section.records:
            pieces = pack_paragraphs(section.text, RECORD_CHARS)
            rows = [len(split_paragraphs(piece)) for piece in pieces]
            if section.caption:
                pieces = [f"{section.caption}\n\n{piece}" for piece in pieces]
        else:
            pieces = split_long(section.text)
        for i, piece in enumerate(pieces):
            if not piece.strip():
                continue
            position = len(chunks)
            chunks.append(
                Chunk(
                    chunk_id=chunk_id(copilot_id, doc_key, position, version),
                    copilot_id=copilot_id,
                    doc_key=doc_key,
                    position=position,
                    text=piece,
                    title=document.title,
                    section=title_path(*section.path) or None,
                    page=section.page,
                    url=url,
                    version=version,
                    rows=rows[i] if rows else 0,
                )
            )
    return chunks


def with_table_captions(sections: list[Section]) -> list[Section]:
    """A short paragraph just before a table, in the same section ("**Seattle Workshop**,
    811 Westlake Avenue N"), says what the table's rows are about: it moves to the table and
    each chunk of its rows repeats it, or "Day: Monday; Hours: Closed" would not say whose
    hours they are."""
    out: list[Section] = []
    for section in sections:
        previous = out[-1] if out else None
        if (
            section.records
            and not section.caption
            and previous is not None
            and not (previous.records or previous.atomic)
            and previous.path == section.path
            and previous.page == section.page
        ):
            paragraphs = split_paragraphs(previous.text)
            if paragraphs and len(paragraphs[-1]) <= CAPTION_CHARS:
                section = replace(section, caption=paragraphs[-1])
                rest = "\n\n".join(paragraphs[:-1])
                if rest:
                    out[-1] = replace(previous, text=rest)
                else:
                    out.pop()
        out.append(section)
    return out


def split_long(text: str) -> list[str]:
    """Pack paragraphs into chunks of about TARGET_CHARS, splitting oversize paragraphs."""
    text = text.strip()
    if len(text) <= MAX_CHARS:
        return [text]
    return pack_paragraphs(text, TARGET_CHARS)


def pack_paragraphs(text: str, target: int) -> list[str]:
    """Whole paragraphs packed into pieces of about ``target`` characters."""
    paragraphs = split_paragraphs(text)
    pieces: list[str] = []
    current = ""
    for para in paragraphs:
        for part in _hard_wrap(para):
            if current and len(current) + len(part) + 2 > target:
                pieces.append(current)
                current = part
            else:
                current = f"{current}\n\n{part}" if current else part
    if current:
        pieces.append(current)
    return pieces


def _hard_wrap(paragraph: str) -> list[str]:
    if len(paragraph) <= MAX_CHARS:
        return [paragraph]
    out: list[str] = []
    current = ""
    for sentence in re.split(r"(?<=[.!?])\s+", paragraph):
        while len(sentence) > MAX_CHARS:
            out.append(sentence[:MAX_CHARS])
            sentence = sentence[MAX_CHARS:]
        if current and len(current) + len(sentence) + 1 > TARGET_CHARS:
            out.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        out.append(current)
    return out
