"""The Anthropic Messages API codec (`POST /v1/messages`, `POST /v1/messages/count_tokens`).

Owns the conversion between Anthropic's wire shapes and the canonical form: request bodies,
whole responses, the named-event SSE stream (decoder and encoder), error bodies and the
count_tokens answer.

Same-protocol round trips are lossless: everything the canonical form has no field for is kept
in the `extras` of the nearest canonical object, and the shape details needed to rebuild the
exact body (string vs. block-list content, a user turn that held tool results and other blocks,
the raw `thinking` config, explicit `false`/`null` values) are kept under the private extras key
`"_anthropic"`, which is never rendered as a field.

Decisions where the API leaves room:
- `max_tokens` defaults to `DEFAULT_MAX_TOKENS` when converting from a protocol that lacks it.
- Canonical `Usage.input_tokens` is the *total* prompt size (Anthropic's `input_tokens` +
  `cache_read_input_tokens` + `cache_creation_input_tokens`), like OpenAI's `prompt_tokens` and
  Gemini's `promptTokenCount`; rendering subtracts the cache counts again.
- Mid-conversation system messages: the installed SDK's `MessageParam` allows `role: "system"`
  (`SystemMessageParam`, text blocks only), so they are rendered as such. When converting,
  system messages that come before any user/assistant turn go to the top-level `system`.
- Reasoning when converting (or edited by a session): `thinking` from
  `protocol.reasoning.anthropic_thinking` and its table: `budget_tokens` if given, else the
  effort's budget, else (enabled with nothing else) the `medium` budget; never below 1024 and
  always below `max_tokens`, which is raised when needed. Effort `none` / `enabled=False` omit
  `thinking`. Thinking is incompatible with forced tool use (then thinking is omitted), with a
  temperature other than 1 (set to 1), `top_k` (dropped) and `top_p` below 0.95 (dropped);
  each logged at debug.
- Temperature is clamped to 0..1 and `top_p` is dropped when `temperature` is also set (newer
  Claude models reject both), only when converting.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from typing import Any, Literal

from protocol.canonical import (
    SIGNATURE_PROVIDER,
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
    anthropic_thinking,
    clamp_temperature,
    current_table,
    thinking_sampling,
)
from protocol.sse import SSEDecoder, SSEEvent
from protocol.wire import dumps as _dumps
from protocol.wire import dumps_bytes as _dumps_bytes
from protocol.wire import is_int as _is_int
from protocol.wire import is_num as _is_number
from protocol.wire import json_str as _json_str
from protocol.wire import loads as _loads
from protocol.wire import rest as _rest

log = logging.getLogger(__name__)

NAME: ProtocolName = "anthropic"

DEFAULT_MAX_TOKENS = 8192
"""`max_tokens` sent when the request came from a protocol that did not set one."""

_NO_LIMIT = 1 << 31  # max_tokens to reason with when the body has none (count_tokens)

_META = "_anthropic"  # private extras key: shape details for the identical round trip


_STOP_FROM_WIRE: dict[str | None, StopReason] = {
    "end_turn": "end",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop",
    "tool_use": "tool_use",
    "refusal": "filtered",
    "pause_turn": "end",
    "model_context_window_exceeded": "max_tokens",
}

_STOP_TO_WIRE: dict[str, str] = {
    "end": "end_turn",
    "loop_halted": "end_turn",
    "error": "end_turn",
    "stop": "stop_sequence",
    "max_tokens": "max_tokens",
    "tool_use": "tool_use",
    "filtered": "refusal",
}

_ERROR_TYPE_BY_STATUS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_ERROR_TYPE_BY_KIND: dict[str, str] = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "rate_limit": "rate_limit_error",
    "api_error": "api_error",
    "bad_gateway": "api_error",
    "overloaded": "overloaded_error",
    "timeout": "timeout_error",
}

_STATUS_BY_ERROR_TYPE: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

# Top-level request fields with a canonical home; everything else goes to ChatRequest.extras.
_REQ_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "tools",
        "tool_choice",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "stream",
        "thinking",
    }
)
_ANTHROPIC_EFFORTS = frozenset({"low", "medium", "high", "xhigh", "max"})
_EFFORT_FROM_WIRE: dict[str, Any] = {
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "xhigh",
    "max": "xhigh",
}
_IMAGE_MEDIA = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_TOOL_ID_BAD = re.compile(r"[^a-zA-Z0-9_-]")
_DATA_URL = re.compile(r"^data:([^;,]+)(?:;[^,]*)?;base64,(.*)$", re.S)


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------


def _public(extras: dict[str, Any]) -> dict[str, Any]:
    """`extras` without the private shape record."""
    if _META not in extras:
        return extras
    return {k: v for k, v in extras.items() if k != _META}


def _meta(extras: dict[str, Any]) -> dict[str, Any]:
    meta = extras.get(_META)
    return meta if isinstance(meta, dict) else {}


def _new_id(prefix: str = "msg_") -> str:
    return prefix + secrets.token_hex(12)


def _parse_arguments(arguments: str) -> dict[str, Any]:
    """A tool call's JSON text as the `input` object (`{}` with a debug log when it is not)."""
    if not arguments:
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        log.debug("tool call arguments are not valid JSON; sending {}")
        return {}
    if not isinstance(value, dict):
        log.debug("tool call arguments are not a JSON object; sending {}")
        return {}
    return value


def _safe_tool_id(call_id: str) -> str:
    """Anthropic wants tool_use ids matching ^[a-zA-Z0-9_-]+$ (used when converting)."""
    if not call_id:
        return "toolu_empty"
    return _TOOL_ID_BAD.sub("_", call_id)


def _sniff_media_type(data: str) -> str:
    if data.startswith("/9j/"):
        return "image/jpeg"
    if data.startswith("R0lGOD"):
        return "image/gif"
    if data.startswith("UklGR"):
        return "image/webp"
    if data.startswith("JVBER"):
        return "application/pdf"
    return "image/png"


# ----------------------------------------------------------------------------------------------
# usage and stop reasons
# ----------------------------------------------------------------------------------------------

_USAGE_FIELDS = frozenset(
    {"input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"}
)


def _usage_from_wire(usage: dict[str, Any]) -> Usage:
    """Wire usage to canonical; canonical input_tokens is the total prompt (cache included)."""
    inp = usage.get("input_tokens")
    read = usage.get("cache_read_input_tokens")
    create = usage.get("cache_creation_input_tokens")
    out = usage.get("output_tokens")
    details = usage.get("output_tokens_details")
    reasoning = details.get("thinking_tokens") if isinstance(details, dict) else None
    read = read if _is_int(read) else None
    create = create if _is_int(create) else None
    total: int | None = None
    if _is_int(inp):
        total = inp + (read or 0) + (create or 0)
    return Usage(
        input_tokens=total,
        output_tokens=out if _is_int(out) else None,
        cached_tokens=read,
        cache_creation_tokens=create,
        reasoning_tokens=reasoning if _is_int(reasoning) else None,
    )


def _usage_to_wire(usage: Usage | None, *, always: bool = True) -> dict[str, Any]:
    """Canonical usage to the wire shape (input_tokens without the cache counts).

    `always` puts `input_tokens` (0 when unknown); otherwise it is only put when known.
    """
    u = usage or Usage()
    out: dict[str, Any] = {}
    if u.input_tokens is not None:
        wire_in = u.input_tokens - (u.cached_tokens or 0) - (u.cache_creation_tokens or 0)
        out["input_tokens"] = max(wire_in, 0)
    elif always:
        out["input_tokens"] = 0
    out["output_tokens"] = u.output_tokens or 0
    if u.cache_creation_tokens is not None:
        out["cache_creation_input_tokens"] = u.cache_creation_tokens
    if u.cached_tokens is not None:
        out["cache_read_input_tokens"] = u.cached_tokens
    if u.reasoning_tokens is not None:
        out["output_tokens_details"] = {"thinking_tokens": u.reasoning_tokens}
    return out


