"""OpenAPI 3.1 document generated from the routes and their pydantic models."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from copilot import __version__
from copilot.entrypoints.http.router import Api, Route
from copilot.schema import ErrorResponse

_ERRORS = {
    "400": "Malformed JSON, a missing or invalid field (the message names it)",
    "401": "Missing credentials",
    "403": "Credentials that do not grant access",
    "404": "Unknown copilot or conversation",
    "413": "Request body too large",
}


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
            for n in re.findall(r"\{(\w+)\}", path)
        ]
        if route.method == "GET" and "messages" in path:
            params += [
                {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                },
            ]
        op: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.handler.__name__,
            "tags": route.tags,
            "parameters": params,
            "responses": {
                str(route.status): {
                    "description": "OK",
                    **(
                        {"content": {"application/json": {"schema": _ref(route.response_model)}}}
                        if route.response_model
                        else {}
                    ),
                }
            },
        }
        if route.request_model is not None:
            op["requestBody"] = {
                "required": not route.body_optional,
                "content": {"application/json": {"schema": _ref(route.request_model)}},
            }
        if route.auth != "none" or route.request_model is not None:
            for code, text in _ERRORS.items():
                if route.auth == "none" and code in ("401", "403"):
                    continue
                op["responses"][code] = {
                    "description": text,
                    "content": {"application/json": {"schema": _ref(ErrorResponse)}},
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


def _ref(model: type[BaseModel] | None) -> dict[str, str]:
    assert model is not None
    return {"$ref": f"#/components/schemas/{model.__name__}"}
