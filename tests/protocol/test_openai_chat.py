"""Tests of the OpenAI Chat Completions codec (`protocol.openai_chat`).

Request bodies are captured from the official `openai` SDK through a mock transport; what the
codec renders (responses, streams, errors) is fed back into the SDK and read with its parsers.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.chat import completion_create_params

from protocol import openai_chat as oc
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
from tests.protocol.openai_sdk import client, force, serve

# ----------------------------------------------------------------------------------------------
# SDK plumbing
# ----------------------------------------------------------------------------------------------

MINIMAL = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
}


def capture(**kwargs: Any) -> dict[str, Any]:
    """The JSON body the SDK sends for `chat.completions.create(**kwargs)`."""
    seen: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(json.loads(request.content))
        if kwargs.get("stream"):
            return httpx2.Response(
                200, content=b"data: [DONE]\n\n", headers={"content-type": "text/event-stream"}
            )
        return httpx2.Response(200, json=MINIMAL)

    result = client(handler).chat.completions.create(**kwargs)
    if kwargs.get("stream"):
        list(result)
    return seen[0]


_PARAMS = pydantic.TypeAdapter(completion_create_params.CompletionCreateParamsNonStreaming)


def assert_sdk_valid(body: dict[str, Any]) -> None:
    """The body validates against the SDK's own request type definitions."""
    force(_PARAMS.validate_python({k: v for k, v in body.items() if k != "stream"}))


# ----------------------------------------------------------------------------------------------
# Same-protocol round trip of real SDK bodies
# ----------------------------------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="

HISTORY = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Weather in Paris and Rome, and the time?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            },
            {
                "id": "call_b",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
            },
            {"id": "call_c", "type": "function", "function": {"name": "get_time", "arguments": ""}},
        ],
    },
    {"role": "tool", "tool_call_id": "call_a", "content": "18C"},
    {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "21C"}]},
    {"role": "tool", "tool_call_id": "call_c", "content": ""},
    {"role": "assistant", "content": "Paris 18C, Rome 21C."},
    {"role": "user", "content": "thanks"},
]

SDK_CASES: dict[str, dict[str, Any]] = {
    "system prompt": {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
        ],
    },
    "developer and system, list content, names": {
        "model": "o3",
        "messages": [
            {"role": "developer", "content": "Rule one."},
            {
                "role": "system",
                "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
                "name": "sys",
            },
            {"role": "system", "content": []},
            {"role": "user", "content": "Hi", "name": "alice"},
        ],
    },
    "multi-turn with a mid-conversation system message": {
        "model": "gpt-4o",
        "messages": [
            {"role": "user", "content": "One"},
            {"role": "assistant", "content": "Two", "name": "bot"},
            {"role": "developer", "content": "Now be formal."},
            {"role": "system", "content": [{"type": "text", "text": "Really."}]},
            {"role": "user", "content": [{"type": "text", "text": "Three"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Four"}]},
            {"role": "user", "content": ""},
        ],
    },
    "images URL and base64, audio, file": {
        "model": "gpt-4o",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg"}},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"},
                    },
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                    {"type": "file", "file": {"file_id": "file-1", "filename": "a.pdf"}},
                    {
                        "type": "text",
                        "text": "cached",
                        "prompt_cache_breakpoint": {"mode": "explicit", "ttl": "30m"},
                    },
                ],
            }
        ],
    },
    "tools and a named tool_choice": {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Weather in Oslo?"}],
        "tools": [WEATHER, TIME],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
    },
    "tool_choice required": {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "x"}],
        "tools": [WEATHER],
        "tool_choice": "required",
    },
    "tool_choice none": {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "x"}],
        "tools": [WEATHER],
        "tool_choice": "none",
    },
    "parallel_tool_calls alone": {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "x"}],
        "tools": [WEATHER],
        "parallel_tool_calls": True,
    },
    "allowed_tools and a custom tool": {
        "model": "gpt-5",
        "messages": [{"role": "user", "content": "x"}],
        "tools": [
            WEATHER,
            {"type": "custom", "custom": {"name": "sql", "format": {"type": "text"}}},
            TIME,
        ],
        "tool_choice": {
            "type": "allowed_tools",
            "allowed_tools": {
                "mode": "auto",
                "tools": [{"type": "function", "function": {"name": "get_time"}}],
            },
        },
        "parallel_tool_calls": False,
    },
    "tool calls and results in history": {
        "model": "gpt-4o",
        "messages": HISTORY,
        "tools": [WEATHER, TIME],
    },
    "custom tool call in history": {
        "model": "gpt-5",
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c1", "type": "custom", "custom": {"name": "sql", "input": "select 1"}},
                    {"id": "c2", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "1"},
            {"role": "tool", "tool_call_id": "c2", "content": "2"},
        ],
    },
    "assistant refusal, audio, list content with refusal part": {
        "model": "gpt-4o-audio-preview",
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": None, "refusal": "I can't."},
            {"role": "user", "content": "y"},
            {"role": "assistant", "audio": {"id": "audio_1"}},
            {"role": "user", "content": "z"},
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "a"}, {"type": "refusal", "refusal": "no"}],
            },
            {"role": "user", "content": "w"},
            {"role": "assistant", "content": [], "tool_calls": []},
        ],
    },
    "reasoning_effort": {
        "model": "o3",
        "messages": [{"role": "user", "content": "think"}],
        "reasoning_effort": "high",
        "max_completion_tokens": 4000,
    },
    "reasoning_effort max (not in the canonical enum)": {
        "model": "gpt-5.5",
        "messages": [{"role": "user", "content": "think"}],
        "reasoning_effort": "max",
    },
    "OpenRouter reasoning object and reasoning in history": {
        "model": "deepseek/deepseek-r1",
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b", "reasoning": "hmm"},
            {"role": "user", "content": "c"},
            {
                "role": "assistant",
                "content": "d",
                "reasoning_content": "hm",
                "reasoning_details": [],
            },
            {"role": "user", "content": "e"},
        ],
        "extra_body": {"reasoning": {"max_tokens": 2000, "exclude": True, "enabled": True}},
    },
    "reasoning object and reasoning_effort together": {
        "model": "x/y",
        "messages": [{"role": "user", "content": "a"}],
        "reasoning_effort": "low",
        "extra_body": {"reasoning": {"effort": "high"}},
    },
    "reasoning object with effort, and a null reasoning": {
        "model": "x/y",
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b", "reasoning_content": None},
            {"role": "user", "content": "c"},
        ],
        "extra_body": {"reasoning": {"effort": "minimal", "summary": "auto"}},
    },
    "stop string": {"model": "m", "messages": [{"role": "user", "content": "a"}], "stop": "\n\n"},
    "stop list": {
        "model": "m",
        "messages": [{"role": "user", "content": "a"}],
        "stop": ["END", "STOP"],
    },
    "stop empty list": {"model": "m", "messages": [{"role": "user", "content": "a"}], "stop": []},
    "max_tokens": {"model": "m", "messages": [{"role": "user", "content": "a"}], "max_tokens": 50},
    "max_tokens and max_completion_tokens": {
        "model": "m",
        "messages": [{"role": "user", "content": "a"}],
        "max_tokens": 50,
        "max_completion_tokens": 60,
    },
    "temperature and top_p": {
        "model": "m",
        "messages": [{"role": "user", "content": "a"}],
        "temperature": 0.2,
        "top_p": 1,
    },
    "explicit nulls": {
        "model": "m",
        "messages": [{"role": "user", "content": "a"}],
        "temperature": None,
        "max_tokens": None,
        "stop": None,
        "tools": [],
        "stream_options": None,
        "reasoning_effort": None,
    },
    "stream with usage": {
        "model": "m",
        "messages": [{"role": "user", "content": "a"}],
        "stream": True,
        "stream_options": {"include_usage": True, "include_obfuscation": False},
    },
    "stream without usage": {
        "model": "m",
        "messages": [{"role": "user", "content": "a"}],
        "stream": True,
        "stream_options": {"include_obfuscation": False},
    },
    "stream false": {"model": "m", "messages": [{"role": "user", "content": "a"}], "stream": False},
    "every other documented parameter": {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "a"}],
        "n": 2,
        "seed": 7,
        "logprobs": True,
        "top_logprobs": 3,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "r", "schema": {"type": "object"}, "strict": True},
        },
        "user": "u-1",
        "metadata": {"k": "v"},
        "store": True,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "logit_bias": {"50256": -100},
        "prediction": {"type": "content", "content": "abc"},
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "wav"},
        "service_tier": "flex",
        "prompt_cache_key": "pk",
        "safety_identifier": "sid",
        "verbosity": "low",
        "web_search_options": {"search_context_size": "low"},
    },
    "unknown extra fields (extra_body)": {
        "model": "meta-llama/Llama-3-8B",
        "messages": [{"role": "user", "content": "a"}],
        "extra_body": {
            "top_k": 40,
            "min_p": 0.05,
            "repetition_penalty": 1.1,
            "chat_template_kwargs": {"enable_thinking": False},
            "_private": 1,
            "provider": {"order": ["a", "b"]},
        },
    },
    "legacy functions": {
        "model": "gpt-3.5-turbo",
        "messages": [
            {"role": "user", "content": "a"},
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "f", "arguments": "{}"},
            },
            {"role": "function", "name": "f", "content": "42"},
        ],
        "functions": [{"name": "f", "parameters": {"type": "object"}}],
        "function_call": "auto",
    },
}


