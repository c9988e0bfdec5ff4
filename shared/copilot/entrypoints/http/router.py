"""A small HTTP API layer over werkzeug: routes with pydantic models, one error table.

The same ``Api`` serves functions-framework (its flask.Request is a werkzeug Request) and AWS
Lambda (through a WSGI adapter), so both runtimes run identical routing and error mapping.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.exceptions import NotFound as RouteNotFound
from werkzeug.routing import Map, MapAdapter, RequestRedirect, Rule
from werkzeug.wrappers import Request, Response

from copilot.errors import (
    BadRequestError,
    CopilotError,
    OriginNotAllowedError,
    PayloadTooLargeError,
)
from copilot.observability import add_metric, bind, current_fields, request_scope, timed
from copilot.schema import new_id, parse_object

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
REQUEST_ID_HEADER = "X-Request-Id"
# A caller's request id goes into every log line: only a plain token of modest length.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Route parameters that are correlation fields of the request's log lines.
CORRELATED_PARAMS = ("copilot_id", "conversation_id", "hub")
# What a browser's preflight may ask for on the customer routes: the conversation token, a JSON
# body, the retry key of an idempotent write and a correlation id (and the two headers
# botframework-directlinejs sends on every Direct Line call); and what its script may read.
CORS_ALLOW_HEADERS = (
    "Authorization, Content-Type, Idempotency-Key, X-Request-Id, X-Requested-With, x-ms-bot-agent"
)
CORS_EXPOSE_HEADERS = "Retry-After, X-Request-Id"
ANY_ORIGIN = "*"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # nothing runs that a page could not read
ORIGIN_DECIDED = "copilot.cors.allowed_origin"  # the request's decision, in its WSGI environ


@dataclass
class Call:
    request: Request
    params: dict[str, Any]
    body: Any = None
    response_headers: dict[str, str] = field(default_factory=dict)  # set by the handler

    def bearer_token(self) -> str | None:
        header = self.request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        return value.strip() or None if scheme.lower() == "bearer" else None

    def query_int(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.request.args.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise BadRequestError(f"'{name}' must be an integer", field=name) from None
        if not low <= value <= high:
            raise BadRequestError(f"'{name}' must be between {low} and {high}", field=name)
        return value


# A handler answers with a model (sent as JSON), nothing (204), or a ready Response: a static
# file (Route.asset) builds its own, with caching headers and its media type.
Handler = Callable[[Call], BaseModel | Response | None]
# The origins whose pages may call a route from a browser ('*' among them: any), given the
# call (its path parameters name what is called; the body is not read yet).
CorsPolicy = Callable[[Call], Collection[str]]


@dataclass(frozen=True)
class HeaderParam:
    """An optional request header a route reads: checked before its handler runs (400 naming
    it) and stated, with its pattern, in the OpenAPI document."""

    name: str
    pattern: str
    description: str
    errors: tuple[tuple[int, str], ...] = ()  # (status, why): what the header adds to a route's
    response_headers: tuple[tuple[str, str], ...] = ()  # (name, meaning) it may set on success

    def check(self, request: Request) -> None:
        value = request.headers.get(self.name)
        if value is not None and not re.fullmatch(self.pattern, value):
            raise BadRequestError(
                f"the '{self.name}' header must match {self.pattern}", field=self.name
            )


@dataclass
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    request_model: type[BaseModel] | None = None
    response_model: type[BaseModel] | None = None
    status: int = 200
    auth: str = "none"  # none | conversation | admin
    tags: list[str] = field(default_factory=list)
    body_optional: bool = False
    timing: str | None = None  # the request scope's timing part its handler adds to ("turn")
    rate_limited: bool = False  # its handler takes from a rate-limit bucket (429 documented)
    headers: tuple[HeaderParam, ...] = ()
    asset: str | None = None  # the media type of the static file it serves (ETag, 304); else JSON
    download: tuple[str, ...] = ()  # media types of a file it answers with (not JSON)
    query: tuple[tuple[str, str], ...] = ()  # optional query parameters: (name, description)


class Health(BaseModel):
    status: str = "ok"
    function: str


def health_route(function: str, path: str = "/healthz", summary: str = "Liveness check") -> Route:
    def health(call: Call) -> Health:
        return Health(function=function)

    return Route("GET", path, health, summary, response_model=Health, tags=["ops"])


class Api:
    """Routes, matched exactly: no redirects (werkzeug would answer an id holding %2F, decoded
    to a double slash, with a 308 and no Location), 405 names the allowed methods.

    ``cors``: browsers may call the routes that take no admin key from the origins the policy
    allows for the call (the request's Origin echoed, with ``Vary: Origin``); a preflight from
    any other origin is a 403, so are its writes (a simple request has no preflight), and its
    reads are served without CORS headers (the browser keeps the answer from the page). Admin routes are called from servers and the CLI:
    they send no CORS header and answer no preflight, whatever the policy.
    """

    def __init__(
        self,
        title: str,
        routes: list[Route],
        cors: CorsPolicy | None = None,
        function: str | None = None,
    ) -> None:
        self.title = title
        self.routes = routes
        self._cors = cors
        self.function = function  # the "function" field and metric dimension of its requests
        self._map = Map(
            [Rule(r.path, endpoint=i, methods=[r.method]) for i, r in enumerate(routes)],
            merge_slashes=False,
        )

    def dispatch(self, request: Request) -> Response:
        """One request in its own log scope: correlation fields on every line, one access
        line, the request id sent back (X-Request-Id)."""
        request_id = _request_id(request)
        started = time.perf_counter()
        with request_scope(request_id=request_id, function=self.function):
            response = self._dispatch(request)
            response.headers[REQUEST_ID_HEADER] = request_id
            if response.status_code >= 500:
                add_metric("http_5xx", 1)
            ms = (time.perf_counter() - started) * 1000
            log.info(
                "%s %s %d %.1f ms",
                request.method,
                current_fields().get("route", "-"),
                response.status_code,
                ms,
                extra={
                    "method": request.method,
                    "status": response.status_code,
                    "duration_ms": round(ms, 1),
                },
            )
        return response

    def _dispatch(self, request: Request) -> Response:
        adapter = self._map.bind_to_environ(request.environ)
        allowed = self._allowed_methods(adapter, request.path)
        cors = self._cors_params(adapter, request.path, allowed)
        if cors is not None and request.method == "OPTIONS":
            return self._preflight(Call(request=request, params=cors), allowed)
        try:
            endpoint, params = adapter.match(request.path, method=request.method)
            route = self.routes[endpoint]
            bind(route=route.path, **{k: str(params[k]) for k in CORRELATED_PARAMS if k in params})
            call = Call(request=request, params=dict(params))
            if cors is not None and request.method not in READ_METHODS:
                self._refuse_other_origin(call)
            for header in route.headers:
                header.check(request)
            if route.request_model is not None:
                call.body = _parse_body(request, route.request_model, route.body_optional)
            if route.timing is None:
                result = route.handler(call)
            else:
                with timed(route.timing):
                    result = route.handler(call)
            if isinstance(result, Response):
                response = result
            else:
                response = _json(route.status, result.model_dump(mode="json") if result else None)
            response.headers.update(call.response_headers)
        except CopilotError as e:
            response = _error(e.status, e.code, e.message, e.field)
            response.headers.update(e.headers)
        except MethodNotAllowed:
            response = _error(405, "method_not_allowed", f"{request.method} is not allowed here")
            response.headers["Allow"] = ", ".join(allowed)
        except (RouteNotFound, RequestRedirect):
            response = _error(404, "not_found", f"no route for {request.method} {request.path}")
        except HTTPException as e:
            response = _error(e.code or 400, "bad_request", e.description or "bad request")
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            response = _error(500, "internal_error", "something went wrong on our side; try again")
        if cors is not None:
            self._with_cors(Call(request=request, params=cors), response, allowed)
        return response

    def wsgi(self) -> Callable[..., Any]:
        @Request.application
        def app(request: Request) -> Response:
            return self.dispatch(request)

        return app

    def _allowed_methods(self, adapter: MapAdapter, path: str) -> list[str]:
        """The methods of the routes on ``path`` (HEAD with GET, as werkzeug serves it), plus
        OPTIONS where browsers may call: the Allow header of a 405 and of a preflight."""
        methods = set(adapter.allowed_methods(path))
        if methods and self._cors_params(adapter, path, sorted(methods)) is not None:
            methods.add("OPTIONS")
        return sorted(methods)

    def _cors_params(
        self, adapter: MapAdapter, path: str, allowed: list[str]
    ) -> dict[str, Any] | None:
        """The path parameters of a route on ``path`` browsers may call (None: none may)."""
        if self._cors is None or not allowed:
            return None
        method = next(m for m in allowed if m != "OPTIONS")
        try:
            endpoint, params = adapter.match(path, method=method)
        except HTTPException:
            return None
        return dict(params) if self.routes[endpoint].auth != "admin" else None

    def _allowed_origin(self, call: Call) -> str | None:
        """The request's Origin when the policy allows it for this call, else None. Decided
        once per request: a write asks before its handler runs and again for its answer."""
        environ = call.request.environ
        if ORIGIN_DECIDED in environ:
            return environ[ORIGIN_DECIDED]
        origin = call.request.headers.get("Origin")
        if not origin or self._cors is None:
            return None  # no browser page (a server or an app): nothing to allow
        origin = origin.strip().lower()  # scheme and host are case-insensitive
        allowed = self._cors(call)
        decided = origin if origin in allowed or ANY_ORIGIN in allowed else None
        environ[ORIGIN_DECIDED] = decided
        return decided

    def _preflight(self, call: Call, allowed: list[str]) -> Response:
        """A browser's preflight: 204 with the CORS headers for an allowed origin, a 403 for
        another; a plain OPTIONS (no Origin) gets the route's methods."""
        sent = call.request.headers.get("Origin")
        bind(**{k: str(call.params[k]) for k in CORRELATED_PARAMS if k in call.params})
        origin = None
        try:
            origin = self._allowed_origin(call)
        except CopilotError as e:
            response = _error(e.status, e.code, e.message, e.field)
        except Exception:
            log.exception("allowed origins not read for %s", call.request.path)
            response = _error(500, "internal_error", "something went wrong on our side; try again")
        else:
            if sent and origin is None:
                refused = OriginNotAllowedError.of(sent)
                response = _error(refused.status, refused.code, refused.message)
            else:
                response = Response(status=204)
                response.headers["Allow"] = ", ".join(allowed)
        response.vary.add("Origin")
        if origin is not None:
            self._cors_headers(response, origin, allowed)
        return response

    def _refuse_other_origin(self, call: Call) -> None:
        """A write from a browser page the policy does not allow is refused before it runs: a
        simple request (a form post, or a POST without a JSON body) has no preflight to refuse
        it, and the browser would run it, only hiding the answer from the page."""
        sent = call.request.headers.get("Origin")
        if sent and self._allowed_origin(call) is None:
            raise OriginNotAllowedError.of(sent)

    def _with_cors(self, call: Call, response: Response, allowed: list[str]) -> None:
        response.vary.add("Origin")  # a shared cache must not serve one origin's answer to another
        try:
            origin = self._allowed_origin(call)
        except Exception:  # the answer stands; only the browser is refused
            log.exception("allowed origins not read for %s", call.request.path)
            return
        if origin is not None:
            self._cors_headers(response, origin, allowed)

    @staticmethod
    def _cors_headers(response: Response, origin: str, allowed: list[str]) -> None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
        response.headers["Access-Control-Allow-Methods"] = ", ".join(allowed)
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"


def _request_id(request: Request) -> str:
    """The caller's X-Request-Id, else API Gateway's request id (on Lambda), else a new one."""
    sent = request.headers.get(REQUEST_ID_HEADER, "").strip()
    if _REQUEST_ID.fullmatch(sent):
        return sent
    context = request.environ.get("apig_wsgi.request_context")
    gateway = context.get("requestId") if isinstance(context, dict) else None
    return gateway if isinstance(gateway, str) and _REQUEST_ID.fullmatch(gateway) else new_id()


def raw_body(request: Request) -> bytes:
    """The request body, refused past MAX_BODY_BYTES whether or not it declares its length."""
    too_large = PayloadTooLargeError(f"the request body is over {MAX_BODY_BYTES // 1024} KB")
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise too_large
    raw = request.get_data(cache=True)
    if len(raw) > MAX_BODY_BYTES:
        raise too_large
    return raw


def _parse_body(request: Request, model: type[BaseModel], optional: bool) -> BaseModel:
    raw = raw_body(request)
    if not raw.strip():
        if optional:
            return model()
        raise BadRequestError("the request body is empty; send a JSON object")
    return parse_object(raw, model)


def _json(status: int, payload: Any) -> Response:
    if payload is None:
        return Response(status=status if status != 200 else 204)
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def _error(status: int, code: str, message: str, field: str | None = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return _json(status, {"error": body})
