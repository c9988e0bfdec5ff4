"""What the crawler needs from a fetched HTML page: links, canonical URL, robots meta
directives, title, and a hash of the main content (change and duplicate detection).

The main content is the ingest parser's (``copilot.ingest.parsing.html``): the hash changes
exactly when what gets indexed changes, and pages that differ only in navigation or footers
count as duplicates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from copilot.errors import PermanentIngestError
from copilot.ingest.parsing.html import load_html, main_content
from copilot.sources.websites.urls import normalize_url


@dataclass(frozen=True)
class PageInfo:
    title: str
    canonical: str | None
    links: list[str]
    text_hash: str
    noindex: bool
    nofollow: bool


def read_page(body: bytes, charset: str | None, url: str, user_agent: str) -> PageInfo:
    try:
        page = load_html(body, charset)
    except PermanentIngestError:  # nothing in it: stored as is, hashed by its bytes
        return PageInfo("", None, [], _sha256(body), noindex=False, nofollow=False)
    root = page.root
    base = url
    base_tag = next((e for e in root.iter("base") if e.get("href")), None)
    if base_tag is not None:
        base = normalize_url(base_tag.get("href"), url) or url
    canonical = None
    for link in root.iter("link"):
        rel = (link.get("rel") or "").lower().split()
        if "canonical" in rel and link.get("href"):
            canonical = normalize_url(link.get("href"), base)
            break
    directives = _robots_directives(root, user_agent)
    links = [str(a.get("href")) for a in root.iter("a", "area") if a.get("href") is not None]
    title = _first_text(root, "title") or _first_text(root, "h1")
    # main_content removes the boilerplate from the tree: links and metadata are read first.
    document = main_content(page, fallback_title=title)
    text = "\n\n".join(
        " > ".join(s.path) + "\n" + s.text for s in document.sections if s.text.strip()
    )
    return PageInfo(
        title=title,
        canonical=canonical,
        links=[u for href in links if (u := normalize_url(href, base)) is not None],
        text_hash=_sha256(f"{document.title}\n{text}".encode()) if text else _sha256(body),
        noindex="noindex" in directives or "none" in directives,
        nofollow="nofollow" in directives or "none" in directives,
    )


def _robots_directives(root: Any, user_agent: str) -> set[str]:
    """``<meta name="robots">`` and ``<meta name="copilotcrawler">`` directives."""
    agent = user_agent.split("/")[0].lower()
    directives: set[str] = set()
    for meta in root.iter("meta"):
        name, content = meta.get("name"), meta.get("content")
        if name is not None and content is not None and name.lower() in ("robots", agent):
            directives.update(d.strip().lower() for d in content.split(","))
    return directives


def _first_text(root: Any, tag: str) -> str:
    element = next(root.iter(tag), None)
    return " ".join("".join(element.itertext()).split()) if element is not None else ""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data, usedforsecurity=False).hexdigest()