def _stop_from_wire(reason: Any) -> StopReason:
    mapped = _STOP_FROM_WIRE.get(reason) if isinstance(reason, str) else None
    return mapped or "end"


# ----------------------------------------------------------------------------------------------
# request parsing
# ----------------------------------------------------------------------------------------------


def parse_request(
    body: dict[str, Any], *, model: str | None = None, count_tokens: bool = False
) -> ChatRequest:
    """An Anthropic Messages (or count_tokens, `count_tokens=True`) body as a ChatRequest.

    `model` is used when the body names none. Raises ProtocolError on what the API rejects.
    """
    if not isinstance(body, dict):
        raise ProtocolError("request body must be a JSON object")
    try:
        return _parse_request(body, model, count_tokens)
    except ProtocolError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProtocolError(f"invalid request body: {exc}") from exc


def _parse_request(body: dict[str, Any], model: str | None, count_tokens: bool) -> ChatRequest:
    extras: dict[str, Any] = {k: v for k, v in body.items() if k not in _REQ_FIELDS}
    meta: dict[str, Any] = {}

    req_model = body.get("model", model)
    if req_model is None:
        raise ProtocolError("`model` is required")
    if not isinstance(req_model, str):
        raise ProtocolError("`model` must be a string")

    if "messages" not in body:
        raise ProtocolError("`messages` is required")
    raw_messages = body["messages"]
    if not isinstance(raw_messages, list):
        raise ProtocolError("`messages` must be a list")

    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        if "max_tokens" in body:
            if not count_tokens:
                raise ProtocolError("`max_tokens` must be an integer")
            extras["max_tokens"] = None
        elif not count_tokens:
            raise ProtocolError("`max_tokens` is required")
    elif not _is_int(max_tokens):
        raise ProtocolError("`max_tokens` must be an integer")

    temperature = _optional_number(body, "temperature", extras)
    top_p = _optional_number(body, "top_p", extras)
    top_k = _optional(body, "top_k", extras)
    if top_k is not None and not _is_int(top_k):
        raise ProtocolError("`top_k` must be an integer")

    stop: list[str] = []
    stop_raw = _optional(body, "stop_sequences", extras)
    if stop_raw is not None:
        if not isinstance(stop_raw, list) or not all(isinstance(s, str) for s in stop_raw):
            raise ProtocolError("`stop_sequences` must be a list of strings")
        stop = list(stop_raw)
        if not stop:
            meta["stop_sequences"] = True

    stream = False
    stream_raw = _optional(body, "stream", extras)
    if stream_raw is not None:
        if not isinstance(stream_raw, bool):
            raise ProtocolError("`stream` must be a boolean")
        stream = stream_raw
        if not stream:
            meta["stream"] = True

    system: list[TextPart] = []
    system_raw = _optional(body, "system", extras)
    if isinstance(system_raw, str):
        system = [TextPart(text=system_raw)]
        meta["system"] = "str"
    elif isinstance(system_raw, list):
        system = [_parse_system_block(b, f"system[{i}]") for i, b in enumerate(system_raw)]
        meta["system"] = "list"
    elif system_raw is not None:
        raise ProtocolError("`system` must be a string or a list of text blocks")

    messages: list[Message] = []
    for i, raw in enumerate(raw_messages):
        messages.extend(_parse_message(raw, i))

    tools: list[Tool] = []
    tools_raw = _optional(body, "tools", extras)
    if tools_raw is not None:
        if not isinstance(tools_raw, list):
            raise ProtocolError("`tools` must be a list")
        tools = [_parse_tool(t, i) for i, t in enumerate(tools_raw)]
        if not tools:
            meta["tools"] = True

    tool_choice = None
    tc_raw = _optional(body, "tool_choice", extras)
    if tc_raw is not None:
        tool_choice = _parse_tool_choice(tc_raw, meta)

    reasoning = _parse_reasoning(body, extras, meta)

    if meta:
        extras[_META] = meta
    return ChatRequest(
        source=NAME,
        model=req_model,
        system=system,
        messages=messages,
        tools=tools,
        tool_choice=tool_choice,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        max_tokens=max_tokens,
        stop=stop,
        reasoning=reasoning,
        stream=stream,
        extras=extras,
    )


def _optional(body: dict[str, Any], key: str, extras: dict[str, Any]) -> Any:
    """The value of an optional canonical field; an explicit null is kept in extras."""
    value = body.get(key)
    if value is None and key in body:
        extras[key] = None
    return value


def _optional_number(body: dict[str, Any], key: str, extras: dict[str, Any]) -> float | None:
    value = _optional(body, key, extras)
    if value is None:
        return None
    if not _is_number(value):
        raise ProtocolError(f"`{key}` must be a number")
    return float(value)


def _parse_system_block(block: Any, where: str) -> TextPart:
    if not isinstance(block, dict) or block.get("type") != "text":
        raise ProtocolError(f"`{where}` must be a text block")
    text = block.get("text")
    if not isinstance(text, str):
        raise ProtocolError(f"`{where}.text` must be a string")
    return TextPart(text=text, extras=_rest(block, _TEXT_KEYS))


_TEXT_KEYS = frozenset({"type", "text"})
_IMAGE_KEYS = frozenset({"type", "source"})
_TOOL_USE_KEYS = frozenset({"type", "id", "name", "input"})
_THINKING_KEYS = frozenset({"type", "thinking", "signature"})
_REDACTED_KEYS = frozenset({"type", "data"})
_TOOL_RESULT_KEYS = frozenset({"type", "tool_use_id", "content", "is_error"})
_ROLES = frozenset({"user", "assistant", "system"})


def _parse_message(raw: Any, i: int) -> list[Message]:
    where = f"messages[{i}]"
    if not isinstance(raw, dict):
        raise ProtocolError(f"`{where}` must be an object")
    role = raw.get("role")
    if role not in _ROLES:
        raise ProtocolError(f"`{where}.role` must be one of user, assistant, system (got {role!r})")
    if "content" not in raw:
        raise ProtocolError(f"`{where}.content` is required")
    content = raw["content"]
    extras = _rest(raw, frozenset({"role", "content"}))
    if isinstance(content, str):
        extras[_META] = {"content": "str"}
        return [Message(role=role, content=[TextPart(text=content)], extras=extras)]
    if not isinstance(content, list):
        raise ProtocolError(f"`{where}.content` must be a string or a list of content blocks")

    if role != "user" or not any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    ):
        parts = [_parse_block(b, f"{where}.content[{j}]", role) for j, b in enumerate(content)]
        return [Message(role=role, content=parts, extras=extras)]

    # A user turn with tool results: the results become a canonical "tool" message, the other
    # blocks a "user" message after it. The positions are kept for the identical round trip.
    results: list[Part] = []
    others: list[Part] = []
    positions: list[int] = []
    for j, block in enumerate(content):
        bwhere = f"{where}.content[{j}]"
        if isinstance(block, dict) and block.get("type") == "tool_result":
            positions.append(j)
            results.append(_parse_tool_result(block, bwhere))
        else:
            others.append(_parse_block(block, bwhere, role))
    tool_meta: dict[str, Any] = {}
    if positions != list(range(len(positions))):
        tool_meta["positions"] = positions
    if not others:
        if tool_meta:
            extras[_META] = tool_meta
        return [Message(role="tool", content=results, extras=extras)]
    tool_meta["merge_next"] = True
    extras[_META] = {"merged": True}
    return [
        Message(role="tool", content=results, extras={_META: tool_meta}),
        Message(role="user", content=others, extras=extras),
    ]


