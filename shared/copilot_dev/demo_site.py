"""The demo business's web site (Northwind Bikes) with the copilot's web chat embedded.

``copilot up`` serves it beside the stack, so a new user sees the copilot the way a customer
meets it: one ``<script>`` tag on a page of another origin than the chat API (the browser's
CORS check is real). The browser tests and the page-latency benchmark load it too::

    with DemoSite(chat_url) as site:          # a free port by default
        site.copilot_id = copilot.copilot_id  # known after seeding, which needs site.origin
        page.goto(site.url)

The pages (infra/demo/site/*.html) name the chat API and the copilot with placeholders, filled
in when they are served; the other files of the folder are served as they are.
"""

from __future__ import annotations

import html
import mimetypes
from pathlib import Path
from typing import Any

from werkzeug.security import safe_join
from werkzeug.wrappers import Request, Response

from copilot_dev.emulators import LoopbackServer

SITE_DIR = Path(__file__).resolve().parents[2] / "infra" / "demo" / "site"
PAGE = "index.html"


class DemoSite(LoopbackServer):
    def __init__(
        self,
        api_base: str,
        copilot_id: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        folder: Path = SITE_DIR,
    ) -> None:
        super().__init__(host, port)
        self.api_base = api_base.rstrip("/")
        self.copilot_id = copilot_id  # the pages say they are not ready until this is set
        self.folder = folder

    @property
    def origin(self) -> str:
        return self.url  # scheme, host and port: what the browser sends as Origin

    def origins(self) -> list[str]:
        """The site's origins by IP and by name: both belong in the copilot's allowed_origins
        (a user may open either)."""
        return [self.origin, self.origin.replace("://127.0.0.1:", "://localhost:")]

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        return self._answer(request)(environ, start_response)

    def _answer(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response("method not allowed", status=405, headers={"Allow": "GET, HEAD"})
        name = request.path.lstrip("/") or PAGE
        path = safe_join(str(self.folder), name)
        if path is None or not Path(path).is_file():
            return Response("not found", status=404, mimetype="text/plain")
        if name.endswith(".html"):
            return self._page(Path(path))
        mimetype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return Response(Path(path).read_bytes(), mimetype=mimetype)

    def _page(self, path: Path) -> Response:
        if not self.copilot_id:
            return Response(
                "The demo copilot is not created yet: reload in a few seconds.",
                status=503,
                mimetype="text/plain",
                headers={"Retry-After": "2"},
            )
        page = (
            path.read_text(encoding="utf-8")
            .replace("{{API_BASE}}", html.escape(self.api_base))
            .replace("{{COPILOT_ID}}", html.escape(self.copilot_id))
        )
        # Always the current copilot and API: a page cached from an earlier stack would not work.
        return Response(page, mimetype="text/html", headers={"Cache-Control": "no-store"})
