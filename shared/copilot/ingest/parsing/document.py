"""What every parser produces: a titled document of sections with citation metadata.

The parsers import this module and never the other way round; ``registry.parse`` picks the
parser. Every parser raises PermanentIngestError with a reason a person can act on when a file
can never be read (corrupt, encrypted, empty, wrong type).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field


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


def title_from_key(doc_key: str) -> str:
    stem = posixpath.splitext(posixpath.basename(doc_key))[0]
    return re.sub(r"[-_]+", " ", stem).strip().capitalize() or doc_key
