"""Salesforce Knowledge (Lightning Knowledge, ``Knowledge__kav``) through the REST API.

An OAuth 2.0 token from ``POST {login_url}/services/oauth2/token`` (client_credentials, or the
password flow when a username is configured) gives ``access_token`` and ``instance_url``; SOQL
then runs at ``GET {instance_url}/services/data/v{api_version}/query?q=...`` and pages through
``nextRecordsUrl``. A 401 ``INVALID_SESSION_ID`` (expired or revoked session) gets one new
token and one retry.

Each publication of an article creates a new version record (new ``Id``, same
``ArticleNumber`` and ``KnowledgeArticleId``); the previous version becomes ``Archived`` with
``IsLatestVersion = false``. So the copilot keys files by ``ArticleNumber`` and treats as
withdrawn only archived versions that are the article's latest (``IsLatestVersion = true``),
i.e. articles with no online version left; their time is ``ArchivedDate``.
"""

from __future__ import annotations

import html
import logging
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urljoin

import requests
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from copilot.errors import BadRequestError, CopilotError, ForbiddenError, UnavailableError
from copilot.sources.kb.base import (
    Article,
    ArticleChanges,
    HttpPolicy,
    HubHttp,
    KbSource,
    Retirement,
    json_body,
    origin,
    secret_value,
)
from copilot.sources.kb.oauth import OAuthClient, oauth_error

log = logging.getLogger(__name__)

HUB = "Salesforce"
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_API_VERSION = re.compile(r"^\d{2,3}\.0$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(_[A-Za-z0-9]{2,4})*$")
_MAX_PAGES = 10_000


class SalesforceSettings(BaseSettings):
    """``COPILOT_SALESFORCE_*``. client_credentials needs the org's My Domain login URL
    (https://acme.my.salesforce.com); the password flow also works with login.salesforce.com."""

    model_config = SettingsConfigDict(env_prefix="COPILOT_SALESFORCE_", extra="ignore")

    login_url: str = "https://login.salesforce.com"
    client_id: str | None = None
    client_secret: SecretStr | None = None
    username: str | None = Field(None, description="Set to use the password flow")
    password: SecretStr | None = Field(None, description="Password + security token")
    api_version: str = "60.0"
    body_field: str = Field("Body__c", description="API name of the rich-text body field")
    article_object: str = Field("Knowledge__kav", description="Renamed in some orgs")
    article_url_base: str | None = Field(
        None,
        description="Public article address before the UrlName, e.g. "
        "https://help.acme.com/s/article; default: the Lightning record page",
    )
    language: str | None = Field(None, description="e.g. en_US; needed in multilingual orgs")
    timeout_seconds: float = Field(30.0, gt=0)


def format_datetime(value: datetime) -> str:
    """A SOQL dateTime literal (unquoted): 2024-05-01T10:00:00Z."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(value: str) -> datetime:
    """Salesforce's ``2024-05-01T10:00:00.000+0000``."""
    return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).astimezone(UTC)