@pytest.mark.parametrize("kwargs", list(SDK_CASES.values()), ids=list(SDK_CASES))
def test_sdk_body_round_trips(kwargs: dict[str, Any]) -> None:
    body = capture(**kwargs)
    req = oc.parse_request(body)
    assert req.source == "openai"
    assert oc.render_request(req) == body
    # and once more from a JSON copy of the canonical form (extras survive serialisation)
    again = ChatRequest.model_validate_json(req.model_dump_json())
    assert oc.render_request(again) == body


def test_parsed_canonical_fields() -> None:
    body = capture(
        model="gpt-4o",
        messages=HISTORY,
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0.5,
        top_p=0.9,
        stop="END",
        max_completion_tokens=99,
        reasoning_effort="low",
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"seed": 3},
    )
    req = oc.parse_request(body)
    assert [p.text for p in req.system] == ["You are terse."]
    assert [m.role for m in req.messages] == [
        "user", "assistant", "tool", "tool", "tool", "assistant", "user",
    ]  # fmt: skip
    calls = req.messages[1].content
    assert [(c.id, c.name, c.arguments) for c in calls if isinstance(c, ToolCallPart)] == [
        ("call_a", "get_weather", '{"city":"Paris"}'),
        ("call_b", "get_weather", '{"city": "Rome"}'),
        ("call_c", "get_time", ""),
    ]
    result = req.messages[3].content[0]
    assert isinstance(result, ToolResultPart)
    assert (result.call_id, result.name, result.content[0]) == (
        "call_b",
        "get_weather",
        TextPart(text="21C"),
    )
    assert req.tools[0].name == "get_weather" and req.tools[0].extras == {"strict": True}
    assert req.tool_choice == ToolChoice(mode="required", parallel=False)
    assert (req.temperature, req.top_p, req.stop, req.max_tokens) == (0.5, 0.9, ["END"], 99)
    assert req.reasoning == Reasoning(effort="low")
    assert req.stream and req.include_usage
    assert req.extras["seed"] == 3


def test_images_parse_to_url_and_data() -> None:
    body = capture(**SDK_CASES["images URL and base64, audio, file"])
    parts = oc.parse_request(body).messages[0].content
    assert parts[1] == ImagePart(url="https://x.test/cat.jpg")
    assert parts[2] == ImagePart(data=PNG, media_type="image/png", extras={"detail": "low"})
    assert isinstance(parts[3], OpaquePart) and parts[3].data["type"] == "input_audio"
    assert isinstance(parts[4], OpaquePart) and parts[4].data["type"] == "file"


def test_openrouter_reasoning_object() -> None:
    body = capture(**SDK_CASES["OpenRouter reasoning object and reasoning in history"])
    req = oc.parse_request(body)
    assert req.reasoning == Reasoning(budget_tokens=2000, include_thoughts=False, enabled=True)
    thinking = req.messages[1].content[0]
    assert isinstance(thinking, ThinkingPart) and thinking.text == "hmm"


def test_model_and_stream_keywords_override_the_body() -> None:
    req = oc.parse_request(
        {"model": "a", "messages": [{"role": "user", "content": "x"}]}, model="b", stream=True
    )
    assert (req.model, req.stream) == ("b", True)
    assert oc.render_request(req)["model"] == "b"
    req = oc.parse_request({"messages": [{"role": "user", "content": "x"}]}, model="c")
    assert req.model == "c"


def test_edits_to_the_canonical_form_win_over_kept_extras() -> None:
    body = capture(
        model="m",
        messages=[{"role": "user", "content": "x"}],
        temperature=None,
        max_completion_tokens=10,
        stop="a",
    )
    req = oc.parse_request(body)
    req.temperature = 0.7
    req.max_tokens = 20
    req.stop = ["a", "b"]
    req.system = [TextPart(text="new system")]
    out = oc.render_request(req)
    assert out["temperature"] == 0.7
    assert out["max_completion_tokens"] == 20
    assert out["stop"] == ["a", "b"]
    assert out["messages"][0] == {"role": "system", "content": "new system"}


# ----------------------------------------------------------------------------------------------
# Rendering a request converted from another protocol
# ----------------------------------------------------------------------------------------------


