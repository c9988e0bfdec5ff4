"""Parsers for every supported file type, on real files generated in the test."""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import subprocess
import sys
import zipfile

import pytest

from copilot.errors import PermanentIngestError
from copilot.ingest.chunking import chunk_document
from copilot.ingest.parsing.document import ParseLimits
from copilot.ingest.parsing.registry import parse, supported_extensions

# ----- builders -----


def make_pdf(pages: list[str], *, title: str | None = None, encrypt: object = None) -> bytes:
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, encrypt=encrypt)
    if title:
        pdf.setTitle(title)
    for text in pages:
        for n, line in enumerate(text.splitlines()):
            pdf.drawString(72, 750 - 14 * n, line)
        if not text:
            pdf.rect(100, 100, 300, 300, fill=1)  # ink, but no text layer
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


# A syntactically valid PDF whose page tree is empty.
ZERO_PAGE_PDF = (
    b"%PDF-1.3\n1 0 obj\n<< /Type /Pages /Count 0 /Kids [ ] >>\nendobj\n"
    b"2 0 obj\n<< /Type /Catalog /Pages 1 0 R >>\nendobj\n"
    b"trailer\n<< /Size 3 /Root 2 0 R >>\n%%EOF\n"
)


def make_docx() -> bytes:
    import docx

    document = docx.Document()
    document.add_paragraph("Warranty Guide", style="Title")
    document.add_paragraph("Every product has a warranty.")
    document.add_heading("Coverage", 1)
    document.add_paragraph("Manufacturing defects are covered.")
    document.add_paragraph("Keep your receipt", style="List Bullet")
    document.add_heading("Periods", 2)
    table = document.add_table(rows=3, cols=2)
    for r, (part, years) in enumerate([("Part", "Years"), ("Battery", "1"), ("Screen", "2")]):
        table.cell(r, 0).text, table.cell(r, 1).text = part, years
    document.add_heading("Exclusions", 3)
    document.add_paragraph("Water damage is not covered.")
    document.add_heading("Claims", 1)
    document.add_paragraph("Call support to claim.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def make_pptx() -> bytes:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "Onboarding"
    slide.placeholders[1].text = "Create an account\nVerify your email"
    slide.notes_slide.notes_text_frame.text = "Mention the welcome offer"
    slide = deck.slides.add_slide(deck.slide_layouts[6])  # blank: no title placeholder
    box = slide.shapes.add_textbox(Inches(1), Inches(1), Inches(4), Inches(1))
    box.text_frame.text = "Pricing overview"
    table = slide.shapes.add_table(2, 2, Inches(1), Inches(3), Inches(4), Inches(1)).table
    for (r, c), text in {(0, 0): "Plan", (0, 1): "Price", (1, 0): "Pro", (1, 1): "$9"}.items():
        table.cell(r, c).text = text
    slide = deck.slides.add_slide(deck.slide_layouts[5])  # title only
    slide.shapes.title.text = "Questions"
    slide.notes_slide.notes_text_frame.text = "Open the floor"
    buffer = io.BytesIO()
    deck.save(buffer)
    return buffer.getvalue()


def make_xlsx(rows: int = 3) -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Prices"
    sheet.append(["SKU", "Name", "Price", "Since"])
    sheet.append(["A1", "Widget", 9.5, dt.date(2024, 1, 2)])
    sheet.append(["A2", None, 10.0, None])
    sheet.append([])
    for n in range(3, rows + 1):
        sheet.append([f"A{n}", f"Gadget {n}", n, None])
    other = workbook.create_sheet("Stores")
    other.append(["City", "Open"])
    other.append(["Oslo", True])
    hidden = workbook.create_sheet("Lookup")
    hidden.append(["secret", "value"])
    hidden.append(["x", "y"])
    hidden.sheet_state = "hidden"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def replace_member(body: bytes, name: str, data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(body)) as source:
        return zip_bytes({n: data if n == name else source.read(n) for n in source.namelist()})


def reason(doc_key: str, body: bytes, limits: ParseLimits | None = None) -> str:
    with pytest.raises(PermanentIngestError) as caught:
        parse(doc_key, body, limits)
    return caught.value.message


# ----- registry and cold start -----


def test_every_common_type_is_registered() -> None:
    assert set(supported_extensions()) >= {
        ".md", ".txt", ".pdf", ".docx", ".pptx", ".xlsx", ".csv", ".json", ".html", ".htm"
    }  # fmt: skip


def test_importing_parsing_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys, copilot.ingest.parsing.registry as p; p.supported_extensions(); "
        "print(sorted(m for m in ('pypdfium2', 'docx', 'pptx', 'openpyxl', 'lxml') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ----- PDF -----


def test_pdf_has_one_section_per_page_with_page_numbers() -> None:
    body = make_pdf(
        ["Returns policy\nReturn within 30 days.", "", "Refunds take 5 days."],
        title="Returns Handbook",
    )
    document = parse("help/returns.pdf", body)
    assert document.title == "Returns Handbook"
    assert [s.page for s in document.sections] == [1, 3]  # page 2 has no text
    assert document.sections[0].text == "Returns policy\nReturn within 30 days."
    assert document.sections[1].text == "Refunds take 5 days."


def test_pdf_without_a_title_uses_the_file_name() -> None:
    assert parse("guides/setup-guide.pdf", make_pdf(["Plug it in."])).title == "Setup guide"


def test_pdf_chunks_carry_their_page() -> None:
    chunks = chunk_document("c1", "a.pdf", make_pdf(["one", "two"]), "v1")
    assert [(c.text, c.page) for c in chunks] == [("one", 1), ("two", 2)]


def test_password_protected_pdf_is_rejected() -> None:
    assert "password-protected" in reason("a.pdf", make_pdf(["secret"], encrypt="pw"))


def test_pdf_with_only_an_owner_password_is_read() -> None:
    from reportlab.lib.pdfencrypt import StandardEncryption

    body = make_pdf(["Readable"], encrypt=StandardEncryption("", ownerPassword="owner"))
    assert parse("a.pdf", body).sections[0].text == "Readable"


def test_scanned_pdf_without_text_layer_is_rejected() -> None:
    assert "no text layer" in reason("scan.pdf", make_pdf(["", ""]))


@pytest.mark.parametrize(
    "body",
    [
        b"%PDF-1.7\nthis is not really a pdf",
        make_pdf(["Hello there"])[:400],  # truncated
        ZERO_PAGE_PDF,
    ],
    ids=["garbage", "truncated", "zero-pages"],
)
def test_corrupt_or_empty_pdf_is_rejected(body: bytes) -> None:
    message = reason("a.pdf", body)
    assert "corrupt or has no pages" in message or "no pages" in message


def test_file_that_is_not_a_pdf_is_rejected() -> None:
    assert "not a PDF" in reason("a.pdf", make_docx())


def test_pdf_over_the_page_limit_is_rejected() -> None:
    body = make_pdf(["a", "b", "c"])
    assert "3 pages, over the 2-page limit" in reason("a.pdf", body, ParseLimits(max_pages=2))


# ----- Word -----


def test_docx_sections_follow_heading_styles_with_tables_as_records() -> None:
    document = parse("kb/warranty.docx", make_docx())
    assert document.title == "Warranty Guide"
    assert [(s.path, s.text) for s in document.sections] == [
        ([], "Every product has a warranty."),
        (["Coverage"], "Manufacturing defects are covered.\n\n- Keep your receipt"),
        (["Coverage", "Periods"], "Part: Battery; Years: 1\n\nPart: Screen; Years: 2"),
        (["Coverage", "Periods", "Exclusions"], "Water damage is not covered."),
        (["Claims"], "Call support to claim."),
    ]


def test_random_bytes_named_docx_are_rejected() -> None:
    body = random.Random(1).randbytes(4096)
    assert reason("a.docx", body).startswith("malformed DOCX: the file is not a valid Office")


def test_zip_that_is_not_a_word_document_is_rejected() -> None:
    assert reason("a.docx", zip_bytes({"hello.txt": b"hi"})).startswith("malformed DOCX")


def test_password_protected_office_file_is_rejected() -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1024)
    assert "password-protected or in the old binary Office format" in reason("a.xlsx", ole)


