"""Strict request validation: what each real API would reject, rejected here with its words.

Structure comes from the official SDKs' own request types:

* OpenAI / OpenRouter: `openai.types.chat.completion_create_params.CompletionCreateParams
  {NonStreaming,Streaming}` (TypedDicts, walked by `typecheck.check`: every level closed).
  OpenRouter's own fields (`reasoning`, `provider`, `transforms`, `models`, `route`, `usage`,
  its sampling extras, assistant `reasoning`/`reasoning_details`, part `cache_control`) are
  split off and checked against small TypedDicts declared here.
* Anthropic: `anthropic.types.message_create_params` (GA). The beta params
  (`anthropic.types.beta.message_create_params`, e.g. `context_management`) are accepted only
  when the request carries an `anthropic-beta` header, as the real API does. `temperature`,
  `top_p`, `top_k` are accepted although the installed SDK no longer declares them.
* Gemini: `google.genai.types` pydantic models (`extra='forbid'`), one per REST field
  (`contents` -> `list[Content]`, `tools` -> `list[Tool]`, `generationConfig` ->
  `GenerationConfig` ...), plus the SDK's own Developer-API converters (`_Tool_to_mldev` ...)
  which refuse Vertex-only fields.

On top of that come the semantic rules the real APIs enforce (thinking budgets, tool call /
result pairing, schema keywords Gemini refuses ...). Each check returns a `Rejection` (message
naming the offending field, in the API's style) or None.
"""

from __future__ import annotations

import enum
import json
import re
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, Required, TypedDict, TypeGuard

from pydantic import BaseModel, TypeAdapter, ValidationError

from tests.upstream.typecheck import Issue, Path, check, is_union, json_kind, unwrap

Flavor = Literal["openai", "openrouter"]
JSONDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why the body is refused: the API's message (naming the field) and, if any, the param."""

    message: str
    param: str | None = None
    status: int = 400


# --------------------------------------------------------------------------------------------
# paths and wording
# --------------------------------------------------------------------------------------------


def bracket_path(path: Path) -> str:
    """`messages[0].content` (OpenAI, Gemini)."""
    out = ""
    for item in path:
        if isinstance(item, int):
            out += f"[{item}]"
        else:
            out += f".{item}" if out else str(item)
    return out


def dot_path(path: Path) -> str:
    """`messages.0.content` (Anthropic, pydantic style)."""
    return ".".join(str(item) for item in path)


