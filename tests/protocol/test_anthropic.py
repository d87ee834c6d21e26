"""Tests of protocol/anthropic.py against the official `anthropic` SDK (through MockTransport)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import anthropic as sdk
import httpx2
import pytest
from anthropic.types import (
    DocumentBlockParam,
    ImageBlockParam,
    RedactedThinkingBlockParam,
    TextBlockParam,
    ThinkingBlockParam,
    ThinkingConfigEnabledParam,
    ToolChoiceAnyParam,
    ToolChoiceAutoParam,
    ToolChoiceNoneParam,
    ToolChoiceToolParam,
    ToolParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
)
from anthropic.types.message_create_params import MessageCreateParamsBase
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from protocol import anthropic as A
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
    Reasoning,
    ResponseAccumulator,
    Start,
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

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="

SIMPLE_MESSAGE = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "test-model",
    "content": [{"type": "text", "text": "ok"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 3, "output_tokens": 1},
}


def sse(*events: tuple[str, dict[str, Any]]) -> bytes:
    return b"".join(
        f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
        for name, data in events
    )


SIMPLE_SSE = sse(
    ("message_start", {"type": "message_start", "message": {**SIMPLE_MESSAGE, "content": []}}),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 1},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
)


def client_for(handler: Callable[[httpx2.Request], httpx2.Response]) -> sdk.Anthropic:
    return sdk.Anthropic(
        api_key="test-key",
        base_url="http://anthropic.test",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


def capture(call: Callable[[sdk.Anthropic], Any]) -> dict[str, Any]:
    """The JSON body the SDK sends for `call(client)`."""
    seen: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        seen.append(body)
        if request.url.path.endswith("/count_tokens"):
            return httpx2.Response(200, json={"input_tokens": 3})
        if body.get("stream"):
            return httpx2.Response(
                200, headers={"content-type": "text/event-stream"}, content=SIMPLE_SSE
            )
        return httpx2.Response(200, json=SIMPLE_MESSAGE)

    result = call(client_for(handler))
    if isinstance(result, sdk.Stream):
        list(result)
    return seen[0]


def answer_with(body: bytes | dict[str, Any]) -> sdk.Anthropic:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if isinstance(body, bytes):
            return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)
        return httpx2.Response(200, json=body)

    return client_for(handler)


HI = [{"role": "user", "content": "hi"}]

# ----------------------------------------------------------------------------------------------
# strict shape check of a request body against the SDK's TypedDicts
# ----------------------------------------------------------------------------------------------

_BLOCK_TYPES: dict[str, Any] = {
    "text": TextBlockParam,
    "image": ImageBlockParam,
    "document": DocumentBlockParam,
    "tool_use": ToolUseBlockParam,
    "tool_result": ToolResultBlockParam,
    "thinking": ThinkingBlockParam,
    "redacted_thinking": RedactedThinkingBlockParam,
}
_TOOL_CHOICES: dict[str, Any] = {
    "auto": ToolChoiceAutoParam,
    "any": ToolChoiceAnyParam,
    "tool": ToolChoiceToolParam,
    "none": ToolChoiceNoneParam,
}
# Deprecated sampling fields: gone from the SDK 1.x+ signature, still accepted by the API
# (through extra_body) on the models that support sampling.
_SAMPLING = {"temperature", "top_p", "top_k"}


def _keys(td: Any) -> tuple[frozenset[str], frozenset[str]]:
    return td.__required_keys__, td.__required_keys__ | td.__optional_keys__


def _check_td(value: Any, td: Any, where: str) -> None:
    assert isinstance(value, dict), where
    required, allowed = _keys(td)
    assert required <= value.keys(), (where, required - value.keys())
    assert value.keys() <= allowed, (where, value.keys() - allowed)
    TypeAdapter(td).validate_python(value)


def check_request_shape(body: dict[str, Any]) -> None:
    """Fail unless `body` fits the SDK's MessageCreateParams (eagerly, keys included)."""
    required, allowed = _keys(MessageCreateParamsBase)
    assert required <= body.keys()
    assert body.keys() <= allowed | {"stream"} | _SAMPLING, body.keys() - allowed
    if "system" in body and not isinstance(body["system"], str):
        for i, block in enumerate(body["system"]):
            _check_td(block, TextBlockParam, f"system[{i}]")
    for i, msg in enumerate(body["messages"]):
        assert msg.keys() == {"role", "content"}, msg.keys()
        assert msg["role"] in ("user", "assistant", "system")
        content = msg["content"]
        if isinstance(content, str):
            continue
        assert content, f"messages[{i}] has empty content"
        for j, block in enumerate(content):
            where = f"messages[{i}].content[{j}]"
            if msg["role"] == "system":
                assert block["type"] == "text", where
            _check_td(block, _BLOCK_TYPES[block["type"]], where)
            if block["type"] == "text":
                assert block["text"], f"{where}: empty text block"
            if block["type"] == "tool_result" and isinstance(block.get("content"), list):
                for k, item in enumerate(block["content"]):
                    _check_td(item, _BLOCK_TYPES[item["type"]], f"{where}.content[{k}]")
        if msg["role"] == "user":
            kinds = [b["type"] == "tool_result" for b in content]
            assert kinds == sorted(kinds, reverse=True), "tool results must come first"
    for i, tool in enumerate(body.get("tools", [])):
        _check_td(tool, ToolParam, f"tools[{i}]")
        assert tool["input_schema"].get("type") == "object"
    if "tool_choice" in body:
        _check_td(body["tool_choice"], _TOOL_CHOICES[body["tool_choice"]["type"]], "tool_choice")
    if "thinking" in body:
        _check_td(body["thinking"], ThinkingConfigEnabledParam, "thinking")
        assert 1024 <= body["thinking"]["budget_tokens"] < body["max_tokens"]
        assert body.get("temperature", 1) == 1 and "top_k" not in body
    # and the SDK itself takes it (sampling fields go through extra_body, as SDK 1.x+ wants)
    sampling = {k: body[k] for k in _SAMPLING if k in body}
    kwargs = {k: v for k, v in body.items() if k not in _SAMPLING and k != "stream"}
    sent = capture(lambda c: c.messages.create(**kwargs, extra_body=sampling or None, timeout=60))
    assert sent == {k: v for k, v in body.items() if k != "stream"}


# ----------------------------------------------------------------------------------------------
# same-protocol round trip of bodies the SDK produces
# ----------------------------------------------------------------------------------------------

CLAUDE_CODE_TOOLS = [
    {
        "name": f"Tool{i}",
        "description": f"tool number {i}",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "n": {"type": "integer"}},
            "required": ["path"],
            "additionalProperties": False,
            "$schema": "http://json-schema.org/draft-07/schema#",
        },
        **({"cache_control": {"type": "ephemeral"}} if i == 23 else {}),
    }
    for i in range(24)
]

HISTORY = [
    {
        "role": "user",
        "content": [{"type": "text", "text": "List files", "cache_control": {"type": "ephemeral"}}],
    },
    {
        "role": "assistant",
        "content": [
            {
                "type": "thinking",
                "thinking": "I should call two tools.",
                "signature": "EqQBCkYIBxgC",
            },
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
            {"type": "text", "text": "Calling tools."},
            {
                "type": "tool_use",
                "id": "toolu_01",
                "name": "Tool1",
                "input": {"path": "/tmp", "n": 2},
            },
            {
                "type": "tool_use",
                "id": "toolu_02",
                "name": "Tool2",
                "input": {"path": "/é", "nested": {"a": [1, 2.5, None, True]}},
            },
        ],
    },
    {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01", "content": "a.txt\nb.txt"},
            {
                "type": "tool_result",
                "tool_use_id": "toolu_02",
                "content": [
                    {"type": "text", "text": "see image"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                    },
                ],
                "is_error": True,
                "cache_control": {"type": "ephemeral"},
            },
            {"type": "text", "text": "<system-reminder>x</system-reminder>"},
        ],
    },
    {"role": "system", "content": "The user switched to plan mode."},
    {"role": "assistant", "content": "Done."},
    {"role": "user", "content": "thanks"},
]


