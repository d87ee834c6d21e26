"""The OpenAI Responses wire protocol (`POST /v1/responses`) <-> canonical.

Owns the conversion between the canonical form and the Responses request body, the `response`
object, its SSE stream of typed events (`response.created` ... `response.completed`) and its error
body (the same as Chat Completions'). Used as a client front (Codex, `client.responses.create`)
and as a backend protocol for OpenAI models that only answer here.

Stateless: `previous_response_id` and `conversation` are refused with a `ProtocolError` (400);
the client sends the whole conversation in `input` (Codex does, with `store: false`).

Decisions where the protocol leaves room:
- Input items -> messages: leading `system`/`developer` messages (and `instructions`, first) go to
  `system`; later ones become `Message(role="system")`. Consecutive assistant-side items
  (assistant `message`, `reasoning`, `function_call`, hosted tool calls) form one assistant
  message, so a turn converts as a turn; each `function_call_output` is one `tool` message.
- `reasoning` items become `ThinkingPart`s, not `OpaquePart`s (that loses less): the summary text
  (parts joined by a blank line; `reasoning_text` content when there is no summary) is the text,
  `encrypted_content` the signature, and the item as it came is kept for the same-protocol trip.
  A thinking block streamed from another backend goes to the client as a reasoning item with its
  text as the summary and its signature as `encrypted_content`. Rendering a converted request
  drops thinking (a signature only holds for the provider that made it). A reasoning item the
  client sent goes back as it came; a thinking part without one and without a signature is
  dropped (an item with neither `id` nor `encrypted_content` is of no use to any server).
- Items and tools the canonical form has no place for (`custom_tool_call`, `web_search_call`,
  `item_reference`, `input_file`, hosted tools ...) are `OpaquePart`s / extras: kept for the
  same protocol, dropped (with a debug log) when converting.
- Converted function tools are sent with `strict: false` (Responses defaults to strict schemas,
  which arbitrary client schemas do not satisfy). `stop` and `top_k` have no Responses field
  and are dropped with a debug log; a converted `max_tokens` below 16 (the API's minimum, which
  quota probes go under) is raised to 16.
- Stop reasons: `completed` -> `tool_use` when the output holds function calls, else `end`;
  `incomplete` -> `max_tokens` (`filtered` for `content_filter`); `failed` -> `error`. Rendering
  inverts this; a stream that hit the token limit ends with `response.incomplete`, as the real
  API's does. An `Error` event ends the stream with `response.failed` (the SDK raises on neither,
  it yields both; Codex reads `response.failed`).

Lossless round trip: as in `openai_chat`, `extras` hold wire fields exactly as they came
(written back only when the target is Responses again, never over a value the canonical form
gives) and markers starting with `_` (listed in `_MARKERS`) that remember the original shape.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any, Final, Literal, TypeGuard, cast

from pydantic import ValidationError

from protocol import openai_chat
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
from protocol.codec import ProtocolError
from protocol.openai_usage import RESPONSES, patched_usage, read_usage
from protocol.reasoning import openai_effort
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

NAME: ProtocolName = "responses"

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# Markers kept in `extras` (never written to the wire as fields)
# ----------------------------------------------------------------------------------------------
_STR: Final = "_str"  # content (or a function output) was a plain string
_MSG: Final = "_msg"  # first part of a leading system message: the item minus its content
_EMPTY: Final = "_empty"  # placeholder part of a leading system message with empty content
_ROLE: Final = "_role"  # the wire role when it is not the canonical one (`developer`)
_ITEMS: Final = "_items"  # assistant message / response: [[part count, message item or None]]
_RAW: Final = "_raw"  # reasoning item / function output list as it came
_KIND: Final = "_kind"  # TextPart: its content type when not the default one
_WHOLE: Final = "_whole"  # a message that is one item kept verbatim (an OpaquePart)
_INPUT_STR: Final = "_input_str"  # `input` was a string
_NO_INPUT: Final = "_no_input"  # `input` was absent
_STREAM_FALSE: Final = "_stream_false"  # `stream: false` was explicit
_NO_TOOL_CHOICE: Final = "_no_tool_choice"  # ToolChoice made only for parallel_tool_calls
_OTHER_TOOLS: Final = "_other_tools"  # [(position, tool)] for non-function tools
_NO_PARAMS: Final = "_no_params"  # a function tool without `parameters`
_REASONING: Final = "_reasoning"  # the `reasoning` object as it came
_USAGE: Final = "_usage"  # response: the usage object as it came
_ABSENT: Final = "_absent"  # response: standard keys the original lacked

_MARKERS: Final = frozenset(
    {
        _STR, _MSG, _EMPTY, _ROLE, _ITEMS, _RAW, _KIND, _WHOLE, _INPUT_STR, _NO_INPUT,
        _STREAM_FALSE, _NO_TOOL_CHOICE, _OTHER_TOOLS, _NO_PARAMS, _REASONING, _USAGE, _ABSENT,
    }
)  # fmt: skip

_EFFORTS: Final = frozenset({"none", "minimal", "low", "medium", "high", "xhigh", "max"})
_DATA_URL: Final = re.compile(r"data:([^;,]+);base64,(.*)", re.S)
_DEFAULT_PARAMS: Final = {"type": "object", "properties": {}}
_STATEFUL: Final = ("previous_response_id", "conversation")
_MIN_OUTPUT_TOKENS: Final = 16  # the API rejects a smaller max_output_tokens

_TOP_KEYS: Final = frozenset(
    {
        "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls",
        "temperature", "top_p", "max_output_tokens", "reasoning", "stream",
    }
)  # fmt: skip

# Item types produced by the model (they belong to the assistant's turn); `*_call` too.
_ASSISTANT_ITEMS: Final = frozenset(
    {"reasoning", "compaction", "mcp_list_tools", "mcp_approval_request", "program"}
)


def _overlay(out: dict[str, Any], extras: dict[str, Any]) -> dict[str, Any]:
    return overlay(out, extras, _MARKERS)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _bad_type(where: str, expected: str, value: Any) -> ProtocolError:
    """The real API's wording for a value of the wrong JSON type."""
    return ProtocolError(
        f"Invalid type for '{where}': expected {expected}, but got {_type_name(value)} instead."
    )


def _missing(where: str) -> ProtocolError:
    return ProtocolError(f"Missing required parameter: '{where}'.")


def _is_assistant_item(kind: Any) -> bool:
    return isinstance(kind, str) and (kind in _ASSISTANT_ITEMS or kind.endswith("_call"))


# ==============================================================================================
# Requests
# ==============================================================================================


def parse_request(
    body: dict[str, Any],
    *,
    model: str | None = None,
    stream: bool | None = None,
    **_: Any,
) -> ChatRequest:
    """A Responses request body as a `ChatRequest` (raises `ProtocolError`)."""
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
    for key in _STATEFUL:
        if body.get(key) is not None:
            raise ProtocolError(
                f"'{key}' is not supported: this proxy does not keep conversations. "
                "Send the whole conversation in 'input' (and 'store': false)."
            )
    extras: dict[str, Any] = _rest(body, _TOP_KEYS)
    name = body.get("model")
    if model is None:
        if name is None:
            raise _missing("model")
        if not isinstance(name, str):
            raise _bad_type("model", "a string", name)
        model = name

    system: list[TextPart] = []
    msgs: list[Message] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        system.append(TextPart(text=instructions))
    elif instructions is not None:
        raise _bad_type("instructions", "a string", instructions)
    elif "instructions" in body:
        extras["instructions"] = None

    if "input" not in body:
        extras[_NO_INPUT] = True
    else:
        raw = body["input"]
        if isinstance(raw, str):
            msgs.append(Message(role="user", content=[TextPart(text=raw)]))
            extras[_INPUT_STR] = True
        elif isinstance(raw, list):
            lead, msgs = _parse_input(raw)
            system.extend(lead)
        else:
            raise _bad_type("input", "a string or an array of input items", raw)

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
                raise _bad_type(key, "a number", value)
            req[key] = value
    value = null_or("max_output_tokens")
    if value is not None:
        if not _is_int(value):
            raise _bad_type("max_output_tokens", "an integer", value)
        req["max_tokens"] = value

    value = null_or("stream")
    if value is not None:
        if not isinstance(value, bool):
            raise _bad_type("stream", "a boolean", value)
        req["stream"] = value
        if not value:
            extras[_STREAM_FALSE] = True
    if stream is not None:
        req["stream"] = stream
    req["include_usage"] = bool(req.get("stream"))  # a Responses stream always reports usage

    robj = null_or("reasoning")
    if robj is not None:
        if not isinstance(robj, dict):
            raise _bad_type("reasoning", "an object", robj)
        extras[_REASONING] = _copy_json(robj)
        req["reasoning"] = _reasoning_in(robj)
    tools = null_or("tools")
    if tools is not None:
        req["tools"] = _parse_tools(tools, extras)
    req["tool_choice"] = _parse_tool_choice(extras, null_or)
    return ChatRequest(**req)


