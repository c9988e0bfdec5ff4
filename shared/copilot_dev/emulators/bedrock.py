"""Amazon Bedrock Runtime on loopback: Titan text embeddings and the Converse API.

boto3's ``bedrock-runtime`` client (and so ``langchain_aws``) talks to it through
``endpoint_url``; the wire is AWS's rest-json protocol:

* ``POST /model/{modelId}/invoke`` for Titan text embeddings. v2
  (``amazon.titan-embed-text-v2:0``): ``{"inputText", "dimensions"?: 256|512|1024,
  "normalize"?: true, "embeddingTypes"?: ["float"]}`` -> ``{"embedding": [...],
  "embeddingsByType": {"float": [...]}, "inputTextTokenCount": n}``; v1
  (``amazon.titan-embed-text-v1``): ``{"inputText"}`` -> 1536 dimensions. Malformed bodies,
  extra keys, an empty or too long ``inputText`` get Bedrock's ``ValidationException``.
* ``POST /model/{modelId}/converse``: ``{"messages": [{"role", "content": [{"text"}]}],
  "system": [{"text"}], "inferenceConfig": {"maxTokens", "temperature", ...}}`` ->
  ``{"output": {"message": ...}, "stopReason", "usage", "metrics"}``. Like Bedrock, the
  conversation must start with a user turn, alternate roles and have no blank text block.
* ``POST /model/{modelId}/converse-stream``: the same answer as an
  ``application/vnd.amazon.eventstream`` (binary AWS event-stream framing with CRCs):
  ``messageStart``, ``contentBlockDelta``..., ``contentBlockStop``, ``messageStop``,
  ``metadata``. ``stream_error = "throttlingException"`` (or ``"modelStreamErrorException"``,
  ...) sends that exception event after the first delta instead of finishing.

Requests must be SigV4-signed (``Authorization: AWS4-HMAC-SHA256 Credential=...`` scoped to the
emulator's region and the ``bedrock`` service, with ``X-Amz-Date``); otherwise 403 like AWS
(``{"message": "Missing Authentication Token"}``). The signature itself is not verified.
Errors carry ``x-amzn-ErrorType`` and ``{"message": ...}``: unknown models ->
``ResourceNotFoundException`` (404); ``fail_with`` 503/429/500/424/408 ->
``ServiceUnavailableException``/``ThrottlingException``/``InternalServerException``/
``ModelErrorException``/``ModelTimeoutException``.

Model ids may be plain, cross-region inference profiles (``us.anthropic...``) or foundation
model ARNs. Embeddings, scripting (``responder``), recording (``chats``, ``last_chat``,
``embedding_requests``, ``requests``) and ``delay``/``stream_delay`` work as in
:mod:`copilot_dev.emulators.openai_api`.
"""

from __future__ import annotations

import argparse
import binascii
import json
import re
import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any

from werkzeug.wrappers import Request, Response

from copilot_dev.emulators.openai_api import (
    ChatRequest,
    ModelEmulator,
    count_tokens,
    hashed_embedding,
)

TITAN_V2 = "amazon.titan-embed-text-v2:0"
TITAN_V1 = "amazon.titan-embed-text-v1"
EMBEDDING_MODELS = {TITAN_V2: 1024, TITAN_V1: 1536}
TITAN_V2_DIMENSIONS = (256, 512, 1024)
TITAN_MAX_CHARS = 50_000
CHAT_MODELS = frozenset(
    {
        "anthropic.claude-3-haiku-20240307-v1:0",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "amazon.nova-lite-v1:0",
        "amazon.nova-micro-v1:0",
        "meta.llama3-8b-instruct-v1:0",
        "mistral.mistral-small-2402-v1:0",
    }
)

_PATH = re.compile(r"^/model/(?P<model>.+)/(?P<op>invoke|converse|converse-stream)$")
_CREDENTIAL = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/\s]+)/(?P<date>\d{8})/(?P<region>[^/\s]+)/"
    r"(?P<service>[^/\s]+)/aws4_request,\s*SignedHeaders=(?P<signed>[^,\s]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)
