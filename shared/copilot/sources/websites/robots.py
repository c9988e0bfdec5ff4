"""robots.txt per origin, read once per crawl and interpreted as RFC 9309 says.

Parsed with protego: the most specific (longest) matching rule wins, so ``Allow:
/private/listed.html`` opens one page under ``Disallow: /private/``, and ``*``/``$`` patterns
(``Disallow: /*?session=``) work; the standard library's parser applies the first matching
line and takes patterns literally. RFC 9309 on errors: a 4xx answer means no rules; a server
error or an unreachable server means crawl nothing for now.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

from protego import Protego

from copilot.sources.websites.fetch import Fetcher, FetchError

MAX_ROBOTS_BYTES = 512 * 1024  # RFC 9309: parse at least 500 KiB


class RobotsRules:
    def __init__(self, parser: Protego | None, problem: str | None) -> None:
        self.parser = parser  # None: everything allowed (no robots.txt)
        self.problem = problem  # set: robots.txt unreadable for now, so nothing is allowed

    def allowed(self, url: str, user_agent: str) -> bool:
        if self.problem is not None:
            return False
        return self.parser is None or self.parser.can_fetch(url, user_agent)

    def crawl_delay(self, user_agent: str) -> float | None:
        return self.parser.crawl_delay(user_agent) if self.parser is not None else None

    def sitemaps(self) -> list[str]:
        return list(self.parser.sitemaps) if self.parser is not None else []

    @classmethod
    def from_text(cls, text: str) -> RobotsRules:
        return cls(Protego.parse(text), None)


class Robots:
    """The rules of every origin the crawl touches; honours Crawl-delay through the fetcher's
    throttle, up to ``max_crawl_delay`` seconds."""

    def __init__(self, fetcher: Fetcher, max_crawl_delay: float) -> None:
        self._fetcher = fetcher
        self._max_crawl_delay = max_crawl_delay
        self._lock = threading.Lock()
        self._rules: dict[str, RobotsRules] = {}

    def rules(self, url: str) -> RobotsRules:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        with self._lock:
            if origin not in self._rules:
                self._rules[origin] = self._load(origin, parts.netloc)
            return self._rules[origin]

    def allowed(self, url: str) -> bool:
        return self.rules(url).allowed(url, self._fetcher.user_agent)

    def _load(self, origin: str, netloc: str) -> RobotsRules:
        url = origin + "/robots.txt"
        try:
            resp = self._fetcher.follow(url, max_bytes=MAX_ROBOTS_BYTES, accept=None)
        except FetchError as e:
            if e.transient:
                return RobotsRules(
                    None,
                    f"{url} could not be read ({e.reason}); robots rules say to crawl "
                    "nothing until it can be read: try again later",
                )
            return RobotsRules(None, None)  # 4xx, or e.g. a redirect loop: no robots.txt
        rules = RobotsRules.from_text((resp.body or b"").decode("utf-8", errors="replace"))
        delay = rules.crawl_delay(self._fetcher.user_agent)
        if delay:
            capped = min(float(delay), self._max_crawl_delay)
            self._fetcher.throttle.set_delay(netloc, capped)
        return rules