ROUND_TRIP_CALLS: dict[str, Callable[[sdk.Anthropic], Any]] = {
    "minimal": lambda c: c.messages.create(model="test-model", max_tokens=1024, messages=HI),
    "system_string": lambda c: c.messages.create(
        model="m", max_tokens=10, system="You are terse.", messages=HI
    ),
    "system_empty_string": lambda c: c.messages.create(
        model="m", max_tokens=10, system="", messages=HI
    ),
    "system_blocks": lambda c: c.messages.create(
        model="m",
        max_tokens=10,
        system=[
            {"type": "text", "text": "You are Claude Code."},
            {
                "type": "text",
                "text": "Be careful.",
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            },
        ],
        messages=HI,
    ),
    "system_empty_list": lambda c: c.messages.create(
        model="m", max_tokens=10, system=[], messages=HI
    ),
    "multi_turn": lambda c: c.messages.create(
        model="m",
        max_tokens=10,
        messages=[
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": [{"type": "text", "text": "three"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "four "}]},
        ],
    ),
    "images": lambda c: c.messages.create(
        model="m",
        max_tokens=10,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/cat.png"},
                    },
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                        "cache_control": {"type": "ephemeral"},
                    },
                    {"type": "image", "source": {"type": "file", "file_id": "file_01"}},
                    {"type": "text", "text": "What are these?"},
                ],
            }
        ],
    ),
    "tools_and_choice_auto": lambda c: c.messages.create(
        model="m", max_tokens=10, messages=HI, tools=CLAUDE_CODE_TOOLS, tool_choice={"type": "auto"}
    ),
    "tool_choice_any_no_parallel": lambda c: c.messages.create(
        model="m",
        max_tokens=10,
        messages=HI,
        tools=CLAUDE_CODE_TOOLS[:2],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    ),
    "tool_choice_tool": lambda c: c.messages.create(
        model="m",
        max_tokens=10,
        messages=HI,
        tools=CLAUDE_CODE_TOOLS[:2],
        tool_choice={"type": "tool", "name": "Tool1", "disable_parallel_tool_use": False},
    ),
    "tool_choice_none": lambda c: c.messages.create(
        model="m",
        max_tokens=10,
        messages=HI,
        tools=CLAUDE_CODE_TOOLS[:1],
        tool_choice={"type": "none"},
    ),
    "server_tools": lambda c: c.messages.create(
        model="m",
        max_tokens=10,
        messages=HI,
        tools=[
            {
                "type": "web_search_20250305",
                "name": "web_search",
                "max_uses": 3,
                "allowed_domains": ["a.com"],
            },
            {"type": "bash_20250124", "name": "bash"},
            {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
            {
                "name": "custom",
                "input_schema": {"type": "object"},
                "type": "custom",
                "strict": True,
            },
        ],
    ),
    "history_with_tools": lambda c: c.messages.create(
        model="m", max_tokens=10, messages=HISTORY, tools=CLAUDE_CODE_TOOLS[:3]
    ),
    "tool_results_mixed_order": lambda c: c.messages.create(
        model="m",
        max_tokens=10,
        messages=[
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
                    {"type": "tool_use", "id": "t2", "name": "f", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "before"},
                    {"type": "tool_result", "tool_use_id": "t1", "is_error": False},
                    {"type": "text", "text": "between"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "t2",
                        "content": [
                            {
                                "type": "document",
                                "source": {
                                    "type": "text",
                                    "media_type": "text/plain",
                                    "data": "doc",
                                },
                            },
                            {"type": "text", "text": "after doc"},
                        ],
                    },
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t3", "content": []}],
            },
            {"role": "user", "content": "separate user turn"},
        ],
    ),
    "thinking_enabled": lambda c: c.messages.create(
        model="m", max_tokens=4000, messages=HI, thinking={"type": "enabled", "budget_tokens": 2048}
    ),
    "thinking_disabled": lambda c: c.messages.create(
        model="m", max_tokens=10, messages=HI, thinking={"type": "disabled"}
    ),
    "thinking_adaptive_effort": lambda c: c.messages.create(
        model="m",
        max_tokens=4000,
        messages=HI,
        thinking={"type": "adaptive", "display": "summarized"},
        output_config={"effort": "max"},
    ),
    "stop_sequences": lambda c: c.messages.create(
        model="m", max_tokens=10, messages=HI, stop_sequences=["\n\nHuman:", "END"]
    ),
    "stop_sequences_empty": lambda c: c.messages.create(
        model="m", max_tokens=10, messages=HI, stop_sequences=[]
    ),
    "max_tokens_zero": lambda c: c.messages.create(model="m", max_tokens=0, messages=HI),
    "sampling_via_extra_body": lambda c: c.messages.create(
        model="m",
        max_tokens=10,
        messages=HI,
        extra_body={"temperature": 0.2, "top_p": 0.9, "top_k": 5},
    ),
    "sampling_int_and_null": lambda c: c.messages.create(
        model="m", max_tokens=10, messages=HI, extra_body={"temperature": 1, "top_p": None}
    ),
    "unknown_extra_fields": lambda c: c.messages.create(
        model="m",
        max_tokens=10,
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "x", "future_field": 1}],
                "future_msg": True,
            }
        ],
        metadata={"user_id": "user_abc"},
        service_tier="auto",
        extra_body={"some_new_field": {"a": [1]}, "stream": False},
    ),
    "stream_true": lambda c: c.messages.create(model="m", max_tokens=10, messages=HI, stream=True),
    "stream_helper": lambda c: (
        c.messages.stream(model="m", max_tokens=10, messages=HI).__enter__().get_final_message()
    ),
    "count_tokens": lambda c: c.messages.count_tokens(
        model="m",
        messages=HISTORY,
        system="s",
        tools=CLAUDE_CODE_TOOLS[:2],
        thinking={"type": "adaptive"},
    ),
    "claude_code_beta": lambda c: c.beta.messages.create(
        model="claude-opus-4-6",
        max_tokens=32000,
        stream=True,
        betas=["claude-code-20250219", "context-management-2025-06-27"],
        system=[
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1"},
            {
                "type": "text",
                "text": "You are Claude Code.",
                "cache_control": {"type": "ephemeral"},
            },
        ],
        messages=[
            *HISTORY,
            {"role": "system", "content": [{"type": "text", "text": "reminder"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "continue", "cache_control": {"type": "ephemeral"}}
                ],
            },
        ],
        tools=CLAUDE_CODE_TOOLS,
        thinking={"type": "adaptive"},
        output_config={"effort": "high"},
        context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        metadata={"user_id": "user_123_account_456_session_789"},
    ),
    "server_blocks_in_history": lambda c: c.messages.create(
        model="m",
        max_tokens=10,
        messages=[
            HI[0],
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "server_tool_use",
                        "id": "srvtoolu_1",
                        "name": "web_search",
                        "input": {"query": "q"},
                    },
                    {
                        "type": "web_search_tool_result",
                        "tool_use_id": "srvtoolu_1",
                        "content": [
                            {
                                "type": "web_search_result",
                                "url": "https://a.com",
                                "title": "A",
                                "encrypted_content": "xx",
                            }
                        ],
                    },
                    {
                        "type": "text",
                        "text": "Found",
                        "citations": [
                            {
                                "type": "web_search_result_location",
                                "url": "https://a.com",
                                "title": "A",
                                "encrypted_index": "i",
                                "cited_text": "c",
                            }
                        ],
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {
                            "type": "base64",
                            "media_type": "application/pdf",
                            "data": "JVBERi0=",
                        },
                        "title": "doc",
                    },
                    {
                        "type": "search_result",
                        "source": "s",
                        "title": "t",
                        "content": [{"type": "text", "text": "r"}],
                    },
                    {"type": "container_upload", "file_id": "file_1"},
                ],
            },
        ],
    ),
}


@pytest.mark.parametrize("name", list(ROUND_TRIP_CALLS))
def test_same_protocol_round_trip(name: str) -> None:
    body = capture(ROUND_TRIP_CALLS[name])
    req = A.parse_request(body, count_tokens=name == "count_tokens")
    assert req.source == "anthropic"
    assert A.render_request(req) == body
    # and the canonical request survives a JSON trip (what the proxy keeps between hooks)
    again = ChatRequest.model_validate_json(req.model_dump_json())
    assert A.render_request(again) == body


def test_parse_request_canonical_fields() -> None:
    body = capture(ROUND_TRIP_CALLS["claude_code_beta"])
    req = A.parse_request(body)
    assert req.model == "claude-opus-4-6"
    assert req.max_tokens == 32000 and req.stream is True
    assert [p.text for p in req.system][1] == "You are Claude Code."
    assert req.system[1].extras == {"cache_control": {"type": "ephemeral"}}
    assert len(req.tools) == 24 and req.tools[0].parameters["required"] == ["path"]
    assert req.reasoning == Reasoning(enabled=True, effort="high")
    assert req.extras["metadata"] == {"user_id": "user_123_account_456_session_789"}
    assert "context_management" in req.extras and "output_config" in req.extras
    roles = [m.role for m in req.messages]
    assert roles == [
        "user",
        "assistant",
        "tool",
        "user",
        "system",
        "assistant",
        "user",
        "system",
        "user",
    ]
    assistant = req.messages[1]
    thinking, redacted, text, call1, call2 = assistant.content
    assert isinstance(thinking, ThinkingPart) and thinking.signature == "EqQBCkYIBxgC"
    assert (
        isinstance(redacted, ThinkingPart)
        and redacted.redacted
        and redacted.text == "EmwKAhgBEgy3va3pzix"
    )
    assert isinstance(text, TextPart)
    assert isinstance(call1, ToolCallPart) and json.loads(call1.arguments) == {
        "path": "/tmp",
        "n": 2,
    }
    assert (
        isinstance(call2, ToolCallPart)
        and call2.arguments == '{"path":"/é","nested":{"a":[1,2.5,null,true]}}'
    )
    results = req.messages[2].content
    assert [type(p) for p in results] == [ToolResultPart, ToolResultPart]
    r1, r2 = results
    assert isinstance(r1, ToolResultPart) and isinstance(r2, ToolResultPart)
    assert r1.call_id == "toolu_01" and r1.content == [TextPart(text="a.txt\nb.txt")]
    assert (
        r2.is_error
        and isinstance(r2.content[1], ImagePart)
        and r2.content[1].media_type == "image/png"
    )
    assert req.messages[4].text() == "The user switched to plan mode."


