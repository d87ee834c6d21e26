"""The OpenAI Chat Completions wire protocol (`POST /v1/chat/completions`).

Owns the conversion between the canonical form and the Chat Completions request body, the
`chat.completion` response object, its SSE stream of `chat.completion.chunk` objects and its
error body. Also understands the dialects of OpenAI-compatible servers: DeepSeek/vLLM
`reasoning_content` and OpenRouter `reasoning` (message text and the request's reasoning
object), vLLM `top_k` and `stop_reason`.

Lossless round trip: what the canonical form has no place for is kept in the `extras` of the
nearest canonical object. Keys of `extras` are either wire fields exactly as they came (written
back only when the target is OpenAI again, never over a value the canonical form gives), or
markers that start with `_` and remember the shape of the original (a string content instead of
a list of parts, `max_completion_tokens` instead of `max_tokens` ...). The marker names are in
`_MARKERS`; nothing else starting with `_` is special.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any, Final, Literal, cast

from pydantic import ValidationError

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
from protocol.openai_usage import CHAT, patched_usage, read_usage
from protocol.reasoning import (
    clamp_temperature,
    current_table,
    openai_effort,
    openrouter_reasoning,
)
from protocol.sse import SSEDecoder
from protocol.wire import copy_json as _copy_json
from protocol.wire import dumps as _dumps
from protocol.wire import dumps_bytes as _dumps_bytes
from protocol.wire import is_int as _is_int
from protocol.wire import is_num as _is_num
from protocol.wire import json_str as _json_str
from protocol.wire import loads as _loads
from protocol.wire import new_id as _new_id
from protocol.wire import overlay
from protocol.wire import rest as _rest

NAME: ProtocolName = "openai"

Dialect = Literal["openai", "openrouter"]
"""How a converted request is rendered: OpenAI's own fields or OpenRouter's."""

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# Markers kept in `extras` (never written to the wire as fields)
# ----------------------------------------------------------------------------------------------
_STR: Final = "_str"  # content was a plain string
_NULL: Final = "_null"  # content was null
_NO_CONTENT: Final = "_no_content"  # content key was absent
_MSG: Final = "_msg"  # first part of a leading system message: the message minus its content
_EMPTY: Final = "_empty"  # placeholder part of a system message whose content list was empty
_ROLE: Final = "_role"  # the wire role when it is not the canonical one (`developer`)
_WHOLE: Final = "_whole"  # a message kept verbatim (legacy `function` role)
_NO_TYPE: Final = "_no_type"  # `type` key was absent (tool, tool call)
_FUNCTION: Final = "_function"  # unknown keys of a tool call's `function` object
_TOOL: Final = "_tool"  # unknown keys of a tool definition (outside `function`)
_NO_PARAMS: Final = "_no_params"  # a tool without `parameters`
_IMAGE_URL: Final = "_image_url"  # unknown keys of an `image_url` object
_IMAGE_STR: Final = "_image_str"  # `image_url` was a bare string
_RAW: Final = "_raw"  # a tool message's content list as it came (had non-text parts)
_EMPTY_CALLS: Final = "_empty_calls"  # assistant `tool_calls: []`
_STOP_STR: Final = "_stop_str"  # `stop` was a string
_MAX_KEY: Final = "_max_tokens_key"  # which key carried max_tokens
_STREAM_FALSE: Final = "_stream_false"  # `stream: false` was explicit
_STREAM_OPTIONS: Final = "_stream_options"  # the stream_options object as it came
_EFFORT: Final = "_effort"  # `reasoning_effort` value the canonical enum lacks ("max")
_REASONING: Final = "_reasoning"  # the OpenRouter `reasoning` object as it came
_EFFORT_KEY: Final = "_effort_key"  # `reasoning_effort` was present
_NO_TOOL_CHOICE: Final = "_no_tool_choice"  # ToolChoice made only for parallel_tool_calls
_OTHER_TOOLS: Final = "_other_tools"  # [(position, tool)] for non-function tools
_TOP_K: Final = "_top_k"  # top_k came in the body (vLLM/OpenRouter)
_CHOICE: Final = "_choice"  # response: choice keys other than message/finish_reason
_MESSAGE: Final = "_message"  # response: message keys the canonical form has no place for
_FINISH: Final = "_finish"  # response: finish_reason as it came when it renders differently
_USAGE: Final = "_usage"  # response: the usage object as it came
_ABSENT: Final = "_absent"  # response: standard keys the original lacked
_REST: Final = "_choices_rest"  # response: choices after the first
_CONTENT_LIST: Final = "_content_list"  # response: message content was a list of parts
_KEY: Final = "_key"  # ThinkingPart: the field it came in (`reasoning_content` / `reasoning`)

_MARKERS: Final = frozenset(
    {
        _STR, _NULL, _NO_CONTENT, _MSG, _EMPTY, _ROLE, _WHOLE, _NO_TYPE, _FUNCTION, _TOOL,
        _NO_PARAMS, _IMAGE_URL, _IMAGE_STR, _RAW, _EMPTY_CALLS, _STOP_STR, _MAX_KEY,
        _STREAM_FALSE, _STREAM_OPTIONS, _EFFORT, _REASONING, _EFFORT_KEY, _NO_TOOL_CHOICE,
        _OTHER_TOOLS, _TOP_K, _CHOICE, _MESSAGE, _FINISH, _USAGE, _ABSENT, _REST,
        _CONTENT_LIST, _KEY,
    }
)  # fmt: skip

_EFFORTS: Final = frozenset({"none", "minimal", "low", "medium", "high", "xhigh"})
_EFFORT_ALIAS: Final = {"max": "xhigh"}
_DATA_URL: Final = re.compile(r"data:([^;,]+);base64,(.*)", re.S)
_DEFAULT_PARAMS: Final = {"type": "object", "properties": {}}
_MAX_STOP: Final = 4

_FINISH_OUT: Final[dict[str, str]] = {
    "end": "stop",
    "stop": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "filtered": "content_filter",
    "loop_halted": "stop",
    "error": "stop",
}
_FINISH_IN: Final[dict[str, StopReason]] = {
    "stop": "end",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "filtered",
    "error": "error",
}

_TOP_KEYS: Final = frozenset(
    {
        "model", "messages", "tools", "tool_choice", "parallel_tool_calls", "temperature",
        "top_p", "top_k", "stop", "max_tokens", "max_completion_tokens", "reasoning_effort",
        "reasoning", "stream", "stream_options",
    }
)  # fmt: skip


def _overlay(out: dict[str, Any], extras: dict[str, Any]) -> dict[str, Any]:
    return overlay(out, extras, _MARKERS)


# ==============================================================================================
# Requests
# ==============================================================================================


def drop_stray_fields(body: dict[str, Any]) -> list[str]:
    """Remove, in place, fields some clients add that the API rejects; what was removed.

    Codex 0.94 sends each function tool's `name` beside its `function` too
    (`{"type": "function", "name": "shell", "function": {"name": "shell", ...}}`); OpenAI
    answers `Unknown parameter: 'tools[0].name'`, so the copy goes (the name is kept in
    `function`).
    """
    removed: list[str] = []
    tools = body.get("tools")
    if isinstance(tools, list):
        for i, tool in enumerate(tools):
            if isinstance(tool, dict) and "name" in tool and isinstance(tool.get("function"), dict):
                del tool["name"]
                removed.append(f"tools[{i}].name")
    return removed


def parse_request(
    body: dict[str, Any],
    *,
    model: str | None = None,
    stream: bool | None = None,
    **_: Any,
) -> ChatRequest:
    """A Chat Completions request body as a `ChatRequest` (raises `ProtocolError`)."""
    if not isinstance(body, dict):
        raise ProtocolError("request body must be a JSON object")
    try:
        return _parse_request(body, model, stream)
    except ProtocolError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        if isinstance(exc, ValidationError) and exc.errors():
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ProtocolError(f"invalid request: {where}: {first['msg']}") from exc
        raise ProtocolError(f"invalid request: {exc}") from exc


def _parse_request(body: dict[str, Any], model: str | None, stream: bool | None) -> ChatRequest:
    extras: dict[str, Any] = _rest(body, _TOP_KEYS)
    name = body.get("model")
    if model is None:
        if name is None:
            raise ProtocolError("'model' is required")
        if not isinstance(name, str):
            raise ProtocolError("'model' must be a string")
        model = name

    if "messages" not in body:
        raise ProtocolError("'messages' is required")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise ProtocolError("'messages' must be an array")
    if not messages:
        raise ProtocolError("'messages' must contain at least one message")
    system, msgs = _parse_messages(messages)

    req: dict[str, Any] = {
        "source": NAME,
        "model": model,
        "system": system,
        "messages": msgs,
        "extras": extras,
    }

    def null_or(key: str) -> Any:
        """The value of `key`, or None (a null is kept verbatim in extras)."""
        value = body.get(key)
        if value is None and key in body:
            extras[key] = None
        return value

    for key in ("temperature", "top_p"):
        value = null_or(key)
        if value is not None:
            if not _is_num(value):
                raise ProtocolError(f"'{key}' must be a number")
            req[key] = value

    top_k = null_or("top_k")
    if top_k is not None:
        if _is_int(top_k):
            req["top_k"] = top_k
            extras[_TOP_K] = True
        else:
            extras["top_k"] = top_k

    max_new = null_or("max_completion_tokens")
    max_old = null_or("max_tokens")
    for key, value in (("max_completion_tokens", max_new), ("max_tokens", max_old)):
        if value is not None and not _is_int(value):
            raise ProtocolError(f"'{key}' must be an integer")
    if max_new is not None:
        req["max_tokens"] = max_new
        extras[_MAX_KEY] = "max_completion_tokens"
        if max_old is not None:
            extras["max_tokens"] = max_old
    elif max_old is not None:
        req["max_tokens"] = max_old

    stop = null_or("stop")
    if isinstance(stop, str):
        req["stop"] = [stop]
        extras[_STOP_STR] = True
    elif isinstance(stop, list):
        if not all(isinstance(s, str) for s in stop):
            raise ProtocolError("'stop' must be a string or an array of strings")
        if stop:
            req["stop"] = list(stop)
        else:
            extras["stop"] = []
    elif stop is not None:
        raise ProtocolError("'stop' must be a string or an array of strings")

    value = null_or("stream")
    if value is not None:
        if not isinstance(value, bool):
            raise ProtocolError("'stream' must be a boolean")
        req["stream"] = value
        if not value:
            extras[_STREAM_FALSE] = True
    if stream is not None:
        req["stream"] = stream
    options = null_or("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise ProtocolError("'stream_options' must be an object")
        extras[_STREAM_OPTIONS] = _copy_json(options)
        req["include_usage"] = options.get("include_usage") is True

    req["reasoning"] = _parse_reasoning(extras, null_or)
    tools = null_or("tools")
    if tools is not None:
        req["tools"] = _parse_tools(tools, extras)
    req["tool_choice"] = _parse_tool_choice(extras, null_or)
    return ChatRequest(**req)


def _parse_reasoning(extras: dict[str, Any], null_or: Callable[[str], Any]) -> Reasoning | None:
    effort = null_or("reasoning_effort")
    robj = null_or("reasoning")
    if effort is None and robj is None:
        return None
    fields: dict[str, Any] = {}
    if effort is not None:
        if not isinstance(effort, str):
            raise ProtocolError("'reasoning_effort' must be a string")
        extras[_EFFORT_KEY] = True
        fields["effort"] = _effort_in(effort, extras)
    if robj is not None:
        if not isinstance(robj, dict):
            raise ProtocolError("'reasoning' must be an object")
        extras[_REASONING] = _copy_json(robj)
        eff = robj.get("effort")
        if isinstance(eff, str):
            if effort is not None and eff != effort:
                extras["reasoning_effort"] = effort  # both given and different: keep it as is
                extras.pop(_EFFORT_KEY)
            fields["effort"] = eff if eff in _EFFORTS else _EFFORT_ALIAS.get(eff)
        budget = robj.get("max_tokens")
        if _is_int(budget):
            fields["budget_tokens"] = budget
        exclude = robj.get("exclude")
        if isinstance(exclude, bool):
            fields["include_thoughts"] = not exclude
        enabled = robj.get("enabled")
        if isinstance(enabled, bool):
            fields["enabled"] = enabled
    return Reasoning(**fields)


def _effort_in(effort: str, extras: dict[str, Any]) -> str | None:
    if effort in _EFFORTS:
        return effort
    extras[_EFFORT] = effort
    return _EFFORT_ALIAS.get(effort)


def _parse_tools(tools: Any, extras: dict[str, Any]) -> list[Tool]:
    if not isinstance(tools, list):
        raise ProtocolError("'tools' must be an array")
    if not tools:
        extras["tools"] = []
        return []
    out: list[Tool] = []
    others: list[tuple[int, Any]] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise ProtocolError(f"'tools[{i}]' must be an object")
        kind = tool.get("type", "function")
        if kind != "function":
            others.append((i, tool))
            continue
        fn = tool.get("function")
        if not isinstance(fn, dict):
            raise ProtocolError(f"'tools[{i}].function' must be an object")
        name = fn.get("name")
        if not isinstance(name, str):
            raise ProtocolError(f"'tools[{i}].function.name' must be a string")
        t_extras = _rest(fn, {"name", "description", "parameters"})
        fields: dict[str, Any] = {"name": name, "extras": t_extras}
        desc = fn.get("description")
        if isinstance(desc, str):
            fields["description"] = desc
        elif "description" in fn:
            t_extras["description"] = desc
        params = fn.get("parameters")
        if isinstance(params, dict):
            fields["parameters"] = params
        else:
            t_extras[_NO_PARAMS] = True
            if "parameters" in fn:
                if params is not None:
                    raise ProtocolError(f"'tools[{i}].function.parameters' must be an object")
                t_extras["parameters"] = None
        if "type" not in tool:
            t_extras[_NO_TYPE] = True
        outer = _rest(tool, {"type", "function"})
        if outer:
            t_extras[_TOOL] = outer
        out.append(Tool(**fields))
    if others:
        extras[_OTHER_TOOLS] = others
    return out


def _parse_tool_choice(extras: dict[str, Any], null_or: Callable[[str], Any]) -> ToolChoice | None:
    raw = null_or("tool_choice")
    parallel = null_or("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise ProtocolError("'parallel_tool_calls' must be a boolean")
    choice: ToolChoice | None = None
    if raw in ("auto", "none", "required"):
        choice = ToolChoice(mode=raw)
    elif (
        isinstance(raw, dict)
        and raw.keys() == {"type", "function"}
        and raw["type"] == "function"
        and isinstance(raw["function"], dict)
        and raw["function"].keys() == {"name"}
        and isinstance(raw["function"]["name"], str)
    ):
        choice = ToolChoice(mode="tool", name=raw["function"]["name"])
    elif raw is not None:
        if not isinstance(raw, str | dict):
            raise ProtocolError("'tool_choice' must be a string or an object")
        extras["tool_choice"] = raw  # allowed_tools, custom tools, unknown: kept verbatim
    if parallel is not None:
        if choice is None:
            choice = ToolChoice(mode="auto")
            extras[_NO_TOOL_CHOICE] = True
        choice.parallel = parallel
    return choice


def _parse_messages(raw: list[Any]) -> tuple[list[TextPart], list[Message]]:
    system: list[TextPart] = []
    msgs: list[Message] = []
    names: dict[str, str] = {}  # tool call id -> function name, for tool results
    leading = True
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise ProtocolError(f"'{where}' must be an object")
        role = msg.get("role")
        if role in ("system", "developer"):
            if leading:
                system.extend(_leading_system(msg, where))
                continue
            msgs.append(_system_message(msg, where))
            continue
        leading = False
        if role == "user":
            msgs.append(_user_message(msg, where))
        elif role == "assistant":
            msgs.append(_assistant_message(msg, where, names))
        elif role == "tool":
            msgs.append(_tool_message(msg, where, names))
        elif role == "function":
            msgs.append(
                Message(
                    role="tool",
                    content=[OpaquePart(protocol=NAME, data=msg)],
                    extras={_WHOLE: True},
                )
            )
        elif "role" not in msg:
            raise ProtocolError(f"'{where}.role' is required")
        else:
            raise ProtocolError(f"'{where}.role' has an unknown value {role!r}")
    return system, msgs


def _text_parts(content: Any, where: str) -> list[TextPart]:
    """Content that may only hold text parts (system, developer)."""
    if isinstance(content, str):
        return [TextPart(text=content, extras={_STR: True})]
    if not isinstance(content, list):
        raise ProtocolError(f"'{where}.content' must be a string or an array of text parts")
    out: list[TextPart] = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text":
            raise ProtocolError(f"'{where}.content[{j}]' must be a text part")
        out.append(_text_part(part, f"{where}.content[{j}]"))
    return out


def _text_part(part: dict[str, Any], where: str) -> TextPart:
    text = part.get("text")
    if not isinstance(text, str):
        raise ProtocolError(f"'{where}.text' must be a string")
    return TextPart(text=text, extras=_rest(part, {"type", "text"}))


def _leading_system(msg: dict[str, Any], where: str) -> list[TextPart]:
    if "content" not in msg:
        raise ProtocolError(f"'{where}.content' is required")
    parts = _text_parts(msg["content"], where)
    if not parts:
        parts = [TextPart(text="", extras={_EMPTY: True})]
    parts[0].extras[_MSG] = _rest(msg, {"content"})
    return parts


def _system_message(msg: dict[str, Any], where: str) -> Message:
    if "content" not in msg:
        raise ProtocolError(f"'{where}.content' is required")
    parts = _text_parts(msg["content"], where)
    extras = _rest(msg, {"role", "content", "name"})
    if msg["role"] != "system":
        extras[_ROLE] = msg["role"]
    if parts and parts[0].extras.pop(_STR, False):
        extras[_STR] = True
    return Message(
        role="system", content=cast(list[Part], parts), extras=extras, **_name(msg, extras)
    )


def _name(msg: dict[str, Any], extras: dict[str, Any]) -> dict[str, Any]:
    if "name" not in msg:
        return {}
    if isinstance(msg["name"], str):
        return {"name": msg["name"]}
    extras["name"] = msg["name"]
    return {}


def _user_message(msg: dict[str, Any], where: str) -> Message:
    if "content" not in msg:
        raise ProtocolError(f"'{where}.content' is required")
    content = msg["content"]
    extras = _rest(msg, {"role", "content", "name"})
    parts: list[Part] = []
    if isinstance(content, str):
        parts.append(TextPart(text=content))
        extras[_STR] = True
    elif isinstance(content, list):
        for j, part in enumerate(content):
            parts.append(_user_part(part, f"{where}.content[{j}]"))
    else:
        raise ProtocolError(f"'{where}.content' must be a string or an array of content parts")
    return Message(role="user", content=parts, extras=extras, **_name(msg, extras))


def _user_part(part: Any, where: str) -> Part:
    if not isinstance(part, dict):
        raise ProtocolError(f"'{where}' must be an object")
    kind = part.get("type")
    if kind == "text":
        return _text_part(part, where)
    if kind == "image_url":
        return _image_part(part, where)
    if not isinstance(kind, str):
        raise ProtocolError(f"'{where}.type' must be a string")
    return OpaquePart(protocol=NAME, data=part)  # input_audio, file, and what servers add


def _image_part(part: dict[str, Any], where: str) -> ImagePart:
    extras = _rest(part, {"type", "image_url"})
    spec = part.get("image_url")
    if isinstance(spec, str):
        url: Any = spec
        extras[_IMAGE_STR] = True
    elif isinstance(spec, dict):
        url = spec.get("url")
        detail = spec.get("detail")
        if "detail" in spec:
            extras["detail"] = detail
        more = _rest(spec, {"url", "detail"})
        if more:
            extras[_IMAGE_URL] = more
    else:
        raise ProtocolError(f"'{where}.image_url' must be an object")
    if not isinstance(url, str):
        raise ProtocolError(f"'{where}.image_url.url' must be a string")
    match = _DATA_URL.fullmatch(url)
    if match:
        return ImagePart(media_type=match.group(1), data=match.group(2), extras=extras)
    return ImagePart(url=url, extras=extras)


def _assistant_message(msg: dict[str, Any], where: str, names: dict[str, str]) -> Message:
    extras = _rest(msg, {"role", "content", "name", "tool_calls", "reasoning_content", "reasoning"})
    parts: list[Part] = []
    for key in ("reasoning_content", "reasoning"):
        if key in msg:
            value = msg[key]
            if isinstance(value, str):
                parts.append(ThinkingPart(text=value, extras={_KEY: key}))
            else:
                extras[key] = value  # null, or OpenRouter structures: verbatim
    if "content" not in msg:
        extras[_NO_CONTENT] = True
    else:
        content = msg["content"]
        if content is None:
            extras[_NULL] = True
        elif isinstance(content, str):
            parts.append(TextPart(text=content))
            extras[_STR] = True
        elif isinstance(content, list):
            if not content:
                extras[_EMPTY] = True
            for j, part in enumerate(content):
                pw = f"{where}.content[{j}]"
                if not isinstance(part, dict):
                    raise ProtocolError(f"'{pw}' must be an object")
                if part.get("type") == "text":
                    parts.append(_text_part(part, pw))
                else:
                    parts.append(OpaquePart(protocol=NAME, data=part))  # refusal
        else:
            raise ProtocolError(f"'{where}.content' must be a string, an array or null")
    calls = msg.get("tool_calls")
    if isinstance(calls, list):
        if not calls:
            extras[_EMPTY_CALLS] = True
        for j, call in enumerate(calls):
            parts.append(_tool_call(call, f"{where}.tool_calls[{j}]", names))
    elif calls is not None:
        raise ProtocolError(f"'{where}.tool_calls' must be an array")
    elif "tool_calls" in msg:
        extras["tool_calls"] = None
    return Message(role="assistant", content=parts, extras=extras, **_name(msg, extras))


def _tool_call(call: Any, where: str, names: dict[str, str]) -> Part:
    if not isinstance(call, dict):
        raise ProtocolError(f"'{where}' must be an object")
    kind = call.get("type", "function")
    if kind != "function":
        return OpaquePart(protocol=NAME, data=call)  # custom tool calls
    call_id = call.get("id")
    fn = call.get("function")
    if not isinstance(call_id, str):
        raise ProtocolError(f"'{where}.id' must be a string")
    if not isinstance(fn, dict):
        raise ProtocolError(f"'{where}.function' must be an object")
    name, args = fn.get("name"), fn.get("arguments")
    if not isinstance(name, str):
        raise ProtocolError(f"'{where}.function.name' must be a string")
    if not isinstance(args, str):
        raise ProtocolError(f"'{where}.function.arguments' must be a string")
    extras = _rest(call, {"id", "type", "function"})
    if "type" not in call:
        extras[_NO_TYPE] = True
    more = _rest(fn, {"name", "arguments"})
    if more:
        extras[_FUNCTION] = more
    names[call_id] = name
    return ToolCallPart(id=call_id, name=name, arguments=args, extras=extras)


def _tool_message(msg: dict[str, Any], where: str, names: dict[str, str]) -> Message:
    call_id = msg.get("tool_call_id")
    if not isinstance(call_id, str):
        raise ProtocolError(f"'{where}.tool_call_id' must be a string")
    if "content" not in msg:
        raise ProtocolError(f"'{where}.content' is required")
    content = msg["content"]
    extras = _rest(msg, {"role", "content", "tool_call_id"})
    p_extras: dict[str, Any] = {}
    parts: list[TextPart | ImagePart] = []
    if isinstance(content, str):
        parts.append(TextPart(text=content))
        p_extras[_STR] = True
    elif isinstance(content, list):
        for j, part in enumerate(content):
            pw = f"{where}.content[{j}]"
            if not isinstance(part, dict):
                raise ProtocolError(f"'{pw}' must be an object")
            kind = part.get("type")
            if kind == "text":
                parts.append(_text_part(part, pw))
            elif kind == "image_url":
                parts.append(_image_part(part, pw))
            else:
                p_extras[_RAW] = content  # parts the canonical form cannot hold: keep the list
    else:
        raise ProtocolError(f"'{where}.content' must be a string or an array of content parts")
    name = names.get(call_id)
    if name is None and isinstance(msg.get("name"), str):
        name = msg["name"]
    result = ToolResultPart(call_id=call_id, name=name, content=parts, extras=p_extras)
    return Message(role="tool", content=[result], extras=extras)


# ----------------------------------------------------------------------------------------------


def render_request(req: ChatRequest, *, dialect: Dialect = "openai") -> dict[str, Any]:
    """The Chat Completions body for `req` (lossless when `req.source` is OpenAI).

    `dialect="openrouter"` renders a converted request's reasoning as OpenRouter's `reasoning`
    object (a budget stays a budget) and keeps `top_k`; `openai` renders `reasoning_effort`
    (a budget becomes the nearest effort). Both from `protocol.reasoning`'s table.
    """
    same = req.source == NAME
    extras = req.extras if same else {}
    out: dict[str, Any] = {"model": req.model, "messages": _render_messages(req, same)}

    tools = [_render_tool(t, same) for t in req.tools]
    if same and _OTHER_TOOLS in extras:
        for pos, tool in extras[_OTHER_TOOLS]:
            tools.insert(min(pos, len(tools)), tool)
    if tools:
        out["tools"] = tools
    tc = req.tool_choice
    if tc is not None and (same or tools):
        if not (same and extras.get(_NO_TOOL_CHOICE) and tc.mode == "auto"):
            if tc.mode == "tool" and tc.name:
                out["tool_choice"] = {"type": "function", "function": {"name": tc.name}}
            else:
                out["tool_choice"] = "required" if tc.mode == "tool" else tc.mode
        if tc.parallel is not None:
            out["parallel_tool_calls"] = tc.parallel

    if req.temperature is not None:
        out["temperature"] = req.temperature
        if not same:
            out["temperature"] = clamp_temperature(req.temperature, NAME)
            if out["temperature"] != req.temperature:
                log.debug("openai: temperature %s clamped to 0..2", req.temperature)
    if req.top_p is not None:
        out["top_p"] = req.top_p
    if req.top_k is not None:
        if (same and extras.get(_TOP_K)) or (not same and dialect == "openrouter"):
            out["top_k"] = req.top_k
        else:
            log.debug("openai: top_k %s dropped (no such parameter)", req.top_k)
    if req.max_tokens is not None:
        out[extras.get(_MAX_KEY, "max_tokens")] = req.max_tokens
    if req.stop:
        if same and extras.get(_STOP_STR) and len(req.stop) == 1:
            out["stop"] = req.stop[0]
        elif not same and len(req.stop) > _MAX_STOP:
            log.debug("openai: stop sequences beyond the first %d dropped", _MAX_STOP)
            out["stop"] = req.stop[:_MAX_STOP]
        else:
            out["stop"] = list(req.stop)
    if req.reasoning is not None:
        _render_reasoning(req.reasoning, extras, same, out, dialect)

    if req.stream:
        out["stream"] = True
    elif extras.get(_STREAM_FALSE):
        out["stream"] = False
    options = extras.get(_STREAM_OPTIONS)
    if isinstance(options, dict):
        options = _copy_json(options)
        if req.include_usage or options.get("include_usage") is True:
            options["include_usage"] = req.include_usage
        out["stream_options"] = options
    elif req.include_usage and req.stream:
        out["stream_options"] = {"include_usage": True}
    return _overlay(out, extras) if same else out


def _render_reasoning(
    r: Reasoning, extras: dict[str, Any], same: bool, out: dict[str, Any], dialect: Dialect
) -> None:
    if same and (_REASONING in extras or _EFFORT_KEY in extras):
        _render_own_reasoning(r, extras, out)
        return
    if dialect == "openrouter":
        robj = openrouter_reasoning(r, current_table())
        if robj is not None:
            out["reasoning"] = robj
        return
    effort = openai_effort(r, current_table())
    if effort is not None:
        out["reasoning_effort"] = effort


def _render_own_reasoning(r: Reasoning, extras: dict[str, Any], out: dict[str, Any]) -> None:
    """The client's own `reasoning_effort` / `reasoning` fields, with the canonical edits."""
    raw_effort = extras.get(_EFFORT)
    effort: str | None = r.effort
    if raw_effort is not None and _EFFORT_ALIAS.get(raw_effort) == r.effort:
        effort = raw_effort
    robj = extras.get(_REASONING)
    if isinstance(robj, dict):
        robj = _copy_json(robj)
        raw = robj.get("effort")
        if r.effort is not None and ("effort" in robj or _EFFORT_KEY not in extras):
            robj["effort"] = (
                raw if raw in _EFFORT_ALIAS and _EFFORT_ALIAS[raw] == r.effort else r.effort
            )
        elif r.effort is None and (raw in _EFFORTS or raw in _EFFORT_ALIAS):
            del robj["effort"]  # the canonical effort was cleared (a session budget)
        if r.budget_tokens is not None:
            robj["max_tokens"] = r.budget_tokens
        elif _is_int(robj.get("max_tokens")):
            del robj["max_tokens"]  # the canonical budget was cleared (a session effort)
        if r.include_thoughts is not None:
            robj["exclude"] = not r.include_thoughts
        if r.enabled is not None:
            robj["enabled"] = r.enabled
        out["reasoning"] = robj
    if _EFFORT_KEY not in extras:
        return
    if effort is not None:
        out["reasoning_effort"] = effort
    elif r.budget_tokens is not None and not isinstance(robj, dict):
        derived = openai_effort(r, current_table())  # a session budget replaced the effort
        if derived is not None:
            out["reasoning_effort"] = derived
    elif raw_effort is not None and raw_effort not in _EFFORT_ALIAS:
        out["reasoning_effort"] = raw_effort