def test_zip_bomb_is_rejected_before_parsing() -> None:
    bomb = zip_bytes({"[Content_Types].xml": b"<x/>", "word/document.xml": bytes(5_000_000)})
    assert len(bomb) < 50_000
    assert "zip bomb" in reason("a.docx", bomb)


def test_office_file_over_the_unpacked_limit_is_rejected() -> None:
    message = reason("a.docx", make_docx(), ParseLimits(max_unpacked_bytes=10_000))
    assert "unpacks to" in message and "limit" in message


# ----- PowerPoint -----


def test_pptx_has_one_section_per_slide_with_title_and_notes() -> None:
    document = parse("decks/onboarding.pptx", make_pptx())
    assert document.title == "Onboarding"
    assert [(s.page, s.path, s.text) for s in document.sections] == [
        (1, ["Onboarding"], "Create an account\nVerify your email\n\nNotes: Mention the welcome offer"),
        (2, [], "Pricing overview\n\nPlan: Pro; Price: $9"),
        (3, ["Questions"], "Notes: Open the floor"),
    ]  # fmt: skip
    chunks = chunk_document("c1", "decks/onboarding.pptx", make_pptx(), None)
    assert [(c.page, c.section) for c in chunks] == [(1, "Onboarding"), (2, None), (3, "Questions")]


