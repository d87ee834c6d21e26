"""Strict validation of OpenAI Responses requests (`POST /v1/responses`), in the API's words.

Structure comes from the installed openai SDK's request types
(`openai.types.responses.response_create_params.ResponseCreateParams{NonStreaming,Streaming}`),
walked by `typecheck.check` (every level closed). The SDK types are stricter than the API in a
few places where real clients (Codex among them) rely on the API's defaults, so those fields
are filled in before the walk, never changing where an issue points:

* a function tool may leave out `strict` (the API defaults it to true) and `parameters`;
* an assistant message in `input` may hold `output_text` parts without the `id`, `status` and
  `annotations` of a response's output message (the API reads it as an easy input message);
* a reasoning item may leave out `id` when it carries `encrypted_content` (stateless use).

On top come the rules the API enforces: `model` and `input` required; every
`function_call_output` answers an earlier `function_call` with its `call_id` and every
`function_call` is answered; `previous_response_id` must name a stored response (whose calls
the outputs may then answer); a `conversation` is never found (no Conversations API here); a
reasoning item without `encrypted_content`, like an `item_reference`, must name a stored item
(hinting at `store: false`, as the API does); function names match `^[a-zA-Z0-9_-]{1,64}$`;
strict function schemas close every object and require every property; a `tool_choice`
function names a declared tool; sampling ranges, `max_output_tokens` >= 16; `stream_options`
only with `stream`.
`Stored` is what the server remembers of the responses it gave with `store` on.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache

from tests.upstream.typecheck import Issue, check
from tests.upstream.validate import (
    JSONDict,
    Rejection,
    _constraint,
    _is_number,
    _openai_rejection,
)

_TOOL_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0, 2),
    "top_p": (0, 1),
    "top_logprobs": (0, 20),
}
MIN_OUTPUT_TOKENS = 16
_CALL_PAIRS = {  # call item type -> the output item type that answers it
    "function_call": "function_call_output",
    "custom_tool_call": "custom_tool_call_output",
}
_OUTPUTS = {output: call for call, output in _CALL_PAIRS.items()}
_NOT_STORED_HINT = (
    " Items are not persisted when `store` is set to false. Try again with `store` set to "
    "true, or remove this item from your input."
)


@dataclass(slots=True)
class Stored:
    """What the server keeps of its stored responses (the newest `limit`): their call ids and
    the ids of their output items."""

    limit: int = 1000
    responses: dict[str, tuple[set[str], set[str]]] = field(
        default_factory=dict
    )  # id -> (calls, items)
    items: dict[str, str] = field(default_factory=dict)  # item id -> response id
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, response_id: str, call_ids: set[str], item_ids: set[str]) -> None:
        with self._lock:
            self.responses[response_id] = (set(call_ids), set(item_ids))
            self.items.update(dict.fromkeys(item_ids, response_id))
            while len(self.responses) > self.limit:
                oldest = next(iter(self.responses))
                for item_id in self.responses.pop(oldest)[1]:
                    self.items.pop(item_id, None)

    def calls_of(self, response_id: str) -> set[str] | None:
        with self._lock:
            found = self.responses.get(response_id)
            return None if found is None else set(found[0])

    def has_item(self, item_id: object) -> bool:
        with self._lock:
            return isinstance(item_id, str) and item_id in self.items


@cache
def _types() -> tuple[type, type]:
    from openai.types.responses import response_create_params as params

    return params.ResponseCreateParamsNonStreaming, params.ResponseCreateParamsStreaming


def check_openai_responses(body: object, stored: Stored | None = None) -> Rejection | None:
    """OpenAI `POST /v1/responses`: the API's 400 (or 404) for `body`, None when it would pass."""
    if not isinstance(body, dict):
        return Rejection("Invalid type for the request body: expected an object.")
    non_streaming, streaming = _types()
    issues = check(streaming if body.get("stream") is True else non_streaming, _lenient(body))
    if issues:
        return _openai_rejection(issues)
    for key in ("model", "input"):
        if key not in body:
            return Rejection(f"Missing required parameter: '{key}'.", key)
    stored = stored or Stored()
    previous = body.get("previous_response_id")
    earlier = stored.calls_of(previous) if isinstance(previous, str) else None
    issues = _semantics(body, earlier or set())
    if issues:
        return _openai_rejection(issues)
    return _state_rules(body, stored)


