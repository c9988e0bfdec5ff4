"""OAuth 2.0 tokens for the hub connectors: one token request, cached until it expires.

The client_credentials grant, or the password grant when a username is configured (both hubs
accept either). A hub that gives no ``expires_in`` keeps its token until the connector asks
for a new one (after a 401).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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


class OAuthClient:
    def __init__(
        self,
        http: HubHttp,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        refused: RefusalError,
        username: str | None = None,
        password: str | None = None,
        default_lifetime: float | None = None,  # seconds, when the answer has no expires_in
    ) -> None:
        self._http = http
        self.token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._username = username
        self._password = password
        self._refused = refused
        self._default_lifetime = default_lifetime
        self._token: Token | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    @property
    def grant_type(self) -> str:
        return "password" if self._username else "client_credentials"

    def token(self, *, force: bool = False) -> Token:
        """The cached token, or a new one when ``force``d or about to expire."""
        with self._lock:
            if self._token is not None and not force and time.monotonic() < self._expires:
                return self._token
            form = {
                "grant_type": self.grant_type,
                "client_id": self._client_id,
                "client_secret": self._client_secret,
            }
            if self._username:
                form.update(username=self._username, password=str(self._password))
            response = self._http.request(
                "POST", self.token_url, data=form, headers={"Accept": "application/json"}
            )
            if not response.ok:
                raise self._refused(response, self.grant_type)
            body = json_body(response, self._http.hub)
            access_token = body.get("access_token") if isinstance(body, dict) else None
            if not access_token:
                raise UnavailableError(f"{self._http.hub}'s token answer has no access_token")
            self._token = Token(str(access_token), body)
            self._expires = self._expiry(body.get("expires_in"))
            return self._token

    def _expiry(self, expires_in: Any) -> float:
        lifetime = float(expires_in) if expires_in else self._default_lifetime
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
