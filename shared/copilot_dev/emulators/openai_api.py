"""An OpenAI-compatible model server on loopback: embeddings and chat completions.

The wire shapes are OpenAI's (which Ollama, vLLM, LiteLLM and Azure-compatible gateways copy), so
the real ``openai`` SDK and ``langchain_openai`` talk to it unchanged::

    with OpenAiEmulator() as llm:
        chat = ChatOpenAI(model="gpt-4o-mini", base_url=llm.base_url, api_key=llm.api_key)

* ``POST /v1/embeddings``: ``input`` is a string or a list of strings (or token arrays);
  ``dimensions`` shortens ``text-embedding-3-*`` vectors; ``encoding_format`` ``float`` (the
  wire default) or ``base64`` (little-endian float32, what the ``openai`` SDK asks for) ->
  ``{"object": "list", "data": [{"object": "embedding", "index": i, "embedding": ...}],
  "model", "usage": {"prompt_tokens", "total_tokens"}}``.
* ``POST /v1/chat/completions``: a ``chat.completion``, or with ``"stream": true`` server-sent
  ``chat.completion.chunk`` events ending in ``data: [DONE]`` (plus a usage chunk with
  ``stream_options.include_usage``). ``max_tokens``/``max_completion_tokens`` cut the reply
  (``finish_reason: "length"``).
* ``GET /v1/models``.
* ``Authorization: Bearer <api_key>``; otherwise 401 with OpenAI's error body. Unknown models
  -> 404 ``model_not_found``.

Embeddings are deterministic (:func:`hashed_embedding`, a hashed bag of words), so texts that
share words are closer and tests can assert a ranking. Chat replies are scripted: by default
:func:`default_reply` echoes the numbered sources (``[1]``) found in the prompt and the last user
question; set ``responder`` to a ``(system, messages) -> str`` function for a specific answer.
Every chat request is kept, normalised, in ``chats`` (``last_chat``), every embedding request in
``embedding_requests``, and every HTTP exchange in ``requests``.

Failure switches: ``fail_with`` (500, 503 or 429 for every model call), ``delay`` (seconds
before answering) and ``stream_delay`` (seconds between streamed chunks).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Self

from werkzeug.wrappers import Request, Response

from copilot_dev.emulators import LoopbackServer, RecordedRequest, json_response

# --- shared by the model emulators (copilot_dev.emulators.bedrock imports these) -----------------

Responder = Callable[[str, list[dict[str, str]]], str]
"""``(system prompt, [{"role": "user"|"assistant", "content": text}, ...]) -> reply``."""

_WORD = re.compile(r"[a-z0-9]+")
_SOURCE = re.compile(r"\[(\d{1,3})\]")
_TOKEN = re.compile(r"\S+\s*")
_STOPWORDS = frozenset(
    _WORD.findall(
        "a an and are as at be by can do does for from how i in is it my "
        "of on or the this to was what when where which who why will with you your"
    )
)


def _words(text: str) -> list[str]:
    words = []
    for word in _WORD.findall(text.lower()):
        if word in _STOPWORDS:
            continue
        if len(word) > 4 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]  # a crude stemmer: "passwords" and "password" share a feature
        words.append(word)
    return words


def hashed_embedding(text: str, dim: int, *, normalize: bool = True) -> list[float]:
    """A deterministic bag-of-words vector: each word adds +-1 at a hashed position.

    Texts that share words get a higher cosine similarity; identical texts identical vectors.
    A text without words gets a fixed unit vector (never a zero vector).
    """
    vector = [0.0] * dim
    for word in _words(text):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % dim
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0.0:
        vector[0] = norm = 1.0
    return [v / norm for v in vector] if normalize else vector


def count_tokens(text: str) -> int:
    """The emulators' token count: whitespace-separated pieces (at least 1 for any text)."""
    return max(1, len(text.split())) if text else 0


def cited_sources(text: str) -> list[str]:
    """``"see [2] and [1], [2]"`` -> ``["[1]", "[2]"]``."""
    return [f"[{n}]" for n in sorted({int(m) for m in _SOURCE.findall(text)})]


