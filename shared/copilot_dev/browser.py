"""Headless Chromium for the browser tests and the page benchmarks: Debian's ``chromium``
package driven by Playwright (Playwright's own browser downloads are never used: they cannot be
fetched on these machines)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

# Without the background-networking switches Chromium keeps calling Google's hosts, which a
# closed network refuses (noise and slow starts); the rest keep a run self-contained.
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MISSING = (
    "no chromium at {path}: the browser tests and page benchmarks drive Debian's chromium "
    "package. Run `bash infra/setup.sh dev` (it runs `apt-get install chromium`), or set "
    "CHROMIUM_EXECUTABLE to a Chromium executable."
)


def chromium_path() -> Path:
    """CHROMIUM_EXECUTABLE, else ``chromium`` on the PATH (the path may not exist: check)."""
    found = os.environ.get("CHROMIUM_EXECUTABLE") or shutil.which("chromium")
    return Path(found or "/usr/bin/chromium")


def launch_chromium(playwright: Any, path: Path | None = None) -> Any:
    """A headless Chromium browser (Playwright ``Browser``) from ``path`` or chromium_path()."""
    path = path or chromium_path()
    if not path.exists():
        raise FileNotFoundError(MISSING.format(path=path))
    args = list(CHROMIUM_ARGS)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to sandbox itself as root
    return playwright.chromium.launch(executable_path=str(path), headless=True, args=args)