def test_parse_request_other_fields() -> None:
    req = A.parse_request(capture(ROUND_TRIP_CALLS["tool_choice_any_no_parallel"]))
    assert req.tool_choice == ToolChoice(mode="required", parallel=False)
    req = A.parse_request(capture(ROUND_TRIP_CALLS["tool_choice_tool"]))
    assert req.tool_choice == ToolChoice(mode="tool", name="Tool1", parallel=True)
    req = A.parse_request(capture(ROUND_TRIP_CALLS["thinking_enabled"]))
    assert req.reasoning == Reasoning(enabled=True, budget_tokens=2048)
    req = A.parse_request(capture(ROUND_TRIP_CALLS["thinking_disabled"]))
    assert req.reasoning == Reasoning(enabled=False)
    req = A.parse_request(capture(ROUND_TRIP_CALLS["thinking_adaptive_effort"]))
    assert req.reasoning == Reasoning(enabled=True, effort="xhigh", include_thoughts=True)
    req = A.parse_request(capture(ROUND_TRIP_CALLS["sampling_via_extra_body"]))
    assert (req.temperature, req.top_p, req.top_k) == (0.2, 0.9, 5)
    req = A.parse_request(capture(ROUND_TRIP_CALLS["stop_sequences"]))
    assert req.stop == ["\n\nHuman:", "END"]
    req = A.parse_request(capture(ROUND_TRIP_CALLS["server_tools"]))
    assert [t.name for t in req.tools] == [
        "web_search",
        "bash",
        "str_replace_based_edit_tool",
        "custom",
    ]
    assert req.tools[0].extras["type"] == "web_search_20250305"
    req = A.parse_request(capture(ROUND_TRIP_CALLS["images"]))
    url, b64, file_img, _ = req.messages[0].content
    assert isinstance(url, ImagePart) and url.url == "https://example.com/cat.png"
    assert isinstance(b64, ImagePart) and b64.data == PNG_B64 and b64.media_type == "image/png"
    assert isinstance(file_img, OpaquePart)
    req = A.parse_request({"messages": HI, "max_tokens": 5}, model="from-path")
    assert req.model == "from-path"


def test_same_protocol_edits_are_rendered() -> None:
    """What commands/redaction/routing change in canonical form shows in the rendered body."""
    body = capture(ROUND_TRIP_CALLS["claude_code_beta"])
    req = A.parse_request(body)
    req.model = "test-model"
    req.messages[-1].content[0] = TextPart(
        text="edited", extras={"cache_control": {"type": "ephemeral"}}
    )
    call = req.messages[1].content[3]
    assert isinstance(call, ToolCallPart)
    call.arguments = '{"path":"(API_KEY_HAS_BEEN_REDACTED)"}'
    req.reasoning = Reasoning(enabled=True, budget_tokens=4096)
    out = A.render_request(req)
    assert out["model"] == "test-model"
    assert out["messages"][-1]["content"] == [
        {"type": "text", "text": "edited", "cache_control": {"type": "ephemeral"}}
    ]
    assert out["messages"][1]["content"][3]["input"] == {"path": "(API_KEY_HAS_BEEN_REDACTED)"}
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert "effort" not in out["output_config"]
    # an effort command on an adaptive request goes to output_config
    req.reasoning = Reasoning(enabled=True, effort="low")
    out = A.render_request(req)
    assert out["thinking"] == {"type": "adaptive"} and out["output_config"] == {"effort": "low"}
    # a changed string message is still a string
    req.messages[0] = Message(
        role="user", content=[TextPart(text="new")], extras={"_anthropic": {"content": "str"}}
    )
    assert A.render_request(req)["messages"][0] == {"role": "user", "content": "new"}


# ----------------------------------------------------------------------------------------------
# conversion from other protocols
# ----------------------------------------------------------------------------------------------


def openai_like_request(**kw: Any) -> ChatRequest:
    base: dict[str, Any] = {
        "source": "openai",
        "model": "test-model",
        "system": [TextPart(text="Be brief.", extras={"openai_only": 1})],
        "messages": [
            Message(role="system", content=[TextPart(text="Second system.")]),
            Message(
                role="user",
                content=[
                    TextPart(text="Look"),
                    ImagePart(url=f"data:image/png;base64,{PNG_B64}"),
                    ImagePart(url="https://example.com/a.jpg"),
                    ImagePart(data=PNG_B64),
                ],
            ),
            Message(
                role="assistant",
                content=[
                    ThinkingPart(text="reasoning from another provider", signature="gemini-sig"),
                    TextPart(text=""),
                    ToolCallPart(id="call_1", name="get_weather", arguments='{"city":"Paris"}'),
                    ToolCallPart(id="call.2", name="get_time", arguments="not json"),
                ],
            ),
            Message(
                role="tool",
                content=[ToolResultPart(call_id="call_1", content=[TextPart(text="sunny")])],
            ),
            Message(
                role="tool",
                content=[
                    ToolResultPart(call_id="call.2", content=[TextPart(text="")], is_error=True)
                ],
            ),
            Message(
                role="system",
                content=[TextPart(text="mid-conversation note"), ImagePart(url="https://x/y.png")],
            ),
            Message(role="user", content=[TextPart(text="and now?")]),
            Message(role="assistant", content=[TextPart(text="Prefill  ")]),
        ],
        "tools": [
            Tool(
                name="get_weather",
                description="Weather",
                parameters={"type": "object", "properties": {"city": {"type": "string"}}},
            ),
            Tool(name="get_time", parameters={}, extras={"strict": True}),
        ],
        "extras": {"logprobs": True, "user": "u1"},
    }
    base.update(kw)
    return ChatRequest(**base)


def test_convert_from_openai_is_accepted() -> None:
    req = openai_like_request(temperature=1.7, top_p=0.5, stop=["STOP"], stream=True)
    out = A.render_request(req)
    check_request_shape(out)
    assert out["max_tokens"] == A.DEFAULT_MAX_TOKENS
    assert out["system"] == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Second system."},
    ]
    assert out["temperature"] == 1.0 and "top_p" not in out
    assert out["stop_sequences"] == ["STOP"] and out["stream"] is True
    assert "logprobs" not in out and "user" not in out
    msgs = out["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "system", "user", "assistant"]
    assert msgs[0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
    }
    assert msgs[0]["content"][2] == {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/a.jpg"},
    }
    assert msgs[0]["content"][3]["source"]["media_type"] == "image/png"
    # thinking from another provider dropped, empty text dropped, tool ids made valid
    assert msgs[1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
    ]
    # two tool messages -> one user turn of tool results
    assert msgs[2]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "call_1",
            "content": [{"type": "text", "text": "sunny"}],
        },
        {"type": "tool_result", "tool_use_id": "call_2", "is_error": True},
    ]
    assert msgs[3] == {
        "role": "system",
        "content": [{"type": "text", "text": "mid-conversation note"}],
    }
    assert msgs[5]["content"] == [{"type": "text", "text": "Prefill"}]
    assert out["tools"][1] == {"name": "get_time", "input_schema": {"type": "object"}}


def test_convert_tool_messages_merge_with_following_user() -> None:
    req = openai_like_request(
        messages=[
            Message(role="user", content=[TextPart(text="q")]),
            Message(
                role="assistant",
                content=[
                    ToolCallPart(id="a", name="get_weather"),
                    ToolCallPart(id="b", name="get_weather"),
                ],
            ),
            Message(
                role="tool", content=[ToolResultPart(call_id="a", content=[TextPart(text="1")])]
            ),
            Message(
                role="tool",
                content=[ToolResultPart(call_id="b", content=[ImagePart(url="https://i/x.png")])],
            ),
            Message(role="user", content=[TextPart(text="now answer")]),
        ]
    )
    out = A.render_request(req)
    check_request_shape(out)
    assert len(out["messages"]) == 3
    assert [b["type"] for b in out["messages"][2]["content"]] == [
        "tool_result",
        "tool_result",
        "text",
    ]
    back = A.parse_request(out)
    assert [m.role for m in back.messages] == ["user", "assistant", "tool", "user"]


def test_convert_reasoning() -> None:
    def render(reasoning: Reasoning | None, **kw: Any) -> dict[str, Any]:
        out = A.render_request(openai_like_request(reasoning=reasoning, **kw))
        check_request_shape(out)
        return out

    out = render(Reasoning(effort="low"), max_tokens=1000, temperature=0.3, top_k=4, top_p=0.5)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert out["max_tokens"] == 2048 + 1024
    assert out["temperature"] == 1 and "top_k" not in out and "top_p" not in out
    assert render(Reasoning(effort="medium"), max_tokens=64000)["thinking"]["budget_tokens"] == 8192
    assert render(Reasoning(effort="high"))["thinking"]["budget_tokens"] == 16384
    assert render(Reasoning(effort="minimal"))["thinking"]["budget_tokens"] == 1024
    assert (
        render(Reasoning(budget_tokens=100), max_tokens=5000)["thinking"]["budget_tokens"] == 1024
    )
    assert (
        render(Reasoning(budget_tokens=3000, effort="high"), max_tokens=5000)["thinking"][
            "budget_tokens"
        ]
        == 3000
    )
    assert render(Reasoning(enabled=True))["thinking"]["budget_tokens"] == 8192
    assert "thinking" not in render(Reasoning(effort="none"))
    assert "thinking" not in render(Reasoning(enabled=False, budget_tokens=5000))
    assert "thinking" not in render(Reasoning(budget_tokens=0))
    assert "thinking" not in render(None)
    kept = render(Reasoning(effort="high"), top_p=0.97)
    assert kept["top_p"] == 0.97
    forced = render(Reasoning(effort="high"), tool_choice=ToolChoice(mode="required"))
    assert "thinking" not in forced and forced["tool_choice"] == {"type": "any"}
    # an open tool loop from another provider has no thinking block: thinking stays off
    loop = [
        Message(role="user", content=[TextPart(text="q")]),
        Message(role="assistant", content=[ToolCallPart(id="a", name="get_time")]),
        Message(role="tool", content=[ToolResultPart(call_id="a", content=[TextPart(text="1")])]),
    ]
    assert "thinking" not in render(Reasoning(effort="high"), messages=loop)
    closed = [*loop, Message(role="assistant", content=[TextPart(text="ok")]), loop[0]]
    assert "thinking" in render(Reasoning(effort="high"), messages=closed)