def default_reply(system: str, messages: list[dict[str, str]]) -> str:
    """The scripted answer: which numbered sources the prompt offered, and the question."""
    question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    prompt = "\n".join([system, *(m["content"] for m in messages if m["role"] == "user")])
    sources = cited_sources(prompt)
    question = " ".join(question.split())
    if sources:
        return f"Answer from {' '.join(sources)} to: {question}"
    return f"No sources were given for: {question}"


def split_reply(reply: str, max_tokens: int | None) -> tuple[list[str], bool]:
    """The reply as streamable tokens, cut at ``max_tokens``; and whether it was cut."""
    tokens = _TOKEN.findall(reply)
    if max_tokens is not None and len(tokens) > max_tokens:
        return tokens[:max_tokens], True
    return tokens, False


@dataclass(frozen=True)
class ChatRequest:
    """One chat call as the emulator understood it, in a provider-neutral shape."""

    model: str
    system: str  # all system text, joined with blank lines
    messages: list[dict[str, str]]  # user/assistant turns, text only
    temperature: float | None
    max_tokens: int | None
    stream: bool
    body: dict[str, Any] = field(repr=False)  # the request JSON as received

    @property
    def prompt(self) -> str:
        """System and user text together: what the model was shown."""
        return "\n".join([self.system, *(m["content"] for m in self.messages)])


