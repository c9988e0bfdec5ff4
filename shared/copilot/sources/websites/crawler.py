"""The public website as a knowledge source: crawl a site, keep its pages in the bucket.

``crawl`` walks one site breadth-first (robots.txt, sitemaps, canonical URLs, duplicate content)
and returns the raw HTML of its pages; turning HTML into text is the ingest pipeline's job.
``sync_site`` stores the pages under ``<copilot_id>/web/<site>/`` (an upload triggers indexing,
a deletion removes the page from the index), re-uploading only pages whose content changed and
removing pages that are gone, never because of an outage.

Everything is bounded: pages (``max_pages``), link depth, bytes per page, seconds per request,
redirects, sitemap files; nothing is retried, a failure is recorded and the crawl goes on.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import threading
import time
import warnings
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

import requests
from bs4 import BeautifulSoup, Tag, XMLParsedAsHTMLWarning
from pydantic import BaseModel, ConfigDict, Field, field_validator

from copilot.ingest.models import SOURCE_URL_META
from copilot.ports import BlobStore, StateStore
from copilot.sources.websites.urls import (
    SiteScope,
    metadata_text,
    normalize_url,
    page_key,
    site_label,
)

log = logging.getLogger(__name__)

# XHTML pages start with an XML declaration; parsing them as HTML is what we want.
warnings.filterwarnings("ignore", category=XMLParsedAsHTMLWarning)

DEFAULT_USER_AGENT = "CopilotCrawler/0.1 (+knowledge indexing)"
TITLE_META = "title"
CONTENT_HASH_META = "content-hash"
MAX_REDIRECTS = 5
MAX_SITEMAP_FILES = 20
MAX_SITEMAP_BYTES = 10 * 1024 * 1024  # decompressed; the protocol allows 50 MB, we read less
MAX_ROBOTS_BYTES = 512 * 1024  # RFC 9309: parse at least 500 KiB
MAX_URL_META_CHARS = 1500  # S3 user metadata is 2 KB in all
STATE_VERSION = 1
STATE_HASH_CHARS = 16  # change detection only: 64 bits keep the state small

_REDIRECT_STATUSES = {301, 302, 303, 307, 308}
_TRANSIENT_STATUSES = {408, 425, 429}
_NOT_CONTENT = ("script", "style", "noscript", "template", "svg")


class CrawlOptions(BaseModel):
    model_config = ConfigDict(frozen=True)

    start_urls: list[str] = Field(min_length=1)
    max_depth: int = Field(3, ge=0, le=50)
    max_pages: int = Field(200, ge=1, le=2000)  # state: ~100 B a page
    timeout_seconds: float = Field(10.0, gt=0, le=300)  # per request, headers and body
    user_agent: str = DEFAULT_USER_AGENT
    allowed_content_types: tuple[str, ...] = ("text/html", "application/xhtml+xml")
    max_page_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    concurrency: int = Field(4, ge=1, le=32)
    follow_sitemaps: bool = True
    # Crawl-delay from robots.txt is honoured up to this many seconds between requests.
    max_crawl_delay_seconds: float = Field(5.0, ge=0, le=60)
    # Optional budget for the whole crawl (e.g. to finish inside a Lambda's time limit).
    max_seconds: float | None = Field(None, gt=0)

    @field_validator("start_urls")
    @classmethod
    def _normalize_start_urls(cls, urls: list[str]) -> list[str]:
        out: list[str] = []
        for url in urls:
            normalized = normalize_url(url)
            if normalized is None:
                raise ValueError(f"not an http(s) URL: {url!r}")
            if normalized not in out:
                out.append(normalized)
        return out


@dataclass(frozen=True)
class CrawledPage:
    url: str  # the URL fetched (after same-site redirects)
    canonical_url: str  # where the page is stored and what citations link to
    title: str
    html: bytes
    content_hash: str  # sha256 of the normalised main text (of the raw body if it has none)
    status: int
    depth: int


@dataclass(frozen=True)
class CrawlFailure:
    url: str
    reason: str  # what happened and what a person can do about it
    status: int | None = None  # HTTP status, when there was one
    transient: bool = False  # may work next time (timeouts, 5xx): never a reason to delete

    @property
    def gone(self) -> bool:
        """The site says the page no longer exists."""
        return self.status in (404, 410)


SkipReason = Literal["robots", "duplicate", "off-site", "non-html", "depth", "limit"]


@dataclass(frozen=True)
class CrawlSkip:
    url: str
    reason: SkipReason
    detail: str


@dataclass
class CrawlResult:
    pages: list[CrawledPage] = field(default_factory=list)
    failures: list[CrawlFailure] = field(default_factory=list)
    skipped: list[CrawlSkip] = field(default_factory=list)
    # Problems with the start URLs themselves (also in ``failures``): the crawl saw too little
    # of the site to conclude that any page is gone.
    start_failures: list[CrawlFailure] = field(default_factory=list)
    truncated: str | None = None  # why the crawl stopped before it had seen everything
    sitemaps: list[str] = field(default_factory=list)  # sitemap files read
    fetched: int = 0  # page requests made

    @property
    def complete(self) -> bool:
        """Every reachable page was tried, and none failed in a way that may pass."""
        return self.truncated is None and not any(f.transient for f in self.failures)


# --------------------------------------------------------------------------------- fetching


class _FetchError(Exception):
    def __init__(self, reason: str, *, status: int | None = None, transient: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.transient = transient


@dataclass
class _Response:
    url: str
    status: int
    location: str | None = None  # absolute, for redirects
    media_type: str = ""
    charset: str | None = None
    body: bytes | None = None  # None: not read (redirect, or a type we do not want)


@dataclass
class _Parsed:
    title: str
    canonical: str | None
    links: list[str]
    text_hash: str
    noindex: bool
    nofollow: bool


@dataclass
class _Outcome:
    url: str
    final_url: str = ""
    status: int = 0
    body: bytes | None = None
    parsed: _Parsed | None = None
    failure: CrawlFailure | None = None
    skip: CrawlSkip | None = None


class _Throttle:
    """Spaces requests to one host by its robots.txt Crawl-delay (best effort)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._delay: dict[str, float] = {}
        self._next: dict[str, float] = {}

    def set_delay(self, netloc: str, seconds: float) -> None:
        with self._lock:
            self._delay[netloc] = seconds

    def wait(self, netloc: str) -> None:
        with self._lock:
            delay = self._delay.get(netloc, 0.0)
            if not delay:
                return
            now = time.monotonic()
            slot = max(now, self._next.get(netloc, 0.0))
            self._next[netloc] = slot + delay
        if slot > now:
            time.sleep(slot - now)


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:g} s"