def _parse_block(block: Any, where: str, role: str) -> Part:
    if not isinstance(block, dict):
        raise ProtocolError(f"`{where}` must be a content block object")
    btype = block.get("type")
    if not isinstance(btype, str):
        raise ProtocolError(f"`{where}.type` is required")
    if btype == "text":
        text = block.get("text")
        if not isinstance(text, str):
            raise ProtocolError(f"`{where}.text` must be a string")
        return TextPart(text=text, extras=_rest(block, _TEXT_KEYS))
    if btype == "image":
        return _parse_image(block, where)
    if role == "assistant":
        if btype == "tool_use":
            call_id, name, inp = block.get("id"), block.get("name"), block.get("input")
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise ProtocolError(f"`{where}` (tool_use) needs string `id` and `name`")
            if not isinstance(inp, dict):
                raise ProtocolError(f"`{where}.input` must be an object")
            return ToolCallPart(
                id=call_id, name=name, arguments=_dumps(inp), extras=_rest(block, _TOOL_USE_KEYS)
            )
        if btype == "thinking":
            text, sig = block.get("thinking"), block.get("signature")
            if not isinstance(text, str):
                raise ProtocolError(f"`{where}.thinking` must be a string")
            if sig is not None and not isinstance(sig, str):
                raise ProtocolError(f"`{where}.signature` must be a string")
            return ThinkingPart(text=text, signature=sig, extras=_rest(block, _THINKING_KEYS))
        if btype == "redacted_thinking":
            data = block.get("data")
            if not isinstance(data, str):
                raise ProtocolError(f"`{where}.data` must be a string")
            return ThinkingPart(text=data, redacted=True, extras=_rest(block, _REDACTED_KEYS))
    return OpaquePart(protocol=NAME, data=block)


def _parse_image(block: dict[str, Any], where: str) -> Part:
    source = block.get("source")
    if not isinstance(source, dict):
        raise ProtocolError(f"`{where}.source` must be an object")
    stype = source.get("type")
    keys = source.keys()
    extras = _rest(block, _IMAGE_KEYS)
    if stype == "base64" and keys == {"type", "media_type", "data"}:
        data, media = source["data"], source["media_type"]
        if isinstance(data, str) and isinstance(media, str):
            return ImagePart(data=data, media_type=media, extras=extras)
    elif stype == "url" and keys == {"type", "url"} and isinstance(source["url"], str):
        return ImagePart(url=source["url"], extras=extras)
    return OpaquePart(protocol=NAME, data=block)


def _parse_tool_result(block: dict[str, Any], where: str) -> ToolResultPart:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str):
        raise ProtocolError(f"`{where}.tool_use_id` must be a string")
    meta: dict[str, Any] = {}
    parts: list[TextPart | ImagePart] = []
    if "content" not in block:
        meta["content"] = "absent"
    else:
        content = block["content"]
        if isinstance(content, str):
            parts.append(TextPart(text=content))
            meta["content"] = "str"
        elif isinstance(content, list):
            others: list[list[Any]] = []
            for j, item in enumerate(content):
                part = _parse_block(item, f"{where}.content[{j}]", "tool")
                if isinstance(part, TextPart | ImagePart):
                    parts.append(part)
                else:
                    others.append([j, item])
            if others:
                meta["other_blocks"] = others
        elif content is None:
            meta["content"] = "null"
        else:
            raise ProtocolError(f"`{where}.content` must be a string or a list of blocks")
    is_error = block.get("is_error", False)
    if "is_error" in block and is_error is not True:
        meta["is_error"] = is_error
    extras = _rest(block, _TOOL_RESULT_KEYS)
    if meta:
        extras[_META] = meta
    return ToolResultPart(call_id=call_id, content=parts, is_error=is_error is True, extras=extras)


def _parse_tool(raw: Any, i: int) -> Tool:
    where = f"tools[{i}]"
    if not isinstance(raw, dict):
        raise ProtocolError(f"`{where}` must be an object")
    name = raw.get("name")
    if "input_schema" in raw:
        schema = raw["input_schema"]
        if not isinstance(name, str):
            raise ProtocolError(f"`{where}.name` must be a string")
        if not isinstance(schema, dict):
            raise ProtocolError(f"`{where}.input_schema` must be an object")
        description = raw.get("description")
        known = {"name", "input_schema"}
        if isinstance(description, str):
            known.add("description")
        else:
            description = None
        return Tool(
            name=name,
            description=description,
            parameters=schema,
            extras=_rest(raw, frozenset(known)),
        )
    ttype = raw.get("type")
    if isinstance(ttype, str) and ttype != "custom":
        # A server / builtin tool (web_search_..., bash_..., text_editor_..., mcp_toolset):
        # kept whole in extras, rendered back only to Anthropic.
        meta: dict[str, Any] = {"builtin": True}
        if not isinstance(name, str):
            meta["noname"] = True
            name = ttype
        extras = _rest(raw, frozenset({"name"}))
        extras[_META] = meta
        return Tool(name=name, extras=extras)
    raise ProtocolError(f"`{where}.input_schema` is required")


_TC_MODES: dict[str, Literal["auto", "none", "required", "tool"]] = {
    "auto": "auto",
    "any": "required",
    "tool": "tool",
    "none": "none",
}


def _parse_tool_choice(raw: Any, meta: dict[str, Any]) -> ToolChoice:
    if not isinstance(raw, dict):
        raise ProtocolError("`tool_choice` must be an object")
    ttype = raw.get("type")
    mode = _TC_MODES.get(ttype) if isinstance(ttype, str) else None
    if mode is None:
        raise ProtocolError("`tool_choice.type` must be one of auto, any, tool, none")
    name = raw.get("name")
    if ttype == "tool" and not isinstance(name, str):
        raise ProtocolError("`tool_choice.name` must be a string for type tool")
    parallel = None
    if "disable_parallel_tool_use" in raw:
        disable = raw["disable_parallel_tool_use"]
        if not isinstance(disable, bool):
            raise ProtocolError("`tool_choice.disable_parallel_tool_use` must be a boolean")
        parallel = not disable
    other = _rest(raw, frozenset({"type", "name", "disable_parallel_tool_use"}))
    if ttype != "tool" and "name" in raw:
        other["name"] = name
        name = None
    if other:
        meta["tool_choice_extra"] = other
    return ToolChoice(mode=mode, name=name, parallel=parallel)


