"""Table rows -> records, shared by every format that has tables (HTML, Markdown, CSV, Office).

A row becomes one record, "Header: value; Header2: value2", so every chunk carries its column
names: a row read on its own, by a person or an embedding model, keeps what each value means.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from copilot.errors import PermanentIngestError
from copilot.ingest.parsing.document import Section


def cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="minutes").removesuffix(" 00:00")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return " ".join(str(value).split())


def table_records(rows: Iterable[Sequence[Any]], max_records: int | None = None) -> list[str]:
    """The first non-empty row is the header; every later row becomes one record."""
    header: list[str] | None = None
    records: list[str] = []
    for raw in rows:
        row = [cell_text(v) for v in raw]
        if not any(row):
            continue
        if header is None:
            header = row
            continue
        pairs = [
            f"{header[i] if i < len(header) and header[i] else f'Column {i + 1}'}: {value}"
            for i, value in enumerate(row)
            if value
        ]
        records.append("; ".join(pairs))
        if max_records is not None and len(records) > max_records:
            raise PermanentIngestError(
                f"the table has more than {max_records} rows in all: split it into smaller files"
            )
    if header is not None and not records:  # a header-only table still says something
        records.append("; ".join(h for h in header if h))
    return records


def records_section(records: list[str], path: list[str]) -> Section:
    # Blank lines between records let chunking pack whole records into each chunk.
    return Section(text="\n\n".join(records), path=path, records=True)