def test_convert_tool_choice() -> None:
    def tc(choice: ToolChoice, **kw: Any) -> Any:
        out = A.render_request(openai_like_request(tool_choice=choice, **kw))
        check_request_shape(out)
        return out.get("tool_choice")

    assert tc(ToolChoice(mode="auto")) == {"type": "auto"}
    assert tc(ToolChoice(mode="auto", parallel=False)) == {
        "type": "auto",
        "disable_parallel_tool_use": True,
    }
    assert tc(ToolChoice(mode="auto", parallel=True)) == {"type": "auto"}
    assert tc(ToolChoice(mode="required")) == {"type": "any"}
    assert tc(ToolChoice(mode="tool", name="get_time")) == {"type": "tool", "name": "get_time"}
    assert tc(ToolChoice(mode="none", parallel=False)) == {"type": "none"}
    assert tc(ToolChoice(mode="auto"), tools=[]) is None


def test_builtin_tools_only_same_protocol() -> None:
    req = A.parse_request(capture(ROUND_TRIP_CALLS["server_tools"]))
    converted = req.model_copy(update={"source": "gemini"})
    out = A.render_request(converted)
    assert out["tools"] == [{"name": "custom", "input_schema": {"type": "object"}}]


def test_thinking_without_signature_dropped_same_protocol() -> None:
    req = A.parse_request(capture(ROUND_TRIP_CALLS["history_with_tools"]))
    thinking = req.messages[1].content[0]
    assert isinstance(thinking, ThinkingPart)
    thinking.signature = None
    out = A.render_request(req)
    assert [b["type"] for b in out["messages"][1]["content"]][:2] == ["redacted_thinking", "text"]


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------

BAD_REQUESTS: list[tuple[Any, str]] = [
    ([], "JSON object"),
    ({"max_tokens": 5, "messages": HI}, "model"),
    ({"model": 5, "max_tokens": 5, "messages": HI}, "model"),
    ({"model": "m", "max_tokens": 5}, "messages"),
    ({"model": "m", "max_tokens": 5, "messages": {"role": "user"}}, "messages"),
    ({"model": "m", "messages": HI}, "max_tokens"),
    ({"model": "m", "max_tokens": "5", "messages": HI}, "max_tokens"),
    ({"model": "m", "max_tokens": True, "messages": HI}, "max_tokens"),
    ({"model": "m", "max_tokens": None, "messages": HI}, "max_tokens"),
    ({"model": "m", "max_tokens": 5, "messages": ["hi"]}, "messages[0]"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}, "role"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user"}]}, "content"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": 5}]}, "content"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [5]}]}, "content[0]"),
    (
        {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"text": "x"}]}]},
        "type",
    ),
    (
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": [{"type": "text"}]}],
        },
        "text",
    ),
    (
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": [{"type": "image"}]}],
        },
        "source",
    ),
    (
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t", "name": "n", "input": "x"}],
                }
            ],
        },
        "input",
    ),
    (
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [
                {"role": "assistant", "content": [{"type": "tool_use", "name": "n", "input": {}}]}
            ],
        },
        "id",
    ),
    (
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [
                {"role": "assistant", "content": [{"type": "thinking", "signature": "s"}]}
            ],
        },
        "thinking",
    ),
    (
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "assistant", "content": [{"type": "redacted_thinking"}]}],
        },
        "data",
    ),
    (
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": [{"type": "tool_result"}]}],
        },
        "tool_use_id",
    ),
    (
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t", "content": 5}],
                }
            ],
        },
        "content",
    ),
    ({"model": "m", "max_tokens": 5, "messages": HI, "temperature": "hot"}, "temperature"),
    ({"model": "m", "max_tokens": 5, "messages": HI, "temperature": True}, "temperature"),
    ({"model": "m", "max_tokens": 5, "messages": HI, "top_p": "x"}, "top_p"),
    ({"model": "m", "max_tokens": 5, "messages": HI, "top_k": 1.5}, "top_k"),
    ({"model": "m", "max_tokens": 5, "messages": HI, "stop_sequences": "END"}, "stop_sequences"),
    ({"model": "m", "max_tokens": 5, "messages": HI, "stop_sequences": [1]}, "stop_sequences"),
    ({"model": "m", "max_tokens": 5, "messages": HI, "stream": "yes"}, "stream"),
    ({"model": "m", "max_tokens": 5, "messages": HI, "system": 5}, "system"),
    ({"model": "m", "max_tokens": 5, "messages": HI, "system": [{"type": "image"}]}, "system[0]"),
    (
        {"model": "m", "max_tokens": 5, "messages": HI, "system": [{"type": "text", "text": 1}]},
        "system[0].text",
    ),
    ({"model": "m", "max_tokens": 5, "messages": HI, "tools": {}}, "tools"),
    ({"model": "m", "max_tokens": 5, "messages": HI, "tools": [5]}, "tools[0]"),
    ({"model": "m", "max_tokens": 5, "messages": HI, "tools": [{"name": "f"}]}, "input_schema"),
    (
        {
            "model": "m",
            "max_tokens": 5,
            "messages": HI,
            "tools": [{"name": "f", "input_schema": []}],
        },
        "input_schema",
    ),
    ({"model": "m", "max_tokens": 5, "messages": HI, "tools": [{"input_schema": {}}]}, "name"),
    ({"model": "m", "max_tokens": 5, "messages": HI, "tool_choice": "auto"}, "tool_choice"),
    (
        {"model": "m", "max_tokens": 5, "messages": HI, "tool_choice": {"type": "required"}},
        "tool_choice.type",
    ),
    (
        {"model": "m", "max_tokens": 5, "messages": HI, "tool_choice": {"type": "tool"}},
        "tool_choice.name",
    ),
    (
        {
            "model": "m",
            "max_tokens": 5,
            "messages": HI,
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": "no"},
        },
        "disable_parallel",
    ),
    ({"model": "m", "max_tokens": 5, "messages": HI, "thinking": "on"}, "thinking"),
    (
        {"model": "m", "max_tokens": 5, "messages": HI, "thinking": {"type": "enabled"}},
        "budget_tokens",
    ),
    ({"model": "m", "max_tokens": 5, "messages": HI, "thinking": {}}, "thinking.type"),
]


@pytest.mark.parametrize(("body", "needle"), BAD_REQUESTS)
def test_bad_requests(body: Any, needle: str) -> None:
    with pytest.raises(ProtocolError) as info:
        A.parse_request(body)
    assert needle in str(info.value)


def test_count_tokens_needs_no_max_tokens() -> None:
    req = A.parse_request({"model": "m", "messages": HI}, count_tokens=True)
    assert req.max_tokens is None
    assert A.render_request(req) == {"model": "m", "messages": HI}
    assert A.count_tokens_response(42) == {"input_tokens": 42}


def test_bad_responses() -> None:
    with pytest.raises(ProtocolError):
        A.parse_response([])  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="overloaded"):
        A.parse_response(
            {"type": "error", "error": {"type": "overloaded_error", "message": "overloaded"}}
        )
    with pytest.raises(ProtocolError):
        A.parse_response({**SIMPLE_MESSAGE, "content": {"type": "text"}})
    with pytest.raises(ProtocolError):
        A.parse_response({**SIMPLE_MESSAGE, "content": [{"type": "text", "text": 5}]})


@pytest.mark.parametrize(
    ("status", "etype"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (529, "overloaded_error"),
        (504, "timeout_error"),
    ],
)
def test_render_error(status: int, etype: str) -> None:
    body = A.render_error(status, "boom")
    assert body == {"type": "error", "error": {"type": etype, "message": "boom"}}

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, json=body)

    with pytest.raises(sdk.APIStatusError) as info:
        client_for(handler).messages.create(model="m", max_tokens=5, messages=HI)
    assert info.value.status_code == status
    assert info.value.body == body


# ----------------------------------------------------------------------------------------------
# responses
# ----------------------------------------------------------------------------------------------

