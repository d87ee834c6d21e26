"""The Gemini API wire protocol (generativelanguage v1beta REST, JSON) <-> canonical.

Owns: the bodies of `POST /v1beta/models/{model}:generateContent` (request and response), the
`:streamGenerateContent?alt=sse` stream (decoder and encoder), Gemini error bodies, the
`GET /v1beta/models` listing (`models_list_response`) and `clean_schema`, which turns any JSON
Schema into the subset Gemini's `Schema` object accepts. The model and the stream flag come from
the URL, so `parse_request` takes them as keywords and `render_request` leaves the model out.

Spelling: the REST API (protobuf JSON) accepts camelCase and snake_case for every field, and
google-genai really sends a mix (`inlineData` holding `mime_type`, `parameters_json_schema`,
`thinking_budget`). The parser reads both; each canonical object remembers, in its `extras`
under `"snake"`, the snake_case spellings it came with, so a same-protocol round trip renders the
exact keys it read. Conversions always render camelCase.

Decisions where the API leaves room:
- Call ids: a `functionCall` without `id` gets `call_{n}_{name}` (sanitised, at most 40 chars;
  responses and streams add the first 8 chars of `responseId`: `call_{rid}_{n}_{name}`) and is
  marked `gen_id` so a same-protocol round trip does not add it. A `functionResponse` without
  `id` answers the earliest unanswered call of that name in the latest model turn that made one.
- `functionResponse.response` -> tool result text: `{"output": str}` / `{"result": str}` give
  that string, `{"error": x}` gives `x` with `is_error`, anything else its compact JSON. Rendering
  inverts this: JSON-object text is sent as that object, other text as `{"result": text}`, an
  error as `{"error": ...}`. The original object is kept in extras for the same-protocol trip.
- A `user` content holding functionResponses becomes one `tool` message (plus a following `user`
  message for its other parts, merged back on render). Converting from another protocol,
  consecutive contents of the same role are merged and mid-conversation system messages become
  `user` contents.
- Thought signatures: a signature on a thought part stays on that `ThinkingPart`; on a
  non-thought text part of a request/response it is kept in the `TextPart` extras; in a stream
  it becomes a signature-only `ThinkingDelta` (attached to the open thinking block, else a block
  of its own). Rendering puts a signature-only thinking part's signature on the next non-thought
  part (what the real API does), or on an empty text part at the end.
- Converting to a Gemini >= 3 model, history tool calls without a signature carry
  `SKIP_SIGNATURE` (Google's documented validator bypass), since those models reject unsigned
  calls in history.
- Usage: canonical `input_tokens` = `promptTokenCount` (cached tokens included, like OpenAI),
  `output_tokens` = `candidatesTokenCount + thoughtsTokenCount`, `reasoning_tokens` = thoughts,
  `cached_tokens` = `cachedContentTokenCount`.
- Reasoning -> `thinkingConfig` (converted or edited requests) from
  `protocol.reasoning.gemini_thinking_config` and its table: Gemini 3 models get
  `thinkingLevel`, others `thinkingBudget` (an explicit budget wins, else the effort's budget,
  else `enabled` False -> 0 / True -> -1, dynamic), kept in the model's range. Converting,
  `includeThoughts` is set when thinking is on and the client did not say, so the thoughts come
  back to it. Temperature is clamped to 0..2 when converting.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from typing import Any, Final

from protocol.canonical import (
    BlockStop,
    ChatRequest,
    ChatResponse,
    Error,
    Event,
    Finish,
    ImagePart,
    Message,
    OpaquePart,
    Part,
    ProtocolName,
    Reasoning,
    Start,
    StopReason,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    Tool,
    ToolArgsDelta,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolResultPart,
    Usage,
)
from protocol.codec import ProtocolError, error_kind
from protocol.reasoning import (
    DEFAULT_TABLE,
    clamp_temperature,
    current_table,
    gemini_thinking_config,
)
from protocol.sse import SSEDecoder
from protocol.wire import dumps as _dump
from protocol.wire import dumps_bytes as _dumps_bytes
from protocol.wire import loads as _loads
from protocol.wire import rest as _extra

NAME: ProtocolName = "gemini"

log = logging.getLogger(__name__)

#: The default table's effort -> `thinkingBudget` (`protocol.reasoning` owns the table).
EFFORT_BUDGET: Final = DEFAULT_TABLE.gemini_budget

#: `thoughtSignature` Google documents for replayed calls whose real signature is unknown.
SKIP_SIGNATURE = "skip_thought_signature_validator"

#: `error.status` by HTTP status for `render_error`.
ERROR_STATUS: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}

_FINISH_IN: dict[str, StopReason] = {
    "STOP": "end",
    "MAX_TOKENS": "max_tokens",
    "SAFETY": "filtered",
    "RECITATION": "filtered",
    "BLOCKLIST": "filtered",
    "PROHIBITED_CONTENT": "filtered",
    "SPII": "filtered",
    "IMAGE_SAFETY": "filtered",
    "IMAGE_PROHIBITED_CONTENT": "filtered",
    "IMAGE_RECITATION": "filtered",
}

_FINISH_OUT: dict[str, str] = {
    "end": "STOP",
    "stop": "STOP",
    "tool_use": "STOP",
    "loop_halted": "STOP",
    "max_tokens": "MAX_TOKENS",
    "filtered": "SAFETY",
    "error": "OTHER",
}

_LEVELS = frozenset({"minimal", "low", "medium", "high", "xhigh"})
_MODES = {"AUTO": "auto", "MODE_UNSPECIFIED": "auto", "VALIDATED": "auto", "ANY": "required"}

# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------

_UPPER = re.compile(r"(?<!^)(?=[A-Z])")
_SNAKE_CACHE: dict[str, str] = {}


def _snake(key: str) -> str:
    s = _SNAKE_CACHE.get(key)
    if s is None:
        s = _SNAKE_CACHE[key] = _UPPER.sub("_", key).lower()
    return s


def _known(*keys: str) -> frozenset[str]:
    return frozenset(keys) | frozenset(_snake(k) for k in keys)


def _get(d: dict[str, Any], key: str, snakes: list[str]) -> Any:
    """`d[key]`, or its snake_case spelling (recorded in `snakes`), or None."""
    if key in d:
        return d[key]
    s = _snake(key)
    if s != key and s in d:
        snakes.append(s)
        return d[s]
    return None


def _k(key: str, snakes: Any) -> str:
    """The spelling of `key` to render: snake_case when it was read that way."""
    if snakes:
        s = _snake(key)
        if s in snakes:
            return s
    return key


def _args(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments) if arguments else {}
    except ValueError:
        log.debug("tool call arguments are not JSON, sending {}: %.200r", arguments)
        return {}
    if not isinstance(value, dict):
        log.debug("tool call arguments are not an object, sending {}: %.200r", arguments)
        return {}
    return value


def _loads_object(text: str) -> dict[str, Any] | None:
    if not text or text[0] != "{":
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


_ID_BAD = re.compile(r"[^A-Za-z0-9_-]")


def _gen_call_id(n: int, name: str, salt: str = "") -> str:
    return _ID_BAD.sub("_", f"call_{salt}{n}_{name}")[:40]


def _salt(response_id: str | None) -> str:
    return _ID_BAD.sub("_", response_id[:8]) + "_" if response_id else ""


def _sig_ok(sig: str) -> bool:
    """Whether `sig` is base64 (the SDKs decode `thoughtSignature` and fail on anything else)."""
    try:
        base64.b64decode(sig.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        log.debug("dropping a thought signature that is not base64")
        return False
    return True


def _num(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"{where} must be a number")
    return value


def _int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ProtocolError(f"{where} must be an integer")
    return int(value)


def _stop_reason(finish: Any, has_call: bool) -> StopReason:
    reason = _FINISH_IN.get(finish, "end") if isinstance(finish, str) else "end"
    if reason == "end" and has_call and finish in ("STOP", None):
        return "tool_use"
    return reason


_EXT_MIME = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "heic": "image/heic",
    "heif": "image/heif",
    "bmp": "image/bmp",
}


def _mime_from_url(url: str) -> str | None:
    path = url.split("?", 1)[0].split("#", 1)[0]
    dot = path.rfind(".")
    if dot < 0 or "/" in path[dot:]:
        return None
    return _EXT_MIME.get(path[dot + 1 :].lower())


def _mime_from_data(data: str) -> str:
    if data.startswith("iVBOR"):
        return "image/png"
    if data.startswith("R0lG"):
        return "image/gif"
    if data.startswith("UklGR"):
        return "image/webp"
    return "image/jpeg"


def _response_text(response: Any) -> tuple[str, bool]:
    """Tool result text and error flag of a `functionResponse.response` object."""
    if isinstance(response, dict) and len(response) == 1:
        ((key, value),) = response.items()
        if key == "error":
            return (value if isinstance(value, str) else _dump(value)), True
        if key in ("output", "result") and isinstance(value, str):
            return value, False
    return _dump(response), False


def _response_object(text: str, is_error: bool) -> dict[str, Any]:
    parsed = _loads_object(text)
    if is_error:
        return {"error": parsed if parsed is not None else text}
    return parsed if parsed is not None else {"result": text}


# ----------------------------------------------------------------------------------------------
# Parts (shared by requests and responses)
# ----------------------------------------------------------------------------------------------

_K_TEXT = _known("text", "thought", "thoughtSignature")
_K_INLINE_PART = _known("inlineData")
_K_FILE_PART = _known("fileData")
_K_MIME_DATA = _known("mimeType", "data")
_K_MIME_URI = _known("mimeType", "fileUri")
_K_CALL_PART = _known("functionCall", "thoughtSignature")
_K_CALL = frozenset({"name", "args", "id"})
_K_RESULT_PART = _known("functionResponse")
_K_RESULT = frozenset({"name", "response", "id"})


class _Calls:
    """Call-id bookkeeping while parsing: generated ids and unanswered calls by name."""

    __slots__ = ("salt", "generated", "turn", "pending")

    def __init__(self, salt: str = "") -> None:
        self.salt = salt
        self.generated = 0
        self.turn = 0
        self.pending: list[tuple[int, str, str]] = []

    def new_id(self, name: str) -> str:
        n = self.generated
        self.generated += 1
        return _gen_call_id(n, name, self.salt)

    def answer(self, name: str) -> str | None:
        best = -1
        for i, (turn, _, pending_name) in enumerate(self.pending):
            if pending_name == name and (best < 0 or turn > self.pending[best][0]):
                best = i
        if best < 0:
            return None
        return self.pending.pop(best)[1]

    def answered(self, call_id: str) -> None:
        for i, (_, pending_id, _) in enumerate(self.pending):
            if pending_id == call_id:
                del self.pending[i]
                return


def _put(ex: dict[str, Any], key: str, value: Any) -> None:
    if value:
        ex[key] = value


def _parse_part(raw: Any, calls: _Calls, results: bool, where: str) -> Part:
    """One Gemini part as a canonical part (`results`: functionResponse allowed here)."""
    if not isinstance(raw, dict):
        raise ProtocolError(f"{where} must be an object")
    snakes: list[str] = []
    sig = _get(raw, "thoughtSignature", snakes)
    if sig is not None and not isinstance(sig, str):
        raise ProtocolError(f"{where}.thoughtSignature must be a string")
    ex: dict[str, Any] = {}
    if "text" in raw:
        text = raw["text"]
        if not isinstance(text, str):
            raise ProtocolError(f"{where}.text must be a string")
        if raw.get("thought") is True:
            _put(ex, "part", _extra(raw, _K_TEXT))
            _put(ex, "snake", snakes)
            if not text:
                ex["thought"] = True
            return ThinkingPart(text=text, signature=sig, extras=ex)
        _put(ex, "part", {k: v for k, v in raw.items() if k != "text"})
        return TextPart(text=text, extras=ex)
    inline = _get(raw, "inlineData", snakes)
    if inline is not None:
        if not isinstance(inline, dict):
            raise ProtocolError(f"{where}.inlineData must be an object")
        mime = _get(inline, "mimeType", snakes)
        data = inline.get("data")
        if isinstance(mime, str) and mime.startswith("image/") and isinstance(data, str):
            _put(ex, "part", _extra(raw, _K_INLINE_PART))
            _put(ex, "inner", _extra(inline, _K_MIME_DATA))
            _put(ex, "snake", snakes)
            return ImagePart(data=data, media_type=mime, extras=ex)
        return OpaquePart(protocol=NAME, data=raw)
    file = _get(raw, "fileData", snakes)
    if file is not None:
        if not isinstance(file, dict):
            raise ProtocolError(f"{where}.fileData must be an object")
        mime = _get(file, "mimeType", snakes)
        uri = _get(file, "fileUri", snakes)
        if mime is None and isinstance(uri, str) and _mime_from_url(uri):
            ex["no_mime"] = True
        elif not (isinstance(mime, str) and mime.startswith("image/")):
            return OpaquePart(protocol=NAME, data=raw)
        if not isinstance(uri, str):
            return OpaquePart(protocol=NAME, data=raw)
        _put(ex, "part", _extra(raw, _K_FILE_PART))
        _put(ex, "inner", _extra(file, _K_MIME_URI))
        _put(ex, "snake", snakes)
        return ImagePart(url=uri, media_type=mime, extras=ex)
    call = _get(raw, "functionCall", snakes)
    if call is not None:
        if not isinstance(call, dict):
            raise ProtocolError(f"{where}.functionCall must be an object")
        name = call.get("name")
        if not isinstance(name, str) or not name:
            raise ProtocolError(f"{where}.functionCall.name is required")
        args = call.get("args")
        if args is None:
            ex["no_args"] = True
            args = {}
        elif not isinstance(args, dict):
            raise ProtocolError(f"{where}.functionCall.args must be an object")
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            if call_id is not None:
                ex["id"] = call_id
            call_id = calls.new_id(name)
            ex["gen_id"] = True
        calls.pending.append((calls.turn, call_id, name))
        _put(ex, "part", _extra(raw, _K_CALL_PART))
        _put(ex, "inner", _extra(call, _K_CALL))
        _put(ex, "snake", snakes)
        return ToolCallPart(id=call_id, name=name, arguments=_dump(args), signature=sig, extras=ex)
    result = _get(raw, "functionResponse", snakes)
    if result is not None and results:
        if not isinstance(result, dict):
            raise ProtocolError(f"{where}.functionResponse must be an object")
        name = result.get("name")
        if not isinstance(name, str) or not name:
            raise ProtocolError(f"{where}.functionResponse.name is required")
        response = result.get("response")
        call_id = result.get("id")
        if isinstance(call_id, str) and call_id:
            calls.answered(call_id)
        else:
            if call_id is not None:
                ex["id"] = call_id
            call_id = calls.answer(name) or calls.new_id(name)
            ex["gen_id"] = True
        text, is_error = _response_text(response)
        ex["response"] = response
        if "response" not in result:
            ex["no_response"] = True
        _put(ex, "part", _extra(raw, _K_RESULT_PART))
        _put(ex, "inner", _extra(result, _K_RESULT))
        _put(ex, "snake", snakes)
        return ToolResultPart(
            call_id=call_id, name=name, content=[TextPart(text=text)], is_error=is_error, extras=ex
        )
    return OpaquePart(protocol=NAME, data=raw)


class _Render:
    """Renders canonical parts into Gemini parts for one body."""

    __slots__ = ("same", "names", "dummy", "response")

    def __init__(
        self, same: bool, names: dict[str, str], dummy: bool = False, response: bool = False
    ) -> None:
        self.same = same
        self.names = names
        self.dummy = dummy
        self.response = response

    def parts(self, content: list[Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        pending: str | None = None  # a signature-only thinking part's signature
        for p in content:
            ex = p.extras if self.same and not isinstance(p, OpaquePart) else {}
            snakes = ex.get("snake")
            if isinstance(p, TextPart):
                if not p.text and not self.same:
                    continue  # the API rejects empty text parts
                d: dict[str, Any] = {"text": p.text}
                if ex:
                    d.update(ex.get("part", ()))
                if pending and "thoughtSignature" not in d and "thought_signature" not in d:
                    d["thoughtSignature"] = pending
                    pending = None
                out.append(d)
            elif isinstance(p, ThinkingPart):
                if (not self.same and not self.response) or p.redacted:
                    log.debug("dropping thinking part rendered to gemini")
                    continue
                sig = p.signature
                if sig and self.response and not self.same and not _sig_ok(sig):
                    sig = None
                if p.text or ex.get("thought"):
                    d = {"text": p.text, "thought": True}
                    if sig:
                        d[_k("thoughtSignature", snakes)] = sig
                    if ex:
                        d.update(ex.get("part", ()))
                    out.append(d)
                elif sig:
                    if pending:
                        out.append({"text": "", "thoughtSignature": pending})
                    pending = sig
            elif isinstance(p, ToolCallPart):
                call: dict[str, Any] = {"name": p.name, "args": _args(p.arguments)}
                if ex.get("no_args") and not call["args"]:
                    del call["args"]
                if self.same:
                    if not ex.get("gen_id"):
                        call["id"] = p.id
                    elif "id" in ex:
                        call["id"] = ex["id"]
                elif self.response:
                    call["id"] = p.id  # so the client echoes it back
                if ex:
                    call.update(ex.get("inner", ()))
                d = {_k("functionCall", snakes): call}
                sig = p.signature if (self.same or self.response) else None
                if sig and not self.same and not _sig_ok(sig):
                    sig = None
                if sig is None and pending:
                    sig, pending = pending, None
                if sig is None and self.dummy:
                    sig = SKIP_SIGNATURE
                if sig is not None:
                    d[_k("thoughtSignature", snakes)] = sig
                if ex:
                    d.update(ex.get("part", ()))
                out.append(d)
            elif isinstance(p, ToolResultPart):
                out.extend(self._result(p, ex))
            elif isinstance(p, ImagePart):
                image = self._image(p, ex)
                if image is not None:
                    out.append(image)
            elif isinstance(p, OpaquePart):
                if p.protocol == NAME:
                    out.append(p.data)
                else:
                    log.debug("dropping %s opaque part rendered to gemini", p.protocol)
        if pending:
            out.append({"text": "", "thoughtSignature": pending})
        return out

    def _image(self, p: ImagePart, ex: dict[str, Any]) -> dict[str, Any] | None:
        snakes = ex.get("snake")
        if p.data is not None:
            key, inner = "inlineData", {"mimeType": p.media_type or _mime_from_data(p.data)}
            inner["data"] = p.data
        elif p.url is not None and p.url.startswith("data:"):
            head, _, data = p.url.partition(",")
            mime = head[5:].split(";", 1)[0] or p.media_type or _mime_from_data(data)
            key, inner = "inlineData", {"mimeType": mime, "data": data}
        elif p.url is not None:
            key = "fileData"
            mime = p.media_type or _mime_from_url(p.url) or "image/jpeg"
            inner = {"mimeType": mime, "fileUri": p.url}
            if ex.get("no_mime") and p.media_type is None:
                del inner["mimeType"]
        else:
            log.debug("dropping image part with neither data nor url")
            return None
        if snakes:
            inner = {_k(k, snakes): v for k, v in inner.items()}
        if ex:
            inner.update(ex.get("inner", ()))
        d = {_k(key, snakes): inner}
        if ex:
            d.update(ex.get("part", ()))
        return d

    def _result(self, p: ToolResultPart, ex: dict[str, Any]) -> list[dict[str, Any]]:
        text = "".join(c.text for c in p.content if isinstance(c, TextPart))
        if "response" in ex and _response_text(ex["response"]) == (text, p.is_error):
            response = ex["response"]
        else:
            response = _response_object(text, p.is_error)
        name = p.name or self.names.get(p.call_id) or p.call_id
        result: dict[str, Any] = {"name": name, "response": response}
        if ex.get("no_response") and response is None:
            del result["response"]
        if self.same and not ex.get("gen_id"):
            result["id"] = p.call_id
        elif "id" in ex:
            result["id"] = ex["id"]
        if ex:
            result.update(ex.get("inner", ()))
        d: dict[str, Any] = {_k("functionResponse", ex.get("snake")): result}
        if ex:
            d.update(ex.get("part", ()))
        out = [d]
        for c in p.content:
            if isinstance(c, ImagePart):
                image = self._image(c, c.extras if self.same else {})
                if image is not None:
                    out.append(image)
        return out


# ----------------------------------------------------------------------------------------------
# Requests
# ----------------------------------------------------------------------------------------------

_K_TOP = _known("contents", "systemInstruction", "tools", "toolConfig", "generationConfig")
_K_GEN = _known("temperature", "topP", "topK", "maxOutputTokens", "stopSequences", "thinkingConfig")
_K_CONTENT = frozenset({"role", "parts"})
_SCHEMA_KEYS = ("parameters", "parametersJsonSchema", "parameters_json_schema")


def parse_request(
    body: dict[str, Any], *, model: str = "", stream: bool = False, **_: Any
) -> ChatRequest:
    """A Gemini `GenerateContentRequest` body (model and stream flag from the URL)."""
    if not isinstance(body, dict):
        raise ProtocolError("request body must be a JSON object")
    if model.startswith("models/"):
        model = model[7:]
    snakes: list[str] = []
    contents = body.get("contents")
    if contents is None:
        raise ProtocolError("contents is required")
    if not isinstance(contents, list):
        raise ProtocolError("contents must be a list")
    extras: dict[str, Any] = {}
    _put(extras, "top", _extra(body, _K_TOP))
    system, system_extras = _parse_system(_get(body, "systemInstruction", snakes))
    if system_extras is not None:
        extras["system"] = system_extras
    messages = _parse_contents(contents)
    tools: list[Tool] = []
    raw_tools = body.get("tools")
    if raw_tools is not None:
        tools, extras["tools"] = _parse_tools(raw_tools)
    tool_choice = None
    tool_config = _get(body, "toolConfig", snakes)
    if tool_config is not None:
        tool_choice = _parse_tool_config(tool_config)
        extras["toolConfig"] = tool_config
    fields: dict[str, Any] = {}
    gen = _get(body, "generationConfig", snakes)
    if gen is not None:
        if not isinstance(gen, dict):
            raise ProtocolError("generationConfig must be an object")
        extras["gen"] = _extra(gen, _K_GEN)
        fields["temperature"] = _num(
            _get(gen, "temperature", snakes), "generationConfig.temperature"
        )
        fields["top_p"] = _num(_get(gen, "topP", snakes), "generationConfig.topP")
        top_k = _num(_get(gen, "topK", snakes), "generationConfig.topK")
        fields["top_k"] = None if top_k is None else int(top_k)
        if top_k is not None and top_k != int(top_k):
            extras["topK"] = top_k
        fields["max_tokens"] = _int(
            _get(gen, "maxOutputTokens", snakes), "generationConfig.maxOutputTokens"
        )
        stop = _get(gen, "stopSequences", snakes)
        if stop is not None:
            if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
                raise ProtocolError("generationConfig.stopSequences must be a list of strings")
            fields["stop"] = stop
            if not stop:
                extras["stop_empty"] = True
        thinking = _get(gen, "thinkingConfig", snakes)
        if thinking is not None:
            fields["reasoning"] = _parse_thinking(thinking)
            extras["thinking"] = thinking
    _put(extras, "snake", snakes)
    try:
        return ChatRequest(
            source=NAME,
            model=model,
            system=system,
            messages=messages,
            tools=tools,
            tool_choice=tool_choice,
            stream=stream,
            include_usage=True,
            extras=extras,
            **{k: v for k, v in fields.items() if v is not None},
        )
    except ValueError as exc:  # pydantic ValidationError
        raise ProtocolError(f"invalid request: {exc}") from exc


def _parse_system(raw: Any) -> tuple[list[TextPart], dict[str, Any] | None]:
    if raw is None:
        return [], None
    if isinstance(raw, str):
        return [TextPart(text=raw)], {"string": True}
    if not isinstance(raw, dict):
        raise ProtocolError("systemInstruction must be an object with parts")
    ex: dict[str, Any] = {}
    _put(ex, "extra", _extra(raw, frozenset({"parts"})))
    parts = raw.get("parts")
    if parts is None:
        ex["no_parts"] = True
        parts = []
    if not isinstance(parts, list):
        raise ProtocolError("systemInstruction.parts must be a list")
    system: list[TextPart] = []
    other: list[list[Any]] = []
    for i, p in enumerate(parts):
        if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought"):
            extra = {k: v for k, v in p.items() if k != "text"}
            system.append(TextPart(text=p["text"], extras={"part": extra} if extra else {}))
        else:
            other.append([i, p])
    _put(ex, "other", other)
    return system, ex


def _parse_contents(contents: list[Any]) -> list[Message]:
    calls = _Calls()
    messages: list[Message] = []
    for ci, content in enumerate(contents):
        where = f"contents[{ci}]"
        if not isinstance(content, dict):
            raise ProtocolError(f"{where} must be an object")
        ex: dict[str, Any] = {}
        role = content.get("role")
        if role is None:
            ex["no_role"] = True
            role = "user"
        elif role == "function":
            ex["role"] = role
        elif role not in ("user", "model"):
            raise ProtocolError(f"{where}.role must be 'user' or 'model', got {role!r}")
        parts = content.get("parts")
        if parts is None:
            ex["no_parts"] = True
            parts = []
        elif not isinstance(parts, list):
            raise ProtocolError(f"{where}.parts must be a list")
        _put(ex, "content", _extra(content, _K_CONTENT))
        if role == "model":
            calls.turn += 1
            content_parts = [
                _parse_part(p, calls, False, f"{where}.parts[{i}]") for i, p in enumerate(parts)
            ]
            messages.append(Message(role="assistant", content=content_parts, extras=ex))
            continue
        results: list[Part] = []
        others: list[Part] = []
        positions: list[int] = []
        for i, p in enumerate(parts):
            part = _parse_part(p, calls, True, f"{where}.parts[{i}]")
            if isinstance(part, ToolResultPart):
                results.append(part)
                positions.append(i)
            else:
                others.append(part)
        if not results:
            messages.append(Message(role="user", content=others, extras=ex))
            continue
        if others:
            ex["merge"] = positions
        messages.append(Message(role="tool", content=results, extras=ex))
        if others:
            messages.append(Message(role="user", content=others, extras={"merged": True}))
    return messages


def _parse_tools(raw: Any) -> tuple[list[Tool], list[dict[str, Any]]]:
    if not isinstance(raw, list):
        raise ProtocolError("tools must be a list")
    tools: list[Tool] = []
    skeleton: list[dict[str, Any]] = []
    for ti, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ProtocolError(f"tools[{ti}] must be an object")
        snakes: list[str] = []
        decls = _get(entry, "functionDeclarations", snakes)
        if decls is None:
            skeleton.append({"raw": entry})
            continue
        if not isinstance(decls, list):
            raise ProtocolError(f"tools[{ti}].functionDeclarations must be a list")
        key = snakes[0] if snakes else "functionDeclarations"
        skeleton.append({"key": key, "n": len(decls), "other": _extra(entry, {key})})
        for di, decl in enumerate(decls):
            tools.append(_parse_decl(decl, f"tools[{ti}].functionDeclarations[{di}]"))
    return tools, skeleton


def _parse_decl(decl: Any, where: str) -> Tool:
    if not isinstance(decl, dict):
        raise ProtocolError(f"{where} must be an object")
    name = decl.get("name")
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"{where}.name is required")
    description = decl.get("description")
    if description is not None and not isinstance(description, str):
        raise ProtocolError(f"{where}.description must be a string")
    schema_key = next((k for k in _SCHEMA_KEYS if k in decl), None)
    ex: dict[str, Any] = {"schema_key": schema_key}  # None: the declaration had no schema
    parameters: dict[str, Any] = {"type": "object", "properties": {}}
    if schema_key is not None:
        schema = decl[schema_key]
        if not isinstance(schema, dict):
            raise ProtocolError(f"{where}.{schema_key} must be an object")
        parameters = schema
    _put(
        ex, "decl", {k: v for k, v in decl.items() if k not in ("name", "description", schema_key)}
    )
    return Tool(name=name, description=description, parameters=parameters, extras=ex)


def _parse_tool_config(raw: Any) -> ToolChoice | None:
    if not isinstance(raw, dict):
        raise ProtocolError("toolConfig must be an object")
    fcc = _get(raw, "functionCallingConfig", [])
    if fcc is None:
        return None
    if not isinstance(fcc, dict):
        raise ProtocolError("toolConfig.functionCallingConfig must be an object")
    mode = fcc.get("mode")
    allowed = _get(fcc, "allowedFunctionNames", [])
    if allowed is not None and (
        not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed)
    ):
        raise ProtocolError(
            "toolConfig.functionCallingConfig.allowedFunctionNames must be a list of strings"
        )
    if mode is None:
        return ToolChoice(mode="auto")
    if not isinstance(mode, str):
        raise ProtocolError("toolConfig.functionCallingConfig.mode must be a string")
    upper = mode.upper()
    if upper == "NONE":
        return ToolChoice(mode="none")
    if upper == "ANY" and allowed and len(allowed) == 1:
        return ToolChoice(mode="tool", name=allowed[0])
    canonical = _MODES.get(upper)
    if canonical is None:
        raise ProtocolError(f"toolConfig.functionCallingConfig.mode {mode!r} is not valid")
    return ToolChoice(mode="required" if canonical == "required" else "auto")


def _parse_thinking(raw: Any) -> Reasoning:
    if not isinstance(raw, dict):
        raise ProtocolError("generationConfig.thinkingConfig must be an object")
    snakes: list[str] = []
    budget = _int(
        _get(raw, "thinkingBudget", snakes), "generationConfig.thinkingConfig.thinkingBudget"
    )
    include = _get(raw, "includeThoughts", snakes)
    if include is not None and not isinstance(include, bool):
        raise ProtocolError("generationConfig.thinkingConfig.includeThoughts must be a boolean")
    level = _get(raw, "thinkingLevel", snakes)
    if level is not None and not isinstance(level, str):
        raise ProtocolError("generationConfig.thinkingConfig.thinkingLevel must be a string")
    effort = level.lower() if level and level.lower() in _LEVELS else None
    enabled: bool | None = None
    budget_tokens: int | None = None
    if budget is not None:
        if budget == 0:
            enabled, budget_tokens = False, 0
        elif budget < 0:
            enabled = True
        else:
            enabled, budget_tokens = True, budget
    elif effort is not None:
        enabled = True
    return Reasoning(
        effort=effort,
        budget_tokens=budget_tokens,
        include_thoughts=include,
        enabled=enabled,
    )


def _render_tool_choice(tc: ToolChoice) -> dict[str, Any]:
    if tc.mode == "tool" and tc.name:
        return {"mode": "ANY", "allowedFunctionNames": [tc.name]}
    return {"mode": {"none": "NONE", "required": "ANY"}.get(tc.mode, "AUTO")}


def _needs_signature(model: str) -> bool:
    """Gemini 3 and later reject history function calls without a thought signature."""
    match = re.search(r"gemini-(\d+)", model)
    return match is not None and int(match.group(1)) >= 3


def render_request(req: ChatRequest) -> dict[str, Any]:
    """The `GenerateContentRequest` body for `req` (the model goes in the URL)."""
    same = req.source == NAME
    x = req.extras if same else {}
    snakes = x.get("snake")
    body: dict[str, Any] = {_k("contents", snakes): _render_contents(req, same)}
    system = _render_system(req, x.get("system"))
    if system is not None:
        body[_k("systemInstruction", snakes)] = system
    tools = _render_tools(req.tools, same, x.get("tools"))
    if tools is not None:
        body["tools"] = tools
    raw_tc = x.get("toolConfig")
    if raw_tc is not None and _parse_tool_config(raw_tc) == req.tool_choice:
        body[_k("toolConfig", snakes)] = raw_tc
    elif raw_tc is not None or (req.tool_choice is not None and (same or tools)):
        # (Converting, no toolConfig without tools: the API rejects a calling config alone.)
        tool_config = {
            k: v for k, v in (raw_tc or {}).items() if k not in _known("functionCallingConfig")
        }
        if req.tool_choice is not None:
            tool_config["functionCallingConfig"] = _render_tool_choice(req.tool_choice)
        if tool_config:
            body[_k("toolConfig", snakes)] = tool_config
    gen = _render_generation(req, x)
    if gen is not None:
        body[_k("generationConfig", snakes)] = gen
    if x:
        body.update(x.get("top", ()))
    return body


def _render_system(req: ChatRequest, ex: dict[str, Any] | None) -> Any:
    if ex is None:
        if not any(p.text for p in req.system):
            return None
        return {"parts": [{"text": p.text} for p in req.system if p.text]}
    if ex.get("string") and len(req.system) == 1:
        return req.system[0].text
    parts: list[Any] = [{"text": p.text, **p.extras.get("part", {})} for p in req.system]
    for index, raw in ex.get("other", ()):
        parts.insert(min(index, len(parts)), raw)
    out: dict[str, Any] = dict(ex.get("extra", {}))
    if parts or not ex.get("no_parts"):
        out["parts"] = parts
    return out


def _render_contents(req: ChatRequest, same: bool) -> list[dict[str, Any]]:
    names = {p.id: p.name for m in req.messages for p in m.content if isinstance(p, ToolCallPart)}
    render = _Render(same, names, dummy=not same and _needs_signature(req.model))
    out: list[dict[str, Any]] = []
    msgs = req.messages
    i = 0
    while i < len(msgs):
        m = msgs[i]
        ex = m.extras if same else {}
        role = "model" if m.role == "assistant" else "user"
        parts = render.parts(m.content)
        merge = ex.get("merge")
        if (
            merge is not None
            and i + 1 < len(msgs)
            and msgs[i + 1].role == "user"
            and msgs[i + 1].extras.get("merged")
        ):
            i += 1
            parts = _interleave(parts, render.parts(msgs[i].content), merge)
        content: dict[str, Any] = {"parts": parts, "role": role}
        if ex:
            if ex.get("no_role"):
                del content["role"]
            elif "role" in ex:
                content["role"] = ex["role"]
            if ex.get("no_parts") and not parts:
                del content["parts"]
            content.update(ex.get("content", ()))
        elif not same:
            if not parts:  # the API rejects contents without parts (e.g. thinking-only turns)
                i += 1
                continue
            if out and out[-1]["role"] == role:
                out[-1]["parts"].extend(parts)  # one content per turn: merge same-role runs
                i += 1
                continue
        out.append(content)
        i += 1
    return out


def _interleave(results: list[Any], others: list[Any], positions: list[int]) -> list[Any]:
    out: list[Any] = []
    ri = oi = 0
    wanted = set(positions)
    for index in range(len(results) + len(others)):
        if (index in wanted and ri < len(results)) or oi >= len(others):
            out.append(results[ri])
            ri += 1
        else:
            out.append(others[oi])
            oi += 1
    return out


def _render_decl(tool: Tool, same: bool) -> dict[str, Any]:
    ex = tool.extras if same else {}
    decl: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        decl["description"] = tool.description
    if "schema_key" in ex:
        key = ex["schema_key"]
        if key is not None:
            decl[key] = tool.parameters
        elif tool.parameters != {"type": "object", "properties": {}}:
            decl["parameters"] = clean_schema(tool.parameters)
        decl.update(ex.get("decl", ()))
    else:
        params = clean_schema(tool.parameters)
        params.setdefault("type", "object")
        decl["parameters"] = params
    return decl


def _render_tools(
    tools: list[Tool], same: bool, skeleton: list[dict[str, Any]] | None
) -> list[dict[str, Any]] | None:
    decls = [_render_decl(t, same) for t in tools]
    if skeleton is None:
        return [{"functionDeclarations": decls}] if decls else None
    out: list[dict[str, Any]] = []
    pos = 0
    last_group: list[Any] | None = None
    for entry in skeleton:
        if "raw" in entry:
            out.append(entry["raw"])
            continue
        group = decls[pos : pos + entry["n"]]
        pos += len(group)
        if group or entry["n"] == 0:
            out.append({entry["key"]: group, **entry["other"]})
            last_group = group
    if pos < len(decls):
        if last_group is not None:
            last_group.extend(decls[pos:])
        else:
            out.append({"functionDeclarations": decls[pos:]})
    return out


def _render_generation(req: ChatRequest, x: dict[str, Any]) -> dict[str, Any] | None:
    snakes = x.get("snake")
    gen: dict[str, Any] = {}
    same = req.source == NAME
    if req.temperature is not None:
        temperature = req.temperature if same else clamp_temperature(req.temperature, NAME)
        if temperature != req.temperature:
            log.debug("gemini: temperature %s clamped to 0..2", req.temperature)
        gen[_k("temperature", snakes)] = temperature
    if req.top_p is not None:
        gen[_k("topP", snakes)] = req.top_p
    if req.top_k is not None:
        top_k = x.get("topK")
        gen[_k("topK", snakes)] = (
            top_k if top_k is not None and int(top_k) == req.top_k else (req.top_k)
        )
    if req.max_tokens is not None:
        gen[_k("maxOutputTokens", snakes)] = req.max_tokens
    if req.stop or x.get("stop_empty"):
        gen[_k("stopSequences", snakes)] = list(req.stop)
    raw = x.get("thinking")
    if raw is not None and _parse_thinking(raw) == req.reasoning:
        gen[_k("thinkingConfig", snakes)] = raw
    elif req.reasoning is not None:
        thinking = gemini_thinking_config(
            req.reasoning, req.model, current_table(), include_default=not same
        )
        if thinking:
            gen[_k("thinkingConfig", snakes)] = thinking
    extra = x.get("gen")
    if extra is None:
        return gen or None
    gen.update(extra)
    return gen


# ----------------------------------------------------------------------------------------------
# Responses
# ----------------------------------------------------------------------------------------------

_K_RESPONSE = frozenset({"candidates", "usageMetadata", "modelVersion", "responseId"})
_K_CANDIDATE = frozenset({"content", "finishReason"})


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    prompt = raw.get("promptTokenCount")
    candidates = raw.get("candidatesTokenCount")
    thoughts = raw.get("thoughtsTokenCount")
    output = None
    if candidates is not None or thoughts is not None:
        output = (candidates or 0) + (thoughts or 0)
    return Usage(
        input_tokens=prompt,
        output_tokens=output,
        cached_tokens=raw.get("cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )


def _usage_metadata(u: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if u.input_tokens is not None:
        out["promptTokenCount"] = u.input_tokens
    if u.output_tokens is not None:
        out["candidatesTokenCount"] = max(u.output_tokens - (u.reasoning_tokens or 0), 0)
    if u.input_tokens is not None or u.output_tokens is not None:
        out["totalTokenCount"] = (u.input_tokens or 0) + (u.output_tokens or 0)
    if u.reasoning_tokens is not None:
        out["thoughtsTokenCount"] = u.reasoning_tokens
    if u.cached_tokens is not None:
        out["cachedContentTokenCount"] = u.cached_tokens
    return out


def response_usage(body: dict[str, Any]) -> Usage:
    """The usage `parse_response` reads off `body`, without reading the rest."""
    return _usage(body.get("usageMetadata"))


def parse_response(body: dict[str, Any]) -> ChatResponse:
    """A `GenerateContentResponse` body (first candidate; the others kept in extras)."""
    if not isinstance(body, dict):
        raise ProtocolError("response body must be a JSON object")
    if "error" in body and "candidates" not in body:
        err = body["error"]
        message = err.get("message") if isinstance(err, dict) else err
        raise ProtocolError(f"gemini error response: {message}")
    response_id = body.get("responseId")
    model = body.get("modelVersion")
    ex: dict[str, Any] = {}
    _put(ex, "top", _extra(body, _K_RESPONSE))
    if not isinstance(response_id, str):
        ex["no_id"] = True
        response_id = ""
    if not isinstance(model, str):
        ex["no_model"] = True
        model = ""
    if "usageMetadata" in body:
        ex["usage"] = body["usageMetadata"]
    calls = _Calls(_salt(response_id))
    parts: list[Part] = []
    stop: StopReason = "end"
    candidates = body.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        first = candidates[0]
        _put(ex, "more", candidates[1:])
        ex["candidate"] = _extra(first, _K_CANDIDATE)
        content = first.get("content")
        raw_parts: Any = None
        if isinstance(content, dict):
            ex["content"] = _extra(content, frozenset({"parts"}))
            raw_parts = content.get("parts")
            if raw_parts is None:
                ex["no_parts"] = True
        else:
            ex["no_content"] = True
        if isinstance(raw_parts, list):
            parts = [
                _parse_part(p, calls, False, f"candidates[0].content.parts[{i}]")
                for i, p in enumerate(raw_parts)
            ]
        finish = first.get("finishReason")
        ex["finishReason"] = finish
        stop = _stop_reason(finish, any(isinstance(p, ToolCallPart) for p in parts))
    else:
        ex["candidates"] = candidates
        feedback = body.get("promptFeedback")
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            stop = "filtered"
    try:
        return ChatResponse(
            source=NAME,
            id=response_id,
            model=model,
            parts=parts,
            stop_reason=stop,
            usage=response_usage(body),
            extras=ex,
        )
    except ValueError as exc:
        raise ProtocolError(f"invalid response: {exc}") from exc


def render_response(resp: ChatResponse) -> dict[str, Any]:
    """The `GenerateContentResponse` body for `resp`."""
    same = resp.source == NAME
    x = resp.extras if same else {}
    has_call = any(isinstance(p, ToolCallPart) for p in resp.parts)
    body: dict[str, Any] = {}
    if "candidates" in x and not resp.parts:
        if x["candidates"] is not None:
            body["candidates"] = x["candidates"]
    else:
        parts = _Render(same, {}, response=True).parts(resp.parts)
        content: dict[str, Any] = {"parts": parts, "role": "model"}
        if x:
            if x.get("no_parts") and not parts:
                del content["parts"]
            if "content" in x:
                content.pop("role")
                content.update(x["content"])
        candidate: dict[str, Any] = {}
        if not (x.get("no_content") and not parts):
            candidate["content"] = content
        finish = x.get("finishReason", "")
        if finish == "" or _stop_reason(finish, has_call) != resp.stop_reason:
            finish = _FINISH_OUT.get(resp.stop_reason, "STOP")
        if finish is not None:
            candidate["finishReason"] = finish
        candidate.update(x.get("candidate", {"index": 0}))
        body["candidates"] = [candidate, *x.get("more", ())]
    raw_usage = x.get("usage")
    if raw_usage is not None and _usage(raw_usage) == resp.usage:
        body["usageMetadata"] = raw_usage
    else:
        usage = _usage_metadata(resp.usage)
        if usage:
            body["usageMetadata"] = usage
    if resp.model or not x.get("no_model"):
        body["modelVersion"] = resp.model
    if resp.id or not x.get("no_id"):
        body["responseId"] = resp.id
    if x:
        body.update(x.get("top", ()))
    return body


# ----------------------------------------------------------------------------------------------
# Streams
# ----------------------------------------------------------------------------------------------


_RAW_LIMIT = 1 << 20  # bytes kept in case the body is plain JSON (an error) rather than SSE


class StreamDecoder:
    """`alt=sse` bytes (split anywhere) -> canonical events.

    Each `data:` is a whole `GenerateContentResponse`. Text and thought parts stream into the
    current text / thinking block; a functionCall part arrives whole and becomes ToolCallStart +
    one ToolArgsDelta + BlockStop at once. There is no end marker: `close()` emits the BlockStop
    of the open block and the one `Finish` (finish reason and the latest usage seen).
    """

    __slots__ = (
        "_sse",
        "_started",
        "_rid",
        "_next",
        "_open",
        "_kind",
        "_finish",
        "_usage",
        "_calls",
        "_blocked",
        "_errored",
        "_closed",
        "_raw",
        "_seen_sse",
        "_late_sig",
    )

    def __init__(self) -> None:
        self._late_sig: str | None = None
        self._sse = SSEDecoder()
        self._started = False
        self._rid = ""
        self._next = 0
        self._open = -1
        self._kind = ""
        self._finish: Any = None
        self._usage: Any = None
        self._calls = 0
        self._blocked = False
        self._errored = False
        self._closed = False
        self._raw = bytearray()
        self._seen_sse = False

    def feed(self, data: bytes) -> list[Event]:
        if self._closed:
            return []
        if not self._seen_sse and len(self._raw) < _RAW_LIMIT:
            self._raw += data
        out: list[Event] = []
        for event in self._sse.feed(data):
            if not self._seen_sse:
                self._seen_sse = True
                self._raw = bytearray()
            self._data(event.data, out)
        return out

    def close(self) -> list[Event]:
        if self._closed:
            return []
        out: list[Event] = []
        for event in self._sse.close():
            self._seen_sse = True
            self._data(event.data, out)
        if not self._seen_sse and self._raw.strip():
            # Not SSE: a plain JSON error body, or a stream requested without alt=sse.
            self._data(self._raw.decode("utf-8", "replace"), out)
        self._raw = bytearray()
        self._closed = True
        if not self._started:
            self._started = True
            out.append(Start(id="", model=""))
        self._close_open(out)
        if self._late_sig:
            # a signature that came on a part of the answer text: kept as a signature-only
            # block at the end, so the text stays one block
            out.append(ThinkingDelta(self._next, "", self._late_sig))
            out.append(BlockStop(self._next))
            self._next += 1
        if self._finish is not None:
            stop = _stop_reason(self._finish, self._calls > 0)
        elif self._blocked:
            stop = "filtered"
        elif self._errored:
            stop = "error"
        else:
            stop = "tool_use" if self._calls else "end"
        usage = _usage(self._usage) if self._usage is not None else None
        out.append(Finish(stop_reason=stop, usage=usage))
        return out

    def _data(self, data: str, out: list[Event]) -> None:
        if not data or data == "[DONE]":
            return
        try:
            chunk = _loads(data)
        except ValueError:
            log.debug("skipping non-JSON gemini stream data: %.200r", data)
            return
        if isinstance(chunk, list):
            for item in chunk:
                self._chunk(item, out)
        else:
            self._chunk(chunk, out)

    def _chunk(self, chunk: Any, out: list[Event]) -> None:
        if not isinstance(chunk, dict):
            return
        if not self._started:
            self._started = True
            rid = chunk.get("responseId")
            self._rid = rid if isinstance(rid, str) else ""
            model = chunk.get("modelVersion")
            um = chunk.get("usageMetadata")
            start_usage = None
            if isinstance(um, dict) and um.get("promptTokenCount") is not None:
                start_usage = Usage(
                    input_tokens=um.get("promptTokenCount"),
                    cached_tokens=um.get("cachedContentTokenCount"),
                )
            out.append(
                Start(
                    id=self._rid, model=model if isinstance(model, str) else "", usage=start_usage
                )
            )
        err = chunk.get("error")
        if err is not None:
            self._error(err, out)
            return
        um = chunk.get("usageMetadata")
        if isinstance(um, dict):
            self._usage = um
        candidates = chunk.get("candidates")
        if not candidates or not isinstance(candidates, list):
            feedback = chunk.get("promptFeedback")
            if isinstance(feedback, dict) and feedback.get("blockReason"):
                self._blocked = True
            return
        candidate = candidates[0]
        if len(candidates) > 1:
            candidate = next(
                (c for c in candidates if isinstance(c, dict) and c.get("index", 0) == 0),
                candidate,
            )
        if not isinstance(candidate, dict):
            return
        content = candidate.get("content")
        if isinstance(content, dict):
            parts = content.get("parts")
            if isinstance(parts, list):
                for part in parts:
                    if isinstance(part, dict):
                        self._part(part, out)
        finish = candidate.get("finishReason")
        if finish:
            self._finish = finish

    def _error(self, err: Any, out: list[Event]) -> None:
        self._errored = True
        if isinstance(err, dict):
            code = err.get("code")
            status = code if isinstance(code, int) else 500
            message = err.get("message")
            text = message if isinstance(message, str) else _dump(err)
        else:
            status, text = 500, str(err)
        out.append(Error(message=text, status=status, kind=error_kind(status)))

    def _close_open(self, out: list[Event]) -> None:
        if self._open >= 0:
            out.append(BlockStop(self._open))
            self._open = -1
            self._kind = ""

    def _block(self, kind: str, out: list[Event]) -> int:
        if self._kind != kind:
            self._close_open(out)
            self._open = self._next
            self._next += 1
            self._kind = kind
        return self._open

    def _part(self, part: dict[str, Any], out: list[Event]) -> None:
        sig = part.get("thoughtSignature")
        if sig is None:
            sig = part.get("thought_signature")
        call = part.get("functionCall")
        if call is None:
            call = part.get("function_call")
        if isinstance(call, dict):
            self._close_open(out)
            index = self._next
            self._next += 1
            name = call.get("name")
            name = name if isinstance(name, str) else ""
            call_id = call.get("id")
            if not isinstance(call_id, str) or not call_id:
                call_id = _gen_call_id(self._calls, name, _salt(self._rid))
            self._calls += 1
            args = call.get("args")
            out.append(ToolCallStart(index, call_id, name, sig if isinstance(sig, str) else None))
            out.append(ToolArgsDelta(index, _dump(args if isinstance(args, dict) else {})))
            out.append(BlockStop(index))
            return
        text = part.get("text")
        if not isinstance(text, str):
            log.debug("gemini stream part with no canonical event: %.200r", part)
            return
        if part.get("thought") is True:
            if text or sig:
                index = self._block("thinking", out)
                out.append(ThinkingDelta(index, text, sig if isinstance(sig, str) else None))
            return
        if isinstance(sig, str) and sig:
            if self._kind == "text":
                self._late_sig = sig
            elif self._kind == "thinking":
                out.append(ThinkingDelta(self._open, "", sig))
                self._close_open(out)
            else:
                self._close_open(out)
                index = self._next
                self._next += 1
                out.append(ThinkingDelta(index, "", sig))
                out.append(BlockStop(index))
        if text:
            out.append(TextDelta(self._block("text", out), text))


_SEP = b"\r\n\r\n"


class StreamEncoder:
    """Canonical events -> the `alt=sse` bytes of `streamGenerateContent`.

    Every text / thought delta is one chunk at once; a tool call is held from ToolCallStart to its
    BlockStop (Gemini sends calls whole). A signature-only ThinkingDelta is carried on the next
    part. `Finish` (or `close()` without one) writes the last chunk with `finishReason` and
    `usageMetadata`. `include_usage` is accepted for the common interface; Gemini always reports
    usage.
    """

    __slots__ = (
        "_model",
        "_id",
        "_calls",
        "_sig",
        "_usage",
        "_done",
        "_tail",
    )

    _HEAD = b'data: {"candidates":[{"content":{"parts":['

    def __init__(self, *, model: str | None = None, include_usage: bool = False) -> None:
        self._model = model
        self._id = ""
        self._calls: dict[int, list[Any]] = {}
        self._sig: str | None = None
        self._usage = Usage()
        self._done = False
        self._tail: bytes | None = None

    def _meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        if self._model:
            meta["modelVersion"] = self._model
        if self._id:
            meta["responseId"] = self._id
        return meta

    def _chunk(self, part: dict[str, Any]) -> bytes:
        tail = self._tail
        if tail is None:
            meta = self._meta()
            rest = ("," + _dump(meta)[1:]) if meta else "}"
            tail = self._tail = ('],"role":"model"},"index":0}]' + rest).encode() + _SEP
        return self._HEAD + _dumps_bytes(part) + tail

    def feed(self, event: Event) -> bytes:
        if self._done:
            return b""
        if isinstance(event, TextDelta):
            if not event.text:
                return b""
            if self._sig is not None:
                signed = {"text": event.text, "thoughtSignature": self._sig}
                self._sig = None
                return self._chunk(signed)
            return self._chunk({"text": event.text})
        if isinstance(event, ThinkingDelta):
            if event.redacted:
                log.debug("dropping redacted thinking in gemini stream")
                return b""
            sig = event.signature if event.signature and _sig_ok(event.signature) else None
            if event.text:
                part: dict[str, Any] = {"text": event.text, "thought": True}
                if sig:
                    part["thoughtSignature"] = sig
                return self._chunk(part)
            if sig:
                self._sig = sig
            return b""
        if isinstance(event, ToolArgsDelta):
            call = self._calls.get(event.index)
            if call is not None:
                call[3].append(event.fragment)
            return b""
        if isinstance(event, ToolCallStart):
            sig = event.signature if event.signature and _sig_ok(event.signature) else None
            self._calls[event.index] = [event.id, event.name, sig, []]
            return b""
        if isinstance(event, BlockStop):
            call = self._calls.pop(event.index, None)
            return b"" if call is None else self._chunk(self._call_part(call))
        if isinstance(event, Start):
            self._id = event.id
            if not self._model:
                self._model = event.model or None
            self._usage = self._usage.merged(event.usage)
            self._tail = None
            return b""
        if isinstance(event, Finish):
            self._usage = self._usage.merged(event.usage)
            return self._final(_FINISH_OUT.get(event.stop_reason, "STOP"))
        if isinstance(event, Error):
            self._done = True
            return b"data: " + _dumps_bytes(render_error(event.status, event.message)) + _SEP
        return b""

    def close(self) -> bytes:
        if self._done:
            return b""
        return self._final("STOP")

    def _call_part(self, call: list[Any]) -> dict[str, Any]:
        call_id, name, sig, fragments = call
        fc: dict[str, Any] = {"name": name, "args": _args("".join(fragments))}
        if call_id:
            fc["id"] = call_id
        part: dict[str, Any] = {"functionCall": fc}
        if sig is None and self._sig is not None:
            sig, self._sig = self._sig, None
        if sig:
            part["thoughtSignature"] = sig
        return part

    def _final(self, finish: str) -> bytes:
        self._done = True
        parts = [self._call_part(self._calls[i]) for i in sorted(self._calls)]
        self._calls.clear()
        if self._sig is not None:
            parts.append({"text": "", "thoughtSignature": self._sig})
            self._sig = None
        content: dict[str, Any] = {"parts": parts, "role": "model"} if parts else {"role": "model"}
        chunk: dict[str, Any] = {
            "candidates": [{"content": content, "finishReason": finish, "index": 0}]
        }
        usage = _usage_metadata(self._usage)
        if usage:
            chunk["usageMetadata"] = usage
        chunk.update(self._meta())
        return b"data: " + _dumps_bytes(chunk) + _SEP


# ----------------------------------------------------------------------------------------------
# Errors, model listing
# ----------------------------------------------------------------------------------------------


def render_error(status: int, message: str) -> dict[str, Any]:
    """A Gemini error body: `{"error": {"code", "message", "status"}}`."""
    name = ERROR_STATUS.get(status) or ("INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
    return {"error": {"code": status, "message": message, "status": name}}


def models_list_response(names: list[str]) -> dict[str, Any]:
    """The `GET /v1beta/models` body listing `names`."""
    models = []
    for name in names:
        model_id = name[7:] if name.startswith("models/") else name
        models.append(
            {
                "name": f"models/{model_id}",
                "displayName": model_id,
                "supportedGenerationMethods": [
                    "generateContent",
                    "streamGenerateContent",
                    "countTokens",
                ],
            }
        )
    return {"models": models}


# ----------------------------------------------------------------------------------------------
# JSON Schema -> Gemini Schema
# ----------------------------------------------------------------------------------------------

_COPY_KEYS = (
    "title",
    "description",
    "pattern",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minProperties",
    "maxProperties",
    "example",
)
_FORMATS: dict[str, frozenset[str]] = {
    "string": frozenset({"enum", "date-time"}),
    "integer": frozenset({"int32", "int64"}),
    "number": frozenset({"float", "double"}),
}
_MAX_REF_DEPTH = 8


def clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` (any JSON Schema) reduced to what Gemini's `Schema` accepts.

    Keeps type, format (string: enum/date-time, integer: int32/int64, number: float/double),
    title, description, nullable, enum (strings only), items, properties, required (only names
    that are properties), min/max constraints, pattern, anyOf, propertyOrdering, default and
    example. `$ref`s into the document (`$defs`, `definitions`, any JSON pointer) are inlined, a
    cycle or more than 8 nested references becoming `{"type": "object"}`; `allOf` is merged,
    `oneOf` becomes `anyOf`, `const` becomes a one-value enum, `["x", "null"]` types and null
    branches of `anyOf` become `nullable`. Everything else (`additionalProperties`, `$schema`,
    `$id`, unsupported formats, ...) is dropped.
    """
    if not isinstance(schema, dict):
        return {}
    return _clean(schema, schema, ())