def _render_tool(tool: Tool, same: bool) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        fn["description"] = tool.description
    ex = tool.extras if same else {}
    if not (ex.get(_NO_PARAMS) and tool.parameters == _DEFAULT_PARAMS):
        fn["parameters"] = tool.parameters
    if not same:
        return {"type": "function", "function": fn}
    _overlay(fn, ex)
    out: dict[str, Any] = {} if ex.get(_NO_TYPE) else {"type": "function"}
    out["function"] = fn
    return _overlay(out, ex.get(_TOOL, {}))


def _render_messages(req: ChatRequest, same: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if req.system:
        if same:
            out.extend(_render_leading_system(req.system))
        else:
            out.append({"role": "system", "content": req.system_text()})
    for msg in req.messages:
        if same:
            _render_same(msg, out)
        else:
            _render_converted(msg, out)
    return out


def _render_leading_system(parts: list[TextPart]) -> list[dict[str, Any]]:
    groups: list[tuple[dict[str, Any], list[TextPart]]] = []
    for part in parts:
        meta = part.extras.get(_MSG)
        if meta is not None or not groups:
            groups.append((meta if meta is not None else {"role": "system"}, []))
        groups[-1][1].append(part)
    out: list[dict[str, Any]] = []
    for meta, group in groups:
        msg = {"role": meta.get("role", "system")}
        if len(group) == 1 and group[0].extras.get(_EMPTY) and not group[0].text:
            msg["content"] = []
        elif len(group) == 1 and (group[0].extras.get(_STR) or _MSG not in group[0].extras):
            msg["content"] = group[0].text
        else:
            msg["content"] = [_render_text(p, True) for p in group]
        out.append(_overlay(msg, meta))
    return out


def _render_text(part: TextPart, same: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "text", "text": part.text}
    return _overlay(out, part.extras) if same else out


def _render_image(part: ImagePart, same: bool) -> dict[str, Any] | None:
    if part.data is not None:
        url = f"data:{part.media_type or 'image/png'};base64,{part.data}"
    elif part.url is not None:
        url = part.url
    else:
        return None
    if not same:
        return {"type": "image_url", "image_url": {"url": url}}
    ex = part.extras
    spec: Any
    if ex.get(_IMAGE_STR):
        spec = url
    else:
        spec = {"url": url}
        if "detail" in ex:
            spec["detail"] = ex["detail"]
        _overlay(spec, ex.get(_IMAGE_URL, {}))
    out = {"type": "image_url", "image_url": spec}
    for key, value in ex.items():
        if key not in out and key not in _MARKERS and key != "detail":
            out[key] = value
    return out


def _render_same(msg: Message, out: list[dict[str, Any]]) -> None:
    ex = msg.extras
    if ex.get(_WHOLE) and len(msg.content) == 1 and isinstance(msg.content[0], OpaquePart):
        out.append(msg.content[0].data)
        return
    if msg.role == "tool" or (msg.role == "user" and _has_results(msg)):
        _render_results(msg, out, True)
        if msg.role == "tool" or all(isinstance(p, ToolResultPart) for p in msg.content):
            return
    wire: dict[str, Any] = {"role": ex.get(_ROLE, msg.role)}
    if msg.role == "assistant":
        _assistant_same(msg, wire)
    else:
        content: list[dict[str, Any]] = []
        texts = 0
        for part in msg.content:
            if isinstance(part, TextPart):
                content.append(_render_text(part, True))
                texts += 1
            elif isinstance(part, ImagePart):
                image = _render_image(part, True)
                if image is not None:
                    content.append(image)
            elif isinstance(part, OpaquePart) and part.protocol == NAME:
                content.append(part.data)
        if ex.get(_STR) and texts == 1 and len(content) == 1:
            wire["content"] = content[0]["text"]
        else:
            wire["content"] = content
    if msg.name is not None:
        wire["name"] = msg.name
    out.append(_overlay(wire, ex))


def _has_results(msg: Message) -> bool:
    return any(isinstance(p, ToolResultPart) for p in msg.content)


def _assistant_same(msg: Message, wire: dict[str, Any]) -> None:
    ex = msg.extras
    content: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    texts = 0
    for part in msg.content:
        if isinstance(part, ThinkingPart):
            key = part.extras.get(_KEY, "reasoning_content")
            wire[key] = wire.get(key, "") + part.text
        elif isinstance(part, TextPart):
            content.append(_render_text(part, True))
            texts += 1
        elif isinstance(part, ToolCallPart):
            calls.append(_render_call(part, True))
        elif isinstance(part, OpaquePart) and part.protocol == NAME:
            if "id" in part.data and part.data.get("type") not in ("text", "refusal"):
                calls.append(part.data)
            else:
                content.append(part.data)
    if content:
        if ex.get(_STR) and texts == 1 and len(content) == 1:
            wire["content"] = content[0]["text"]
        else:
            wire["content"] = content
    elif ex.get(_NO_CONTENT):
        pass
    elif ex.get(_NULL):
        wire["content"] = None
    elif ex.get(_EMPTY):
        wire["content"] = []
    else:
        wire["content"] = None if calls else ""
    if calls or ex.get(_EMPTY_CALLS):
        wire["tool_calls"] = calls


def _render_call(part: ToolCallPart, same: bool) -> dict[str, Any]:
    fn = {"name": part.name, "arguments": part.arguments}
    if not same:
        return {"id": part.id, "type": "function", "function": fn}
    ex = part.extras
    _overlay(fn, ex.get(_FUNCTION, {}))
    out: dict[str, Any] = {"id": part.id}
    if not ex.get(_NO_TYPE):
        out["type"] = "function"
    out["function"] = fn
    return _overlay(out, ex)


def _render_results(msg: Message, out: list[dict[str, Any]], same: bool) -> None:
    for part in msg.content:
        if not isinstance(part, ToolResultPart):
            continue
        wire: dict[str, Any] = {"role": "tool", "tool_call_id": part.call_id}
        ex = part.extras if same else {}
        if _RAW in ex:
            wire["content"] = ex[_RAW]
        elif same and not (ex.get(_STR) and len(part.content) == 1):
            wire["content"] = [
                p for p in (
                    _render_text(c, True) if isinstance(c, TextPart) else _render_image(c, True)
                    for c in part.content
                ) if p is not None
            ]  # fmt: skip
        else:
            texts = [c.text for c in part.content if isinstance(c, TextPart)]
            if len(texts) != len(part.content):
                log.debug("openai: images in the result of tool call %s dropped", part.call_id)
            wire["content"] = "\n".join(texts)
        if same and msg.role == "tool":
            _overlay(wire, msg.extras)
        out.append(wire)


def _render_converted(msg: Message, out: list[dict[str, Any]]) -> None:
    if msg.role == "system":
        out.append({"role": "system", "content": msg.text()})
        return
    if msg.role == "tool" or _has_results(msg):
        _render_results(msg, out, False)
    if msg.role == "tool":
        return
    if msg.role == "assistant":
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for part in msg.content:
            if isinstance(part, TextPart):
                texts.append(part.text)
            elif isinstance(part, ToolCallPart):
                calls.append(_render_call(part, False))
            else:
                log.debug("openai: %s part of an assistant message dropped", part.type)
        wire: dict[str, Any] = {"role": "assistant"}
        if texts:
            wire["content"] = "".join(texts)
        else:
            wire["content"] = None if calls else ""
        if calls:
            wire["tool_calls"] = calls
    else:
        content: list[dict[str, Any]] = []
        for part in msg.content:
            if isinstance(part, TextPart):
                content.append({"type": "text", "text": part.text})
            elif isinstance(part, ImagePart):
                image = _render_image(part, False)
                if image is not None:
                    content.append(image)
            elif not isinstance(part, ToolResultPart):
                log.debug("openai: %s part of a user message dropped", part.type)
        if not content and _has_results(msg):
            return
        wire = {"role": "user"}
        if len(content) == 1 and content[0]["type"] == "text":
            wire["content"] = content[0]["text"]
        elif not content:
            wire["content"] = ""
        else:
            wire["content"] = content
    if msg.name is not None:
        wire["name"] = msg.name
    out.append(wire)


# ==============================================================================================
# Responses
# ==============================================================================================


def _usage_in(raw: Any) -> Usage:
    return read_usage(raw, CHAT)


def _usage_out(usage: Usage) -> dict[str, Any]:
    prompt = usage.input_tokens or 0
    done = usage.output_tokens or 0
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": done,
        "total_tokens": prompt + done,
    }
    if usage.cached_tokens is not None or usage.cache_creation_tokens is not None:
        details: dict[str, Any] = {}
        if usage.cached_tokens is not None:
            details["cached_tokens"] = usage.cached_tokens
        if usage.cache_creation_tokens is not None:
            details["cache_write_tokens"] = usage.cache_creation_tokens
        out["prompt_tokens_details"] = details
    if usage.reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out


