"""Direct Line 3.0 over the chat API, in polling mode: what botframework-directlinejs (and so
botframework-webchat, ``createDirectLine({ token, domain, webSocket: false })``) calls.

A page gets a token from its copilot's public endpoint (as Copilot Studio's token endpoint)
which starts a conversation; the token is that conversation's token with its id in front, so
the Direct Line calls that name no conversation (start, refresh) know which one it is. Every
call maps onto the conversation service: a posted message is a customer turn (its
clientActivityID the idempotency key), activities are the messages after the watermark (the
last ``seq`` seen), fetched as a long-poll. See docs/directline.md.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from copilot.conversation.models import MAX_WAIT_SECONDS, StartConversationRequest
from copilot.entrypoints.http import directline_activities as mapping
from copilot.entrypoints.http.directline_models import (
    ActivitySet,
    DirectLineConversation,
    DirectLineToken,
    IncomingActivity,
    ResourceResponse,
    StartConversationBody,
)
from copilot.entrypoints.http.router import ANY_ORIGIN, Call, CorsPolicy, Route
from copilot.errors import BadRequestError, CopilotError, NotFoundError, OriginNotAllowedError
from copilot.observability import bind
from copilot.schema import MAX_MESSAGE_CHARS, ErrorResponse, new_id

if TYPE_CHECKING:
    from copilot.admin.origins import CopilotOrigins
    from copilot.conversation.limits import ChatLimits
    from copilot.conversation.service import ConversationService

PREFIX = "/v3/directline"
# Direct Line's own token lifetime, which directlinejs assumes (it refreshes every 15 min).
# Our token lives as long as the conversation; a refresh returns it unchanged.
EXPIRES_IN = 3600
# A GET activities waits this long for something new (a long-poll; docs/realtime.md):
# under directlinejs's 20 s request timeout, and a poll per message instead of one per second.
POLL_WAIT_SECONDS = 10
PAGE = 100
CLIENT_KEY_PREFIX = "directline:"  # + clientActivityID = the post's idempotency key (>= 16)
# The query of GET .../activities, for the OpenAPI document.
ACTIVITIES_QUERY: list[dict[str, Any]] = [
    {
        "name": "watermark",
        "in": "query",
        "description": "The watermark of the last answer (none: from the start).",
        "schema": {"type": "string", "pattern": "^[0-9]*$"},
    },
    {
        "name": "wait",
        "in": "query",
        "description": "Long-poll: wait up to this many seconds for an activity (not in "
        "Direct Line; directlinejs never sends it).",
        "schema": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_WAIT_SECONDS,
            "default": POLL_WAIT_SECONDS,
        },
    },
]


class DirectLineRoutes:
    def __init__(
        self,
        chat: Callable[[], ConversationService],
        limits: Callable[[], ChatLimits | None],
        origins: Callable[[], CopilotOrigins | None],
        client: Callable[[Call], str],
    ) -> None:
        self._chat = chat
        self._limits = limits
        self._origins = origins
        self._client = client  # the caller's address (rate limits)

    # --- CORS ---------------------------------------------------------------------------

    def cors(self, fallback: CorsPolicy) -> CorsPolicy:
        """The chat API's CORS policy with the Direct Line routes that name no conversation in
        their path (start, token refresh): their preflight cannot know the copilot, so any
        origin passes it, and the request itself is decided by its token's conversation."""

        def policy(call: Call) -> Collection[str]:
            path = call.request.path
            if not path.startswith(PREFIX + "/") or "conversation_id" in call.params:
                return fallback(call)
            if call.request.method == "OPTIONS":
                return (ANY_ORIGIN,)
            return self._origins_of_token(call)

        return policy

    def _origins_of_token(self, call: Call) -> Collection[str]:
        origins = self._origins()
        try:
            conversation_id, _ = mapping.split_token(call.bearer_token())
        except CopilotError:
            return ()  # no token: no page may read the answer (a 401)
        return origins.of_conversation(conversation_id) if origins is not None else ()

    def _check_origin(self, call: Call, conversation_id: str) -> None:
        """A browser page from an origin the copilot does not allow is refused (403) here,
        on the request itself: on the routes above its preflight could not be, and a simple
        request (a POST without a JSON body) has none."""
        self._refuse_origin(call, lambda origins: origins.of_conversation(conversation_id))

    def _refuse_origin(
        self, call: Call, allowed_of: Callable[[CopilotOrigins], Collection[str]]
    ) -> None:
        sent = call.request.headers.get("Origin")
        if not sent:
            return  # not a browser page: nothing to look up
        origins = self._origins()
        allowed = allowed_of(origins) if origins is not None else ()
        if sent.strip().lower() not in allowed and ANY_ORIGIN not in allowed:
            raise OriginNotAllowedError.of(sent)

    # --- handlers -----------------------------------------------------------------------

    def _conversation(self, call: Call) -> tuple[str, str]:
        """The call's (conversation_id, conversation token), authorized: the token's
        conversation must be the one in the path (if any) and exist."""
        conversation_id, token = mapping.split_token(call.bearer_token())
        named = call.params.get("conversation_id")
        if named is not None and named != conversation_id:
            raise NotFoundError("no such conversation for this token")
        bind(conversation_id=conversation_id)
        self._check_origin(call, conversation_id)
        self._chat().authorize(conversation_id, token)
        return conversation_id, token

    def directline_copilot_token(self, call: Call) -> DirectLineToken:
        assert isinstance(call.body, StartConversationRequest)
        copilot_id = call.params["copilot_id"]  # a page's origin: checked by the router (a write)
        if limits := self._limits():
            limits.start(copilot_id, self._client(call))
        started = self._chat().start(copilot_id, call.body)
        bind(conversation_id=started.conversation_id)
        return DirectLineToken(
            conversation_id=started.conversation_id,
            token=mapping.directline_token(started.conversation_id, started.token),
            expires_in=EXPIRES_IN,
        )

    def directline_generate(self, call: Call) -> ErrorResponse:
        raise BadRequestError(
            "this service has no Direct Line secrets: get a token for a copilot from "
            "POST /copilots/{copilot_id}/directline/tokens/generate"
        )

    def directline_refresh(self, call: Call) -> DirectLineToken:
        conversation_id, _ = self._conversation(call)
        return DirectLineToken(
            conversation_id=conversation_id, token=call.bearer_token() or "", expires_in=EXPIRES_IN
        )

    def directline_start(self, call: Call) -> DirectLineConversation:
        conversation_id, _ = self._conversation(call)
        return self._conversation_of(call, conversation_id)

    def directline_reconnect(self, call: Call) -> DirectLineConversation:
        conversation_id, _ = self._conversation(call)
        return self._conversation_of(call, conversation_id)

    def _conversation_of(self, call: Call, conversation_id: str) -> DirectLineConversation:
        return DirectLineConversation(
            conversation_id=conversation_id, token=call.bearer_token() or "", expires_in=EXPIRES_IN
        )

    def directline_post_activity(self, call: Call) -> ResourceResponse:
        assert isinstance(call.body, IncomingActivity)
        activity = call.body
        conversation_id, token = mapping.split_token(call.bearer_token())
        if conversation_id != call.params["conversation_id"]:
            raise NotFoundError("no such conversation for this token")
        if activity.type != "message":
            # Typing, events, conversation updates: nothing the copilot acts on. Accepted (a
            # client may send them) and not stored, so never echoed.
            self._chat().authorize(conversation_id, token)
            return ResourceResponse(id=f"{conversation_id}|ignored-{new_id()[:12]}")
        text = _message_text(activity)
        client_id = _client_activity_id(activity)
        limits = self._limits()
        gate = limits.begin_post(conversation_id, token, self._client(call)) if limits else None
        done = self._chat().post_once(
            conversation_id,
            token,
            text,
            CLIENT_KEY_PREFIX + client_id if client_id else None,
            gate,
            client_activity_id=client_id,
        )
        customer = next(m for m in done.response.messages if m.role == "customer")
        return ResourceResponse(id=mapping.activity_id(conversation_id, customer.seq))

    def directline_get_activities(self, call: Call) -> ActivitySet:
        conversation_id, token = mapping.split_token(call.bearer_token())
        if conversation_id != call.params["conversation_id"]:
            raise NotFoundError("no such conversation for this token")
        self._check_origin(call, conversation_id)
        raw = call.request.args.get("watermark", "").strip()
        if raw and not raw.isdigit():
            raise BadRequestError("'watermark' must be the watermark of an earlier answer")
        after = int(raw) if raw else 0
        wait = call.query_int("wait", POLL_WAIT_SECONDS, 0, MAX_WAIT_SECONDS)
        if limits := self._limits():
            limits.poll(conversation_id, token)
        page = self._chat().messages(conversation_id, token, after, PAGE, wait)
        last = page.messages[-1].seq if page.messages else after
        return ActivitySet(
            activities=mapping.activities(conversation_id, page.messages), watermark=str(last)
        )

    # --- routes -------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        tags = ["directline"]
        conv = PREFIX + "/conversations/<conversation_id>"
        return [
            Route(
                "POST",
                "/copilots/<copilot_id>/directline/tokens/generate",
                self.directline_copilot_token,
                "Direct Line: start a conversation with the copilot and get its token (public, "
                "for web pages; as Copilot Studio's token endpoint)",
                request_model=StartConversationRequest,
                response_model=DirectLineToken,
                tags=tags,
                body_optional=True,
                rate_limited=True,
            ),
            Route(
                "POST",
                PREFIX + "/tokens/generate",
                self.directline_generate,
                "Direct Line's secret-based token endpoint is not offered (no Direct Line "
                "secrets): always a 400 naming the per-copilot token endpoint",
                response_model=ErrorResponse,
                status=400,
                tags=tags,
            ),
            Route(
                "POST",
                PREFIX + "/tokens/refresh",
                self.directline_refresh,
                "Direct Line: refresh a token (the same token, valid as long as the conversation)",
                response_model=DirectLineToken,
                auth="conversation",
                tags=tags,
            ),
            Route(
                "POST",
                PREFIX + "/conversations",
                self.directline_start,
                "Direct Line: start the token's conversation (polling only: no streamUrl)",
                request_model=StartConversationBody,
                response_model=DirectLineConversation,
                status=201,
                auth="conversation",
                tags=tags,
                body_optional=True,
            ),
            Route(
                "GET",
                conv,
                self.directline_reconnect,
                "Direct Line: reconnect to the conversation",
                response_model=DirectLineConversation,
                auth="conversation",
                tags=tags,
            ),
            Route(
                "POST",
                conv + "/activities",
                self.directline_post_activity,
                "Direct Line: send an activity (a message is a customer turn; other types "
                "are accepted and ignored)",
                request_model=IncomingActivity,
                response_model=ResourceResponse,
                auth="conversation",
                tags=tags,
                timing="turn",
                rate_limited=True,
            ),
            Route(
                "GET",
                conv + "/activities",
                self.directline_get_activities,
                "Direct Line: activities after ?watermark= (waits up to "
                f"{POLL_WAIT_SECONDS} s for one)",
                response_model=ActivitySet,
                auth="conversation",
                tags=tags,
                rate_limited=True,
            ),
        ]


def _message_text(activity: IncomingActivity) -> str:
    if activity.attachments:
        raise BadRequestError("attachments are not supported: send text", field="attachments")
    text = activity.text or ""
    if not text.strip():
        raise BadRequestError("a message activity needs text", field="text")
    if len(text) > MAX_MESSAGE_CHARS:
        raise BadRequestError(f"text: at most {MAX_MESSAGE_CHARS} characters", field="text")
    return text


def _client_activity_id(activity: IncomingActivity) -> str | None:
    value = (activity.channel_data or {}).get("clientActivityID")
    if value is None:
        return None
    if not isinstance(value, str) or not mapping.CLIENT_ACTIVITY_ID.fullmatch(value):
        raise BadRequestError(
            "channelData.clientActivityID: letters, digits and _.:- (1 to 100)",
            field="channelData.clientActivityID",
        )
    return value
