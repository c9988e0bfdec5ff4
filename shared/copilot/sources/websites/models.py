"""What a crawl is asked to do and what it found: options, pages, failures, skips."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from copilot.sources.websites.urls import normalize_url

DEFAULT_USER_AGENT = "CopilotCrawler/0.1 (+knowledge indexing)"


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
    content_hash: str  # sha256 of the page's main content (of the raw body if it has none)
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