def foreign_request(**kw: Any) -> ChatRequest:
    base: dict[str, Any] = {
        "source": "anthropic",
        "model": "claude-x",
        "system": [
            TextPart(text="Sys one.", extras={"cache_control": {"type": "ephemeral"}}),
            TextPart(text="Sys two."),
        ],
        "messages": [
            Message(
                role="user",
                content=[
                    TextPart(text="Look", extras={"cache_control": {"type": "ephemeral"}}),
                    ImagePart(data=PNG, media_type="image/png"),
                    ImagePart(url="https://x.test/a.png"),
                    OpaquePart(protocol="anthropic", data={"type": "document"}),
                ],
            ),
            Message(
                role="assistant",
                content=[
                    ThinkingPart(text="secret", signature="sig"),
                    TextPart(text="Checking."),
                    ToolCallPart(id="toolu_1", name="get_weather", arguments='{"city":"Oslo"}'),
                    ToolCallPart(id="toolu_2", name="get_time", arguments="{}", signature="s"),
                ],
            ),
            Message(
                role="user",
                content=[
                    ToolResultPart(
                        call_id="toolu_1",
                        content=[TextPart(text="5C"), ImagePart(url="https://x.test/map.png")],
                    ),
                    ToolResultPart(call_id="toolu_2", content=[], is_error=True),
                    TextPart(text="And tomorrow?"),
                ],
            ),
            Message(role="assistant", content=[ThinkingPart(text="only thinking")]),
            Message(role="system", content=[TextPart(text="Mid system.")]),
            Message(
                role="tool", content=[ToolResultPart(call_id="x", content=[TextPart(text="r")])]
            ),
        ],
        "tools": [
            Tool(
                name="get_weather",
                description="w",
                parameters={"type": "object"},
                extras={"cache_control": {"type": "ephemeral"}},
            ),
            Tool(name="get_time"),
        ],  # fmt: skip
        "tool_choice": ToolChoice(mode="tool", name="get_weather", parallel=False),
        "temperature": 0.3,
        "top_p": 0.8,
        "top_k": 40,
        "max_tokens": 1024,
        "stop": ["a", "b", "c", "d", "e"],
        "reasoning": Reasoning(budget_tokens=5000, enabled=True),
        "stream": True,
        "include_usage": True,
        "extras": {"metadata": {"user_id": "u"}},
    }
    base.update(kw)
    return ChatRequest(**base)


def test_render_converted_request() -> None:
    body = oc.render_request(foreign_request())
    assert body == {
        "model": "claude-x",
        "messages": [
            {"role": "system", "content": "Sys one.\n\nSys two."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    },
                    {
                        "id": "toolu_2",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": "{}"},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "5C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": ""},
            {"role": "user", "content": "And tomorrow?"},
            {"role": "assistant", "content": ""},
            {"role": "system", "content": "Mid system."},
            {"role": "tool", "tool_call_id": "x", "content": "r"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "w",
                    "parameters": {"type": "object"},
                },
            },
            {
                "type": "function",
                "function": {
                    "name": "get_time",
                    "parameters": {"type": "object", "properties": {}},
                },
            },
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "temperature": 0.3,
        "top_p": 0.8,
        "max_tokens": 1024,
        "stop": ["a", "b", "c", "d"],
        "reasoning_effort": "medium",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert_sdk_valid(body)


@pytest.mark.parametrize(
    ("reasoning", "expected"),
    [
        (Reasoning(effort="high", budget_tokens=100), "high"),
        (Reasoning(budget_tokens=1024), "low"),
        (Reasoning(budget_tokens=4096), "low"),
        (Reasoning(budget_tokens=4097), "medium"),
        (Reasoning(budget_tokens=12288), "medium"),
        (Reasoning(budget_tokens=12289), "high"),
        (Reasoning(budget_tokens=0), None),
        (Reasoning(budget_tokens=-1), None),
        (Reasoning(enabled=False, budget_tokens=3000), None),
        (Reasoning(enabled=True), None),
    ],
)
def test_reasoning_to_effort(reasoning: Reasoning, expected: str | None) -> None:
    body = oc.render_request(foreign_request(reasoning=reasoning))
    assert body.get("reasoning_effort") == expected


def test_converted_request_without_tools_has_no_tool_choice() -> None:
    body = oc.render_request(
        foreign_request(tools=[], tool_choice=ToolChoice(mode="auto", parallel=True), stream=False)
    )
    assert "tool_choice" not in body and "parallel_tool_calls" not in body
    assert "stream_options" not in body and "stream" not in body
    assert_sdk_valid(body)


def test_converted_tool_only_user_turn() -> None:
    req = foreign_request(
        system=[],
        messages=[
            Message(role="user", content=[TextPart(text="q")]),
            Message(role="assistant", content=[ToolCallPart(id="t", name="f")]),
            Message(role="user", content=[ToolResultPart(call_id="t", content=[TextPart(text="a"), TextPart(text="b")])]),
        ],
    )  # fmt: skip
    body = oc.render_request(req)
    assert body["messages"] == [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "t", "content": "a\nb"},
    ]
    assert_sdk_valid(body)


def test_sdk_validation_catches_bad_bodies() -> None:
    with pytest.raises(pydantic.ValidationError):
        assert_sdk_valid({"model": "m", "messages": [{"role": "robot", "content": "x"}]})


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------

U: Any = {"role": "user", "content": "x"}
BAD: list[tuple[Any, str]] = [
    ([], "JSON object"),
    ("x", "JSON object"),
    ({"messages": [U]}, "'model' is required"),
    ({"model": 3, "messages": [U]}, "'model' must be a string"),
    ({"model": "m"}, "'messages' is required"),
    ({"model": "m", "messages": {"role": "user"}}, "'messages' must be an array"),
    ({"model": "m", "messages": []}, "at least one"),
    ({"model": "m", "messages": ["hi"]}, "'messages[0]' must be an object"),
    ({"model": "m", "messages": [{"content": "x"}]}, "'messages[0].role' is required"),
    ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "unknown value 'robot'"),
    ({"model": "m", "messages": [{"role": "user"}]}, "'messages[0].content' is required"),
    ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "'messages[0].content'"),
    ({"model": "m", "messages": [{"role": "user", "content": [5]}]}, "'messages[0].content[0]'"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"text": "x"}]}]}, ".type"),
    (
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]},
        "'messages[0].content[0].text' must be a string",
    ),
    (
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
        "image_url",
    ),
    ({"model": "m", "messages": [{"role": "system", "content": None}, U]}, "text parts"),
    (
        {"model": "m", "messages": [{"role": "system", "content": [{"type": "image_url"}]}, U]},
        "'messages[0].content[0]' must be a text part",
    ),
    ({"model": "m", "messages": [U, {"role": "assistant", "content": 3}]}, "'messages[1].content'"),
    (
        {"model": "m", "messages": [U, {"role": "assistant", "tool_calls": {}}]},
        "'messages[1].tool_calls' must be an array",
    ),
    (
        {"model": "m", "messages": [U, {"role": "assistant", "tool_calls": [{"id": "a"}]}]},
        "'messages[1].tool_calls[0].function'",
    ),
    (
        {
            "model": "m",
            "messages": [
                U,
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": {}}}],
                },
            ],
        },
        "arguments' must be a string",
    ),
    ({"model": "m", "messages": [U, {"role": "tool", "content": "x"}]}, "tool_call_id"),
    (
        {"model": "m", "messages": [U, {"role": "tool", "tool_call_id": "a", "content": 1}]},
        "'messages[1].content'",
    ),
    ({"model": "m", "messages": [U], "temperature": "hot"}, "'temperature' must be a number"),
    ({"model": "m", "messages": [U], "temperature": True}, "'temperature' must be a number"),
    ({"model": "m", "messages": [U], "top_p": [1]}, "'top_p' must be a number"),
    ({"model": "m", "messages": [U], "max_tokens": "5"}, "'max_tokens' must be an integer"),
    ({"model": "m", "messages": [U], "max_completion_tokens": 1.5}, "'max_completion_tokens'"),
    ({"model": "m", "messages": [U], "stop": 5}, "'stop'"),
    ({"model": "m", "messages": [U], "stop": ["a", 1]}, "'stop'"),
    ({"model": "m", "messages": [U], "stream": "yes"}, "'stream' must be a boolean"),
    ({"model": "m", "messages": [U], "stream_options": True}, "'stream_options'"),
    ({"model": "m", "messages": [U], "tools": {}}, "'tools' must be an array"),
    ({"model": "m", "messages": [U], "tools": [1]}, "'tools[0]' must be an object"),
    ({"model": "m", "messages": [U], "tools": [{"type": "function"}]}, "'tools[0].function'"),
    (
        {"model": "m", "messages": [U], "tools": [{"type": "function", "function": {}}]},
        "'tools[0].function.name'",
    ),
    (
        {"model": "m", "messages": [U], "tools": [{"function": {"name": "f", "parameters": 1}}]},
        "parameters' must be an object",
    ),
    ({"model": "m", "messages": [U], "tool_choice": 1}, "'tool_choice'"),
    ({"model": "m", "messages": [U], "parallel_tool_calls": "no"}, "'parallel_tool_calls'"),
    ({"model": "m", "messages": [U], "reasoning_effort": 3}, "'reasoning_effort'"),
    ({"model": "m", "messages": [U], "reasoning": "high"}, "'reasoning' must be an object"),
]


