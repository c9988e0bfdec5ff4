"""ServiceNow Knowledge (``kb_knowledge``) through the REST Table API.

One change query per run, ordered by ``sys_updated_on`` and split locally::

    GET {instance}/api/now/table/kb_knowledge
        ?sysparm_query=sys_updated_on>=2024-05-01 10:00:00^ORDERBYsys_updated_on
        &sysparm_fields=sys_id,number,short_description,text,sys_updated_on,...
        &sysparm_limit=100&sysparm_offset=0&sysparm_exclude_reference_link=true

Records that are ``workflow_state=published`` and ``active=true`` are written; the others
(retired, outdated, draft, inactive) are removal candidates. With knowledge versioning one
article number has several records (a published one, a draft being edited, outdated ones), so a
candidate is removed only if no published record of its number exists: a second query
``workflow_state=published^active=true^numberIN...`` settles that.

Dates in the Table API are UTC in ``YYYY-MM-DD HH:MM:SS`` (``sysparm_display_value=false``, the
default). Authentication is Basic, or an OAuth bearer token from ``/oauth_token.do`` (password or
client_credentials grant), renewed once on a 401.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

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

HUB = "ServiceNow"
TABLE = "kb_knowledge"
FIELDS = (
    "sys_id",
    "number",
    "short_description",
    "text",
    "sys_updated_on",
    "workflow_state",
    "kb_knowledge_base",
    "active",
)
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_IN_CHUNK = 50
_MAX_PAGES = 10_000
_MAX_RESTARTS = 2


class ServiceNowSettings(BaseSettings):
    """``COPILOT_SERVICENOW_*``. Basic auth with username/password; OAuth when client_id and
    client_secret are set (password grant if username/password are set too, else
    client_credentials)."""

    model_config = SettingsConfigDict(env_prefix="COPILOT_SERVICENOW_", extra="ignore")

    instance_url: str | None = Field(None, description="e.g. https://acme.service-now.com")
    username: str | None = None
    password: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    knowledge_bases: list[str] = Field(
        default_factory=list,
        description="sys_ids of the knowledge bases to sync (JSON list); empty: all readable",
    )
    page_size: int = Field(100, ge=1, le=10_000)
    timeout_seconds: float = Field(30.0, gt=0)


def format_date(value: datetime) -> str:
    return value.astimezone(UTC).strftime(DATE_FORMAT)


def parse_date(value: str) -> datetime:
    return datetime.strptime(value.strip(), DATE_FORMAT).replace(tzinfo=UTC)


class _ResultShifted(Exception):
    """The result set moved under offset paging (a record changed between two pages)."""


class ServiceNowKnowledge(KbSource):
    name = "servicenow"

    def __init__(
        self,
        instance_url: str,
        *,
        username: str | None = None,
        password: SecretStr | str | None = None,
        client_id: str | None = None,
        client_secret: SecretStr | str | None = None,
        knowledge_bases: list[str] | tuple[str, ...] = (),
        page_size: int = 100,
        policy: HttpPolicy | None = None,
        session: requests.Session | None = None,
    ) -> None:
        if not instance_url or not instance_url.startswith(("https://", "http://")):
            raise BadRequestError(
                "COPILOT_SERVICENOW_INSTANCE_URL must be the instance's address, "
                "e.g. https://acme.service-now.com"
            )
        self.instance_url = instance_url.rstrip("/")
        self._username = username
        self._password = secret_value(password)
        secret = secret_value(client_secret)
        self._oauth = bool(client_id or secret)
        if self._oauth and not (client_id and secret):
            raise BadRequestError(
                "ServiceNow OAuth needs both COPILOT_SERVICENOW_CLIENT_ID and "
                "COPILOT_SERVICENOW_CLIENT_SECRET"
            )
        if not self._oauth and not (username and self._password):
            raise BadRequestError(
                "ServiceNow credentials are missing: set COPILOT_SERVICENOW_USERNAME and "
                "COPILOT_SERVICENOW_PASSWORD (basic auth), or COPILOT_SERVICENOW_CLIENT_ID and "
                "COPILOT_SERVICENOW_CLIENT_SECRET (OAuth)"
            )
        for kb in knowledge_bases:
            if not _SAFE_VALUE.match(kb):
                raise BadRequestError(f"'{kb}' is not a knowledge base sys_id")
        self._knowledge_bases = list(knowledge_bases)
        self._page_size = page_size
        self._http = HubHttp(HUB, policy, session)
        self._tokens = (
            OAuthClient(
                self._http,
                f"{self.instance_url}/oauth_token.do",
                str(client_id),
                str(secret),
                refused=_token_refused,
                username=username if self._password else None,
                password=self._password,
                default_lifetime=1800.0,
            )
            if self._oauth
            else None
        )

    @classmethod
    def from_settings(
        cls, settings: ServiceNowSettings | None = None, **overrides: Any
    ) -> ServiceNowKnowledge:
        s = settings or ServiceNowSettings()
        if not s.instance_url:
            raise BadRequestError("COPILOT_SERVICENOW_INSTANCE_URL is not set")
        options: dict[str, Any] = {
            "username": s.username,
            "password": s.password,
            "client_id": s.client_id,
            "client_secret": s.client_secret,
            "knowledge_bases": s.knowledge_bases,
            "page_size": s.page_size,
            "policy": HttpPolicy(timeout=s.timeout_seconds),
        }
        options.update(overrides)
        return cls(s.instance_url, **options)

    def article_url(self, number: str) -> str:
        return f"{self.instance_url}/kb_view.do?sysparm_article={quote(number)}"

    # --- the change query -------------------------------------------------------------------

    def changes(self, since: datetime | None) -> ArticleChanges:
        kbs = ",".join(self._knowledge_bases)
        scope = f"^kb_knowledge_baseIN{kbs}" if kbs else ""
        if since is None:
            query = f"workflow_state=published^active=true{scope}^ORDERBYsys_updated_on"
        else:
            # >= rather than >: sys_updated_on has one-second resolution, so an article saved
            # in the same second as the last one seen would otherwise be skipped for good. The
            # sync recognises the re-read boundary articles as unchanged.
            query = f"sys_updated_on>={format_date(since)}{scope}^ORDERBYsys_updated_on"
        records = self._fetch_stable(query)

        latest: dict[str, tuple[datetime, dict[str, Any]]] = {}
        candidates: dict[str, Retirement] = {}
        high_water: datetime | None = None
        for record in records:
            updated = self._updated(record)
            high_water = updated if high_water is None or updated > high_water else high_water
            number = str(record.get("number") or record.get("sys_id") or "").strip()
            if not number:
                continue
            if _is_published(record):
                if number not in latest or updated >= latest[number][0]:
                    latest[number] = (updated, record)
            else:
                state = record.get("workflow_state") or "?"
                reason = f"workflow_state={state}" if state != "published" else "active=false"
                candidates[number] = Retirement(number, updated, reason)

        # A draft, outdated or retired record of a number whose published version lies
        # outside this window does not withdraw the article.
        unresolved = [n for n in candidates if n not in latest]
        still_published = self._published_numbers(unresolved, scope) if unresolved else set()
        retired = [candidates[n] for n in unresolved if n not in still_published]
        published = [self._article(n, rec) for n, (_, rec) in latest.items()]
        return ArticleChanges(published=published, retired=retired, high_water=high_water)

    def _published_numbers(self, numbers: list[str], scope: str) -> set[str]:
        found: set[str] = set()
        safe = [n for n in numbers if _SAFE_VALUE.match(n)]
        for i in range(0, len(safe), _IN_CHUNK):
            chunk = ",".join(safe[i : i + _IN_CHUNK])
            query = f"workflow_state=published^active=true{scope}^numberIN{chunk}"
            found.update(str(r.get("number")) for r in self._fetch_stable(query))
        return found

    def _article(self, number: str, record: dict[str, Any]) -> Article:
        title = str(record.get("short_description") or "").strip() or number
        return Article(
            article_id=number,
            title=title,
            body_html=str(record.get("text") or ""),
            url=self.article_url(number),
            updated=self._updated(record),
        )

    def _updated(self, record: dict[str, Any]) -> datetime:
        raw = record.get("sys_updated_on")
        try:
            return parse_date(str(raw))
        except ValueError as e:
            raise UnavailableError(
                f"ServiceNow returned sys_updated_on={raw!r}, not YYYY-MM-DD HH:MM:SS: is "
                "sysparm_display_value forced on for this user? The sync needs raw values"
            ) from e

    def _fetch_stable(self, query: str) -> list[dict[str, Any]]:
        """Every record of ``query``. Offset paging over a table that changes can skip a
        record; when a record shows up twice (it moved to the end of the ordering), the
        listing starts again."""
        for _ in range(_MAX_RESTARTS + 1):
            try:
                return self._fetch(query)
            except _ResultShifted:
                log.info("ServiceNow: results moved during paging; listing again")
        raise UnavailableError(
            "ServiceNow knowledge changed faster than it could be listed; the next sync retries"
        )

    def _fetch(self, query: str) -> list[dict[str, Any]]:
        table_url = f"{self.instance_url}/api/now/table/{TABLE}"
        base_params = {
            "sysparm_query": query,
            "sysparm_fields": ",".join(FIELDS),
            "sysparm_limit": str(self._page_size),
            "sysparm_exclude_reference_link": "true",
        }
        url: str = table_url
        params: dict[str, str] | None = {**base_params, "sysparm_offset": "0"}
        offset = 0
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            response = self._get(url, params)
            page = _result(json_body(response, HUB))
            for record in page:
                sys_id = str(record.get("sys_id") or "")
                if sys_id in seen:
                    raise _ResultShifted
                seen.add(sys_id)
                out.append(record)
            offset += len(page)
            next_url = (response.links.get("next") or {}).get("url")
            if next_url and origin(next_url) == origin(self.instance_url):
                url, params = next_url, None  # the Link already carries every parameter
                continue
            if "Link" in response.headers and not next_url:
                return out  # paged answer without a next link: that was the last page
            total = response.headers.get("X-Total-Count")
            if not page or len(page) < self._page_size or (total and offset >= int(total)):
                return out
            url, params = table_url, {**base_params, "sysparm_offset": str(offset)}
        raise UnavailableError(f"ServiceNow paging did not end after {_MAX_PAGES} pages")

    # --- authentication ---------------------------------------------------------------------

    def _get(self, url: str, params: dict[str, str] | None) -> requests.Response:
        renewed = False
        while True:
            headers = {"Accept": "application/json"}
            auth: tuple[str, str] | None = None
            if self._tokens is not None:
                headers["Authorization"] = f"Bearer {self._tokens.token().access_token}"
            else:
                auth = (str(self._username), str(self._password))
            response = self._http.request("GET", url, params=params, headers=headers, auth=auth)
            if response.status_code == 401 and self._tokens is not None and not renewed:
                renewed = True  # the token expired or was revoked: one fresh token, once
                self._tokens.token(force=True)
                continue
            if response.ok:
                return response
            raise self._error(response)

    def _error(self, response: requests.Response) -> Exception:
        status = response.status_code
        message = _sn_error(response)
        if status == 401:
            how = (
                "the OAuth token (CLIENT_ID/CLIENT_SECRET)"
                if self._oauth
                else "COPILOT_SERVICENOW_USERNAME/PASSWORD"
            )
            return ForbiddenError(
                f"ServiceNow rejected the credentials ({message}); check {how}, and that the "
                "user is active and allowed web-service access"
            )
        if status == 403:
            return ForbiddenError(
                f"ServiceNow refused access to {TABLE} ({message}); give the integration user "
                "read access to knowledge articles (e.g. the knowledge role)"
            )
        if status == 404:
            return BadRequestError(
                f"ServiceNow has no {TABLE} table API at {self.instance_url} ({message}); check "
                "COPILOT_SERVICENOW_INSTANCE_URL and that the Knowledge plugin is active"
            )
        if status == 400:
            return BadRequestError(f"ServiceNow rejected the knowledge query ({message})")
        return UnavailableError(f"ServiceNow answered HTTP {status} ({message})")


def _is_published(record: dict[str, Any]) -> bool:
    active = str(record.get("active", "true")).lower()
    return record.get("workflow_state") == "published" and active == "true"


def _result(body: Any) -> list[dict[str, Any]]:
    result = body.get("result") if isinstance(body, dict) else None
    if not isinstance(result, list):
        raise UnavailableError("ServiceNow's answer has no 'result' list")
    return [r for r in result if isinstance(r, dict)]


def _sn_error(response: requests.Response) -> str:
    """``{"error": {"message": ..., "detail": ...}, "status": "failure"}`` -> text."""
    try:
        error = response.json().get("error") or {}
        parts = [str(error.get("message") or ""), str(error.get("detail") or "")]
        text = ": ".join(p for p in parts if p)
    except (ValueError, AttributeError):
        text = ""
    return text or f"HTTP {response.status_code}"


def _token_refused(response: requests.Response, grant_type: str) -> CopilotError:
    return ForbiddenError(
        f"ServiceNow refused the OAuth token request ({grant_type} grant, "
        f"HTTP {response.status_code}: {oauth_error(response)}); check "
        "COPILOT_SERVICENOW_CLIENT_ID/CLIENT_SECRET"
        + ("/USERNAME/PASSWORD" if grant_type == "password" else "")
        + " and the OAuth application registry entry"
    )
