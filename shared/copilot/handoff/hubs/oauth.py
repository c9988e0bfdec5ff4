"""Access tokens (OAuth client credentials and the like), cached per process until shortly
before they expire: every adapter that needs one gets it here."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from copilot.errors import HubUnavailableError
from copilot.handoff.hubs.http import HubHttp, json_of

MARGIN_SECONDS = 60  # renewed this long before its expiry (never used in its last minute)
DEFAULT_LIFETIME = 3600  # when the hub's answer does not say


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: float  # time.time() seconds


class TokenCache:
    """Tokens by key (e.g. the hub's login URL + client id), each fetched once at a time."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._tokens: dict[str, AccessToken] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def get(self, key: str, fetch: Callable[[], AccessToken], *, renew: bool = False) -> str:
        """The cached token, or a new one from ``fetch`` when there is none, it is about to
        expire, or ``renew`` (the hub refused it)."""
        with self._lock:
            cached = self._tokens.get(key)
            fresh = cached is not None and cached.expires_at - MARGIN_SECONDS > self._clock()
            if fresh and not renew:
                assert cached is not None
                return cached.value
            token = fetch()
            self._tokens[key] = token
            return token.value

    def forget(self, key: str) -> None:
        with self._lock:
            self._tokens.pop(key, None)


def token_from(answer: Any, hub: str, field: str = "access_token") -> AccessToken:
    """An AccessToken from a token endpoint's JSON answer (``expires_in`` seconds)."""
    if not isinstance(answer, dict) or not isinstance(answer.get(field), str):
        raise HubUnavailableError(f"{hub}'s token endpoint answered without '{field}'")
    lifetime = answer.get("expires_in")
    seconds = lifetime if isinstance(lifetime, int | float) and lifetime > 0 else DEFAULT_LIFETIME
    return AccessToken(answer[field], time.time() + float(seconds))


def client_credentials(
    http: HubHttp,
    url: str,
    client_id: str,
    client_secret: str,
    *,
    basic: bool = True,
    params: dict[str, str] | None = None,
) -> AccessToken:
    """RFC 6749 §4.4: ``grant_type=client_credentials``, the client authenticated with HTTP
    Basic (``basic``) or with ``client_id``/``client_secret`` in the form (some hubs want the
    form in the query: pass ``params``)."""
    form = {"grant_type": "client_credentials"}
    headers = {"Accept": "application/json"}
    if basic:
        pair = f"{client_id}:{client_secret}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    else:
        form |= {"client_id": client_id, "client_secret": client_secret}
    if params is not None:
        response = http.call("POST", url, params={**form, **params}, headers=headers)
    else:
        response = http.call("POST", url, data=form, headers=headers)
    return token_from(json_of(response, http.hub), http.hub)