@pytest.mark.parametrize(("body", "message"), BAD)
def test_bad_requests_raise_protocol_error(body: Any, message: str) -> None:
    with pytest.raises(ProtocolError, match=__import__("re").escape(message)):
        oc.parse_request(body)


def test_lenient_where_the_api_is() -> None:
    # unknown content part types (vLLM video_url ...) and tool types pass through
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": [{"type": "video_url", "video_url": {"url": "u"}}]},
        ],
        "tools": [{"type": "web_search"}],
        "tool_choice": "auto",
        "reasoning_effort": "turbo",
    }
    req = oc.parse_request(body)
    assert oc.render_request(req) == body
    assert req.reasoning == Reasoning()


# ----------------------------------------------------------------------------------------------
# Responses
# ----------------------------------------------------------------------------------------------

RESPONSES: dict[str, dict[str, Any]] = {
    "text with full usage": {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello!",
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 19,
            "completion_tokens": 10,
            "total_tokens": 29,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_1",
    },
    "tool calls": {
        "id": "chatcmpl-t",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        },
                        {
                            "id": "call_2",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                        },
                    ],
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 80, "completion_tokens": 40, "total_tokens": 120},
    },
    "deepseek reasoning": {
        "id": "d1",
        "object": "chat.completion",
        "created": 2,
        "model": "deepseek-reasoner",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "42",
                    "reasoning_content": "Let me see",
                },
                "logprobs": None,
                "finish_reason": "length",
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 100,
            "total_tokens": 110,
            "prompt_tokens_details": {"cached_tokens": 8},
            "completion_tokens_details": {"reasoning_tokens": 90},
            "prompt_cache_hit_tokens": 8,
            "prompt_cache_miss_tokens": 2,
        },
    },
    "vllm with stop_reason and null reasoning": {
        "id": "cmpl-v",
        "object": "chat.completion",
        "created": 3,
        "model": "llama",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "reasoning_content": None,
                    "content": "ab",
                    "tool_calls": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
                "stop_reason": "END",
            }
        ],
        "usage": {
            "prompt_tokens": 1,
            "completion_tokens": 2,
            "total_tokens": 3,
            "prompt_tokens_details": None,
        },
        "prompt_logprobs": None,
    },
    "openrouter reasoning, no usage, no logprobs": {
        "id": "gen-1",
        "provider": "X",
        "model": "r1",
        "object": "chat.completion",
        "created": 4,
        "choices": [
            {
                "index": 0,
                "finish_reason": "content_filter",
                "native_finish_reason": "SAFETY",
                "message": {"role": "assistant", "content": "", "refusal": None, "reasoning": "r"},
            }
        ],
    },
    "legacy function_call, n=2": {
        "id": "c",
        "object": "chat.completion",
        "created": 5,
        "model": "gpt-3.5-turbo",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "function_call": {"name": "f", "arguments": "{}"},
                },
                "logprobs": None,
                "finish_reason": "function_call",
            },
            {
                "index": 1,
                "message": {"role": "assistant", "content": "x"},
                "logprobs": None,
                "finish_reason": "stop",
            },
        ],
        "usage": None,
    },
    "refusal": {
        "id": "c",
        "object": "chat.completion",
        "created": 5,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "refusal": "I can't help."},
                "logprobs": {"content": None, "refusal": []},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    },
    "empty choices": {
        "id": "c",
        "object": "chat.completion",
        "created": 5,
        "model": "m",
        "choices": [],
    },
}


@pytest.mark.parametrize("body", list(RESPONSES.values()), ids=list(RESPONSES))
def test_response_round_trips(body: dict[str, Any]) -> None:
    resp = oc.parse_response(body)
    assert resp.source == "openai"
    assert oc.render_response(resp) == body
    again = ChatResponse.model_validate_json(resp.model_dump_json())
    assert oc.render_response(again) == body


def test_parse_response_fields() -> None:
    resp = oc.parse_response(RESPONSES["deepseek reasoning"])
    assert resp.parts == [
        ThinkingPart(text="Let me see", extras={"_key": "reasoning_content"}),
        TextPart(text="42"),
    ]
    assert resp.stop_reason == "max_tokens"
    assert resp.usage == Usage(
        input_tokens=10, output_tokens=100, cached_tokens=8, reasoning_tokens=90
    )
    tools = oc.parse_response(RESPONSES["tool calls"])
    assert tools.stop_reason == "tool_use"
    assert [(p.id, p.arguments) for p in tools.parts if isinstance(p, ToolCallPart)] == [
        ("call_1", '{"city":"Paris"}'),
        ("call_2", '{"city":"Rome"}'),
    ]
    vllm = oc.parse_response(RESPONSES["vllm with stop_reason and null reasoning"])
    assert (vllm.stop_reason, vllm.stop_sequence) == ("stop", "END")
    assert (
        oc.parse_response(RESPONSES["openrouter reasoning, no usage, no logprobs"]).stop_reason
        == "filtered"
    )
    assert oc.parse_response(RESPONSES["legacy function_call, n=2"]).stop_reason == "tool_use"


