"""Routes of the chat function: customer conversations and the admin API.

The routes get their services from the composition root (``copilot.bootstrap``) as providers:
a route builds only what it uses, so a health check or the OpenAPI document costs no storage
client on a cold start.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel
from werkzeug.wrappers import Response

from copilot.admin.models import Copilot, CopilotList, CopilotPatch, CopilotSpec, WidgetConfig
from copilot.analytics.report import AnalyticsReport
from copilot.analytics.transcripts import MEDIA_TYPES as TRANSCRIPT_MEDIA_TYPES
from copilot.conversation import idempotency
from copilot.conversation.idempotency import Done
from copilot.conversation.models import (
    MAX_WAIT_SECONDS,
    FeedbackRequest,
    MessagesPage,
    PostMessageRequest,
    Recorded,
    StartConversationRequest,
    StartConversationResponse,
    SurveyRequest,
    TurnResponse,
)
from copilot.entrypoints.http.clients import client_address
from copilot.entrypoints.http.directline import DirectLineRoutes
from copilot.entrypoints.http.router import Api, Call, HeaderParam, Route, health_route
from copilot.entrypoints.http.static import WIDGET_SCRIPT
from copilot.errors import ForbiddenError, UnauthorizedError
from copilot.ingest.models import DocumentList, ReindexResult, RetryRequest, RetryResult
from copilot.knowledge.calibration import (
    MAX_BATCH,
    CalibrationRequest,
    CalibrationResult,
    measure,
)
from copilot.observability import bind

R = TypeVar("R", bound=BaseModel)

IDEMPOTENCY_KEY = HeaderParam(
    idempotency.HEADER,
    idempotency.KEY_PATTERN,
    "A random value (e.g. a UUID) naming this request, the same on each retry of it: a retry "
    f"within {int(idempotency.WINDOW.total_seconds() // 3600)} h gets the first request's "
    f"status and body back with '{idempotency.REPLAYED_HEADER}: true', and nothing is stored "
    "or run again; the same key with a different body is a 422. Scoped to the conversation "
    "(posts) or to the copilot (starts). Without it, a retry is a new request.",
    errors=((422, "This Idempotency-Key was used with a different request body"),),
    response_headers=(
        (idempotency.REPLAYED_HEADER, "'true' when this is the stored answer of an earlier try"),
    ),
)


def _answer(call: Call, done: Done[R]) -> R:
    if done.replayed:
        call.response_headers[idempotency.REPLAYED_HEADER] = "true"
    return done.response


if TYPE_CHECKING:
    from copilot.admin.origins import CopilotOrigins
    from copilot.admin.service import AdminService
    from copilot.analytics.service import AnalyticsService
    from copilot.conversation.limits import ChatLimits
    from copilot.conversation.service import ConversationService
    from copilot.knowledge.answer import KnowledgeAnswerer


class ChatRoutes:
    def __init__(
        self,
        chat: Callable[[], ConversationService],
        admin: Callable[[], AdminService],
        admin_api_key: Callable[[], str | None],
        limits: Callable[[], ChatLimits | None] = lambda: None,
        forwarded_hops: int = 0,
        origins: Callable[[], CopilotOrigins | None] = lambda: None,
        answerer: Callable[[], KnowledgeAnswerer | None] = lambda: None,
        analytics: Callable[[], AnalyticsService | None] = lambda: None,
    ) -> None:
        self._chat = chat
        self._analytics = analytics  # reports and transcripts over the event archive
        self._answerer = answerer  # measures labelled questions (calibration)
        self._admin = admin
        self._admin_api_key = admin_api_key
        self._limits = limits  # rate limits of the customer routes (None: unlimited)
        self._forwarded_hops = forwarded_hops
        self._origins = origins  # pages allowed to call from browsers (None: no page)
        self.api = self._build()

    def client(self, call: Call) -> str:
        return client_address(call.request, self._forwarded_hops)

    def require_admin(self, call: Call) -> None:
        given = call.request.headers.get("X-Admin-Key")
        if not given:
            raise UnauthorizedError("send the admin API key in the 'X-Admin-Key' header")
        expected = self._admin_api_key()
        if not expected:
            raise ForbiddenError("the admin API is disabled: no admin API key is configured")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ForbiddenError("the admin API key is not valid")

    def openapi(self, call: Call) -> BaseModel:
        from copilot.entrypoints.http.openapi import OpenApiDocument, build_openapi

        return OpenApiDocument.model_validate(build_openapi(self.api))

    def start_conversation(self, call: Call) -> StartConversationResponse:
        assert isinstance(call.body, StartConversationRequest)
        if limits := self._limits():
            limits.start(call.params["copilot_id"], self.client(call))
        key = call.request.headers.get(IDEMPOTENCY_KEY.name)
        started = self._chat().start_once(call.params["copilot_id"], call.body, key)
        bind(conversation_id=started.response.conversation_id)  # the access line names it too
        return _answer(call, started)

    def post_message(self, call: Call) -> TurnResponse:
        assert isinstance(call.body, PostMessageRequest)
        limits = self._limits()
        # The limits are checked while the turn reads the conversation (the gate waits).
        gate = (
            limits.begin_post(
                call.params["conversation_id"], call.bearer_token(), self.client(call)
            )
            if limits
            else None
        )
        key = call.request.headers.get(IDEMPOTENCY_KEY.name)
        done = self._chat().post_once(
            call.params["conversation_id"], call.bearer_token(), call.body.text, key, gate
        )
        return _answer(call, done)

    def list_messages(self, call: Call) -> MessagesPage:
        after = call.query_int("after", 0, 0, 2**53)
        limit = call.query_int("limit", 100, 1, 500)
        wait = call.query_int("wait", 0, 0, MAX_WAIT_SECONDS)
        if limits := self._limits():
            limits.poll(call.params["conversation_id"], call.bearer_token())  # once per long-poll
        return self._chat().messages(
            call.params["conversation_id"], call.bearer_token(), after, limit, wait
        )

    def cancel_handoff(self, call: Call) -> TurnResponse:
        return self._chat().cancel_handoff(call.params["conversation_id"], call.bearer_token())

    def feedback(self, call: Call) -> Recorded:
        assert isinstance(call.body, FeedbackRequest)
        self._limit_as_post(call)  # a write to the conversation, as a message is
        return self._chat().feedback(
            call.params["conversation_id"], call.bearer_token(), call.params["seq"], call.body
        )

    def survey(self, call: Call) -> Recorded:
        assert isinstance(call.body, SurveyRequest)
        self._limit_as_post(call)
        return self._chat().survey(call.params["conversation_id"], call.bearer_token(), call.body)

    def _limit_as_post(self, call: Call) -> None:
        if limits := self._limits():
            limits.post(call.params["conversation_id"], call.bearer_token(), self.client(call))

    def allowed_origins(self, call: Call) -> Collection[str]:
        """CORS policy: the allowed origins of the copilot the call is about (from its path,
        or its conversation's copilot); none for a route about no copilot."""
        origins = self._origins()
        if origins is None:
            return ()
        if "copilot_id" in call.params:
            return origins.of_copilot(call.params["copilot_id"])
        if "conversation_id" in call.params:
            return origins.of_conversation(call.params["conversation_id"])
        return ()

    def widget_config(self, call: Call) -> WidgetConfig:
        # Public and the same for every visitor: browsers and shared caches keep it a minute.
        call.response_headers["Cache-Control"] = "public, max-age=60"
        return WidgetConfig.of(self._admin().get(call.params["copilot_id"]))

    def widget_script(self, call: Call) -> Response:
        return WIDGET_SCRIPT.response(call.request)

    def create_copilot(self, call: Call) -> Copilot:
        self.require_admin(call)
        assert isinstance(call.body, CopilotSpec)
        return self._admin().create(call.body)

    def list_copilots(self, call: Call) -> CopilotList:
        self.require_admin(call)
        return CopilotList(copilots=self._admin().list())

    def get_copilot(self, call: Call) -> Copilot:
        self.require_admin(call)
        return self._admin().get(call.params["copilot_id"])

    def update_copilot(self, call: Call) -> Copilot:
        self.require_admin(call)
        assert isinstance(call.body, CopilotPatch)
        return self._admin().update(call.params["copilot_id"], call.body)

    def list_documents(self, call: Call) -> DocumentList:
        self.require_admin(call)
        return DocumentList(documents=self._admin().documents(call.params["copilot_id"]))

    def reindex(self, call: Call) -> ReindexResult:
        self.require_admin(call)
        return self._admin().reindex(call.params["copilot_id"])

    def retry_documents(self, call: Call) -> RetryResult:
        self.require_admin(call)
        keys = call.body.keys if isinstance(call.body, RetryRequest) else []
        return self._admin().retry(call.params["copilot_id"], keys)

    def calibration(self, call: Call) -> CalibrationResult:
        self.require_admin(call)
        assert isinstance(call.body, CalibrationRequest)
        copilot = self._admin().get(call.params["copilot_id"])
        answerer = self._answerer()
        if answerer is None:
            raise ForbiddenError("calibration is not available on this deployment")
        bind(copilot_id=copilot.copilot_id)
        measured = [measure(answerer, copilot, q) for q in call.body.questions]
        policy = answerer.policy
        return CalibrationResult(
            bar_in_use=policy.bar(copilot),
            margin_weight_in_use=policy.margin_weight_for(copilot),
            measured=measured,
        )

    def _analytics_service(self, call: Call) -> AnalyticsService:
        self.require_admin(call)
        service = self._analytics()
        if service is None:
            raise ForbiddenError("analytics are not available on this deployment")
        bind(copilot_id=call.params["copilot_id"])
        return service

    def analytics(self, call: Call) -> AnalyticsReport:
        service = self._analytics_service(call)
        args = call.request.args
        top = call.query_int("top", 10, 1, 100)
        return service.report(call.params["copilot_id"], args.get("since"), args.get("until"), top)

    def transcripts(self, call: Call) -> Response:
        service = self._analytics_service(call)
        args = call.request.args
        fmt = args.get("format", "jsonl")
        body, count = service.transcripts(
            call.params["copilot_id"], args.get("since"), args.get("until"), fmt
        )
        media = TRANSCRIPT_MEDIA_TYPES[fmt]
        response = Response(body, status=200, content_type=media)
        name = f"transcripts-{call.params['copilot_id']}.{fmt}"
        response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        response.headers["X-Conversations"] = str(count)
        return response

    def _build(self) -> Api:
        chat, admin = ["conversations"], ["admin"]
        directline = DirectLineRoutes(self._chat, self._limits, self._origins, self.client)
        return Api(
            "Copilot chat API",
            [
                health_route("chat"),
                Route("GET", "/openapi.json", self.openapi, "This document", tags=["ops"]),
                Route(
                    "POST",
                    "/copilots/<copilot_id>/conversations",
                    self.start_conversation,
                    "Start a conversation with a copilot",
                    request_model=StartConversationRequest,
                    response_model=StartConversationResponse,
                    status=201,
                    tags=chat,
                    body_optional=True,
                    headers=(IDEMPOTENCY_KEY,),
                    rate_limited=True,
                ),
                Route(
                    "GET",
                    "/copilots/<copilot_id>/widget-config",
                    self.widget_config,
                    "The copilot's name and appearance, for the web chat widget (public, "
                    "cacheable)",
                    response_model=WidgetConfig,
                    tags=chat,
                ),
                Route(
                    "GET",
                    "/widget.js",
                    self.widget_script,
                    "The web chat widget's script, for a <script> tag on any page (public, "
                    "cacheable; docs/widget.md)",
                    tags=chat,
                    asset=WIDGET_SCRIPT.media_type,
                ),
                Route(
                    "POST",
                    "/conversations/<conversation_id>/messages",
                    self.post_message,
                    "Send a customer message; returns it and the copilot's replies",
                    request_model=PostMessageRequest,
                    response_model=TurnResponse,
                    auth="conversation",
                    tags=chat,
                    timing="turn",
                    headers=(IDEMPOTENCY_KEY,),
                    rate_limited=True,
                ),
                Route(
                    "GET",
                    "/conversations/<conversation_id>/messages",
                    self.list_messages,
                    "Messages after a sequence number (poll with ?after=<last seen seq>; "
                    "long-poll with &wait=<seconds>)",
                    response_model=MessagesPage,
                    auth="conversation",
                    tags=chat,
                    rate_limited=True,
                ),
                Route(
                    "POST",
                    "/conversations/<conversation_id>/handoff/cancel",
                    self.cancel_handoff,
                    "Stop waiting for an agent, or leave the agent's chat (409 if none is active)",
                    response_model=TurnResponse,
                    auth="conversation",
                    tags=chat,
                ),
                Route(
                    "POST",
                    "/conversations/<conversation_id>/messages/<int:seq>/feedback",
                    self.feedback,
                    "Thumbs up or down on one of the copilot's answers (the last one given "
                    "counts; docs/analytics.md)",
                    request_model=FeedbackRequest,
                    response_model=Recorded,
                    auth="conversation",
                    tags=chat,
                    rate_limited=True,
                ),
                Route(
                    "POST",
                    "/conversations/<conversation_id>/survey",
                    self.survey,
                    "The customer's rating of the conversation, 1-5 with an optional comment "
                    "(CSAT; a survey the copilot asked in the chat is answered by it too)",
                    request_model=SurveyRequest,
                    response_model=Recorded,
                    auth="conversation",
                    tags=chat,
                    rate_limited=True,
                ),
                Route(
                    "POST",
                    "/admin/copilots",
                    self.create_copilot,
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
                    self.list_copilots,
                    "List copilots",
                    response_model=CopilotList,
                    auth="admin",
                    tags=admin,
                ),
                Route(
                    "GET",
                    "/admin/copilots/<copilot_id>",
                    self.get_copilot,
                    "Read a copilot",
                    response_model=Copilot,
                    auth="admin",
                    tags=admin,
                ),
                Route(
                    "PATCH",
                    "/admin/copilots/<copilot_id>",
                    self.update_copilot,
                    "Update a copilot (only the fields sent change; messages merge)",
                    request_model=CopilotPatch,
                    response_model=Copilot,
                    auth="admin",
                    tags=admin,
                ),
                Route(
                    "GET",
                    "/admin/copilots/<copilot_id>/documents",
                    self.list_documents,
                    "Knowledge documents and their indexing status",
                    response_model=DocumentList,
                    auth="admin",
                    tags=admin,
                ),
                Route(
                    "POST",
                    "/admin/copilots/<copilot_id>/reindex",
                    self.reindex,
                    "Rebuild the copilot's index from its files (e.g. after changing the embedding model)",
                    response_model=ReindexResult,
                    status=202,
                    auth="admin",
                    tags=admin,
                ),
                Route(
                    "POST",
                    "/admin/copilots/<copilot_id>/documents/retry",
                    self.retry_documents,
                    "Queue failed documents (or the named ones) for another indexing attempt",
                    request_model=RetryRequest,
                    response_model=RetryResult,
                    status=202,
                    auth="admin",
                    tags=admin,
                    body_optional=True,
                ),
                Route(
                    "POST",
                    "/admin/copilots/<copilot_id>/calibration",
                    self.calibration,
                    "Measure labelled questions as customer turns (the answer gate's confidence "
                    f"and what an answer would cite at any bar; at most {MAX_BATCH} a request), "
                    "to choose the copilot's answer_bar: `copilot eval --calibrate` does it",
                    request_model=CalibrationRequest,
                    response_model=CalibrationResult,
                    auth="admin",
                    tags=admin,
                ),
                Route(
                    "GET",
                    "/admin/copilots/<copilot_id>/analytics",
                    self.analytics,
                    "How the copilot does over a period (?since=7d|24h|<ISO date>, ?until=<ISO "
                    "date>, ?top=10): conversations and their outcomes, engagement, resolution, "
                    "escalation and abandon rates, CSAT, answer feedback, hand-off times, the "
                    "top unanswered questions grouped by meaning, the documents most cited and "
                    "most down-voted (definitions: docs/analytics.md)",
                    response_model=AnalyticsReport,
                    auth="admin",
                    tags=admin,
                    query=(
                        ("since", "Start: 7d, 24h or an ISO date/time (default 7d)."),
                        ("until", "End: an ISO date/time (default now)."),
                        ("top", "Rows of the top lists, 1-100 (default 10)."),
                    ),
                ),
                Route(
                    "GET",
                    "/admin/copilots/<copilot_id>/transcripts",
                    self.transcripts,
                    "The conversations started in a period, PII redacted, for review: JSON "
                    "lines (a conversation a line) or CSV (a message a row)",
                    auth="admin",
                    tags=admin,
                    download=tuple(TRANSCRIPT_MEDIA_TYPES.values()),
                    query=(
                        ("since", "Start: 7d, 24h or an ISO date/time (default 7d)."),
                        ("until", "End: an ISO date/time (default now)."),
                        ("format", "jsonl (default) or csv."),
                    ),
                ),
                *directline.routes(),
            ],
            cors=directline.cors(self.allowed_origins),
            function="chat",
        )
