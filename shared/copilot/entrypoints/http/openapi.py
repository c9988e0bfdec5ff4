"""OpenAPI 3.1 document generated from the routes and their pydantic models."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from copilot import __version__
from copilot.conversation.models import MAX_WAIT_SECONDS
from copilot.entrypoints.http.directline import ACTIVITIES_QUERY
from copilot.entrypoints.http.router import MAX_BODY_BYTES, Api, Route
from copilot.schema import MAX_JSON_DEPTH, MAX_NUMBER_CHARS, ErrorResponse

_ERRORS = {
    "400": "Malformed JSON, a missing or invalid field or query parameter (the message names it)",
    "401": "Missing credentials",
    "403": "Credentials that do not grant access",
    "404": "Unknown copilot or conversation (or another customer's: the same answer)",
    "409": "Conflicts with the stored state (e.g. no hand-off to cancel), or lost every retry "
    "to concurrent writers: read again and retry",
    "413": "Request body too large",
    "429": "Too many requests: wait the Retry-After seconds",
    "503": "A dependency (storage, index, model, hub) failed: retry",
}
_BODY_LIMITS = (
    f"A JSON object of at most {MAX_BODY_BYTES // 1024} KB, nested at most {MAX_JSON_DEPTH} "
    f"levels, with no number over {MAX_NUMBER_CHARS} characters (else 413 or 400)."
)
# The bounds list_messages reads its query with (Call.query_int).
_PAGE_QUERY: list[dict[str, Any]] = [
    {
        "name": "after",
        "in": "query",
        "description": "Only messages with a higher sequence number.",
        "schema": {"type": "integer", "minimum": 0, "maximum": 2**53, "default": 0},
    },
    {
        "name": "limit",
        "in": "query",
        "description": "At most this many messages.",
        "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
    },
    {
        "name": "wait",
        "in": "query",
        "description": "Long-poll: wait up to this many seconds for a message after 'after' "
        "(the answer comes as soon as there is one; an empty page when the wait is over). "
        "0: answer at once.",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECONDS, "default": 0},
    },
]


class OpenApiDocument(BaseModel):
    model_config = ConfigDict(extra="allow")


def build_openapi(api: Api) -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorResponse}
    for route in api.routes:
        models.update(m for m in (route.request_model, route.response_model) if m is not None)
    ordered = sorted(models, key=lambda m: m.__name__)
    _, defs = models_json_schema(
        [(m, "validation") for m in ordered], ref_template="#/components/schemas/{model}"
    )
    paths: dict[str, Any] = {}
    for route in api.routes:
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route.path)
        params = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in path_params(path)
        ]
        if route.method == "GET" and "messages" in path:
            params += _PAGE_QUERY
        elif route.method == "GET" and path.endswith("/activities"):
            params += ACTIVITIES_QUERY  # Direct Line's watermark
        params += [
            {
                "name": n,
                "in": "query",
                "required": False,
                "description": d,
                "schema": {"type": "string"},
            }
            for n, d in route.query
        ]
        op: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.handler.__name__,
            "tags": route.tags,
            "parameters": params,
            "responses": {
                str(route.status): {
                    # A route that only refuses (status >= 400) says why in its summary.
                    "description": "OK" if route.status < 400 else route.summary,
                    **(
                        {"content": {"application/json": {"schema": _ref(route.response_model)}}}
                        if route.response_model
                        else {}
                    ),
                }
            },
        }
        if route.asset is not None:
            _asset_responses(route.asset, op)
        if route.download:
            op["responses"][str(route.status)]["content"] = {
                media: {"schema": {"type": "string"}} for media in route.download
            }
        if route.request_model is not None:
            op["requestBody"] = {
                "required": not route.body_optional,
                "description": _BODY_LIMITS,
                "content": {"application/json": {"schema": _ref(route.request_model)}},
            }
        for code in _error_statuses(route, has_query=len(params) > len(path_params(path))):
            op["responses"][code] = {
                "description": _ERRORS[code],
                "content": {"application/json": {"schema": _ref(ErrorResponse)}},
            }
            if code == "429":
                op["responses"][code]["headers"] = {
                    "Retry-After": {
                        "description": "Seconds to wait before trying again.",
                        "schema": {"type": "integer", "minimum": 1},
                    }
                }
        _header_rules(route, op)
        if route.auth == "conversation":
            op["security"] = [{"conversationToken": []}]
        elif route.auth == "admin":
            op["security"] = [{"adminKey": []}]
        paths.setdefault(path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": api.title, "version": __version__},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "conversationToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The token returned when the conversation started.",
                },
                "adminKey": {"type": "apiKey", "in": "header", "name": "X-Admin-Key"},
            },
        },
    }


def path_params(path: str) -> list[str]:
    return re.findall(r"\{(\w+)\}", path)


def _error_statuses(route: Route, has_query: bool) -> list[str]:
    """The error statuses a route can answer, from what it takes: a body or query (400, 413),
    ids in its path (404), credentials (401, 403), a write (409); every route that reaches a
    service may find a dependency down (503), and the rate-limited routes answer 429."""
    if route.auth == "none" and route.request_model is None and "<" not in route.path:
        return []  # health and this document: no input, no service
    codes = set()
    if route.request_model is not None or has_query:
        codes.add("400")
    if route.request_model is not None:
        codes.add("413")
    if route.auth == "admin":
        codes |= {"401", "403"}
    elif route.auth == "conversation":
        codes.add("401")  # another customer's token is a 404, like an unknown id
    if route.rate_limited:
        codes.add("429")
    if "<" in route.path or route.auth == "conversation":
        codes.add("404")  # an unknown id, or a token of no conversation
    if route.method != "GET":
        codes.add("409")
    codes.add("503")
    return sorted(codes)


def _header_rules(route: Route, op: dict[str, Any]) -> None:
    """The route's request headers (router.HeaderParam, checked by the router against the
    same pattern), the error statuses and the response headers they bring."""
    for header in route.headers:
        op["parameters"].append(
            {
                "name": header.name,
                "in": "header",
                "required": False,
                "description": header.description,
                "schema": {"type": "string", "pattern": header.pattern},
            }
        )
        for status, why in header.errors:
            op["responses"][str(status)] = {
                "description": why,
                "content": {"application/json": {"schema": _ref(ErrorResponse)}},
            }
        ok = op["responses"][str(route.status)]
        for name, meaning in header.response_headers:
            ok.setdefault("headers", {})[name] = {
                "description": meaning,
                "schema": {"type": "string"},
            }


def _asset_responses(media_type: str, op: dict[str, Any]) -> None:
    """A static file's answer (router.Route.asset, entrypoints/http/static.py): the file, with
    its caching headers, or 304 when the caller's copy is current."""
    cached = {
        "ETag": {"description": "The file's version.", "schema": {"type": "string"}},
        "Cache-Control": {"description": "How long to keep it.", "schema": {"type": "string"}},
    }
    op["parameters"].append(
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": "The ETag of a copy the caller has: 304 when it is current.",
            "schema": {"type": "string"},
        }
    )
    op["responses"] = {
        "200": {
            "description": "The file (gzip-encoded when Accept-Encoding allows it)",
            "headers": cached,
            "content": {media_type.split(";")[0]: {"schema": {"type": "string"}}},
        },
        "304": {"description": "Not modified: the caller's copy is current", "headers": cached},
    }


def _ref(model: type[BaseModel] | None) -> dict[str, str]:
    assert model is not None
    return {"$ref": f"#/components/schemas/{model.__name__}"}