@pytest.mark.parametrize(
    "body", [[], {"object": "chat.completion"}, {"choices": {}}, {"choices": [1]}]
)
def test_bad_responses(body: Any) -> None:
    with pytest.raises(ProtocolError):
        oc.parse_response(body)


def foreign_response(**kw: Any) -> ChatResponse:
    base: dict[str, Any] = {
        "source": "anthropic",
        "id": "msg_01",
        "model": "claude-x",
        "parts": [
            ThinkingPart(text="Think. ", signature="sig"),
            ThinkingPart(text="", redacted=True),
            TextPart(text="Sure, "),
            TextPart(text="checking.", extras={"citations": []}),
            ToolCallPart(id="toolu_1", name="get_weather", arguments='{"city":"Oslo"}'),
            ToolCallPart(id="toolu_2", name="get_time", arguments="{}"),
            OpaquePart(protocol="anthropic", data={"type": "server_tool_use"}),
        ],
        "stop_reason": "tool_use",
        "usage": Usage(
            input_tokens=100,
            output_tokens=50,
            cached_tokens=80,
            cache_creation_tokens=5,
            reasoning_tokens=20,
        ),  # fmt: skip
        "extras": {"container": None},
    }
    base.update(kw)
    return ChatResponse(**base)


def test_render_converted_response_reads_in_the_sdk() -> None:
    body = oc.render_response(foreign_response())
    assert body["id"] == "msg_01" and body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert "container" not in body
    completion = serve(body).chat.completions.create(model="m", messages=[U])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Sure, checking."
    assert choice.message.refusal is None
    assert (choice.message.model_extra or {}).get("reasoning_content") == "Think. "
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("toolu_1", "get_weather", {"city": "Oslo"}),
        ("toolu_2", "get_time", {}),
    ]
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (100, 50, 150)
    assert usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == 80
    assert usage.prompt_tokens_details.cache_write_tokens == 5
    assert (
        usage.completion_tokens_details and usage.completion_tokens_details.reasoning_tokens == 20
    )


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end", "stop"),
        ("stop", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("filtered", "content_filter"),
        ("loop_halted", "stop"),
        ("error", "stop"),
    ],
)
def test_finish_reason_mapping(stop: Any, finish: str) -> None:
    body = oc.render_response(foreign_response(stop_reason=stop, parts=[TextPart(text="x")]))
    assert body["choices"][0]["finish_reason"] == finish
    completion = serve(body).chat.completions.create(model="m", messages=[U])
    assert completion.choices[0].finish_reason == finish


def test_render_response_generates_an_id_and_null_content() -> None:
    body = oc.render_response(foreign_response(id="", parts=[], usage=Usage()))
    assert body["id"].startswith("chatcmpl-") and len(body["id"]) > 12
    message = body["choices"][0]["message"]
    assert message == {"role": "assistant", "content": None, "refusal": None}
    assert body["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert body["choices"][0]["logprobs"] is None


# ----------------------------------------------------------------------------------------------
# Stream decoder
# ----------------------------------------------------------------------------------------------


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **top: Any) -> str:
    obj: dict[str, Any] = {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 9,
        "model": "deepseek-r1",
        "system_fingerprint": "fp",
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    obj.update(top)
    return "data: " + json.dumps(obj, ensure_ascii=False) + "\n\n"


def call(
    index: int, *, cid: str | None = None, name: str | None = None, args: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"index": index}
    fn: dict[str, Any] = {}
    if cid is not None:
        out["id"], out["type"] = cid, "function"
    if name is not None:
        fn["name"] = name
    if args is not None:
        fn["arguments"] = args
    out["function"] = fn
    return out


REALISTIC = (
    ": OPENROUTER PROCESSING\n\n"
    + chunk({"role": "assistant", "content": "", "reasoning_content": None})
    + chunk({"reasoning_content": "Let me "})
    + chunk({"reasoning": "think… ", "content": ""})
    + chunk({"content": "héllo 🌍"})
    + chunk({"content": " there"})
    + chunk({"tool_calls": [call(0, cid="call_A", name="get_weather", args="")]})
    + chunk({"tool_calls": [call(1, cid="call_B", name="get_time", args='{"tz"')]})
    + chunk({"tool_calls": [call(0, args='{"city":')]})
    + chunk({"tool_calls": [call(1, args=':"UTC"}'), call(0, args='"Köln"}')]})
    + chunk({}, "tool_calls")
    + chunk(
        None,
        usage={
            "prompt_tokens": 12,
            "completion_tokens": 30,
            "total_tokens": 42,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 7},
        },
    )
    + "data: [DONE]\n\n"
).encode()

REALISTIC_EVENTS: list[Event] = [
    Start(id="chatcmpl-s", model="deepseek-r1"),
    ThinkingDelta(0, "Let me "),
    ThinkingDelta(0, "think… "),
    BlockStop(0),
    TextDelta(1, "héllo 🌍"),
    TextDelta(1, " there"),
    BlockStop(1),
    ToolCallStart(2, "call_A", "get_weather"),
    ToolCallStart(3, "call_B", "get_time"),
    ToolArgsDelta(3, '{"tz"'),
    ToolArgsDelta(2, '{"city":'),
    ToolArgsDelta(3, ':"UTC"}'),
    ToolArgsDelta(2, '"Köln"}'),
    BlockStop(2),
    BlockStop(3),
    Finish(
        stop_reason="tool_use",
        usage=Usage(input_tokens=12, output_tokens=30, cached_tokens=4, reasoning_tokens=7),
    ),
]


def decode(pieces: list[bytes]) -> list[Event]:
    dec = oc.StreamDecoder()
    out: list[Event] = []
    for piece in pieces:
        out += dec.feed(piece)
    out += dec.close()
    return out


def test_decoder_realistic_stream() -> None:
    assert decode([REALISTIC]) == REALISTIC_EVENTS


def test_decoder_every_split_point() -> None:
    for i in range(len(REALISTIC) + 1):
        assert decode([REALISTIC[:i], REALISTIC[i:]]) == REALISTIC_EVENTS, i


def test_decoder_byte_by_byte_and_crlf() -> None:
    assert decode([bytes([b]) for b in REALISTIC]) == REALISTIC_EVENTS
    crlf = REALISTIC.replace(b"\n", b"\r\n")
    assert decode([crlf]) == REALISTIC_EVENTS
    assert decode([bytes([b]) for b in crlf]) == REALISTIC_EVENTS
    for i in range(0, len(crlf) + 1, 7):
        assert decode([crlf[:i], crlf[i:]]) == REALISTIC_EVENTS, i