def _reasoning_in(robj: dict[str, Any]) -> Reasoning:
    effort = robj.get("effort")
    summary = robj.get("summary", robj.get("generate_summary"))
    return Reasoning(
        effort=effort if effort in _EFFORTS else None,
        include_thoughts=True if isinstance(summary, str) else None,
    )


def _parse_tools(tools: Any, extras: dict[str, Any]) -> list[Tool]:
    if not isinstance(tools, list):
        raise _bad_type("tools", "an array", tools)
    if not tools:
        extras["tools"] = []
        return []
    out: list[Tool] = []
    others: list[tuple[int, Any]] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _bad_type(where, "an object", tool)
        kind = tool.get("type")
        if kind is None:
            raise _missing(f"{where}.type")
        if kind != "function":
            others.append((i, tool))  # web_search, custom, local_shell, mcp ...: kept verbatim
            continue
        name = tool.get("name")
        if name is None:
            raise _missing(f"{where}.name")
        if not isinstance(name, str):
            raise _bad_type(f"{where}.name", "a string", name)
        t_extras = _rest(tool, {"type", "name", "description", "parameters"})
        fields: dict[str, Any] = {"name": name, "extras": t_extras}
        desc = tool.get("description")
        if isinstance(desc, str):
            fields["description"] = desc
        elif "description" in tool:
            t_extras["description"] = desc
        params = tool.get("parameters")
        if isinstance(params, dict):
            fields["parameters"] = params
        else:
            t_extras[_NO_PARAMS] = True
            if "parameters" in tool:
                if params is not None:
                    raise _bad_type(f"{where}.parameters", "an object", params)
                t_extras["parameters"] = None
        out.append(Tool(**fields))
    if others:
        extras[_OTHER_TOOLS] = others
    return out