def _usage_same(usage: Usage, raw: dict[str, Any]) -> dict[str, Any]:
    """The usage object as it came, with what changed in the canonical usage written over."""
    return patched_usage(usage, raw, CHAT)


def response_usage(body: dict[str, Any]) -> Usage:
    """The usage `parse_response` reads off `body`, without reading the rest."""
    return _usage_in(body["usage"]) if "usage" in body else Usage()


def parse_response(body: dict[str, Any]) -> ChatResponse:
    """A `chat.completion` object as a `ChatResponse` (raises `ProtocolError`)."""
    if not isinstance(body, dict):
        raise ProtocolError("response body must be a JSON object")
    try:
        return _parse_response(body)
    except ProtocolError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ProtocolError(f"invalid chat completion: {exc}") from exc


def _parse_response(body: dict[str, Any]) -> ChatResponse:
    if "choices" not in body:
        message = body.get("error")
        if isinstance(message, dict):
            raise ProtocolError(f"error response: {message.get('message')}")
        raise ProtocolError("'choices' is required in a chat completion")
    choices = body["choices"]
    if not isinstance(choices, list):
        raise ProtocolError("'choices' must be an array")
    extras = _rest(body, {"id", "model", "choices", "usage"})
    absent = [k for k in ("object", "created", "usage") if k not in body]
    resp: dict[str, Any] = {
        "source": NAME,
        "id": body.get("id") if isinstance(body.get("id"), str) else "",
        "model": body.get("model") if isinstance(body.get("model"), str) else "",
        "extras": extras,
    }
    if not isinstance(body.get("id"), str) and "id" in body:
        extras["id"] = body["id"]
    resp["usage"] = response_usage(body)
    if "usage" in body:
        extras[_USAGE] = _copy_json(body["usage"])
    if len(choices) > 1:
        extras[_REST] = choices[1:]
    parts: list[Part] = []
    if choices:
        choice = choices[0]
        if not isinstance(choice, dict):
            raise ProtocolError("'choices[0]' must be an object")
        extras[_CHOICE] = _rest(choice, {"message", "finish_reason", "index"})
        if choice.get("index", 0) != 0:
            extras[_CHOICE]["index"] = choice["index"]
        absent += [f"choice.{k}" for k in ("index", "logprobs") if k not in choice]
        raw_reason = choice.get("finish_reason")
        stop = _finish_in(raw_reason)
        stop_reason = choice.get("stop_reason")
        if raw_reason == "stop" and isinstance(stop_reason, str):
            resp["stop_sequence"] = stop_reason
            stop = "stop"
        resp["stop_reason"] = stop
        if _FINISH_OUT.get(stop) != raw_reason:
            extras[_FINISH] = raw_reason
        message = choice.get("message")
        if isinstance(message, dict):
            parts = _response_parts(message, extras, absent)
        else:
            extras[_CHOICE]["message"] = message
    else:
        absent.append("choices")
    extras[_ABSENT] = absent
    resp["parts"] = parts
    return ChatResponse(**resp)


