"""Sitemaps: page URLs a site lists (robots.txt ``Sitemap:`` lines and the default
/sitemap.xml), following sitemap index files; gzip is understood. Bounded in files and bytes."""

from __future__ import annotations

import gzip
import io
import logging
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

from copilot.sources.websites.fetch import Fetcher, FetchError
from copilot.sources.websites.models import CrawlFailure, CrawlResult
from copilot.sources.websites.robots import Robots
from copilot.sources.websites.urls import SiteScope, normalize_url

log = logging.getLogger(__name__)

MAX_SITEMAP_FILES = 20
MAX_SITEMAP_BYTES = 10 * 1024 * 1024  # decompressed; the protocol allows 50 MB, we read less


def read_sitemaps(
    fetcher: Fetcher,
    robots: Robots,
    start_urls: list[str],
    scope: SiteScope,
    result: CrawlResult,
    limit: int,
) -> list[str]:
    """Up to ``limit`` page URLs; sitemap files read and failures of named ones go to
    ``result``."""
    queue: list[tuple[str, bool]] = []  # (sitemap URL, named somewhere: failures are reported)
    for start in start_urls:
        for listed in robots.rules(start).sitemaps():
            normalized = normalize_url(listed, start)
            if normalized is not None:
                queue.append((normalized, True))
        parts = urlsplit(start)
        queue.append((f"{parts.scheme}://{parts.netloc}/sitemap.xml", False))
    seen: set[str] = set()
    pages: list[str] = []
    while queue and len(seen) < MAX_SITEMAP_FILES:
        url, named = queue.pop(0)
        if url in seen:
            continue
        seen.add(url)
        if not scope.contains(url):
            log.info("sitemap on another site ignored: %s", url)
            continue
        try:
            resp = fetcher.follow(url, max_bytes=MAX_SITEMAP_BYTES, accept=None, scope=scope)
            body = resp.body or b""
            if body[:2] == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=io.BytesIO(body)) as gz:
                    body = gz.read(MAX_SITEMAP_BYTES + 1)
                if len(body) > MAX_SITEMAP_BYTES:
                    raise FetchError("the unpacked sitemap is too large")
            locs, children = parse_sitemap(body)
        except FetchError as e:
            if named:
                result.failures.append(
                    CrawlFailure(url, f"sitemap: {e.reason}", e.status, e.transient)
                )
            continue
        except (ET.ParseError, OSError, EOFError) as e:
            if named:
                result.failures.append(CrawlFailure(url, f"sitemap is not valid XML: {e}"))
            continue
        result.sitemaps.append(url)
        queue.extend((child, True) for child in children)
        for loc in locs:
            if len(pages) >= limit:
                result.truncated = (
                    f"the sitemaps list more than max_pages={limit} pages: not all were read"
                )
                return pages
            pages.append(loc)
    return pages


def parse_sitemap(body: bytes) -> tuple[list[str], list[str]]:
    """(page URLs, child sitemap URLs) of a urlset or a sitemap index."""
    root = ET.fromstring(body)  # expat >= 2.4 refuses entity-expansion bombs

    def local(tag: str) -> str:
        return tag.rsplit("}", 1)[-1]

    def locs(item_tag: str) -> list[str]:
        out = []
        for item in root:
            if local(item.tag) != item_tag:
                continue
            for child in item:
                if local(child.tag) == "loc" and child.text and child.text.strip():
                    out.append(child.text.strip())
        return out

    kind = local(root.tag)
    if kind == "urlset":
        return locs("url"), []
    if kind == "sitemapindex":
        return [], locs("sitemap")
    raise ET.ParseError(f"unexpected root element <{kind}>")
