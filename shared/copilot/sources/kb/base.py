"""Knowledge-base connectors: published articles of a support hub -> knowledge files in the bucket.

A ``KbSource`` (ServiceNow Knowledge, Salesforce Knowledge) answers one question: which articles
were published, changed or withdrawn since a point in time. ``copilot.sources.kb.sync`` turns that into
HTML files under ``<copilot_id>/kb/<source>/`` (writing one triggers indexing, deleting one
removes it from the index) and keeps the updated-since watermark in the StateStore.

Hub errors become project errors: ``UnavailableError`` when a later run may succeed (timeouts,
5xx, rate limits), ``ForbiddenError`` when the hub refuses the credentials, ``BadRequestError``
when the configuration is wrong. Messages name the setting to fix.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from pydantic import SecretStr

from copilot.errors import BadRequestError, UnavailableError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Article:
    """One published article, as the copilot stores it."""

    article_id: str  # stable across versions: ServiceNow number, Salesforce ArticleNumber
    title: str
    body_html: str
    url: str  # where a citation links to
    updated: datetime  # UTC, the hub's last-modified time of this version


@dataclass(frozen=True)
class Retirement:
    """An article that must no longer be answered from (retired, archived, unpublished)."""

    article_id: str
    updated: datetime
    reason: str


@dataclass(frozen=True)
class ArticleChanges:
    published: list[Article] = field(default_factory=list)
    retired: list[Retirement] = field(default_factory=list)
    # The latest hub timestamp among every record the change query returned (published or
    # not): the next incremental run asks for changes from here.
    high_water: datetime | None = None


class KbSource(abc.ABC):
    """A knowledge hub. ``name`` is the folder under ``<copilot_id>/kb/``."""

    name: str

    @abc.abstractmethod
    def changes(self, since: datetime | None) -> ArticleChanges:
        """Articles changed at or after ``since``; with ``since=None`` every published article.

        Must either return the complete answer or raise (UnavailableError, ForbiddenError,
        BadRequestError): a partial answer would let the watermark skip articles.
        """


# --- HTTP plumbing shared by the connectors ------------------------------------------------

TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class HttpPolicy:
    timeout: float = 30.0  # seconds to connect and between bytes of the answer
    retries: int = 2  # extra attempts after a timeout, connection error, 429 or 5xx
    backoff: float = 0.5  # first pause between attempts, doubled each time
    max_retry_after: float = 30.0  # longest Retry-After we wait for inside one run


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    hub: str,
    policy: HttpPolicy,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: Any,
) -> requests.Response:
    """One HTTP exchange with retries on transient failures.

    Returns the response for every status but the transient ones; raises UnavailableError
    once the retries are spent, BadRequestError for a URL that can never work.
    """
    attempt = 0
    while True:
        retry_after: float | None = None
        try:
            response = session.request(
                method, url, timeout=(min(policy.timeout, 10.0), policy.timeout), **kwargs
            )
        except (
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
            requests.exceptions.InvalidURL,
        ) as e:
            raise BadRequestError(f"{hub}: '{origin(url)}' is not a usable URL ({e})") from e
        except requests.Timeout as e:
            error: UnavailableError = UnavailableError(
                f"{hub} at {origin(url)} did not answer within {policy.timeout:g} s; "
                "nothing was changed and the next sync retries"
            )
            cause: BaseException | None = e
        except requests.RequestException as e:
            error = UnavailableError(
                f"cannot reach {hub} at {origin(url)} ({type(e).__name__}); check the URL "
                "and the network path. Nothing was changed and the next sync retries"
            )
            cause = e
        else:
            if response.status_code not in TRANSIENT_STATUSES:
                return response
            error = UnavailableError(
                f"{hub} at {origin(url)} is unavailable (HTTP {response.status_code}); "
                "nothing was changed and the next sync retries"
            )
            cause = None
            retry_after = _retry_after(response)
        if attempt >= policy.retries:
            raise error from cause
        delay = policy.backoff * (2**attempt)
        if retry_after is not None:
            if retry_after > policy.max_retry_after:
                raise error from cause
            delay = max(delay, retry_after)
        log.info("%s: %s; retrying in %.1f s", hub, error.message, delay)
        sleep(delay)
        attempt += 1


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    try:
        return float(value) if value else None
    except ValueError:
        return None  # an HTTP date: rare for these hubs; plain backoff applies


def json_body(response: requests.Response, hub: str) -> Any:
    """The JSON of a 2xx answer. A hub that answers with a web page (a hibernating developer
    instance, a single-sign-on redirect, a proxy) is treated as unavailable, not as data."""
    try:
        return response.json()
    except ValueError as e:
        kind = response.headers.get("Content-Type", "no content type")
        raise UnavailableError(
            f"{hub} at {origin(response.url)} answered HTTP {response.status_code} with "
            f"{kind} instead of JSON (is the instance asleep or behind a login page?)"
        ) from e


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


__all__ = [
    "Article",
    "ArticleChanges",
    "HttpPolicy",
    "KbSource",
    "Retirement",
    "json_body",
    "origin",
    "send",
    "utc",
]


def secret_value(value: SecretStr | str | None) -> str | None:
    """A credential as plain text (None when unset or empty)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value() or None
    return value or None
