"""HTML pages: the main content (no navigation boilerplate), sectioned by h1-h4 headings.

Parsed with lxml's HTML parser directly: BeautifulSoup on top of lxml is several times slower
per page, and every page of a crawl goes through here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from copilot.errors import PermanentIngestError
from copilot.ingest.parsing.document import ParsedDocument, ParseLimits, Section, title_from_key
from copilot.ingest.parsing.records import records_section, table_records
from copilot.ingest.parsing.text import decode_text

_BLOCK, _LINE = "\x1e", "\x1f"  # paragraph / line break markers while walking the tree
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4}
_BLOCK_TAGS = (
    "p div section article main ul ol dl dt dd blockquote figure figcaption h5 h6 hr address "
    "details summary fieldset center"
)
_BLOCKS = frozenset(_BLOCK_TAGS.split())
_BOILERPLATE_TAG_NAMES = (
    "script style noscript template nav aside footer svg iframe button select dialog "
    "object embed canvas"
)
_BOILERPLATE_TAGS = _BOILERPLATE_TAG_NAMES.split()
_CONTENT_TAGS = ("main", "article", "h1", "h2", "h3", "p", "table")
_BOILERPLATE_ROLES = frozenset({"navigation", "banner", "contentinfo", "complementary", "search"})
# Cheap pre-checks on the raw text: XPath attribute scans cost ~1 µs per element.
_MAYBE_FLAGGED = re.compile(r"\b(hidden|role\s*=)", re.I)
_MAYBE_ROLE_MAIN = re.compile(r"role\s*=\s*[\"']?main\b", re.I)
_BREAKS = _BLOCKS | {"h1", "h2", "h3", "h4", "table", "pre"}
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")


def parse_html(doc_key: str, body: bytes, limits: ParseLimits) -> ParsedDocument:
    try:
        return main_content(load_html(body), title_from_key(doc_key))
    except PermanentIngestError:
        raise
    except Exception as e:
        raise PermanentIngestError(
            f"the HTML could not be parsed ({type(e).__name__}: {e}): save the page again and "
            "upload it"
        ) from e


@dataclass
class HtmlPage:
    """A page parsed once: the crawler reads its links from ``root``, then its main content."""

    root: Any  # the lxml element of the whole document
    source: str  # the decoded markup, for cheap regex pre-checks before tree scans


def load_html(body: bytes, charset: str | None = None) -> HtmlPage:
    """Decode as browsers do (byte-order mark, then ``charset`` from the HTTP header, then
    ``<meta charset>``, UTF-8, cp1252) and parse. Raises PermanentIngestError."""
    from lxml import etree

    text = _decode(body, charset)
    try:
        root = etree.fromstring(text, _parser())
    except etree.XMLSyntaxError as e:  # e.g. "Document is empty"
        raise PermanentIngestError("the HTML page has no content") from e
    if root is None:
        raise PermanentIngestError("the HTML page has no content")
    return HtmlPage(root, text)


def main_content(page: HtmlPage, fallback_title: str) -> ParsedDocument:
    """The page's main content (no navigation boilerplate), sectioned by h1-h4 headings.
    Boilerplate is removed from ``page.root`` in place."""
    root, text = page.root, page.source
    head = root.find("head")
    title = _norm(_text(head.find("title"))) if head is not None else ""
    content = _content_root(root, text)
    if content is None:
        raise PermanentIngestError("the HTML page has no body content")
    if content.tag == "body":
        _drop(content, list(content.iter("header")))
    else:  # inside <main>/<article> a <header> usually holds the page's own heading
        _drop(content, [h for h in content.iter("header") if not _holds(h, "h1", "h2", "h3")])
    _drop_boilerplate(content, text)
    title = title or _norm(_text(next(content.iter("h1"), None))) or fallback_title
    sections = _Walker(sectioned=True, skip_heading=title).walk(content)
    return ParsedDocument(title=title, sections=sections)


def fragment_text(html: str) -> str:
    """Plain text of an HTML fragment (e.g. an FAQ answer exported as HTML)."""
    from lxml import etree

    text = _scrub(html)
    try:
        body = etree.fromstring(f"<html><body>{text}</body></html>", _parser()).find("body")
    except Exception:
        body = None
    if body is None:
        return " ".join(re.sub(r"<[^>]+>", " ", html).split())
    _drop_boilerplate(body, text)
    return "\n\n".join(s.text for s in _Walker(sectioned=False).walk(body))


def _content_root(root: Any, text: str) -> Any:
    main = next(root.iter("main"), None)
    if main is None and _MAYBE_ROLE_MAIN.search(text):
        main = next((e for e in root.iter() if e.get("role") == "main"), None)
    if main is not None:
        return main
    articles = list(root.iter("article"))
    return articles[0] if len(articles) == 1 else next(root.iter("body"), None)


def _drop_boilerplate(container: Any, text: str) -> None:
    _drop(container, list(container.iter(*_BOILERPLATE_TAGS)))
    # Search boxes and sign-up forms go; a form wrapping the whole page (ASP.NET) stays.
    _drop(container, [f for f in container.iter("form") if not _holds(f, *_CONTENT_TAGS)])
    if _MAYBE_FLAGGED.search(text):
        _drop(container, [e for e in container.iter() if _flagged(e)])


def _holds(element: Any, *tags: str) -> bool:
    return next(element.iter(*tags), None) is not None


def _flagged(element: Any) -> bool:
    attrib = element.attrib
    return bool(attrib) and (
        "hidden" in attrib
        or attrib.get("aria-hidden") == "true"
        or attrib.get("role") in _BOILERPLATE_ROLES
    )


def _drop(container: Any, elements: list[Any]) -> None:
    """Remove elements but keep their tail text (what follows them in their parent)."""
    for element in elements:
        parent = element.getparent()
        if element is container or parent is None:
            continue
        if element.tail:
            previous = element.getprevious()
            if previous is not None:
                previous.tail = (previous.tail or "") + element.tail
            else:
                parent.text = (parent.text or "") + element.tail
        parent.remove(element)


class _Walker:
    def __init__(self, *, sectioned: bool, skip_heading: str = "") -> None:
        self.sectioned = sectioned
        self.skip_heading = skip_heading.casefold()
        self.stack: list[tuple[int, str]] = []
        self.parts: list[str] = []
        self.sections: list[Section] = []

    def walk(self, root: Any) -> list[Section]:
        from lxml import etree

        parts = self.parts
        walker = etree.iterwalk(root, events=("start", "end"))
        for event, element in walker:
            tag = element.tag
            if event == "end":
                if tag in _BREAKS:
                    parts.append(_BLOCK)
                if element.tail and element is not root:
                    parts.append(element.tail)
                continue
            if tag in _HEADINGS:
                if self.sectioned:
                    self._heading(_HEADINGS[tag], _norm(_text(element)))
                else:
                    parts += [_BLOCK, _text(element)]
                walker.skip_subtree()
            elif tag == "pre":
                parts += [_BLOCK, _LINE.join(_text(element).splitlines())]
                walker.skip_subtree()
            elif tag == "table":
                # Rows become records in a section of their own, chunked a few rows at a time.
                self._flush()
                records = _table(element)
                if records:
                    path = [h for _, h in self.stack]
                    self.sections.append(records_section(records, path))
                walker.skip_subtree()
            else:
                if tag == "br":
                    parts.append(_LINE)
                elif tag == "li":
                    parts.append(_LINE + "- ")
                elif tag in _BLOCKS:
                    parts.append(_BLOCK)
                if element.text:
                    parts.append(element.text)
        self._flush()
        return self.sections

    def _heading(self, level: int, heading: str) -> None:
        self._flush()
        if not heading or (
            level == 1 and not self.stack and heading.casefold() == self.skip_heading
        ):
            return
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, heading))

    def _flush(self) -> None:
        blocks = []
        for block in "".join(self.parts).split(_BLOCK):
            if block.isspace() or not block:
                continue
            if _LINE in block:
                lines = (" ".join(line.split()) for line in block.split(_LINE))
                block = "\n".join(line for line in lines if line and line != "-")
            else:
                block = " ".join(block.split())
            if block and block != "-":
                blocks.append(block)
        self.parts.clear()
        if blocks:
            self.sections.append(Section(text="\n\n".join(blocks), path=[h for _, h in self.stack]))


def _table(table: Any) -> list[str]:
    rows = [
        [(cell.tag, _norm(_text(cell))) for cell in row if cell.tag in ("td", "th")]
        for row in _rows(table)
    ]
    rows = [row for row in rows if any(text for _, text in row)]
    if not rows:
        return []
    if all(len(row) == 2 and row[0][0] == "th" and row[1][0] == "td" for row in rows):
        return [f"{row[0][1]}: {row[1][1]}" for row in rows]  # a key/value table
    if max(len(row) for row in rows) == 1:
        return [row[0][1] for row in rows]
    return table_records([text for _, text in row] for row in rows)


def _rows(table: Any) -> list[Any]:
    rows = []
    for child in table:
        if child.tag == "tr":
            rows.append(child)
        elif child.tag in ("thead", "tbody", "tfoot"):
            rows.extend(r for r in child if r.tag == "tr")
    return rows


def _norm(text: str) -> str:
    return " ".join(text.split())


def _scrub(text: str) -> str:
    return _XML_DECL.sub("", text.replace(_BLOCK, " ").replace(_LINE, " ").replace("\x00", ""))


def _decode(body: bytes, charset: str | None = None) -> str:
    if body[:3] == b"\xef\xbb\xbf" or body[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return _scrub(decode_text(body))
    if b"\x00" in body[:8192]:
        decode_text(body)  # raises: the file looks binary
    match = _CHARSET.search(body[:4096])
    for encoding in (charset, match.group(1).decode("ascii") if match else None, "utf-8"):
        if encoding:
            try:
                return _scrub(body.decode(encoding))
            except (LookupError, UnicodeDecodeError):
                pass
    return _scrub(body.decode("cp1252", errors="replace"))  # what browsers assume


def _text(element: Any) -> str:
    return "".join(element.itertext()) if element is not None else ""


def _parser() -> Any:
    from lxml import etree

    # Cheap to build, and lxml parsers must not be shared between threads.
    return etree.HTMLParser(remove_comments=True, remove_pis=True)