def _parse_tool_choice(extras: dict[str, Any], null_or: Callable[[str], Any]) -> ToolChoice | None:
    raw = null_or("tool_choice")
    parallel = null_or("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise _bad_type("parallel_tool_calls", "a boolean", parallel)
    choice: ToolChoice | None = None
    if raw in ("auto", "none", "required"):
        choice = ToolChoice(mode=raw)
    elif (
        isinstance(raw, dict)
        and raw.keys() == {"type", "name"}
        and raw["type"] == "function"
        and isinstance(raw["name"], str)
    ):
        choice = ToolChoice(mode="tool", name=raw["name"])
    elif raw is not None:
        if not isinstance(raw, str | dict):
            raise _bad_type("tool_choice", "a string or an object", raw)
        extras["tool_choice"] = raw  # allowed_tools, hosted tools, custom, unknown: verbatim
    if parallel is not None:
        if choice is None:
            choice = ToolChoice(mode="auto")
            extras[_NO_TOOL_CHOICE] = True
        choice.parallel = parallel
    return choice


# -- input items --------------------------------------------------------------------------------


def _parse_input(raw: list[Any]) -> tuple[list[TextPart], list[Message]]:
    system: list[TextPart] = []
    msgs: list[Message] = []
    names: dict[str, str] = {}  # call id -> function name, for tool results
    group: Message | None = None  # the assistant turn being built from consecutive items
    leading = True
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _bad_type(where, "an object", item)
        kind = item.get("type")
        if kind is None and "role" not in item:
            raise _missing(f"{where}.type")
        if kind in (None, "message"):
            role = item.get("role")
            if role in ("system", "developer"):
                if leading:
                    parts = _leading_system(item, where)
                    if parts is not None:
                        system.extend(parts)
                        continue
                    leading = False  # it holds more than text: a message of its own
                group = None
                msgs.append(_content_message(item, where, "system"))
                continue
            leading = False
            if role == "user":
                group = None
                msgs.append(_content_message(item, where, "user"))
                continue
            if role == "assistant":
                group = _add_item(msgs, group, *_assistant_item(item, where, names))
                continue
            if role is None:
                raise _missing(f"{where}.role")
            raise ProtocolError(
                f"Invalid value: {_dumps(role)}. Supported values are: 'assistant', 'system', "
                f"'developer', and 'user'. ('{where}.role')"
            )
        leading = False
        if kind == "function_call_output":
            group = None
            msgs.append(_tool_message(item, where, names))
        elif _is_assistant_item(kind):
            group = _add_item(msgs, group, *_assistant_item(item, where, names))
        else:  # item_reference, custom_tool_call_output, ...: kept whole
            if not isinstance(kind, str):
                raise _bad_type(f"{where}.type", "a string", kind)
            group = None
            part = OpaquePart(protocol=NAME, data=item)
            msgs.append(Message(role="user", content=[part], extras={_WHOLE: True}))
    return system, msgs


def _add_item(
    msgs: list[Message], group: Message | None, parts: list[Part], wrapper: dict[str, Any] | None
) -> Message:
    if group is None:
        group = Message(role="assistant", extras={_ITEMS: []})
        msgs.append(group)
    group.content.extend(parts)
    group.extras[_ITEMS].append([len(parts), wrapper])
    return group


def _text_of(part: dict[str, Any], key: str, where: str) -> str:
    text = part.get(key)
    if not isinstance(text, str):
        if text is None:
            raise _missing(f"{where}.{key}")
        raise _bad_type(f"{where}.{key}", "a string", text)
    return text


def _content(item: dict[str, Any], where: str) -> Any:
    if "content" not in item:
        raise _missing(f"{where}.content")
    content = item["content"]
    if not isinstance(content, str | list):
        raise _bad_type(f"{where}.content", "a string or an array of content parts", content)
    return content


def _leading_system(item: dict[str, Any], where: str) -> list[TextPart] | None:
    """A leading system/developer message as system parts (None when it holds non-text)."""
    content = _content(item, where)
    meta = _rest(item, {"content"})
    if isinstance(content, str):
        return [TextPart(text=content, extras={_MSG: meta, _STR: True})]
    parts: list[TextPart] = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "input_text":
            return None
        text = _text_of(part, "text", f"{where}.content[{j}]")
        parts.append(TextPart(text=text, extras=_rest(part, {"type", "text"})))
    if not parts:
        parts = [TextPart(text="", extras={_EMPTY: True})]
    parts[0].extras[_MSG] = meta
    return parts


def _content_message(item: dict[str, Any], where: str, role: Literal["system", "user"]) -> Message:
    """A system (`system`/`developer`) or user input message; a role the canonical form does
    not name is kept in the extras."""
    content = _content(item, where)
    extras = _rest(item, {"role", "content"})
    if item["role"] != role:
        extras[_ROLE] = item["role"]
    parts: list[Part] = []
    if isinstance(content, str):
        parts.append(TextPart(text=content))
        extras[_STR] = True
    else:
        for j, part in enumerate(content):
            parts.append(_user_part(part, f"{where}.content[{j}]"))
    return Message(role=role, content=parts, extras=extras)


def _user_part(part: Any, where: str) -> Part:
    if not isinstance(part, dict):
        raise _bad_type(where, "an object", part)
    kind = part.get("type")
    if kind == "input_text":
        return TextPart(text=_text_of(part, "text", where), extras=_rest(part, {"type", "text"}))
    if kind == "input_image" and isinstance(part.get("image_url"), str):
        return _image_part(part)
    if not isinstance(kind, str):
        raise (
            _missing(f"{where}.type")
            if kind is None
            else _bad_type(f"{where}.type", "a string", kind)
        )
    return OpaquePart(protocol=NAME, data=part)  # input_file, input_audio, file_id images ...


def _image_part(part: dict[str, Any]) -> ImagePart:
    url: str = part["image_url"]
    extras = _rest(part, {"type", "image_url"})
    match = _DATA_URL.fullmatch(url)
    if match:
        return ImagePart(media_type=match.group(1), data=match.group(2), extras=extras)
    return ImagePart(url=url, extras=extras)


def _assistant_item(
    item: dict[str, Any], where: str, names: dict[str, str]
) -> tuple[list[Part], dict[str, Any] | None]:
    """One assistant-side item as parts, plus the item's wrapper when it is a message."""
    kind = item.get("type")
    if kind in (None, "message"):
        content = _content(item, where)
        wrapper = _rest(item, {"content"})
        parts: list[Part] = []
        if isinstance(content, str):
            parts.append(TextPart(text=content))
            wrapper[_STR] = True
        else:
            for j, part in enumerate(content):
                parts.append(_output_part(part, f"{where}.content[{j}]"))
        return parts, wrapper
    if kind == "function_call":
        call_id = item.get("call_id")
        fields = {"call_id": call_id, "name": item.get("name"), "arguments": item.get("arguments")}
        for key, value in fields.items():
            if not isinstance(value, str):
                raise (
                    _missing(f"{where}.{key}")
                    if value is None
                    else _bad_type(f"{where}.{key}", "a string", value)
                )
        names[cast(str, call_id)] = cast(str, fields["name"])
        extras = _rest(item, {"type", "call_id", "name", "arguments"})
        return [
            ToolCallPart(
                id=cast(str, call_id),
                name=cast(str, fields["name"]),
                arguments=cast(str, fields["arguments"]),
                extras=extras,
            )
        ], None
    if kind == "reasoning":
        summary = item.get("summary")
        if summary is not None and not isinstance(summary, list):
            raise _bad_type(f"{where}.summary", "an array", summary)
        enc = item.get("encrypted_content")
        if enc is not None and not isinstance(enc, str):
            raise _bad_type(f"{where}.encrypted_content", "a string", enc)
        kept: dict[str, Any] = {_RAW: item}
        if enc is not None:
            enc, provider = untag_signature(enc)
            if provider is not None:
                kept[SIGNATURE_PROVIDER] = provider
        part = ThinkingPart(text=_reasoning_text(item), signature=enc, extras=kept)
        return [part], None
    return [OpaquePart(protocol=NAME, data=item)], None


def _output_part(part: Any, where: str) -> Part:
    if not isinstance(part, dict):
        raise _bad_type(where, "an object", part)
    kind = part.get("type")
    if kind == "output_text":
        return TextPart(text=_text_of(part, "text", where), extras=_rest(part, {"type", "text"}))
    if kind == "input_text":
        extras = _rest(part, {"type", "text"})
        extras[_KIND] = kind
        return TextPart(text=_text_of(part, "text", where), extras=extras)
    if kind == "refusal":
        extras = _rest(part, {"type", "refusal"})
        extras[_KIND] = kind
        return TextPart(text=_text_of(part, "refusal", where), extras=extras)
    return OpaquePart(protocol=NAME, data=part)


def _texts(items: Any, kind: str) -> list[str]:
    if not isinstance(items, list):
        return []
    return [
        p["text"]
        for p in items
        if isinstance(p, dict) and p.get("type") == kind and isinstance(p.get("text"), str)
    ]


def _reasoning_text(item: dict[str, Any]) -> str:
    """A reasoning item's text: its summary parts, else its reasoning_text content."""
    summary = _texts(item.get("summary"), "summary_text")
    if summary:
        return "\n\n".join(summary)
    return "\n\n".join(_texts(item.get("content"), "reasoning_text"))


def _tool_message(item: dict[str, Any], where: str, names: dict[str, str]) -> Message:
    call_id = item.get("call_id")
    if not isinstance(call_id, str):
        if call_id is None:
            raise _missing(f"{where}.call_id")
        raise _bad_type(f"{where}.call_id", "a string", call_id)
    if "output" not in item:
        raise _missing(f"{where}.output")
    output = item["output"]
    extras = _rest(item, {"type", "call_id", "output"})
    p_extras: dict[str, Any] = {}
    parts: list[TextPart | ImagePart] = []
    if isinstance(output, str):
        parts.append(TextPart(text=output))
        p_extras[_STR] = True
    elif isinstance(output, list):
        for j, part in enumerate(output):
            pw = f"{where}.output[{j}]"
            if not isinstance(part, dict):
                raise _bad_type(pw, "an object", part)
            kind = part.get("type")
            if kind == "input_text":
                parts.append(
                    TextPart(text=_text_of(part, "text", pw), extras=_rest(part, {"type", "text"}))
                )
            elif kind == "input_image" and isinstance(part.get("image_url"), str):
                parts.append(_image_part(part))
            else:
                p_extras[_RAW] = output  # parts the canonical form cannot hold: keep the list
    else:
        raise _bad_type(f"{where}.output", "a string or an array of content parts", output)
    result = ToolResultPart(
        call_id=call_id, name=names.get(call_id), content=parts, extras=p_extras
    )
    return Message(role="tool", content=[result], extras=extras)


# ----------------------------------------------------------------------------------------------


def render_request(req: ChatRequest) -> dict[str, Any]:
    """The Responses body for `req` (lossless when `req.source` is Responses)."""
    same = req.source == NAME
    extras = req.extras if same else {}
    out: dict[str, Any] = {"model": req.model}

    if same:
        instructions, items = _render_leading_same(req.system)
    else:
        instructions = req.system_text() if req.system else None
        items = []
    if instructions is not None:
        out["instructions"] = instructions
    for msg in req.messages:
        if same:
            _render_same(msg, items)
        else:
            _render_converted(msg, items)
    if (
        same
        and extras.get(_INPUT_STR)
        and len(items) == 1
        and len(req.messages) == 1
        and _plain_user_text(req.messages[0])
    ):
        out["input"] = req.messages[0].text()
    elif items or not (same and extras.get(_NO_INPUT)):
        out["input"] = items

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
                out["tool_choice"] = {"type": "function", "name": tc.name}
            else:
                out["tool_choice"] = "required" if tc.mode == "tool" else tc.mode
        if tc.parallel is not None:
            out["parallel_tool_calls"] = tc.parallel

    if req.temperature is not None:
        out["temperature"] = req.temperature
    if req.top_p is not None:
        out["top_p"] = req.top_p
    if req.top_k is not None:
        log.debug("responses: top_k %s dropped (no such parameter)", req.top_k)
    if req.max_tokens is not None:
        out["max_output_tokens"] = req.max_tokens
        if not same and req.max_tokens < _MIN_OUTPUT_TOKENS:
            log.debug("responses: max_output_tokens %s raised to the API's minimum", req.max_tokens)
            out["max_output_tokens"] = _MIN_OUTPUT_TOKENS
    if req.stop:
        log.debug("responses: stop sequences dropped (no such parameter)")
    if req.reasoning is not None:
        robj = _render_reasoning(req.reasoning, extras.get(_REASONING) if same else None)
        if robj is not None:
            out["reasoning"] = robj

    if req.stream:
        out["stream"] = True
    elif extras.get(_STREAM_FALSE):
        out["stream"] = False
    if not same:
        out["store"] = False
        if req.extras:
            log.debug(
                "responses: %s-only request fields dropped: %s", req.source, sorted(req.extras)
            )
    return _overlay(out, extras) if same else out


def _plain_user_text(msg: Message) -> bool:
    return (
        msg.role == "user"
        and not msg.extras
        and len(msg.content) == 1
        and isinstance(msg.content[0], TextPart)
        and not msg.content[0].extras
    )


def _budget_effort(r: Reasoning) -> str | None:
    """The effort for a budget, from the shared table (`protocol.reasoning`)."""
    return openai_effort(Reasoning(budget_tokens=r.budget_tokens, enabled=r.enabled))


def _render_reasoning(r: Reasoning, raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, dict):  # same protocol: the object as it came, with what changed
        robj = _copy_json(raw)
        was = _reasoning_in(raw)
        if r.effort != was.effort and r.effort is not None:
            robj["effort"] = r.effort
        elif r.effort is None and was.effort is None and r.budget_tokens:
            derived = _budget_effort(r)
            if derived is not None:
                robj["effort"] = derived
        if r.include_thoughts != was.include_thoughts:
            if r.include_thoughts:
                robj["summary"] = "auto"
            else:
                robj.pop("summary", None)
                robj.pop("generate_summary", None)
        return robj
    effort: str | None = r.effort
    if effort is None and r.enabled is not False and r.budget_tokens and r.budget_tokens > 0:
        effort = _budget_effort(r)
    robj = {}
    if effort is not None:
        robj["effort"] = effort
    # a client that turned thinking on (Anthropic `thinking`, a Gemini budget) expects to see
    # it: ask for the summaries. An effort alone (OpenAI's way) does not ask to see anything.
    thinking_on = r.enabled is True or (r.enabled is None and bool(r.budget_tokens))
    if r.include_thoughts or (r.include_thoughts is None and thinking_on):
        robj["summary"] = "auto"
    return robj or None


def _render_tool(tool: Tool, same: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "function", "name": tool.name}
    if tool.description is not None:
        out["description"] = tool.description
    ex = tool.extras if same else {}
    if not (ex.get(_NO_PARAMS) and tool.parameters == _DEFAULT_PARAMS):
        out["parameters"] = tool.parameters
    if not same:
        out["strict"] = False
        return out
    return _overlay(out, ex)


def _render_leading_same(parts: list[TextPart]) -> tuple[str | None, list[dict[str, Any]]]:
    """Leading system parts as `instructions` (the unmarked first run) and system messages."""
    head: list[str] = []
    groups: list[tuple[dict[str, Any], list[TextPart]]] = []
    for part in parts:
        meta = part.extras.get(_MSG)
        if meta is not None:
            groups.append((meta, []))
        if groups:
            groups[-1][1].append(part)
        else:
            head.append(part.text)
    items: list[dict[str, Any]] = []
    for meta, group in groups:
        msg: dict[str, Any] = {"role": meta.get("role", "system")}
        if len(group) == 1 and group[0].extras.get(_EMPTY) and not group[0].text:
            msg["content"] = []
        elif len(group) == 1 and group[0].extras.get(_STR):
            msg["content"] = group[0].text
        else:
            msg["content"] = [_input_text(p, True) for p in group]
        items.append(_overlay(msg, meta))
    return ("\n\n".join(head) if head else None), items


def _input_text(part: TextPart, same: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "input_text", "text": part.text}
    return _overlay(out, part.extras) if same else out


def _image_url(part: ImagePart) -> str | None:
    if part.data is not None:
        return f"data:{part.media_type or 'image/png'};base64,{part.data}"
    return part.url


def _input_image(part: ImagePart, same: bool) -> dict[str, Any] | None:
    url = _image_url(part)
    if url is None:
        return None
    out: dict[str, Any] = {"type": "input_image", "image_url": url}
    if same:
        return _overlay(out, part.extras)
    out["detail"] = "auto"
    return out


def _input_content(parts: list[Part], same: bool) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, TextPart):
            content.append(_input_text(part, same))
        elif isinstance(part, ImagePart):
            image = _input_image(part, same)
            if image is not None:
                content.append(image)
        elif isinstance(part, OpaquePart) and same and part.protocol == NAME:
            content.append(part.data)
        elif not isinstance(part, ToolResultPart):
            log.debug("responses: %s part of a message dropped", part.type)
    return content