class ModelEmulator(LoopbackServer):
    """What the OpenAI and Bedrock emulators share: scripting, recording, failure switches."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.responder: Responder = default_reply
        self.fail_with: int | None = None  # answer every model call with this status
        self.delay: float = 0.0  # seconds to wait before answering a model call
        self.stream_delay: float = 0.0  # seconds to wait between streamed chunks
        self.requests: list[RecordedRequest] = []
        self.chats: list[ChatRequest] = []
        self.embedding_requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    @property
    def last_chat(self) -> ChatRequest:
        if not self.chats:
            raise AssertionError("the emulator received no chat request")
        return self.chats[-1]

    def reset(self) -> None:
        """Forget recorded requests and restore the default behaviour."""
        with self._lock:
            self.requests.clear()
            self.chats.clear()
            self.embedding_requests.clear()
        self.responder = default_reply
        self.fail_with = None
        self.delay = self.stream_delay = 0.0

    def start(self) -> Self:
        self._stopping.clear()
        return super().start()

    def stop(self) -> None:
        self._stopping.set()  # wake handlers sleeping on ``delay``
        super().stop()

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _record(self, request: Request, status: int) -> None:
        record = RecordedRequest.of(request, status)
        with self._lock:
            self.requests.append(record)

    def _reply(self, chat: ChatRequest) -> tuple[list[str], bool]:
        """Record the chat and script its reply: the tokens and whether max_tokens cut it."""
        self._remember_chat(chat)
        return split_reply(self.responder(chat.system, chat.messages), chat.max_tokens)

    def _remember_chat(self, chat: ChatRequest) -> None:
        with self._lock:
            self.chats.append(chat)

    def _remember_embedding(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.embedding_requests.append(body)


# --- the OpenAI-compatible server ------------------------------------------------------------

EMBEDDING_MODELS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
CHAT_MODELS = frozenset({"gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1"})
MAX_EMBEDDING_INPUTS = 2048

_FAILURES = {
    429: (
        "Rate limit reached for requests. Please try again in 1s.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


class OpenAiApiError(Exception):
    def __init__(
        self, status: int, message: str, type_: str, code: str | None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _invalid(message: str, param: str | None = None) -> OpenAiApiError:
    return OpenAiApiError(400, message, "invalid_request_error", None, param)


class OpenAiEmulator(ModelEmulator):
    def __init__(
        self,
        *,
        api_key: str = "sk-emulator-0123456789",
        embedding_models: dict[str, int] | None = None,
        chat_models: set[str] | frozenset[str] | None = CHAT_MODELS,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """``chat_models=None`` accepts any chat model name (like a gateway would)."""
        super().__init__(host, port)
        self.api_key = api_key
        self.embedding_models = dict(
            EMBEDDING_MODELS if embedding_models is None else embedding_models
        )
        self.chat_models = None if chat_models is None else frozenset(chat_models)
        self._ids = 0

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as ``base_url``."""
        return f"{self.url}/v1"

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            response = self._answer(request)
        except OpenAiApiError as e:
            response = json_response(e.body, e.status)
        self._record(request, response.status_code)
        return response(environ, start_response)

    def _answer(self, request: Request) -> Response:
        routes: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("POST", "/v1/embeddings"): self._embeddings,
            ("POST", "/v1/chat/completions"): self._chat,
            ("GET", "/v1/models"): self._models,
        }
        handler = routes.get((request.method, request.path.rstrip("/")))
        if handler is None:
            raise OpenAiApiError(
                404,
                f"Invalid URL ({request.method} {request.path})",
                "invalid_request_error",
                None,
            )
        self._authenticate(request)
        if handler is not self._models:
            self._sleep(self.delay)
            if self.fail_with is not None:
                status = self.fail_with
                message, type_, code = _FAILURES.get(status, _FAILURES[500])
                raise OpenAiApiError(status, message, type_, code)
        return handler(request)

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[7:].strip():
            raise OpenAiApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                "invalid_request_error",
                None,
            )
        key = header[7:].strip()
        if key != self.api_key:
            masked = f"{key[:3]}***{key[-4:]}" if len(key) > 8 else "***"
            raise OpenAiApiError(
                401,
                f"Incorrect API key provided: {masked}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            )

    def _body(self, request: Request) -> dict[str, Any]:
        try:
            body = json.loads(request.get_data(as_text=True) or "null")
        except json.JSONDecodeError as e:
            raise _invalid(f"We could not parse the JSON body of your request. ({e})") from e
        if not isinstance(body, dict):
            raise _invalid("The request body must be a JSON object.")
        return body

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            self._ids += 1
            return f"{prefix}-emu{self._ids:06d}"

    # --- GET /v1/models -----------------------------------------------------------------------

    def _models(self, request: Request) -> Response:
        names = sorted(self.embedding_models) + sorted(self.chat_models or ())
        data = [
            {"id": n, "object": "model", "created": 1700000000, "owned_by": "emulator"}
            for n in names
        ]
        return json_response({"object": "list", "data": data}, 200)

    # --- POST /v1/embeddings ------------------------------------------------------------------

    def _embeddings(self, request: Request) -> Response:
        body = self._body(request)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _invalid("you must provide a model parameter", "model")
        if model not in self.embedding_models:
            raise OpenAiApiError(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            )
        texts = _embedding_inputs(body.get("input"))
        dim = self.embedding_models[model]
        if body.get("dimensions") is not None:
            dims = body["dimensions"]
            if not model.startswith("text-embedding-3"):
                raise _invalid("This model does not support specifying dimensions.", "dimensions")
            if not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= dim:
                raise _invalid(f"Invalid 'dimensions': must be between 1 and {dim}.", "dimensions")
            dim = dims
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise _invalid(
                f"Invalid value for 'encoding_format': '{encoding}'. Supported values are: "
                "'float' and 'base64'.",
                "encoding_format",
            )
        self._remember_embedding(body)
        data = []
        for i, text in enumerate(texts):
            vector = hashed_embedding(text, dim)
            encoded: Any = vector
            if encoding == "base64":
                encoded = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        tokens = sum(count_tokens(t) for t in texts)
        return json_response(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            200,
        )

    # --- POST /v1/chat/completions ------------------------------------------------------------

    def _chat(self, request: Request) -> Response:
        body = self._body(request)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _invalid("you must provide a model parameter", "model")
        if self.chat_models is not None and model not in self.chat_models:
            raise OpenAiApiError(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            )
        system, messages = _chat_messages(body.get("messages"))
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise _invalid("Invalid 'max_tokens': integer below minimum value.", "max_tokens")
        temperature = body.get("temperature")
        if temperature is not None and not (
            isinstance(temperature, int | float) and 0 <= temperature <= 2
        ):
            raise _invalid("Invalid 'temperature': must be between 0 and 2.", "temperature")
        if body.get("n", 1) != 1:
            raise _invalid("The emulator only answers n=1.", "n")
        stream = bool(body.get("stream", False))
        chat = ChatRequest(model, system, messages, temperature, max_tokens, stream, body)
        tokens, cut = self._reply(chat)
        usage = {
            "prompt_tokens": count_tokens(chat.prompt),
            "completion_tokens": len(tokens),
            "total_tokens": count_tokens(chat.prompt) + len(tokens),
        }
        finish = "length" if cut else "stop"
        completion_id = self._next_id("chatcmpl")
        created = int(time.time())
        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = self._chunks(
                completion_id, created, model, tokens, finish, usage, include_usage
            )
            return Response(
                events,
                status=200,
                content_type="text/event-stream; charset=utf-8",
                headers={"Cache-Control": "no-cache", "x-request-id": completion_id},
            )
        return json_response(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_emulator",
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": "".join(tokens),
                            "refusal": None,
                        },
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                ],
                "usage": usage,
            },
            200,
            {"x-request-id": completion_id},
        )

    def _chunks(
        self,
        completion_id: str,
        created: int,
        model: str,
        tokens: list[str],
        finish: str,
        usage: dict[str, int],
        include_usage: bool,
    ) -> Iterator[bytes]:
        def chunk(delta: dict[str, Any], finish_reason: str | None) -> bytes:
            payload: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_emulator",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                ],
            }
            if include_usage:
                payload["usage"] = None
            return _sse(payload)

        yield chunk({"role": "assistant", "content": "", "refusal": None}, None)
        for token in tokens:
            self._sleep(self.stream_delay)
            yield chunk({"content": token}, None)
        yield chunk({}, finish)
        if include_usage:
            yield _sse(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "fp_emulator",
                    "choices": [],
                    "usage": usage,
                }
            )
        yield b"data: [DONE]\n\n"