def _resolve(root: dict[str, Any], ref: str) -> Any:
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for token in ref[2:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


def _is_null(s: Any) -> bool:
    return isinstance(s, dict) and (
        s.get("type") == "null" or (s.get("nullable") is True and "type" not in s and len(s) == 1)
    )


def _clean(s: Any, root: dict[str, Any], refs: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(s, dict):
        return {}
    ref = s.get("$ref")
    if isinstance(ref, str):
        siblings = {k: v for k, v in s.items() if k != "$ref"}
        target = _resolve(root, ref)
        if not isinstance(target, dict) or ref in refs or len(refs) >= _MAX_REF_DEPTH:
            stub = _clean(siblings, root, refs)
            stub.setdefault("type", "object")
            return stub
        return _clean({**target, **siblings}, root, (*refs, ref))
    out: dict[str, Any] = {}
    nullable = s.get("nullable") is True
    typ = s.get("type")
    variants: list[Any] = []
    for key in ("anyOf", "oneOf"):
        value = s.get(key)
        if isinstance(value, list):
            variants.extend(value)
    if isinstance(typ, list):
        types = [t for t in typ if isinstance(t, str) and t != "null"]
        nullable = nullable or "null" in typ
        typ = types[0] if len(types) == 1 else None
        if len(types) > 1:
            variants.extend({"type": t} for t in types)
    if typ == "null":
        nullable, typ = True, None
    if isinstance(typ, str):
        out["type"] = typ
    for key in _COPY_KEYS:
        value = s.get(key)
        if value is not None:
            out[key] = value
    if "example" not in out and isinstance(s.get("examples"), list) and s["examples"]:
        out["example"] = s["examples"][0]
    if s.get("default") is not None:
        out["default"] = s["default"]
    fmt = s.get("format")
    if isinstance(fmt, str) and isinstance(typ, str) and fmt in _FORMATS.get(typ.lower(), ()):
        out["format"] = fmt
    values: Any = s.get("enum")
    if "const" in s:
        values = [s["const"]]
    if isinstance(values, list):
        if None in values:
            nullable = True
            values = [v for v in values if v is not None]
        if values and all(isinstance(v, str) for v in values):
            out["enum"] = values
            out.setdefault("type", "string")
    props = s.get("properties")
    if isinstance(props, dict):
        out["properties"] = {str(k): _clean(v, root, refs) for k, v in props.items()}
        out.setdefault("type", "object")
        required = s.get("required")
        if isinstance(required, list):
            kept = [r for r in required if isinstance(r, str) and r in props]
            if kept:
                out["required"] = kept
    ordering = s.get("propertyOrdering")
    if isinstance(ordering, list) and all(isinstance(o, str) for o in ordering):
        out["propertyOrdering"] = ordering
    items = s.get("items")
    if isinstance(items, list):
        items = items[0] if items else None
    if isinstance(items, dict):
        out["items"] = _clean(items, root, refs)
        out.setdefault("type", "array")
    elif isinstance(s.get("prefixItems"), list) and s["prefixItems"]:
        out["items"] = _clean(s["prefixItems"][0], root, refs)
        out.setdefault("type", "array")
    if variants:
        cleaned = []
        for v in variants:
            if _is_null(v):
                nullable = True
            else:
                cleaned.append(_clean(v, root, refs))
        if len(cleaned) == 1:
            for k, v in cleaned[0].items():
                if k == "nullable":
                    nullable = nullable or v is True
                else:
                    out.setdefault(k, v)
        elif cleaned:
            out["anyOf"] = cleaned
    all_of = s.get("allOf")
    if isinstance(all_of, list):
        for sub in all_of:
            merged = _clean(sub, root, refs)
            for k, v in merged.items():
                if k == "properties" and isinstance(out.get(k), dict):
                    out[k] = {**v, **out[k]}
                elif k == "required" and isinstance(out.get(k), list):
                    out[k] = out[k] + [r for r in v if r not in out[k]]
                elif k == "nullable":
                    nullable = nullable or v is True
                else:
                    out.setdefault(k, v)
    if nullable:
        out["nullable"] = True
    return out
