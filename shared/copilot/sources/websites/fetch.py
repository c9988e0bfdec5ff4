"""HTTP for the crawler: one bounded GET at a time, politely spaced, with reasons people can act on.

Nothing is retried here: a failure is reported (``transient`` when it may pass) and the crawl
goes on. Bodies are read up to a byte limit and within the per-request time limit.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from copilot.sources.websites.urls import SiteScope, normalize_url

MAX_REDIRECTS = 5

_REDIRECT_STATUSES = {301, 302, 303, 307, 308}
_TRANSIENT_STATUSES = {408, 425, 429}


class FetchError(Exception):
    def __init__(self, reason: str, *, status: int | None = None, transient: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.transient = transient


@dataclass
class Response:
    url: str
    status: int
    location: str | None = None  # absolute, for redirects
    media_type: str = ""
    charset: str | None = None
    body: bytes | None = None  # None: not read (redirect, or a type we do not want)


class Throttle:
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


class Fetcher:
    def __init__(self, session: requests.Session, *, timeout: float, user_agent: str) -> None:
        self.session = session
        self.timeout = timeout
        self.user_agent = user_agent
        self.throttle = Throttle()

    def request(
        self,
        url: str,
        *,
        max_bytes: int,
        accept: tuple[str, ...] | None,
    ) -> Response:
        """One GET, redirects not followed. Raises FetchError with a reason a person can act
        on. ``accept``: media types whose body is read (None: any)."""
        timeout = self.timeout
        self.throttle.wait(urlsplit(url).netloc)
        started = time.monotonic()
        headers = {"User-Agent": self.user_agent}
        if accept:
            headers["Accept"] = ", ".join(accept) + ", */*;q=0.1"
        try:
            resp = self.session.get(
                url, headers=headers, timeout=timeout, allow_redirects=False, stream=True
            )
        except requests.Timeout as e:
            raise FetchError(
                f"timed out after {_fmt_seconds(timeout)}: the server did not answer in time",
                transient=True,
            ) from e
        except requests.exceptions.SSLError as e:
            raise FetchError(
                "TLS error: the site's certificate could not be verified; fix the certificate"
            ) from e
        except requests.ConnectionError as e:
            raise FetchError(
                f"could not connect to {urlsplit(url).netloc}: the site is down or unreachable",
                transient=True,
            ) from e
        except requests.RequestException as e:
            raise FetchError(f"the request failed: {e}", transient=True) from e
        with resp:
            status = resp.status_code
            location = resp.headers.get("Location")
            if status in _REDIRECT_STATUSES and location:
                return Response(url, status, location=location)
            if status >= 400:
                raise FetchError(
                    _status_reason(status),
                    status=status,
                    transient=status >= 500 or status in _TRANSIENT_STATUSES,
                )
            if not 200 <= status < 300:
                raise FetchError(f"unexpected HTTP {status}", status=status)
            media_type, charset = _content_type(resp.headers.get("Content-Type", ""))
            if accept and media_type and media_type not in accept:
                return Response(url, status, media_type=media_type)
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(_too_large(max_bytes))
            body = self._read(resp, max_bytes, started)
        if accept and not media_type and not _looks_like_html(body):
            return Response(url, status, media_type="(no content type)")
        return Response(url, status, media_type=media_type, charset=charset, body=body)

    def _read(self, resp: requests.Response, max_bytes: int, started: float) -> bytes:
        timeout = self.timeout
        buf = io.BytesIO()
        try:
            for chunk in resp.iter_content(64 * 1024):
                buf.write(chunk)
                if buf.tell() > max_bytes:
                    raise FetchError(_too_large(max_bytes))
                if time.monotonic() - started > timeout:
                    raise FetchError(
                        f"timed out after {_fmt_seconds(timeout)}: the page downloaded too slowly",
                        transient=True,
                    )
        except requests.RequestException as e:  # read timeout or connection dropped mid-body
            raise FetchError(
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
    ) -> Response:
        """GET following up to MAX_REDIRECTS redirects (robots.txt, sitemaps); with ``scope``,
        only redirects that stay on the site."""
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            resp = self.request(current, max_bytes=max_bytes, accept=accept)
            if resp.location is None:
                return resp
            target = normalize_url(resp.location, current)
            if target is None:
                raise FetchError(f"redirected to a non-web address: {resp.location}")
            if scope is not None and not scope.contains(target):
                raise FetchError(f"redirected off-site to {target} — not followed")
            current = target
        raise FetchError(f"more than {MAX_REDIRECTS} redirects (last: {current})")


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