def _embedding_inputs(value: Any) -> list[str]:
    """OpenAI's ``input``: a string, a list of strings, a token array or a list of them."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            texts = list(value)
        elif all(isinstance(v, int) for v in value):
            texts = [" ".join(f"t{v}" for v in value)]
        elif all(isinstance(v, list) and all(isinstance(t, int) for t in v) for v in value):
            texts = [" ".join(f"t{t}" for t in v) for v in value]
        else:
            raise _invalid("'input' must be a string, a list of strings or token arrays.", "input")
        if len(texts) > MAX_EMBEDDING_INPUTS:
            raise _invalid(f"'input' must have at most {MAX_EMBEDDING_INPUTS} elements.", "input")
        return texts
    raise _invalid("'input' must be a non-empty string or array.", "input")


def _text_content(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif not isinstance(part, dict) or "type" not in part:
                raise _invalid("Invalid content part.", "messages")
        return "".join(parts)
    raise _invalid("Invalid type for 'content'.", "messages")


def _chat_messages(value: Any) -> tuple[str, list[dict[str, str]]]:
    if not isinstance(value, list) or not value:
        raise _invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.", "messages"
        )
    system: list[str] = []
    messages: list[dict[str, str]] = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or "role" not in message:
            raise _invalid(
                f"Missing required parameter: 'messages[{i}].role'.", f"messages[{i}].role"
            )
        role = message["role"]
        text = _text_content(message.get("content"))
        if role in ("system", "developer"):
            system.append(text)
        elif role in ("user", "assistant", "tool"):
            messages.append({"role": "user" if role == "tool" else role, "content": text})
        else:
            raise _invalid(
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                "'user', 'tool', and 'developer'.",
                f"messages[{i}].role",
            )
    return "\n\n".join(system), messages


def _sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible emulator on loopback")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="sk-emulator-0123456789")
    parser.add_argument("--any-model", action="store_true", help="accept any chat model name")
    args = parser.parse_args(argv)
    emulator = OpenAiEmulator(
        api_key=args.api_key,
        chat_models=None if args.any_model else CHAT_MODELS,
        host=args.host,
        port=args.port,
    ).start()
    print(f"OpenAI-compatible emulator on {emulator.base_url} (api key {args.api_key})", flush=True)
    emulator.serve_until_interrupted()


__all__ = [
    "CHAT_MODELS",
    "EMBEDDING_MODELS",
    "ChatRequest",
    "ModelEmulator",
    "OpenAiEmulator",
    "Responder",
    "cited_sources",
    "count_tokens",
    "default_reply",
    "hashed_embedding",
    "split_reply",
]

if __name__ == "__main__":
    main()