FULL_RESPONSE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-opus-4-6",
    "content": [
        {"type": "thinking", "thinking": "Let me think.", "signature": "EqQBCkYIBxgC"},
        {"type": "redacted_thinking", "data": "EmwKAhgB"},
        {
            "type": "server_tool_use",
            "id": "srvtoolu_1",
            "name": "web_search",
            "input": {"query": "q"},
        },
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
        {"type": "text", "text": "Plain."},
        {
            "type": "text",
            "text": "Cited.",
            "citations": [
                {
                    "type": "char_location",
                    "cited_text": "c",
                    "document_index": 0,
                    "document_title": None,
                    "start_char_index": 0,
                    "end_char_index": 1,
                }
            ],
        },
        {"type": "text", "text": "Null citations.", "citations": None},
        {
            "type": "tool_use",
            "id": "toolu_01",
            "name": "get_weather",
            "input": {"city": "Paris", "units": ["c"]},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "stop_details": None,
    "container": None,
    "usage": {
        "input_tokens": 10,
        "cache_creation_input_tokens": 20,
        "cache_read_input_tokens": 300,
        "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 50,
        "output_tokens_details": {"thinking_tokens": 30},
        "server_tool_use": {"web_search_requests": 1, "web_fetch_requests": 0},
        "service_tier": "standard",
        "inference_geo": None,
    },
}


@pytest.mark.parametrize(
    "body",
    [
        FULL_RESPONSE,
        SIMPLE_MESSAGE,
        {**SIMPLE_MESSAGE, "stop_reason": "pause_turn"},
        {**SIMPLE_MESSAGE, "stop_reason": "model_context_window_exceeded"},
        {
            **SIMPLE_MESSAGE,
            "stop_reason": "refusal",
            "stop_details": {"type": "refusal", "category": "cyber", "explanation": None},
        },
        {**SIMPLE_MESSAGE, "stop_reason": "stop_sequence", "stop_sequence": "END"},
        {
            **SIMPLE_MESSAGE,
            "stop_reason": None,
            "usage": {"input_tokens": 1, "output_tokens": 0, "cache_read_input_tokens": None},
        },
        {**SIMPLE_MESSAGE, "stop_reason": "max_tokens", "content": []},
    ],
)
def test_response_round_trip(body: dict[str, Any]) -> None:
    resp = A.parse_response(body)
    assert A.render_response(resp) == body
    # what the SDK makes of it
    msg = answer_with(A.render_response(resp)).messages.create(model="m", max_tokens=5, messages=HI)
    assert msg.model_dump(exclude_none=True) == sdk.types.Message.model_validate(body).model_dump(
        exclude_none=True
    )


def test_parse_response_canonical() -> None:
    resp = A.parse_response(FULL_RESPONSE)
    assert resp.id == "msg_01XFDUDYJgAACzvnptvVoYEL" and resp.model == "claude-opus-4-6"
    assert resp.stop_reason == "tool_use"
    assert resp.usage == Usage(
        input_tokens=330,
        output_tokens=50,
        cached_tokens=300,
        cache_creation_tokens=20,
        reasoning_tokens=30,
    )
    kinds = [p.type for p in resp.parts]
    assert kinds == [
        "thinking",
        "thinking",
        "opaque",
        "opaque",
        "text",
        "text",
        "text",
        "tool_call",
    ]
    call = resp.parts[-1]
    assert isinstance(call, ToolCallPart) and json.loads(call.arguments) == {
        "city": "Paris",
        "units": ["c"],
    }
    stops = {
        "end_turn": "end",
        "max_tokens": "max_tokens",
        "stop_sequence": "stop",
        "tool_use": "tool_use",
        "refusal": "filtered",
        "pause_turn": "end",
        "model_context_window_exceeded": "max_tokens",
    }
    for wire, canonical in stops.items():
        assert A.parse_response({**SIMPLE_MESSAGE, "stop_reason": wire}).stop_reason == canonical


def test_render_response_from_other_protocol_into_sdk() -> None:
    resp = ChatResponse(
        source="openai",
        id="chatcmpl-1",
        model="gpt-4o",
        parts=[
            ThinkingPart(text="thoughts"),
            TextPart(text="Hello", extras={"annotations": []}),
            ToolCallPart(id="call_1", name="f", arguments='{"a": [1, "é"]}'),
            ToolCallPart(id="call_2", name="g", arguments="{broken"),
            ImagePart(url="https://x/y.png"),
            OpaquePart(protocol="gemini", data={"executableCode": {}}),
        ],
        stop_reason="tool_use",
        usage=Usage(input_tokens=100, output_tokens=20, cached_tokens=40, reasoning_tokens=5),
        extras={"system_fingerprint": "fp"},
    )
    body = A.render_response(resp)
    assert body["content"][1] == {"type": "text", "text": "Hello"}
    assert "system_fingerprint" not in body
    msg = answer_with(body).messages.create(model="m", max_tokens=5, messages=HI)
    assert msg.id == "chatcmpl-1" and msg.stop_reason == "tool_use"
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert msg.content[0].thinking == "thoughts"  # type: ignore[union-attr]
    assert msg.content[2].input == {"a": [1, "é"]}  # type: ignore[union-attr]
    assert msg.content[3].input == {}  # type: ignore[union-attr]
    assert msg.usage.input_tokens == 60 and msg.usage.cache_read_input_tokens == 40
    assert msg.usage.output_tokens == 20
    for stop, wire in [
        ("end", "end_turn"),
        ("loop_halted", "end_turn"),
        ("error", "end_turn"),
        ("filtered", "refusal"),
        ("max_tokens", "max_tokens"),
    ]:
        assert (
            A.render_response(resp.model_copy(update={"stop_reason": stop}))["stop_reason"] == wire
        )
    stopped = A.render_response(
        resp.model_copy(update={"stop_reason": "stop", "stop_sequence": "END"})
    )
    assert (stopped["stop_reason"], stopped["stop_sequence"]) == ("stop_sequence", "END")


# ----------------------------------------------------------------------------------------------
# stream encoder -> the SDK
# ----------------------------------------------------------------------------------------------


def encode(events: list[Event], *, close: bool = True, **kw: Any) -> bytes:
    enc = A.StreamEncoder(**kw)
    data = b"".join(enc.feed(e) for e in events)
    if close:
        data += enc.close()
        assert enc.close() == b""
    return data


def sdk_events(data: bytes) -> list[Any]:
    return list(
        answer_with(data).messages.create(model="m", max_tokens=5, messages=HI, stream=True)
    )


def sdk_final(data: bytes) -> Any:
    with answer_with(data).messages.stream(model="m", max_tokens=5, messages=HI) as stream:
        for _ in stream:
            pass
        return stream.get_final_message()


RICH_EVENTS: list[Event] = [
    Start(
        id="msg_abc",
        model="upstream-model",
        usage=Usage(input_tokens=120, cached_tokens=100, cache_creation_tokens=5),
    ),
    ThinkingDelta(0, "Let me "),
    ThinkingDelta(0, "think."),
    ThinkingDelta(0, "", signature="sig=="),
    BlockStop(0),
    TextDelta(1, "héllo 🌍"),
    TextDelta(1, " world"),
    BlockStop(1),
    ToolCallStart(2, "toolu_1", "get_weather"),
    ToolArgsDelta(2, '{"city": '),
    ToolArgsDelta(2, '"Paris"}'),
    BlockStop(2),
    ToolCallStart(3, "toolu_2", "get_time"),
    BlockStop(3),
    Finish(stop_reason="tool_use", usage=Usage(output_tokens=42, reasoning_tokens=7)),
]


def test_encoder_into_sdk_stream_helper() -> None:
    data = encode(RICH_EVENTS, model="client-model")
    msg = sdk_final(data)
    assert msg.id == "msg_abc" and msg.model == "client-model"
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert msg.content[0].thinking == "Let me think." and msg.content[0].signature == "sig=="
    assert msg.content[1].text == "héllo 🌍 world"
    assert msg.content[2].input == {"city": "Paris"} and msg.content[2].id == "toolu_1"
    assert msg.content[3].input == {} and msg.content[3].name == "get_time"
    assert msg.stop_reason == "tool_use" and msg.stop_sequence is None
    assert msg.usage.input_tokens == 15
    assert msg.usage.cache_read_input_tokens == 100 and msg.usage.cache_creation_input_tokens == 5
    assert msg.usage.output_tokens == 42
    assert msg.usage.output_tokens_details.thinking_tokens == 7
    raw = sdk_events(data)
    assert [e.type for e in raw][:2] == ["message_start", "content_block_start"]
    assert [e.index for e in raw if e.type == "content_block_start"] == [0, 1, 2, 3]


def test_encoder_event_bytes_exact() -> None:
    data = encode([Start(id="msg_1", model="m"), TextDelta(0, 'a\n"b"'), Finish()])
    assert data.decode() == (
        'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
        '"role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,'
        '"usage":{"input_tokens":0,"output_tokens":0}}}\n\n'
        'event: ping\ndata: {"type":"ping"}\n\n'
        'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        '"content_block":{"type":"text","text":""}}\n\n'
        'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        '"delta":{"type":"text_delta","text":"a\\n\\"b\\""}}\n\n'
        'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
        '"stop_sequence":null},"usage":{"output_tokens":0}}\n\n'
        'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )


def test_encoder_streams_without_holding_back() -> None:
    enc = A.StreamEncoder()
    assert b"message_start" in enc.feed(Start(id="m", model="x"))
    assert b"text_delta" in enc.feed(TextDelta(0, "a"))
    assert b"text_delta" in enc.feed(TextDelta(0, "b"))
    out = enc.feed(ToolCallStart(1, "t1", "f"))  # no BlockStop(0) first: closes block 0
    assert b"content_block_stop" in out and b"tool_use" in out
    assert b"input_json_delta" in enc.feed(ToolArgsDelta(1, '{"a":1}'))
    out = enc.feed(ToolCallStart(2, "t2", "g"))  # complete args: sequential, not held back
    assert b'"index":2' in out and b"tool_use" in out
    assert b"input_json_delta" in enc.feed(ToolArgsDelta(2, "{}"))


