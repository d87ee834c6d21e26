"""Each backend's wire rendering of a `Reply`: JSON bodies, SSE event lists, error bodies.

Written independently from the API references and the official SDKs' response types
(`openai.types.chat.ChatCompletion[Chunk]`, `anthropic.types.Message` and the `Raw*Event`s,
`google.genai.types.GenerateContentResponse`); it never uses the project's `protocol/`.
Streams are returned as lists of complete SSE events (bytes); the server decides how to
pace, split or break them.
"""

from __future__ import annotations

import base64
import json
import random
import time
from typing import Any, Literal

from tests.upstream.reply import (
    FINISH_CONTENT_FILTER,
    FINISH_LENGTH,
    FINISH_STOP,
    FINISH_TOOL_CALLS,
    Reply,
    Usage,
    split_text,
)

Flavor = Literal["openai", "openrouter"]
JSON = dict[str, Any]

DEFAULT_SIGNATURE = base64.b64encode(b"test-upstream-thought-signature").decode()
SYSTEM_FINGERPRINT = "fp_testupstream"
OPENROUTER_PROVIDER = "TestUpstream"
OPENROUTER_REASONING_FORMAT = "anthropic-claude-v1"


def dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_random = random.Random()  # ids need to be unique-looking, not secret


def random_id(length: int = 24) -> str:
    return "".join(_random.choices(_ALPHABET, k=length))


def _has_thinking(reply: Reply) -> bool:
    return reply.thinking is not None or reply.thinking_signature is not None


def _signature(reply: Reply) -> str:
    return reply.thinking_signature or DEFAULT_SIGNATURE


