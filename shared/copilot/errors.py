"""The project's error hierarchy; entry points map these to status codes in one place."""

from __future__ import annotations


class CopilotError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    @property
    def headers(self) -> dict[str, str]:
        """Extra response headers the error's status calls for (e.g. Retry-After on 429)."""
        return {}


class BadRequestError(CopilotError):
    status = 400
    code = "bad_request"


class UnauthorizedError(CopilotError):
    status = 401
    code = "unauthorized"


class ForbiddenError(CopilotError):
    status = 403
    code = "forbidden"


class OriginNotAllowedError(ForbiddenError):
    """A browser page of an origin the copilot does not allow (its ``allowed_origins``)."""

    code = "origin_not_allowed"

    @classmethod
    def of(cls, origin: str) -> OriginNotAllowedError:
        return cls(
            f"the origin {origin[:200]!r} may not call this API from a browser: "
            "add it to the copilot's allowed_origins"
        )


class NotFoundError(CopilotError):
    status = 404
    code = "not_found"


class ConflictError(CopilotError):
    """The request conflicts with the stored state (e.g. no hand-off to cancel), or the service
    gave up after losing every race to concurrent writers; the client may try again.

    Stores signal a lost conditional write with copilot.conflicts.WriteConflict, never this.
    """

    status = 409
    code = "conflict"


class EmbedderMismatchError(CopilotError):
    """The copilot's knowledge was embedded with another model than the one configured.

    Retrying cannot help (the index stays as it is until the copilot is re-indexed), so it is
    no write conflict; 409 because the request conflicts with the stored index.
    """

    status = 409
    code = "embedder_mismatch"


class PayloadTooLargeError(CopilotError):
    status = 413
    code = "payload_too_large"


class TooManyRequestsError(CopilotError):
    """A rate limit was reached: the client may try again after ``retry_after`` seconds."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UnavailableError(CopilotError):
    """A dependency (storage, index, model) failed; the request may be retried."""

    status = 503
    code = "unavailable"


class PermanentIngestError(CopilotError):
    """A document can never be indexed as it is (bad type, corrupt, too large)."""

    status = 422
    code = "unprocessable"


class DuplicateError(CopilotError):
    """A write claimed a key (e.g. a hub's message id) that an earlier write already claimed."""

    status = 409
    code = "duplicate"


class IdempotencyKeyReusedError(CopilotError):
    """An idempotency key sent again with a different request (IETF idempotency-key draft)."""

    status = 422
    code = "idempotency_key_reused"


class HubUnavailableError(UnavailableError):
    """The hub did not take a call (network error, timeout, 429, 5xx): try again later."""


class HubRejectedError(CopilotError):
    """The hub refused a call for good (no agents, closed, a 4xx): retrying will not help."""

    status = 502
    code = "hub_rejected"

    def __init__(self, message: str, *, reason: str = "rejected") -> None:
        super().__init__(message)
        self.reason = reason