def _shown(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 80 else text[:77] + "..."


_ARTICLE = {
    "null": "null",
    "boolean": "a boolean",
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "array": "an array",
    "object": "an object",
}


def _kind_phrase(value: object) -> str:
    kind = json_kind(value)
    return _ARTICLE.get(kind, kind)


def _more(count: int) -> str:
    count = max(0, count)
    return f" ({count} more problem{'s' if count > 1 else ''} after this one)" if count else ""


def _openai_rejection(issues: list[Issue]) -> Rejection:
    issue = issues[0]
    where = bracket_path(issue.path)
    param: str | None = where
    if issue.kind == "extra":
        if len(issue.path) == 1:
            message, param = f"Unrecognized request argument supplied: {issue.path[0]}", None
        else:
            message = f"Unknown parameter: '{where}'."
    elif issue.kind == "missing":
        message = f"Missing required parameter: '{where}'."
    elif issue.kind == "value":
        message = (
            f"Invalid value for '{where}': {_shown(issue.got)}. "
            f"Supported values are: {issue.expected}."
        )
    elif issue.kind == "type":
        message = (
            f"Invalid type for '{where}': expected {issue.expected}, "
            f"but got {_kind_phrase(issue.got)} instead."
        )
    else:
        message = issue.message
    return Rejection(message + _more(len(issues) - 1), param)


def _anthropic_text(issue: Issue) -> str:
    where = dot_path(issue.path)
    if issue.kind == "extra":
        text = "Extra inputs are not permitted"
    elif issue.kind == "missing":
        text = "Field required"
    elif issue.kind in ("value", "type"):
        text = f"Input should be {issue.expected} (got {_shown(issue.got)})"
    else:
        return issue.message
    return f"{where}: {text}" if where else text


def _anthropic_rejection(issues: list[Issue]) -> Rejection:
    return Rejection(
        "; ".join(_anthropic_text(issue) for issue in issues[:3]) + _more(len(issues) - 3),
        dot_path(issues[0].path) or None,
    )


def _gemini_text(issue: Issue) -> str:
    where = bracket_path(issue.path)
    if issue.kind == "extra":
        parent = bracket_path(issue.path[:-1])
        at = f" at '{parent}'" if parent else ""
        return f'Invalid JSON payload received. Unknown name "{issue.path[-1]}"{at}: Cannot find field.'
    if issue.kind == "missing":
        return f"* GenerateContentRequest.{where}: required field is not specified"
    if issue.kind in ("value", "type"):
        return f"Invalid value at '{where}' ({issue.expected}), {_shown(issue.got)}"
    return (
        issue.message
        if issue.message.startswith(("*", "Invalid"))
        else (f"* GenerateContentRequest.{where}: {issue.message}")
    )


def _gemini_rejection(issues: list[Issue]) -> Rejection:
    return Rejection(
        "\n".join(_gemini_text(issue) for issue in issues[:5]) + _more(len(issues) - 5),
        bracket_path(issues[0].path) or None,
    )


def _constraint(path: Path, message: str) -> Issue:
    return Issue(path, "constraint", message=message)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --------------------------------------------------------------------------------------------
# OpenAI chat completions and OpenRouter
# --------------------------------------------------------------------------------------------


@cache
def _openai_types() -> tuple[type, type]:
    from openai.types.chat import completion_create_params as params

    return params.CompletionCreateParamsNonStreaming, params.CompletionCreateParamsStreaming


class _OpenRouterReasoning(TypedDict, total=False):
    effort: Literal["xhigh", "high", "medium", "low", "minimal", "none"]
    max_tokens: int
    exclude: bool
    enabled: bool
    summary: Literal["auto", "concise", "detailed"]


class _OpenRouterUsage(TypedDict, total=False):
    include: bool


class _OpenRouterBody(TypedDict, total=False):
    """The request fields OpenRouter adds to the OpenAI protocol."""

    reasoning: _OpenRouterReasoning
    provider: dict[str, object]
    transforms: list[str]
    models: list[str]
    route: Literal["fallback"]
    usage: _OpenRouterUsage
    plugins: list[dict[str, object]]
    include_reasoning: bool
    top_k: int
    min_p: float
    top_a: float
    repetition_penalty: float


class _OpenRouterReasoningDetail(TypedDict, total=False):
    type: Required[str]
    text: str | None
    summary: str | None
    data: str | None
    signature: str | None
    id: str | None
    format: str | None
    index: int


class _OpenRouterAssistant(TypedDict, total=False):
    reasoning: str | None
    reasoning_details: list[_OpenRouterReasoningDetail]


class _CacheControl(TypedDict, total=False):
    type: Required[Literal["ephemeral"]]
    ttl: str


_OPENROUTER_TOP = frozenset(_OpenRouterBody.__annotations__)
_OPENROUTER_ASSISTANT = frozenset(_OpenRouterAssistant.__annotations__)


def _split_openrouter(body: JSONDict) -> tuple[JSONDict, list[Issue]]:
    """The body without OpenRouter's additions (checked here), for the OpenAI check."""
    issues: list[Issue] = []
    extras = {key: value for key, value in body.items() if key in _OPENROUTER_TOP}
    issues.extend(check(_OpenRouterBody, extras))
    rest = {key: value for key, value in body.items() if key not in _OPENROUTER_TOP}
    messages = rest.get("messages")
    if isinstance(messages, list):
        cleaned: list[object] = []
        for index, message in enumerate(messages):
            if not isinstance(message, dict):
                cleaned.append(message)
                continue
            message = dict(message)
            if message.get("role") == "assistant":
                own = {
                    key: message.pop(key) for key in list(message) if key in _OPENROUTER_ASSISTANT
                }
                issues.extend(check(_OpenRouterAssistant, own, ("messages", index)))
            content = message.get("content")
            if isinstance(content, list):
                parts: list[object] = []
                for part_index, part in enumerate(content):
                    if isinstance(part, dict) and "cache_control" in part:
                        part = dict(part)
                        issues.extend(
                            check(
                                _CacheControl,
                                part.pop("cache_control"),
                                ("messages", index, "content", part_index, "cache_control"),
                            )
                        )
                    parts.append(part)
                message["content"] = parts
            cleaned.append(message)
        rest["messages"] = cleaned
    return rest, issues


_OPENAI_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
_OPENAI_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0, 2),
    "top_p": (0, 1),
    "presence_penalty": (-2, 2),
    "frequency_penalty": (-2, 2),
    "top_logprobs": (0, 20),
    "n": (1, 128),
}


