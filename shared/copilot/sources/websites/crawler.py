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

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from copilot.ingest.models import SOURCE_URL_META
from copilot.ports import BlobStore, StateStore
from copilot.sources.mirror import MirroredDocument, PrefixMirror
from copilot.sources.websites.fetch import MAX_REDIRECTS, Fetcher, FetchError
from copilot.sources.websites.models import (
    CrawledPage,
    CrawlFailure,
    CrawlOptions,
    CrawlResult,
    CrawlSkip,
)
from copilot.sources.websites.pages import PageInfo, read_page
from copilot.sources.websites.robots import Robots
from copilot.sources.websites.sitemaps import read_sitemaps
from copilot.sources.websites.urls import (
    SiteScope,
    metadata_text,
    normalize_url,
    page_key,
    site_label,
)

log = logging.getLogger(__name__)

TITLE_META = "title"
CONTENT_HASH_META = "content-hash"
MAX_URL_META_CHARS = 1500  # S3 user metadata is 2 KB in all
STATE_VERSION = 1
STATE_HASH_CHARS = 16  # change detection only: 64 bits keep the state small


@dataclass
class _Outcome:
    url: str
    final_url: str = ""
    status: int = 0
    body: bytes | None = None
    parsed: PageInfo | None = None
    failure: CrawlFailure | None = None
    skip: CrawlSkip | None = None


# -------------------------------------------------------------------------------- the crawl


class _Crawler:
    def __init__(self, options: CrawlOptions, session: requests.Session) -> None:
        self.options = options
        self.fetcher = Fetcher(
            session, timeout=options.timeout_seconds, user_agent=options.user_agent
        )
        self.robots = Robots(self.fetcher, options.max_crawl_delay_seconds)
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
            listed = read_sitemaps(
                self.fetcher,
                self.robots,
                self.options.start_urls,
                self.scope,
                self.result,
                self.options.max_pages,
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
            except FetchError as e:
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
        parsed = read_page(resp.body, resp.charset, current, self.options.user_agent)
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
    (``crawl:<site>``: object name -> hash prefix, under 100 bytes a page) and the bucket
    listing says which objects exist, so a sync costs one listing plus one upload per new or
    changed page, and an object deleted by hand comes back.

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

    previous = state.get_state(copilot_id, state_name) or {}
    hashes = {prefix + name: h for name, h in dict(previous.get("hashes") or {}).items()}
    mirror = PrefixMirror.open(blobs, prefix, hashes)
    current: set[str] = set()
    try:
        for page in result.pages:
            if len(page.canonical_url) > MAX_URL_META_CHARS:
                reason = f"URL longer than {MAX_URL_META_CHARS} characters: not stored"
                report.failures.append(CrawlFailure(page.url, reason))
                continue
            document = _document(copilot_id, label, page)
            current.add(document.key)
            mirror.write(document)
        gone = {page_key(copilot_id, label, f.url) for f in result.failures if f.gone}
        doomed = _removable(result, mirror.stored, current, gone, report)
        mirror.remove((key, key) for key in sorted(doomed))
    finally:  # what was done is recorded even if the bucket failed half-way
        names = {key[len(prefix) :]: h for key, h in mirror.fingerprints.items()}
        state.put_state(copilot_id, state_name, {"version": STATE_VERSION, "hashes": names})

    report.failures.extend(
        CrawlFailure(f.name, f.reason, transient=f.transient) for f in mirror.failures
    )
    report.added_keys, report.updated_keys = mirror.added, mirror.updated
    report.removed_keys = mirror.removed
    report.added, report.updated = len(mirror.added), len(mirror.updated)
    report.unchanged, report.removed = len(mirror.unchanged), len(mirror.removed)
    report.failed = len(report.failures)
    return report


def _document(copilot_id: str, label: str, page: CrawledPage) -> MirroredDocument:
    return MirroredDocument(
        name=page.url,
        key=page_key(copilot_id, label, page.canonical_url),
        body=page.html,
        content_type="text/html",
        metadata={
            SOURCE_URL_META: page.canonical_url,
            TITLE_META: metadata_text(page.title),
            CONTENT_HASH_META: page.content_hash,
        },
        fingerprint=page.content_hash[:STATE_HASH_CHARS],
    )


def _removable(
    result: CrawlResult,
    stored: set[str],
    current: set[str],
    gone: set[str],
    report: SiteSyncReport,
) -> set[str]:
    """The stored pages this crawl proves gone (``gone``: keys of pages answering 404/410);
    why others were kept goes to the report."""
    if result.start_failures:
        reasons = "; ".join(f"{f.url}: {f.reason}" for f in result.start_failures)
        report.removal_note = (
            f"nothing was removed because the start URL failed ({reasons}); "
            "stored pages are kept until a sync can reach the site"
        )
        return set()
    if result.complete:
        return stored - current
    to_remove = (stored & gone) - current
    kept = len(stored - current - to_remove)
    why = result.truncated or "some pages failed in a way that may pass"
    report.removal_note = (
        f"the crawl was incomplete ({why}); only pages the site reported as gone "
        f"(404/410) were removed, {kept} stored page(s) not reached this time were kept"
    )
    return to_remove


__all__ = ["SiteSyncReport", "crawl", "sync_site"]
