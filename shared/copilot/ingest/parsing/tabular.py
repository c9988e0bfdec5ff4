"""CSV tables and FAQ exports (CSV or JSON).

A table row becomes one record (``copilot.ingest.parsing.records``). An FAQ pair becomes one
atomic section, "Q: ...\\nA: ...", titled by its question.
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

from copilot.errors import PermanentIngestError
from copilot.ingest.parsing.document import ParsedDocument, ParseLimits, Section, title_from_key
from copilot.ingest.parsing.html import fragment_text
from copilot.ingest.parsing.records import records_section, table_records
from copilot.ingest.parsing.text import decode_text

QUESTION_KEYS = ("question", "q", "title")
ANSWER_KEYS = ("answer", "a", "body", "content")
FAQ_LIST_KEYS = ("faqs", "items", "questions")
# A pair longer than this is left splittable (each piece keeps the question as its path).
ATOMIC_MAX_CHARS = 4000
_NOT_FAQ = "JSON files must be an FAQ export: a list of {question, answer} objects"
_TAG = re.compile(r"<(?:[a-zA-Z][a-zA-Z0-9]*|/[a-zA-Z][a-zA-Z0-9]*)(?:\s[^<>]*)?/?>")


# ----- FAQ -----


def faq_section(question: str, answer: str) -> Section:
    question = " ".join(question.split())
    text = f"Q: {question}\nA: {answer}"
    return Section(text=text, path=[question], atomic=len(text) <= ATOMIC_MAX_CHARS)


def _clean(value: Any) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    text = str(value).strip()
    if _TAG.search(text):  # help-centre exports often carry HTML answers
        text = fragment_text(text)
    return text


def _pick(item: dict[str, Any], keys: tuple[str, ...]) -> str:
    lowered = {str(k).strip().lower(): v for k, v in item.items()}
    for key in keys:
        text = _clean(lowered.get(key))
        if text:
            return text
    return ""


# ----- parsers -----


def parse_json(doc_key: str, body: bytes, limits: ParseLimits) -> ParsedDocument:
    try:
        data = json.loads(decode_text(body))
    except json.JSONDecodeError as e:
        raise PermanentIngestError(
            f"invalid JSON ({e.msg} at line {e.lineno}, column {e.colno}): fix the file and "
            "upload again"
        ) from e
    except RecursionError as e:
        raise PermanentIngestError("invalid JSON: it is nested too deeply") from e
    title = title_from_key(doc_key)
    items: Any = data
    if isinstance(data, dict):
        lowered = {str(k).lower(): v for k, v in data.items()}
        items = next((lowered[k] for k in FAQ_LIST_KEYS if k in lowered), None)
        title = _clean(lowered.get("title")) or title
    if not isinstance(items, list):
        raise PermanentIngestError(_NOT_FAQ)
    sections = []
    for item in items:
        if not isinstance(item, dict):
            continue
        question, answer = _pick(item, QUESTION_KEYS), _pick(item, ANSWER_KEYS)
        if question and answer:
            sections.append(faq_section(question, answer))
    if not sections:
        raise PermanentIngestError(_NOT_FAQ)
    return ParsedDocument(title=title, sections=sections)


def parse_csv(doc_key: str, body: bytes, limits: ParseLimits) -> ParsedDocument:
    text = decode_text(body)
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), _dialect(text, doc_key)))
    except csv.Error as e:
        raise PermanentIngestError(
            f"the CSV is malformed ({e}): check its quoting and upload again"
        ) from e
    if len(rows) > limits.max_rows + 1:
        raise PermanentIngestError(
            f"the CSV has more than {limits.max_rows} rows: split it into smaller files"
        )
    title = title_from_key(doc_key)
    header_index = next((i for i, row in enumerate(rows) if any(c.strip() for c in row)), None)
    if header_index is None:
        raise PermanentIngestError("the CSV has no rows")
    names = [c.strip().lower() for c in rows[header_index]]
    q_col = next((names.index(k) for k in ("question", "q") if k in names), None)
    a_col = next((names.index(k) for k in ("answer", "a") if k in names), None)
    if q_col is None or a_col is None:
        records = table_records(rows, limits.max_rows)
        return ParsedDocument(title=title, sections=[records_section(records, [])])
    sections = []
    for row in rows[header_index + 1 :]:
        question = row[q_col].strip() if q_col < len(row) else ""
        answer = _clean(row[a_col]) if a_col < len(row) else ""
        if question and answer:
            sections.append(faq_section(question, answer))
    return ParsedDocument(title=title, sections=sections)


def _dialect(text: str, doc_key: str) -> type[csv.Dialect] | csv.Dialect:
    if doc_key.lower().endswith(".tsv"):
        return csv.excel_tab
    try:
        return csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        return csv.excel