def _status_reason(status: int) -> str:
    if status in (404, 410):
        word = "not found" if status == 404 else "gone"
        return f"{word} (HTTP {status}): the page was removed or the link to it is broken"
    if status in (401, 403):
        return (
            f"access denied (HTTP {status}): only public pages can be indexed; "
            "make the page public or remove the link"
        )
    if status == 429:
        return "rate-limited by the site (HTTP 429): lower the crawl concurrency or sync later"
    if status >= 500:
        return (
            f"server error (HTTP {status}): the site failed to serve the page; "
            "it is tried again on the next sync"
        )
    return f"HTTP {status}: the site refused the request"


class _Fetcher:
    def __init__(self, session: requests.Session, options: CrawlOptions) -> None:
        self.session = session
        self.options = options
        self.throttle = _Throttle()

    def request(
        self,
        url: str,
        *,
        max_bytes: int,
        accept: tuple[str, ...] | None,
    ) -> _Response:
        """One GET, redirects not followed. Raises _FetchError with a reason a person can act
        on. ``accept``: media types whose body is read (None: any)."""
        timeout = self.options.timeout_seconds
        self.throttle.wait(urlsplit(url).netloc)
        started = time.monotonic()
        headers = {"User-Agent": self.options.user_agent}
        if accept:
            headers["Accept"] = ", ".join(accept) + ", */*;q=0.1"
        try:
            resp = self.session.get(
                url, headers=headers, timeout=timeout, allow_redirects=False, stream=True
            )
        except requests.Timeout as e:
            raise _FetchError(
                f"timed out after {_fmt_seconds(timeout)}: the server did not answer in time",
                transient=True,
            ) from e
        except requests.exceptions.SSLError as e:
            raise _FetchError(
                "TLS error: the site's certificate could not be verified; fix the certificate"
            ) from e
        except requests.ConnectionError as e:
            raise _FetchError(
                f"could not connect to {urlsplit(url).netloc}: the site is down or unreachable",
                transient=True,
            ) from e
        except requests.RequestException as e:
            raise _FetchError(f"the request failed: {e}", transient=True) from e
        with resp:
            status = resp.status_code
            location = resp.headers.get("Location")
            if status in _REDIRECT_STATUSES and location:
                return _Response(url, status, location=location)
            if status >= 400:
                raise _FetchError(
                    _status_reason(status),
                    status=status,
                    transient=status >= 500 or status in _TRANSIENT_STATUSES,
                )
            if not 200 <= status < 300:
                raise _FetchError(f"unexpected HTTP {status}", status=status)
            media_type, charset = _content_type(resp.headers.get("Content-Type", ""))
            if accept and media_type and media_type not in accept:
                return _Response(url, status, media_type=media_type)
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise _FetchError(_too_large(max_bytes))
            body = self._read(resp, max_bytes, started)
        if accept and not media_type and not _looks_like_html(body):
            return _Response(url, status, media_type="(no content type)")
        return _Response(url, status, media_type=media_type, charset=charset, body=body)

    def _read(self, resp: requests.Response, max_bytes: int, started: float) -> bytes:
        timeout = self.options.timeout_seconds
        buf = io.BytesIO()
        try:
            for chunk in resp.iter_content(64 * 1024):
                buf.write(chunk)
                if buf.tell() > max_bytes:
                    raise _FetchError(_too_large(max_bytes))
                if time.monotonic() - started > timeout:
                    raise _FetchError(
                        f"timed out after {_fmt_seconds(timeout)}: the page downloaded too slowly",
                        transient=True,
                    )
        except requests.RequestException as e:  # read timeout or connection dropped mid-body
            raise _FetchError(
                f"the download stalled or broke off (limit {_fmt_seconds(timeout)} per request)",
                transient=True,
            ) from e
        return buf.getvalue()

    def follow(
        self,
        url: str,
        *,
        max_bytes: int,
        accept: tuple[str, ...] | None,
        scope: SiteScope | None = None,
    ) -> _Response:
        """GET following up to MAX_REDIRECTS redirects (robots.txt, sitemaps); with ``scope``,
        only redirects that stay on the site."""
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            resp = self.request(current, max_bytes=max_bytes, accept=accept)
            if resp.location is None:
                return resp
            target = normalize_url(resp.location, current)
            if target is None:
                raise _FetchError(f"redirected to a non-web address: {resp.location}")
            if scope is not None and not scope.contains(target):
                raise _FetchError(f"redirected off-site to {target} — not followed")
            current = target
        raise _FetchError(f"more than {MAX_REDIRECTS} redirects (last: {current})")


