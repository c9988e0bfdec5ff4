"""A Salesforce org's Lightning Knowledge on loopback: the OAuth 2.0 token endpoint and the
REST query resource over ``Knowledge__kav``.

Wire shapes follow the real org:

* ``POST /services/oauth2/token`` (form): ``grant_type=client_credentials`` (client_id,
  client_secret) or ``password`` (also username, password) ->
  ``{"access_token", "instance_url", "id", "token_type": "Bearer", "issued_at", "signature"}``
  (signature: base64 HMAC-SHA256 of id + issued_at keyed by the client secret). Errors are 400
  ``{"error": "invalid_client" | "invalid_grant" | "unsupported_grant_type",
  "error_description": ...}``.
* ``GET /services/data/vNN.N/query?q=SOQL`` -> ``{"totalSize", "done", "nextRecordsUrl"?,
  "records": [{"attributes": {"type", "url"}, ...}]}``; further pages at
  ``/services/data/vNN.N/query/<locator>-<offset>``. Page size: ``page_size``, or the
  ``Sforce-Query-Options: batchSize=N`` header.
* A missing, unknown or expired bearer token -> 401
  ``[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]``.
* Query errors -> 400 ``[{"message", "errorCode"}]`` with MALFORMED_QUERY, INVALID_FIELD
  (unknown column, or a quoted dateTime), INVALID_TYPE (unknown object); a Knowledge query
  without a ``PublishStatus`` (or ``Id``) filter is refused as the real org does.

SOQL support is what a sync needs: ``SELECT fields FROM object [WHERE a AND b ...]
[ORDER BY field [ASC|DESC]] [LIMIT n]`` with =, !=, <, <=, >, >=, IN, NOT IN over strings,
booleans, numbers, null and dateTime literals. OR, parentheses and sub-queries are refused.

Articles are versioned like the real thing: publishing an edit creates a new version record
(new Id, same ArticleNumber/KnowledgeArticleId) and archives the old one with
``IsLatestVersion = false``; archiving an article archives its online version, which stays the
latest.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from copilot_dev.emulators import RecordedRequest, RecordingServer, json_response, wall_clock

ORG_ID = "00D5e000000ABCDEAA"
USER_ID = "0055e000001XYZ1AAA"
_QUERY_PATH = re.compile(r"^/services/data/v(?P<version>\d+\.\d)/query/?$")
_MORE_PATH = re.compile(
    r"^/services/data/v(?P<version>\d+\.\d)/query/(?P<locator>[\w]+)-(?P<offset>\d+)$"
)
_DATETIME_FIELDS = {
    "LastModifiedDate",
    "CreatedDate",
    "ArchivedDate",
    "FirstPublishedDate",
    "LastPublishedDate",
    "SystemModstamp",
}
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^'\\]|\\.)*')
    | (?P<dt>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<op><=|>=|!=|<>|=|<|>)
    | (?P<punct>[(),])
    | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
_INVALID_SESSION = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


class SoqlError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Condition:
    field: str
    op: str  # =, !=, <, <=, >, >=, IN, NOT IN
    value: Any  # str, bool, float, None, datetime, or a list for IN
    quoted: bool  # written as a 'string' literal


@dataclass(frozen=True)
class SoqlQuery:
    fields: list[str]
    sobject: str
    where: list[Condition]
    order_by: str | None
    descending: bool
    limit: int | None


def parse_soql(soql: str) -> SoqlQuery:
    tokens = _tokenize(soql)
    pos = 0

    def peek(offset: int = 0) -> tuple[str, Any] | None:
        return tokens[pos + offset] if pos + offset < len(tokens) else None

    def word(expected: str | None = None) -> str:
        nonlocal pos
        token = peek()
        if token is None or token[0] != "word":
            raise SoqlError("MALFORMED_QUERY", f"expected {expected or 'a name'} in: {soql}")
        if expected and token[1].upper() != expected:
            raise SoqlError("MALFORMED_QUERY", f"expected {expected}, found {token[1]}")
        pos += 1
        return str(token[1])

    def is_word(value: str, offset: int = 0) -> bool:
        token = peek(offset)
        return token is not None and token[0] == "word" and token[1].upper() == value

    def punct(value: str) -> None:
        nonlocal pos
        token = peek()
        if token != ("punct", value):
            raise SoqlError("MALFORMED_QUERY", f"expected '{value}' in: {soql}")
        pos += 1

    word("SELECT")
    fields = [word()]
    while peek() == ("punct", ","):
        pos += 1
        fields.append(word())
    word("FROM")
    sobject = word()
    where: list[Condition] = []
    if is_word("WHERE"):
        pos += 1
        while True:
            if peek() == ("punct", "(") or (is_word("NOT") and not is_word("IN", 1)):
                raise SoqlError("MALFORMED_QUERY", "the emulator supports no parentheses or NOT")
            field = word()
            if is_word("NOT") and is_word("IN", 1):
                pos += 2
                op = "NOT IN"
            elif is_word("IN"):
                pos += 1
                op = "IN"
            else:
                token = peek()
                if token is None or token[0] != "op":
                    raise SoqlError("MALFORMED_QUERY", f"expected an operator after {field}")
                pos += 1
                op = "!=" if token[1] == "<>" else str(token[1])
            if op in ("IN", "NOT IN"):
                punct("(")
                values = []
                quoted = True
                while True:
                    value, q = _literal(peek(), soql)
                    pos += 1
                    values.append(value)
                    quoted = quoted and q
                    if peek() == ("punct", ","):
                        pos += 1
                        continue
                    punct(")")
                    break
                where.append(Condition(field, op, values, quoted))
            else:
                value, quoted = _literal(peek(), soql)
                pos += 1
                where.append(Condition(field, op, value, quoted))
            if is_word("AND"):
                pos += 1
                continue
            if is_word("OR"):
                raise SoqlError("MALFORMED_QUERY", "the emulator supports AND only")
            break
    order_by, descending = None, False
    if is_word("ORDER"):
        pos += 1
        word("BY")
        order_by = word()
        if is_word("ASC") or is_word("DESC"):
            descending = word().upper() == "DESC"
        if is_word("NULLS"):
            pos += 2
    limit = None
    if is_word("LIMIT"):
        pos += 1
        token = peek()
        if token is None or token[0] != "num":
            raise SoqlError("MALFORMED_QUERY", "LIMIT needs a number")
        limit = int(token[1])
        pos += 1
    if pos != len(tokens):
        raise SoqlError("MALFORMED_QUERY", f"unexpected token {tokens[pos][1]!r} in: {soql}")
    return SoqlQuery(fields, sobject, where, order_by, descending, limit)


def _tokenize(soql: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    text = soql.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise SoqlError(
                "MALFORMED_QUERY", f"unexpected character at {pos}: {text[pos : pos + 20]!r}"
            )
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return tokens


def _literal(token: tuple[str, Any] | None, soql: str) -> tuple[Any, bool]:
    if token is None:
        raise SoqlError("MALFORMED_QUERY", f"missing value in: {soql}")
    kind, raw = token
    if kind == "str":
        return re.sub(r"\\(.)", r"\1", raw[1:-1]), True
    if kind == "dt":
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC), False
    if kind == "num":
        return float(raw), False
    if kind == "word" and raw.lower() in ("true", "false"):
        return raw.lower() == "true", False
    if kind == "word" and raw.lower() == "null":
        return None, False
    raise SoqlError("MALFORMED_QUERY", f"unexpected value {raw!r} in: {soql}")


def _compare(have: Any, op: str, want: Any) -> bool:
    if op == "IN":
        return have in want
    if op == "NOT IN":
        return have not in want
    if op == "=":
        return bool(have == want)
    if op == "!=":
        return bool(have != want)
    if have is None or want is None:
        return False
    if op == "<":
        return bool(have < want)
    if op == "<=":
        return bool(have <= want)
    if op == ">":
        return bool(have > want)
    return bool(have >= want)


def format_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


class SalesforceKbEmulator(RecordingServer):
    recorded_form_fields = ("grant_type", "username")

    def __init__(
        self,
        *,
        client_id: str = "3MVG9copilotConsumerKey",
        client_secret: str = "copilot-consumer-secret",
        username: str = "integration@acme.example",
        password: str = "password+securitytoken",
        body_field: str = "Body__c",
        article_object: str = "Knowledge__kav",
        page_size: int = 2000,
        clock: Callable[[], datetime] = wall_clock,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.client_id = client_id
        self.client_secret = client_secret
        self.username = username
        self.password = password
        self.body_field = body_field
        self.article_object = article_object
        self.page_size = page_size
        self.clock = clock
        self.fail_with: int | None = None
        self.session_seconds: float = 7200.0  # tokens issued from now on live this long
        self._versions: list[dict[str, Any]] = []
        self._tokens: dict[str, float] = {}
        self._cursors: dict[str, list[dict[str, Any]]] = {}
        self._next_number = 1001

    # --- the knowledge base, edited between syncs ---------------------------------------------

    @property
    def fields(self) -> set[str]:
        return {
            "Id",
            "KnowledgeArticleId",
            "ArticleNumber",
            "Title",
            "UrlName",
            "Summary",
            "LastModifiedDate",
            "CreatedDate",
            "SystemModstamp",
            "PublishStatus",
            "IsLatestVersion",
            "VersionNumber",
            "Language",
            "IsMasterLanguage",
            "ArchivedDate",
            "FirstPublishedDate",
            "LastPublishedDate",
            "IsVisibleInPkb",
            "IsVisibleInCsp",
            "IsVisibleInApp",
            "IsVisibleInPrm",
            self.body_field,
        }

    def add_article(
        self,
        title: str,
        body: str = "",
        *,
        url_name: str | None = None,
        summary: str = "",
        publish_status: str = "Online",
        language: str = "en_US",
    ) -> str:
        """A new article with one version; returns its ArticleNumber (000001001, ...)."""
        with self._lock:
            number = f"{self._next_number:09d}"
            self._next_number += 1
            now = self.clock()
            version = {
                "Id": _sf_id("ka0"),
                "KnowledgeArticleId": _sf_id("kA0"),
                "ArticleNumber": number,
                "Title": title,
                "UrlName": url_name or re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-"),
                "Summary": summary,
                self.body_field: body,
                "LastModifiedDate": now,
                "CreatedDate": now,
                "SystemModstamp": now,
                "PublishStatus": publish_status,
                "IsLatestVersion": True,
                "VersionNumber": 1,
                "Language": language,
                "IsMasterLanguage": True,
                "ArchivedDate": None,
                "FirstPublishedDate": now if publish_status == "Online" else None,
                "LastPublishedDate": now if publish_status == "Online" else None,
                "IsVisibleInPkb": True,
                "IsVisibleInCsp": True,
                "IsVisibleInApp": True,
                "IsVisibleInPrm": True,
            }
            self._versions.append(version)
            return number

    def update_article(
        self,
        number: str,
        *,
        title: str | None = None,
        body: str | None = None,
        summary: str | None = None,
        url_name: str | None = None,
    ) -> None:
        """Edit and publish: a new Online version; the previous one is archived (not latest)."""
        with self._lock:
            old = self._online(number)
            now = self.clock()
            new = dict(old)
            new.update(
                Id=_sf_id("ka0"),
                VersionNumber=old["VersionNumber"] + 1,
                LastModifiedDate=now,
                CreatedDate=now,
                SystemModstamp=now,
                LastPublishedDate=now,
            )
            for key, value in (
                ("Title", title),
                (self.body_field, body),
                ("Summary", summary),
                ("UrlName", url_name),
            ):
                if value is not None:
                    new[key] = value
            old.update(
                PublishStatus="Archived",
                IsLatestVersion=False,
                ArchivedDate=now,
                LastModifiedDate=now,
                SystemModstamp=now,
            )
            self._versions.append(new)

    def archive_article(self, number: str) -> None:
        """Withdraw the article: its online version becomes Archived (and stays the latest)."""
        with self._lock:
            version = self._online(number)
            now = self.clock()
            version.update(
                PublishStatus="Archived", ArchivedDate=now, LastModifiedDate=now, SystemModstamp=now
            )

    def draft_article(self, number: str, *, body: str) -> None:
        """Start editing: a Draft version next to the online one (which stays online)."""
        with self._lock:
            old = self._online(number)
            now = self.clock()
            draft = dict(old)
            draft.update(
                Id=_sf_id("ka0"),
                VersionNumber=old["VersionNumber"] + 1,
                PublishStatus="Draft",
                LastModifiedDate=now,
                CreatedDate=now,
                SystemModstamp=now,
            )
            draft[self.body_field] = body
            self._versions.append(draft)

    def delete_article(self, number: str) -> None:
        with self._lock:
            self._versions = [v for v in self._versions if v["ArticleNumber"] != number]

    def versions(self, number: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(v) for v in self._versions if number in (None, v["ArticleNumber"])]

    def expire_tokens(self) -> None:
        """End every session: the next API call with an old token gets INVALID_SESSION_ID."""
        with self._lock:
            self._tokens.clear()

    @property
    def soql_queries(self) -> list[str]:
        """The SOQL of every first-page query answered, in order."""
        return [r.args["q"] for r in self.requests if r.path.endswith("/query") and "q" in r.args]

    @property
    def token_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/services/oauth2/token"]

    def _online(self, number: str) -> dict[str, Any]:
        for version in self._versions:
            if version["ArticleNumber"] == number and version["PublishStatus"] == "Online":
                return version
        raise KeyError(number)

    # --- HTTP ----------------------------------------------------------------------------------

    def _answer(self, request: Request) -> Response:
        if self.fail_with:
            return Response(
                "<html><body>Service Unavailable</body></html>",
                status=self.fail_with,
                content_type="text/html",
            )
        if request.path == "/services/oauth2/token":
            if request.method != "POST":
                return _json(
                    {"error": "invalid_request", "error_description": "must use HTTP POST"}, 400
                )
            return self._token(request)
        query = _QUERY_PATH.match(request.path)
        more = _MORE_PATH.match(request.path)
        if query is None and more is None:
            return _json(
                [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}],
                404,
            )
        if not self._authenticated(request):
            return _json(_INVALID_SESSION, 401, {"WWW-Authenticate": "Token"})
        if more is not None:
            return self._page(more["version"], more["locator"], int(more["offset"]), request)
        assert query is not None
        return self._query(query["version"], request)

    def _authenticated(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "oauth"):
            return False
        with self._lock:
            expiry = self._tokens.get(token.strip())
        return expiry is not None and time.monotonic() < expiry

    def _token(self, request: Request) -> Response:
        form = request.form
        grant = form.get("grant_type")
        if grant not in ("client_credentials", "password"):
            return _json(
                {
                    "error": "unsupported_grant_type",
                    "error_description": "grant type not supported",
                },
                400,
            )
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return _json(
                {"error": "invalid_client", "error_description": "invalid client credentials"}, 400
            )
        if grant == "password" and (
            form.get("username") != self.username or form.get("password") != self.password
        ):
            return _json(
                {"error": "invalid_grant", "error_description": "authentication failure"}, 400
            )
        token = f"{ORG_ID}!{secrets.token_urlsafe(40)}"
        issued_at = str(int(time.time() * 1000))
        identity = f"{request.host_url}id/{ORG_ID}/{USER_ID}"
        signature = base64.b64encode(
            hmac.new(
                self.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256
            ).digest()
        ).decode()
        with self._lock:
            self._tokens[token] = time.monotonic() + self.session_seconds
        return _json(
            {
                "access_token": token,
                "signature": signature,
                "scope": "api",
                "instance_url": request.host_url.rstrip("/"),
                "id": identity,
                "token_type": "Bearer",
                "issued_at": issued_at,
            },
            200,
        )

    def _query(self, version: str, request: Request) -> Response:
        soql = request.args.get("q")
        if not soql:
            return _json([{"errorCode": "MALFORMED_QUERY", "message": "missing q parameter"}], 400)
        try:
            query = parse_soql(soql)
            rows = self._run(query)
        except SoqlError as e:
            return _json([{"message": e.message, "errorCode": e.code}], 400)
        shaped = [self._shape(r, query.fields, version) for r in rows]
        locator = "01g" + secrets.token_hex(8).upper()
        with self._lock:
            self._cursors[locator] = shaped
        return self._page(version, locator, 0, request)

    def _page(self, version: str, locator: str, offset: int, request: Request) -> Response:
        with self._lock:
            rows = self._cursors.get(locator)
        if rows is None:
            return _json(
                [{"errorCode": "INVALID_QUERY_LOCATOR", "message": "invalid query locator"}], 400
            )
        size = self.page_size
        m = re.search(r"batchSize=(\d+)", request.headers.get("Sforce-Query-Options", ""))
        if m:
            size = max(1, min(int(m.group(1)), 2000))
        page = rows[offset : offset + size]
        body: dict[str, Any] = {"totalSize": len(rows), "done": offset + size >= len(rows)}
        if not body["done"]:
            body["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{offset + size}"
        body["records"] = page
        return _json(body, 200)

    def _run(self, query: SoqlQuery) -> list[dict[str, Any]]:
        if query.sobject != self.article_object:
            raise SoqlError(
                "INVALID_TYPE",
                f"sObject type '{query.sobject}' is not supported. If you are attempting to use "
                "a custom object, be sure to append the '__c' after the entity name.",
            )
        known = self.fields
        for name in [
            *query.fields,
            *(c.field for c in query.where),
            *([query.order_by] if query.order_by else []),
        ]:
            if name not in known:
                raise SoqlError(
                    "INVALID_FIELD",
                    f"No such column '{name}' on entity '{self.article_object}'. If you are "
                    "attempting to use a custom field, be sure to append the '__c' after the "
                    "custom field name.",
                )
        if not any(c.field in ("PublishStatus", "Id") and c.op in ("=", "IN") for c in query.where):
            raise SoqlError(
                "MALFORMED_QUERY",
                f"Implementation restriction: When querying or searching the {self.article_object} "
                "object, you must filter using the following syntax: Id = [single ID], Id IN "
                "[list of ID's] or PublishStatus = ['Online' or 'Draft' or 'Archived'].",
            )
        for c in query.where:
            if c.field in _DATETIME_FIELDS and c.value is not None and c.quoted:
                raise SoqlError(
                    "INVALID_FIELD",
                    f"value of filter criterion for field '{c.field}' must be of type dateTime "
                    "and should not be enclosed in quotes",
                )
        with self._lock:
            rows = [
                dict(v)
                for v in self._versions
                if all(_compare(v.get(c.field), c.op, c.value) for c in query.where)
            ]
        if query.order_by:
            field = query.order_by
            rows.sort(
                key=lambda r: (r.get(field) is None, r.get(field) or 0), reverse=query.descending
            )
        if query.limit is not None:
            rows = rows[: query.limit]
        return rows

    def _shape(self, row: dict[str, Any], fields: list[str], version: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {
                "type": self.article_object,
                "url": f"/services/data/v{version}/sobjects/{self.article_object}/{row['Id']}",
            }
        }
        for name in fields:
            value = row.get(name)
            out[name] = format_datetime(value) if isinstance(value, datetime) else value
        return out


def _sf_id(prefix: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(15))


def _json(body: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    return json_response(body, status, headers, content_type="application/json;charset=UTF-8")