def _parse_reasoning(
    body: dict[str, Any], extras: dict[str, Any], meta: dict[str, Any]
) -> Reasoning | None:
    reasoning: Reasoning | None = None
    thinking = _optional(body, "thinking", extras)
    if thinking is not None:
        if not isinstance(thinking, dict):
            raise ProtocolError("`thinking` must be an object")
        ttype = thinking.get("type")
        if ttype == "enabled":
            budget = thinking.get("budget_tokens")
            if not _is_int(budget):
                raise ProtocolError("`thinking.budget_tokens` must be an integer")
            reasoning = Reasoning(enabled=True, budget_tokens=budget)
        elif ttype == "adaptive":
            reasoning = Reasoning(enabled=True)
        elif ttype in ("disabled", "between_tools"):
            reasoning = Reasoning(enabled=False)
        elif isinstance(ttype, str):
            reasoning = Reasoning()
        else:
            raise ProtocolError("`thinking.type` is required")
        display = thinking.get("display")
        if display == "omitted":
            reasoning.include_thoughts = False
        elif display == "summarized":
            reasoning.include_thoughts = True
        meta["thinking"] = thinking
    output_config = body.get("output_config")
    if isinstance(output_config, dict):
        effort = _EFFORT_FROM_WIRE.get(output_config.get("effort") or "")
        if effort is not None:
            reasoning = reasoning or Reasoning()
            reasoning.effort = effort
    if reasoning is not None:
        meta["reasoning"] = reasoning.model_dump()
    return reasoning


# ----------------------------------------------------------------------------------------------
# request rendering
# ----------------------------------------------------------------------------------------------


def render_request(req: ChatRequest) -> dict[str, Any]:
    """The Anthropic Messages body for `req` (identical to the parsed body when same-protocol)."""
    same = req.source == NAME
    meta = _meta(req.extras) if same else {}
    out: dict[str, Any] = dict(_public(req.extras)) if same else {}
    if not same and req.extras:
        log.debug("dropping %s-only request fields: %s", req.source, sorted(req.extras))

    out["model"] = req.model
    if req.max_tokens is not None:
        out["max_tokens"] = req.max_tokens
    elif not same:
        out["max_tokens"] = DEFAULT_MAX_TOKENS

    system_parts = list(req.system)
    messages = req.messages
    if not same:
        # system entries ahead of the first turn belong in the top-level system
        lead = 0
        while lead < len(messages) and messages[lead].role == "system":
            system_parts.extend(p for p in messages[lead].content if isinstance(p, TextPart))
            lead += 1
        messages = messages[lead:]
    _render_system(system_parts, out, same, meta)
    out["messages"] = _render_messages(messages, same)

    if req.tools or meta.get("tools"):
        tools = [t for t in (_render_tool(t, same) for t in req.tools) if t is not None]
        if tools or same:
            out["tools"] = tools
    if req.tool_choice is not None:
        tc = _render_tool_choice(req.tool_choice, same, meta)
        if same or "tools" in out:
            out["tool_choice"] = tc
        else:
            log.debug("dropping tool_choice: no tools to choose from")

    if req.temperature is not None:
        out["temperature"] = req.temperature
    if req.top_p is not None:
        out["top_p"] = req.top_p
    if req.top_k is not None:
        out["top_k"] = req.top_k
    if req.stop or meta.get("stop_sequences"):
        out["stop_sequences"] = list(req.stop)
    if req.stream or (same and meta.get("stream")):
        out["stream"] = req.stream

    _render_reasoning(req, out, same, meta)
    if not same:
        _fit_sampling(out)
    return out


def _render_system(
    parts: list[TextPart], out: dict[str, Any], same: bool, meta: dict[str, Any]
) -> None:
    form = meta.get("system") if same else None
    if form == "str" and len(parts) == 1 and not parts[0].extras:
        out["system"] = parts[0].text
        return
    blocks = []
    for p in parts:
        if not same and not p.text:
            continue
        block: dict[str, Any] = {"type": "text", "text": p.text}
        if same and p.extras:
            block.update(_public(p.extras))
        blocks.append(block)
    if blocks or form is not None:
        out["system"] = blocks