def _content_type(header: str) -> tuple[str, str | None]:
    media_type, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'")
    return media_type.strip().lower(), charset


def _looks_like_html(body: bytes) -> bool:
    head = body[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head


def _too_large(max_bytes: int) -> str:
    return f"larger than {max_bytes / 1024 / 1024:g} MB: not stored (raise max_page_bytes?)"


# ----------------------------------------------------------------------------- robots.txt


class _RobotsRules:
    def __init__(self, parser: RobotFileParser | None, problem: str | None) -> None:
        self.parser = parser  # None: everything allowed (no robots.txt)
        self.problem = problem  # set: robots.txt unreadable for now, so nothing is allowed

    def allowed(self, url: str, user_agent: str) -> bool:
        if self.problem is not None:
            return False
        return self.parser is None or self.parser.can_fetch(user_agent, url)


class _Robots:
    """robots.txt per origin, fetched once. RFC 9309: 4xx means no rules; a server error or an
    unreachable server means crawl nothing (for now)."""

    def __init__(self, fetcher: _Fetcher) -> None:
        self._fetcher = fetcher
        self._lock = threading.Lock()
        self._rules: dict[str, _RobotsRules] = {}

    def rules(self, url: str) -> _RobotsRules:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        with self._lock:
            if origin not in self._rules:
                self._rules[origin] = self._load(origin, parts.netloc)
            return self._rules[origin]

    def allowed(self, url: str) -> bool:
        return self.rules(url).allowed(url, self._fetcher.options.user_agent)

    def _load(self, origin: str, netloc: str) -> _RobotsRules:
        url = origin + "/robots.txt"
        try:
            resp = self._fetcher.follow(url, max_bytes=MAX_ROBOTS_BYTES, accept=None)
        except _FetchError as e:
            if e.status is not None and 400 <= e.status < 500 and not e.transient:
                return _RobotsRules(None, None)
            if e.transient:
                return _RobotsRules(
                    None,
                    f"{url} could not be read ({e.reason}); robots rules say to crawl "
                    "nothing until it can be read: try again later",
                )
            return _RobotsRules(None, None)  # e.g. redirect loop: treated as no robots.txt
        parser = RobotFileParser(url)
        parser.parse((resp.body or b"").decode("utf-8", errors="replace").splitlines())
        delay = parser.crawl_delay(self._fetcher.options.user_agent)
        if delay:
            capped = min(float(delay), self._fetcher.options.max_crawl_delay_seconds)
            self._fetcher.throttle.set_delay(netloc, capped)
        return _RobotsRules(parser, None)

    def sitemaps(self, url: str) -> list[str]:
        parser = self.rules(url).parser
        return list(parser.site_maps() or []) if parser is not None else []


# ------------------------------------------------------------------------------- sitemaps


def _read_sitemaps(
    fetcher: _Fetcher,
    robots: _Robots,
    scope: SiteScope,
    result: CrawlResult,
    limit: int,
) -> list[str]:
    """Page URLs listed by the sites' sitemaps (robots.txt ``Sitemap:`` lines and the default
    /sitemap.xml), following sitemap index files; gzip is understood."""
    queue: list[tuple[str, bool]] = []  # (sitemap URL, named somewhere: failures are reported)
    for start in fetcher.options.start_urls:
        for listed in robots.sitemaps(start):
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
                    raise _FetchError("the unpacked sitemap is too large")
            locs, children = _parse_sitemap(body)
        except _FetchError as e:
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


def _parse_sitemap(body: bytes) -> tuple[list[str], list[str]]:
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


# ------------------------------------------------------------------------------- parsing


def _parse_html(body: bytes, charset: str | None, url: str, user_agent: str) -> _Parsed:
    soup = BeautifulSoup(body, "html.parser", from_encoding=charset)
    base = url
    base_tag = soup.find("base", href=True)
    if isinstance(base_tag, Tag):
        base = normalize_url(str(base_tag["href"]), url) or url
    canonical = None
    for link in soup.find_all("link", href=True):
        if "canonical" in [r.lower() for r in link.get_attribute_list("rel") if r]:
            canonical = normalize_url(str(link["href"]), base)
            break
    directives: set[str] = set()
    agent = user_agent.split("/")[0].lower()
    for meta in soup.find_all("meta", attrs={"name": True, "content": True}):
        if str(meta["name"]).lower() in ("robots", agent):
            directives.update(d.strip().lower() for d in str(meta["content"]).split(","))
    links = [str(a["href"]) for a in soup.find_all(["a", "area"], href=True)]
    title = ""
    if soup.title and soup.title.get_text(strip=True):
        title = soup.title.get_text(" ", strip=True)
    elif (h1 := soup.find("h1")) is not None:
        title = h1.get_text(" ", strip=True)
    for tag in soup.find_all(_NOT_CONTENT):
        tag.decompose()
    main = soup.find("main") or soup.select_one('[role="main"]') or soup.find("article")
    root = main or soup.body or soup
    text = " ".join(root.get_text(" ").split())
    text_hash = hashlib.sha256(
        f"{title}\n{text}".encode() if text else body, usedforsecurity=False
    ).hexdigest()
    return _Parsed(
        title=" ".join(title.split()),
        canonical=canonical,
        links=[u for href in links if (u := normalize_url(href, base)) is not None],
        text_hash=text_hash,
        noindex="noindex" in directives or "none" in directives,
        nofollow="nofollow" in directives or "none" in directives,
    )


# -------------------------------------------------------------------------------- the crawl


class _Crawler:
    def __init__(self, options: CrawlOptions, session: requests.Session) -> None:
        self.options = options
        self.fetcher = _Fetcher(session, options)
        self.robots = _Robots(self.fetcher)
        self.scope = SiteScope(options.start_urls)
        self.result = CrawlResult()
        self.deadline = (
            time.monotonic() + options.max_seconds if options.max_seconds is not None else None
        )
        self.seen: set[str] = set()  # URLs queued, fetched or deliberately not fetched
        self.stored: set[str] = set()  # canonical URLs of the pages kept
        self.hashes: dict[str, str] = {}  # content hash -> canonical URL kept for it

    def run(self) -> CrawlResult:
        frontier = self._seeds()
        depth = 0
        with ThreadPoolExecutor(
            max_workers=self.options.concurrency, thread_name_prefix="crawl"
        ) as pool:
            while frontier:
                budget = self.options.max_pages - self.result.fetched
                batch, rest = frontier[:budget], frontier[budget:]
                self._skip_for_limit(rest, f"max_pages={self.options.max_pages} reached")
                self.result.fetched += len(batch)
                outcomes = list(pool.map(self._fetch_page, batch))
                frontier = []
                for outcome in outcomes:  # sequential, in BFS order: deterministic results
                    frontier.extend(self._accept(outcome, depth))
                depth += 1
                if frontier and self.result.fetched >= self.options.max_pages:
                    self._skip_for_limit(frontier, f"max_pages={self.options.max_pages} reached")
                    frontier = []
        return self.result

    def _skip_for_limit(self, urls: list[str], why: str) -> None:
        if not urls:
            return
        self.result.truncated = self.result.truncated or (
            f"stopped early ({why}): {len(urls)} more page(s) were found but not fetched"
        )
        self.result.skipped.extend(CrawlSkip(u, "limit", why) for u in urls)

    def _seeds(self) -> list[str]:
        seeds: list[str] = []
        for url in self.options.start_urls:
            self.seen.add(url)
            rules = self.robots.rules(url)
            if rules.problem is not None:
                self._start_failed(CrawlFailure(url, rules.problem, transient=True))
            elif not rules.allowed(url, self.options.user_agent):
                self.result.skipped.append(CrawlSkip(url, "robots", "robots.txt disallows it"))
                self._start_failed(
                    CrawlFailure(
                        url,
                        f"robots.txt disallows the start URL for {self.options.user_agent}: "
                        "allow the crawler in robots.txt or choose another start URL",
                    )
                )
            else:
                seeds.append(url)
        if self.options.follow_sitemaps:
            listed = _read_sitemaps(
                self.fetcher, self.robots, self.scope, self.result, self.options.max_pages
            )
            for url in listed:
                normalized = normalize_url(url)
                if normalized is not None:
                    seeds.extend(self._admit(normalized, 0))
        return seeds

    def _start_failed(self, failure: CrawlFailure) -> None:
        self.result.start_failures.append(failure)
        self.result.failures.append(failure)

    def _admit(self, url: str, depth: int) -> list[str]:
        """[url] if it should be fetched at ``depth``; records why not otherwise."""
        if url in self.seen:
            return []
        self.seen.add(url)
        if not self.scope.contains(url):
            self.result.skipped.append(CrawlSkip(url, "off-site", "another site: not followed"))
            return []
        if depth > self.options.max_depth:
            self.result.skipped.append(
                CrawlSkip(url, "depth", f"deeper than max_depth={self.options.max_depth}")
            )
            return []
        if not self.robots.allowed(url):
            self.result.skipped.append(CrawlSkip(url, "robots", "robots.txt disallows it"))
            return []
        return [url]

    def _fetch_page(self, url: str) -> _Outcome:
        """Runs in a worker thread: never raises."""
        try:
            return self._fetch_page_unguarded(url)
        except Exception as e:  # a bug or an unparseable page must not stop the crawl
            log.exception("crawl: unexpected error on %s", url)
            return _Outcome(url, failure=CrawlFailure(url, f"unexpected error: {e}"))

    def _fetch_page_unguarded(self, url: str) -> _Outcome:
        if self.deadline is not None and time.monotonic() > self.deadline:
            why = f"max_seconds={self.options.max_seconds:g} used up"
            return _Outcome(url, skip=CrawlSkip(url, "limit", why))
        accept = self.options.allowed_content_types
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                resp = self.fetcher.request(
                    current, max_bytes=self.options.max_page_bytes, accept=accept
                )
            except _FetchError as e:
                reason = e.reason if current == url else f"{e.reason} (redirected to {current})"
                return _Outcome(url, failure=CrawlFailure(url, reason, e.status, e.transient))
            if resp.location is None:
                break
            target = normalize_url(resp.location, current)
            if target is None:
                reason = f"redirected to a non-web address {resp.location}: not followed"
                return _Outcome(url, failure=CrawlFailure(url, reason, resp.status))
            if not self.scope.contains(target):
                reason = f"redirected off-site to {target} — not followed"
                return _Outcome(url, failure=CrawlFailure(url, reason, resp.status))
            if not self.robots.allowed(target):
                detail = f"redirects to {target}, which robots.txt disallows"
                return _Outcome(url, skip=CrawlSkip(url, "robots", detail))
            current = target
        else:
            reason = f"more than {MAX_REDIRECTS} redirects (last: {current}): fix the redirect loop"
            return _Outcome(url, failure=CrawlFailure(url, reason))
        if resp.body is None:
            detail = f"{resp.media_type} is not HTML"
            return _Outcome(url, final_url=current, skip=CrawlSkip(url, "non-html", detail))
        parsed = _parse_html(resp.body, resp.charset, current, self.options.user_agent)
        return _Outcome(url, current, resp.status, resp.body, parsed)

    def _accept(self, outcome: _Outcome, depth: int) -> list[str]:
        """Book one fetched URL; returns the new URLs to fetch at depth + 1."""
        is_start = outcome.url in self.options.start_urls
        if outcome.skip is not None:
            self.result.skipped.append(outcome.skip)
            if outcome.skip.reason == "limit":
                self.result.truncated = self.result.truncated or outcome.skip.detail
            if is_start:  # e.g. it became a PDF: the crawl saw nothing of the site
                reason = f"the start URL was not crawled: {outcome.skip.detail}"
                self._start_failed(CrawlFailure(outcome.url, reason))
            return []
        if outcome.failure is not None:
            self.result.failures.append(outcome.failure)
            if is_start:
                self.result.start_failures.append(outcome.failure)
            return []
        parsed = outcome.parsed
        assert parsed is not None and outcome.body is not None
        self.seen.add(outcome.final_url)
        canonical = outcome.final_url
        if parsed.canonical is not None and self.scope.contains(parsed.canonical):
            canonical = parsed.canonical
        if parsed.noindex:
            detail = "the page asks not to be indexed (meta robots noindex)"
            self.result.skipped.append(CrawlSkip(outcome.url, "robots", detail))
        elif canonical in self.stored:
            detail = f"its canonical URL {canonical} is already stored"
            self.result.skipped.append(CrawlSkip(outcome.url, "duplicate", detail))
        elif parsed.text_hash in self.hashes:
            detail = f"same content as {self.hashes[parsed.text_hash]}"
            self.result.skipped.append(CrawlSkip(outcome.url, "duplicate", detail))
        else:
            self.stored.add(canonical)
            self.seen.add(canonical)  # fetching the canonical URL itself would add nothing
            self.hashes[parsed.text_hash] = canonical
            self.result.pages.append(
                CrawledPage(
                    url=outcome.final_url,
                    canonical_url=canonical,
                    title=parsed.title or canonical,
                    html=outcome.body,
                    content_hash=parsed.text_hash,
                    status=outcome.status,
                    depth=depth,
                )
            )
        if parsed.nofollow:
            return []
        new: list[str] = []
        for link in parsed.links:
            new.extend(self._admit(link, depth + 1))
        return new


def crawl(options: CrawlOptions, session: requests.Session | None = None) -> CrawlResult:
    """Crawl the sites of ``options.start_urls``. Never raises for what a site does: failures
    are recorded in the result."""
    own = session is None
    http = session or requests.Session()
    if own:  # one pooled connection per worker, not the default 10
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=options.concurrency)
        http.mount("http://", adapter)
        http.mount("https://", adapter)
    try:
        return _Crawler(options, http).run()
    finally:
        if own:
            http.close()


