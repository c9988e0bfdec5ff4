"""robots.txt rules as RFC 9309 defines them (the crawler's robots module)."""

from __future__ import annotations

import pytest

from copilot.sources.websites.models import DEFAULT_USER_AGENT
from copilot.sources.websites.robots import RobotsRules

SITE = "https://example.com"
ROBOTS = """\
User-agent: *
Disallow: /private/
Allow: /private/listed.html
Disallow: /*?session=
Disallow: /*.pdf$
Crawl-delay: 2

User-agent: OtherBot
Disallow: /

Sitemap: https://example.com/sitemap.xml
"""


@pytest.fixture
def rules() -> RobotsRules:
    return RobotsRules.from_text(ROBOTS)


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/private/listed.html", True),  # the longer Allow beats the earlier, shorter Disallow
        ("/private/secret.html", False),
        ("/private/", False),
        ("/faq.html", True),
    ],
)
def test_the_most_specific_rule_wins(rules: RobotsRules, path: str, allowed: bool) -> None:
    assert rules.allowed(SITE + path, DEFAULT_USER_AGENT) is allowed


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/search?session=abc", False),
        ("/a/b?session=1&q=x", False),
        ("/search?q=session", True),
        ("/manual.pdf", False),
        ("/manual.pdf.html", True),  # $ anchors the pattern at the end
    ],
)
def test_wildcards_and_end_anchors(rules: RobotsRules, path: str, allowed: bool) -> None:
    assert rules.allowed(SITE + path, DEFAULT_USER_AGENT) is allowed


def test_a_group_for_another_agent_does_not_apply(rules: RobotsRules) -> None:
    assert rules.allowed(SITE + "/faq.html", DEFAULT_USER_AGENT)
    assert not rules.allowed(SITE + "/faq.html", "OtherBot/2.0")


def test_crawl_delay_and_sitemaps(rules: RobotsRules) -> None:
    assert rules.crawl_delay(DEFAULT_USER_AGENT) == 2
    assert rules.sitemaps() == ["https://example.com/sitemap.xml"]


def test_no_robots_txt_allows_everything_and_an_unreadable_one_nothing() -> None:
    assert RobotsRules(None, None).allowed(SITE + "/private/x", DEFAULT_USER_AGENT)
    assert RobotsRules(None, None).sitemaps() == []
    assert not RobotsRules(None, "503").allowed(SITE + "/", DEFAULT_USER_AGENT)
