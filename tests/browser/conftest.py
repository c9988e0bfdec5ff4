"""Browser tests: Playwright for Python driving Debian's ``chromium`` (headless), with axe-core.

The test setup (``bash infra/test.sh`` -> ``infra/setup.sh dev``) installs both: chromium with
apt, axe-core with npm into infra/node. Playwright's own browser downloads are never used (they
cannot be fetched on these machines), so the browser is launched from its executable path. A
missing browser or axe-core fails these tests with the way to get it: they are never skipped.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

AXE_JS = REPO_ROOT / "infra" / "node" / "node_modules" / "axe-core" / "axe.min.js"
SERIOUS = frozenset({"serious", "critical"})

# Without the background-networking switches Chromium keeps calling Google's hosts, which this
# closed network refuses (noise and slow starts); the rest keep a run self-contained.
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> Path:
    found = os.environ.get("CHROMIUM_EXECUTABLE") or shutil.which("chromium")
    path = Path(found or "/usr/bin/chromium")
    if not path.exists():
        pytest.fail(
            f"no chromium at {path}: the browser tests drive Debian's chromium package. Run "
            "`bash infra/setup.sh dev` (it runs `apt-get install chromium`), or set "
            "CHROMIUM_EXECUTABLE to a Chromium executable.",
            pytrace=False,
        )
    return path


# Per module, not per session: Playwright's sync API keeps an event loop running in the main
# thread while it is open, and any later test calling asyncio.run() would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    args = list(CHROMIUM_ARGS)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to sandbox itself as root
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(chromium_path()), headless=True, args=args
        )
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