# ------------------------------------------------------------------------------ bucket sync


@dataclass
class SiteSyncReport:
    site: str  # the site's folder name: example.com, 127.0.0.1_8080
    prefix: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: int = 0
    failures: list[CrawlFailure] = field(default_factory=list)
    # Why removal was skipped or limited this time (None: every gone page was removed).
    removal_note: str | None = None
    added_keys: list[str] = field(default_factory=list)
    updated_keys: list[str] = field(default_factory=list)
    removed_keys: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"{self.site}: {self.added} added, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.removed} removed, {self.failed} failed"
        ]
        lines.extend(f"  failed: {f.url}: {f.reason}" for f in self.failures)
        if self.removal_note:
            lines.append(f"  note: {self.removal_note}")
        return "\n".join(lines)


def sync_site(
    copilot_id: str,
    options: CrawlOptions,
    blobs: BlobStore,
    state: StateStore,
    session: requests.Session | None = None,
) -> SiteSyncReport:
    """Crawl the site and make ``<copilot_id>/web/<site>/`` hold exactly its pages.

    Change detection: the content hash of each stored page is kept in the state store
    (``crawl:<site>``: object name -> hash prefix, under 100 bytes a page) and the bucket listing says which
    objects exist, so a sync costs one listing plus one upload per new or changed page, and an
    object deleted by hand comes back.

    Removal: a page is removed when the site answers 404/410 for it, or when a complete crawl no
    longer reaches it. Nothing is removed when a start URL fails (the site is down, or
    robots.txt cannot be read), and pages merely not reached are kept when the crawl was
    incomplete (timeouts, server errors, limits): an outage never empties the knowledge base.
    """
    labels = {site_label(u) for u in options.start_urls}
    if len(labels) != 1:
        raise ValueError(
            f"the start URLs span several sites ({', '.join(sorted(labels))}): sync each site "
            "separately"
        )
    label = labels.pop()
    prefix = f"{copilot_id}/web/{label}/"
    state_name = f"crawl:{label}"
    result = crawl(options, session)
    report = SiteSyncReport(site=label, prefix=prefix, failures=list(result.failures))

    existing = {o.key for o in blobs.list(prefix)}
    previous = state.get_state(copilot_id, state_name) or {}
    old_hashes: dict[str, str] = dict(previous.get("hashes") or {})
    hashes = {k: h for k, h in old_hashes.items() if prefix + k in existing}
    current: set[str] = set()
    try:
        for page in result.pages:
            key = page_key(copilot_id, label, page.canonical_url)
            if len(page.canonical_url) > MAX_URL_META_CHARS:
                report.failures.append(
                    CrawlFailure(
                        page.url, f"URL longer than {MAX_URL_META_CHARS} characters: not stored"
                    )
                )
                continue
            current.add(key)
            name = key[len(prefix) :]
            short_hash = page.content_hash[:STATE_HASH_CHARS]
            if key in existing and hashes.get(name) == short_hash:
                report.unchanged += 1
                continue
            blobs.put(
                key,
                page.html,
                content_type="text/html",
                metadata={
                    SOURCE_URL_META: page.canonical_url,
                    TITLE_META: metadata_text(page.title),
                    CONTENT_HASH_META: page.content_hash,
                },
            )
            hashes[name] = short_hash
            (report.updated_keys if key in existing else report.added_keys).append(key)

        gone = {page_key(copilot_id, label, f.url) for f in result.failures if f.gone}
        if result.start_failures:
            to_remove: set[str] = set()
            reasons = "; ".join(f"{f.url}: {f.reason}" for f in result.start_failures)
            report.removal_note = (
                f"nothing was removed because the start URL failed ({reasons}); "
                "stored pages are kept until a sync can reach the site"
            )
        elif not result.complete:
            to_remove = (existing & gone) - current
            kept = len(existing - current - to_remove)
            why = result.truncated or "some pages failed in a way that may pass"
            report.removal_note = (
                f"the crawl was incomplete ({why}); only pages the site reported as gone "
                f"(404/410) were removed, {kept} stored page(s) not reached this time were kept"
            )
        else:
            to_remove = existing - current
        for key in sorted(to_remove):
            blobs.delete(key)
            hashes.pop(key[len(prefix) :], None)
            report.removed_keys.append(key)
    finally:  # what was done is recorded even if the bucket failed half-way
        state.put_state(copilot_id, state_name, {"version": STATE_VERSION, "hashes": hashes})

    report.added = len(report.added_keys)
    report.updated = len(report.updated_keys)
    report.removed = len(report.removed_keys)
    report.failed = len(report.failures)
    return report


__all__ = [
    "DEFAULT_USER_AGENT",
    "CrawlFailure",
    "CrawlOptions",
    "CrawlResult",
    "CrawlSkip",
    "CrawledPage",
    "SiteSyncReport",
    "crawl",
    "sync_site",
]