def test_decoder_without_done_finishes_at_close() -> None:
    body = REALISTIC.replace(b"data: [DONE]\n\n", b"")
    dec = oc.StreamDecoder()
    events = dec.feed(body)
    assert not any(isinstance(e, Finish) for e in events)
    assert events + dec.close() == REALISTIC_EVENTS
    assert dec.close() == []


def test_decoder_ignores_after_done() -> None:
    assert decode([REALISTIC + chunk({"content": "late"}).encode()]) == REALISTIC_EVENTS


def test_decoder_arguments_in_the_name_chunk_and_at_the_end() -> None:
    body = (
        chunk({"role": "assistant"})
        + chunk({"tool_calls": [call(0, cid="c0", name="f", args='{"a":1}')]})
        + chunk({"tool_calls": [call(1, args='{"b"')]})  # arguments before the name
        + chunk({"tool_calls": [call(1, cid="c1", name="g")]})
        + chunk({"tool_calls": [call(1, args=":2}")]})
        + chunk({}, "tool_calls")
        + "data: [DONE]\n\n"
    ).encode()
    events = decode([body])
    assert events == [
        Start(id="chatcmpl-s", model="deepseek-r1"),
        ToolCallStart(0, "c0", "f"),
        ToolArgsDelta(0, '{"a":1}'),
        ToolCallStart(1, "c1", "g"),
        ToolArgsDelta(1, '{"b"'),
        ToolArgsDelta(1, ":2}"),
        BlockStop(0),
        BlockStop(1),
        Finish(stop_reason="tool_use"),
    ]


def test_decoder_missing_index_and_object_arguments() -> None:
    body = (
        chunk({"tool_calls": [{"id": "x1", "function": {"name": "f", "arguments": {"a": 1}}}]})
        + chunk({"tool_calls": [{"id": "x2", "function": {"name": "g", "arguments": "{}"}}]})
        + chunk({}, "tool_calls")
    ).encode()
    events = decode([body])
    assert events[1:5] == [
        ToolCallStart(0, "x1", "f"),
        ToolArgsDelta(0, '{"a":1}'),
        ToolCallStart(1, "x2", "g"),
        ToolArgsDelta(1, "{}"),
    ]


def test_decoder_error_payloads() -> None:
    body = (
        chunk({"content": "par"})
        + 'data: {"error": {"message": "Overloaded", "type": "server_error", "code": null}}\n\n'
        + "data: [DONE]\n\n"
    ).encode()
    assert decode([body]) == [
        Start(id="chatcmpl-s", model="deepseek-r1"),
        TextDelta(0, "par"),
        Error(message="Overloaded", status=500, kind="api_error"),
        BlockStop(0),
        Finish(stop_reason="error"),
    ]
    openrouter = chunk(
        {"content": ""}, "error", error={"code": 429, "message": "Rate limited upstream"}
    ).encode()
    events = decode([openrouter])
    assert events[1] == Error(message="Rate limited upstream", status=429, kind="rate_limit")
    assert events[-1] == Finish(stop_reason="error")
    first = decode(
        [b'data: {"error": {"message": "bad key", "type": "invalid_request_error"}}\n\n']
    )
    assert first == [
        Start(id="", model=""),
        Error(message="bad key", status=400, kind="invalid_request"),
        Finish(stop_reason="error"),
    ]


def test_decoder_empty_and_odd_input() -> None:
    assert decode([]) == [Start(id="", model=""), Finish()]
    assert decode([b": keep-alive\n\n", b"data: not json\n\n", b"data: [1]\n\n"]) == [
        Start(id="", model=""),
        Finish(),
    ]
    # last event without its blank line is still read at close
    body = (chunk({"content": "a"}) + chunk({}, "length")).rstrip("\n").encode()
    assert decode([body]) == [
        Start(id="chatcmpl-s", model="deepseek-r1"),
        TextDelta(0, "a"),
        BlockStop(0),
        Finish(stop_reason="max_tokens"),
    ]


def test_decoder_vllm_stop_string_and_refusal() -> None:
    body = (
        chunk({"refusal": "No."})
        + 'data: {"id":"v","model":"l","choices":[{"index":0,"delta":{},"finish_reason":"stop","stop_reason":"###"}]}\n\n'
        + "data: [DONE]\n\n"
    ).encode()
    events = decode([body])
    assert events[1] == TextDelta(0, "No.")
    assert events[-1] == Finish(stop_reason="stop", stop_sequence="###")


def test_decoder_azure_filter_chunk_and_mistral_content_lists() -> None:
    body = (
        'data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[]}\n\n'
        + chunk({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "hm"}]}]})
        + chunk({"content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "!"}]})
        + chunk({}, "stop")
        + "data: [DONE]\n\n"
    ).encode()
    assert decode([body]) == [
        Start(id="chatcmpl-s", model="deepseek-r1"),
        ThinkingDelta(0, "hm"),
        BlockStop(0),
        TextDelta(1, "Hi"),
        TextDelta(1, "!"),
        BlockStop(1),
        Finish(stop_reason="end"),
    ]


# ----------------------------------------------------------------------------------------------
# Stream encoder
# ----------------------------------------------------------------------------------------------

STREAM_EVENTS: list[Event] = [
    Start(id="msg_1", model="claude-x", usage=Usage(input_tokens=11)),
    ThinkingDelta(0, "Hmm. "),
    ThinkingDelta(0, "", signature="sig"),
    BlockStop(0),
    TextDelta(1, "héllo "),
    TextDelta(1, "🌍"),
    BlockStop(1),
    ToolCallStart(2, "toolu_a", "get_weather"),
    ToolCallStart(3, "toolu_b", "get_time"),
    ToolArgsDelta(2, '{"city"'),
    ToolArgsDelta(3, "{}"),
    ToolArgsDelta(2, ':"Oslo"}'),
    BlockStop(2),
    BlockStop(3),
    Finish(stop_reason="tool_use", usage=Usage(output_tokens=22, reasoning_tokens=5)),
]


def encode(events: list[Event], **kw: Any) -> bytes:
    enc = oc.StreamEncoder(**kw)
    out = b"".join(enc.feed(e) for e in events) + enc.close()
    assert enc.close() == b""
    return out


def test_encoder_output_reads_in_the_sdk_stream() -> None:
    body = encode(STREAM_EVENTS, include_usage=True)
    assert body.endswith(b"data: [DONE]\n\n")
    stream = serve(body).chat.completions.create(model="m", messages=[U], stream=True)
    chunks = list(stream)
    assert {c.id for c in chunks} == {"msg_1"} and {c.model for c in chunks} == {"claude-x"}
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "héllo 🌍"
    thinking = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content", "")
        for c in chunks
        if c.choices
    )
    assert thinking == "Hmm. "
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 11 and chunks[-1].usage.completion_tokens == 22
    assert chunks[-1].usage.completion_tokens_details is not None
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == 5