def _render_same(msg: Message, out: list[dict[str, Any]]) -> None:
    ex = msg.extras
    if ex.get(_WHOLE) and len(msg.content) == 1 and isinstance(msg.content[0], OpaquePart):
        out.append(msg.content[0].data)
        return
    if msg.role == "assistant":
        out.extend(_assistant_items(msg.content, True, ex.get(_ITEMS)))
        return
    if msg.role == "tool" or any(isinstance(p, ToolResultPart) for p in msg.content):
        _render_results(msg, out, True)
        if msg.role == "tool" or all(isinstance(p, ToolResultPart) for p in msg.content):
            return
    wire: dict[str, Any] = {"role": ex.get(_ROLE, msg.role)}
    content = _input_content(msg.content, True)
    if ex.get(_STR) and len(content) == 1 and content[0]["type"] == "input_text":
        wire["content"] = content[0]["text"]
    else:
        wire["content"] = content
    out.append(_overlay(wire, ex))


def _render_results(msg: Message, out: list[dict[str, Any]], same: bool) -> None:
    for part in msg.content:
        if not isinstance(part, ToolResultPart):
            continue
        item: dict[str, Any] = {"type": "function_call_output", "call_id": part.call_id}
        ex = part.extras if same else {}
        if isinstance(ex.get(_RAW), list):
            item["output"] = _raw_output(ex[_RAW], part)
        elif (
            len(part.content) == 1
            and isinstance(part.content[0], TextPart)
            and (ex.get(_STR) or not same)
        ):
            item["output"] = part.content[0].text
        elif not same and all(isinstance(c, TextPart) for c in part.content):
            item["output"] = "\n".join(cast(TextPart, c).text for c in part.content)
        else:
            item["output"] = _input_content(cast(list[Part], part.content), same)
        if not same and part.is_error:
            log.debug("responses: is_error of the result of tool call %s dropped", part.call_id)
        if same and msg.role == "tool":
            _overlay(item, msg.extras)
        out.append(item)


def _raw_output(raw: list[Any], part: ToolResultPart) -> list[Any]:
    """A function output list as it came, its text and image parts taken from the canonical
    content (so edits such as redaction apply)."""
    fresh = iter(_input_content(cast(list[Part], part.content), True))
    out: list[Any] = []
    for item in raw:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "input_text" or (
            kind == "input_image" and isinstance(item.get("image_url"), str)
        ):
            replacement = next(fresh, None)
            if replacement is not None:
                out.append(replacement)
        else:
            out.append(item)
    out.extend(fresh)
    return out


def _render_converted(msg: Message, out: list[dict[str, Any]]) -> None:
    if msg.role == "assistant":
        out.extend(_assistant_items(msg.content, False, None))
        return
    if msg.role == "tool" or any(isinstance(p, ToolResultPart) for p in msg.content):
        _render_results(msg, out, False)
    if msg.role == "tool":
        return
    content = _input_content(msg.content, False)
    if not content and any(isinstance(p, ToolResultPart) for p in msg.content):
        return
    role = "developer" if msg.role == "system" else "user"
    wire: dict[str, Any] = {"type": "message", "role": role}
    if len(content) == 1 and content[0]["type"] == "input_text":
        wire["content"] = content[0]["text"]
    elif role == "developer":
        wire["content"] = "".join(c.get("text", "") for c in content)
    else:
        wire["content"] = content
    out.append(wire)


# -- assistant items (request history and response output share this) ---------------------------