def _finish_in(raw: Any) -> StopReason:
    return _FINISH_IN.get(raw, "end") if isinstance(raw, str) else "end"


def _response_parts(
    message: dict[str, Any], extras: dict[str, Any], absent: list[str]
) -> list[Part]:
    known = {"role", "content", "tool_calls", "reasoning_content", "reasoning"}
    rest = _rest(message, known)
    if "role" in message and message["role"] != "assistant":
        rest["role"] = message["role"]
    extras[_MESSAGE] = rest
    absent += [f"message.{k}" for k in ("content", "refusal") if k not in message]
    parts: list[Part] = []
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            parts.append(ThinkingPart(text=value, extras={_KEY: key}))
        elif key in message:
            rest[key] = value
    content = message.get("content")
    if isinstance(content, str):
        parts.append(TextPart(text=content))
    elif isinstance(content, list):
        extras[_CONTENT_LIST] = True
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append(_text_part(part, "content"))
            elif isinstance(part, dict):
                parts.append(OpaquePart(protocol=NAME, data=part))
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        names: dict[str, str] = {}
        for j, call in enumerate(calls):
            parts.append(_tool_call(call, f"tool_calls[{j}]", names))
    elif "tool_calls" in message:
        rest["tool_calls"] = calls
    return parts


def render_response(resp: ChatResponse) -> dict[str, Any]:
    """The `chat.completion` object for `resp` (lossless when `resp.source` is OpenAI)."""
    same = resp.source == NAME
    ex = resp.extras if same else {}
    absent = set(ex.get(_ABSENT, ()))
    texts: list[str] = []
    content_parts: list[dict[str, Any]] = []
    thinking: dict[str, str] = {}
    calls: list[dict[str, Any]] = []
    for part in resp.parts:
        if isinstance(part, TextPart):
            texts.append(part.text)
            content_parts.append(_render_text(part, same))
        elif isinstance(part, ThinkingPart):
            if part.redacted:
                continue
            key = part.extras.get(_KEY, "reasoning_content") if same else "reasoning_content"
            thinking[key] = thinking.get(key, "") + part.text
        elif isinstance(part, ToolCallPart):
            calls.append(_render_call(part, same))
        elif isinstance(part, OpaquePart) and same and part.protocol == NAME:
            if "id" in part.data and part.data.get("type") != "text":
                calls.append(part.data)
            else:
                content_parts.append(part.data)
        else:
            log.debug("openai: %s part of a response dropped", part.type)

    message: dict[str, Any] = {"role": "assistant"}
    if ex.get(_CONTENT_LIST):
        message["content"] = content_parts
    elif "message.content" not in absent or texts:
        message["content"] = "".join(texts) if texts else None
    if "message.refusal" not in absent:
        message["refusal"] = None
    if calls:
        message["tool_calls"] = calls
    for key, text in thinking.items():
        if text:
            message[key] = text
    if same:
        for key, value in ex.get(_MESSAGE, {}).items():
            if key not in message or key in ("refusal", "role"):
                message[key] = value

    reason = _FINISH_OUT.get(resp.stop_reason, "stop")
    if same and _FINISH in ex and _finish_in(ex[_FINISH]) == resp.stop_reason:
        reason = ex[_FINISH]
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": reason}
    if "choice.logprobs" not in absent:
        choice["logprobs"] = None
    if same:
        choice.update(ex.get(_CHOICE, {}))
        if "choice.index" in absent:
            del choice["index"]

    out: dict[str, Any] = {"id": resp.id or _new_id("chatcmpl-")}
    if "object" not in absent:
        out["object"] = "chat.completion"
    if "created" not in absent:
        out["created"] = int(time.time())
    out["model"] = resp.model
    out["choices"] = [] if "choices" in absent and not resp.parts else [choice]
    if same and _REST in ex:
        out["choices"].extend(ex[_REST])
    if same and isinstance(ex.get(_USAGE), dict):
        out["usage"] = _usage_same(resp.usage, ex[_USAGE])
    elif same and _USAGE in ex and resp.usage == _usage_in(ex[_USAGE]):
        out["usage"] = ex[_USAGE]
    elif "usage" not in absent or resp.usage != Usage():
        out["usage"] = _usage_out(resp.usage)
    if same:
        for key, value in ex.items():
            if key not in _MARKERS and (key not in out or key in ("object", "created", "id")):
                out[key] = value
    return out


