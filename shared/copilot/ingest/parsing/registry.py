"""Parsers by file extension: ``parse`` turns a knowledge file's bytes into a ParsedDocument.

One module per family of formats; each imports its heavy library inside its parse functions
(cold start), so importing them all here is cheap.
"""

from __future__ import annotations

import posixpath

from copilot.errors import PermanentIngestError
from copilot.ingest.parsing import html, office, pdf, tabular, text
from copilot.ingest.parsing.document import ParsedDocument, ParseLimits, Parser

_PARSERS: dict[str, Parser] = {
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
    return sorted(_PARSERS)


def parse(doc_key: str, body: bytes, limits: ParseLimits | None = None) -> ParsedDocument:
    ext = posixpath.splitext(doc_key)[1].lower()
    parser = _PARSERS.get(ext)
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
