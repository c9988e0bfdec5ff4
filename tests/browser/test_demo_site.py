"""The first command's demo, as a new user meets it: ``copilot up`` (what ``bash infra/run.sh``
runs) starts the stack, seeds the demo copilot and serves the Northwind Bikes site; in Chromium
the site's web chat answers a question with citations.

The README's screenshot (docs/img/demo-site.png) is taken here: run with
``UPDATE_SCREENSHOTS=1`` to refresh it (otherwise it goes to the test's temp folder).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import axe_violations
from tests.conftest import REPO_ROOT
from tests.up import Up

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SCREENSHOT = REPO_ROOT / "docs" / "img" / "demo-site.png"


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    running = Up(tmp_path_factory.mktemp("demo-up"))
    try:
        running.wait_for("Press Ctrl-C")
        yield running
    finally:
        running.stop()


def test_copilot_up_prints_the_demo_site_and_the_site_embeds_the_chat(up: Up) -> None:
    line = next(x for x in up.output if x.startswith("Demo site:"))
    assert f"http://127.0.0.1:{up.ports['site']}/" in line
    assert any("files indexed" in x for x in up.output)
    assert any("Crawled the demo site: 1 page indexed" in x for x in up.output), up.output


def test_the_demo_sites_chat_answers_with_citations(up: Up, page: Any, tmp_path: Path) -> None:
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"http://127.0.0.1:{up.ports['site']}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Ride further")
    page.locator('[data-copilot="launcher"]').click()
    log = page.locator('[data-copilot="log"]')
    expect(log.locator('[data-copilot="message"][data-role="bot"]').first).to_be_visible()
    page.locator('[data-copilot="input"]').fill("How long does a refund take?")
    page.locator('[data-copilot="send"]').click()
    answer = log.locator('[data-copilot="message"][data-role="bot"]').last
    expect(answer.locator('a[data-copilot="citation"]').first).to_be_visible(timeout=20_000)
    expect(answer).to_contain_text("refund", ignore_case=True)
    # The sources show once, as the citation links: not also as the text's plain list.
    expect(answer.locator('[data-copilot="text"]')).not_to_contain_text("Sources:")
    assert axe_violations(page) == []
    target = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path / "demo.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target))
    assert target.stat().st_size > 10_000  # a rendered page, not a blank one


def test_the_demo_sites_own_page_is_cited_by_its_url(up: Up, page: Any) -> None:
    """The demo copilot learned the site's group-rides page (a website source, crawled by
    ``copilot up``): the answer cites the page's address."""
    site = f"http://127.0.0.1:{up.ports['site']}"
    page.goto(site + "/rides.html")
    page.locator('[data-copilot="launcher"]').click()
    page.locator('[data-copilot="input"]').fill("When does the Saturday social ride leave?")
    page.locator('[data-copilot="send"]').click()
    answer = page.locator('[data-copilot="message"][data-role="bot"]').last
    expect(answer).to_contain_text("8:30", timeout=20_000)
    citation = answer.locator('a[data-copilot="citation"]').first
    expect(citation).to_have_attribute("href", site + "/rides.html")