_INFERENCE_PROFILE = re.compile(r"^(?:us|eu|apac|us-gov|global)\.(?P<model>.+)$")
_FOUNDATION_ARN = re.compile(r"^arn:aws[a-z-]*:bedrock:[^:]*:\d*:foundation-model/(?P<model>.+)$")
_FAILURES = {
    400: ("ValidationException", "The emulator was told to reject this request."),
    408: ("ModelTimeoutException", "Model has timed out in processing the request."),
    424: ("ModelErrorException", "The model returned an error."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The server encountered an internal error."),
    503: ("ServiceUnavailableException", "Bedrock is unable to process your request."),
}
_STREAM_ERRORS = {
    "throttlingException": "Too many requests, please wait before trying again.",
    "modelStreamErrorException": "The model stream was interrupted.",
    "internalServerException": "The server encountered an internal error.",
    "serviceUnavailableException": "Bedrock is unable to process your request.",
    "validationException": "Input is too long for requested model.",
}
_ERROR_NAMESPACE = ":http://internal.amazon.com/coral/com.amazon.bedrock/"


class AwsError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _validation(message: str) -> AwsError:
    return AwsError(400, "ValidationException", message)


def _malformed(detail: str) -> AwsError:
    return _validation(
        f"Malformed input request: {detail}, please reformat your input and try again."
    )


class BedrockEmulator(ModelEmulator):
    def __init__(
        self,
        *,
        region: str = "us-east-1",
        embedding_models: dict[str, int] | None = None,
        chat_models: set[str] | frozenset[str] = CHAT_MODELS,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.region = region
        self.embedding_models = dict(
            EMBEDDING_MODELS if embedding_models is None else embedding_models
        )
        self.chat_models = frozenset(chat_models)
        # Sent as an exception event after the first streamed delta, e.g. "throttlingException".
        self.stream_error: str | None = None

    def reset(self) -> None:
        super().reset()
        self.stream_error = None

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        request_id = str(uuid.uuid4())
        try:
            response = self._answer(request)
        except AwsError as e:
            response = _error(e.status, e.code, e.message)
        response.headers["x-amzn-RequestId"] = request_id
        self._record(request, response.status_code)
        return response(environ, start_response)

    def _answer(self, request: Request) -> Response:
        self._authenticate(request)
        match = _PATH.match(request.path)
        if request.method != "POST" or match is None:
            raise AwsError(
                404, "UnknownOperationException", "The requested operation is not recognized."
            )
        model = self._model(match["model"])
        self._sleep(self.delay)
        if self.fail_with is not None:
            code, message = _FAILURES.get(self.fail_with, _FAILURES[500])
            raise AwsError(self.fail_with, code, message)
        body = _json_body(request)
        op = match["op"]
        if op == "invoke":
            return self._invoke(model, body)
        return self._converse(model, body, stream=op == "converse-stream")

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("AWS4-HMAC-SHA256 Credential="):
            raise AwsError(
                403, "MissingAuthenticationTokenException", "Missing Authentication Token"
            )
        credential = _CREDENTIAL.match(header)
        if credential is None:
            raise AwsError(
                403,
                "IncompleteSignatureException",
                "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'.",
            )
        if not request.headers.get("X-Amz-Date"):
            raise AwsError(
                403,
                "IncompleteSignatureException",
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
            )
        if credential["service"] != "bedrock":
            raise AwsError(
                403,
                "InvalidSignatureException",
                "Credential should be scoped to correct service: 'bedrock'.",
            )
        if credential["region"] != self.region:
            raise AwsError(
                403,
                "InvalidSignatureException",
                f"Credential should be scoped to a valid region, not '{credential['region']}'.",
            )

    def _model(self, model_id: str) -> str:
        """The foundation model behind a model id, inference profile id or model ARN."""
        name = model_id
        if m := _FOUNDATION_ARN.match(name):
            name = m["model"]
        if name not in self.embedding_models and name not in self.chat_models:
            if (m := _INFERENCE_PROFILE.match(name)) and m["model"] in self.chat_models:
                return m["model"]
            raise AwsError(
                404,
                "ResourceNotFoundException",
                "Could not resolve the foundation model from the provided model identifier.",
            )
        return name

    # --- InvokeModel: Titan text embeddings ---------------------------------------------------

    def _invoke(self, model: str, body: dict[str, Any]) -> Response:
        if model not in self.embedding_models:
            raise _validation(
                "The emulator serves InvokeModel for Titan text embeddings only; "
                "use the Converse API for chat models."
            )
        allowed = {"inputText"} | (
            {"dimensions", "normalize", "embeddingTypes"} if model != TITAN_V1 else set()
        )
        extra = sorted(set(body) - allowed)
        if extra:
            raise _malformed(f"#: extraneous key [{extra[0]}] is not permitted")
        text = body.get("inputText")
        if not isinstance(text, str):
            raise _malformed("#: required key [inputText] not found")
        if not text:
            raise _malformed("#/inputText: expected minLength: 1, actual: 0")
        if len(text) > TITAN_MAX_CHARS:
            raise _malformed(
                f"#/inputText: expected maxLength: {TITAN_MAX_CHARS}, actual: {len(text)}"
            )
        dim = self.embedding_models[model]
        if "dimensions" in body:
            if body["dimensions"] not in TITAN_V2_DIMENSIONS or isinstance(
                body["dimensions"], bool
            ):
                raise _malformed(f"#/dimensions: {body['dimensions']} is not a valid enum value")
            dim = body["dimensions"]
        normalize = body.get("normalize", True)
        if not isinstance(normalize, bool):
            raise _malformed("#/normalize: expected type: Boolean")
        types = body.get("embeddingTypes", ["float"])
        if (
            not isinstance(types, list)
            or not types
            or any(t not in ("float", "binary") for t in types)
        ):
            raise _malformed("#/embeddingTypes: expected a non-empty array of 'float', 'binary'")
        self._remember_embedding({"modelId": model, **body})
        vector = hashed_embedding(text, dim, normalize=normalize)
        tokens = count_tokens(text)
        answer: dict[str, Any] = {"inputTextTokenCount": tokens}
        if model == TITAN_V1:
            answer["embedding"] = vector
        else:
            by_type: dict[str, Any] = {}
            if "float" in types:
                by_type["float"] = vector
                answer["embedding"] = vector
            if "binary" in types:
                by_type["binary"] = [1 if v > 0 else 0 for v in vector]
            answer["embeddingsByType"] = by_type
        return Response(
            json.dumps(answer),
            status=200,
            content_type="application/json",
            headers={
                "X-Amzn-Bedrock-Input-Token-Count": str(tokens),
                "X-Amzn-Bedrock-Invocation-Latency": "5",
            },
        )

    # --- Converse / ConverseStream ------------------------------------------------------------

    def _converse(self, model: str, body: dict[str, Any], *, stream: bool) -> Response:
        started = time.monotonic()
        if model not in self.chat_models:
            raise _validation(
                "This action doesn't support the model that you provided. "
                "Try again with a supported text or chat model."
            )
        system, messages = _converse_messages(body)
        config = body.get("inferenceConfig") or {}
        if not isinstance(config, dict):
            raise _validation("inferenceConfig must be an object.")
        max_tokens = config.get("maxTokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise _validation(
                "1 validation error detected: Value at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1"
            )
        temperature = config.get("temperature")
        if temperature is not None and not (
            isinstance(temperature, int | float) and 0 <= temperature <= 1
        ):
            raise _validation(
                "1 validation error detected: Value at 'inferenceConfig.temperature' failed to satisfy constraint: Member must have value less than or equal to 1"
            )
        chat = ChatRequest(model, system, messages, temperature, max_tokens, stream, body)
        tokens, cut = self._reply(chat)
        stop_reason = "max_tokens" if cut else "end_turn"
        input_tokens = count_tokens(chat.prompt)
        usage = {
            "inputTokens": input_tokens,
            "outputTokens": len(tokens),
            "totalTokens": input_tokens + len(tokens),
        }
        if stream:
            return Response(
                self._events(tokens, stop_reason, usage, started),
                status=200,
                content_type="application/vnd.amazon.eventstream",
            )
        latency = int((time.monotonic() - started) * 1000)
        answer = {
            "output": {"message": {"role": "assistant", "content": [{"text": "".join(tokens)}]}},
            "stopReason": stop_reason,
            "usage": usage,
            "metrics": {"latencyMs": latency},
        }
        return Response(json.dumps(answer), status=200, content_type="application/json")

    def _events(
        self, tokens: list[str], stop_reason: str, usage: dict[str, int], started: float
    ) -> Iterator[bytes]:
        stream_error = self.stream_error
        yield event_message("messageStart", {"role": "assistant"})
        for i, token in enumerate(tokens):
            self._sleep(self.stream_delay)
            yield event_message(
                "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": token}}
            )
            if stream_error is not None and i == 0:
                message = _STREAM_ERRORS.get(stream_error, "The model stream failed.")
                yield exception_message(stream_error, message)
                return
        yield event_message("contentBlockStop", {"contentBlockIndex": 0})
        yield event_message("messageStop", {"stopReason": stop_reason})
        latency = int((time.monotonic() - started) * 1000)
        yield event_message("metadata", {"usage": usage, "metrics": {"latencyMs": latency}})