# ----- Excel and CSV tables -----


def test_xlsx_rows_become_records_with_headers_per_visible_sheet() -> None:
    document = parse("data/price-list.xlsx", make_xlsx())
    assert document.title == "Price list"
    assert [(s.path, s.atomic, s.text) for s in document.sections] == [
        (
            ["Prices"],
            False,
            "SKU: A1; Name: Widget; Price: 9.5; Since: 2024-01-02\n\n"
            "SKU: A2; Price: 10\n\n"
            "SKU: A3; Name: Gadget 3; Price: 3",
        ),
        (["Stores"], False, "City: Oslo; Open: yes"),
    ]  # the hidden "Lookup" sheet is left out


def test_large_sheet_is_chunked_into_whole_records() -> None:
    chunks = chunk_document("c1", "prices.xlsx", make_xlsx(rows=400), None)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.section in ("Prices", "Stores")
        for record in chunk.text.split("\n\n"):  # no record is cut between chunks
            assert record.startswith(("SKU: ", "City: ")), record


def test_sheet_over_the_row_limit_is_rejected() -> None:
    assert "more than 50 rows" in reason("a.xlsx", make_xlsx(rows=80), ParseLimits(max_rows=50))


def test_xlsx_with_an_xml_entity_bomb_is_rejected() -> None:
    entities = '<!ENTITY a0 "lol">' + "".join(
        f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10)
    )
    sheet = (
        f'<?xml version="1.0"?><!DOCTYPE worksheet [{entities}]><worksheet xmlns="http://schemas'
        '.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" '
        't="inlineStr"><is><t>&a9;</t></is></c></row></sheetData></worksheet>'
    )
    body = replace_member(make_xlsx(), "xl/worksheets/sheet1.xml", sheet.encode())
    assert reason("a.xlsx", body).startswith("malformed XLSX")


def test_csv_rows_become_records_and_ragged_rows_are_fine() -> None:
    body = b'Name,City,Notes\nAda,London,"likes\nmaths"\nBob,Paris\n\nCy,Rome,x,extra\n'
    document = parse("people.csv", body)
    assert document.title == "People"
    [section] = document.sections
    assert not section.atomic
    assert section.text.split("\n\n") == [
        "Name: Ada; City: London; Notes: likes maths",  # a record stays on one line
        "Name: Bob; City: Paris",
        "Name: Cy; City: Rome; Notes: x; Column 4: extra",
    ]


