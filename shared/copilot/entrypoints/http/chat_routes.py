"""Routes of the chat function: customer conversations and the admin API."""

from __future__ import annotations

import hmac
from functools import cache

from pydantic import BaseModel

from copilot.admin.models import Copilot, CopilotList, CopilotPatch, CopilotSpec
from copilot.bootstrap import container
from copilot.conversation.models import (
    MessagesPage,
    PostMessageRequest,
    StartConversationRequest,
    StartConversationResponse,
    TurnResponse,
)
from copilot.entrypoints.http.router import Api, Call, Route
from copilot.errors import ForbiddenError, UnauthorizedError
from copilot.ingest.models import DocumentList, ReindexResult


class Health(BaseModel):
    status: str = "ok"
    function: str


def require_admin(call: Call) -> None:
    given = call.request.headers.get("X-Admin-Key")
    if not given:
        raise UnauthorizedError("send the admin API key in the 'X-Admin-Key' header")
    expected = container().admin_api_key()
    if not expected:
        raise ForbiddenError("the admin API is disabled: no admin API key is configured")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise ForbiddenError("the admin API key is not valid")


def health(call: Call) -> Health:
    return Health(function="chat")


def openapi(call: Call) -> BaseModel:
    from copilot.entrypoints.http.openapi import OpenApiDocument, build_openapi

    return OpenApiDocument.model_validate(build_openapi(chat_api()))


def start_conversation(call: Call) -> StartConversationResponse:
    assert isinstance(call.body, StartConversationRequest)
    return container().chat.start(call.params["copilot_id"], call.body)


def post_message(call: Call) -> TurnResponse:
    assert isinstance(call.body, PostMessageRequest)
    return container().chat.post(
        call.params["conversation_id"], call.bearer_token(), call.body.text
    )


def list_messages(call: Call) -> MessagesPage:
    after = call.query_int("after", 0, 0, 2**53)
    limit = call.query_int("limit", 100, 1, 500)
    return container().chat.messages(
        call.params["conversation_id"], call.bearer_token(), after, limit
    )


def cancel_handoff(call: Call) -> TurnResponse:
    return container().chat.cancel_handoff(call.params["conversation_id"], call.bearer_token())


def create_copilot(call: Call) -> Copilot:
    require_admin(call)
    assert isinstance(call.body, CopilotSpec)
    return container().admin.create(call.body)


def list_copilots(call: Call) -> CopilotList:
    require_admin(call)
    return CopilotList(copilots=container().admin.list())


def get_copilot(call: Call) -> Copilot:
    require_admin(call)
    return container().admin.get(call.params["copilot_id"])


def update_copilot(call: Call) -> Copilot:
    require_admin(call)
    assert isinstance(call.body, CopilotPatch)
    return container().admin.update(call.params["copilot_id"], call.body)


def list_documents(call: Call) -> DocumentList:
    require_admin(call)
    return DocumentList(documents=container().admin.documents(call.params["copilot_id"]))


def reindex(call: Call) -> ReindexResult:
    require_admin(call)
    return container().admin.reindex(call.params["copilot_id"])


@cache
def chat_api() -> Api:
    chat, admin = ["conversations"], ["admin"]
    return Api(
        "Copilot chat API",
        [
            Route("GET", "/healthz", health, "Liveness check", response_model=Health, tags=["ops"]),
            Route("GET", "/openapi.json", openapi, "This document", tags=["ops"]),
            Route(
                "POST",
                "/copilots/<copilot_id>/conversations",
                start_conversation,
                "Start a conversation with a copilot",
                request_model=StartConversationRequest,
                response_model=StartConversationResponse,
                status=201,
                tags=chat,
                body_optional=True,
            ),
            Route(
                "POST",
                "/conversations/<conversation_id>/messages",
                post_message,
                "Send a customer message; returns it and the copilot's replies",
                request_model=PostMessageRequest,
                response_model=TurnResponse,
                auth="conversation",
                tags=chat,
            ),
            Route(
                "GET",
                "/conversations/<conversation_id>/messages",
                list_messages,
                "Messages after a sequence number (poll with ?after=<last seen seq>)",
                response_model=MessagesPage,
                auth="conversation",
                tags=chat,
            ),
            Route(
                "POST",
                "/conversations/<conversation_id>/handoff/cancel",
                cancel_handoff,
                "Stop waiting for an agent, or leave the agent's chat (409 if none is active)",
                response_model=TurnResponse,
                auth="conversation",
                tags=chat,
            ),
            Route(
                "POST",
                "/admin/copilots",
                create_copilot,
                "Create a copilot",
                request_model=CopilotSpec,
                response_model=Copilot,
                status=201,
                auth="admin",
                tags=admin,
            ),
            Route(
                "GET",
                "/admin/copilots",
                list_copilots,
                "List copilots",
                response_model=CopilotList,
                auth="admin",
                tags=admin,
            ),
            Route(
                "GET",
                "/admin/copilots/<copilot_id>",
                get_copilot,
                "Read a copilot",
                response_model=Copilot,
                auth="admin",
                tags=admin,
            ),
            Route(
                "PATCH",
                "/admin/copilots/<copilot_id>",
                update_copilot,
                "Update a copilot (only the fields sent change; messages merge)",
                request_model=CopilotPatch,
                response_model=Copilot,
                auth="admin",
                tags=admin,
            ),
            Route(
                "GET",
                "/admin/copilots/<copilot_id>/documents",
                list_documents,
                "Knowledge documents and their indexing status",
                response_model=DocumentList,
                auth="admin",
                tags=admin,
            ),
            Route(
                "POST",
                "/admin/copilots/<copilot_id>/reindex",
                reindex,
                "Rebuild the copilot's index from its files (e.g. after changing the embedding model)",
                response_model=ReindexResult,
                status=202,
                auth="admin",
                tags=admin,
            ),
        ],
        cors=True,
    )