def _assistant_items(
    parts: list[Part], same: bool, bounds: Any, *, output: bool = False
) -> list[dict[str, Any]]:
    """Assistant parts as Responses items. `bounds` ([[count, message wrapper or None]]) splits
    them into the items they came from (same protocol); without it (or when it no longer fits
    the parts) consecutive text parts form one message. `output` renders the items the way a
    `response` object holds them (ids, statuses) rather than as request input."""
    if same and _fits(bounds, parts):
        items: list[dict[str, Any]] = []
        pos = 0
        for count, wrapper in bounds:
            chunk = parts[pos : pos + count]
            pos += count
            if wrapper is not None:
                items.append(_message_item(chunk, wrapper))
            else:
                item = _single_item(chunk[0], True, output, fresh=False)
                if item is not None:
                    items.append(item)
        return items
    items = []
    texts: list[TextPart] = []
    for part in parts:
        if isinstance(part, TextPart):
            texts.append(part)
            continue
        if texts:
            items.append(_new_message(texts, same, output))
            texts = []
        item = _single_item(part, same, output, fresh=True)
        if item is not None:
            items.append(item)
    if texts:
        items.append(_new_message(texts, same, output))
    return items


def _fits(bounds: Any, parts: list[Part]) -> TypeGuard[list[list[Any]]]:
    if not isinstance(bounds, list):
        return False
    pos = 0
    for entry in bounds:
        if not (isinstance(entry, list | tuple) and len(entry) == 2 and _is_int(entry[0])):
            return False
        count, wrapper = entry
        chunk = parts[pos : pos + count]
        if len(chunk) != count:
            return False
        if wrapper is None:
            if count != 1 or isinstance(chunk[0], TextPart | ImagePart | ToolResultPart):
                return False
        elif not isinstance(wrapper, dict) or not all(
            isinstance(p, TextPart | OpaquePart) for p in chunk
        ):
            return False
        pos += count
    return pos == len(parts)


def _output_text(part: TextPart, same: bool, fresh: bool = False) -> dict[str, Any]:
    """A text part of an assistant message; `fresh` ones get what the SDK's model requires."""
    kind = part.extras.get(_KIND) if same else None
    if kind == "refusal":
        out: dict[str, Any] = {"type": "refusal", "refusal": part.text}
    elif kind == "input_text":
        out = {"type": "input_text", "text": part.text}
    else:
        out = {"type": "output_text", "text": part.text}
        if fresh and "annotations" not in (part.extras if same else {}):
            out["annotations"] = []
    return _overlay(out, part.extras) if same else out


