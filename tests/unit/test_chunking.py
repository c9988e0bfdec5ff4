from __future__ import annotations

import re

import pytest

from copilot.errors import PermanentIngestError
from copilot.ingest.chunking import chunk_document
from copilot.ingest.parsing.text import split_markdown
from copilot.knowledge.models import table_rows

MD = b"""# Returns and Refunds

Intro paragraph.

## Return window

You can return items within **30 days**.

### Exceptions

Custom builds cannot be returned.

## Refund timing

Refunds take 5 business days.
"""


def test_markdown_chunks_keep_title_and_section_path() -> None:
    chunks = chunk_document("c1", "help/returns.md", MD, "v1")
    assert {c.title for c in chunks} == {"Returns and Refunds"}
    sections = [c.section for c in chunks]
    assert sections == [None, "Return window", "Return window › Exceptions", "Refund timing"]
    assert chunks[1].text == "You can return items within **30 days**."
    assert [c.position for c in chunks] == [0, 1, 2, 3]


def test_chunk_ids_are_stable_and_version_specific() -> None:
    a = chunk_document("c1", "returns.md", MD, "v1")
    b = chunk_document("c1", "returns.md", MD, "v1")
    c = chunk_document("c1", "returns.md", MD, "v2")
    other_copilot = chunk_document("c2", "returns.md", MD, "v1")
    assert [x.chunk_id for x in a] == [x.chunk_id for x in b]
    assert not {x.chunk_id for x in a} & {x.chunk_id for x in c}
    assert not {x.chunk_id for x in a} & {x.chunk_id for x in other_copilot}


def test_long_sections_are_split_at_paragraphs() -> None:
    para = "Sentence about bikes. " * 40
    body = ("# T\n\n## S\n\n" + "\n\n".join([para] * 6)).encode()
    chunks = chunk_document("c1", "long.md", body, None)
    assert len(chunks) > 3
    assert all(len(c.text) <= 1800 for c in chunks)
    assert all(c.section == "S" for c in chunks)


def test_headings_inside_code_fences_are_not_sections() -> None:
    _, sections = split_markdown("# T\n\n```\n# not a heading\n```\n\n## Real\n\ntext\n", "x")
    assert [s.path for s in sections] == [[], ["Real"]]


def test_plain_text_uses_the_file_name_as_title() -> None:
    chunks = chunk_document("c1", "store-hours.txt", b"Open 9 to 5.", None)
    assert chunks[0].title == "Store hours"
    assert chunks[0].section is None


@pytest.mark.parametrize(
    ("key", "body", "reason"),
    [
        ("setup.exe", b"MZ\x90\x00", "unsupported file type '.exe'"),
        ("notes", b"text", "unsupported file type '(none)'"),
        ("empty.md", b"  \n\n", "empty"),
        ("binary.txt", b"\x00\x01\x02\x03", "binary"),
        ("latin1.txt", "caf\xe9".encode("latin-1"), "not valid UTF-8"),
    ],
)
def test_unusable_files_fail_with_a_reason(key: str, body: bytes, reason: str) -> None:
    with pytest.raises(PermanentIngestError, match=re.escape(reason)):
        chunk_document("c1", key, body, None)


PRICES = b"""# Shipping

## Methods

Pick one at checkout.

| Method | Delivery time | Cost |
|---|:---:|---|
| Standard | 3-5 business days | $7.95 |
| Express | 1-2 business days | $19.95 |
| Freight | 5-8 business days | $59 |

Freight is charged per bike.
"""


def test_markdown_pipe_tables_become_records_in_small_chunks() -> None:
    chunks = chunk_document("c", "shipping.md", PRICES, "v1")
    texts = [c.text for c in chunks]
    # The line that introduces the table opens each chunk of its rows.
    assert texts[0].startswith("Pick one at checkout.\n\nMethod: Standard;")
    assert "Method: Standard; Delivery time: 3-5 business days; Cost: $7.95" in texts[0]
    assert not any("|" in t or "---" in t for t in texts)
    assert texts[-1] == "Freight is charged per bike."
    assert all(c.section == "Methods" for c in chunks)
    # A few rows per chunk: one row's match is not drowned out by the rest of the table.
    records = [t for t in texts if "Method:" in t]
    assert all(t.startswith("Pick one at checkout.") for t in records)
    assert len(records) >= 1 and all(
        len(t) <= 350 + len("Pick one at checkout.\n\n") for t in records
    )


def test_sections_fit_the_embedding_window() -> None:
    body = "# Guide\n\n## Long\n\n" + "\n\n".join(
        f"Paragraph {i} " + "word " * 60 for i in range(8)
    )
    chunks = chunk_document("c", "guide.md", body.encode(), "v1")
    assert len(chunks) > 2 and all(len(c.text) <= 1000 for c in chunks)


WORKSHOPS = b"""# Workshops

## Opening hours

**Portland Workshop**
1420 SE Division Street

| Day | Hours |
|---|---|
| Monday | 9-6 |
| Sunday | Closed |

Parking is behind the building.

**Seattle Workshop**
811 Westlake Avenue N

| Day | Hours |
|---|---|
| Monday | Closed |
"""


def test_a_table_repeats_the_short_paragraph_that_introduces_it() -> None:
    chunks = chunk_document("c1", "workshops.md", WORKSHOPS, "v1")
    assert [c.text for c in chunks] == [
        "**Portland Workshop**\n1420 SE Division Street\n\nDay: Monday; Hours: 9-6\n\n"
        "Day: Sunday; Hours: Closed",
        "Parking is behind the building.",
        "**Seattle Workshop**\n811 Westlake Avenue N\n\nDay: Monday; Hours: Closed",
    ]
    # Each row is embedded on its own, with the caption that says whose row it is.
    assert [c.rows for c in chunks] == [2, 0, 1]
    assert [table_rows(c) for c in chunks] == [
        [
            "**Portland Workshop**\n1420 SE Division Street\n\nDay: Monday; Hours: 9-6",
            "**Portland Workshop**\n1420 SE Division Street\n\nDay: Sunday; Hours: Closed",
        ],
        [],
        ["**Seattle Workshop**\n811 Westlake Avenue N\n\nDay: Monday; Hours: Closed"],
    ]