# --------------------------------------------------------------------------------------------
# the API's defaults, filled in for the type walk
# --------------------------------------------------------------------------------------------


def _lenient(body: JSONDict) -> JSONDict:
    """`body` with the defaults the API applies filled in (copies only what changes)."""
    out = dict(body)
    tools = body.get("tools")
    if isinstance(tools, list):
        out["tools"] = [_lenient_tool(tool) for tool in tools]
    items = body.get("input")
    if isinstance(items, list):
        out["input"] = [_lenient_item(item) for item in items]
    return out


def _lenient_tool(tool: object) -> object:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        return tool
    return {"strict": True, "parameters": None, **tool}


def _lenient_item(item: object) -> object:
    if not isinstance(item, dict):
        return item
    kind = item.get("type")
    if kind == "reasoning" and "id" not in item and isinstance(item.get("encrypted_content"), str):
        return {"id": "rs_from_encrypted_content", **item}
    if (
        kind in (None, "message")
        and item.get("role") == "assistant"
        and isinstance(item.get("content"), list)
    ):
        content = [
            {"annotations": [], **part}
            if isinstance(part, dict) and part.get("type") == "output_text"
            else part
            for part in item["content"]
        ]
        return {
            "id": "msg_input",
            "status": "completed",
            "type": "message",
            **item,
            "content": content,
        }
    return item


# --------------------------------------------------------------------------------------------
# rules on a well-typed body
# --------------------------------------------------------------------------------------------


def _semantics(body: JSONDict, earlier_calls: set[str]) -> list[Issue]:
    """Rules on a well-typed body; `earlier_calls` are the previous response's call ids."""
    issues: list[Issue] = []
    for key, (low, high) in _RANGES.items():
        value = body.get(key)
        if _is_number(value) and not low <= value <= high:
            side, bound, word = (
                ("below minimum", low, ">=") if value < low else ("above maximum", high, "<=")
            )
            issues.append(
                _constraint(
                    (key,),
                    f"Invalid '{key}': decimal {side} value. Expected a value {word} {bound:g}, "
                    f"but got {value} instead.",
                )
            )
    limit = body.get("max_output_tokens")
    if _is_number(limit) and limit < MIN_OUTPUT_TOKENS:
        issues.append(
            _constraint(
                ("max_output_tokens",),
                f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
                f"{MIN_OUTPUT_TOKENS}, but got {limit} instead.",
            )
        )
    if body.get("stream_options") is not None and body.get("stream") is not True:
        issues.append(
            _constraint(
                ("stream_options",),
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            )
        )
    tools: list[JSONDict] = body.get("tools") or []
    names = set()
    for index, tool in enumerate(tools):
        if tool.get("type") != "function":
            continue
        names.add(tool["name"])
        issues.extend(_function_tool_issues(index, tool))
    choice = body.get("tool_choice")
    if (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and choice.get("name") not in names
    ):
        issues.append(
            _constraint(
                ("tool_choice",),
                f"Tool choice 'function' with name '{choice.get('name')}' not found in "
                "'tools' parameter.",
            )
        )
    items = body.get("input")
    if isinstance(items, list):
        issues.extend(_pairing_issues(items, earlier_calls))
    return issues


def _function_tool_issues(index: int, tool: JSONDict) -> Iterator[Issue]:
    name: str = tool["name"]
    where = f"tools[{index}].name"
    if len(name) > 64:
        yield _constraint(
            ("tools", index, "name"),
            f"Invalid '{where}': string too long. Expected a string with maximum length 64, "
            f"but got a string with length {len(name)} instead.",
        )
    elif not name or not set(name) <= _TOOL_NAME_CHARS:
        yield _constraint(
            ("tools", index, "name"),
            f"Invalid '{where}': string does not match pattern. Expected a string that matches "
            "the pattern '^[a-zA-Z0-9_-]+$'.",
        )
    parameters = tool.get("parameters")
    if tool.get("strict", True) is not False and isinstance(parameters, dict):
        problem = _strict_schema_problem(parameters, ())
        if problem is not None:
            yield _constraint(
                ("tools", index, "parameters"),
                f"Invalid schema for function '{name}': {problem}",
            )