def _message_item(chunk: list[Part], wrapper: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {k: v for k, v in wrapper.items() if k not in _MARKERS}
    if wrapper.get(_STR) and len(chunk) == 1 and isinstance(chunk[0], TextPart):
        item["content"] = chunk[0].text
    else:
        item["content"] = [
            _output_text(p, True) if isinstance(p, TextPart) else cast(OpaquePart, p).data
            for p in chunk
        ]
    return item


def _new_message(texts: list[TextPart], same: bool, output: bool) -> dict[str, Any]:
    if output:
        return {
            "id": _new_id("msg_"),
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [_output_text(p, same, fresh=True) for p in texts],
        }
    # as request input: the shape the SDK's EasyInputMessage types accept
    return {"type": "message", "role": "assistant", "content": "".join(p.text for p in texts)}


def _single_item(part: Part, same: bool, output: bool, fresh: bool) -> dict[str, Any] | None:
    """One item of an assistant turn. A `fresh` output item (not rebuilt from the one it came
    as) gets the `id` and `status` a `response` object's items carry."""
    if isinstance(part, ToolCallPart):
        item: dict[str, Any] = {"type": "function_call"}
        ex = part.extras if same else {}
        if output and fresh:
            if "id" not in ex:
                item["id"] = _new_id("fc_")
            if "status" not in ex:
                item["status"] = "completed"
        args = part.arguments if same else part.arguments or "{}"
        item.update(call_id=part.id, name=part.name, arguments=args)
        return _overlay(item, part.extras) if same else item
    if isinstance(part, ThinkingPart):
        if not same and not output:
            log.debug("responses: thinking of another provider dropped from the history")
            return None
        return _reasoning_item(part, same, output)
    if isinstance(part, OpaquePart):
        if same and part.protocol == NAME:
            return part.data
        log.debug("responses: %s-only block dropped", part.protocol)
        return None
    log.debug("responses: %s part of an assistant turn dropped", part.type)
    return None


_SIGNATURE_TAG = "llmproxy-signature:"


def tag_signature(signature: str, provider: str | None) -> str:
    """Another provider's thinking signature as `encrypted_content`, marked with its provider,
    so that when the client sends the reasoning item back it can go to that provider again."""
    if provider in (None, NAME, "openai"):
        return signature
    return f"{_SIGNATURE_TAG}{provider}:{signature}"


def untag_signature(enc: str) -> tuple[str, str | None]:
    """(signature, provider) of an `encrypted_content` (provider None: OpenAI's own)."""
    if enc.startswith(_SIGNATURE_TAG):
        provider, _, signature = enc[len(_SIGNATURE_TAG) :].partition(":")
        return signature, provider or None
    return enc, None


def _reasoning_item(part: ThinkingPart, same: bool, output: bool) -> dict[str, Any] | None:
    raw = part.extras.get(_RAW) if same else None
    if isinstance(raw, dict):
        raw_enc = raw.get("encrypted_content")
        raw_signature = untag_signature(raw_enc)[0] if isinstance(raw_enc, str) else raw_enc
        if part.text == _reasoning_text(raw) and part.signature == raw_signature:
            return raw
        item = dict(raw)
        if _texts(raw.get("summary"), "summary_text") or not _texts(
            raw.get("content"), "reasoning_text"
        ):
            item["summary"] = _summary(part.text)
        else:
            item["content"] = [{"type": "reasoning_text", "text": part.text}]
        if part.signature is not None:
            item["encrypted_content"] = part.signature
        else:
            item.pop("encrypted_content", None)
        return item
    if part.redacted:
        item = {"type": "reasoning", "summary": [], "encrypted_content": part.text}
    else:
        item = {"type": "reasoning", "summary": _summary(part.text)}
        if part.signature:
            item["encrypted_content"] = part.signature
    if output:
        return {"id": _new_id("rs_"), **item}
    if "encrypted_content" not in item:
        log.debug("responses: reasoning without id or encrypted content dropped")
        return None
    return item


def _summary(text: str) -> list[dict[str, Any]]:
    return [{"type": "summary_text", "text": text}] if text else []


# ==============================================================================================
# Responses
# ==============================================================================================


def _usage_in(raw: Any) -> Usage:
    return read_usage(raw, RESPONSES)


def _usage_out(usage: Usage) -> dict[str, Any] | None:
    if usage == Usage():
        return None
    given = usage.input_tokens or 0
    done = usage.output_tokens or 0
    return {
        "input_tokens": given,
        "input_tokens_details": {
            "cached_tokens": usage.cached_tokens or 0,
            "cache_write_tokens": usage.cache_creation_tokens or 0,
        },
        "output_tokens": done,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
        "total_tokens": given + done,
    }


def _usage_same(usage: Usage, raw: dict[str, Any]) -> dict[str, Any]:
    """The usage object as it came, with what changed in the canonical usage written over."""
    return patched_usage(usage, raw, RESPONSES)


def _stop_in(status: Any, details: Any, has_calls: bool) -> StopReason:
    if status == "incomplete":
        reason = details.get("reason") if isinstance(details, dict) else None
        return "filtered" if reason == "content_filter" else "max_tokens"
    if status in ("failed", "cancelled"):
        return "error"
    return "tool_use" if has_calls else "end"


def _status_out(stop: StopReason) -> tuple[str, dict[str, Any] | None]:
    if stop == "max_tokens":
        return "incomplete", {"reason": "max_output_tokens"}
    if stop == "filtered":
        return "incomplete", {"reason": "content_filter"}
    if stop == "error":
        return "failed", None
    return "completed", None


def response_usage(body: dict[str, Any]) -> Usage:
    """The usage `parse_response` reads off `body`, without reading the rest."""
    return _usage_in(body["usage"]) if "usage" in body else Usage()


def parse_response(body: dict[str, Any]) -> ChatResponse:
    """A `response` object as a `ChatResponse` (raises `ProtocolError`)."""
    if not isinstance(body, dict):
        raise ProtocolError("response body must be a JSON object")
    try:
        return _parse_response(body)
    except ProtocolError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ProtocolError(f"invalid response object: {exc}") from exc


def _parse_response(body: dict[str, Any]) -> ChatResponse:
    if "output" not in body:
        err = body.get("error")
        if isinstance(err, dict) and body.get("object") != "response":
            raise ProtocolError(f"error response: {err.get('message')}")
        raise ProtocolError("'output' is required in a response object")
    output = body["output"]
    if not isinstance(output, list):
        raise ProtocolError("'output' must be an array")
    extras = _rest(body, {"id", "model", "output", "usage"})
    extras[_ABSENT] = [k for k in _RESPONSE_DEFAULTS if k not in body]
    names: dict[str, str] = {}
    parts: list[Part] = []
    bounds: list[list[Any]] = []
    for i, item in enumerate(output):
        if not isinstance(item, dict):
            raise ProtocolError(f"'output[{i}]' must be an object")
        chunk, wrapper = _assistant_item(item, f"output[{i}]", names)
        parts.extend(chunk)
        bounds.append([len(chunk), wrapper])
    extras[_ITEMS] = bounds
    resp: dict[str, Any] = {
        "source": NAME,
        "id": body["id"] if isinstance(body.get("id"), str) else "",
        "model": body["model"] if isinstance(body.get("model"), str) else "",
        "parts": parts,
        "stop_reason": _stop_in(
            body.get("status"),
            body.get("incomplete_details"),
            any(isinstance(p, ToolCallPart) for p in parts),
        ),
        "extras": extras,
    }
    for key in ("id", "model"):
        if key in body and not isinstance(body[key], str):
            extras[key] = body[key]
    resp["usage"] = response_usage(body)
    if "usage" in body:
        extras[_USAGE] = _copy_json(body["usage"])
    return ChatResponse(**resp)


# Keys of the `response` object this codec writes whatever the answer (the SDK's `Response`
# model requires most of them).
_RESPONSE_DEFAULTS: Final = (
    "object", "created_at", "status", "completed_at", "error", "incomplete_details",
    "instructions", "metadata", "parallel_tool_calls", "temperature", "tool_choice", "tools",
    "top_p", "usage",
)  # fmt: skip


def _resp_id(given: str) -> str:
    if given.startswith("resp"):
        return given
    return "resp_" + given if given else _new_id("resp_")


def _response_object(
    rid: str,
    model: str,
    created: int,
    stop: StopReason | None,
    output: list[dict[str, Any]],
    usage: Usage,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A `response` object. `stop` None means still in progress."""
    if stop is None:
        status, details = "in_progress", None
    else:
        status, details = _status_out(stop)
    out: dict[str, Any] = {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": error,
        "incomplete_details": details,
        "instructions": None,
        "metadata": {},
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "temperature": None,
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
        "usage": _usage_out(usage),
    }
    return out


def render_response(resp: ChatResponse) -> dict[str, Any]:
    """The `response` object for `resp` (lossless when `resp.source` is Responses)."""
    same = resp.source == NAME
    ex = resp.extras if same else {}
    parts = resp.parts
    if not same:  # another provider's thinking signatures, marked as theirs
        parts = [
            p.model_copy(update={"signature": tag_signature(p.signature, resp.source)})
            if isinstance(p, ThinkingPart) and p.signature and not p.redacted
            else p
            for p in parts
        ]
    output = _assistant_items(parts, same, ex.get(_ITEMS), output=True)
    rid = resp.id if same and resp.id else _resp_id(resp.id)
    out = _response_object(rid, resp.model, int(time.time()), resp.stop_reason, output, resp.usage)
    if not same:
        return out
    if isinstance(ex.get(_USAGE), dict):
        out["usage"] = _usage_same(resp.usage, ex[_USAGE])
    elif _USAGE in ex and resp.usage == _usage_in(ex[_USAGE]):
        out["usage"] = ex[_USAGE]
    calls = any(isinstance(p, ToolCallPart) for p in resp.parts)
    keep_status = (
        _stop_in(ex.get("status"), ex.get("incomplete_details"), calls) == resp.stop_reason
    )
    for key, value in ex.items():  # the fields as they came win over the defaults
        if key in _MARKERS or (key in ("status", "incomplete_details") and not keep_status):
            continue
        out[key] = value
    for key in ex.get(_ABSENT, ()):
        if not (key == "usage" and resp.usage != Usage()):
            out.pop(key, None)
    return out


# ==============================================================================================
# Streams
# ==============================================================================================


class _Item:
    """What the decoder knows of one output item (by `output_index`)."""

    __slots__ = ("kind", "block", "emitted", "summary", "source", "call_id", "name", "pending")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.block = -1
        self.emitted = False
        self.summary = -1  # the last summary_index seen
        self.source = ""  # reasoning: "summary" or "content", whichever streams first
        self.call_id = ""
        self.name = ""
        self.pending: list[str] = []  # arguments seen before the call could start


class StreamDecoder:
    """Responses SSE bytes (split anywhere) to canonical events.

    Each output item is one canonical block: a message's text (refusals included), a reasoning
    item's summary (its `reasoning_text` when no summary streams; parts separated by a blank
    line, `encrypted_content` as the signature at the item's end), a function call. Hosted tool
    items are skipped. An item ends with its `output_item.done`; `response.completed` /
    `.incomplete` / `.failed` finish the stream with the usage.
    """

    __slots__ = ("_sse", "_started", "_done", "_next", "_items", "_open", "_calls", "_errored")

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self._started = False
        self._done = False
        self._next = 0
        self._items: dict[Any, _Item] = {}
        self._open: list[int] = []
        self._calls = False
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
        self._finish(None, out)
        return out

    # -- internals ----------------------------------------------------------------------------

    def _event(self, data: str, out: list[Event]) -> None:
        if not data:
            return
        if data[0] == "[":
            if data.strip() == "[DONE]":
                self._finish(None, out)
            return
        try:
            obj = _loads(data)
        except ValueError:
            log.debug("responses: stream event that is not JSON skipped: %.200s", data)
            return
        if not isinstance(obj, dict):
            return
        kind = obj.get("type")
        if not self._started:
            self._start(obj, out)
        if kind == "response.output_text.delta" or kind == "response.refusal.delta":
            self._text(obj, out)
        elif kind == "response.function_call_arguments.delta":
            self._args(obj, out)
        elif kind == "response.reasoning_summary_text.delta":
            self._thinking(obj, "summary", out)
        elif kind == "response.reasoning_text.delta":
            self._thinking(obj, "content", out)
        elif kind == "response.output_item.added":
            self._added(obj, out)
        elif kind == "response.output_item.done":
            self._item_done(obj, out)
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            resp = obj.get("response")
            resp = resp if isinstance(resp, dict) else {}
            if kind == "response.failed" and not self._errored:
                out.append(openai_chat.error_event(resp.get("error") or "the response failed"))
                self._errored = True
            self._finish(resp, out)
        elif kind == "error":
            err = obj.get("error") if isinstance(obj.get("error"), dict) else obj
            out.append(openai_chat.error_event(err))
            self._errored = True

    def _start(self, obj: dict[str, Any], out: list[Event]) -> None:
        self._started = True
        resp = obj.get("response")
        rid = model = ""
        if isinstance(resp, dict):
            rid = resp["id"] if isinstance(resp.get("id"), str) else ""
            model = resp["model"] if isinstance(resp.get("model"), str) else ""
        out.append(Start(id=rid, model=model))

    def _item(self, obj: dict[str, Any], kind: str) -> _Item:
        key = obj.get("output_index", obj.get("item_id"))
        item = self._items.get(key)
        if item is None:
            item = self._items[key] = _Item(kind)
        return item

    def _block(self, item: _Item) -> int:
        if item.block < 0:
            item.block = self._next
            self._next += 1
            self._open.append(item.block)
        return item.block

    def _text(self, obj: dict[str, Any], out: list[Event]) -> None:
        delta = obj.get("delta")
        if not delta or not isinstance(delta, str):
            return
        item = self._item(obj, "message")
        if item.kind != "message":
            return
        item.emitted = True
        out.append(TextDelta(self._block(item), delta))

    def _thinking(self, obj: dict[str, Any], source: str, out: list[Event]) -> None:
        delta = obj.get("delta")
        if not delta or not isinstance(delta, str):
            return
        item = self._item(obj, "reasoning")
        if item.kind != "reasoning" or item.source not in ("", source):
            return
        item.source = source
        index = obj.get("summary_index", obj.get("content_index", 0))
        if item.emitted and index != item.summary:
            delta = "\n\n" + delta
        item.summary = index
        item.emitted = True
        out.append(ThinkingDelta(self._block(item), delta))

    def _args(self, obj: dict[str, Any], out: list[Event]) -> None:
        delta = obj.get("delta")
        if not delta or not isinstance(delta, str):
            return
        item = self._item(obj, "function_call")
        if item.kind != "function_call":
            return
        item.emitted = True
        if item.block >= 0:
            out.append(ToolArgsDelta(item.block, delta))
        else:
            item.pending.append(delta)

    def _start_call(self, item: _Item, out: list[Event]) -> None:
        self._calls = True
        block = self._block(item)
        out.append(ToolCallStart(block, item.call_id, item.name))
        if item.pending:
            out.append(ToolArgsDelta(block, "".join(item.pending)))
            item.pending = []

    def _added(self, obj: dict[str, Any], out: list[Event]) -> None:
        raw = obj.get("item")
        if not isinstance(raw, dict):
            return
        kind = raw.get("type")
        if kind not in ("message", "reasoning", "function_call"):
            kind = "other"
        item = self._item(obj, cast(str, kind))
        if kind != "function_call" or item.block >= 0:
            return
        call_id, name = raw.get("call_id"), raw.get("name")
        item.call_id = call_id if isinstance(call_id, str) else ""
        item.name = name if isinstance(name, str) else ""
        args = raw.get("arguments")
        if args and isinstance(args, str):
            item.pending.insert(0, args)
            item.emitted = True
        if item.name:
            self._start_call(item, out)

    def _item_done(self, obj: dict[str, Any], out: list[Event]) -> None:
        raw = obj.get("item")
        if not isinstance(raw, dict):
            return
        kind = raw.get("type")
        if kind not in ("message", "reasoning", "function_call"):
            return
        item = self._item(obj, cast(str, kind))
        if kind == "message" and not item.emitted:
            content = raw.get("content")
            text = "".join(_texts(content, "output_text"))
            if isinstance(content, list):
                text += "".join(
                    p["refusal"]
                    for p in content
                    if isinstance(p, dict) and isinstance(p.get("refusal"), str)
                )
            if text:
                out.append(TextDelta(self._block(item), text))
        elif kind == "reasoning":
            if not item.emitted:
                text = _reasoning_text(raw)
                if text:
                    out.append(ThinkingDelta(self._block(item), text))
            enc = raw.get("encrypted_content")
            if enc and isinstance(enc, str):
                out.append(ThinkingDelta(self._block(item), "", signature=enc))
        elif kind == "function_call":
            if item.block < 0:
                call_id, name = raw.get("call_id"), raw.get("name")
                item.call_id = call_id if isinstance(call_id, str) else item.call_id
                item.name = name if isinstance(name, str) else item.name
                if not item.emitted and isinstance(raw.get("arguments"), str):
                    item.pending = [raw["arguments"]] if raw["arguments"] else []
                self._start_call(item, out)
            elif not item.emitted and raw.get("arguments") and isinstance(raw["arguments"], str):
                out.append(ToolArgsDelta(item.block, raw["arguments"]))
            item.emitted = True
        if item.block >= 0 and item.block in self._open:
            self._open.remove(item.block)
            out.append(BlockStop(item.block))

    def _finish(self, resp: dict[str, Any] | None, out: list[Event]) -> None:
        if self._done:
            return
        self._done = True
        if not self._started:
            self._started = True
            out.append(Start(id="", model=""))
        for item in self._items.values():
            if item.kind == "function_call" and item.block < 0 and (item.call_id or item.pending):
                self._start_call(item, out)
        for index in self._open:
            out.append(BlockStop(index))
        self._open.clear()
        usage: Usage | None = None
        if self._errored:
            reason: StopReason = "error"
        elif resp is None:
            reason = "tool_use" if self._calls else "end"
        else:
            reason = _stop_in(resp.get("status"), resp.get("incomplete_details"), self._calls)
        if resp is not None and isinstance(resp.get("usage"), dict):
            usage = _usage_in(resp["usage"])
        out.append(Finish(stop_reason=reason, usage=usage))


class _Out:
    """One output item the encoder has opened (by canonical block index)."""

    __slots__ = ("kind", "index", "id", "pre", "texts", "call_id", "name", "signature",
                 "redacted", "summary", "item")  # fmt: skip

    def __init__(self, kind: str, index: int, item_id: str) -> None:
        self.kind = kind
        self.index = index
        self.id = item_id
        self.pre = b""  # the bytes of a delta event up to its sequence number
        self.texts: list[str] = []
        self.call_id = ""
        self.name = ""
        self.signature: str | None = None
        self.redacted = False
        self.summary = False  # reasoning: the summary part is open
        self.item: dict[str, Any] | None = None  # the finished item


_DELTA_EVENTS: Final = {
    "message": "response.output_text.delta",
    "reasoning": "response.reasoning_summary_text.delta",
    "function_call": "response.function_call_arguments.delta",
}


class StreamEncoder:
    """Canonical events to the Responses event stream the openai SDK (and Codex) read.

    `response.created` and `response.in_progress` open the stream; each canonical block is one
    output item (`output_item.added` ... `output_item.done`, with the content or summary part
    events of messages and reasoning); `Finish` ends it with `response.completed` (or
    `.incomplete` at the token limit) carrying the whole response and its usage; `Error` with
    `response.failed`. Every event has the next `sequence_number`; delta events are written from
    a per-item prefix. `close()` without a `Finish` completes the response cleanly.
    `include_usage` is accepted for the common signature: a Responses stream always reports it.
    """

    __slots__ = ("_model", "_provider", "_id", "_name", "_created", "_seq", "_blocks", "_order",
                 "_usage",
                 "_started", "_closed")  # fmt: skip

    def __init__(
        self,
        *,
        model: str | None = None,
        include_usage: bool = False,
        signature_provider: str | None = None,
        **_: Any,
    ):
        self._model = model
        self._provider = signature_provider  # the backend whose thinking signatures these are
        self._id = ""
        self._name = ""
        self._created = 0
        self._seq = 0
        self._blocks: dict[int, _Out] = {}
        self._order: list[_Out] = []
        self._usage: Usage | None = None
        self._started = False
        self._closed = False

    def _emit(self, kind: str, fields: dict[str, Any]) -> bytes:
        seq = self._seq
        self._seq = seq + 1
        body = {"type": kind, "sequence_number": seq, **fields}
        data = _dumps_bytes(body)
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

    def _begin(self, rid: str, model: str, usage: Usage | None) -> bytes:
        self._started = True
        self._id = _resp_id(rid)
        self._name = self._model if self._model is not None else model
        self._created = int(time.time())
        self._usage = usage
        resp = _response_object(self._id, self._name, self._created, None, [], Usage())
        return self._emit("response.created", {"response": resp}) + self._emit(
            "response.in_progress", {"response": resp}
        )

    def feed(self, event: Event) -> bytes:
        if self._closed:
            return b""
        kind = type(event)
        if kind is Start:
            if self._started:
                return b""
            start = cast(Start, event)
            return self._begin(start.id, start.model, start.usage)
        lead = b"" if self._started else self._begin("", "", None)
        if kind is TextDelta:
            text = cast(TextDelta, event)
            out = self._blocks.get(text.index)
            if out is None:
                lead += self._open("message", text.index)
                out = self._blocks[text.index]
            if out.kind != "message" or out.item is not None or not text.text:
                return lead
            out.texts.append(text.text)
            return lead + self._delta(out, text.text)
        if kind is ToolArgsDelta:
            args = cast(ToolArgsDelta, event)
            out = self._blocks.get(args.index)
            if out is None or out.kind != "function_call" or out.item is not None:
                return lead
            if not args.fragment:
                return lead
            out.texts.append(args.fragment)
            return lead + self._delta(out, args.fragment)
        if kind is ThinkingDelta:
            return lead + self._thinking(cast(ThinkingDelta, event))
        if kind is ToolCallStart:
            call = cast(ToolCallStart, event)
            if call.index in self._blocks:
                return lead
            return lead + self._open("function_call", call.index, call.id, call.name)
        if kind is BlockStop:
            out = self._blocks.get(cast(BlockStop, event).index)
            return lead + (self._done(out) if out is not None and out.item is None else b"")
        if kind is Finish:
            fin = cast(Finish, event)
            usage = self._usage.merged(fin.usage) if self._usage is not None else fin.usage
            return lead + self._end(fin.stop_reason, usage or Usage())
        if kind is Error:
            err = cast(Error, event)
            return lead + self._fail(err.message, err.status)
        return lead

    def close(self) -> bytes:
        if self._closed:
            return b""
        lead = b"" if self._started else self._begin("", "", None)
        return lead + self._end("end", self._usage or Usage())

    # -- items --------------------------------------------------------------------------------

    def _open(self, kind: str, block: int, call_id: str = "", name: str = "") -> bytes:
        prefix = {"message": "msg_", "reasoning": "rs_", "function_call": "fc_"}[kind]
        out = _Out(kind, len(self._order), _new_id(prefix))
        self._blocks[block] = out
        self._order.append(out)
        head = {"item_id": out.id, "output_index": out.index}
        event = _DELTA_EVENTS[kind]
        if kind == "message":
            head["content_index"] = 0
        elif kind == "reasoning":
            head["summary_index"] = 0
        pre = _dumps({"type": event, **head})[:-1]
        out.pre = f'event: {event}\ndata: {pre},"sequence_number":'.encode()
        if kind == "message":
            item: dict[str, Any] = {"id": out.id, "type": "message", "status": "in_progress",
                                    "content": [], "role": "assistant"}  # fmt: skip
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
            return self._emit(
                "response.output_item.added", {"output_index": out.index, "item": item}
            ) + self._emit("response.content_part.added", {**head, "part": part})
        if kind == "reasoning":
            item = {"id": out.id, "type": "reasoning", "summary": []}
        else:
            out.call_id, out.name = call_id, name
            item = {"id": out.id, "type": "function_call", "status": "in_progress",
                    "arguments": "", "call_id": call_id, "name": name}  # fmt: skip
        return self._emit("response.output_item.added", {"output_index": out.index, "item": item})

    def _delta(self, out: _Out, text: str) -> bytes:
        seq = self._seq
        self._seq = seq + 1
        tail = b',"logprobs":[]}\n\n' if out.kind == "message" else b"}\n\n"
        return out.pre + str(seq).encode() + b',"delta":' + _json_str(text) + tail

    def _thinking(self, event: ThinkingDelta) -> bytes:
        out = self._blocks.get(event.index)
        lead = b""
        if out is None:
            lead = self._open("reasoning", event.index)
            out = self._blocks[event.index]
        if out.kind != "reasoning" or out.item is not None:
            return lead
        if event.signature:
            out.signature = tag_signature(event.signature, self._provider)
        if event.redacted:
            out.redacted = True
            out.texts.append(event.text)
            return lead
        if not event.text:
            return lead
        if not out.summary:
            out.summary = True
            lead += self._emit(
                "response.reasoning_summary_part.added",
                {"item_id": out.id, "output_index": out.index, "summary_index": 0,
                 "part": {"type": "summary_text", "text": ""}},
            )  # fmt: skip
        out.texts.append(event.text)
        return lead + self._delta(out, event.text)

    def _done(self, out: _Out) -> bytes:
        text = "".join(out.texts)
        head = {"item_id": out.id, "output_index": out.index}
        data = b""
        if out.kind == "message":
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
            data += self._emit(
                "response.output_text.done",
                {**head, "content_index": 0, "text": text, "logprobs": []},
            ) + self._emit("response.content_part.done", {**head, "content_index": 0, "part": part})
            out.item = {"id": out.id, "type": "message", "status": "completed",
                        "content": [part], "role": "assistant"}  # fmt: skip
        elif out.kind == "reasoning":
            if out.redacted:
                out.item = {"id": out.id, "type": "reasoning", "summary": [],
                            "encrypted_content": text}  # fmt: skip
            else:
                if out.summary:
                    part = {"type": "summary_text", "text": text}
                    data += self._emit(
                        "response.reasoning_summary_text.done",
                        {**head, "summary_index": 0, "text": text},
                    ) + self._emit(
                        "response.reasoning_summary_part.done",
                        {**head, "summary_index": 0, "part": part},
                    )
                out.item = {"id": out.id, "type": "reasoning", "summary": _summary(text)}
                if out.signature:
                    out.item["encrypted_content"] = out.signature
        else:
            if not text:  # clients parse the arguments as JSON: an empty call takes no arguments
                text = "{}"
                data += self._delta(out, text)
            data += self._emit("response.function_call_arguments.done", {**head, "arguments": text})
            out.item = {"id": out.id, "type": "function_call", "status": "completed",
                        "arguments": text, "call_id": out.call_id, "name": out.name}  # fmt: skip
        return data + self._emit(
            "response.output_item.done", {"output_index": out.index, "item": out.item}
        )

    def _finished_output(self) -> list[dict[str, Any]]:
        return [out.item for out in self._order if out.item is not None]

    def _end(self, stop: StopReason, usage: Usage) -> bytes:
        data = b"".join(self._done(out) for out in self._order if out.item is None)
        self._closed = True
        if stop == "error":
            return data + self._failed("the upstream answer ended with an error", 502, usage)
        resp = _response_object(
            self._id, self._name, self._created, stop, self._finished_output(), usage
        )
        kind = "response.completed" if resp["status"] == "completed" else "response.incomplete"
        return data + self._emit(kind, {"response": resp})

    def _fail(self, message: str, status: int) -> bytes:
        self._closed = True
        return self._failed(message, status, self._usage or Usage())

    def _failed(self, message: str, status: int, usage: Usage) -> bytes:
        kind = openai_chat.render_error(status, message)["error"]["type"]
        code = (
            "rate_limit_exceeded" if status == 429 else "server_error" if status >= 500 else
            "invalid_prompt"
        )  # fmt: skip
        error = {"code": code, "message": message, "type": kind}
        resp = _response_object(
            self._id, self._name, self._created, "error", self._finished_output(), usage, error
        )
        return self._emit("response.failed", {"response": resp})


# ==============================================================================================
# Errors
# ==============================================================================================


def render_error(status: int, message: str) -> dict[str, Any]:
    """An OpenAI error body for an HTTP status (the same shape as Chat Completions')."""
    return openai_chat.render_error(status, message)