def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.get_data(as_text=True) or "null")
    except json.JSONDecodeError:
        raise _validation(
            "Malformed input request, please reformat your input and try again."
        ) from None
    if not isinstance(body, dict):
        raise _validation("Malformed input request, please reformat your input and try again.")
    return body


def _blocks_text(content: Any, where: str) -> str:
    if not isinstance(content, list) or not content:
        raise _validation(
            f"The content field in the Message object at {where} is empty. Add a ContentBlock object to the content field and try again."
        )
    parts = []
    for j, block in enumerate(content):
        if not isinstance(block, dict) or len(block) != 1:
            raise _validation(
                f"The ContentBlock object at {where}.content.{j} must set exactly one field."
            )
        if "text" in block:
            if not isinstance(block["text"], str) or not block["text"].strip():
                raise _validation(
                    f"The text field in the ContentBlock object at {where}.content.{j} is blank. Add text to the text field, and try again."
                )
            parts.append(block["text"])
    return "".join(parts)


def _converse_messages(body: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    raw = body.get("messages")
    if (
        not isinstance(raw, list)
        or not raw
        or not isinstance(raw[0], dict)
        or raw[0].get("role") != "user"
    ):
        raise _validation(
            "A conversation must start with a user message. Try again with a conversation that starts with a user message."
        )
    messages: list[dict[str, str]] = []
    previous = None
    for i, message in enumerate(raw):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise _validation(
                f"1 validation error detected: Value at 'messages.{i + 1}.member.role' failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]"
            )
        if role == previous:
            raise _validation(
                "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again."
            )
        previous = role
        messages.append(
            {"role": role, "content": _blocks_text(message.get("content"), f"messages.{i}")}
        )
    system_blocks = body.get("system") or []
    if not isinstance(system_blocks, list):
        raise _validation("system must be a list of SystemContentBlock objects.")
    system = []
    for j, block in enumerate(system_blocks):
        if not isinstance(block, dict):
            raise _validation(f"The SystemContentBlock at system.{j} is not an object.")
        if "text" in block:
            if not isinstance(block["text"], str) or not block["text"].strip():
                raise _validation(
                    f"The text field in the SystemContentBlock object at system.{j} is blank. Add text to the text field, and try again."
                )
            system.append(block["text"])
    return "\n\n".join(system), messages


# --- AWS event-stream framing (application/vnd.amazon.eventstream) ----------------------------


def _headers(headers: dict[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        out += struct.pack(">B", len(n)) + n + b"\x07" + struct.pack(">H", len(v)) + v  # 7: string
    return bytes(out)


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total and header lengths, CRC32), headers, payload,
    message CRC32."""
    encoded = _headers(headers)
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message))


def event_message(event_type: str, payload: dict[str, Any]) -> bytes:
    return frame(
        {
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        },
        json.dumps(payload).encode(),
    )


def exception_message(exception_type: str, message: str) -> bytes:
    return frame(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        json.dumps({"message": message}).encode(),
    )


def _error(status: int, code: str, message: str) -> Response:
    return Response(
        json.dumps({"message": message}),
        status=status,
        content_type="application/json",
        headers={"x-amzn-ErrorType": code + _ERROR_NAMESPACE},
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Bedrock Runtime emulator on loopback")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args(argv)
    emulator = BedrockEmulator(region=args.region, host=args.host, port=args.port).start()
    print(
        f"Bedrock Runtime emulator on {emulator.url} (region {args.region}); "
        f"COPILOT_BEDROCK_ENDPOINT_URL={emulator.url}",
        flush=True,
    )
    emulator.serve_until_interrupted()


__all__ = [
    "CHAT_MODELS",
    "EMBEDDING_MODELS",
    "TITAN_V1",
    "TITAN_V2",
    "BedrockEmulator",
    "event_message",
    "exception_message",
    "frame",
]

if __name__ == "__main__":
    main()