def _openai_semantics(body: JSONDict) -> list[Issue]:
    issues: list[Issue] = []
    for key, (low, high) in _OPENAI_RANGES.items():
        value = body.get(key)
        if _is_number(value):
            if value < low:
                issues.append(
                    _constraint(
                        (key,),
                        f"Invalid '{key}': decimal below minimum value. Expected a value >= "
                        f"{low:g}, but got {value} instead.",
                    )
                )
            elif value > high:
                issues.append(
                    _constraint(
                        (key,),
                        f"Invalid '{key}': decimal above maximum value. Expected a value <= "
                        f"{high:g}, but got {value} instead.",
                    )
                )
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if _is_number(value) and value < 1:
            issues.append(
                _constraint(
                    (key,),
                    f"Invalid '{key}': integer below minimum value. Expected a value >= 1, "
                    f"but got {value} instead.",
                )
            )
    if body.get("stream_options") is not None and body.get("stream") is not True:
        issues.append(
            _constraint(
                ("stream_options",),
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            )
        )
    tools = body.get("tools")
    if tools == []:
        issues.append(
            _constraint(
                ("tools",),
                "Invalid 'tools': empty array. Expected an array "
                "with minimum length 1, but got an empty array instead.",
            )
        )
    for key in ("tool_choice", "parallel_tool_calls"):
        if key in body and body[key] is not None and not tools:
            issues.append(
                _constraint(
                    (key,),
                    f"Invalid value for '{key}': '{key}' is only allowed when 'tools' are "
                    "specified.",
                )
            )
    for index, tool in enumerate(tools or []):
        function = tool.get("function") if tool.get("type") == "function" else None
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str):
            where = f"tools[{index}].function.name"
            if len(name) > 64:
                issues.append(
                    _constraint(
                        ("tools", index, "function", "name"),
                        f"Invalid '{where}': string too long. Expected a string with maximum "
                        f"length 64, but got a string with length {len(name)} instead.",
                    )
                )
            elif not _OPENAI_TOOL_NAME.match(name):
                issues.append(
                    _constraint(
                        ("tools", index, "function", "name"),
                        f"Invalid '{where}': string does not match pattern. Expected a string "
                        "that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                    )
                )
    messages: list[JSONDict] = body["messages"]
    if not messages:
        issues.append(
            _constraint(
                ("messages",),
                "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.",
            )
        )
    issues.extend(_openai_tool_pairing(messages))
    return issues


def _openai_tool_pairing(messages: list[JSONDict]) -> list[Issue]:
    issues: list[Issue] = []
    answered: set[str] = set()
    asked: list[str] = []
    asked_at = -1

    def close() -> None:
        missing = [call_id for call_id in asked if call_id not in answered]
        if missing:
            issues.append(
                _constraint(
                    ("messages", asked_at),
                    "An assistant message with 'tool_calls' must be followed by tool messages "
                    "responding to each 'tool_call_id'. The following tool_call_ids did not "
                    f"have response messages: {', '.join(missing)}",
                )
            )

    for index, message in enumerate(messages):
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if asked_at < 0 or call_id not in asked:
                issues.append(
                    _constraint(
                        ("messages", index, "tool_call_id"),
                        "Invalid parameter: messages with role 'tool' must be a response to a "
                        f"preceeding message with 'tool_calls' (no tool call has the id "
                        f"{_shown(call_id)}).",
                    )
                )
            elif isinstance(call_id, str):
                answered.add(call_id)
            continue
        if asked_at >= 0:
            close()
        asked, answered, asked_at = [], set(), -1
        if role == "assistant":
            calls = message.get("tool_calls") or []
            for position, call in enumerate(calls):
                call_id = call.get("id")
                if isinstance(call_id, str) and len(call_id) > 40:
                    issues.append(
                        _constraint(
                            ("messages", index, "tool_calls", position, "id"),
                            f"Invalid 'messages[{index}].tool_calls[{position}].id': string too "
                            "long. Expected a string with maximum length 40, but got a string "
                            f"with length {len(call_id)} instead.",
                        )
                    )
            if calls:
                asked = [call.get("id") for call in calls if isinstance(call.get("id"), str)]
                asked_at = index
            elif (
                message.get("content") is None
                and not message.get("function_call")
                and (not message.get("audio"))
            ):
                issues.append(
                    _constraint(
                        ("messages", index, "content"),
                        f"Invalid 'messages[{index}]': an assistant message must have "
                        "'content' or 'tool_calls'.",
                    )
                )
    if asked_at >= 0:
        close()
    return issues


def check_openai_chat(body: object, flavor: Flavor = "openai") -> Rejection | None:
    """OpenAI `POST /v1/chat/completions` (or OpenRouter's, with `flavor="openrouter"`)."""
    if not isinstance(body, dict):
        return Rejection("Invalid type for the request body: expected an object.")
    issues: list[Issue] = []
    target: JSONDict = body
    if flavor == "openrouter":
        target, issues = _split_openrouter(body)
    non_streaming, streaming = _openai_types()
    issues.extend(check(streaming if body.get("stream") is True else non_streaming, target))
    if not issues:
        issues = _openai_semantics(body)
    return _openai_rejection(issues) if issues else None


# --------------------------------------------------------------------------------------------
# Anthropic messages
# --------------------------------------------------------------------------------------------

AnthropicEndpoint = Literal["messages", "count_tokens"]


@cache
def _anthropic_types(endpoint: AnthropicEndpoint, stream: bool, beta: bool) -> type:
    if endpoint == "count_tokens":
        if beta:
            from anthropic.types.beta import message_count_tokens_params as beta_count

            return beta_count.MessageCountTokensParams
        from anthropic.types import message_count_tokens_params as count

        return count.MessageCountTokensParams
    if beta:
        from anthropic.types.beta import message_create_params as beta_create

        return (
            beta_create.MessageCreateParamsStreaming
            if stream
            else beta_create.MessageCreateParamsNonStreaming
        )
    from anthropic.types import message_create_params as create

    return create.MessageCreateParamsStreaming if stream else create.MessageCreateParamsNonStreaming


# The SDK sends these as headers (anthropic-beta, anthropic-user-profile-id,
# anthropic-workspace-id); in a body they are unknown fields.
_ANTHROPIC_HEADER_ONLY = ("betas", "user_profile_id", "workspace_id")
# Sampling fields the API takes but the installed SDK no longer declares.
_ANTHROPIC_SAMPLING: dict[str, tuple[type, float, float | None]] = {
    "temperature": (float, 0.0, 1.0),
    "top_p": (float, 0.0, 1.0),
    "top_k": (int, 0, None),
}
_ANTHROPIC_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_ANTHROPIC_TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"


def _sampling_issues(sampling: JSONDict) -> list[Issue]:
    issues: list[Issue] = []
    for key, value in sampling.items():
        kind, low, high = _ANTHROPIC_SAMPLING[key]
        if value is None:
            continue
        if kind is int:
            if not isinstance(value, int) or isinstance(value, bool):
                issues.append(Issue((key,), "type", "a valid integer", value))
                continue
        elif not _is_number(value):
            issues.append(Issue((key,), "type", "a valid number", value))
            continue
        if value < low:
            issues.append(
                _constraint((key,), f"{key}: Input should be greater than or equal to {low:g}")
            )
        elif high is not None and value > high:
            issues.append(
                _constraint((key,), f"{key}: Input should be less than or equal to {high:g}")
            )
    return issues


def _blocks(content: object) -> list[JSONDict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [block for block in content if isinstance(block, dict)]
    return []


def _anthropic_semantics(body: JSONDict, endpoint: AnthropicEndpoint) -> list[Issue]:
    issues: list[Issue] = []
    max_tokens = body.get("max_tokens")
    if endpoint == "messages" and isinstance(max_tokens, int) and max_tokens < 1:
        issues.append(
            _constraint(("max_tokens",), "max_tokens: Input should be greater than or equal to 1")
        )
    messages: list[JSONDict] = body["messages"]
    if not messages:
        issues.append(_constraint(("messages",), "messages: at least one message is required"))

    thinking = body.get("thinking")
    enabled = isinstance(thinking, dict) and thinking.get("type") == "enabled"
    if enabled:
        assert isinstance(thinking, dict)
        budget = thinking.get("budget_tokens")
        if isinstance(budget, int) and budget < 1024:
            issues.append(
                _constraint(
                    ("thinking", "budget_tokens"),
                    "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
                )
            )
        if (
            endpoint == "messages"
            and isinstance(budget, int)
            and isinstance(max_tokens, int)
            and budget >= max_tokens
        ):
            issues.append(
                _constraint(
                    ("max_tokens",),
                    "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult "
                    f"our documentation at {_DOCS}#max-tokens-and-context-window-size",
                )
            )
        temperature = body.get("temperature")
        if temperature is not None and temperature != 1:
            issues.append(
                _constraint(
                    ("temperature",),
                    "`temperature` may only be set to 1 when thinking is enabled. Please consult"
                    f" our documentation at {_DOCS}#feature-compatibility",
                )
            )
        if body.get("top_k") is not None:
            issues.append(
                _constraint(
                    ("top_k",),
                    "`top_k` must be unset when thinking is enabled. Please consult our "
                    f"documentation at {_DOCS}#feature-compatibility",
                )
            )
        top_p = body.get("top_p")
        if _is_number(top_p) and top_p < 0.95:
            issues.append(
                _constraint(
                    ("top_p",),
                    "`top_p` must be greater than or equal to 0.95 or unset when thinking is "
                    f"enabled. Please consult our documentation at {_DOCS}#feature-compatibility",
                )
            )
        tool_choice = body.get("tool_choice")
        if isinstance(tool_choice, dict) and tool_choice.get("type") in ("any", "tool"):
            issues.append(
                _constraint(
                    ("tool_choice",),
                    "Thinking may not be enabled when tool_choice forces tool use.",
                )
            )

    names: set[str] = set()
    for index, tool in enumerate(body.get("tools") or []):
        name = tool.get("name")
        if not isinstance(name, str):
            continue
        if "input_schema" in tool and not _ANTHROPIC_TOOL_NAME.match(name):
            issues.append(
                _constraint(
                    ("tools", index, "name"),
                    f"tools.{index}.custom.name: String should match pattern "
                    "'^[a-zA-Z0-9_-]{1,128}$'",
                )
            )
        if name in names:
            issues.append(_constraint(("tools",), "tools: Tool names must be unique."))
        names.add(name)

    system = body.get("system")
    for position, block in enumerate(system if isinstance(system, list) else []):
        if block.get("type") == "text" and block.get("text") == "":
            issues.append(
                _constraint(
                    ("system", position, "text"),
                    f"system.{position}.text: text content blocks must be non-empty",
                )
            )
    issues.extend(_anthropic_message_rules(messages, enabled))

    cached = sum(1 for block in _cacheable_blocks(body) if block.get("cache_control"))
    if cached > 4:
        issues.append(
            _constraint(
                (),
                f"A maximum of 4 blocks with cache_control may be provided. Found {cached}.",
            )
        )
    return issues


def _cacheable_blocks(body: JSONDict) -> Iterator[JSONDict]:
    system = body.get("system")
    if isinstance(system, list):
        yield from (block for block in system if isinstance(block, dict))
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            yield tool
    for message in body["messages"]:
        for block in _blocks(message.get("content")):
            if isinstance(message.get("content"), list):
                yield block
            if block.get("type") == "tool_result":
                yield from (
                    _blocks(block.get("content")) if isinstance(block.get("content"), list) else ()
                )


def _anthropic_message_rules(messages: list[JSONDict], thinking_enabled: bool) -> list[Issue]:
    issues: list[Issue] = []
    last = len(messages) - 1
    for index, message in enumerate(messages):
        content = message.get("content")
        blocks = _blocks(content)
        role = message.get("role")
        if not blocks or content == "":
            if not (index == last and role == "assistant"):
                issues.append(
                    _constraint(
                        ("messages", index),
                        f"messages.{index}: all messages must have non-empty content except for"
                        " the optional final assistant message",
                    )
                )
            continue
        if isinstance(content, list):
            for position, block in enumerate(blocks):
                where = ("messages", index, "content", position)
                kind = block.get("type")
                if kind == "text" and block.get("text") == "":
                    issues.append(
                        _constraint(
                            (*where, "text"),
                            f"{dot_path(where)}.text: text content blocks must be non-empty",
                        )
                    )
                id_key = {"tool_use": "id", "tool_result": "tool_use_id"}.get(str(kind))
                tool_id = block.get(id_key) if id_key else None
                if isinstance(tool_id, str) and not _ANTHROPIC_TOOL_ID.match(tool_id):
                    issues.append(
                        _constraint(
                            (*where, str(id_key)),
                            f"{dot_path(where)}.{kind}.{id_key}: String should match pattern "
                            "'^[a-zA-Z0-9_-]+$'",
                        )
                    )
        if index == last and role == "assistant":
            final = blocks[-1]
            if final.get("type") == "text" and str(final.get("text", "")).rstrip() != final.get(
                "text"
            ):
                issues.append(
                    _constraint(
                        ("messages", index),
                        "messages: final assistant content cannot end with trailing whitespace",
                    )
                )
        if role == "user":
            issues.extend(_tool_results_rules(messages, index, blocks))
        if role == "assistant" and index < last:
            uses = [block.get("id") for block in blocks if block.get("type") == "tool_use"]
            if uses:
                following = messages[index + 1]
                answered = (
                    {
                        block.get("tool_use_id")
                        for block in _blocks(following.get("content"))
                        if block.get("type") == "tool_result"
                    }
                    if following.get("role") == "user"
                    else set()
                )
                missing = [str(use) for use in uses if use not in answered]
                if missing:
                    issues.append(
                        _constraint(
                            ("messages", index),
                            f"messages.{index}: `tool_use` ids were found without `tool_result`"
                            f" blocks immediately after: {', '.join(missing)}. Each `tool_use` "
                            "block must have a corresponding `tool_result` block in the next "
                            "message.",
                        )
                    )
    if thinking_enabled:
        issues.extend(_final_assistant_thinking(messages))
    return issues


def _tool_results_rules(
    messages: list[JSONDict], index: int, blocks: list[JSONDict]
) -> list[Issue]:
    issues: list[Issue] = []
    results = [
        (position, block)
        for position, block in enumerate(blocks)
        if block.get("type") == "tool_result"
    ]
    if not results:
        return issues
    previous = messages[index - 1] if index > 0 else None
    offered = (
        {
            block.get("id")
            for block in _blocks(previous.get("content"))
            if block.get("type") == "tool_use"
        }
        if previous is not None and previous.get("role") == "assistant"
        else set()
    )
    for position, block in results:
        if block.get("tool_use_id") not in offered:
            issues.append(
                _constraint(
                    ("messages", index, "content", position),
                    f"messages.{index}.content.{position}: unexpected `tool_use_id` found in "
                    f"`tool_result` blocks: {block.get('tool_use_id')}. Each `tool_result` "
                    "block must have a corresponding `tool_use` block in the previous message.",
                )
            )
    first_other = next(
        (position for position, block in enumerate(blocks) if block.get("type") != "tool_result"),
        None,
    )
    if first_other is not None and any(position > first_other for position, _ in results):
        issues.append(
            _constraint(
                ("messages", index, "content", first_other),
                f"messages.{index}.content.{first_other}: `tool_result` blocks must come first "
                "in the content of a `user` message, before any other block.",
            )
        )
    return issues


def _final_assistant_thinking(messages: list[JSONDict]) -> list[Issue]:
    """With thinking enabled, the assistant turn answered by tool results must start thinking."""
    last_user = max(
        (index for index, message in enumerate(messages) if message.get("role") == "user"),
        default=-1,
    )
    if last_user < 1:
        return []
    if not any(
        block.get("type") == "tool_result" for block in _blocks(messages[last_user].get("content"))
    ):
        return []
    assistant = messages[last_user - 1]
    if assistant.get("role") != "assistant":
        return []
    blocks = _blocks(assistant.get("content"))
    first = blocks[0].get("type") if blocks else None
    if first in ("thinking", "redacted_thinking"):
        return []
    index = last_user - 1
    return [
        _constraint(
            ("messages", index, "content", 0, "type"),
            f"messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, but "
            f"found `{first}`. When `thinking` is enabled, a final `assistant` message must "
            "start with a thinking block (preceeding the lastmost set of `tool_use` and "
            "`tool_result` blocks). We recommend you include thinking blocks from previous "
            "turns. To avoid this requirement, disable `thinking`. Please consult our "
            f"documentation at {_DOCS}",
        )
    ]


def check_anthropic(
    body: object,
    beta_header: str | None = None,
    endpoint: AnthropicEndpoint = "messages",
) -> Rejection | None:
    """Anthropic `POST /v1/messages` or `/v1/messages/count_tokens`.

    Beta-only fields are accepted when an `anthropic-beta` header came with the request.
    """
    if not isinstance(body, dict):
        return Rejection("Input should be a valid dictionary")
    issues: list[Issue] = []
    target = dict(body)
    for key in _ANTHROPIC_HEADER_ONLY:
        if key in target:
            issues.append(Issue((key,), "extra", got=target.pop(key)))
    if endpoint == "messages":
        sampling = {key: target.pop(key) for key in _ANTHROPIC_SAMPLING if key in target}
        issues.extend(_sampling_issues(sampling))
    stream = body.get("stream") is True
    structural = check(_anthropic_types(endpoint, stream, False), target)
    if structural and beta_header:
        structural = check(_anthropic_types(endpoint, stream, True), target)
    issues.extend(structural)
    if not issues:
        issues = _anthropic_semantics(body, endpoint)
    return _anthropic_rejection(issues) if issues else None


# --------------------------------------------------------------------------------------------
# Gemini generateContent / countTokens
# --------------------------------------------------------------------------------------------

_GEMINI_SNAKE = {
    "system_instruction": "systemInstruction",
    "tool_config": "toolConfig",
    "safety_settings": "safetySettings",
    "generation_config": "generationConfig",
    "cached_content": "cachedContent",
    "service_tier": "serviceTier",
    "generate_content_request": "generateContentRequest",
}


@cache
def _gemini_adapters() -> dict[str, TypeAdapter[Any]]:
    fields = _gemini_field_types()
    return {name: TypeAdapter[Any](typing.cast(Any, tp)) for name, tp in fields.items()}


@cache
def _gemini_field_types() -> dict[str, object]:
    """The google.genai type of each REST field of GenerateContentRequest."""
    from google.genai import types

    return {
        "contents": list[types.Content],
        "systemInstruction": types.Content,
        "tools": list[types.Tool],
        "toolConfig": types.ToolConfig,
        "safetySettings": list[types.SafetySetting],
        "generationConfig": types.GenerationConfig,
        "cachedContent": str,
        "model": str,
        "labels": dict[str, str],
        "serviceTier": str,
        "store": bool,
    }


@cache
def _gemini_converters() -> dict[str, Callable[[Any], object]]:
    """The SDK's own Developer-API converters: they raise on Vertex-only fields."""
    try:
        from google.genai import models
    except ImportError:  # pragma: no cover - depends on the SDK layout
        return {}
    names = {
        "contents": "_Content_to_mldev",
        "systemInstruction": "_Content_to_mldev",
        "tools": "_Tool_to_mldev",
        "toolConfig": "_ToolConfig_to_mldev",
        "safetySettings": "_SafetySetting_to_mldev",
    }
    found: dict[str, Callable[[Any], object]] = {}
    for field, name in names.items():
        converter = getattr(models, name, None)
        if callable(converter):
            found[field] = converter
    return found


# generationConfig fields the SDK's Developer-API converter refuses (Vertex AI only)
_GEMINI_VERTEX_ONLY_CONFIG = ("routingConfig", "modelSelectionConfig", "audioTimestamp")


@cache
def _camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _pydantic_issues(error: ValidationError, value: object, prefix: Path) -> list[Issue]:
    """pydantic errors as issues whose path follows the body (its own key spelling)."""
    issues: list[Issue] = []
    for detail in error.errors():
        path: list[str | int] = list(prefix)
        node: object = value
        loc = detail["loc"]
        for position, item in enumerate(loc):
            if isinstance(node, list) and isinstance(item, int):
                path.append(item)
                node = node[item] if item < len(node) else None
            elif isinstance(node, dict) and isinstance(item, str):
                key = item if item in node else _camel_to_snake(item)
                if key in node:
                    path.append(key)
                    node = node[key]
                elif position == len(loc) - 1:
                    path.append(item)
                    node = None
                # else: a union branch tag, not part of the body
        kind = detail["type"]
        got = detail.get("input")
        if kind == "extra_forbidden":
            issues.append(Issue(tuple(path), "extra", got=got))
        elif kind == "missing":
            issues.append(Issue(tuple(path), "missing"))
        elif kind.endswith(("_type", "_parsing")) or kind in ("enum", "literal_error"):
            issue_kind: Literal["type", "value"] = (
                "value" if kind in ("enum", "literal_error") else "type"
            )
            issues.append(Issue(tuple(path), issue_kind, _pydantic_expected(kind), got))
        else:
            issues.append(_constraint(tuple(path), str(detail["msg"])))
    return issues


def _pydantic_expected(kind: str) -> str:
    names = {
        "string_type": "TYPE_STRING",
        "int_type": "TYPE_INT32",
        "int_parsing": "TYPE_INT32",
        "float_type": "TYPE_FLOAT",
        "float_parsing": "TYPE_FLOAT",
        "bool_type": "TYPE_BOOL",
        "bool_parsing": "TYPE_BOOL",
        "list_type": "a list",
        "dict_type": "an object",
        "model_type": "an object",
        "bytes_type": "TYPE_BYTES",
    }
    return names.get(kind, kind)


@cache
def _model_fields(model: type[BaseModel]) -> dict[str, object]:
    """A google.genai model's fields by every JSON spelling (alias and name), hints resolved."""
    hints = typing.get_type_hints(model)
    fields: dict[str, object] = {}
    for name, info in model.model_fields.items():
        fields[name] = hints.get(name, info.annotation)
        if info.alias:
            fields[info.alias] = fields[name]
    return fields


_EnumPlan = tuple[str, Any]
_enum_plans: dict[int, tuple[object, _EnumPlan]] = {}


def _enum_plan(tp: object) -> _EnumPlan:
    """What `_enum_issues` needs to know about a hint, computed once per hint object."""
    entry = _enum_plans.get(id(tp))
    if entry is not None and entry[0] is tp:
        return entry[1]
    plan: _EnumPlan = ("skip", None)
    bare = unwrap(tp)
    origin, args = typing.get_origin(bare), typing.get_args(bare)
    if is_union(bare):
        plan = ("union", [member for member in args if member is not type(None)])
    elif origin is list and args:
        plan = ("list", args[0])
    elif origin is dict and len(args) == 2:
        plan = ("dict", args[1])
    elif isinstance(bare, type) and issubclass(bare, BaseModel):
        plan = ("model", bare)
    elif isinstance(bare, type) and issubclass(bare, enum.Enum):
        plan = ("enum", bare)
    _enum_plans[id(tp)] = (tp, plan)
    return plan


def _enum_issues(tp: object, value: object, path: Path) -> Iterator[Issue]:
    """Enum strings google.genai would accept with a mere warning (its enums are permissive).

    Walks the raw JSON along the model's type hints before pydantic sees it, matching the
    SDK's case-insensitive lookup, so unknown values are reported and never warned about.
    """
    kind, data = _enum_plan(tp)
    if kind == "union":
        for member in data:
            yield from _enum_issues(member, value, path)
    elif kind == "list" and isinstance(value, list):
        for index, item in enumerate(value):
            yield from _enum_issues(data, item, (*path, index))
    elif kind == "dict" and isinstance(value, dict):
        for key, item in value.items():
            yield from _enum_issues(data, item, (*path, key))
    elif kind == "model" and isinstance(value, dict):
        fields = _model_fields(data)
        for key, item in value.items():
            if key in fields:
                yield from _enum_issues(fields[key], item, (*path, key))
    elif kind == "enum" and isinstance(value, str):
        members = data.__members__
        known = [member.value for member in members.values()]
        if value not in known and value.upper() not in members and value.lower() not in members:
            expected = ", ".join(repr(member) for member in known)
            yield Issue(path, "value", f"one of {expected}", value)


def _get(mapping: Mapping[str, Any], camel: str) -> Any:
    """A Gemini field under either spelling (protobuf JSON takes both)."""
    if camel in mapping:
        return mapping[camel]
    return mapping.get(_camel_to_snake(camel))


def _key(mapping: Mapping[str, Any], camel: str) -> str:
    return (
        camel
        if camel in mapping or _camel_to_snake(camel) not in mapping
        else (_camel_to_snake(camel))
    )


_PART_DATA = (
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
    "toolCall",
    "toolResponse",
)
_GEMINI_FUNCTION_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,127}$")
_GEMINI_FORMATS = {
    "STRING": ("enum", "date-time"),
    "NUMBER": ("float", "double"),
    "INTEGER": ("int32", "int64"),
}
_SCHEMA_VERTEX_ONLY = ("additionalProperties", "additional_properties", "ref", "defs")
_SCHEMA_CHILDREN = ("items", "anyOf", "any_of", "properties")


def _schema_issues(schema: object, path: Path, strict_formats: bool) -> list[Issue]:
    """What the Developer API refuses in an OpenAPI-subset `Schema` (parameters, responseSchema)."""
    if not isinstance(schema, dict):
        return []
    issues: list[Issue] = []
    for key in _SCHEMA_VERTEX_ONLY:
        if key in schema:
            issues.append(Issue((*path, key), "extra", got=schema[key]))
    kind = schema.get("type")
    fmt = schema.get("format")
    if strict_formats and isinstance(kind, str) and isinstance(fmt, str):
        allowed = _GEMINI_FORMATS.get(kind.upper())
        if allowed is not None and fmt not in allowed:
            issues.append(
                _constraint(
                    (*path, "format"),
                    f"* GenerateContentRequest.{bracket_path((*path, 'format'))}: only "
                    f"{' and '.join(repr(a) for a in allowed)} are supported for "
                    f"{kind.upper()} type",
                )
            )
    for key in _SCHEMA_CHILDREN:
        child = schema.get(key)
        if key == "properties" and isinstance(child, dict):
            for name, sub in child.items():
                issues.extend(_schema_issues(sub, (*path, key, name), strict_formats))
        elif isinstance(child, list):
            for index, sub in enumerate(child):
                issues.extend(_schema_issues(sub, (*path, key, index), strict_formats))
        elif isinstance(child, dict):
            issues.extend(_schema_issues(child, (*path, key), strict_formats))
    return issues


def _content_issues(content: JSONDict, path: Path, is_system: bool) -> list[Issue]:
    issues: list[Issue] = []
    role = content.get("role")
    if not is_system and role not in (None, "user", "model"):
        issues.append(_constraint((*path, "role"), "Please use a valid role: user, model."))
    parts = content.get("parts")
    if not parts:
        issues.append(
            _constraint(
                (*path, "parts"),
                f"* GenerateContentRequest.{bracket_path((*path, 'parts'))}: contents.parts "
                "must not be empty.",
            )
        )
        return issues
    for index, part in enumerate(parts):
        where = (*path, "parts", index)
        present = [name for name in _PART_DATA if _get(part, name) is not None]
        if not present:
            issues.append(
                _constraint(
                    (*where, "data"),
                    f"* GenerateContentRequest.{bracket_path(where)}.data: required oneof field "
                    "'data' must have one initialized field",
                )
            )
        elif len(present) > 1:
            issues.append(
                _constraint(
                    (*where, present[1]),
                    "Invalid JSON payload received. Oneof field 'data' is already set. Cannot "
                    f"set '{present[1]}' at '{bracket_path(where)}'",
                )
            )
        for name in ("functionCall", "functionResponse"):
            call = _get(part, name)
            if isinstance(call, dict) and not call.get("name"):
                snake = _camel_to_snake(name)
                issues.append(
                    _constraint(
                        (*where, _key(part, name), "name"),
                        f"* GenerateContentRequest.{bracket_path(where)}.{snake}.name: Name "
                        "cannot be empty.",
                    )
                )
    return issues


def _tools_issues(tools: list[JSONDict], strict_formats: bool) -> list[Issue]:
    issues: list[Issue] = []
    for index, tool in enumerate(tools):
        declarations = _get(tool, "functionDeclarations") or []
        decl_key = _key(tool, "functionDeclarations")
        for position, declaration in enumerate(declarations):
            where: Path = ("tools", index, decl_key, position)
            name = declaration.get("name")
            if not name or not _GEMINI_FUNCTION_NAME.match(name):
                issues.append(
                    _constraint(
                        (*where, "name"),
                        f"* GenerateContentRequest.{bracket_path(where)}.name: Invalid function "
                        "name. Must start with a letter or an underscore. Must be alphameric "
                        "(a-z, A-Z, 0-9), underscores (_), dots (.), colons (:), or dashes (-), "
                        "with a maximum length of 128.",
                    )
                )
            parameters = _get(declaration, "parameters")
            if parameters is not None and _get(declaration, "parametersJsonSchema") is not None:
                issues.append(
                    _constraint(
                        where,
                        f"* GenerateContentRequest.{bracket_path(where)}: `parameters` and "
                        "`parameters_json_schema` are mutually exclusive",
                    )
                )
            if parameters is not None:
                issues.extend(
                    _schema_issues(
                        parameters, (*where, _key(declaration, "parameters")), strict_formats
                    )
                )
            response = _get(declaration, "response")
            if response is not None:
                issues.extend(
                    _schema_issues(
                        response, (*where, _key(declaration, "response")), strict_formats
                    )
                )
    return issues


def _generation_config_issues(config: JSONDict, strict_formats: bool) -> list[Issue]:
    issues: list[Issue] = []
    base: Path = ("generationConfig",)
    for name in _GEMINI_VERTEX_ONLY_CONFIG:
        if _get(config, name) is not None:
            issues.append(Issue((*base, _key(config, name)), "extra", got=_get(config, name)))
    ranges = {"temperature": (0.0, 2.0), "topP": (0.0, 1.0)}
    for name, (low, high) in ranges.items():
        value = _get(config, name)
        if _is_number(value) and not low <= value <= high:
            issues.append(
                _constraint(
                    (*base, _key(config, name)),
                    f"* GenerateContentRequest.generation_config.{_camel_to_snake(name)}: "
                    f"{_camel_to_snake(name)} must be in the range [{low:g}, {high:g}] "
                    f"(got {value})",
                )
            )
    for name in ("candidateCount", "maxOutputTokens", "topK"):
        value = _get(config, name)
        if _is_number(value) and value < 1:
            issues.append(
                _constraint(
                    (*base, _key(config, name)),
                    f"* GenerateContentRequest.generation_config.{_camel_to_snake(name)}: must "
                    f"be a positive number (got {value})",
                )
            )
    thinking = _get(config, "thinkingConfig")
    if isinstance(thinking, dict) and (
        _get(thinking, "thinkingBudget") is not None and _get(thinking, "thinkingLevel") is not None
    ):
        issues.append(
            _constraint(
                (*base, _key(config, "thinkingConfig")),
                "* GenerateContentRequest.generation_config.thinking_config: thinking_budget and"
                " thinking_level cannot both be set",
            )
        )
    schema = _get(config, "responseSchema")
    if schema is not None:
        issues.extend(
            _schema_issues(schema, (*base, _key(config, "responseSchema")), strict_formats)
        )
    return issues


def _gemini_generate_issues(body: JSONDict, strict_formats: bool, prefix: Path = ()) -> list[Issue]:
    issues: list[Issue] = []
    canonical: JSONDict = {}
    adapters = _gemini_adapters()
    for key, value in body.items():
        name = _GEMINI_SNAKE.get(key, key)
        if name not in adapters or name == "generateContentRequest":
            issues.append(Issue((*prefix, key), "extra", got=value))
            continue
        canonical[name] = value
        enums = list(_enum_issues(_gemini_field_types()[name], value, (*prefix, key)))
        if enums:
            issues.extend(enums)
            continue
        try:
            validated = adapters[name].validate_python(value)
        except ValidationError as error:
            issues.extend(_pydantic_issues(error, value, (*prefix, key)))
            continue
        converter = _gemini_converters().get(name)
        if converter is not None:
            items = validated if isinstance(validated, list) else [validated]
            for index, item in enumerate(items):
                try:
                    converter(item.model_dump(exclude_none=True))  # dict lookups are fast
                except ValueError as error:
                    where = (*prefix, key, index) if isinstance(validated, list) else (*prefix, key)
                    issues.append(
                        _constraint(
                            where, f"* GenerateContentRequest.{bracket_path(where)}: {error}"
                        )
                    )
    if issues:
        return issues
    contents = canonical.get("contents")
    if not contents:
        return [
            _constraint(
                (*prefix, "contents"),
                "* GenerateContentRequest.contents: contents is not specified",
            )
        ]
    for index, content in enumerate(contents):
        issues.extend(_content_issues(content, (*prefix, "contents", index), is_system=False))
    system = canonical.get("systemInstruction")
    if isinstance(system, dict):
        issues.extend(
            _content_issues(system, (*prefix, _key(body, "systemInstruction")), is_system=True)
        )
    issues.extend(_tools_issues(canonical.get("tools") or [], strict_formats))
    config = canonical.get("generationConfig")
    if isinstance(config, dict):
        issues.extend(_generation_config_issues(config, strict_formats))
    return issues


def check_gemini_generate(body: object, strict_formats: bool = True) -> Rejection | None:
    """Gemini `models/{model}:generateContent` and `:streamGenerateContent`."""
    if not isinstance(body, dict):
        return Rejection("Invalid JSON payload received. Expected an object.")
    issues = _gemini_generate_issues(body, strict_formats)
    return _gemini_rejection(issues) if issues else None


def check_gemini_count_tokens(body: object, strict_formats: bool = True) -> Rejection | None:
    """Gemini `models/{model}:countTokens`: `contents` or a whole `generateContentRequest`."""
    if not isinstance(body, dict):
        return Rejection("Invalid JSON payload received. Expected an object.")
    issues: list[Issue] = []
    for key in body:
        if _GEMINI_SNAKE.get(key, key) not in ("contents", "generateContentRequest"):
            issues.append(Issue((key,), "extra", got=body[key]))
    contents = body.get("contents")
    request = _get(body, "generateContentRequest")
    if not issues:
        if contents is not None and request is not None:
            issues.append(
                _constraint(
                    (),
                    "* CountTokensRequest: contents and generate_content_request are mutually "
                    "exclusive",
                )
            )
        elif request is not None:
            key = _key(body, "generateContentRequest")
            if not isinstance(request, dict):
                issues.append(Issue((key,), "type", "an object", request))
            else:
                if not request.get("model"):
                    issues.append(
                        _constraint(
                            (key, "model"),
                            "* CountTokensRequest.generate_content_request.model: model is "
                            "required",
                        )
                    )
                issues.extend(_gemini_generate_issues(request, strict_formats, (key,)))
        else:
            issues.extend(_gemini_generate_issues({"contents": contents or []}, strict_formats))
    return _gemini_rejection(issues) if issues else None