# ==============================================================================================
# Streams
# ==============================================================================================

_ERROR_STATUS: Final[dict[str, int]] = {  # error `type`s and `code`s (also the Responses API's)
    "invalid_request_error": 400,
    "invalid_prompt": 400,
    "context_length_exceeded": 400,
    "authentication_error": 401,
    "invalid_api_key": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "model_not_found": 404,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "server_error": 500,
    "api_error": 500,
    "overloaded_error": 503,
    "server_is_overloaded": 503,
    "vector_store_timeout": 504,
    "timeout": 504,
}


def error_event(err: Any) -> Error:
    """An OpenAI error object (chat completions or Responses, in a stream) as an `Error`."""
    if not isinstance(err, dict):
        return Error(message=str(err) if err else "upstream error", status=500, kind="api_error")
    message = err.get("message")
    if not isinstance(message, str) or not message:
        message = _dumps(err)
    code = err.get("code")
    given = err.get("status")
    status: int
    if _is_int(code) and 400 <= code < 600:
        status = code
    elif _is_int(given) and 400 <= given < 600:
        status = given
    else:
        status = _ERROR_STATUS.get(str(code), _ERROR_STATUS.get(str(err.get("type")), 500))
    return Error(message=message, status=status, kind=error_kind(status))


class _Call:
    __slots__ = ("block", "id", "name", "pending")

    def __init__(self) -> None:
        self.block = -1
        self.id = ""
        self.name = ""
        self.pending: list[str] = []


