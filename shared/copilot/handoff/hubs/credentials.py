"""A named hub's secret is a JSON object of credentials (docs/hubs/), resolved from
``secret_ref`` like the generic hub's key. Parsed here, once for every adapter."""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from copilot.errors import UnavailableError

C = TypeVar("C", bound=BaseModel)


def parse_credentials(secret: str, model: type[C], hub: str) -> C:
    """``secret`` as ``model``. A secret that is not that JSON object is our configuration's
    fault: UnavailableError (503: a hub redelivers, the outbox retries) naming what is
    missing, never the value."""
    try:
        return model.model_validate(json.loads(secret))
    except (ValueError, ValidationError) as e:
        fields = ", ".join(model.model_fields)
        if isinstance(e, ValidationError):
            missing = ", ".join(".".join(map(str, x["loc"])) for x in e.errors())
            detail = f"fix: {missing}"
        else:
            detail = "not JSON"
        raise UnavailableError(
            f"the {hub} hub's secret must be a JSON object with {fields} ({detail})"
        ) from None


def signing_key(hub_configured: bool, secret: str, model: type[C], field: str, hub: str) -> str:
    """The webhook signing key among the credentials; a random one when the copilot has no
    such hub, so the answer is the same as for a wrong signature."""
    if not hub_configured:
        return os.urandom(32).hex()
    return str(getattr(parse_credentials(secret, model, hub), field))


def basic_pair(authorization: str | None) -> tuple[str, str] | None:
    """The user and password of an ``Authorization: Basic`` header; None when the header is
    missing, of another scheme, or not base64 of ``user:password``."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        pair = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = pair.partition(":")
    return (user, password) if sep else None