class SalesforceKnowledge(KbSource):
    name = "salesforce"

    def __init__(
        self,
        login_url: str,
        client_id: str,
        client_secret: SecretStr | str,
        *,
        username: str | None = None,
        password: SecretStr | str | None = None,
        api_version: str = "60.0",
        body_field: str = "Body__c",
        article_object: str = "Knowledge__kav",
        article_url_base: str | None = None,
        language: str | None = None,
        policy: HttpPolicy | None = None,
        session: requests.Session | None = None,
    ) -> None:
        if not login_url or not login_url.startswith(("https://", "http://")):
            raise BadRequestError(
                "COPILOT_SALESFORCE_LOGIN_URL must be an address such as "
                "https://acme.my.salesforce.com"
            )
        secret = secret_value(client_secret)
        if not client_id or not secret:
            raise BadRequestError(
                "Salesforce credentials are missing: set COPILOT_SALESFORCE_CLIENT_ID and "
                "COPILOT_SALESFORCE_CLIENT_SECRET (the connected app's consumer key and secret)"
            )
        if bool(username) != bool(secret_value(password)):
            raise BadRequestError(
                "the Salesforce password flow needs both COPILOT_SALESFORCE_USERNAME and "
                "COPILOT_SALESFORCE_PASSWORD; leave both unset for client credentials"
            )
        api_version = api_version.removeprefix("v")
        if not _API_VERSION.match(api_version):
            raise BadRequestError(
                f"COPILOT_SALESFORCE_API_VERSION '{api_version}' is not like 60.0"
            )
        for setting, value in (("BODY_FIELD", body_field), ("ARTICLE_OBJECT", article_object)):
            if not _API_NAME.match(value):
                raise BadRequestError(f"COPILOT_SALESFORCE_{setting} '{value}' is not an API name")
        if language and not _LANGUAGE.match(language):
            raise BadRequestError(f"COPILOT_SALESFORCE_LANGUAGE '{language}' is not like en_US")
        self.login_url = login_url.rstrip("/")
        self._username = username
        self._password = secret_value(password)
        self.api_version = api_version
        self.body_field = body_field
        self.article_object = article_object
        self.article_url_base = article_url_base.rstrip("/") if article_url_base else None
        self.language = language
        self._http = HubHttp(HUB, policy, session)
        self._oauth = OAuthClient(
            self._http,
            f"{self.login_url}/services/oauth2/token",
            client_id,
            secret,
            refused=self._token_refused,
            username=username,
            password=self._password,
        )  # Salesforce sends no expires_in: a session lasts until a 401 says otherwise
        self.instance_url: str | None = None

    @classmethod
    def from_settings(
        cls, settings: SalesforceSettings | None = None, **overrides: Any
    ) -> SalesforceKnowledge:
        s = settings or SalesforceSettings()
        options: dict[str, Any] = {
            "username": s.username,
            "password": s.password,
            "api_version": s.api_version,
            "body_field": s.body_field,
            "article_object": s.article_object,
            "article_url_base": s.article_url_base,
            "language": s.language,
            "policy": HttpPolicy(timeout=s.timeout_seconds),
        }
        options.update(overrides)
        return cls(s.login_url, s.client_id or "", s.client_secret or "", **options)

    def article_url(self, record: dict[str, Any]) -> str:
        if self.article_url_base:
            return f"{self.article_url_base}/{quote(str(record.get('UrlName') or ''))}"
        return f"{self.instance_url}/lightning/r/{self.article_object}/{record['Id']}/view"

    # --- the change queries -----------------------------------------------------------------

    def changes(self, since: datetime | None) -> ArticleChanges:
        where_language = f" AND Language = '{self.language}'" if self.language else ""
        fields = (
            "Id, KnowledgeArticleId, ArticleNumber, Title, UrlName, Summary, "
            f"LastModifiedDate, PublishStatus, {self.body_field}"
        )
        online = (
            f"SELECT {fields} FROM {self.article_object} "
            f"WHERE PublishStatus = 'Online'{where_language}"
        )
        if since is not None:
            # >= rather than >: LastModifiedDate has one-second resolution; boundary articles
            # read again are recognised by the sync as unchanged.
            online += f" AND LastModifiedDate >= {format_datetime(since)}"
        online += " ORDER BY LastModifiedDate"
        published: dict[str, Article] = {}
        high_water: datetime | None = None
        for record in self._query(online):
            article = self._article(record)
            high_water = _later(high_water, article.updated)
            known = published.get(article.article_id)
            if known is None or article.updated >= known.updated:
                published[article.article_id] = article

        retired: dict[str, Retirement] = {}
        if since is not None:
            archived = (
                f"SELECT Id, KnowledgeArticleId, ArticleNumber, ArchivedDate, LastModifiedDate, "
                f"PublishStatus FROM {self.article_object} WHERE PublishStatus = 'Archived' "
                f"AND IsLatestVersion = true{where_language} "
                f"AND ArchivedDate >= {format_datetime(since)} ORDER BY ArchivedDate"
            )
            for record in self._query(archived):
                number = str(record.get("ArticleNumber") or "")
                when = _timestamp(record.get("ArchivedDate") or record.get("LastModifiedDate"))
                high_water = _later(high_water, when)
                if number and number not in published:
                    retired[number] = Retirement(number, when, "PublishStatus=Archived")
        return ArticleChanges(
            published=list(published.values()),
            retired=list(retired.values()),
            high_water=high_water,
        )

    def _article(self, record: dict[str, Any]) -> Article:
        number = str(record.get("ArticleNumber") or record.get("Id") or "")
        title = str(record.get("Title") or "").strip() or number
        body = str(record.get(self.body_field) or "")
        if not body.strip() and record.get("Summary"):
            body = f"<p>{html.escape(str(record['Summary']))}</p>"
        return Article(
            article_id=number,
            title=title,
            body_html=body,
            url=self.article_url(record),
            updated=_timestamp(record.get("LastModifiedDate")),
        )

    def _query(self, soql: str) -> list[dict[str, Any]]:
        self._ensure_token()
        url = f"{self.instance_url}/services/data/v{self.api_version}/query"
        params: dict[str, str] | None = {"q": soql}
        out: list[dict[str, Any]] = []
        for _ in range(_MAX_PAGES):
            body = json_body(self._get(url, params), HUB)
            if not isinstance(body, dict) or not isinstance(body.get("records"), list):
                raise UnavailableError("Salesforce's query answer has no 'records' list")
            out.extend(r for r in body["records"] if isinstance(r, dict))
            next_url = body.get("nextRecordsUrl")
            if body.get("done", True) or not next_url:
                return out
            url, params = urljoin(f"{self.instance_url}/", str(next_url)), None
        raise UnavailableError(f"Salesforce paging did not end after {_MAX_PAGES} pages")

    # --- authentication ---------------------------------------------------------------------

    def _get(self, url: str, params: dict[str, str] | None) -> requests.Response:
        renewed = False
        while True:
            token = self._ensure_token()
            response = self._http.request(
                "GET",
                url,
                params=params,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            )
            if response.status_code == 401 and not renewed:
                # INVALID_SESSION_ID: the session timed out or was revoked. One new token.
                renewed = True
                log.info(
                    "Salesforce session expired (%s); getting a new token", _sf_error(response)
                )
                previous = self.instance_url
                self._ensure_token(force=True)
                if self.instance_url != previous and previous is not None:
                    url = url.replace(previous, str(self.instance_url), 1)
                continue
            if response.ok:
                return response
            raise self._error(response)

    def _ensure_token(self, *, force: bool = False) -> str:
        token = self._oauth.token(force=force)
        instance = token.fields.get("instance_url")
        if not instance:
            raise UnavailableError("Salesforce's token answer lacks instance_url")
        self.instance_url = origin(str(instance))
        return token.access_token

    def _token_refused(self, response: requests.Response, grant_type: str) -> CopilotError:
        detail = oauth_error(response)
        if response.status_code == 404:
            return BadRequestError(
                f"no Salesforce token endpoint at {self.login_url} ({detail}); check "
                "COPILOT_SALESFORCE_LOGIN_URL"
            )
        return ForbiddenError(
            f"Salesforce refused the {grant_type} token request ({detail}); "
            "check COPILOT_SALESFORCE_CLIENT_ID/CLIENT_SECRET"
            + ("/USERNAME/PASSWORD" if self._username else "")
            + ", that the connected app allows this flow and, for client credentials, "
            "that COPILOT_SALESFORCE_LOGIN_URL is the org's My Domain"
        )

    def _error(self, response: requests.Response) -> Exception:
        status = response.status_code
        codes, message = _sf_errors(response)
        if status == 401:
            return ForbiddenError(
                f"Salesforce rejected a freshly issued session ({message}); check the connected "
                "app's policies and the integration user's API access"
            )
        if "REQUEST_LIMIT_EXCEEDED" in codes:
            return UnavailableError(f"Salesforce API request limit reached ({message})")
        if status == 403:
            return ForbiddenError(
                f"Salesforce refused the knowledge query ({message}); the integration user "
                "needs API Enabled and View Articles (Knowledge User license)"
            )
        if "INVALID_FIELD" in codes:
            return BadRequestError(
                f"Salesforce rejected a field of the knowledge query ({message}); set "
                "COPILOT_SALESFORCE_BODY_FIELD to the API name of the article body field "
                f"(now {self.body_field}) and check the user's field-level security"
            )
        if "INVALID_TYPE" in codes:
            return BadRequestError(
                f"Salesforce has no {self.article_object} object for this user ({message}); "
                "is Lightning Knowledge enabled, and is COPILOT_SALESFORCE_ARTICLE_OBJECT right?"
            )
        if status == 404:
            return BadRequestError(
                f"no Salesforce REST API at {origin(response.url)} for v{self.api_version} "
                f"({message}); check COPILOT_SALESFORCE_API_VERSION"
            )
        if status == 400:
            return BadRequestError(f"Salesforce rejected the knowledge query ({message})")
        return UnavailableError(f"Salesforce answered HTTP {status} ({message})")


def _timestamp(value: Any) -> datetime:
    try:
        return parse_datetime(str(value))
    except ValueError as e:
        raise UnavailableError(f"Salesforce returned an unreadable date {value!r}") from e


def _later(current: datetime | None, value: datetime) -> datetime:
    return value if current is None or value > current else current


def _sf_errors(response: requests.Response) -> tuple[set[str], str]:
    """``[{"message": ..., "errorCode": ...}]`` -> (codes, text)."""
    try:
        body = response.json()
    except ValueError:
        return set(), f"HTTP {response.status_code}"
    items = body if isinstance(body, list) else [body]
    codes = {str(i.get("errorCode")) for i in items if isinstance(i, dict) and i.get("errorCode")}
    text = "; ".join(
        f"{i.get('errorCode')}: {' '.join(str(i.get('message') or '').split())}"
        for i in items
        if isinstance(i, dict)
    )
    return codes, text or f"HTTP {response.status_code}"


def _sf_error(response: requests.Response) -> str:
    return _sf_errors(response)[1]
