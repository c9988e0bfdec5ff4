"""OAuth 2.0 tokens for the hub connectors: one token request, cached until it expires.

The client_credentials grant, or the password grant when a username is configured (both hubs
accept either). A hub that gives no ``expires_in`` keeps its token until the connector asks
for a new one (after a 401).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from copilot.errors import CopilotError, UnavailableError
from copilot.sources.kb.base import HubHttp, json_body

RENEW_MARGIN = 60.0  # seconds before expiry a token is renewed


@dataclass(frozen=True)
class Token:
    access_token: str
    fields: dict[str, Any]  # the whole answer: Salesforce adds instance_url


# (the refused answer, the grant type) -> the error to raise: each hub names its own settings
RefusalError = Callable[[requests.Response, str], CopilotError]


@dataclass
class OAuthClient:
    http: HubHttp
    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    refused: RefusalError
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    default_lifetime: float | None = None  # seconds, when the answer has no expires_in
    _token: Token | None = field(default=None, init=False, repr=False)
    _expires: float = field(default=0.0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def grant_type(self) -> str:
        return "password" if self.username else "client_credentials"

    def token(self, *, force: bool = False) -> Token:
        """The cached token, or a new one when ``force``d or about to expire."""
        with self._lock:
            if self._token is not None and not force and time.monotonic() < self._expires:
                return self._token
            form = {
                "grant_type": self.grant_type,
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            }
            if self.username:
                form.update(username=self.username, password=str(self.password))
            response = self.http.request(
                "POST", self.token_url, data=form, headers={"Accept": "application/json"}
            )
            if not response.ok:
                raise self.refused(response, self.grant_type)
            body = json_body(response, self.http.hub)
            access_token = body.get("access_token") if isinstance(body, dict) else None
            if not access_token:
                raise UnavailableError(f"{self.http.hub}'s token answer has no access_token")
            self._token = Token(str(access_token), body)
            self._expires = self._expiry(body.get("expires_in"))
            return self._token

    def _expiry(self, expires_in: Any) -> float:
        lifetime = float(expires_in) if expires_in else self.default_lifetime
        if lifetime is None:
            return float("inf")
        return time.monotonic() + max(lifetime - RENEW_MARGIN, lifetime / 2)


def oauth_error(response: requests.Response) -> str:
    """``{"error": ..., "error_description": ...}`` (RFC 6749) -> text."""
    try:
        body = response.json()
        error = body.get("error") or "error"
        return f"{error}: {body.get('error_description') or 'no detail'}"
    except (ValueError, AttributeError):
        return f"HTTP {response.status_code}"
