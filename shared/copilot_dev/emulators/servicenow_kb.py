"""A ServiceNow instance's knowledge table on loopback: the REST Table API for ``kb_knowledge``
and the OAuth token endpoint.

Wire shapes follow the real instance:

* ``GET /api/now/table/kb_knowledge`` (also ``/api/now/v2/table/...``) with ``sysparm_query``
  (encoded query: ``field=value``, ``!=``, ``>``, ``>=``, ``<``, ``<=``, ``IN``, ``NOT IN``,
  ``STARTSWITH``, ``LIKE`` joined by ``^``; ``ORDERBY``/``ORDERBYDESC``), ``sysparm_fields``,
  ``sysparm_limit`` (default 10000), ``sysparm_offset``, ``sysparm_exclude_reference_link``.
  Answer ``{"result": [...]}`` with ``X-Total-Count`` and, when there is more than one page, a
  ``Link`` header with ``rel="first"``, ``"prev"``, ``"next"``, ``"last"``.
* Basic auth or ``Authorization: Bearer``; otherwise 401
  ``{"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth
  information"}, "status": "failure"}``.
* ``POST /oauth_token.do`` (form): ``grant_type`` password, client_credentials or
  refresh_token -> ``{"access_token", "refresh_token", "scope", "token_type": "Bearer",
  "expires_in"}``; bad credentials -> 401 ``{"error": "server_error", "error_description":
  "access_denied"}``.

Unlike a real instance, which ignores parts of an encoded query it does not understand, the
emulator answers 400 to them so a client bug cannot hide behind a silently widened query.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from copilot_dev.emulators import RecordingServer, json_response, wall_clock

DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
DEFAULT_KB = "dfc19531bf2021003f07e2c1ac0739ab"  # the out-of-box "IT" knowledge base sys_id
_TABLE_PATH = re.compile(r"^/api/now(?:/v\d+)?/table/(?P<table>[A-Za-z0-9_]+)/?$")
_TERM = re.compile(
    r"^(?P<field>[a-z][a-z0-9_.]*)"
    r"(?P<op>!=|>=|<=|=|>|<|NOT IN|IN|STARTSWITH|LIKE)"
    r"(?P<value>.*)$",
    re.DOTALL,
)
_REFERENCE_FIELDS = {"kb_knowledge_base": "kb_knowledge_base"}
_NOT_AUTHENTICATED = {
    "error": {
        "message": "User Not Authenticated",
        "detail": "Required to provide Auth information",
    },
    "status": "failure",
}


class EncodedQueryError(ValueError):
    pass


def parse_encoded_query(
    query: str,
) -> tuple[list[tuple[str, str, str]], list[tuple[str, bool]]]:
    """``a=1^b>=2^ORDERBYc`` -> ([(field, op, value)], [(order field, descending)])."""
    conditions: list[tuple[str, str, str]] = []
    order: list[tuple[str, bool]] = []
    for part in query.split("^"):
        if not part:
            continue
        if part.startswith("ORDERBYDESC"):
            order.append((part[len("ORDERBYDESC") :], True))
        elif part.startswith("ORDERBY"):
            order.append((part[len("ORDERBY") :], False))
        elif part.startswith(("OR", "NQ", "EQ", "RL")):
            raise EncodedQueryError(f"the emulator does not support '{part}'")
        else:
            m = _TERM.match(part)
            if not m:
                raise EncodedQueryError(f"cannot read the encoded query term '{part}'")
            conditions.append((m["field"], m["op"], m["value"]))
    return conditions, order


def _matches(record: dict[str, str], field: str, op: str, value: str) -> bool:
    have = record.get(field, "")
    if op == "=":
        return have == value
    if op == "!=":
        return have != value
    if op == "IN":
        return have in value.split(",")
    if op == "NOT IN":
        return have not in value.split(",")
    if op == "STARTSWITH":
        return have.startswith(value)
    if op == "LIKE":
        return value.lower() in have.lower()
    # Ordering comparisons: sys_* dates are fixed-width text, so text order is time order.
    if op == ">":
        return have > value
    if op == ">=":
        return have >= value
    if op == "<":
        return have < value
    return have <= value


class ServiceNowKbEmulator(RecordingServer):
    recorded_form_fields = ("grant_type", "username")

    def __init__(
        self,
        *,
        username: str = "copilot.integration",
        password: str = "integration-password",
        client_id: str = "copilot-oauth-client",
        client_secret: str = "copilot-oauth-secret",
        token_ttl: int = 1800,
        clock: Callable[[], datetime] = wall_clock,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.username = username
        self.password = password
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = token_ttl
        self.clock = clock
        self.fail_with: int | None = None  # answer every request with this status (outage)
        self.link_header = True  # send Link (rel=next ...) on paged answers
        # Called with sysparm_offset before a table page is computed: lets a test change the
        # knowledge base between two pages of one listing.
        self.before_page: Callable[[int], None] | None = None
        self._records: list[dict[str, str]] = []
        self._tokens: dict[str, float] = {}  # access token -> expiry (monotonic)
        self._refresh_tokens: set[str] = set()
        self._next_number = 10001

    # --- the knowledge base, edited between syncs ---------------------------------------------

    def add_article(
        self,
        title: str,
        text: str = "",
        *,
        number: str | None = None,
        workflow_state: str = "published",
        active: bool = True,
        knowledge_base: str = DEFAULT_KB,
    ) -> str:
        """A new article (one record); returns its number (KB0010001, ...)."""
        with self._lock:
            if number is None:
                number = f"KB{self._next_number:07d}"
                self._next_number += 1
            self._records.append(
                self._new_record(number, title, text, workflow_state, active, knowledge_base)
            )
            return number

    def update_article(
        self,
        number: str,
        *,
        title: str | None = None,
        text: str | None = None,
        workflow_state: str | None = None,
        active: bool | None = None,
    ) -> None:
        """Edit the article's current record in place (no versioning)."""
        with self._lock:
            record = self._current(number)
            if title is not None:
                record["short_description"] = title
            if text is not None:
                record["text"] = text
            if workflow_state is not None:
                record["workflow_state"] = workflow_state
            if active is not None:
                record["active"] = "true" if active else "false"
            self._touch(record)

    def retire_article(self, number: str) -> None:
        self.update_article(number, workflow_state="retired")

    def new_version(
        self,
        number: str,
        *,
        title: str | None = None,
        text: str | None = None,
        workflow_state: str = "published",
    ) -> None:
        """Knowledge versioning: a new record for the same number. A published new version
        makes the previously published one ``outdated``; a draft leaves it online."""
        with self._lock:
            old = self._current(number)
            new = self._new_record(
                number,
                old["short_description"] if title is None else title,
                old["text"] if text is None else text,
                workflow_state,
                True,
                old["kb_knowledge_base"],
            )
            if workflow_state == "published":
                for record in self._records:
                    if record["number"] == number and record["workflow_state"] == "published":
                        record["workflow_state"] = "outdated"
                        self._touch(record)
            self._records.append(new)

    def delete_article(self, number: str) -> None:
        """Delete every record of the article (no trace left for an incremental query)."""
        with self._lock:
            self._records = [r for r in self._records if r["number"] != number]

    def records(self, number: str | None = None) -> list[dict[str, str]]:
        with self._lock:
            return [dict(r) for r in self._records if number is None or r["number"] == number]

    def expire_tokens(self) -> None:
        """Revoke every issued access token (refresh tokens stay valid)."""
        with self._lock:
            self._tokens.clear()

    @property
    def table_queries(self) -> list[str]:
        """The ``sysparm_query`` of every table request answered, in order."""
        return [r.args.get("sysparm_query", "") for r in self.requests if "/table/" in r.path]

    def _new_record(
        self,
        number: str,
        title: str,
        text: str,
        workflow_state: str,
        active: bool,
        knowledge_base: str,
    ) -> dict[str, str]:
        now = self.clock().strftime(DATE_FORMAT)
        return {
            "sys_id": secrets.token_hex(16),
            "number": number,
            "short_description": title,
            "text": text,
            "workflow_state": workflow_state,
            "active": "true" if active else "false",
            "kb_knowledge_base": knowledge_base,
            "sys_created_on": now,
            "sys_updated_on": now,
            "sys_mod_count": "0",
        }

    def _touch(self, record: dict[str, str]) -> None:
        record["sys_updated_on"] = self.clock().strftime(DATE_FORMAT)
        record["sys_mod_count"] = str(int(record["sys_mod_count"]) + 1)

    def _current(self, number: str) -> dict[str, str]:
        candidates = [r for r in self._records if r["number"] == number]
        if not candidates:
            raise KeyError(number)
        published = [r for r in candidates if r["workflow_state"] == "published"]
        return max(published or candidates, key=lambda r: r["sys_updated_on"])

    # --- HTTP ----------------------------------------------------------------------------------

    def _answer(self, request: Request) -> Response:
        if self.fail_with:
            return Response(
                "<html><body><h1>Service Unavailable</h1></body></html>",
                status=self.fail_with,
                content_type="text/html",
            )
        if request.path == "/oauth_token.do":
            if request.method != "POST":
                return _json({"error": "invalid_request"}, 405)
            return self._token(request)
        m = _TABLE_PATH.match(request.path)
        if m is None:
            return _json(
                {
                    "error": {
                        "message": "Requested URI does not represent any resource",
                        "detail": None,
                    },
                    "status": "failure",
                },
                400,
            )
        if not self._authenticated(request):
            return _json(_NOT_AUTHENTICATED, 401, {"WWW-Authenticate": 'Basic realm="Service-now"'})
        if m["table"] != "kb_knowledge":
            return _json(
                {
                    "error": {"message": f"Invalid table {m['table']}", "detail": None},
                    "status": "failure",
                },
                400,
            )
        if request.method != "GET":
            return _json(
                {"error": {"message": "Method not Supported", "detail": None}, "status": "failure"},
                405,
            )
        return self._table(request)

    def _authenticated(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return False
            return user == self.username and password == self.password
        if scheme.lower() == "bearer":
            with self._lock:
                expiry = self._tokens.get(value.strip())
            return expiry is not None and time.monotonic() < expiry
        return False

    def _token(self, request: Request) -> Response:
        form = request.form
        grant = form.get("grant_type")
        client_ok = (
            form.get("client_id") == self.client_id
            and form.get("client_secret") == self.client_secret
        )
        if grant == "password":
            ok = (
                client_ok
                and form.get("username") == self.username
                and form.get("password") == self.password
            )
        elif grant == "client_credentials":
            ok = client_ok
        elif grant == "refresh_token":
            ok = client_ok and form.get("refresh_token") in self._refresh_tokens
        else:
            return _json(
                {"error": "unsupported_grant_type", "error_description": f"grant_type {grant!r}"},
                400,
            )
        if not ok:
            return _json({"error": "server_error", "error_description": "access_denied"}, 401)
        access = secrets.token_urlsafe(32)
        body: dict[str, Any] = {
            "access_token": access,
            "scope": "useraccount",
            "token_type": "Bearer",
            "expires_in": self.token_ttl - 1,
        }
        with self._lock:
            self._tokens[access] = time.monotonic() + self.token_ttl
            if grant != "client_credentials":
                refresh = secrets.token_urlsafe(32)
                self._refresh_tokens.add(refresh)
                body["refresh_token"] = refresh
        return _json(body, 200)

    def _table(self, request: Request) -> Response:
        args = request.args
        try:
            conditions, order = parse_encoded_query(args.get("sysparm_query", ""))
            limit = int(args.get("sysparm_limit", "10000"))
            offset = int(args.get("sysparm_offset", "0"))
            if limit < 1 or offset < 0:
                raise ValueError("sysparm_limit and sysparm_offset must be positive")
        except ValueError as e:
            return _json({"error": {"message": str(e), "detail": None}, "status": "failure"}, 400)
        if self.before_page is not None:
            self.before_page(offset)
        with self._lock:
            rows = [
                dict(r)
                for r in self._records
                if all(_matches(r, f, op, v) for f, op, v in conditions)
            ]
        for field, descending in reversed(order or [("sys_id", False)]):
            rows.sort(key=_sort_key(field), reverse=descending)
        page = rows[offset : offset + limit]
        fields = [f for f in args.get("sysparm_fields", "").split(",") if f]
        links = args.get("sysparm_exclude_reference_link", "false").lower() != "true"
        result = [self._shape(r, fields, links, request.host_url) for r in page]
        headers = {"X-Total-Count": str(len(rows))}
        if len(rows) > limit and self.link_header:
            headers["Link"] = self._link(request, len(rows), limit, offset)
        return _json({"result": result}, 200, headers)

    @staticmethod
    def _shape(
        record: dict[str, str], fields: list[str], links: bool, host_url: str
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in fields or list(record):
            if field not in record:
                continue  # like the real API: unknown fields are left out
            value: Any = record[field]
            if field in _REFERENCE_FIELDS and links and value:
                table = _REFERENCE_FIELDS[field]
                value = {"link": f"{host_url}api/now/table/{table}/{value}", "value": value}
            out[field] = value
        return out

    @staticmethod
    def _link(request: Request, total: int, limit: int, offset: int) -> str:
        base = request.base_url

        def at(position: int) -> str:
            args = dict(request.args.items())
            args["sysparm_offset"] = str(position)
            args["sysparm_limit"] = str(limit)
            return f"{base}?{urlencode(args)}"

        last = max(((total - 1) // limit) * limit, 0)
        parts = [f'<{at(0)}>;rel="first"']
        if offset > 0:
            parts.append(f'<{at(max(offset - limit, 0))}>;rel="prev"')
        if offset + limit < total:
            parts.append(f'<{at(offset + limit)}>;rel="next"')
        parts.append(f'<{at(last)}>;rel="last"')
        return ",".join(parts)


def _sort_key(field: str) -> Callable[[dict[str, str]], str]:
    return lambda record: record.get(field, "")


def _json(body: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    return json_response(body, status, headers, content_type="application/json;charset=UTF-8")
