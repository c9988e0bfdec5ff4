"""Office Open XML: Word (.docx), PowerPoint (.pptx), Excel (.xlsx).

These are zips: ``guard_zip`` checks the central directory for zip bombs before any library
unpacks a byte. Libraries are imported inside the parsers (cold start).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

from copilot.errors import PermanentIngestError
from copilot.ingest.parsing.document import (
    ParsedDocument,
    ParseLimits,
    Parser,
    Section,
    title_from_key,
)
from copilot.ingest.parsing.records import records_section, table_records

MAX_RATIO = 100  # uncompressed : compressed, checked on members over RATIO_MIN_BYTES
RATIO_MIN_BYTES = 1024 * 1024
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .doc/.xls/.ppt, and encrypted OOXML
_HEADING = re.compile(r"heading ([1-9])", re.I)
_JUNK_TITLE = re.compile(
    r"^(powerpoint presentation|presentation|document|book\d*|untitled)$", re.I
)


def guard_zip(body: bytes, limits: ParseLimits, kind: str) -> None:
    """Reject what is not a zip, and zips that would unpack to far more than they weigh."""
    import zipfile

    if body[:8] == _OLE_MAGIC:
        raise PermanentIngestError(
            f"the {kind} is password-protected or in the old binary Office format: "
            f"save it as an unprotected .{kind.lower()} and upload again"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            members = archive.infolist()
    except Exception as e:
        raise PermanentIngestError(
            f"malformed {kind}: the file is not a valid Office document "
            f"(open it in Office, save it as .{kind.lower()} and upload again)"
        ) from e
    total = sum(m.file_size for m in members)
    if total > limits.max_unpacked_bytes:
        raise PermanentIngestError(
            f"the {kind} unpacks to {total / 1e6:.1f} MB, over the "
            f"{limits.max_unpacked_bytes / 1e6:.1f} MB limit: split it or remove embedded media"
        )
    for m in members:
        if m.file_size > RATIO_MIN_BYTES and m.file_size > MAX_RATIO * max(m.compress_size, 1):
            raise PermanentIngestError(
                f"the {kind} looks like a zip bomb: '{m.filename}' expands "
                f"{m.file_size // max(m.compress_size, 1)}:1; upload a normally saved file"
            )


def _guarded(kind: str, extract: Parser) -> Parser:
    def parser(doc_key: str, body: bytes, limits: ParseLimits) -> ParsedDocument:
        guard_zip(body, limits, kind)
        try:
            return extract(doc_key, body, limits)
        except PermanentIngestError:
            raise
        except Exception as e:
            raise PermanentIngestError(
                f"malformed {kind}: the file could not be read ({_brief(e)}); "
                f"open it in Office, save it again and upload"
            ) from e

    return parser


def _brief(error: Exception) -> str:
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first_line[:200]}"


def _clean_title(value: str | None) -> str:
    title = " ".join((value or "").split())
    return "" if _JUNK_TITLE.match(title) else title


# ----- Word -----


def _docx(doc_key: str, body: bytes, limits: ParseLimits) -> ParsedDocument:
    import docx
    from docx.table import Table

    document = docx.Document(io.BytesIO(body))
    title = ""
    stack: list[tuple[int, str]] = []
    sections: list[Section] = []
    buffer: list[str] = []

    def flush() -> None:
        if buffer:
            sections.append(Section(text="\n\n".join(buffer), path=[h for _, h in stack]))
            buffer.clear()

    for block in document.iter_inner_content():
        if isinstance(block, Table):
            rows = [[cell.text for cell in row.cells] for row in block.rows]
            buffer.extend(table_records(rows))
            continue
        text = block.text.strip()
        if not text:
            continue
        style = (block.style.name or "") if block.style is not None else ""
        heading = _HEADING.fullmatch(style)
        if style == "Title" and not title and not sections and not buffer:
            title = " ".join(text.split())
        elif heading and int(heading.group(1)) <= 3:
            flush()
            level = int(heading.group(1))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, " ".join(text.split())))
        else:
            buffer.append(f"- {text}" if style.startswith("List") else text)
    flush()
    title = title or _clean_title(document.core_properties.title) or title_from_key(doc_key)
    return ParsedDocument(title=title, sections=sections)


# ----- PowerPoint -----


def _pptx(doc_key: str, body: bytes, limits: ParseLimits) -> ParsedDocument:
    from pptx import Presentation

    presentation = Presentation(io.BytesIO(body))
    count = len(presentation.slides)
    if count > limits.max_pages:
        raise PermanentIngestError(
            f"the presentation has {count} slides, over the {limits.max_pages}-slide limit: "
            "split it into smaller files"
        )
    sections: list[Section] = []
    first_title = ""
    for number, slide in enumerate(presentation.slides, start=1):
        title_shape = slide.shapes.title
        title = _shape_text(title_shape) if title_shape is not None else ""
        title = " ".join(title.split())
        first_title = first_title or title
        parts = []
        for shape in _shapes(slide.shapes):
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            if getattr(shape, "has_table", False) and shape.has_table:
                rows = [[cell.text for cell in row.cells] for row in shape.table.rows]
                parts.extend(table_records(rows))
            elif text := _shape_text(shape):
                parts.append(text)
        if slide.has_notes_slide:
            frame = slide.notes_slide.notes_text_frame
            notes = frame.text.replace("\x0b", "\n").strip() if frame is not None else ""
            if notes:
                parts.append(f"Notes: {notes}")
        if parts:
            sections.append(
                Section(text="\n\n".join(parts), path=[title] if title else [], page=number)
            )
    title = _clean_title(presentation.core_properties.title) or first_title
    return ParsedDocument(title=title or title_from_key(doc_key), sections=sections)


def _shapes(shapes: Any) -> Iterator[Any]:
    from pptx.enum.shapes import PP_PLACEHOLDER

    chrome = {PP_PLACEHOLDER.SLIDE_NUMBER, PP_PLACEHOLDER.FOOTER, PP_PLACEHOLDER.DATE}
    for shape in shapes:
        if hasattr(shape, "shapes"):  # a group
            yield from _shapes(shape.shapes)
        elif not (shape.is_placeholder and shape.placeholder_format.type in chrome):
            yield shape


def _shape_text(shape: Any) -> str:
    if not getattr(shape, "has_text_frame", False) or not shape.has_text_frame:
        return ""
    return str(shape.text_frame.text).replace("\x0b", "\n").strip()


# ----- Excel -----


def _xlsx(doc_key: str, body: bytes, limits: ParseLimits) -> ParsedDocument:
    import openpyxl

    workbook = openpyxl.load_workbook(io.BytesIO(body), read_only=True, data_only=True)
    try:
        sections = []
        total = 0
        for sheet in workbook.worksheets:
            if getattr(sheet, "sheet_state", "visible") != "visible":
                continue  # hidden sheets hold lookups and scratch data, not knowledge
            records = table_records(sheet.iter_rows(values_only=True), limits.max_rows - total)
            total += len(records)
            if records:
                sections.append(records_section(records, [sheet.title]))
        title = _clean_title(workbook.properties.title) or title_from_key(doc_key)
    finally:
        workbook.close()
    return ParsedDocument(title=title, sections=sections)


parse_docx = _guarded("DOCX", _docx)
parse_pptx = _guarded("PPTX", _pptx)
parse_xlsx = _guarded("XLSX", _xlsx)