class StreamDecoder:
    """Chat Completions SSE bytes (split anywhere) to canonical events.

    Text and reasoning each go to one block while they run; a switch between them (or a tool
    call starting) ends the running one. Tool calls are keyed by their OpenAI `index` and stay
    open to the end (their argument fragments may interleave). Usage comes after the finish
    chunk, so the BlockStops and the Finish are emitted at `[DONE]` or `close()`.
    """

    __slots__ = (
        "_sse", "_started", "_done", "_next", "_text", "_think", "_open", "_calls", "_last_call",
        "_reason", "_stop_seq", "_usage", "_id", "_errored",
    )  # fmt: skip

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self._started = False
        self._done = False
        self._next = 0
        self._text = -1
        self._think = -1
        self._open: list[int] = []
        self._calls: dict[int, _Call] = {}
        self._last_call = 0
        self._reason: StopReason | None = None
        self._stop_seq: str | None = None
        self._usage: dict[str, Any] | None = None
        self._id = ""
        self._errored = False

    def feed(self, data: bytes) -> list[Event]:
        out: list[Event] = []
        if self._done:
            return out
        for sse in self._sse.feed(data):
            self._event(sse.data, out)
            if self._done:
                break
        return out

    def close(self) -> list[Event]:
        out: list[Event] = []
        if self._done:
            return out
        for sse in self._sse.close():
            self._event(sse.data, out)
            if self._done:
                return out
        self._finish(out)
        return out

    # -- internals ----------------------------------------------------------------------------

    def _event(self, data: str, out: list[Event]) -> None:
        if not data:
            return
        if data[0] == "[" and data.strip() == "[DONE]":
            self._finish(out)
            return
        try:
            obj = _loads(data)
        except ValueError:
            log.debug("openai: stream event that is not JSON skipped: %.200s", data)
            return
        if not isinstance(obj, dict):
            return
        err = obj.get("error")
        if not self._started and (err or obj.get("id") or obj.get("choices")):
            self._start(obj, out)  # (Azure's first chunk, prompt_filter_results only, has no id)
        if err:
            out.append(error_event(err))
            self._errored = True
            return
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
        choices = obj.get("choices")
        if not choices or not isinstance(choices, list):
            return
        for choice in choices:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice, out)

    def _start(self, obj: dict[str, Any], out: list[Event]) -> None:
        self._started = True
        cid, model = obj.get("id"), obj.get("model")
        self._id = cid if isinstance(cid, str) else ""
        out.append(Start(id=self._id, model=model if isinstance(model, str) else ""))

    def _block(self) -> int:
        index = self._next
        self._next += 1
        self._open.append(index)
        return index

    def _stop(self, index: int, out: list[Event]) -> None:
        self._open.remove(index)
        out.append(BlockStop(index))

    def _choice(self, choice: dict[str, Any], out: list[Event]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            thought = delta.get("reasoning_content") or delta.get("reasoning")
            if thought and isinstance(thought, str):
                self._thinking_delta(thought, out)
            text = delta.get("content")
            if text:
                if isinstance(text, str):
                    self._text_delta(text, out)
                elif isinstance(text, list):
                    self._content_list(text, out)
            refusal = delta.get("refusal")
            if refusal and isinstance(refusal, str):
                self._text_delta(refusal, out)
            calls = delta.get("tool_calls")
            if calls and isinstance(calls, list):
                for position, call in enumerate(calls):
                    if isinstance(call, dict):
                        self._call(call, position, out)
        reason = choice.get("finish_reason")
        if reason:
            self._reason = _finish_in(reason)
            seq = choice.get("stop_reason")
            if reason == "stop" and isinstance(seq, str):
                self._reason, self._stop_seq = "stop", seq

    def _thinking_delta(self, text: str, out: list[Event]) -> None:
        if self._think < 0:
            if self._text >= 0:
                self._stop(self._text, out)
                self._text = -1
            self._think = self._block()
        out.append(ThinkingDelta(self._think, text))

    def _content_list(self, items: list[Any], out: list[Event]) -> None:
        """Mistral streams content as a list: text chunks and (Magistral) thinking chunks."""
        for item in items:
            if not isinstance(item, dict):
                continue
            kind = item.get("type")
            if kind == "text":
                text = item.get("text")
                if text and isinstance(text, str):
                    self._text_delta(text, out)
            elif kind == "thinking":
                inner = item.get("thinking")
                if isinstance(inner, list):
                    inner = "".join(
                        i["text"]
                        for i in inner
                        if isinstance(i, dict) and isinstance(i.get("text"), str)
                    )
                if inner and isinstance(inner, str):
                    self._thinking_delta(inner, out)

    def _text_delta(self, text: str, out: list[Event]) -> None:
        if self._text < 0:
            if self._think >= 0:
                self._stop(self._think, out)
                self._think = -1
            self._text = self._block()
        out.append(TextDelta(self._text, text))

    def _call(self, call: dict[str, Any], position: int, out: list[Event]) -> None:
        given = call.get("index")
        cid = call.get("id")
        key: int
        if _is_int(given):
            key = given
        else:  # servers that leave the index out: find the call by id, or continue the last one
            known = [k for k, c in self._calls.items() if cid and c.id == cid]
            key = known[0] if known else (len(self._calls) if cid else self._last_call)
        self._last_call = key
        state = self._calls.get(key)
        if state is None:
            state = self._calls[key] = _Call()
        if cid and isinstance(cid, str) and not state.id:
            state.id = cid
        fn = call.get("function")
        if not isinstance(fn, dict):
            return
        if state.block < 0:
            name = fn.get("name")
            if name and isinstance(name, str):
                state.name = name
                self._start_call(key, state, out)
        args = fn.get("arguments")
        if args:
            if not isinstance(args, str):
                args = _dumps(args)
            if state.block >= 0:
                out.append(ToolArgsDelta(state.block, args))
            else:
                state.pending.append(args)

    def _start_call(self, key: int, state: _Call, out: list[Event]) -> None:
        for attr in ("_text", "_think"):
            index = getattr(self, attr)
            if index >= 0:
                self._stop(index, out)
                setattr(self, attr, -1)
        state.block = self._block()
        out.append(ToolCallStart(state.block, state.id or f"call_{self._id}_{key}", state.name))
        if state.pending:
            out.append(ToolArgsDelta(state.block, "".join(state.pending)))
            state.pending = []

    def _finish(self, out: list[Event]) -> None:
        if self._done:
            return
        self._done = True
        if not self._started:
            self._started = True
            out.append(Start(id="", model=""))
        for key, state in sorted(self._calls.items()):
            if state.block < 0 and (state.id or state.pending):
                self._start_call(key, state, out)
        for index in list(self._open):
            out.append(BlockStop(index))
        self._open.clear()
        if self._errored:
            reason: StopReason = "error"
        elif self._reason is not None:
            reason = self._reason
        else:
            reason = "tool_use" if self._calls else "end"
        usage = _usage_in(self._usage) if self._usage is not None else None
        out.append(Finish(stop_reason=reason, usage=usage, stop_sequence=self._stop_seq))


_DONE: Final = b"data: [DONE]\n\n"
_TAIL: Final = b',"logprobs":null,"finish_reason":null}]}\n\n'


class StreamEncoder:
    """Canonical events to the `chat.completion.chunk` stream the openai SDK reads.

    Every event is written out at once; the chunk head (`id`, `created`, `model`) is built once
    per stream. `close()` without a `Finish` ends the stream with a `stop` chunk and `[DONE]`.
    """

    __slots__ = ("_model", "_include_usage", "_head", "_pre", "_calls", "_usage", "_closed")

    def __init__(self, *, model: str | None = None, include_usage: bool = False) -> None:
        self._model = model
        self._include_usage = include_usage
        self._head = b""
        self._pre = b""
        self._calls: dict[int, int] = {}
        self._usage: Usage | None = None
        self._closed = False

    def _begin(self, cid: str, model: str) -> bytes:
        head = (
            '{"id":'
            + _dumps(cid or _new_id("chatcmpl-"))
            + ',"object":"chat.completion.chunk","created":'
            + str(int(time.time()))
            + ',"model":'
            + _dumps(self._model if self._model is not None else model)
        )
        self._head = b"data: " + head.encode()
        self._pre = self._head + b',"choices":[{"index":0,"delta":'
        return self._pre + b'{"role":"assistant","content":""}' + _TAIL

    def feed(self, event: Event) -> bytes:
        if self._closed:
            return b""
        pre = self._pre
        lead = b""
        kind = type(event)
        if kind is Start:
            if pre:
                return b""
            start = cast(Start, event)
            self._usage = start.usage
            return self._begin(start.id, start.model)
        if not pre and kind is not Error:
            lead = self._begin("", "")
            pre = self._pre
        if kind is TextDelta:
            text = cast(TextDelta, event).text
            if not text:
                return lead
            return lead + pre + b'{"content":' + _json_str(text) + b"}" + _TAIL
        if kind is ThinkingDelta:
            thought = cast(ThinkingDelta, event)
            if not thought.text or thought.redacted:
                return lead
            return lead + pre + b'{"reasoning_content":' + _json_str(thought.text) + b"}" + _TAIL
        if kind is ToolArgsDelta:
            args = cast(ToolArgsDelta, event)
            k = self._calls.get(args.index)
            if k is None or not args.fragment:
                return lead
            return (
                lead + pre + b'{"tool_calls":[{"index":' + str(k).encode()
                + b',"function":{"arguments":' + _json_str(args.fragment) + b"}}]}" + _TAIL
            )  # fmt: skip
        if kind is ToolCallStart:
            call = cast(ToolCallStart, event)
            if call.index in self._calls:
                return lead
            k = self._calls[call.index] = len(self._calls)
            delta = {
                "tool_calls": [
                    {
                        "index": k,
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": ""},
                    }
                ]
            }
            return lead + pre + _dumps_bytes(delta) + _TAIL
        if kind is Finish:
            fin = cast(Finish, event)
            usage = self._usage.merged(fin.usage) if self._usage is not None else fin.usage
            return lead + self._end(_FINISH_OUT.get(fin.stop_reason, "stop"), usage)
        if kind is Error:
            err = cast(Error, event)
            self._closed = True
            body = render_error(err.status, err.message)
            return b"data: " + _dumps_bytes(body) + b"\n\n" + _DONE
        return lead  # BlockStop

    def _end(self, reason: str, usage: Usage | None) -> bytes:
        self._closed = True
        out = self._pre + b'{},"logprobs":null,"finish_reason":"' + reason.encode() + b'"}]}\n\n'
        if self._include_usage:
            body = _dumps(_usage_out(usage or Usage()))
            out += self._head + b',"choices":[],"usage":' + body.encode() + b"}\n\n"
        return out + _DONE

    def close(self) -> bytes:
        if self._closed:
            return b""
        lead = b"" if self._pre else self._begin("", "")
        return lead + self._end("stop", self._usage)


# ==============================================================================================
# Errors
# ==============================================================================================

_ERROR_TYPES: Final[dict[int, str]] = {
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout",
}


def render_error(status: int, message: str) -> dict[str, Any]:
    """An OpenAI error body for an HTTP status."""
    kind = _ERROR_TYPES.get(status)
    if kind is None:
        kind = "server_error" if status >= 500 else "invalid_request_error"
    code: str | None = None
    if status == 429:
        code = "rate_limit_exceeded"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}