def _args_json(args: dict[str, Any]) -> str:
    return json.dumps(args, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# OpenAI chat completions (and OpenRouter, which speaks the same protocol)
# --------------------------------------------------------------------------------------------

_OPENAI_FINISH = {
    FINISH_STOP: "stop",
    FINISH_LENGTH: "length",
    FINISH_TOOL_CALLS: "tool_calls",
    FINISH_CONTENT_FILTER: "content_filter",
}


def openai_usage(usage: Usage, flavor: Flavor) -> JSON:
    body: JSON = {
        "prompt_tokens": usage.input,
        "completion_tokens": usage.output,
        "total_tokens": usage.input + usage.output,
    }
    if flavor == "openrouter":
        body["cost"] = 0
        body["prompt_tokens_details"] = {"cached_tokens": usage.cached}
        body["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning}
    else:
        body["prompt_tokens_details"] = {"cached_tokens": usage.cached, "audio_tokens": 0}
        body["completion_tokens_details"] = {
            "reasoning_tokens": usage.reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    return body


def _openai_ids(reply: Reply) -> list[str]:
    return [call.id or f"call_{random_id()}" for call in reply.tool_calls]


def _openai_envelope(model: str, flavor: Flavor, obj: str) -> JSON:
    if flavor == "openrouter":
        return {
            "id": f"gen-{int(time.time())}-{random_id(20)}",
            "provider": OPENROUTER_PROVIDER,
            "model": model,
            "object": obj,
            "created": int(time.time()),
        }
    return {
        "id": f"chatcmpl-{random_id(29)}",
        "object": obj,
        "created": int(time.time()),
        "model": model,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def _reasoning_detail(reply: Reply, text: str | None, signature: str | None) -> JSON:
    detail: JSON = {"type": "reasoning.text", "format": OPENROUTER_REASONING_FORMAT, "index": 0}
    if text is not None:
        detail["text"] = text
    if signature is not None:
        detail["signature"] = signature
    return detail


def openai_completion(reply: Reply, model: str, flavor: Flavor) -> JSON:
    text = reply.answer_text
    finish = _OPENAI_FINISH.get(reply.neutral_finish, reply.neutral_finish)
    message: JSON = {
        "role": "assistant",
        "content": text if (text or not reply.tool_calls) else None,
        "refusal": None,
    }
    if flavor == "openai":
        message["annotations"] = []
    if flavor == "openrouter" and _has_thinking(reply):
        message["reasoning"] = reply.thinking or ""
        message["reasoning_details"] = [
            _reasoning_detail(reply, reply.thinking or "", _signature(reply))
        ]
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": _args_json(call.args)},
            }
            for call, call_id in zip(reply.tool_calls, _openai_ids(reply), strict=True)
        ]
    choice: JSON = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    if flavor == "openrouter":
        choice["native_finish_reason"] = finish
    body = _openai_envelope(model, flavor, "chat.completion")
    body["choices"] = [choice]
    if not reply.omit_usage:
        body["usage"] = openai_usage(reply.usage_numbers, flavor)
    return body


def openai_stream(
    reply: Reply,
    model: str,
    flavor: Flavor,
    include_usage: bool,
    include_obfuscation: bool = True,
) -> list[bytes]:
    """The chunk events of one streamed completion, ending with `data: [DONE]`.

    OpenRouter always sends the usage chunk; OpenAI only with `stream_options.include_usage`
    (then every chunk carries `"usage": null` and the last one has `choices: []`). OpenAI pads
    every chunk with a random `obfuscation` string unless `include_obfuscation` is false.
    """
    obfuscate = flavor == "openai" and include_obfuscation

    def emit(body: JSON) -> bytes:
        if obfuscate:
            body["obfuscation"] = random_id(_random.randint(1, 12))
        return b"data: " + dumps(body) + b"\n\n"

    envelope = _openai_envelope(model, flavor, "chat.completion.chunk")
    with_usage = (include_usage or flavor == "openrouter") and not reply.omit_usage
    if with_usage:
        envelope["usage"] = None

    def chunk(delta: JSON, finish: str | None = None) -> bytes:
        choice: JSON = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        if flavor == "openrouter":
            choice["native_finish_reason"] = finish
        return emit({**envelope, "choices": [choice]})

    events: list[bytes] = []
    role_sent = False

    def opening(delta: JSON) -> JSON:
        nonlocal role_sent
        if role_sent:
            return delta
        role_sent = True
        return {"role": "assistant", **delta, "refusal": None}

    if flavor == "openrouter" and _has_thinking(reply):
        for piece in split_text(reply.thinking or "", reply.text_chunks):
            events.append(
                chunk(
                    opening(
                        {
                            "content": "",
                            "reasoning": piece,
                            "reasoning_details": [_reasoning_detail(reply, piece, None)],
                        }
                    )
                )
            )
        events.append(
            chunk(
                opening(
                    {
                        "content": "",
                        "reasoning": "",
                        "reasoning_details": [_reasoning_detail(reply, None, _signature(reply))],
                    }
                )
            )
        )

    text = reply.answer_text
    if text:
        if not role_sent:
            events.append(chunk(opening({"content": ""})))
        for piece in split_text(text, reply.text_chunks):
            events.append(chunk({"content": piece}))

    if reply.tool_calls:
        ids = _openai_ids(reply)
        arguments = [_args_json(call.args) for call in reply.tool_calls]
        fragments = [split_text(args, reply.args_chunks) for args in arguments]

        def header(index: int) -> bytes:
            call = reply.tool_calls[index]
            entry = {
                "index": index,
                "id": ids[index],
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            return chunk(opening({"content": None, "tool_calls": [entry]}))

        def fragment(index: int, piece: str) -> bytes:
            return chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})

        if reply.args_at_end:
            events.extend(header(index) for index in range(len(reply.tool_calls)))
            entries = [
                {"index": index, "function": {"arguments": args}}
                for index, args in enumerate(arguments)
            ]
            events.append(chunk({"tool_calls": entries}))
        elif reply.interleave_tool_args:
            events.extend(header(index) for index in range(len(reply.tool_calls)))
            longest = max(len(pieces) for pieces in fragments)
            for position in range(longest):
                for index, pieces in enumerate(fragments):
                    if position < len(pieces):
                        events.append(fragment(index, pieces[position]))
        else:
            for index, pieces in enumerate(fragments):
                events.append(header(index))
                events.extend(fragment(index, piece) for piece in pieces)

    if not role_sent:
        events.append(chunk(opening({"content": ""})))
    finish = _OPENAI_FINISH.get(reply.neutral_finish, reply.neutral_finish)
    events.append(chunk({}, finish))
    if with_usage:
        usage_chunk = {
            **envelope,
            "choices": [],
            "usage": openai_usage(reply.usage_numbers, flavor),
        }
        events.append(emit(usage_chunk))
    events.append(b"data: [DONE]\n\n")
    return events


def openai_stream_error(message: str, flavor: Flavor, model: str) -> bytes:
    if flavor == "openrouter":
        envelope = _openai_envelope(model, flavor, "chat.completion.chunk")
        envelope["error"] = {"code": 502, "message": message}
        envelope["choices"] = [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]
        return b"data: " + dumps(envelope) + b"\n\n"
    body = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
    return b"data: " + dumps(body) + b"\n\n"


def openai_model(model_id: str, flavor: Flavor) -> JSON:
    if flavor == "openrouter":
        return {
            "id": model_id,
            "canonical_slug": model_id,
            "name": model_id,
            "object": "model",
            "created": 1_700_000_000,
            "owned_by": model_id.split("/", 1)[0],
            "description": "A model of the test upstream.",
            "context_length": 128_000,
            "architecture": {
                "modality": "text->text",
                "input_modalities": ["text"],
                "output_modalities": ["text"],
                "tokenizer": "Other",
            },
            "pricing": {"prompt": "0", "completion": "0"},
            "top_provider": {"context_length": 128_000, "is_moderated": False},
            "supported_parameters": ["tools", "tool_choice", "reasoning", "temperature"],
        }
    return {"id": model_id, "object": "model", "created": 1_700_000_000, "owned_by": "system"}


def openai_models(model_ids: list[str], flavor: Flavor) -> JSON:
    data = [openai_model(model_id, flavor) for model_id in model_ids]
    if flavor == "openrouter":
        return {"data": data}
    return {"object": "list", "data": data}


# --------------------------------------------------------------------------------------------
# Anthropic messages
# --------------------------------------------------------------------------------------------

_ANTHROPIC_STOP = {
    FINISH_STOP: "end_turn",
    FINISH_LENGTH: "max_tokens",
    FINISH_TOOL_CALLS: "tool_use",
    FINISH_CONTENT_FILTER: "refusal",
}


def _anthropic_usage(usage: Usage, first: bool = False) -> JSON:
    return {
        "input_tokens": usage.input - usage.cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached,
        "output_tokens": 1 if first else usage.output,
        "service_tier": "standard",
    }


def _anthropic_ids(reply: Reply) -> list[str]:
    return [call.id or f"toolu_{random_id()}" for call in reply.tool_calls]


def anthropic_message(reply: Reply, model: str) -> JSON:
    content: list[JSON] = []
    if _has_thinking(reply):
        content.append(
            {"type": "thinking", "thinking": reply.thinking or "", "signature": _signature(reply)}
        )
    if reply.answer_text:
        content.append({"type": "text", "text": reply.answer_text})
    for call, call_id in zip(reply.tool_calls, _anthropic_ids(reply), strict=True):
        content.append({"type": "tool_use", "id": call_id, "name": call.name, "input": call.args})
    body: JSON = {
        "id": f"msg_{random_id()}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _ANTHROPIC_STOP.get(reply.neutral_finish, reply.neutral_finish),
        "stop_sequence": None,
    }
    if not reply.omit_usage:
        body["usage"] = _anthropic_usage(reply.usage_numbers)
    return body


def _sse(event: str, data: JSON) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + dumps(data) + b"\n\n"


def anthropic_stream(reply: Reply, model: str) -> list[bytes]:
    """message_start, ping, content blocks (start / deltas / stop), message_delta, message_stop."""
    usage = reply.usage_numbers
    start_message: JSON = {
        "id": f"msg_{random_id()}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if not reply.omit_usage:
        start_message["usage"] = _anthropic_usage(usage, first=True)
    events = [
        _sse("message_start", {"type": "message_start", "message": start_message}),
        _sse("ping", {"type": "ping"}),
    ]
    index = 0

    def block(start: JSON, deltas: list[JSON]) -> None:
        nonlocal index
        events.append(
            _sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        for delta in deltas:
            events.append(
                _sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1

    if _has_thinking(reply):
        deltas: list[JSON] = [
            {"type": "thinking_delta", "thinking": piece}
            for piece in split_text(reply.thinking or "", reply.text_chunks)
        ]
        deltas.append({"type": "signature_delta", "signature": _signature(reply)})
        block({"type": "thinking", "thinking": "", "signature": ""}, deltas)
    if reply.answer_text:
        block(
            {"type": "text", "text": ""},
            [
                {"type": "text_delta", "text": piece}
                for piece in split_text(reply.answer_text, reply.text_chunks)
            ],
        )
    for call, call_id in zip(reply.tool_calls, _anthropic_ids(reply), strict=True):
        pieces = split_text(_args_json(call.args), reply.args_chunks)
        block(
            {"type": "tool_use", "id": call_id, "name": call.name, "input": {}},
            [{"type": "input_json_delta", "partial_json": ""}]
            + [{"type": "input_json_delta", "partial_json": piece} for piece in pieces],
        )
    delta_event: JSON = {
        "type": "message_delta",
        "delta": {
            "stop_reason": _ANTHROPIC_STOP.get(reply.neutral_finish, reply.neutral_finish),
            "stop_sequence": None,
        },
    }
    if not reply.omit_usage:
        final = _anthropic_usage(usage)
        del final["service_tier"]
        delta_event["usage"] = final
    events.append(_sse("message_delta", delta_event))
    events.append(_sse("message_stop", {"type": "message_stop"}))
    return events


def anthropic_stream_error(message: str, error_type: str | None) -> bytes:
    return _sse(
        "error",
        {
            "type": "error",
            "error": {"type": error_type or "overloaded_error", "message": message},
            "request_id": f"req_{random_id()}",
        },
    )


def anthropic_model(model_id: str) -> JSON:
    return {
        "type": "model",
        "id": model_id,
        "display_name": model_id.replace("-", " ").title(),
        "created_at": "2025-01-01T00:00:00Z",
        "lifecycle": "active",
        "max_input_tokens": 200_000,
        "max_tokens": 64_000,
    }


def anthropic_models(model_ids: list[str]) -> JSON:
    return {
        "data": [anthropic_model(model_id) for model_id in model_ids],
        "has_more": False,
        "first_id": model_ids[0] if model_ids else None,
        "last_id": model_ids[-1] if model_ids else None,
    }


# --------------------------------------------------------------------------------------------
# Gemini generateContent
# --------------------------------------------------------------------------------------------

_GEMINI_FINISH = {
    FINISH_STOP: "STOP",
    FINISH_LENGTH: "MAX_TOKENS",
    FINISH_TOOL_CALLS: "STOP",
    FINISH_CONTENT_FILTER: "SAFETY",
}


def gemini_usage(usage: Usage, final: bool = True) -> JSON:
    body: JSON = {"promptTokenCount": usage.input}
    if final:
        body["candidatesTokenCount"] = usage.output - usage.reasoning
        body["totalTokenCount"] = usage.input + usage.output
    else:
        body["totalTokenCount"] = usage.input
    body["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": usage.input}]
    if final and usage.reasoning:
        body["thoughtsTokenCount"] = usage.reasoning
    if usage.cached:
        body["cachedContentTokenCount"] = usage.cached
        body["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": usage.cached}]
    return body


def _gemini_call_part(reply: Reply, index: int) -> JSON:
    call = reply.tool_calls[index]
    function_call: JSON = {"name": call.name, "args": call.args}
    if call.id is not None:
        function_call["id"] = call.id
    return {"functionCall": function_call}


def _gemini_chunks(reply: Reply, stream: bool) -> list[list[JSON]]:
    """The parts of each response (one list when not streaming), signature placed.

    The thought signature goes on the first function call part, else on the last text part
    (an empty text part carries it when there is neither), as the API documents.
    """
    pieces = reply.text_chunks if stream else 1
    chunks: list[list[JSON]] = []
    if reply.thinking:
        chunks.extend(
            [{"text": piece, "thought": True}] for piece in split_text(reply.thinking, pieces)
        )
    text_chunks = [[{"text": piece}] for piece in split_text(reply.answer_text, pieces)]
    chunks.extend(text_chunks)
    calls = [_gemini_call_part(reply, index) for index in range(len(reply.tool_calls))]
    if calls:
        chunks.append(calls)
    if _has_thinking(reply):
        if calls:
            calls[0]["thoughtSignature"] = _signature(reply)
        elif text_chunks:
            text_chunks[-1][-1]["thoughtSignature"] = _signature(reply)
        else:
            chunks.append([{"text": "", "thoughtSignature": _signature(reply)}])
    if not chunks:
        chunks.append([{"text": ""}])
    if not stream:
        return [[part for chunk in chunks for part in chunk]]
    return chunks


def _gemini_response(parts: list[JSON], model: str, response_id: str) -> JSON:
    return {
        "candidates": [{"content": {"parts": parts, "role": "model"}, "index": 0}],
        "modelVersion": model,
        "responseId": response_id,
    }


def gemini_response(reply: Reply, model: str) -> JSON:
    body = _gemini_response(_gemini_chunks(reply, stream=False)[0], model, random_id(22))
    body["candidates"][0]["finishReason"] = _GEMINI_FINISH.get(
        reply.neutral_finish, reply.neutral_finish
    )
    if not reply.omit_usage:
        body["usageMetadata"] = gemini_usage(reply.usage_numbers)
    return body


def gemini_stream_objects(reply: Reply, model: str) -> list[JSON]:
    """One GenerateContentResponse per chunk; the last one has finishReason and full usage."""
    response_id = random_id(22)
    chunks = _gemini_chunks(reply, stream=True)
    objects: list[JSON] = []
    for position, parts in enumerate(chunks):
        body = _gemini_response(parts, model, response_id)
        last = position == len(chunks) - 1
        if last:
            body["candidates"][0]["finishReason"] = _GEMINI_FINISH.get(
                reply.neutral_finish, reply.neutral_finish
            )
        if not reply.omit_usage:
            body["usageMetadata"] = gemini_usage(reply.usage_numbers, final=last)
        objects.append(body)
    return objects


def gemini_sse(obj: JSON) -> bytes:
    return b"data: " + dumps(obj) + b"\r\n\r\n"


def gemini_stream_error(message: str) -> JSON:
    return {"error": {"code": 503, "message": message, "status": "UNAVAILABLE"}}


def gemini_model(model_id: str) -> JSON:
    return {
        "name": f"models/{model_id}",
        "version": "001",
        "displayName": model_id.replace("-", " ").title(),
        "description": "A model of the test upstream.",
        "inputTokenLimit": 1_048_576,
        "outputTokenLimit": 65_536,
        "supportedGenerationMethods": [
            "generateContent",
            "countTokens",
            "createCachedContent",
            "batchGenerateContent",
        ],
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2,
        "thinking": True,
    }


def gemini_models(model_ids: list[str]) -> JSON:
    return {"models": [gemini_model(model_id) for model_id in model_ids]}


# --------------------------------------------------------------------------------------------
# Errors, in each API's own shape
# --------------------------------------------------------------------------------------------

_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", None, "You are not allowed to do this."),
    404: ("invalid_request_error", None, "Not found."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again later.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}

_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Bad request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low."),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out."),
    529: ("overloaded_error", "Overloaded"),
}

