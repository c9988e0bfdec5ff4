"""The KB connectors' HTTP layer (urllib3 Retry under requests) against a loopback server:
what is retried, how long it waits, and which project error comes out."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from typing import Any

import pytest

from copilot.errors import UnavailableError
from copilot.sources.kb.base import HttpPolicy, HubHttp
from copilot_dev.localstack import free_port

pytestmark = pytest.mark.integration


class Hub:
    """Answers each request with the next scripted (status, headers, delay); 200 when done."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], float]] = []
        self.seen: list[tuple[str, float]] = []  # (method, monotonic time)
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                hub.seen.append((self.command, time.monotonic()))
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                status, headers, delay = hub.script.pop(0) if hub.script else (200, {}, 0.0)
                time.sleep(delay)
                body = b'{"ok": true}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the client gave up on a slow answer: expected

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def pauses(self) -> list[float]:
        times = [t for _, t in self.seen]
        return [b - a for a, b in pairwise(times)]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def hub() -> Iterator[Hub]:
    server = Hub()
    yield server
    server.stop()


def test_transient_statuses_are_retried_then_succeed(hub: Hub) -> None:
    hub.script = [(503, {}, 0.0), (429, {}, 0.0)]
    http = HubHttp("Hub", HttpPolicy(timeout=5, retries=2, backoff=0))
    assert http.request("GET", hub.url).status_code == 200
    assert len(hub.seen) == 3


def test_retries_are_bounded_and_the_last_answer_is_unavailable(hub: Hub) -> None:
    hub.script = [(502, {}, 0.0)] * 5
    http = HubHttp("Hub", HttpPolicy(timeout=5, retries=2, backoff=0))
    with pytest.raises(UnavailableError, match=r"unavailable \(HTTP 502\).*next sync retries"):
        http.request("GET", hub.url)
    assert len(hub.seen) == 3  # the first attempt and two retries


def test_token_posts_are_retried_too(hub: Hub) -> None:
    hub.script = [(503, {}, 0.0)]
    http = HubHttp("Hub", HttpPolicy(timeout=5, retries=1, backoff=0))
    assert http.request("POST", hub.url, data={"grant_type": "x"}).ok
    assert [m for m, _ in hub.seen] == ["POST", "POST"]


def test_retry_after_in_seconds_is_honoured(hub: Hub) -> None:
    hub.script = [(429, {"Retry-After": "1"}, 0.0)]
    http = HubHttp("Hub", HttpPolicy(timeout=5, retries=1, backoff=0))
    assert http.request("GET", hub.url).ok
    assert 0.9 <= hub.pauses()[0] < 3


def test_retry_after_as_an_http_date_is_honoured(hub: Hub) -> None:
    hub.script = [(503, {"Retry-After": formatdate(time.time() + 2, usegmt=True)}, 0.0)]
    http = HubHttp("Hub", HttpPolicy(timeout=5, retries=1, backoff=0))
    assert http.request("GET", hub.url).ok
    assert 0.9 <= hub.pauses()[0] < 3.5  # the date has one-second resolution


def test_a_long_retry_after_is_capped(hub: Hub) -> None:
    hub.script = [(429, {"Retry-After": "3600"}, 0.0)]
    http = HubHttp("Hub", HttpPolicy(timeout=5, retries=1, backoff=0, max_retry_after=1))
    assert http.request("GET", hub.url).ok
    assert hub.pauses()[0] < 3


def test_a_read_timeout_after_the_retries_says_so(hub: Hub) -> None:
    hub.script = [(200, {}, 1.0), (200, {}, 1.0)]
    http = HubHttp("Hub", HttpPolicy(timeout=0.3, retries=1, backoff=0))
    with pytest.raises(UnavailableError, match=r"did not answer within 0\.3 s"):
        http.request("GET", hub.url)
    # The retry has left the client; on a loaded machine the server's thread may record it late.
    deadline = time.monotonic() + 3
    while len(hub.seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(hub.seen) == 2


def test_a_refused_connection_is_unreachable_not_a_timeout() -> None:
    http = HubHttp("Hub", HttpPolicy(timeout=2, retries=1, backoff=0))
    with pytest.raises(UnavailableError, match="cannot reach Hub"):
        http.request("GET", f"http://127.0.0.1:{free_port()}/api")
