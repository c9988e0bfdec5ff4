"""Browser tests: Playwright for Python driving Debian's ``chromium`` (headless), with axe-core.

The test setup (``bash infra/test.sh`` -> ``infra/setup.sh dev``) installs both: chromium with
apt, axe-core with npm into infra/node. Playwright's own browser downloads are never used (they
cannot be fetched on these machines), so the browser is launched from its executable path. A
missing browser or axe-core fails these tests with the way to get it: they are never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from copilot_dev import browser as browsers
from tests.conftest import REPO_ROOT

AXE_JS = REPO_ROOT / "infra" / "node" / "node_modules" / "axe-core" / "axe.min.js"
SERIOUS = frozenset({"serious", "critical"})


def chromium_path() -> Path:
    path = browsers.chromium_path()
    if not path.exists():
        pytest.fail(browsers.MISSING.format(path=path), pytrace=False)
    return path


# Per module, not per session: Playwright's sync API keeps an event loop running in the main
# thread while it is open, and any later test calling asyncio.run() would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = browsers.launch_chromium(playwright, chromium_path())
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page in its own context (no storage shared with other tests)."""
    context = browser.new_context()
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def axe_violations(page: Any, impact: frozenset[str] | set[str] = SERIOUS) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now, those of the given impacts, in short form:
    ``{"id", "impact", "help", "targets"}`` (put them in the assertion message)."""
    if not AXE_JS.exists():
        pytest.fail(
            f"axe-core is missing ({AXE_JS}): run `npm ci --prefix infra/node` "
            "(bash infra/test.sh does).",
            pytrace=False,
        )
    page.add_script_tag(path=str(AXE_JS))
    found = page.evaluate("async () => (await axe.run(document)).violations")
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "targets": [node["target"] for node in v["nodes"]],
        }
        for v in found
        if v["impact"] in impact
    ]