def test_encoder_output_accumulates_in_the_sdk_stream_helper() -> None:
    body = encode(STREAM_EVENTS, include_usage=True)
    with serve(body).chat.completions.stream(model="m", messages=[U]) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "héllo 🌍"
    assert (choice.message.model_extra or {}).get("reasoning_content") == "Hmm. "
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("toolu_a", "get_weather", {"city": "Oslo"}),
        ("toolu_b", "get_time", {}),
    ]
    assert final.usage is not None and final.usage.total_tokens == 33


def test_encoder_exact_bytes() -> None:
    enc = oc.StreamEncoder(model="alias")
    first = enc.feed(Start(id="chatcmpl-9", model="real"))
    assert first.startswith(b'data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":')
    payload = json.loads(first[6:])
    assert payload["model"] == "alias"
    assert payload["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    text = json.loads(enc.feed(TextDelta(0, 'a"\n\u2028'))[6:])
    assert text["choices"][0]["delta"] == {"content": 'a"\n\u2028'}
    assert enc.feed(TextDelta(0, "")) == b""
    assert enc.feed(BlockStop(0)) == b""
    start = json.loads(enc.feed(ToolCallStart(1, "c", "f"))[6:])
    assert start["choices"][0]["delta"] == {
        "tool_calls": [
            {"index": 0, "id": "c", "type": "function", "function": {"name": "f", "arguments": ""}}
        ]
    }
    args = json.loads(enc.feed(ToolArgsDelta(1, "{}"))[6:])
    assert args["choices"][0]["delta"] == {
        "tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]
    }
    assert enc.feed(ToolArgsDelta(7, "{}")) == b""  # a block that never started
    end = enc.feed(Finish(stop_reason="max_tokens", usage=Usage(input_tokens=1)))
    events = end.split(b"\n\n")
    assert json.loads(events[0][6:])["choices"][0] == {
        "index": 0, "delta": {}, "logprobs": None, "finish_reason": "length",
    }  # fmt: skip
    assert events[1] == b"data: [DONE]"  # no usage chunk unless asked
    assert enc.feed(TextDelta(0, "late")) == b"" and enc.close() == b""


def test_encoder_lone_surrogate_is_escaped() -> None:
    enc = oc.StreamEncoder()
    enc.feed(Start(id="x", model="m"))
    out = enc.feed(TextDelta(0, "a\ud83d"))
    assert json.loads(out[6:])["choices"][0]["delta"]["content"] == "a\ud83d"


def test_encoder_close_without_anything() -> None:
    body = encode([], include_usage=True)
    chunks = list(serve(body).chat.completions.create(model="m", messages=[U], stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[1].choices[0].finish_reason == "stop"
    assert chunks[2].usage is not None and chunks[2].usage.total_tokens == 0
    assert chunks[0].id.startswith("chatcmpl-")
    with serve(encode([])).chat.completions.stream(model="m", messages=[U]) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].finish_reason == "stop" and final.choices[0].message.content == ""


def test_encoder_close_without_finish() -> None:
    body = encode([Start(id="a", model="m"), TextDelta(0, "cut")])
    with serve(body).chat.completions.stream(model="m", messages=[U]) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "cut"
    assert final.choices[0].finish_reason == "stop"


def test_encoder_events_before_start() -> None:
    body = encode([TextDelta(0, "x"), Finish()], model="given")
    chunks = list(serve(body).chat.completions.create(model="m", messages=[U], stream=True))
    assert [c.model for c in chunks] == ["given"] * 3
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "x"


def test_encoder_error_reaches_the_sdk() -> None:
    body = encode(
        [Start(id="a", model="m"), TextDelta(0, "par"), Error("upstream died", 502, "bad_gateway")]
    )
    assert body.count(b"[DONE]") == 1
    stream = serve(body).chat.completions.create(model="m", messages=[U], stream=True)
    got: list[str] = []
    with pytest.raises(openai.APIError, match="upstream died"):
        for c in stream:
            got.append(c.choices[0].delta.content or "")
    assert "".join(got) == "par"
    # the error as the first event, and Finish after it is ignored
    body = encode([Error("nope", 429, "rate_limit"), Finish()])
    assert json.loads(body.split(b"\n\n")[0][6:])["error"]["code"] == "rate_limit_exceeded"
    assert body.count(b"[DONE]") == 1


def test_encoder_decoder_round_trip_through_accumulator() -> None:
    events = decode([encode(STREAM_EVENTS, include_usage=True)])
    acc = ResponseAccumulator(source="openai")
    for e in events:
        acc.feed(e)
    resp = acc.response()
    assert resp.parts == [
        ThinkingPart(text="Hmm. "),
        TextPart(text="héllo 🌍"),
        ToolCallPart(id="toolu_a", name="get_weather", arguments='{"city":"Oslo"}'),
        ToolCallPart(id="toolu_b", name="get_time", arguments="{}"),
    ]
    assert resp.stop_reason == "tool_use"
    assert resp.usage == Usage(input_tokens=11, output_tokens=22, reasoning_tokens=5)


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "code", "exc"),
    [
        (400, "invalid_request_error", None, openai.BadRequestError),
        (401, "authentication_error", None, openai.AuthenticationError),
        (403, "permission_error", None, openai.PermissionDeniedError),
        (404, "invalid_request_error", None, openai.NotFoundError),
        (413, "invalid_request_error", None, openai.APIStatusError),
        (422, "invalid_request_error", None, openai.UnprocessableEntityError),
        (429, "rate_limit_error", "rate_limit_exceeded", openai.RateLimitError),
        (500, "server_error", None, openai.InternalServerError),
        (502, "server_error", None, openai.InternalServerError),
        (503, "server_error", None, openai.InternalServerError),
        (504, "timeout", None, openai.InternalServerError),
    ],
)
def test_render_error(status: int, kind: str, code: str | None, exc: type[Exception]) -> None:
    body = oc.render_error(status, "went wrong")
    assert body == {"error": {"message": "went wrong", "type": kind, "param": None, "code": code}}

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, json=body)

    with pytest.raises(exc) as info:
        client(handler).chat.completions.create(model="m", messages=[U])
    assert "went wrong" in str(info.value)


# ----------------------------------------------------------------------------------------------
# Property tests: canonical -> openai -> canonical
# ----------------------------------------------------------------------------------------------