def _strict_schema_problem(schema: object, context: tuple[str, ...]) -> str | None:
    """The first way `schema` breaks strict mode (objects closed, every property required)."""
    if not isinstance(schema, dict):
        return None
    kinds = schema.get("type")
    is_object = kinds == "object" or (isinstance(kinds, list) and "object" in kinds)
    if is_object or "properties" in schema:
        if schema.get("additionalProperties") is not False:
            return (
                f"In context={context!r}, 'additionalProperties' is required to be supplied and "
                "to be false."
            )
        properties = schema.get("properties") or {}
        required = schema.get("required")
        missing = [
            key for key in properties if not isinstance(required, list) or key not in required
        ]
        if missing:
            return (
                f"In context={context!r}, 'required' is required to be supplied and to be an "
                f"array including every key in properties. Missing '{missing[0]}'."
            )
        for key, child in properties.items():
            problem = _strict_schema_problem(child, (*context, "properties", key))
            if problem is not None:
                return problem
    children: list[tuple[tuple[str, ...], object]] = [((*context, "items"), schema.get("items"))]
    for keyword in ("anyOf", "$defs", "definitions"):
        value = schema.get(keyword)
        if isinstance(value, list):
            children.extend(((*context, keyword, str(i)), v) for i, v in enumerate(value))
        elif isinstance(value, dict):
            children.extend(((*context, keyword, k), v) for k, v in value.items())
    for where, child in children:
        problem = _strict_schema_problem(child, where)
        if problem is not None:
            return problem
    return None


def _pairing_issues(items: list[JSONDict], earlier_calls: set[str]) -> list[Issue]:
    """Every call output answers an earlier call; every call is answered (in `input` order)."""
    issues: list[Issue] = []
    calls: dict[str, tuple[int, str]] = {}  # call id -> (position, call type)
    answered: set[str] = set()
    for index, item in enumerate(items):
        kind = item.get("type")
        call_id = item.get("call_id")
        if kind in _CALL_PAIRS and isinstance(call_id, str):
            calls[call_id] = (index, kind)
        elif kind in _OUTPUTS and isinstance(call_id, str):
            if call_id in calls:
                answered.add(call_id)
            elif call_id not in earlier_calls:
                issues.append(_unanswered_output(index, call_id))
    for call_id, (index, kind) in calls.items():
        if call_id not in answered:
            noun = "function call" if kind == "function_call" else "custom tool call"
            issues.append(
                _constraint(("input", index), f"No tool output found for {noun} {call_id}.")
            )
    return issues


def _unanswered_output(index: int, call_id: str) -> Issue:
    return _constraint(
        ("input", index, "call_id"),
        f"No tool call found for function call output with call_id {call_id}.",
    )


def _state_rules(body: JSONDict, stored: Stored) -> Rejection | None:
    """What needs the server's memory: previous responses, conversations, stored items."""
    previous = body.get("previous_response_id")
    if previous is not None and stored.calls_of(previous) is None:
        return Rejection(
            f"Previous response with id '{previous}' not found.", "previous_response_id"
        )
    conversation = body.get("conversation")
    if conversation is not None:
        name = conversation.get("id") if isinstance(conversation, dict) else conversation
        return Rejection(f"Conversation with id '{name}' not found.", "conversation", 404)
    items = body.get("input")
    store_off = body.get("store") is False
    for index, item in enumerate(items if isinstance(items, list) else []):
        kind = item.get("type")
        needs_store = kind == "item_reference" or (
            kind == "reasoning" and not isinstance(item.get("encrypted_content"), str)
        )
        if needs_store and not stored.has_item(item.get("id")):
            hint = _NOT_STORED_HINT if store_off else ""
            return Rejection(
                f"Item with id '{item.get('id')}' not found.{hint}", f"input[{index}]", 404
            )
    return None