def test_encoder_interleaved_tool_calls() -> None:
    events: list[Event] = [
        Start(id="msg_i", model="gpt"),
        TextDelta(0, "Calling."),
        ToolCallStart(1, "call_a", "f"),
        ToolCallStart(2, "call_b", "g"),
        ToolArgsDelta(1, '{"x":'),
        ToolArgsDelta(2, '{"y":'),
        ToolCallStart(3, "call_c", "h"),
        ToolArgsDelta(3, "{}"),
        ToolArgsDelta(2, " 2}"),
        ToolArgsDelta(1, " 1}"),
        TextDelta(0, " late text"),
        BlockStop(0),
        BlockStop(1),
        BlockStop(2),
        BlockStop(3),
        Finish(stop_reason="tool_use", usage=Usage(input_tokens=5, output_tokens=9)),
    ]
    msg = sdk_final(encode(events))
    tools = {b.id: (b.name, b.input) for b in msg.content if b.type == "tool_use"}
    assert tools == {"call_a": ("f", {"x": 1}), "call_b": ("g", {"y": 2}), "call_c": ("h", {})}
    assert "".join(b.text for b in msg.content if b.type == "text") == "Calling. late text"
    assert msg.stop_reason == "tool_use" and msg.usage.output_tokens == 9


def test_encoder_interleaved_until_finish_only() -> None:
    # an upstream that never sends BlockStop and leaves the first call's JSON unfinished
    events: list[Event] = [
        ToolCallStart(0, "a", "f"),
        ToolCallStart(1, "b", "g"),
        ToolArgsDelta(1, '{"k":"v"}'),
        ToolArgsDelta(0, '{"k":'),
        Finish(stop_reason="tool_use"),
    ]
    msg = sdk_final(encode(events))
    assert [(b.id, b.type) for b in msg.content] == [("a", "tool_use"), ("b", "tool_use")]
    assert msg.content[1].input == {"k": "v"}


def test_encoder_without_start_or_finish() -> None:
    msg = sdk_final(encode([TextDelta(0, "hi"), ThinkingDelta(1, "x", signature="s")]))
    assert msg.id.startswith("msg_") and msg.stop_reason == "end_turn"
    assert [b.type for b in msg.content] == ["text", "thinking"]
    assert msg.content[1].signature == "s"


def test_encoder_empty_stream() -> None:
    msg = sdk_final(encode([]))
    assert msg.content == [] and msg.stop_reason == "end_turn" and msg.id.startswith("msg_")
    msg = sdk_final(encode([Start(id="msg_e", model="m"), Finish(stop_reason="max_tokens")]))
    assert msg.content == [] and msg.stop_reason == "max_tokens"


def test_encoder_stop_sequence_and_redacted() -> None:
    events: list[Event] = [
        Start(id="msg_s", model="m"),
        ThinkingDelta(0, "REDACTED==", redacted=True),
        BlockStop(0),
        TextDelta(1, "stopped at"),
        Finish(stop_reason="stop", stop_sequence="END", usage=Usage(output_tokens=3)),
    ]
    msg = sdk_final(encode(events))
    assert msg.content[0].type == "redacted_thinking" and msg.content[0].data == "REDACTED=="
    assert msg.stop_reason == "stop_sequence" and msg.stop_sequence == "END"
    assert A.StreamEncoder().feed(Finish(stop_reason="filtered")).count(b'"refusal"') == 1


def test_encoder_error() -> None:
    data = encode(
        [
            Start(id="msg_x", model="m"),
            TextDelta(0, "partial"),
            Error("upstream died", 529, "overloaded"),
        ]
    )
    assert data.endswith(
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"upstream died"}}\n\n'
    )
    with pytest.raises(sdk.APIStatusError) as info:
        sdk_events(data)
    assert "upstream died" in str(info.value)
    enc = A.StreamEncoder()
    assert b"timeout_error" in enc.feed(Error("slow", 504, "timeout"))
    assert enc.feed(TextDelta(0, "ignored")) == b"" and enc.close() == b""


# ----------------------------------------------------------------------------------------------
# stream decoder
# ----------------------------------------------------------------------------------------------

REAL_STREAM = sse(
    (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_01",
                "type": "message",
                "role": "assistant",
                "model": "test-model",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 25,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 100,
                    "output_tokens": 1,
                },
            },
        },
    ),
    ("ping", {"type": "ping"}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "Hmm, "},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "ok."},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "EqQB=="},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "server_tool_use",
                "id": "srvtoolu_1",
                "name": "web_search",
                "input": {},
            },
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"query":"x"}'},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    (
        "content_block_start",
        {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "text_delta", "text": "héllo 🌍"},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {
                "type": "citations_delta",
                "citation": {
                    "type": "char_location",
                    "cited_text": "c",
                    "document_index": 0,
                    "document_title": None,
                    "start_char_index": 0,
                    "end_char_index": 1,
                },
            },
        },
    ),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "!\n"}},
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 2}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 3,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_a",
                "name": "get_weather",
                "input": {},
            },
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 3,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 3,
            "delta": {"type": "input_json_delta", "partial_json": '{"city": "Pa'},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 3,
            "delta": {"type": "input_json_delta", "partial_json": 'ris"}'},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 3}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 4,
            "content_block": {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 4,
            "delta": {"type": "input_json_delta", "partial_json": '{"tz": "UTC"}'},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 4}),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 89, "input_tokens": 25, "cache_read_input_tokens": 100},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
)

REAL_EVENTS: list[Event] = [
    Start(
        id="msg_01",
        model="test-model",
        usage=Usage(input_tokens=125, output_tokens=1, cached_tokens=100, cache_creation_tokens=0),
    ),
    ThinkingDelta(0, "Hmm, "),
    ThinkingDelta(0, "ok."),
    ThinkingDelta(0, "", signature="EqQB=="),
    BlockStop(0),
    TextDelta(1, "héllo 🌍"),
    TextDelta(1, "!\n"),
    BlockStop(1),
    ToolCallStart(2, "toolu_a", "get_weather"),
    ToolArgsDelta(2, '{"city": "Pa'),
    ToolArgsDelta(2, 'ris"}'),
    BlockStop(2),
    ToolCallStart(3, "toolu_b", "get_time"),
    ToolArgsDelta(3, '{"tz": "UTC"}'),
    BlockStop(3),
    Finish(
        stop_reason="tool_use",
        usage=Usage(input_tokens=125, output_tokens=89, cached_tokens=100, cache_creation_tokens=0),
    ),
]


def decode_chunks(chunks: list[bytes]) -> list[Event]:
    dec = A.StreamDecoder()
    out: list[Event] = []
    for chunk in chunks:
        out.extend(dec.feed(chunk))
    out.extend(dec.close())
    assert dec.close() == []
    return out


def test_decoder_real_stream() -> None:
    assert decode_chunks([REAL_STREAM]) == REAL_EVENTS


def test_decoder_every_split_point() -> None:
    for cut in range(1, len(REAL_STREAM)):
        assert decode_chunks([REAL_STREAM[:cut], REAL_STREAM[cut:]]) == REAL_EVENTS, cut


def test_decoder_byte_by_byte_and_crlf() -> None:
    data = REAL_STREAM
    assert decode_chunks([data[i : i + 1] for i in range(len(data))]) == REAL_EVENTS
    crlf = data.replace(b"\n", b"\r\n")
    assert decode_chunks([crlf]) == REAL_EVENTS
    assert decode_chunks([crlf[i : i + 1] for i in range(len(crlf))]) == REAL_EVENTS
    assert decode_chunks([crlf[i : i + 7] for i in range(0, len(crlf), 7)]) == REAL_EVENTS


def test_decoder_multibyte_split() -> None:
    text = "héllo 🌍".encode()
    data = REAL_STREAM
    pos = data.index(text)
    for k in range(len(text) + 1):
        assert decode_chunks([data[: pos + k], data[pos + k :]]) == REAL_EVENTS


def test_decoder_truncated_and_error_streams() -> None:
    cut = REAL_STREAM.index(
        b'event: content_block_stop\ndata: {"type": "content_block_stop", "index": 3}'
    )
    events = decode_chunks([REAL_STREAM[:cut]])
    assert isinstance(events[0], Start)
    assert events[-2:] == [
        BlockStop(2),
        Finish(
            stop_reason="end",
            usage=Usage(
                input_tokens=125, output_tokens=1, cached_tokens=100, cache_creation_tokens=0
            ),
        ),
    ]
    assert [e for e in events if isinstance(e, BlockStop)] == [
        BlockStop(0),
        BlockStop(1),
        BlockStop(2),
    ]

    err = sse(
        ("message_start", {"type": "message_start", "message": {**SIMPLE_MESSAGE, "content": []}}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": "pre"},
            },
        ),
        (
            "error",
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        ),
    )
    events = decode_chunks([err])
    assert events[1:] == [
        TextDelta(0, "pre"),
        Error("Overloaded", 529, "overloaded"),
        BlockStop(0),
        Finish(stop_reason="error", usage=events[-1].usage),
    ]  # type: ignore[union-attr]

    events = decode_chunks([b""])
    assert [type(e) for e in events] == [Start, Finish]
    only_err = decode_chunks(
        [
            sse(
                (
                    "error",
                    {
                        "type": "error",
                        "error": {"type": "rate_limit_error", "message": "slow down"},
                    },
                )
            )
        ]
    )
    assert [type(e) for e in only_err] == [Start, Error, Finish]
    assert only_err[1] == Error("slow down", 429, "rate_limit")


