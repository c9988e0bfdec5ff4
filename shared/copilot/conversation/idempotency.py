"""Idempotency keys on the customer's writes: a retried request gets the first one's answer.

A client that does not know whether its request was applied (a timeout, a dropped connection)
sends it again with the same ``Idempotency-Key``. The first request's answer is stored in the
same conditional write as its messages, under a claim that is a hash of the key and its scope
(the conversation for a post, the copilot for a start): so a retry, even one that races the
first request, can never store the message twice; it returns the stored answer instead.

The answer to a start carries the conversation token, a bearer secret. It is stored encrypted
with a pad that only the key derives (the store holds a hash of the key, never the key), so
only a caller presenting the key recovers it; that makes a start key a credential, hence the
minimum length (clients send a random UUID).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Generic, TypeVar

from pydantic import BaseModel

from copilot.conversation.models import IdempotentOutcome
from copilot.errors import IdempotencyKeyReusedError
from copilot.schema import utcnow

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_PATTERN = r"^[A-Za-z0-9_.:-]{16,128}$"
WINDOW = timedelta(hours=24)  # a retry within this window gets the stored answer
_KEY = re.compile(KEY_PATTERN)
_SALT_BYTES = 16

T = TypeVar("T", bound=BaseModel)


def valid_key(key: str) -> bool:
    return _KEY.fullmatch(key) is not None


@dataclass(frozen=True)
class Done(Generic[T]):
    """A write's answer, and whether it is the stored answer of an earlier request."""

    response: T
    replayed: bool = False


@dataclass(frozen=True)
class IdempotentRequest:
    """One request under a client's key: ``scope`` bounds where the key counts (e.g.
    ``post:<conversation id>``); ``payload`` is what a retry must repeat exactly."""

    scope: str
    key: str
    payload: str

    @property
    def claim(self) -> str:
        return _digest(b"claim", self.scope, self.key)

    @property
    def fingerprint(self) -> str:
        return _digest(b"request", self.scope, self.payload)

    def outcome(
        self, status: int, response: BaseModel, secret: str | None = None
    ) -> IdempotentOutcome:
        """The answer to store; ``secret``: a field of the response to keep only encrypted."""
        body = response.model_dump(mode="json")
        sealed = None
        if secret is not None:
            sealed = self._seal(str(body[secret]))
            body[secret] = ""
        return IdempotentOutcome(
            claim=self.claim,
            fingerprint=self.fingerprint,
            status=status,
            body=json.dumps(body),
            secret_field=secret,
            sealed=sealed,
            expires_at=utcnow() + WINDOW,
        )

    def replay(self, outcome: IdempotentOutcome, model: type[T]) -> Done[T]:
        """The stored answer; IdempotencyKeyReusedError if it answered another request."""
        if not hmac.compare_digest(outcome.fingerprint, self.fingerprint):
            raise IdempotencyKeyReusedError(
                f"this {HEADER} was used for a different request in the last "
                f"{int(WINDOW.total_seconds() // 3600)} h; send a new key for a new request",
                field=HEADER,
            )
        body = json.loads(outcome.body)
        if outcome.secret_field is not None and outcome.sealed is not None:
            body[outcome.secret_field] = self._unseal(outcome.sealed)
        return Done(model.model_validate(body), replayed=True)

    def _pad(self, salt: bytes, length: int) -> bytes:
        # HMAC-SHA256 keyed by the client's key, in counter mode: a keystream nobody can
        # derive from what is stored (the claim is a differently labelled hash of the key).
        key = hmac.new(self.key.encode(), b"seal\0" + self.scope.encode(), "sha256").digest()
        blocks = (length + 31) // 32
        stream = b"".join(
            hmac.new(key, salt + i.to_bytes(4, "big"), "sha256").digest() for i in range(blocks)
        )
        return stream[:length]

    def _seal(self, secret: str) -> str:
        salt = secrets.token_bytes(_SALT_BYTES)
        plain = secret.encode()
        cipher = bytes(a ^ b for a, b in zip(plain, self._pad(salt, len(plain)), strict=True))
        return base64.urlsafe_b64encode(salt + cipher).decode()

    def _unseal(self, sealed: str) -> str:
        raw = base64.urlsafe_b64decode(sealed)
        salt, cipher = raw[:_SALT_BYTES], raw[_SALT_BYTES:]
        pad = self._pad(salt, len(cipher))
        return bytes(a ^ b for a, b in zip(cipher, pad, strict=True)).decode()


def _digest(label: bytes, scope: str, value: str) -> str:
    return hashlib.sha256(b"\0".join([label, scope.encode(), value.encode()])).hexdigest()