@pytest.mark.parametrize(("name", "sep"), [("p.csv", ";"), ("p.csv", "\t"), ("p.tsv", "\t")])
def test_delimiter_is_sniffed(name: str, sep: str) -> None:
    body = f"Produit{sep}Prix\nCafé, crème{sep}3\nThé{sep}2\n".encode()
    text = parse(name, body).sections[0].text
    assert text == "Produit: Café, crème; Prix: 3\n\nProduit: Thé; Prix: 2"


def test_csv_with_question_and_answer_columns_is_an_faq() -> None:
    body = b"Category,Question,Answer\nbilling,How do I pay?,By card.\nx,Empty answer?,\n"
    document = parse("faq.csv", body)
    assert [(s.path, s.atomic, s.text) for s in document.sections] == [
        (["How do I pay?"], True, "Q: How do I pay?\nA: By card."),
    ]


# ----- JSON FAQ exports -----


def test_json_faq_list_becomes_atomic_pairs() -> None:
    body = json.dumps(
        [
            {"question": "Can I return an item?", "answer": "Yes, within 30 days."},
            {"Q": "Do you ship abroad?", "A": "To 40 countries."},
            {"title": "How do refunds work?", "body": "<p>Refunds take <b>5</b> days.</p>"},
            {"question": "No answer"},
            "not an object",
        ]
    ).encode()
    document = parse("faq.json", body)
    assert document.title == "Faq"
    assert [(s.path, s.atomic, s.text) for s in document.sections] == [
        (["Can I return an item?"], True, "Q: Can I return an item?\nA: Yes, within 30 days."),
        (["Do you ship abroad?"], True, "Q: Do you ship abroad?\nA: To 40 countries."),
        (["How do refunds work?"], True, "Q: How do refunds work?\nA: Refunds take 5 days."),
    ]


def test_json_faq_under_a_key_keeps_each_pair_in_one_chunk() -> None:
    answer = "Long answer sentence. " * 80  # ~1760 chars: more than one default chunk
    body = json.dumps({"Title": "Help", "FAQs": [{"Question": "Why?", "Content": answer}]})
    chunks = chunk_document("c1", "help.json", body.encode(), None)
    assert [(c.title, c.section) for c in chunks] == [("Help", "Why?")]
    assert chunks[0].text == f"Q: Why?\nA: {answer.strip()}"


@pytest.mark.parametrize(
    "body", [b'{"name": "x"}', b"[1, 2]", b'[{"id": 1}]', b'"text"', b'{"faqs": {}}']
)
def test_json_that_is_not_an_faq_is_rejected(body: bytes) -> None:
    assert reason("data.json", body) == (
        "JSON files must be an FAQ export: a list of {question, answer} objects"
    )


def test_invalid_json_is_rejected_with_its_position() -> None:
    assert reason("faq.json", b'[{"question": "a",\n "answer": }]').startswith(
        "invalid JSON (Expecting value at line 2, column 12)"
    )


# ----- HTML -----

PAGE = b"""<!doctype html>
<html><head><title>Returns</title><style>p {color: red}</style><script>track()</script></head>
<body>
<header><nav><a href="/">Home</a> <a href="/blog">Blog</a></nav><h1>Acme Help</h1></header>
<div class="layout">
  <aside>Related: gift cards</aside>
  <main>
    <header><h1>Returns</h1><p>Updated today</p></header>
    <p>Most items can be returned.<!-- internal note --> Read on.</p>
    <h2>Return window</h2>
    <p>Within <b>30 days</b>.<br>Keep the receipt.</p>
    <ul><li>Unopened items</li><li>Unused items</li></ul>
    <h3>Exceptions</h3>
    <table><thead><tr><th>Item</th><th>Window</th></tr></thead>
      <tbody><tr><td>Custom build</td><td>none</td></tr><tr><td>Sale</td><td>14 days</td></tr></tbody>
    </table>
    <div hidden>draft text</div>
    <form>Search <input name=q></form>
    <h2>Refunds</h2><p>Refunds take 5 days.</p>
  </main>
</div>
<footer>Copyright Acme</footer>
</body></html>"""


