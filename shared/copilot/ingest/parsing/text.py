"""Markdown and plain text."""

from __future__ import annotations

import re

from copilot.errors import PermanentIngestError
from copilot.ingest.parsing.document import ParsedDocument, ParseLimits, Section, title_from_key
from copilot.ingest.parsing.records import table_records

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def decode_text(body: bytes) -> str:
    if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return body.decode("utf-16")
        except UnicodeDecodeError:
            pass
    if b"\x00" in body[:8192]:
        raise PermanentIngestError("the file looks binary (it contains NUL bytes), not text")
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PermanentIngestError(
            "the file is not valid UTF-8 text; save it as UTF-8 and upload again"
        ) from None


def parse_plain(doc_key: str, body: bytes, limits: ParseLimits) -> ParsedDocument:
    return ParsedDocument(title=title_from_key(doc_key), sections=[Section(text=decode_text(body))])


def parse_markdown(doc_key: str, body: bytes, limits: ParseLimits) -> ParsedDocument:
    title, sections = split_markdown(decode_text(body), title_from_key(doc_key))
    return ParsedDocument(title=title, sections=sections)


def split_markdown(text: str, fallback_title: str) -> tuple[str, list[Section]]:
    """Sections by heading; the first H1 before any content is the document's title."""
    title = fallback_title
    stack: list[tuple[int, str]] = []
    sections: list[Section] = []
    buffer: list[str] = []
    in_fence = False

    def flush() -> None:
        for body, is_table in split_pipe_tables(buffer):
            if body.strip():
                sections.append(
                    Section(text=body.strip(), path=[h for _, h in stack], records=is_table)
                )
        buffer.clear()

    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            flush()
            level, heading = len(match.group(1)), match.group(2).strip()
            if level == 1 and title == fallback_title and not sections and not stack:
                title = heading
                continue
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading))
        else:
            buffer.append(line)
    flush()
    return title, sections


def split_pipe_tables(lines: list[str]) -> list[tuple[str, bool]]:
    """Text and GitHub-style pipe tables, in order; a table becomes one "Header: value; ..."
    record per row (paragraphs), as tables from HTML, Excel and CSV do: a row read on its own,
    by a person or an embedding model, keeps what each value means."""
    parts: list[tuple[str, bool]] = []
    text: list[str] = []
    i = 0
    while i < len(lines):
        is_table = (
            lines[i].lstrip().startswith("|")
            and i + 1 < len(lines)
            and _TABLE_RULE.match(lines[i + 1]) is not None
        )
        if not is_table:
            text.append(lines[i])
            i += 1
            continue
        rows = [_cells(lines[i])]
        i += 2
        while i < len(lines) and lines[i].lstrip().startswith("|"):
            rows.append(_cells(lines[i]))
            i += 1
        if text:
            parts.append(("\n".join(text), False))
            text = []
        parts.append(("\n\n".join(table_records(rows)), True))
    if text:
        parts.append(("\n".join(text), False))
    return parts


def _cells(line: str) -> list[str]:
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", inner)]
