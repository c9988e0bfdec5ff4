"""Parsers: a knowledge file's bytes -> a titled document of sections with citation metadata.

One module per family of formats; ``parse`` picks by file extension (then content type).
Every parser raises PermanentIngestError with a reason a person can act on when a file can
never be read (corrupt, encrypted, empty, wrong type).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from copilot.errors import PermanentIngestError


@dataclass
class Section:
    text: str
    path: list[str] = field(default_factory=list)  # heading path, outermost first
    page: int | None = None  # PDF page or slide number, 1-based
    atomic: bool = False  # keep as one chunk (an FAQ question/answer pair, a table record)
    records: bool = False  # table rows, one per paragraph: packed into small chunks
    caption: str | None = None  # what a table's rows are about, repeated in each of its chunks


@dataclass
class ParsedDocument:
    title: str
    sections: list[Section]


@dataclass(frozen=True)
class ParseLimits:
    max_unpacked_bytes: int = 200 * 1024 * 1024  # office files are zips: guard against bombs
    max_pages: int = 5000
    max_rows: int = 200_000  # spreadsheet/CSV records per file


Parser = Callable[[str, bytes, ParseLimits], ParsedDocument]


def _registry() -> dict[str, Parser]:
    # These modules are light: each imports its heavy library inside its parse functions.
    from copilot.ingest.parsing import html, office, pdf, tabular, text

    return {
        ".md": text.parse_markdown,
        ".markdown": text.parse_markdown,
        ".txt": text.parse_plain,
        ".text": text.parse_plain,
        ".pdf": pdf.parse_pdf,
        ".docx": office.parse_docx,
        ".pptx": office.parse_pptx,
        ".xlsx": office.parse_xlsx,
        ".xlsm": office.parse_xlsx,
        ".csv": tabular.parse_csv,
        ".tsv": tabular.parse_csv,
        ".json": tabular.parse_json,
        ".html": html.parse_html,
        ".htm": html.parse_html,
        ".xhtml": html.parse_html,
    }


def supported_extensions() -> list[str]:
    return sorted(_registry())


def parse(doc_key: str, body: bytes, limits: ParseLimits | None = None) -> ParsedDocument:
    ext = posixpath.splitext(doc_key)[1].lower()
    parser = _registry().get(ext)
    if parser is None:
        raise PermanentIngestError(
            f"unsupported file type '{ext or '(none)'}': supported types are "
            + ", ".join(supported_extensions())
        )
    if not body.strip():
        raise PermanentIngestError("the file is empty: there is no text to index")
    document = parser(doc_key, body, limits or ParseLimits())
    if not any(s.text.strip() for s in document.sections):
        raise PermanentIngestError("no text could be extracted from the file")
    return document


def title_from_key(doc_key: str) -> str:
    stem = posixpath.splitext(posixpath.basename(doc_key))[0]
    return re.sub(r"[-_]+", " ", stem).strip().capitalize() or doc_key
