"""The website crawler against a real HTTP server on loopback, and the bucket sync on the memory
stores and on S3 (moto server)."""

from __future__ import annotations

import gzip
import hashlib
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from copilot.adapters.aws.s3 import S3BlobStore
from copilot.sources.websites.crawler import crawl, sync_site
from copilot.sources.websites.models import CrawlOptions, CrawlResult
from copilot.sources.websites.urls import SiteScope, normalize_url, read_metadata_text
from copilot_dev.fakes import MemoryBlobStore, MemoryStateStore
from copilot_dev.localstack import free_port

pytestmark = pytest.mark.integration

FIXTURE_SITE = Path(__file__).resolve().parents[1] / "fixtures" / "site"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".xml": "application/xml",
    ".txt": "text/plain",
}


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class Site:
    """A small website on 127.0.0.1 that records every request it gets."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str]] = []  # (path with query, Host header)
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.requests.append((self.path, self.headers.get("Host", "")))
                route = site.routes.get(self.path) or site.routes.get(self.path.split("?")[0])
                if route is None:
                    route = Route(b"<html><body>Not found</body></html>", status=404)
                if route.delay:
                    time.sleep(route.delay)
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(route.body)))
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(route.body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the crawler hung up on the slow page: expected

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.base = f"http://{self.host}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    def page(self, path: str, html: str, **kw: Any) -> None:
        self.routes[path] = Route(html.encode(), **kw)

    def load(self, root: Path) -> None:
        for file in sorted(root.rglob("*")):
            if not file.is_file():
                continue
            rel = file.relative_to(root).as_posix()
            text = file.read_text().replace("__BASE__", self.base).replace("__HOST__", self.host)
            route = Route(text.encode(), content_type=CONTENT_TYPES[file.suffix])
            self.routes["/" + rel] = route
            if rel == "index.html" or rel.endswith("/index.html"):
                self.routes["/" + rel.removesuffix("index.html")] = route

    def hits(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()


# ------------------------------------------------------------------------ the fixture site


@pytest.fixture(scope="module")
def fixture_site() -> Iterator[Site]:
    site = Site()
    site.load(FIXTURE_SITE)
    extra = site.routes["/sitemap-extra.xml"].body
    site.routes["/sitemap-extra.xml.gz"] = Route(
        gzip.compress(extra), content_type="application/gzip"
    )
    site.routes["/moved"] = Route(
        status=302, headers={"Location": f"http://localhost:{site.port}/landing"}
    )
    site.routes["/old-faq"] = Route(status=301, headers={"Location": "/faq.html"})
    site.routes["/slow"] = Route(b"<html><title>Slow</title></html>", delay=4.0)
    site.routes["/broken"] = Route(b"<html><body>Internal error</body></html>", status=500)
    site.routes["/manual.pdf"] = Route(
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", content_type="application/pdf"
    )
    yield site
    site.stop()


@pytest.fixture(scope="module")
def crawled(fixture_site: Site) -> CrawlResult:
    options = CrawlOptions(
        start_urls=[fixture_site.url("/")], max_depth=2, timeout_seconds=2.0, concurrency=4
    )
    return crawl(options)


def _by_url(items: list[Any]) -> dict[str, Any]:
    return {item.url: item for item in items}


def test_crawls_linked_pages_up_to_max_depth(crawled: CrawlResult, fixture_site: Site) -> None:
    u = fixture_site.url
    stored = {p.canonical_url for p in crawled.pages}
    assert {u("/"), u("/about.html"), u("/docs/"), u("/docs/guide.html")} <= stored
    assert {u("/deep/1.html"), u("/deep/2.html")} <= stored  # depth 1 and 2
    skipped = _by_url(crawled.skipped)
    assert skipped[u("/deep/3.html")].reason == "depth"
    assert fixture_site.hits("/deep/3.html") == 0
    assert fixture_site.hits("/deep/4.html") == 0
    # no page is fetched twice, whatever the spelling of its links
    paths = [p for p, _ in fixture_site.requests]
    assert len(paths) == len(set(paths)), sorted(paths)
    about = next(p for p in crawled.pages if p.canonical_url == u("/about.html"))
    assert about.title == "About us"
    assert about.status == 200
    assert about.html == (FIXTURE_SITE / "about.html").read_bytes()
    assert re.fullmatch(r"[0-9a-f]{64}", about.content_hash)


def test_honours_robots_txt(crawled: CrawlResult, fixture_site: Site) -> None:
    skipped = _by_url(crawled.skipped)
    # linked from the home page, and listed in the sitemap: both refused by robots.txt
    assert skipped[fixture_site.url("/private/secret.html")].reason == "robots"
    assert skipped[fixture_site.url("/private/listed.html")].reason == "robots"
    assert not [p for p, _ in fixture_site.requests if p.startswith("/private/")]
    assert fixture_site.hits("/robots.txt") == 1


def test_robots_txt_longest_match_and_wildcards() -> None:
    """RFC 9309: an Allow more specific than a Disallow wins, and * matches any characters."""
    site = Site()
    site.page(
        "/robots.txt",
        "User-agent: *\nDisallow: /private/\nAllow: /private/listed.html\nDisallow: /*?session=\n",
        content_type="text/plain",
    )
    site.page(
        "/",
        '<html><body><a href="/private/listed.html">Listed</a> '
        '<a href="/private/secret.html">Secret</a> <a href="/cart?session=42">Cart</a> '
        '<a href="/cart?view=full">Full cart</a></body></html>',
    )
    for path, title in (("/private/listed.html", "Listed"), ("/cart", "Cart")):
        site.page(path, f"<html><title>{title}</title><body>{title} of {path}</body></html>")
    site.page("/private/secret.html", "<html><body>Secret</body></html>")
    try:
        result = crawl(CrawlOptions(start_urls=[site.url("/")], timeout_seconds=2))
    finally:
        site.stop()
    fetched = {p.url for p in result.pages}
    assert site.url("/private/listed.html") in fetched
    assert site.url("/cart?view=full") in fetched
    robots = {s.url for s in result.skipped if s.reason == "robots"}
    assert robots == {site.url("/private/secret.html"), site.url("/cart?session=42")}
    requested = {p for p, _ in site.requests}
    assert "/private/secret.html" not in requested and "/cart?session=42" not in requested


def test_reads_sitemap_index_and_gzipped_sitemap(crawled: CrawlResult, fixture_site: Site) -> None:
    u = fixture_site.url
    stored = {p.canonical_url for p in crawled.pages}
    assert u("/orphan.html") in stored  # linked from nowhere, listed in the sitemap
    assert u("/from-gzip-sitemap.html") in stored  # listed in the .xml.gz one
    assert crawled.sitemaps == [
        u("/sitemap.xml"),
        u("/sitemap-pages.xml"),
        u("/sitemap-extra.xml.gz"),
    ]


def test_normalises_fragment_and_query_variants(crawled: CrawlResult, fixture_site: Site) -> None:
    u = fixture_site.url
    urls = [p.url for p in crawled.pages]
    # ?b=2&a=1 and ?a=1&b=2#results are one page, /about.html#team is /about.html
    assert urls.count(u("/search.html?a=1&b=2")) == 1
    assert not [x for x in urls if "#" in x or "b=2&a=1" in x]
    assert fixture_site.hits("/search.html?a=1&b=2") == 1
    assert fixture_site.hits("/search.html?b=2&a=1") == 0
    assert fixture_site.hits("/about.html") == 1


def test_follows_rel_canonical(crawled: CrawlResult, fixture_site: Site) -> None:
    u = fixture_site.url
    handbook = [p for p in crawled.pages if p.canonical_url == u("/handbook.html")]
    assert len(handbook) == 1  # stored under its canonical URL, not where it was found
    assert handbook[0].url == u("/alias.html")
    assert handbook[0].title == "Handbook"
    assert fixture_site.hits("/handbook.html") == 0
    assert u("/alias.html") not in {p.canonical_url for p in crawled.pages}
    # a page whose canonical page is already stored is skipped
    alias_about = _by_url(crawled.skipped)[u("/alias-about.html")]
    assert alias_about.reason == "duplicate"
    assert u("/about.html") in alias_about.detail
    assert [p.canonical_url for p in crawled.pages].count(u("/about.html")) == 1


def test_skips_duplicate_content(crawled: CrawlResult, fixture_site: Site) -> None:
    u = fixture_site.url
    stored = {p.canonical_url for p in crawled.pages}
    assert u("/dup-a.html") in stored
    assert u("/dup-b.html") not in stored  # other markup and whitespace, same text
    dup = _by_url(crawled.skipped)[u("/dup-b.html")]
    assert (dup.reason, dup.detail) == ("duplicate", f"same content as {u('/dup-a.html')}")


def test_records_failures_with_actionable_reasons(crawled: CrawlResult, fixture_site: Site) -> None:
    u = fixture_site.url
    failures = _by_url(crawled.failures)
    assert failures[u("/moved")].reason == (
        f"redirected off-site to http://localhost:{fixture_site.port}/landing — not followed"
    )
    assert not [h for _, h in fixture_site.requests if h.startswith("localhost")]
    slow = failures[u("/slow")]
    assert slow.reason.startswith("timed out after 2 s")
    assert slow.transient
    broken = failures[u("/broken")]
    assert (broken.status, broken.transient) == (500, True)
    assert "server error (HTTP 500)" in broken.reason
    missing = failures[u("/missing.html")]
    assert missing.gone and not missing.transient
    assert set(failures) == {u("/moved"), u("/slow"), u("/broken"), u("/missing.html")}
    assert not crawled.start_failures
    assert not crawled.complete  # the timeout and the 500 may pass next time


def test_skips_non_html_and_off_site_links(crawled: CrawlResult, fixture_site: Site) -> None:
    skipped = _by_url(crawled.skipped)
    pdf = skipped[fixture_site.url("/manual.pdf")]
    assert (pdf.reason, pdf.detail) == ("non-html", "application/pdf is not HTML")
    assert skipped["https://external.example/help"].reason == "off-site"
    assert not [s for s in crawled.skipped if s.url.startswith("mailto:")]


def test_follows_same_site_redirects(crawled: CrawlResult, fixture_site: Site) -> None:
    faq = [p for p in crawled.pages if p.url == fixture_site.url("/faq.html")]
    assert len(faq) == 1 and faq[0].title == "FAQ"


def test_max_pages_bounds_the_crawl(fixture_site: Site) -> None:
    before = len(fixture_site.requests)
    result = crawl(
        CrawlOptions(start_urls=[fixture_site.url("/")], max_pages=3, timeout_seconds=2.0)
    )
    page_requests = [
        p
        for p, _ in fixture_site.requests[before:]
        if p != "/robots.txt" and not p.startswith("/sitemap")
    ]
    assert result.fetched == 3
    assert len(page_requests) == 3
    assert result.truncated and "max_pages=3" in result.truncated
    assert [s for s in result.skipped if s.reason == "limit"]


def test_url_rules() -> None:
    assert (
        normalize_url("HTTP://Example.COM:80/a/./b/../c?z=1&a=2&utm_source=x#frag")
        == "http://example.com/a/c?a=2&z=1"
    )
    assert normalize_url("../x.html", "https://example.com:443/docs/a.html") == (
        "https://example.com/x.html"
    )
    assert normalize_url("mailto:a@example.com") is None
    scope = SiteScope(["http://example.com/"])
    assert scope.contains("http://www.example.com/page")  # www. is the same site
    assert scope.contains("https://example.com/page")  # an upgrade to https
    assert not scope.contains("http://example.com:8080/")
    assert not scope.contains("http://other.example/")


# ---------------------------------------------------------------------------- bucket sync

COPILOT = "cp-1"


def _small_site() -> Site:
    site = Site()
    site.page(
        "/",
        '<html><head><title>Home</title></head><body><a href="/a.html">A</a> '
        '<a href="/b.html">B</a> <a href="/hub.html">Hub</a> <a href="/cafe.html">Café</a>'
        "<main>Welcome</main></body></html>",
    )
    site.page("/a.html", "<html><head><title>Alpha</title></head><body>Alpha text</body></html>")
    site.page("/b.html", "<html><head><title>Beta</title></head><body>Beta text</body></html>")
    site.page(
        "/hub.html",
        '<html><head><title>Hub</title></head><body><a href="/c.html">C</a> Hub</body></html>',
    )
    site.page("/c.html", "<html><head><title>Gamma</title></head><body>Gamma text</body></html>")
    site.page(
        "/cafe.html",
        "<html><head><title>Café — prices</title></head><body>Coffee</body></html>",
    )
    return site


@pytest.fixture
def small_site() -> Iterator[Site]:
    site = _small_site()
    yield site
    site.stop()


def _key(site: Site, path: str, slug: str) -> str:
    digest = hashlib.sha1(site.url(path).encode()).hexdigest()[:10]
    return f"{COPILOT}/web/127.0.0.1_{site.port}/{slug}-{digest}.html"


def _options(site: Site) -> CrawlOptions:
    return CrawlOptions(start_urls=[site.url("/")], timeout_seconds=2)


def _versions(blobs: MemoryBlobStore) -> dict[str, str | None]:
    return {k: o.version for k, o in blobs.objects.items()}


def test_first_sync_adds_every_page_with_key_and_metadata(small_site: Site) -> None:
    blobs, state = MemoryBlobStore(), MemoryStateStore()
    report = sync_site(COPILOT, _options(small_site), blobs, state)
    keys = {
        _key(small_site, "/", "index"),
        _key(small_site, "/a.html", "a"),
        _key(small_site, "/b.html", "b"),
        _key(small_site, "/hub.html", "hub"),
        _key(small_site, "/c.html", "c"),
        _key(small_site, "/cafe.html", "cafe"),
    }
    assert set(blobs.objects) == keys
    assert (report.added, report.updated, report.unchanged, report.removed) == (6, 0, 0, 0)
    assert report.failed == 0 and report.removal_note is None
    a = blobs.objects[_key(small_site, "/a.html", "a")]
    assert a.body == small_site.routes["/a.html"].body
    assert a.content_type == "text/html"
    assert a.metadata["source-url"] == small_site.url("/a.html")
    assert a.metadata["title"] == "Alpha"
    assert re.fullmatch(r"[0-9a-f]{64}", a.metadata["content-hash"])
    cafe = blobs.objects[_key(small_site, "/cafe.html", "cafe")]
    assert cafe.metadata["title"].isascii()  # S3 metadata is ASCII only
    assert read_metadata_text(cafe.metadata["title"]) == "Café — prices"
    saved = state.get_state(COPILOT, f"crawl:127.0.0.1_{small_site.port}")
    assert saved is not None and len(saved["hashes"]) == 6


def test_second_sync_without_changes_uploads_nothing(small_site: Site) -> None:
    blobs, state = MemoryBlobStore(), MemoryStateStore()
    sync_site(COPILOT, _options(small_site), blobs, state)
    before = _versions(blobs)
    report = sync_site(COPILOT, _options(small_site), blobs, state)
    assert (report.added, report.updated, report.unchanged, report.removed) == (0, 0, 6, 0)
    assert _versions(blobs) == before  # not one re-upload, so no re-indexing


def test_changed_page_is_updated_and_deleted_page_removed(small_site: Site) -> None:
    blobs, state = MemoryBlobStore(), MemoryStateStore()
    sync_site(COPILOT, _options(small_site), blobs, state)
    small_site.page("/a.html", "<html><head><title>Alpha</title></head><body>New</body></html>")
    del small_site.routes["/b.html"]  # now 404, still linked from the home page
    report = sync_site(COPILOT, _options(small_site), blobs, state)
    assert report.updated_keys == [_key(small_site, "/a.html", "a")]
    assert report.removed_keys == [_key(small_site, "/b.html", "b")]
    assert (report.added, report.unchanged) == (0, 4)
    assert blobs.objects[_key(small_site, "/a.html", "a")].body.endswith(b"New</body></html>")
    assert [f.url for f in report.failures] == [small_site.url("/b.html")]
    assert "HTTP 404" in report.failures[0].reason


def test_page_no_longer_linked_is_removed(small_site: Site) -> None:
    blobs, state = MemoryBlobStore(), MemoryStateStore()
    sync_site(COPILOT, _options(small_site), blobs, state)
    small_site.page(
        "/hub.html", "<html><head><title>Hub</title></head><body>No links now</body></html>"
    )
    report = sync_site(COPILOT, _options(small_site), blobs, state)
    assert report.removed_keys == [_key(small_site, "/c.html", "c")]  # still served, unreachable
    assert report.updated_keys == [_key(small_site, "/hub.html", "hub")]


def test_object_deleted_by_hand_is_uploaded_again(small_site: Site) -> None:
    blobs, state = MemoryBlobStore(), MemoryStateStore()
    sync_site(COPILOT, _options(small_site), blobs, state)
    blobs.delete(_key(small_site, "/a.html", "a"))
    report = sync_site(COPILOT, _options(small_site), blobs, state)
    assert report.added_keys == [_key(small_site, "/a.html", "a")]


@pytest.mark.parametrize("outage", ["start page 503", "server down", "start page not HTML"])
def test_start_url_down_removes_nothing(small_site: Site, outage: str) -> None:
    blobs, state = MemoryBlobStore(), MemoryStateStore()
    options = _options(small_site)
    sync_site(COPILOT, options, blobs, state)
    stored = _versions(blobs)
    if outage == "start page 503":
        small_site.routes["/"] = Route(b"<html>Maintenance</html>", status=503)
        expected = "server error (HTTP 503)"
    elif outage == "server down":  # robots.txt unreachable too: nothing may be crawled
        small_site.stop()
        expected = "could not connect"
    else:  # a misconfigured server: the start URL answers, but with nothing to follow
        small_site.routes["/"] = Route(b"{}", content_type="application/json")
        expected = "application/json is not HTML"
    report = sync_site(COPILOT, options, blobs, state)
    assert _versions(blobs) == stored
    assert report.removed == 0
    assert report.failed >= 1 and expected in report.failures[0].reason
    assert report.removal_note is not None
    assert report.removal_note.startswith("nothing was removed because the start URL failed")
    assert expected in report.removal_note


def test_transient_failure_keeps_pages_it_hides(small_site: Site) -> None:
    blobs, state = MemoryBlobStore(), MemoryStateStore()
    sync_site(COPILOT, _options(small_site), blobs, state)
    small_site.routes["/hub.html"] = Route(b"<html>oops</html>", status=500)  # hides /c.html
    del small_site.routes["/b.html"]
    report = sync_site(COPILOT, _options(small_site), blobs, state)
    assert report.removed_keys == [_key(small_site, "/b.html", "b")]  # 404: really gone
    assert _key(small_site, "/c.html", "c") in blobs.objects  # not reached: kept
    assert _key(small_site, "/hub.html", "hub") in blobs.objects
    assert report.removal_note is not None and "incomplete" in report.removal_note
    assert "2 stored page(s) not reached this time were kept" in report.removal_note


def test_metadata_round_trips_through_s3(small_site: Site, moto_url: str) -> None:
    client = boto3.client(
        "s3",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    bucket = f"crawl-{free_port()}"
    client.create_bucket(Bucket=bucket)
    blobs, state = S3BlobStore(client, bucket), MemoryStateStore()
    first = sync_site(COPILOT, _options(small_site), blobs, state)
    assert first.added == 6
    key = _key(small_site, "/cafe.html", "cafe")
    obj = blobs.get(key, max_bytes=1_000_000)
    assert obj is not None
    assert obj.content_type == "text/html"
    assert obj.metadata["source-url"] == small_site.url("/cafe.html")
    assert read_metadata_text(obj.metadata["title"]) == "Café — prices"
    assert obj.metadata["content-hash"] == next(
        p.content_hash
        for p in crawl(_options(small_site)).pages
        if p.url == small_site.url("/cafe.html")
    )
    assert obj.body == small_site.routes["/cafe.html"].body
    second = sync_site(COPILOT, _options(small_site), blobs, state)
    assert (second.added, second.updated, second.unchanged) == (0, 0, 6)
    del small_site.routes["/b.html"]
    third = sync_site(COPILOT, _options(small_site), blobs, state)
    assert third.removed_keys == [_key(small_site, "/b.html", "b")]
    assert _key(small_site, "/b.html", "b") not in {o.key for o in blobs.list(f"{COPILOT}/web/")}