def _render_messages(messages: list[Message], same: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []  # tool_result blocks waiting for their user turn
    i, n = 0, len(messages)
    while i < n:
        msg = messages[i]
        if msg.role == "tool":
            mmeta = _meta(msg.extras)
            results = _render_blocks(msg.content, same, "user")
            nxt = messages[i + 1] if i + 1 < n else None
            if same:
                if (
                    mmeta.get("merge_next")
                    and nxt is not None
                    and nxt.role == "user"
                    and _meta(nxt.extras).get("merged")
                ):
                    others = _render_blocks(nxt.content, True, "user")
                    content = _interleave(results, others, mmeta.get("positions"))
                    extras = {**_public(msg.extras), **_public(nxt.extras)}
                    out.append({**extras, "role": "user", "content": content})
                    i += 2
                    continue
                content = _interleave(results, [], mmeta.get("positions"))
                out.append({**_public(msg.extras), "role": "user", "content": content})
                i += 1
                continue
            pending.extend(results)
            i += 1
            continue
        if same:
            out.append(_render_message(msg, True))
        else:
            rendered = _render_message(msg, False)
            if msg.role == "user":
                if pending:
                    content = pending + rendered["content"]
                    # tool results come first in a user turn
                    content.sort(key=lambda b: b.get("type") != "tool_result")
                    rendered["content"] = content
                    pending = []
            elif pending:
                pending.sort(key=lambda b: b.get("type") != "tool_result")
                out.append({"role": "user", "content": pending})
                pending = []
            if rendered["content"]:
                out.append(rendered)
            else:
                log.debug("dropping a %s message with no content Anthropic accepts", msg.role)
        i += 1
    if pending:
        pending.sort(key=lambda b: b.get("type") != "tool_result")
        out.append({"role": "user", "content": pending})
    if not same:
        _trim_prefill(out)
    return out


def _trim_prefill(out: list[dict[str, Any]]) -> None:
    """Anthropic rejects a final assistant turn whose text ends with whitespace."""
    if not out or out[-1]["role"] != "assistant":
        return
    content = out[-1]["content"]
    last = content[-1] if content else None
    if isinstance(last, dict) and last.get("type") == "text":
        text = last["text"].rstrip()
        if text:
            last["text"] = text
        else:
            content.pop()
            if not content:
                out.pop()


def _interleave(
    results: list[dict[str, Any]], others: list[dict[str, Any]], positions: Any
) -> list[dict[str, Any]]:
    total = len(results) + len(others)
    if (
        not isinstance(positions, list)
        or len(positions) != len(results)
        or any(not _is_int(p) or p >= total for p in positions)
    ):
        return results + others
    content: list[dict[str, Any] | None] = [None] * total
    for pos, block in zip(positions, results, strict=True):
        content[pos] = block
    rest = iter(others)
    return [b if b is not None else next(rest) for b in content]


def _render_message(msg: Message, same: bool) -> dict[str, Any]:
    role = msg.role if msg.role != "tool" else "user"
    if same:
        mmeta = _meta(msg.extras)
        content = msg.content
        if (
            mmeta.get("content") == "str"
            and len(content) == 1
            and isinstance(content[0], TextPart)
            and not content[0].extras
        ):
            return {**_public(msg.extras), "role": role, "content": content[0].text}
        blocks = _render_blocks(content, True, role)
        return {**_public(msg.extras), "role": role, "content": blocks}
    blocks = _render_blocks(msg.content, False, role)
    if role == "user":
        # tool results come first in a user turn
        blocks.sort(key=lambda b: b.get("type") != "tool_result")
    return {"role": role, "content": blocks}


def _render_blocks(parts: list[Part], same: bool, role: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in parts:
        block = _render_part(part, same, role)
        if block is not None:
            blocks.append(block)
    return blocks


def _render_part(part: Part, same: bool, role: str) -> dict[str, Any] | None:
    if isinstance(part, TextPart):
        if not same and not part.text:
            return None  # Anthropic rejects empty text blocks
        block: dict[str, Any] = {"type": "text", "text": part.text}
    elif isinstance(part, ImagePart):
        if not same and role != "user":
            log.debug("dropping an image in a %s message", role)
            return None
        img = _render_image(part)
        if img is None:
            return None
        block = img
    elif isinstance(part, ToolCallPart):
        if not same and role != "assistant":
            log.debug("dropping a tool call in a %s message", role)
            return None
        block = {
            "type": "tool_use",
            "id": part.id if same else _safe_tool_id(part.id),
            "name": part.name,
            "input": _parse_arguments(part.arguments),
        }
    elif isinstance(part, ToolResultPart):
        if not same and role != "user":
            log.debug("dropping a tool result in a %s message", role)
            return None
        return _render_tool_result(part, same)
    elif isinstance(part, ThinkingPart):
        # signatures only hold for the provider that made them (rule 3): Anthropic's own came
        # back through another protocol marked as such (a Responses client's reasoning item)
        own = same or part.extras.get(SIGNATURE_PROVIDER) == NAME
        if not own or role != "assistant":
            return None
        if part.redacted:
            block = {"type": "redacted_thinking", "data": part.text}
        elif part.signature is None:
            log.debug("dropping a thinking block without signature")
            return None
        else:
            block = {"type": "thinking", "thinking": part.text, "signature": part.signature}
    else:  # OpaquePart
        if part.protocol == NAME:
            return part.data
        log.debug("dropping a %s-only block", part.protocol)
        return None
    if same and part.extras:
        block.update(_public(part.extras))
    return block


def _render_image(part: ImagePart) -> dict[str, Any] | None:
    if part.data is not None:
        media = part.media_type or _sniff_media_type(part.data)
        data = part.data
    elif part.url is not None:
        match = _DATA_URL.match(part.url)
        if match is None:
            return {"type": "image", "source": {"type": "url", "url": part.url}}
        media, data = match.group(1), match.group(2)
    else:
        log.debug("dropping an image with neither url nor data")
        return None
    source = {"type": "base64", "media_type": media, "data": data}
    if media == "application/pdf":
        return {"type": "document", "source": source}
    return {"type": "image", "source": source}


def _render_tool_result(part: ToolResultPart, same: bool) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": part.call_id if same else _safe_tool_id(part.call_id),
    }
    content = _render_blocks(list(part.content), same, "user")
    if same:
        meta = _meta(part.extras)
        others = meta.get("other_blocks")
        if isinstance(others, list):
            for pos, item in others:
                content.insert(pos, item)
        form = meta.get("content")
        if (
            form == "str"
            and len(part.content) == 1
            and isinstance(part.content[0], TextPart)
            and not part.content[0].extras
            and not others
        ):
            block["content"] = part.content[0].text
        elif form == "absent" and not content:
            pass
        elif form == "null" and not content:
            block["content"] = None
        else:
            block["content"] = content
        if part.is_error:
            block["is_error"] = True
        elif "is_error" in meta:
            block["is_error"] = meta["is_error"]
        if part.extras:
            block.update(_public(part.extras))
        return block
    if content:
        block["content"] = content
    if part.is_error:
        block["is_error"] = True
    return block


def _render_tool(tool: Tool, same: bool) -> dict[str, Any] | None:
    meta = _meta(tool.extras)
    if meta.get("builtin"):
        if not same:
            log.debug("dropping builtin tool %s", tool.name)
            return None
        out = dict(_public(tool.extras))
        if not meta.get("noname"):
            out["name"] = tool.name
        return out
    params = tool.parameters
    if not same and params.get("type") is None:
        params = {"type": "object", **params}
    out = {"name": tool.name}
    if tool.description is not None:
        out["description"] = tool.description
    out["input_schema"] = params
    if same and tool.extras:
        out.update(_public(tool.extras))
    return out


def _render_tool_choice(tc: ToolChoice, same: bool, meta: dict[str, Any]) -> dict[str, Any]:
    wire = {"auto": "auto", "required": "any", "tool": "tool", "none": "none"}[tc.mode]
    out: dict[str, Any] = {"type": wire}
    if tc.mode == "tool":
        out["name"] = tc.name or ""
    if tc.parallel is False and tc.mode != "none":
        out["disable_parallel_tool_use"] = True
    elif tc.parallel is True and same:
        out["disable_parallel_tool_use"] = False
    if same:
        extra = meta.get("tool_choice_extra")
        if isinstance(extra, dict):
            out.update(extra)
    return out


def _render_reasoning(
    req: ChatRequest, out: dict[str, Any], same: bool, meta: dict[str, Any]
) -> None:
    r = req.reasoning
    if same:
        current = r.model_dump() if r is not None else None
        if current == meta.get("reasoning"):
            if "thinking" in meta:
                out["thinking"] = meta["thinking"]
            return
        # changed after parsing (a command, a session override): rebuild from canonical
        out.pop("thinking", None)
        oc = out.get("output_config")
        if r is not None and isinstance(oc, dict) and "effort" in oc:
            oc = dict(oc)
            if r.effort in _ANTHROPIC_EFFORTS:
                oc["effort"] = r.effort
            else:
                oc.pop("effort")
            out["output_config"] = oc
        raw = meta.get("thinking")
        if (
            r is not None
            and r.enabled
            and r.budget_tokens is None
            and isinstance(raw, dict)
            and raw.get("type") == "adaptive"
        ):
            out["thinking"] = raw
            if r.effort in _ANTHROPIC_EFFORTS:
                oc = out.get("output_config")
                out["output_config"] = {**(oc if isinstance(oc, dict) else {}), "effort": r.effort}
            _fit_thinking_sampling(out)
            return
    max_tokens = out.get("max_tokens")
    limit = max_tokens if _is_int(max_tokens) else _NO_LIMIT
    thinking, raised = anthropic_thinking(r, limit, current_table())
    if thinking is None:
        if same and r is not None and r.enabled is False:
            out["thinking"] = {"type": "disabled"}
        return
    if out.get("tool_choice", {}).get("type") in ("any", "tool"):
        log.debug("not enabling thinking: Anthropic does not allow it with forced tool use")
        return
    if _open_tool_loop_without_thinking(out["messages"]):
        log.debug("not enabling thinking: the open tool-use turn has no thinking block")
        return
    if raised != limit:
        out["max_tokens"] = raised
    out["thinking"] = thinking
    _fit_thinking_sampling(out)


def _fit_thinking_sampling(out: dict[str, Any]) -> None:
    """Temperature 1, no top_k, top_p from 0.95: what Anthropic accepts with thinking on."""
    temperature, top_p, top_k, notes = thinking_sampling(
        out.get("temperature"), out.get("top_p"), out.get("top_k")
    )
    for key, value in (("temperature", temperature), ("top_p", top_p), ("top_k", top_k)):
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    for note in notes:
        log.debug("%s", note)


def _open_tool_loop_without_thinking(messages: list[dict[str, Any]]) -> bool:
    """True when the conversation ends in a tool loop whose assistant turn has no thinking.

    With thinking on, Anthropic wants the last assistant turn that made tool calls (answered by
    the tool results after it) to start with a thinking block; history from another provider
    has none, so thinking must stay off for that request.
    """
    for msg in reversed(messages):
        content = msg["content"]
        if msg["role"] == "assistant":
            if isinstance(content, str) or not content:
                return False
            has_call = any(b.get("type") == "tool_use" for b in content)
            starts_thinking = content[0].get("type") in ("thinking", "redacted_thinking")
            return has_call and not starts_thinking
        if msg["role"] != "user" or isinstance(content, str):
            return False
        if not any(b.get("type") == "tool_result" for b in content):
            return False
    return False


def _fit_sampling(out: dict[str, Any]) -> None:
    temperature = out.get("temperature")
    if temperature is not None:
        clamped = clamp_temperature(temperature, NAME)
        if clamped != temperature:
            log.debug("clamping temperature %s to %s", temperature, clamped)
            out["temperature"] = clamped
        if "top_p" in out:
            log.debug("dropping top_p: newer Claude models reject temperature and top_p together")
            del out["top_p"]


# ----------------------------------------------------------------------------------------------
# responses
# ----------------------------------------------------------------------------------------------

_RESPONSE_FIELDS = frozenset(
    {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"}
)


def response_usage(body: dict[str, Any]) -> Usage:
    """The usage `parse_response` reads off `body`, without reading the rest."""
    usage = body.get("usage")
    return _usage_from_wire(usage) if isinstance(usage, dict) else Usage()


def parse_response(body: dict[str, Any]) -> ChatResponse:
    """An Anthropic `message` object as a ChatResponse."""
    if not isinstance(body, dict):
        raise ProtocolError("response body must be a JSON object")
    if body.get("type") == "error":
        err = body.get("error")
        message = err.get("message") if isinstance(err, dict) else None
        raise ProtocolError(f"error response: {message or body}")
    try:
        return _parse_response(body)
    except ProtocolError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProtocolError(f"invalid response body: {exc}") from exc


def _parse_response(body: dict[str, Any]) -> ChatResponse:
    extras = _rest(body, _RESPONSE_FIELDS)
    meta: dict[str, Any] = {}
    content = body.get("content") or []
    if not isinstance(content, list):
        raise ProtocolError("`content` must be a list")
    parts = [_parse_block(b, f"content[{i}]", "assistant") for i, b in enumerate(content)]
    raw_stop = body.get("stop_reason")
    stop = _stop_from_wire(raw_stop)
    if _STOP_TO_WIRE[stop] != raw_stop:
        meta["stop_reason"] = raw_stop
    for key, default in (("type", "message"), ("role", "assistant")):
        if body.get(key) != default:
            meta[key] = body.get(key)
    absent = [k for k in _RESPONSE_FIELDS if k not in body]
    if absent:
        meta["absent"] = absent
    usage_raw = body.get("usage")
    usage = response_usage(body)
    if isinstance(usage_raw, dict):
        rest = {k: v for k, v in usage_raw.items() if k not in _USAGE_FIELDS or not _is_int(v)}
        if rest:
            meta["usage"] = rest
        missing = [k for k in ("input_tokens", "output_tokens") if k not in usage_raw]
        if missing:
            meta["usage_missing"] = missing
    elif "usage" in body:
        meta["usage_raw"] = usage_raw
    stop_sequence = body.get("stop_sequence")
    if meta:
        extras[_META] = meta
    return ChatResponse(
        source=NAME,
        id=str(body.get("id") or ""),
        model=str(body.get("model") or ""),
        parts=parts,
        stop_reason=stop,
        stop_sequence=stop_sequence if isinstance(stop_sequence, str) else None,
        usage=usage,
        extras=extras,
    )


def render_response(resp: ChatResponse) -> dict[str, Any]:
    """The Anthropic `message` object for `resp`."""
    same = resp.source == NAME
    meta = _meta(resp.extras) if same else {}
    content: list[dict[str, Any]] = []
    for part in resp.parts:
        block = _render_response_part(part, same)
        if block is not None:
            content.append(block)
    stop = _STOP_TO_WIRE.get(resp.stop_reason, "end_turn")
    if "stop_reason" in meta and _stop_from_wire(meta["stop_reason"]) == resp.stop_reason:
        stop = meta["stop_reason"]
    out: dict[str, Any] = dict(_public(resp.extras)) if same else {}
    out.update(
        {
            "id": resp.id or _new_id(),
            "type": meta.get("type", "message"),
            "role": meta.get("role", "assistant"),
            "model": resp.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": resp.stop_sequence,
        }
    )
    if "usage_raw" in meta and resp.usage == Usage():
        out["usage"] = meta["usage_raw"]
        return out
    usage = _usage_to_wire(resp.usage)
    if meta:
        extra = meta.get("usage")
        if isinstance(extra, dict):
            usage = {**extra, **usage}
        for key in meta.get("usage_missing", ()):
            if usage.get(key) == 0:
                del usage[key]
        if isinstance(extra, dict) and "output_tokens_details" in extra:
            usage["output_tokens_details"] = extra["output_tokens_details"]
    out["usage"] = usage
    for key in meta.get("absent", ()):
        out.pop(key, None)
    return out


def _render_response_part(part: Part, same: bool) -> dict[str, Any] | None:
    if isinstance(part, ThinkingPart):
        # A response's thinking is shown to the client whatever made it.
        if part.redacted:
            block: dict[str, Any] = {"type": "redacted_thinking", "data": part.text}
        else:
            block = {"type": "thinking", "thinking": part.text, "signature": part.signature or ""}
        if same and part.extras:
            block.update(_public(part.extras))
        return block
    if isinstance(part, TextPart):
        block = {"type": "text", "text": part.text}
        if same and part.extras:
            block.update(_public(part.extras))
        return block
    if isinstance(part, ToolCallPart):  # the upstream's id as it is (no id fix-up here)
        block = {
            "type": "tool_use",
            "id": part.id,
            "name": part.name,
            "input": _parse_arguments(part.arguments),
        }
        if same and part.extras:
            block.update(_public(part.extras))
        return block
    if isinstance(part, OpaquePart):
        return _render_part(part, same, "assistant")
    log.debug("dropping a %s part from the response", part.type)
    return None


def render_error(status: int, message: str) -> dict[str, Any]:
    """Anthropic's error body for an HTTP status."""
    etype = _ERROR_TYPE_BY_STATUS.get(status)
    if etype is None:
        etype = "invalid_request_error" if status < 500 else "api_error"
    return {"type": "error", "error": {"type": etype, "message": message}}


def count_tokens_response(input_tokens: int) -> dict[str, Any]:
    """The body of `POST /v1/messages/count_tokens`."""
    return {"input_tokens": input_tokens}


# ----------------------------------------------------------------------------------------------
# stream decoding
# ----------------------------------------------------------------------------------------------

_SURFACED_BLOCKS = frozenset({"text", "thinking", "redacted_thinking", "tool_use"})

# A delta event exactly as Anthropic writes it, read with one match instead of a JSON parse:
# most of a stream's events. Anything else (another key order, more keys) takes the JSON path.
_DELTA_EVENT = re.compile(
    r'\{"type":"content_block_delta","index":(0|[1-9][0-9]{0,8}),"delta":\{"type":'
    r'"(text_delta","text|input_json_delta","partial_json|thinking_delta","thinking)":'
    r'"((?:[^"\\\x00-\x1f]++|\\.)*+)"\}\}'
)
_DELTA_KINDS: dict[str, type[TextDelta | ToolArgsDelta | ThinkingDelta]] = {
    'text_delta","text': TextDelta,
    'input_json_delta","partial_json': ToolArgsDelta,
    'thinking_delta","thinking': ThinkingDelta,
}


class StreamDecoder:
    """Anthropic SSE bytes (split anywhere) to canonical events.

    Block indexes: Anthropic's index is the canonical index; blocks that have no canonical
    event (server_tool_use, web_search_tool_result, ...) are skipped and the later blocks
    renumbered so canonical indexes stay 0, 1, 2 ... without gaps.
    """

    __slots__ = (
        "_sse",
        "_started",
        "_finished",
        "_map",
        "_open",
        "_next",
        "_usage",
        "_stop_reason",
        "_stop_sequence",
        "_errored",
    )

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self._started = False
        self._finished = False
        self._map: dict[int, int] = {}  # anthropic index -> canonical index
        self._open: dict[int, None] = {}  # canonical indexes started and not stopped, in order
        self._next = 0
        self._usage: dict[str, Any] = {}
        self._stop_reason: str | None = None
        self._stop_sequence: str | None = None
        self._errored = False

    def feed(self, data: bytes) -> list[Event]:
        out: list[Event] = []
        delta_event = _DELTA_EVENT.fullmatch
        for sse in self._sse.feed(data):
            m = delta_event(sse.data)
            if m is None or self._finished or not self._delta(m, out):
                self._handle(sse, out)
        return out

    def _delta(self, m: re.Match[str], out: list[Event]) -> bool:
        """A `_DELTA_EVENT` match as `_handle` reads it; False if its text has an escape
        JSON rejects (then `_handle` skips the event as not JSON)."""
        c = self._map.get(int(m[1]))
        if c is None:
            return True
        text = m[3]
        if "\\" in text:
            try:
                text = _loads(f'"{text}"')
            except ValueError:
                return False
        kind = _DELTA_KINDS[m[2]]
        if text or kind is not ToolArgsDelta:  # an empty fragment says nothing
            out.append(kind(c, text))
        return True

    def close(self) -> list[Event]:
        out: list[Event] = []
        for sse in self._sse.close():
            self._handle(sse, out)
        if not self._finished:
            self._finish(out, "error" if self._errored else None)
        return out

    def _handle(self, sse: SSEEvent, out: list[Event]) -> None:
        if self._finished or not sse.data:
            return
        try:
            obj = _loads(sse.data)
        except ValueError:
            log.debug("skipping a non-JSON SSE event %r", sse.event)
            return
        if not isinstance(obj, dict):
            return
        etype = obj.get("type") or sse.event
        if etype == "content_block_delta":
            c = self._map.get(obj.get("index", -1))
            if c is None:
                return
            delta = obj.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                out.append(TextDelta(c, delta.get("text") or ""))
            elif dtype == "input_json_delta":
                fragment = delta.get("partial_json")
                if fragment:
                    out.append(ToolArgsDelta(c, fragment))
            elif dtype == "thinking_delta":
                out.append(ThinkingDelta(c, delta.get("thinking") or ""))
            elif dtype == "signature_delta":
                out.append(ThinkingDelta(c, "", signature=delta.get("signature")))
            else:
                log.debug("ignoring a %s delta", dtype)
        elif etype == "content_block_start":
            self._block_start(obj, out)
        elif etype == "content_block_stop":
            c = self._map.get(obj.get("index", -1))
            if c is not None and c in self._open:
                del self._open[c]
                out.append(BlockStop(c))
        elif etype == "message_delta":
            delta = obj.get("delta") or {}
            if "stop_reason" in delta:
                self._stop_reason = delta["stop_reason"]
            if "stop_sequence" in delta:
                self._stop_sequence = delta["stop_sequence"]
            usage = obj.get("usage")
            if isinstance(usage, dict):
                self._usage.update({k: v for k, v in usage.items() if v is not None})
        elif etype == "message_start":
            if self._started:
                return
            message = obj.get("message") or {}
            usage = message.get("usage")
            start_usage = None
            if isinstance(usage, dict):
                self._usage.update({k: v for k, v in usage.items() if v is not None})
                start_usage = _usage_from_wire(usage)
            self._started = True
            out.append(
                Start(
                    id=str(message.get("id") or _new_id()),
                    model=str(message.get("model") or ""),
                    usage=start_usage,
                )
            )
        elif etype == "message_stop":
            self._finish(out, None)
        elif etype == "error":
            self._ensure_start(out)
            err = obj.get("error") or {}
            kind = str(err.get("type") or "api_error")
            status = _STATUS_BY_ERROR_TYPE.get(kind, 500)
            self._errored = True
            out.append(
                Error(
                    message=str(err.get("message") or kind),
                    status=status,
                    kind=error_kind(status),
                )
            )
        # ping and unknown events are ignored

    def _ensure_start(self, out: list[Event]) -> None:
        if not self._started:
            self._started = True
            out.append(Start(id=_new_id(), model=""))

    def _block_start(self, obj: dict[str, Any], out: list[Event]) -> None:
        block = obj.get("content_block") or {}
        btype = block.get("type")
        if btype not in _SURFACED_BLOCKS:
            log.debug("skipping a %s block", btype)
            return
        self._ensure_start(out)
        c = self._next
        self._next += 1
        self._map[obj.get("index", -1)] = c
        self._open[c] = None
        if btype == "text":
            text = block.get("text")
            if text:
                out.append(TextDelta(c, text))
        elif btype == "tool_use":
            out.append(ToolCallStart(c, str(block.get("id") or ""), str(block.get("name") or "")))
            inp = block.get("input")
            if isinstance(inp, dict) and inp:
                out.append(ToolArgsDelta(c, _dumps(inp)))
        elif btype == "thinking":
            text, sig = block.get("thinking") or "", block.get("signature") or None
            if text or sig:
                out.append(ThinkingDelta(c, text, signature=sig))
        else:  # redacted_thinking
            out.append(ThinkingDelta(c, str(block.get("data") or ""), redacted=True))

    def _finish(self, out: list[Event], forced: StopReason | None) -> None:
        self._ensure_start(out)
        for c in self._open:
            out.append(BlockStop(c))
        self._open.clear()
        self._finished = True
        stop = forced or _stop_from_wire(self._stop_reason)
        out.append(
            Finish(
                stop_reason=stop,
                usage=_usage_from_wire(self._usage) if self._usage else None,
                stop_sequence=self._stop_sequence if stop == "stop" else None,
            )
        )


# ----------------------------------------------------------------------------------------------
# stream encoding
# ----------------------------------------------------------------------------------------------

_PING = b'event: ping\ndata: {"type":"ping"}\n\n'
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
_DELTA_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'


def _event_bytes(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _dumps_bytes(payload) + b"\n\n"


def _delta(index: int, kind: str, field: str, value: str) -> bytes:
    """One `content_block_delta` event, written without building its dict (one per token)."""
    return b'%s%d,"delta":{"type":"%s","%s":%s}}\n\n' % (
        _DELTA_HEAD,
        index,
        kind.encode(),
        field.encode(),
        _json_str(value),
    )


# Operations kept for a held-back block: (kind, a, b)
#   ("text", text, None) ("think", text, signature) ("red", data, None)
#   ("tool", id, name) ("args", fragment, None)
_Op = tuple[str, str, str | None]


class StreamEncoder:
    """Canonical events to the Anthropic SSE stream the official SDKs parse.

    One block is open at a time and Anthropic indexes run 0, 1, 2 in emission order. A new
    block's first event closes the open block, except when the open block is a tool call whose
    arguments are not yet a complete JSON value (interleaved parallel tool calls): then the new
    block is held back and sent whole once the open one ends (its BlockStop, its arguments
    completing, or Finish). Deltas arriving for a block that was already closed are sent as a
    new block of the same kind (text, thinking); late tool arguments can't be and are dropped.
    """

    def __init__(self, *, model: str | None = None, include_usage: bool = False) -> None:
        del include_usage  # Anthropic always reports usage
        self._model = model
        self._started = False
        self._done = False
        self._start_usage: Usage | None = None
        self._next_a = 0
        self._open: int | None = None  # canonical index of the open block
        self._open_a = -1  # its Anthropic index
        self._open_kind = ""  # text | think | red | tool
        self._open_args: list[str] = []
        self._held: dict[int, list[_Op]] = {}
        self._stopped: set[int] = set()
        self._skipped: set[int] = set()
        self._opened: set[int] = set()

    # -- public ---------------------------------------------------------------------------

    def feed(self, event: Event) -> bytes:
        if self._done:
            return b""
        if isinstance(event, TextDelta):
            return self._content(event.index, ("text", event.text, None))
        if isinstance(event, ToolArgsDelta):
            return self._content(event.index, ("args", event.fragment, None))
        if isinstance(event, ThinkingDelta):
            if event.redacted:
                return self._content(event.index, ("red", event.text, None))
            return self._content(event.index, ("think", event.text, event.signature))
        if isinstance(event, ToolCallStart):
            return self._content(event.index, ("tool", event.id, event.name))
        if isinstance(event, BlockStop):
            return self._block_stop(event.index)
        if isinstance(event, Start):
            if self._started:
                return b""
            return self._message_start(event.id, event.model, event.usage)
        if isinstance(event, Finish):
            return self._finish(event.stop_reason, event.usage, event.stop_sequence)
        if isinstance(event, Error):
            self._done = True
            wire_type = _ERROR_TYPE_BY_KIND.get(event.kind)
            if wire_type is None:
                wire_type = render_error(event.status, "")["error"]["type"]
            payload = {"type": "error", "error": {"type": wire_type, "message": event.message}}
            return _event_bytes("error", payload)
        return b""

    def close(self) -> bytes:
        if self._done:
            return b""
        return self._finish("end", None, None)

    # -- internals ------------------------------------------------------------------------

    def _message_start(self, msg_id: str, model: str, usage: Usage | None) -> bytes:
        self._started = True
        self._start_usage = usage
        wire_usage = _usage_to_wire(usage)
        wire_usage.pop("output_tokens_details", None)
        message: dict[str, Any] = {
            "id": msg_id or _new_id(),
            "type": "message",
            "role": "assistant",
            "model": self._model or model or "",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": wire_usage,
        }
        return _event_bytes("message_start", {"type": "message_start", "message": message}) + _PING

    def _content(self, c: int, op: _Op) -> bytes:
        out: list[bytes] = []
        if not self._started:
            out.append(self._message_start("", "", None))
        if c == self._open:
            self._emit(op, out)
            if self._held and self._open_kind == "tool" and self._args_complete():
                self._close_open(out, final=False)
        elif c in self._held:
            self._held[c].append(op)
        elif c in self._stopped or c in self._skipped:
            log.debug("dropping a delta for block %s after its BlockStop", c)
        elif op[0] == "think" and not op[1] and c not in self._opened:
            # a signature-only thinking block (another provider's token for its own use, as
            # Gemini sends at the end of an answer): nothing an Anthropic client can use
            self._skipped.add(c)
        elif self._make_room(out):
            self._open_block(c, op, out)
        else:
            self._held[c] = [op]
        return b"".join(out)

    def _block_stop(self, c: int) -> bytes:
        self._stopped.add(c)
        if c != self._open:
            return b""
        out: list[bytes] = []
        self._close_open(out, final=False)
        return b"".join(out)

    def _finish(self, stop: StopReason, usage: Usage | None, stop_sequence: str | None) -> bytes:
        out: list[bytes] = []
        if not self._started:
            out.append(self._message_start("", "", usage))
        if self._open is not None:
            self._close_open(out, final=True)
        else:
            self._flush_held(out, final=True)
        self._done = True
        wire_stop = _STOP_TO_WIRE.get(stop, "end_turn")
        merged = (self._start_usage or Usage()).merged(usage)
        delta_usage = _usage_to_wire(merged, always=False)
        payload = {
            "type": "message_delta",
            "delta": {
                "stop_reason": wire_stop,
                "stop_sequence": stop_sequence if wire_stop == "stop_sequence" else None,
            },
            "usage": delta_usage,
        }
        out.append(_event_bytes("message_delta", payload))
        out.append(_MESSAGE_STOP)
        return b"".join(out)

    def _args_complete(self) -> bool:
        if not self._open_args:
            return False
        try:
            json.loads("".join(self._open_args))
        except ValueError:
            return False
        return True

    def _can_preempt(self) -> bool:
        return self._open_kind != "tool" or self._args_complete()

    def _make_room(self, out: list[bytes]) -> bool:
        """Close the open block if it may be closed now; True when no block is open after."""
        while self._open is not None:
            if not self._can_preempt():
                return False
            self._close_open(out, final=False)
        return True

    def _close_open(self, out: list[bytes], *, final: bool) -> None:
        out.append(
            b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'
            % self._open_a
        )
        self._open = None
        self._open_args = []
        self._flush_held(out, final=final)

    def _flush_held(self, out: list[bytes], *, final: bool) -> None:
        """Send held-back blocks: whole when finished, else the first stays open."""
        while self._held and self._open is None:
            c = next(iter(self._held))
            ops = self._held.pop(c)
            if not self._open_block(c, ops[0], out):
                continue
            for op in ops[1:]:
                self._emit(op, out)
            if final or c in self._stopped or (self._held and self._can_preempt()):
                out.append(
                    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'
                    % self._open_a
                )
                self._open = None
                self._open_args = []

    def _open_block(self, c: int, op: _Op, out: list[bytes]) -> bool:
        kind, a, b = op
        if kind == "text":
            block: dict[str, Any] = {"type": "text", "text": ""}
        elif kind == "think":
            block = {"type": "thinking", "thinking": "", "signature": ""}
        elif kind == "red":
            block = {"type": "redacted_thinking", "data": a}
        elif kind == "tool":
            block = {"type": "tool_use", "id": a, "name": b or "", "input": {}}
        else:
            log.debug("dropping tool arguments for block %s: its tool_use block is gone", c)
            return False
        ai = self._next_a
        self._next_a += 1
        self._opened.add(c)
        self._open, self._open_a, self._open_kind = c, ai, kind
        self._open_args = []
        out.append(
            _event_bytes(
                "content_block_start",
                {"type": "content_block_start", "index": ai, "content_block": block},
            )
        )
        if kind in ("text", "think"):
            self._emit(op, out)
        return True

    def _emit(self, op: _Op, out: list[bytes]) -> None:
        kind, a, b = op
        ai = self._open_a
        open_kind = self._open_kind
        if kind == "text":
            if open_kind != "text":
                log.debug("dropping text for a %s block", open_kind)
            elif a:
                out.append(_delta(ai, "text_delta", "text", a))
        elif kind == "args":
            if open_kind != "tool":
                log.debug("dropping tool arguments for a %s block", open_kind)
            elif a:
                self._open_args.append(a)
                out.append(_delta(ai, "input_json_delta", "partial_json", a))
        elif kind == "think":
            if open_kind != "think":
                log.debug("dropping thinking for a %s block", open_kind)
                return
            if a:
                out.append(_delta(ai, "thinking_delta", "thinking", a))
            if b:
                out.append(_delta(ai, "signature_delta", "signature", b))
        else:
            log.debug("ignoring a repeated %s start for an open block", kind)