def test_decoder_redacted_and_stop_sequence() -> None:
    data = sse(
        ("message_start", {"type": "message_start", "message": {**SIMPLE_MESSAGE, "content": []}}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "redacted_thinking", "data": "XYZ"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"},
                "usage": {"output_tokens": 4},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    )
    events = decode_chunks([data])
    assert events[1:3] == [ThinkingDelta(0, "XYZ", redacted=True), BlockStop(0)]
    assert events[-1] == Finish(
        stop_reason="stop", stop_sequence="END", usage=Usage(input_tokens=3, output_tokens=4)
    )


def test_encoder_decoder_round_trip() -> None:
    events = decode_chunks([encode(REAL_EVENTS)])
    assert events == REAL_EVENTS


# ----------------------------------------------------------------------------------------------
# hypothesis: canonical -> anthropic -> canonical
# ----------------------------------------------------------------------------------------------

words = st.text(alphabet="abcxyz é🌍\n", min_size=1, max_size=12).map(lambda s: s.strip() or "w")
ids = st.text(alphabet="abcdef0123456789_-", min_size=1, max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
arguments = st.dictionaries(st.text(max_size=5), json_values, max_size=3).map(
    lambda d: json.dumps(d, ensure_ascii=False, separators=(",", ":"))
)
images = st.one_of(
    st.builds(ImagePart, url=st.sampled_from(["https://example.com/a.png", "http://x/y.jpg"])),
    st.builds(
        ImagePart,
        data=st.just(PNG_B64),
        media_type=st.sampled_from(["image/png", "image/jpeg", "image/gif", "image/webp"]),
    ),
)
texts = st.builds(TextPart, text=words)
user_msgs = st.builds(
    Message, role=st.just("user"), content=st.lists(texts | images, min_size=1, max_size=3)
)
assistant_msgs = st.builds(
    Message,
    role=st.just("assistant"),
    content=st.tuples(
        st.lists(texts, max_size=2),
        st.lists(
            st.builds(
                ToolCallPart, id=ids, name=st.sampled_from(["f", "g_1"]), arguments=arguments
            ),
            max_size=2,
        ),
    )
    .map(lambda t: [*t[0], *t[1]])
    .filter(bool),
)
tool_msgs = st.builds(
    Message,
    role=st.just("tool"),
    content=st.lists(
        st.builds(
            ToolResultPart,
            call_id=ids,
            content=st.lists(texts | images, max_size=2),
            is_error=st.booleans(),
        ),
        min_size=1,
        max_size=2,
    ),
)
system_msgs = st.builds(
    Message, role=st.just("system"), content=st.lists(texts, min_size=1, max_size=2)
)
tools = st.builds(
    Tool,
    name=st.sampled_from(["f", "g_1", "h-2"]),
    description=st.none() | words,
    parameters=st.just({"type": "object", "properties": {"a": {"type": "string"}}}),
)


@st.composite
def canonical_requests(draw: st.DrawFn) -> ChatRequest:
    messages = [
        draw(user_msgs),
        *draw(st.lists(user_msgs | assistant_msgs | tool_msgs | system_msgs, max_size=6)),
    ]
    max_tokens = draw(st.none() | st.integers(1, 100000))
    reasoning = None
    temperature = draw(st.none() | st.floats(0, 1))
    top_p = draw(st.none() | st.floats(0, 1)) if temperature is None else None
    top_k = draw(st.none() | st.integers(1, 100))
    tool_list = draw(st.lists(tools, max_size=2))
    choice = None
    if tool_list:
        mode = draw(st.sampled_from(["auto", "none", "required", "tool", None]))
        if mode is not None:
            choice = ToolChoice(
                mode=mode,
                name=tool_list[0].name if mode == "tool" else None,
                parallel=None if mode == "none" else draw(st.sampled_from([None, False])),
            )
    if draw(st.booleans()) and (choice is None or choice.mode in ("auto", "none")):
        budget = draw(st.integers(1024, 30000))
        reasoning = Reasoning(enabled=True, budget_tokens=budget)
        max_tokens = draw(st.integers(budget + 1, budget + 10000))
        temperature = top_k = None
        top_p = None
    if reasoning is not None:  # close any tool loop: it would turn thinking off
        messages.append(Message(role="assistant", content=[TextPart(text="done")]))
    if messages[-1].role == "assistant":
        messages.append(Message(role="user", content=[TextPart(text="end")]))
    return ChatRequest(
        source="openai",
        model=draw(st.sampled_from(["test-model", "m"])),
        system=draw(st.lists(texts, max_size=2)),
        messages=messages,
        tools=tool_list,
        tool_choice=choice,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        max_tokens=max_tokens,
        stop=draw(st.lists(words, max_size=2)),
        reasoning=reasoning,
        stream=draw(st.booleans()),
    )


def _strip_extras(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_extras(v) for k, v in value.items() if k != "extras"}
    if isinstance(value, list):
        return [_strip_extras(v) for v in value]
    return value


def normalise_request(req: ChatRequest) -> dict[str, Any]:
    data = _strip_extras(req.model_dump(exclude={"source", "extras", "include_usage"}))
    merged: list[dict[str, Any]] = []
    for msg in data["messages"]:
        if msg["role"] == "tool" and merged and merged[-1]["role"] == "tool":
            merged[-1]["content"].extend(msg["content"])
        else:
            merged.append(msg)
    data["messages"] = merged
    if data["max_tokens"] is None:
        data["max_tokens"] = A.DEFAULT_MAX_TOKENS
    if data["tool_choice"] and data["tool_choice"]["parallel"] is True:
        data["tool_choice"]["parallel"] = None
    return data


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(canonical_requests())
def test_property_request_conversion_is_lossless(req: ChatRequest) -> None:
    body = A.render_request(req)
    back = A.parse_request(json.loads(json.dumps(body)))
    assert normalise_request(back) == normalise_request(req)
    assert A.render_request(back) == body


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(canonical_requests())
def test_property_converted_requests_fit_the_sdk(req: ChatRequest) -> None:
    check_request_shape(A.render_request(req))


response_parts = st.lists(
    texts
    | st.builds(
        ThinkingPart, text=words, signature=st.text(alphabet="ABC=", min_size=1, max_size=6)
    )
    | st.builds(ThinkingPart, text=words, redacted=st.just(True))
    | st.builds(ToolCallPart, id=ids, name=st.sampled_from(["f", "g"]), arguments=arguments),
    max_size=5,
)


@st.composite
def canonical_responses(draw: st.DrawFn) -> ChatResponse:
    stop = draw(st.sampled_from(["end", "max_tokens", "tool_use", "stop", "filtered"]))
    cached = draw(st.none() | st.integers(0, 100))
    creation = draw(st.none() | st.integers(0, 100))
    return ChatResponse(
        source="gemini",
        id=draw(st.sampled_from(["msg_1", "resp-2"])),
        model="m",
        parts=draw(response_parts),
        stop_reason=stop,
        stop_sequence=draw(words) if stop == "stop" else None,
        usage=Usage(
            input_tokens=draw(st.integers(0, 1000)) + (cached or 0) + (creation or 0),
            output_tokens=draw(st.integers(0, 1000)),
            cached_tokens=cached,
            cache_creation_tokens=creation,
            reasoning_tokens=draw(st.none() | st.integers(0, 50)),
        ),
    )


@settings(max_examples=80, deadline=None)
@given(canonical_responses())
def test_property_response_conversion_is_lossless(resp: ChatResponse) -> None:
    body = A.render_response(resp)
    back = A.parse_response(json.loads(json.dumps(body)))
    expected = _strip_extras(resp.model_dump(exclude={"source", "extras"}))
    for part in expected["parts"]:
        if part["type"] == "thinking" and part["redacted"]:
            part["signature"] = None
    assert _strip_extras(back.model_dump(exclude={"source", "extras"})) == expected


@st.composite
def event_streams(draw: st.DrawFn) -> tuple[list[Event], bool]:
    """A valid canonical event sequence (optionally with interleaved tool calls)."""
    blocks = draw(st.lists(st.sampled_from(["text", "think", "tool"]), max_size=5))
    interleave = draw(st.booleans())
    per_block: list[list[Event]] = []
    for i, kind in enumerate(blocks):
        if kind == "text":
            per_block.append(
                [TextDelta(i, t) for t in draw(st.lists(words, min_size=1, max_size=3))]
            )
        elif kind == "think":
            evs: list[Event] = [
                ThinkingDelta(i, t) for t in draw(st.lists(words, min_size=1, max_size=2))
            ]
            per_block.append([*evs, ThinkingDelta(i, "", signature="sig" + str(i))])
        else:
            args = draw(arguments)
            cuts = sorted(draw(st.lists(st.integers(0, len(args)), max_size=3)))
            pieces = [
                args[a:b] for a, b in zip([0, *cuts], [*cuts, len(args)], strict=True) if args[a:b]
            ]
            per_block.append(
                [ToolCallStart(i, f"id{i}", "f"), *[ToolArgsDelta(i, p) for p in pieces]]
            )
    events: list[Event] = [Start(id="msg_h", model="m", usage=Usage(input_tokens=7))]
    if interleave:
        queues = [list(b) for b in per_block]
        while any(queues):
            pick = draw(st.sampled_from([q for q in queues if q]))
            events.append(pick.pop(0))
        events.extend(BlockStop(i) for i in range(len(blocks)))
    else:
        for i, evs in enumerate(per_block):
            events.extend(evs)
            events.append(BlockStop(i))
    with_finish = draw(st.booleans())
    if with_finish:
        events.append(
            Finish(
                stop_reason="tool_use" if "tool" in blocks else "end", usage=Usage(output_tokens=3)
            )
        )
    return events, with_finish


def _accumulate(events: list[Event]) -> ChatResponse:
    acc = ResponseAccumulator(source="anthropic")
    for e in events:
        acc.feed(e)
    return acc.response()


def _summary(resp: ChatResponse) -> list[tuple[str, str, str]]:
    out = []
    for p in resp.parts:
        if isinstance(p, TextPart):
            out.append(("text", p.text, ""))
        elif isinstance(p, ThinkingPart):
            out.append(("thinking", p.text, p.signature or ""))
        elif isinstance(p, ToolCallPart):
            out.append(("tool", p.id, json.dumps(json.loads(p.arguments))))
    return out


@settings(max_examples=60, deadline=None)
@given(event_streams())
def test_property_stream_encode_decode(stream: tuple[list[Event], bool]) -> None:
    events, _ = stream
    data = encode(events)
    decoded = decode_chunks([data[i : i + 13] for i in range(0, len(data), 13)])
    expected, got = _accumulate(events), _accumulate(decoded)
    interleaved, highest = False, -1
    for e in events:
        index = getattr(e, "index", None)
        if index is not None and not isinstance(e, BlockStop):
            interleaved = interleaved or index < highest
            highest = max(highest, index)
    if interleaved:
        # held-back blocks come later and a block preempted before its end continues in a new
        # block of its kind: the same content, maybe in other blocks and another order
        def content(resp: ChatResponse) -> tuple[Any, ...]:
            summary = _summary(resp)
            return (
                sorted("".join(t for k, t, _ in summary if k == "text")),
                sorted("".join(t for k, t, _ in summary if k == "thinking")),
                sorted(s for k, _, s in summary if k == "thinking" and s),
                sorted(x for x in summary if x[0] == "tool"),
            )

        assert content(got) == content(expected)
    else:
        assert _summary(got) == _summary(expected)
    assert got.stop_reason == expected.stop_reason
    # and the SDK's own accumulator takes the bytes
    msg = sdk_final(data)
    assert len(msg.content) == len(got.parts)


# ----------------------------------------------------------------------------------------------
# the delta fast path: a delta event as Anthropic writes it is read without a JSON parse
# ----------------------------------------------------------------------------------------------

_DELTA_PREFIX = b"".join(  # blocks 0 (thinking), 1 (text) and 2 (tool use) open
    f"event: {json.loads(d)['type']}\ndata: {d}\n\n".encode()
    for d in [
        '{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant",'
        '"model":"m","content":[],"usage":{"input_tokens":1,"output_tokens":1}}}',
        '{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}',
        '{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}',
        '{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"t",'
        '"name":"f","input":{}}}',
    ]
)


def decode_deltas(datas: list[str], fast: bool) -> list[Event]:
    """What the decoder makes of `content_block_delta` events with these data lines, after the
    real stream's start; with `fast=False` the fast path is off (every event parsed as JSON)."""
    dec = A.StreamDecoder()
    dec.feed(_DELTA_PREFIX)
    body = "".join(f"event: content_block_delta\ndata: {d}\n\n" for d in datas).encode()
    if fast:
        return dec.feed(body)
    pattern = A._DELTA_EVENT
    A._DELTA_EVENT = re.compile(r"(?!)")  # matches nothing
    try:
        return dec.feed(body)
    finally:
        A._DELTA_EVENT = pattern


_DELTA_KEYS = [
    ("text_delta", "text"),
    ("input_json_delta", "partial_json"),
    ("thinking_delta", "thinking"),
]


@st.composite
def delta_data(draw: st.DrawFn) -> str:
    """A delta event's data line: mostly as Anthropic writes it (any text, any escapes), some
    with a raw part that may be invalid JSON, a wrong key or an index with no open block."""
    kind, key = draw(st.sampled_from([*_DELTA_KEYS, ("text_delta", "partial_json")]))
    index = draw(st.sampled_from(["0", "1", "2", "3", "7", "01", "-1", "1e0"]))
    text = draw(st.text(max_size=12))
    literal = json.dumps(text, ensure_ascii=draw(st.booleans()))
    if draw(st.integers(0, 4)) == 0:  # a raw string body: bad escapes, control characters
        literal = '"' + draw(st.text(alphabet='ab\\"\x01uU0/n\u00e9', max_size=8)) + '"'
    return (
        f'{{"type":"content_block_delta","index":{index},"delta":{{"type":"{kind}",'
        f'"{key}":{literal}}}}}'
    )


@given(st.lists(delta_data(), max_size=6))
@settings(max_examples=400, deadline=None)
def test_property_delta_fast_path_reads_like_json(datas: list[str]) -> None:
    fast = decode_deltas(datas, fast=True)
    assert fast == decode_deltas(datas, fast=False)


def test_delta_fast_path_cases() -> None:
    datas = [
        '{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"a\\"b\\n\\u00e9"}}',
        '{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}',
        '{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\\"a"}}',
        '{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hm"}}',
        '{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"bad \\x"}}',
        '{"type":"content_block_delta","index":9,"delta":{"type":"text_delta","text":"no block"}}',
    ]
    expected = [
        TextDelta(1, 'a"b\né'),
        ToolArgsDelta(2, '{"a'),
        ThinkingDelta(0, "hm"),
    ]
    assert decode_deltas(datas, fast=True) == expected
    assert decode_deltas(datas, fast=False) == expected


# ----------------------------------------------------------------------------------------------
# hypothesis: anthropic wire body -> canonical -> the identical body
# ----------------------------------------------------------------------------------------------

cache = st.sampled_from([{}, {"cache_control": {"type": "ephemeral"}}])
wire_text = st.builds(lambda t, c: {"type": "text", "text": t, **c}, st.text(max_size=6), cache)
wire_image = st.sampled_from(
    [
        {"type": "image", "source": {"type": "url", "url": "https://e.com/i.png"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {"type": "image", "source": {"type": "file", "file_id": "f1"}},
    ]
)
wire_opaque = st.sampled_from(
    [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "d"}},
        {"type": "search_result", "source": "s", "title": "t", "content": []},
    ]
)
wire_tool_use = st.builds(
    lambda i, inp, c: {"type": "tool_use", "id": i, "name": "f", "input": inp, **c},
    ids,
    st.dictionaries(st.text(max_size=4), json_values, max_size=3),
    cache,
)
wire_thinking = st.sampled_from(
    [
        {"type": "thinking", "thinking": "t", "signature": "s"},
        {"type": "thinking", "thinking": "", "signature": ""},
        {"type": "redacted_thinking", "data": "r"},
    ]
)


@st.composite
def wire_tool_results(draw: st.DrawFn) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": draw(ids)}
    content = draw(
        st.none() | st.text(max_size=5) | st.lists(wire_text | wire_image | wire_opaque, max_size=3)
    )
    if content is not None:
        block["content"] = content
    is_error = draw(st.sampled_from([None, True, False]))
    if is_error is not None:
        block["is_error"] = is_error
    block.update(draw(cache))
    return block


@st.composite
def wire_messages(draw: st.DrawFn) -> dict[str, Any]:
    role = draw(st.sampled_from(["user", "assistant", "system"]))
    if draw(st.booleans()):
        return {"role": role, "content": draw(st.text(max_size=6))}
    if role == "user":
        blocks = wire_text | wire_image | wire_opaque | wire_tool_results()
    elif role == "assistant":
        blocks = wire_text | wire_tool_use | wire_thinking | wire_opaque
    else:
        blocks = wire_text
    return {"role": role, "content": draw(st.lists(blocks, max_size=4))}


@st.composite
def wire_bodies(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "m",
        "max_tokens": draw(st.integers(0, 64000)),
        "messages": draw(st.lists(wire_messages(), max_size=5)),
    }
    optional: dict[str, Any] = {
        "system": st.text(max_size=5) | st.lists(wire_text, max_size=2),
        "stop_sequences": st.lists(st.text(max_size=3), max_size=2),
        "stream": st.booleans(),
        "temperature": st.none() | st.floats(0, 1),
        "top_k": st.integers(1, 10),
        "tools": st.lists(
            st.sampled_from(
                CLAUDE_CODE_TOOLS[:2] + [{"type": "web_search_20250305", "name": "ws"}]
            ),
            max_size=2,
        ),
        "tool_choice": st.sampled_from(
            [
                {"type": "auto"},
                {"type": "any", "disable_parallel_tool_use": False},
                {"type": "tool", "name": "Tool0", "disable_parallel_tool_use": True},
                {"type": "none"},
            ]
        ),
        "thinking": st.sampled_from(
            [
                {"type": "enabled", "budget_tokens": 1024},
                {"type": "adaptive"},
                {"type": "disabled"},
                {"type": "between_tools"},
            ]
        ),
        "output_config": st.sampled_from([{"effort": "low"}, {"effort": "max"}, {}]),
        "metadata": st.just({"user_id": "u"}),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            body[key] = draw(strategy)
    return body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wire_bodies())
def test_property_same_protocol_round_trip(body: dict[str, Any]) -> None:
    req = A.parse_request(body)
    assert A.render_request(req) == body
    again = ChatRequest.model_validate_json(req.model_dump_json())
    assert A.render_request(again) == body
