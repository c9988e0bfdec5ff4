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
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from pydantic import SecretStr
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

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
    backoff: float = 0.5  # urllib3's backoff_factor: pauses of 0, 2x, 4x ... this
    max_retry_after: float = 30.0  # longest pause (Retry-After or back-off) inside one run


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def retry_policy(policy: HttpPolicy) -> Retry:
    """What may pass is retried by urllib3: connection errors, timeouts and TRANSIENT_STATUSES,
    with exponential back-off, honouring Retry-After (seconds or an HTTP date). Every pause is
    capped at ``max_retry_after``, so a run waits at most ``retries`` times that."""
    return Retry(
        total=policy.retries,
        status_forcelist=TRANSIENT_STATUSES,
        allowed_methods=frozenset({"GET", "POST"}),  # the POSTs are token requests: repeatable
        backoff_factor=policy.backoff,
        backoff_max=policy.max_retry_after,
        respect_retry_after_header=True,
        retry_after_max=math.ceil(policy.max_retry_after),
        raise_on_status=False,  # the last transient answer is returned and mapped below
    )


class HubHttp:
    """HTTP to one hub: a session that retries what may pass (built once per connector), and
    hub failures as project errors."""

    def __init__(
        self, hub: str, policy: HttpPolicy | None = None, session: requests.Session | None = None
    ) -> None:
        self.hub = hub
        self.policy = policy or HttpPolicy()
        self.session = session or requests.Session()
        adapter = HTTPAdapter(max_retries=retry_policy(self.policy))
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """The response for every status but the transient ones; UnavailableError once the
        retries are spent, BadRequestError for a URL that can never work."""
        hub, timeout = self.hub, self.policy.timeout
        try:
            response = self.session.request(
                method, url, timeout=(min(timeout, 10.0), timeout), **kwargs
            )
        except (
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
            requests.exceptions.InvalidURL,
        ) as e:
            raise BadRequestError(f"{hub}: '{origin(url)}' is not a usable URL ({e})") from e
        except requests.RequestException as e:
            if _timed_out(e):
                raise UnavailableError(
                    f"{hub} at {origin(url)} did not answer within {timeout:g} s; "
                    "nothing was changed and the next sync retries"
                ) from e
            raise UnavailableError(
                f"cannot reach {hub} at {origin(url)} ({type(e).__name__}); check the URL "
                "and the network path. Nothing was changed and the next sync retries"
            ) from e
        if response.status_code in TRANSIENT_STATUSES:
            raise UnavailableError(
                f"{hub} at {origin(url)} is unavailable (HTTP {response.status_code}); "
                "nothing was changed and the next sync retries"
            )
        return response


def _timed_out(error: requests.RequestException) -> bool:
    """requests reports a read timeout whose retries are spent as a ConnectionError around
    urllib3's MaxRetryError; its reason says what happened."""
    if isinstance(error, requests.Timeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    refused = isinstance(reason, urllib3.exceptions.NewConnectionError)  # a subclass, oddly
    return isinstance(reason, urllib3.exceptions.TimeoutError) and not refused


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
    "HubHttp",
    "KbSource",
    "Retirement",
    "json_body",
    "origin",
    "utc",
]


def secret_value(value: SecretStr | str | None) -> str | None:
    """A credential as plain text (None when unset or empty)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value() or None
    return value or None