_GEMINI_STATUS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "API key not valid. Please pass a valid API key."),
    403: ("PERMISSION_DENIED", "The caller does not have permission."),
    404: ("NOT_FOUND", "Requested entity was not found."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    499: ("CANCELLED", "The operation was cancelled."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report the problem."),
    501: ("UNIMPLEMENTED", "Method not implemented."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "The request timed out. Please try again."),
}


def error_body(
    backend: str,
    status: int,
    message: str | None = None,
    error_type: str | None = None,
    param: str | None = None,
    code: str | None = None,
    details: list[JSON] | None = None,
) -> JSON:
    """The JSON error body `backend` sends with `status` (`details`: Gemini's, e.g. RetryInfo)."""
    if backend == "openai":
        kind, default_code, default_message = _OPENAI_ERRORS.get(
            status,
            ("server_error" if status >= 500 else "invalid_request_error", None, "Error."),
        )
        return {
            "error": {
                "message": message or default_message,
                "type": error_type or kind,
                "param": param,
                "code": code if code is not None else default_code,
            }
        }
    if backend == "openrouter":
        error: JSON = {
            "code": status,
            "message": message or _OPENAI_ERRORS.get(status, ("", None, "Error."))[2],
        }
        if param is not None:
            error["metadata"] = {"param": param}
        return {"error": error}
    if backend == "anthropic":
        kind, default_message = _ANTHROPIC_ERRORS.get(
            status, ("api_error" if status >= 500 else "invalid_request_error", "Error.")
        )
        return {
            "type": "error",
            "error": {"type": error_type or kind, "message": message or default_message},
            "request_id": f"req_{random_id()}",
        }
    status_name, default_message = _GEMINI_STATUS.get(status, ("UNKNOWN", "Unknown error."))
    gemini_error: JSON = {
        "code": status,
        "message": message or default_message,
        "status": error_type or status_name,
    }
    if details:
        gemini_error["details"] = details
    return {"error": gemini_error}
