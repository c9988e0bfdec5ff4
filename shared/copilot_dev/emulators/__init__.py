"""Loopback emulators of the external hubs the copilot talks to, for tests and the local stack.

Each emulator is a small threaded HTTP server speaking the hub's real wire shapes::

    from copilot_dev.emulators.servicenow_kb import ServiceNowKbEmulator

    with ServiceNowKbEmulator() as hub:      # or hub = ServiceNowKbEmulator().start()
        hub.add_article("Reset your password", "<p>...</p>")
        source = ServiceNowKnowledge(hub.url, username=hub.username, password=hub.password)

They keep their data in memory, record the requests they answered (``hub.requests``), and have
switches for failure modes: ``fail_with`` (answer every request with that HTTP status, e.g. 503),
``delay`` (seconds to wait before answering) and token expiry.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    args: dict[str, str]  # query string
    auth: str | None = None  # the Authorization scheme used: "Basic", "Bearer" or None
    form: dict[str, str] = field(default_factory=dict)  # form fields, secrets left out
    status: int = 0  # the status the emulator answered with

    @classmethod
    def of(
        cls, request: Request, status: int, form_fields: Collection[str] = ()
    ) -> RecordedRequest:
        """Keep the auth scheme, never the credential, and only the form fields named."""
        form = {k: v for k, v in request.form.items() if k in form_fields} if form_fields else {}
        return cls(
            method=request.method,
            path=request.path,
            args=dict(request.args.items()),
            auth=request.headers.get("Authorization", "").split(" ", 1)[0] or None,
            form=form,
            status=status,
        )


def json_response(
    body: Any,
    status: int,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> Response:
    return Response(
        json.dumps(body), status=status, headers=headers or {}, content_type=content_type
    )


class TickingClock:
    """A deterministic clock for tests: each reading is ``step`` later than the previous."""

    def __init__(self, start: datetime | None = None, step: timedelta = timedelta(minutes=1)):
        self._now = start or datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
        self._step = step
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            self._now += self._step
            return self._now


def wall_clock() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class LoopbackServer:
    """Start/stop plumbing: a werkzeug threaded server on 127.0.0.1 (free port by default)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._server = make_server(self._host, self._port, self.wsgi, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self._server.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(5)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://{self._host}:{self._server.port}"

    def serve_until_interrupted(self) -> None:
        """Keep serving in the foreground (the ``python -m`` entry points) until Ctrl-C."""
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RecordingServer(LoopbackServer):
    """A loopback server that waits ``delay``, answers with ``_answer`` and records each request."""

    recorded_form_fields: tuple[str, ...] = ()  # form fields safe to keep (no secrets)

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.delay: float = 0.0  # seconds to wait before answering
        self.requests: list[RecordedRequest] = []
        self._lock = threading.RLock()

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if self.delay:
            time.sleep(self.delay)
        response = self._answer(request)
        record = RecordedRequest.of(request, response.status_code, self.recorded_form_fields)
        with self._lock:
            self.requests.append(record)
        return response(environ, start_response)

    def _answer(self, request: Request) -> Response:  # pragma: no cover
        raise NotImplementedError


__all__ = [
    "LoopbackServer",
    "RecordedRequest",
    "RecordingServer",
    "TickingClock",
    "json_response",
    "wall_clock",
]
