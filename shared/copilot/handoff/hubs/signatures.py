"""Webhook signatures of the named hubs: ``<algorithm>=<base64 HMAC of the raw body>`` in a
header (Genesys: ``X-Hub-Signature-256: sha256=...``; LivePerson: ``X-LivePerson-Signature:
sha1=...``, sha256 accepted too), checked in constant time. Neither hub signs a timestamp, so
a replay is stopped by the event ids (claimed once) and the hub's order, not here."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

from copilot.errors import ForbiddenError, UnauthorizedError
from copilot.ports import InboundRequest

ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}


def hmac_b64(key: str | bytes, body: bytes, algorithm: str = "sha256") -> str:
    raw = key.encode() if isinstance(key, str) else key
    return base64.b64encode(hmac.new(raw, body, ALGORITHMS[algorithm]).digest()).decode()


def hmac_hex(key: str | bytes, body: bytes, algorithm: str = "sha256") -> str:
    """The hex HMAC of ``body`` (ServiceNow's Message Auth hash token: HmacSHA1 in hex)."""
    raw = key.encode() if isinstance(key, str) else key
    return hmac.new(raw, body, ALGORITHMS[algorithm]).hexdigest()


def signature_header(key: str | bytes, body: bytes, algorithm: str = "sha256") -> str:
    """The header value a hub sends: ``sha256=<base64>``."""
    return f"{algorithm}={hmac_b64(key, body, algorithm)}"


def check_hmac_header(
    request: InboundRequest,
    header: str,
    key: str | bytes,
    algorithms: Iterable[str] = ("sha256",),
) -> None:
    """401 when ``header`` is missing; 403 when it is malformed, of another algorithm, or
    does not match the raw body."""
    given = request.header(header)
    if not given:
        raise UnauthorizedError(f"sign the call: {header}")
    algorithm, sep, value = given.strip().partition("=")
    allowed = tuple(algorithms)
    if not sep or algorithm.lower() not in allowed:
        raise ForbiddenError(f"{header} must be '<{'|'.join(allowed)}>=<base64 HMAC of the body>'")
    expected = hmac_b64(key, request.body, algorithm.lower())
    if not hmac.compare_digest(value.encode(), expected.encode()):
        raise ForbiddenError("the signature does not match")