texts = st.text(max_size=12)
names = st.from_regex(r"[a-z_]{1,10}", fullmatch=True)
ids = st.from_regex(r"call_[A-Za-z0-9]{1,8}", fullmatch=True)
json_args = st.dictionaries(names, st.integers() | texts, max_size=3).map(
    lambda d: json.dumps(d, ensure_ascii=False, separators=(",", ":"))
)
images = st.one_of(
    st.builds(ImagePart, url=st.just("https://x.test/i.png")),
    st.builds(ImagePart, data=st.from_regex(r"[A-Za-z0-9+/]{4,12}", fullmatch=True),
              media_type=st.sampled_from(["image/png", "image/jpeg", "image/webp"])),
)  # fmt: skip
user_msgs = st.one_of(
    st.builds(lambda t: Message(role="user", content=[TextPart(text=t)]), texts),
    st.lists(st.one_of(st.builds(TextPart, text=texts), images), min_size=2, max_size=4).map(
        lambda parts: Message(role="user", content=parts)
    ),
)
tool_calls = st.builds(ToolCallPart, id=ids, name=names, arguments=json_args)
assistant_msgs = (
    st.tuples(st.none() | texts, st.lists(tool_calls, max_size=3))
    .filter(lambda t: t[0] is not None or t[1])
    .map(
        lambda t: Message(
            role="assistant", content=([TextPart(text=t[0])] if t[0] is not None else []) + t[1]
        )
    )
)
tool_msgs = st.builds(
    lambda i, t: Message(
        role="tool", content=[ToolResultPart(call_id=i, content=[TextPart(text=t)])]
    ),
    ids,
    texts,
)
system_msgs = st.builds(lambda t: Message(role="system", content=[TextPart(text=t)]), texts)
tools = st.builds(
    Tool,
    name=names,
    description=st.none() | texts,
    parameters=st.just({"type": "object", "properties": {"a": {"type": "string"}}}),
)


@st.composite
def canonical_requests(draw: st.DrawFn) -> ChatRequest:
    tool_list = draw(st.lists(tools, max_size=3, unique_by=lambda t: t.name))
    choice = None
    if tool_list:
        choice = draw(
            st.none()
            | st.builds(ToolChoice, mode=st.sampled_from(["auto", "none", "required"]),
                        parallel=st.none() | st.booleans())
            | st.builds(lambda n, p: ToolChoice(mode="tool", name=n, parallel=p),
                        st.sampled_from([t.name for t in tool_list]), st.none() | st.booleans())
        )  # fmt: skip
    stream = draw(st.booleans())
    return ChatRequest(
        source=draw(st.sampled_from(["anthropic", "gemini"])),
        model=draw(names),
        system=draw(st.lists(st.builds(TextPart, text=texts), max_size=1)),
        messages=[draw(user_msgs)]
        + draw(st.lists(st.one_of(user_msgs, assistant_msgs, tool_msgs, system_msgs), max_size=6)),
        tools=tool_list,
        tool_choice=choice,
        temperature=draw(st.none() | st.floats(0, 2)),
        top_p=draw(st.none() | st.floats(0, 1)),
        max_tokens=draw(st.none() | st.integers(1, 100000)),
        stop=draw(st.lists(st.text(min_size=1, max_size=5), max_size=4)),
        reasoning=draw(st.none() | st.builds(Reasoning, effort=st.sampled_from(
            ["none", "minimal", "low", "medium", "high", "xhigh"]))),
        stream=stream,
        include_usage=stream and draw(st.booleans()),
    )  # fmt: skip


def _strip(obj: Any) -> Any:
    """The canonical form without extras (markers) and the tool-result names parse fills in."""
    if isinstance(obj, list):
        return [_strip(o) for o in obj]
    if isinstance(obj, dict):
        drop = {"extras", "source"} | ({"name"} if obj.get("type") == "tool_result" else set())
        return {k: _strip(v) for k, v in obj.items() if k not in drop}
    return obj


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(canonical_requests())
def test_property_request_conversion_is_lossless(req: ChatRequest) -> None:
    body = json.loads(json.dumps(oc.render_request(req)))
    assert_sdk_valid(body)
    back = oc.parse_request(body)
    assert _strip(back.model_dump()) == _strip(req.model_dump())
    # and the same-protocol round trip of what we rendered is exact
    assert oc.render_request(back) == body


@st.composite
def canonical_responses(draw: st.DrawFn) -> ChatResponse:
    parts: list[Any] = []
    if draw(st.booleans()):
        parts.append(ThinkingPart(text=draw(st.text(min_size=1, max_size=12))))
    if draw(st.booleans()):
        parts.append(TextPart(text=draw(texts)))
    parts += draw(st.lists(tool_calls, max_size=3))
    cached = draw(st.none() | st.integers(0, 10**6))
    return ChatResponse(
        source="gemini",
        id=draw(st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True)),
        model=draw(names),
        parts=parts,
        stop_reason=draw(st.sampled_from(["end", "max_tokens", "tool_use", "filtered"])),
        usage=Usage(
            input_tokens=draw(st.integers(0, 10**6)),
            output_tokens=draw(st.integers(0, 10**6)),
            cached_tokens=cached,
            cache_creation_tokens=draw(st.none() | st.integers(0, 10**6)),
            reasoning_tokens=draw(st.none() | st.integers(0, 10**6)),
        ),
    )


@settings(max_examples=100, deadline=None)
@given(canonical_responses())
def test_property_response_conversion_is_lossless(resp: ChatResponse) -> None:
    body = json.loads(json.dumps(oc.render_response(resp)))
    back = oc.parse_response(body)
    assert _strip(back.model_dump()) == _strip(resp.model_dump())
    assert oc.render_response(back) == body


def _events_of(resp: ChatResponse) -> list[Event]:
    events: list[Event] = [Start(id=resp.id, model=resp.model)]
    for i, part in enumerate(resp.parts):
        if isinstance(part, TextPart):
            events.append(TextDelta(i, part.text))
        elif isinstance(part, ThinkingPart):
            events.append(ThinkingDelta(i, part.text))
        elif isinstance(part, ToolCallPart):
            events.append(ToolCallStart(i, part.id, part.name))
            # split the arguments in two to exercise fragments
            half = len(part.arguments) // 2
            events += [
                ToolArgsDelta(i, part.arguments[:half]),
                ToolArgsDelta(i, part.arguments[half:]),
            ]
        events.append(BlockStop(i))
    events.append(Finish(resp.stop_reason, resp.usage))
    return events


@settings(max_examples=100, deadline=None)
@given(canonical_responses(), st.integers(1, 50))
def test_property_stream_conversion_is_lossless(resp: ChatResponse, step: int) -> None:
    body = encode(_events_of(resp), include_usage=True)
    events = decode([body[i : i + step] for i in range(0, len(body), step)])
    acc = ResponseAccumulator(source="gemini")
    for e in events:
        acc.feed(e)
    got = acc.response()
    want = resp.model_copy(
        update={"parts": [p for p in resp.parts if not (isinstance(p, TextPart) and not p.text)]}
    )
    assert _strip(got.model_dump()) == _strip(want.model_dump())


def test_a_tools_stray_name_beside_its_function_is_dropped() -> None:
    """Codex 0.94 sends it; OpenAI rejects `tools[0].name`."""
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [
            {"type": "function", "name": "shell", "function": {"name": "shell", "parameters": {}}},
            {"type": "function", "function": {"name": "read", "parameters": {}}},
        ],
    }
    assert oc.drop_stray_fields(body) == ["tools[0].name"]
    assert body["tools"][0] == {"type": "function", "function": {"name": "shell", "parameters": {}}}
    assert oc.drop_stray_fields(body) == []