def test_html_keeps_main_content_sectioned_by_headings() -> None:
    document = parse("help/returns.html", PAGE)
    assert document.title == "Returns"
    assert [(s.path, s.text) for s in document.sections] == [
        ([], "Updated today\n\nMost items can be returned. Read on."),
        (
            ["Return window"],
            "Within 30 days.\nKeep the receipt.\n\n- Unopened items\n- Unused items",
        ),
        (["Return window", "Exceptions"], "Item: Custom build; Window: none\n\nItem: Sale; Window: 14 days"),
        (["Refunds"], "Refunds take 5 days."),
    ]  # fmt: skip
    text = " ".join(s.text for s in document.sections)
    for boilerplate in (
        "Home",
        "Blog",
        "gift cards",
        "Copyright",
        "track",
        "color",
        "draft",
        "Search",
    ):
        assert boilerplate not in text


def test_html_without_main_uses_body_minus_boilerplate_and_first_h1_as_title() -> None:
    page = b"""<html><body><div role="navigation">Menu</div><header>Logo</header>
    <h1>Shipping</h1><p>We ship daily.</p><h2>Abroad</h2><p>40 countries.</p>
    <div role="contentinfo">Legal</div><footer>Foot</footer></body></html>"""
    document = parse("ship.htm", page)
    assert document.title == "Shipping"
    assert [(s.path, s.text) for s in document.sections] == [
        ([], "We ship daily."),
        (["Abroad"], "40 countries."),
    ]


def test_html_prefers_role_main_and_honours_declared_charset() -> None:
    page = (
        b'<html><head><meta charset="iso-8859-1"></head><body><div>Sidebar links</div>'
        b'<div role="main"><h1>Caf\xe9</h1><p>Cr\xe8me br\xfbl\xe9e</p></div></body></html>'
    )
    document = parse("menu.html", page)
    assert document.title == "Café"
    assert [(s.path, s.text) for s in document.sections] == [([], "Crème brûlée")]


def test_html_page_wrapped_in_a_form_keeps_its_content() -> None:
    page = b"""<html><head><title>Portal</title></head><body><form id="aspnetForm">
    <div class="menu"><form><input name="q"> Search</form></div>
    <h2>Reset your password</h2><p>Use the link on the sign-in page.</p></form></body></html>"""
    document = parse("portal.aspx.html", page)
    assert [(s.path, s.text) for s in document.sections] == [
        (["Reset your password"], "Use the link on the sign-in page.")
    ]


def test_html_with_only_navigation_has_no_text() -> None:
    page = b"<html><body><nav><a href='/'>Home</a></nav><footer>Foot</footer></body></html>"
    assert reason("nav.html", page) == "no text could be extracted from the file"


def test_binary_file_named_html_is_rejected() -> None:
    assert "binary" in reason("x.html", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")


# ----- nothing escapes as a library error -----


@pytest.mark.parametrize("ext", [".pdf", ".docx", ".pptx", ".xlsx", ".csv", ".json", ".html"])
def test_random_bytes_raise_only_permanent_ingest_errors(ext: str) -> None:
    body = random.Random(ext).randbytes(3000)
    with pytest.raises(PermanentIngestError):
        parse(f"junk{ext}", body)


@pytest.mark.parametrize("ext", [".docx", ".pptx", ".xlsx"])
def test_truncated_office_files_are_rejected(ext: str) -> None:
    body = {".docx": make_docx, ".pptx": make_pptx, ".xlsx": make_xlsx}[ext]()
    assert "malformed" in reason(f"a{ext}", body[: len(body) // 2])


def test_office_file_of_the_wrong_kind_is_rejected() -> None:
    assert reason("a.docx", make_xlsx()).startswith("malformed DOCX")
