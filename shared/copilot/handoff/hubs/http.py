"""HTTP to a hub, once for every adapter: a ``requests.Session`` per thread, timeouts, and the
answer mapped to the outbox's two errors (HubUnavailableError: try again later;
HubRejectedError: refused for good), with one token renewal on a 401."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import requests

from copilot.errors import HubRejectedError, HubUnavailableError

RETRYABLE = frozenset({408, 425, 429})


class HubAuthError(HubUnavailableError):
    """The hub refused our token (401): renew it and try again."""


class HubHttp:
    def __init__(self, hub: str, timeout: float = 10) -> None:
        self.hub = hub
        self.timeout = timeout
        self._local = threading.local()  # requests.Session is not thread-safe

    def session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def call(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One call; the answer when it is a 2xx or 3xx, else the mapped error."""
        kwargs.setdefault("timeout", (3, self.timeout))
        try:
            response = self.session().request(method, url, **kwargs)
        except requests.RequestException as e:
            raise HubUnavailableError(f"{self.hub} did not answer ({type(e).__name__})") from e
        status = response.status_code
        if status == 401:
            raise HubAuthError(f"{self.hub} refused our credentials (401)")
        if status in RETRYABLE or status >= 500:
            raise HubUnavailableError(f"{self.hub} answered {status}")
        if status >= 400:
            detail = response.text[:200].replace("\n", " ")
            raise HubRejectedError(
                f"{self.hub} refused the call ({status}: {detail})", reason=f"http_{status}"
            )
        return response

    def authorized(
        self,
        method: str,
        url: str,
        token: Callable[[bool], str],
        *,
        scheme: str | None = "Bearer",
        header: str = "Authorization",
        **kwargs: Any,
    ) -> requests.Response:
        """A call carrying ``token(renew)``: on a 401 the token is renewed once and the call
        made again (a token may expire between our cache's check and the hub's)."""
        headers = dict(kwargs.pop("headers", None) or {})
        for renew in (False, True):
            value = token(renew)
            headers[header] = f"{scheme} {value}" if scheme else value
            try:
                return self.call(method, url, headers=headers, **kwargs)
            except HubAuthError:
                if renew:
                    raise
        raise AssertionError("unreachable")


def json_of(response: requests.Response, hub: str) -> Any:
    """The answer's JSON; HubUnavailableError when it is not JSON (a proxy's error page)."""
    try:
        return response.json()
    except ValueError as e:
        raise HubUnavailableError(f"{hub} answered {response.status_code} without JSON") from e
