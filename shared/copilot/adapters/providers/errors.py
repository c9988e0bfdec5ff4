"""Model-provider failures as the project's errors.

A provider call fails in the provider's own vocabulary: ``botocore`` raises ``ClientError``
(with an AWS error code) or a connection error, ``openai`` raises ``APIStatusError`` subclasses
or ``APIConnectionError``. Callers should only ever see:

* :class:`~copilot.errors.UnavailableError` -- transient: the provider is down, overloaded,
  throttling, timed out or unreachable; retrying later can succeed (503 to our clients);
* :class:`~copilot.errors.BadRequestError` -- configuration: wrong key or credentials, no
  access to the model, unknown model, invalid request; retrying cannot help (400).

This module imports nothing heavy: the provider libraries are only looked at once they have
raised, so they are loaded already.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from copilot.errors import BadRequestError, CopilotError, UnavailableError

T = TypeVar("T")

# AWS error codes (compared lower-cased: event-stream errors come as "throttlingException")
# that mean "try again later", whatever their HTTP status.
_AWS_TRANSIENT = frozenset(
    code.lower()
    for code in (
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "InternalServerException",
        "InternalFailure",
        "ModelTimeoutException",
        "ModelNotReadyException",
        "ModelStreamErrorException",
        "ModelErrorException",
        "ServiceQuotaExceededException",
        "RequestTimeout",
        "RequestTimeoutException",
        "ExpiredTokenException",
    )
)
# botocore errors raised before a request could be sent: the configuration is wrong.
_BOTOCORE_CONFIGURATION = (
    "NoCredentialsError",
    "PartialCredentialsError",
    "NoRegionError",
    "ParamValidationError",
    "UnknownServiceError",
    "InvalidRegionError",
    "InvalidEndpointConfigurationError",
    "ProfileNotFound",
    "UnknownCredentialError",
)


def map_provider_error(
    exc: BaseException, provider: str, *, model_field: str | None = None
) -> CopilotError | None:
    """The project error for a provider library's exception, or None if it is not one.

    ``model_field`` names the setting that chose the model, reported on "unknown model".
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # also what it was raised from
        seen.add(id(current))
        mapped = _map_one(current, provider, model_field)
        if mapped is not None:
            return mapped
        current = current.__cause__
    return None


def _map_one(exc: BaseException, provider: str, model_field: str | None) -> CopilotError | None:
    if isinstance(exc, CopilotError):
        return exc
    mapped = _map_botocore(exc, provider, model_field)
    if mapped is None:
        mapped = _map_openai(exc, provider, model_field)
    if mapped is None and isinstance(exc, ConnectionError | TimeoutError):
        # Python's own (langchain-aws raises ConnectionError on a truncated stream).
        mapped = UnavailableError(f"{provider} is unreachable: {exc}")
    return mapped


def _map_botocore(
    exc: BaseException, provider: str, model_field: str | None
) -> CopilotError | None:
    botocore = sys.modules.get("botocore.exceptions")
    if botocore is None:
        return None
    if isinstance(exc, botocore.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "")).split(":", 1)[0]
        message = error.get("Message") or str(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        text = f"{provider} answered {code or status}: {message}"
        if code.lower() in _AWS_TRANSIENT or status == 429 or status >= 500:
            return UnavailableError(text)
        if code.lower() == "resourcenotfoundexception":
            return BadRequestError(text, field=model_field)
        return BadRequestError(text)
    if isinstance(exc, botocore.BotoCoreError):
        if type(exc).__name__ in _BOTOCORE_CONFIGURATION:
            return BadRequestError(f"{provider} is misconfigured: {exc}")
        # Connection refused/reset, timeouts, truncated or corrupt responses, credential
        # endpoints not answering: the network or the service, not us.
        return UnavailableError(f"{provider} is unreachable: {exc}")
    return None


def _map_openai(exc: BaseException, provider: str, model_field: str | None) -> CopilotError | None:
    openai = sys.modules.get("openai")
    if openai is None or not isinstance(exc, openai.OpenAIError):
        return None
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return UnavailableError(f"{provider} is unreachable: {exc}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        body = exc.body if isinstance(exc.body, dict) else {}
        code = body.get("code") or getattr(exc, "code", None)
        message = body.get("message") or str(exc)
        text = f"{provider} answered {status}: {message}"
        if status == 429 and code == "insufficient_quota":
            return BadRequestError(text)  # billing: waiting will not help
        if status in (408, 409, 429) or status >= 500:
            return UnavailableError(text)
        if status == 401:
            return BadRequestError(text, field="openai_api_key")
        if status == 404:
            return BadRequestError(text, field=model_field)
        return BadRequestError(text)
    if isinstance(exc, openai.APIError):  # e.g. APIResponseValidationError
        return UnavailableError(f"{provider} sent an unexpected answer: {exc}")
    # OpenAIError raised before sending, e.g. "The api_key client option must be set".
    return BadRequestError(f"{provider} is misconfigured: {exc}")


@contextmanager
def provider_errors(provider: str, *, model_field: str | None = None) -> Iterator[None]:
    """Re-raise provider failures inside the block as UnavailableError/BadRequestError."""
    try:
        yield
    except Exception as exc:
        mapped = map_provider_error(exc, provider, model_field=model_field)
        if mapped is None or mapped is exc:
            raise
        raise mapped from exc


def call_with_provider_errors(
    fn: Callable[[], T], provider: str = "model provider", *, model_field: str | None = None
) -> T:
    """``fn()`` with provider failures mapped; for calls made on a raw client or model."""
    with provider_errors(provider, model_field=model_field):
        return fn()


__all__ = ["call_with_provider_errors", "map_provider_error", "provider_errors"]
