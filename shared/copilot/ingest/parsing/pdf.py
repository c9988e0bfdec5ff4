"""PDF text layer via pypdfium2 (PDFium): one section per page, pages numbered from 1.

PDFium is several times faster than pure-Python extractors, but it is not thread-safe:
every call into it is serialised with a module-level lock.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from copilot.errors import PermanentIngestError
from copilot.ingest.parsing.document import ParsedDocument, ParseLimits, Section, title_from_key

_LOCK = threading.Lock()
_ERR_PASSWORD = 4  # FPDF_ERR_PASSWORD
_ERR_SECURITY = 6  # FPDF_ERR_SECURITY: an unsupported security handler
# Control characters PDFium emits for soft hyphens / unknown glyphs, and stray NULs.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_JUNK_TITLE = re.compile(r"^(untitled|microsoft \w+ - |.*\.(docx?|pptx?|xlsx?|pdf|rtf|odt)$)", re.I)


def parse_pdf(doc_key: str, body: bytes, limits: ParseLimits) -> ParsedDocument:
    if b"%PDF-" not in body[:1024]:
        raise PermanentIngestError(
            "the file is not a PDF (it has no %PDF header): check the file type and upload again"
        )
    with _LOCK:
        try:
            return _extract(doc_key, body, limits)
        except PermanentIngestError:
            raise
        except Exception as e:
            raise PermanentIngestError(
                f"the PDF could not be read ({str(e)[:200]}): re-save or re-export it and upload again"
            ) from e


def _extract(doc_key: str, body: bytes, limits: ParseLimits) -> ParsedDocument:
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(body)
    except pdfium.PdfiumError as e:
        raise _open_error(body, e) from e
    try:
        count = len(document)
        if count == 0:
            raise PermanentIngestError("the PDF has no pages")
        if count > limits.max_pages:
            raise PermanentIngestError(
                f"the PDF has {count} pages, over the {limits.max_pages}-page limit: "
                "split it into smaller files"
            )
        sections = []
        for index in range(count):
            text = _page_text(document, index)
            if text:
                sections.append(Section(text=text, page=index + 1))
        if not sections:
            raise PermanentIngestError(
                "the PDF has no text layer (scanned image?): upload a text PDF or run OCR first"
            )
        return ParsedDocument(title=_title(document) or title_from_key(doc_key), sections=sections)
    finally:
        document.close()


def _open_error(body: bytes, error: Any) -> PermanentIngestError:
    code = getattr(error, "err_code", None)
    # PDFium also reports "password" for some page-less files: trust it only with /Encrypt.
    if code == _ERR_PASSWORD and b"/Encrypt" in body:
        return PermanentIngestError(
            "the PDF is password-protected: remove the password and upload an unprotected copy"
        )
    if code == _ERR_SECURITY:
        return PermanentIngestError(
            "the PDF uses an unsupported security handler (DRM): upload an unprotected copy"
        )
    return PermanentIngestError(
        "the PDF is corrupt or has no pages (it could not be opened): "
        "re-save or re-export it and upload again"
    )


def _page_text(document: Any, index: int) -> str:
    page = document[index]
    try:
        textpage = page.get_textpage()
        try:
            raw = textpage.get_text_range()
        finally:
            textpage.close()
    finally:
        page.close()
    text = _CONTROL.sub("", raw.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return "\n".join(line for line in lines if line).strip()


def _title(document: Any) -> str | None:
    try:
        title = " ".join(str(document.get_metadata_value("Title") or "").split())
    except Exception:
        return None
    if not title or _JUNK_TITLE.match(title):
        return None
    return title
