"""Tests for protocol/gemini.py: SDK-captured round trips, SDK-parsed output, streams, schemas."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pydantic
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import gemini
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

MODEL = "gemini-2.5-flash"
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16

SIMPLE_RESPONSE: dict[str, Any] = {
    "candidates": [
        {
            "content": {"role": "model", "parts": [{"text": "ok"}]},
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "totalTokenCount": 4},
    "modelVersion": MODEL,
    "responseId": "resp-1",
}


def make_client(handler: Callable[[httpx.Request], httpx.Response]) -> genai.Client:
    return genai.Client(
        api_key="test-key",
        http_options=types.HttpOptions(
            base_url="http://gemini.test",
            api_version="v1beta",
            client_args={"transport": httpx.MockTransport(handler)},
        ),
    )


def sse_response(body: bytes) -> httpx.Response:
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


class Recorder:
    """A mock Gemini server: records request bodies, answers with a fixed body or stream."""

    def __init__(self, reply: dict[str, Any] | None = None, stream: bytes | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.reply = reply or SIMPLE_RESPONSE
        self.stream = stream
        self.client = make_client(self.handler)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if ":streamGenerateContent" in request.url.path:
            body = self.stream
            if body is None:
                body = b"data: " + json.dumps(self.reply).encode() + b"\r\n\r\n"
            return sse_response(body)
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json=self.reply)
        return httpx.Response(200, json=self.reply)

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.requests[-1].content)


def assert_round_trip(body: dict[str, Any], model: str = MODEL) -> ChatRequest:
    req = gemini.parse_request(body, model=model)
    assert req.source == "gemini"
    assert gemini.render_request(req) == body
    # And it survives a JSON trip of the canonical form (what the gateway may log/replay).
    again = ChatRequest.model_validate_json(req.model_dump_json())
    assert gemini.render_request(again) == body
    return req


def validate_with_sdk_types(body: dict[str, Any]) -> None:
    """A body rendered by this codec must fit google-genai's own (extra='forbid') types."""
    for content in body["contents"]:
        types.Content.model_validate(content)
    if "systemInstruction" in body:
        types.Content.model_validate(body["systemInstruction"])
    for tool in body.get("tools", ()):
        types.Tool.model_validate(tool)
    if "toolConfig" in body:
        types.ToolConfig.model_validate(body["toolConfig"])
    if "generationConfig" in body:
        types.GenerationConfig.model_validate(body["generationConfig"])
    assert set(body) <= {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}


# ----------------------------------------------------------------------------------------------
# Requests captured from google-genai: same-protocol round trip is identical
# ----------------------------------------------------------------------------------------------

WEATHER_DECL = types.FunctionDeclaration(
    name="get_weather",
    description="Weather for a city",
    parameters_json_schema={
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
        "required": ["city"],
        "additionalProperties": False,
    },
)
TIME_DECL = types.FunctionDeclaration(
    name="get_time",
    description="Local time",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={"tz": types.Schema(type=types.Type.STRING, description="IANA zone")},
        required=["tz"],
    ),
)


def _history_with_calls() -> list[types.Content]:
    return [
        types.Content(role="user", parts=[types.Part.from_text(text="Weather and time in Paris?")]),
        types.Content(
            role="model",
            parts=[
                types.Part(text="Let me think", thought=True, thought_signature=b"thinking-sig"),
                types.Part(
                    function_call=types.FunctionCall(name="get_weather", args={"city": "Paris"}),
                    thought_signature=b"call-sig",
                ),
                types.Part(
                    function_call=types.FunctionCall(name="get_time", args={"tz": "Europe/Paris"})
                ),
            ],
        ),
        types.Content(
            role="user",
            parts=[
                types.Part.from_function_response(name="get_weather", response={"temp": 21}),
                types.Part.from_function_response(name="get_time", response={"output": "12:00"}),
            ],
        ),
        types.Content(role="model", parts=[types.Part.from_text(text="21C and noon.")]),
        types.Content(role="user", parts=[types.Part.from_text(text="Thanks!")]),
    ]


SDK_CASES: dict[str, Callable[[genai.Client], Any]] = {
    "system_prompt": lambda c: c.models.generate_content(
        model=MODEL,
        contents="Hello",
        config=types.GenerateContentConfig(system_instruction="You are terse."),
    ),
    "system_parts": lambda c: c.models.generate_content(
        model=MODEL,
        contents="Hello",
        config=types.GenerateContentConfig(
            system_instruction=types.Content(
                parts=[types.Part(text="Rule one."), types.Part(text="Rule two.")]
            )
        ),
    ),
    "multi_turn": lambda c: c.models.generate_content(
        model=MODEL,
        contents=[
            types.Content(role="user", parts=[types.Part(text="Hi")]),
            types.Content(role="model", parts=[types.Part(text="Hello! How can I help?")]),
            types.Content(role="user", parts=[types.Part(text="Tell me a joke")]),
        ],
    ),
    "images": lambda c: c.models.generate_content(
        model=MODEL,
        contents=[
            types.Content(
                role="user",
                parts=[
                    types.Part.from_text(text="Compare these"),
                    types.Part.from_bytes(data=PNG_BYTES, mime_type="image/png"),
                    types.Part.from_uri(
                        file_uri="https://example.com/cat.jpg", mime_type="image/jpeg"
                    ),
                    types.Part.from_uri(
                        file_uri="gs://bucket/doc.pdf", mime_type="application/pdf"
                    ),
                ],
            )
        ],
    ),
    "tools_and_choice": lambda c: c.models.generate_content(
        model=MODEL,
        contents="Weather in Paris?",
        config=types.GenerateContentConfig(
            tools=[
                types.Tool(function_declarations=[WEATHER_DECL, TIME_DECL]),
                types.Tool(google_search=types.GoogleSearch()),
                types.Tool(code_execution=types.ToolCodeExecution()),
            ],
            tool_config=types.ToolConfig(
                function_calling_config=types.FunctionCallingConfig(
                    mode=types.FunctionCallingConfigMode.ANY,
                    allowed_function_names=["get_weather", "get_time"],
                )
            ),
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        ),
    ),
    "tool_choice_single": lambda c: c.models.generate_content(
        model=MODEL,
        contents="Weather?",
        config=types.GenerateContentConfig(
            tools=[types.Tool(function_declarations=[WEATHER_DECL])],
            tool_config=types.ToolConfig(
                function_calling_config=types.FunctionCallingConfig(
                    mode="ANY", allowed_function_names=["get_weather"]
                )
            ),
        ),
    ),
    "tool_choice_none": lambda c: c.models.generate_content(
        model=MODEL,
        contents="Weather?",
        config=types.GenerateContentConfig(
            tools=[types.Tool(function_declarations=[WEATHER_DECL])],
            tool_config=types.ToolConfig(
                function_calling_config=types.FunctionCallingConfig(mode="NONE")
            ),
        ),
    ),
    "tool_history_parallel_calls": lambda c: c.models.generate_content(
        model=MODEL,
        contents=_history_with_calls(),
        config=types.GenerateContentConfig(
            tools=[types.Tool(function_declarations=[WEATHER_DECL, TIME_DECL])]
        ),
    ),
    "tool_history_with_ids_and_text": lambda c: c.models.generate_content(
        model=MODEL,
        contents=[
            types.Content(role="user", parts=[types.Part(text="go")]),
            types.Content(
                role="model",
                parts=[
                    types.Part(
                        function_call=types.FunctionCall(id="c-1", name="get_weather", args={})
                    ),
                    types.Part(
                        function_call=types.FunctionCall(id="c-2", name="get_weather", args={})
                    ),
                ],
            ),
            types.Content(
                role="user",
                parts=[
                    types.Part(text="before"),
                    types.Part(
                        function_response=types.FunctionResponse(
                            id="c-2", name="get_weather", response={"error": "timeout"}
                        )
                    ),
                    types.Part(text="between"),
                    types.Part(
                        function_response=types.FunctionResponse(
                            id="c-1", name="get_weather", response={"temp": 3}
                        )
                    ),
                    types.Part.from_bytes(data=PNG_BYTES, mime_type="image/png"),
                ],
            ),
        ],
    ),
    "thinking_budget": lambda c: c.models.generate_content(
        model=MODEL,
        contents="Think",
        config=types.GenerateContentConfig(
            thinking_config=types.ThinkingConfig(thinking_budget=2048, include_thoughts=True)
        ),
    ),
    "thinking_off": lambda c: c.models.generate_content(
        model=MODEL,
        contents="Quick",
        config=types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=0)),
    ),
    "thinking_dynamic": lambda c: c.models.generate_content(
        model=MODEL,
        contents="Quick",
        config=types.GenerateContentConfig(
            thinking_config=types.ThinkingConfig(thinking_budget=-1, include_thoughts=False)
        ),
    ),
    "thinking_level": lambda c: c.models.generate_content(
        model="gemini-3-pro-preview",
        contents="Hard",
        config=types.GenerateContentConfig(
            thinking_config=types.ThinkingConfig(
                thinking_level=types.ThinkingLevel.HIGH, include_thoughts=True
            )
        ),
    ),
    "sampling": lambda c: c.models.generate_content(
        model=MODEL,
        contents="Write",
        config=types.GenerateContentConfig(
            temperature=0.3,
            top_p=0.8,
            top_k=40,
            max_output_tokens=256,
            stop_sequences=["END", "STOP"],
            seed=7,
            candidate_count=1,
            presence_penalty=0.1,
            frequency_penalty=0.2,
        ),
    ),
    "json_output": lambda c: c.models.generate_content(
        model=MODEL,
        contents="List",
        config=types.GenerateContentConfig(
            response_mime_type="application/json",
            response_json_schema={"type": "array", "items": {"type": "string"}},
        ),
    ),
    "safety_and_extra_body": lambda c: c.models.generate_content(
        model=MODEL,
        contents="Hi",
        config=types.GenerateContentConfig(
            safety_settings=[
                types.SafetySetting(
                    category=types.HarmCategory.HARM_CATEGORY_HATE_SPEECH,
                    threshold=types.HarmBlockThreshold.BLOCK_NONE,
                )
            ],
            cached_content="cachedContents/abc",
            http_options=types.HttpOptions(
                extra_body={"futureField": {"x": 1}, "generationConfig": {"temperature": 0.5}}
            ),
        ),
    ),
    "code_execution_history": lambda c: c.models.generate_content(
        model=MODEL,
        contents=[
            types.Content(role="user", parts=[types.Part(text="compute")]),
            types.Content(
                role="model",
                parts=[
                    types.Part.from_executable_code(
                        code="print(1)", language=types.Language.PYTHON
                    ),
                    types.Part.from_code_execution_result(
                        outcome=types.Outcome.OUTCOME_OK, output="1\n"
                    ),
                    types.Part(text="It prints 1."),
                ],
            ),
            types.Content(role="user", parts=[types.Part(text="and 2?")]),
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(SDK_CASES))
def test_sdk_request_round_trip(case: str) -> None:
    server = Recorder()
    SDK_CASES[case](server.client)
    body = server.body
    assert ":generateContent" in server.requests[-1].url.path
    assert_round_trip(body)


def test_sdk_stream_request_round_trip_and_url() -> None:
    server = Recorder()
    for _ in server.client.models.generate_content_stream(
        model=MODEL,
        contents=_history_with_calls(),
        config=types.GenerateContentConfig(
            system_instruction="sys",
            tools=[types.Tool(function_declarations=[WEATHER_DECL])],
            thinking_config=types.ThinkingConfig(include_thoughts=True),
        ),
    ):
        pass
    request = server.requests[-1]
    assert request.url.path.endswith(f"models/{MODEL}:streamGenerateContent")
    assert request.url.params["alt"] == "sse"
    req = assert_round_trip(server.body)
    assert req.reasoning == Reasoning(include_thoughts=True)


def test_sdk_chat_session_round_trip() -> None:
    server = Recorder()
    chat = server.client.chats.create(
        model=MODEL, config=types.GenerateContentConfig(system_instruction="Be nice")
    )
    chat.send_message("first")
    chat.send_message("second")
    req = assert_round_trip(server.body)
    assert [m.role for m in req.messages] == ["user", "assistant", "user"]
    assert req.messages[1].text() == "ok"


def test_sdk_request_canonical_content() -> None:
    server = Recorder()
    SDK_CASES["tool_history_parallel_calls"](server.client)
    req = gemini.parse_request(server.body, model=MODEL)
    roles = [m.role for m in req.messages]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]
    thinking, call1, call2 = req.messages[1].content
    assert isinstance(thinking, ThinkingPart) and thinking.signature
    assert isinstance(call1, ToolCallPart) and isinstance(call2, ToolCallPart)
    assert (call1.name, json.loads(call1.arguments)) == ("get_weather", {"city": "Paris"})
    assert call1.signature and call2.signature is None
    assert call1.id != call2.id
    r1, r2 = req.messages[2].content
    assert isinstance(r1, ToolResultPart) and isinstance(r2, ToolResultPart)
    assert (r1.call_id, r1.name) == (call1.id, "get_weather")
    assert (r2.call_id, r2.name) == (call2.id, "get_time")
    assert r1.content[0].text == '{"temp":21}'  # type: ignore[union-attr]
    assert r2.content[0].text == "12:00"  # type: ignore[union-attr]
    assert [t.name for t in req.tools] == ["get_weather", "get_time"]


def test_sdk_request_ids_error_and_merge() -> None:
    server = Recorder()
    SDK_CASES["tool_history_with_ids_and_text"](server.client)
    req = gemini.parse_request(server.body, model=MODEL)
    assert [m.role for m in req.messages] == ["user", "assistant", "tool", "user"]
    r_first, r_second = req.messages[2].content
    assert isinstance(r_first, ToolResultPart) and isinstance(r_second, ToolResultPart)
    assert (r_first.call_id, r_first.is_error, r_first.content[0].text) == ("c-2", True, "timeout")  # type: ignore[union-attr]
    assert (r_second.call_id, r_second.is_error) == ("c-1", False)
    texts = [p for p in req.messages[3].content if isinstance(p, TextPart)]
    assert [t.text for t in texts] == ["before", "between"]
    assert isinstance(req.messages[3].content[-1], ImagePart)


def test_sdk_request_canonical_config() -> None:
    server = Recorder()
    SDK_CASES["sampling"](server.client)
    req = gemini.parse_request(server.body, model=MODEL)
    assert (req.temperature, req.top_p, req.top_k, req.max_tokens) == (0.3, 0.8, 40, 256)
    assert req.stop == ["END", "STOP"]
    server = Recorder()
    SDK_CASES["tools_and_choice"](server.client)
    req = gemini.parse_request(server.body, model=MODEL)
    assert req.tool_choice == ToolChoice(mode="required")
    assert req.tools[0].parameters["required"] == ["city"]
    server = Recorder()
    SDK_CASES["tool_choice_single"](server.client)
    assert gemini.parse_request(server.body, model=MODEL).tool_choice == ToolChoice(
        mode="tool", name="get_weather"
    )
    server = Recorder()
    SDK_CASES["thinking_level"](server.client)
    req = gemini.parse_request(server.body, model="models/gemini-3-pro-preview")
    assert req.model == "gemini-3-pro-preview"
    assert req.reasoning == Reasoning(effort="high", include_thoughts=True, enabled=True)
    server = Recorder()
    SDK_CASES["thinking_off"](server.client)
    reasoning = gemini.parse_request(server.body, model=MODEL).reasoning
    assert reasoning is not None and reasoning.enabled is False
    server = Recorder()
    SDK_CASES["images"](server.client)
    parts = gemini.parse_request(server.body, model=MODEL).messages[0].content
    assert isinstance(parts[1], ImagePart) and parts[1].media_type == "image/png"
    assert isinstance(parts[2], ImagePart) and parts[2].url == "https://example.com/cat.jpg"
    assert isinstance(parts[3], OpaquePart)


# ----------------------------------------------------------------------------------------------
# Hand-written bodies: Gemini CLI (camelCase, parametersJsonSchema) and snake_case REST
# ----------------------------------------------------------------------------------------------


def gemini_cli_body() -> dict[str, Any]:
    system = "You are an interactive CLI agent. " + "Follow the rules carefully. " * 1100
    assert len(system) > 30_000
    return {
        "contents": [
            {"role": "user", "parts": [{"text": "This is the Gemini CLI. Setting up context."}]},
            {"role": "model", "parts": [{"text": "Got it. Thanks for the context!"}]},
            {"role": "user", "parts": [{"text": "list the files"}]},
            {
                "role": "model",
                "parts": [
                    {"text": "**Listing**", "thought": True},
                    {
                        "functionCall": {
                            "id": "list_directory-1730-abc",
                            "name": "list_directory",
                            "args": {"path": "/home/u/p"},
                        },
                        "thoughtSignature": "CiQB0e2Kb8v1",
                    },
                ],
            },
            {
                "role": "user",
                "parts": [
                    {
                        "functionResponse": {
                            "id": "list_directory-1730-abc",
                            "name": "list_directory",
                            "response": {"output": "a.py\nb.py"},
                        }
                    }
                ],
            },
            {"role": "model", "parts": [{"text": "Two files.", "thoughtSignature": "Q2lR"}]},
            {"role": "user", "parts": [{"text": "thanks"}]},
        ],
        "systemInstruction": {"role": "user", "parts": [{"text": system}]},
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "list_directory",
                        "description": "Lists a directory.",
                        "parametersJsonSchema": {
                            "type": "object",
                            "properties": {
                                "path": {"type": "string", "description": "Absolute path"},
                                "ignore": {"type": "array", "items": {"type": "string"}},
                            },
                            "required": ["path"],
                        },
                    },
                    {"name": "no_args_tool", "description": "Takes nothing."},
                ]
            }
        ],
        "generationConfig": {
            "temperature": 0,
            "topP": 1,
            "thinkingConfig": {"includeThoughts": True},
        },
    }


def test_gemini_cli_body_round_trip() -> None:
    body = gemini_cli_body()
    req = assert_round_trip(body)
    assert len(req.system_text()) > 30_000
    assert req.tools[0].extras["schema_key"] == "parametersJsonSchema"
    assert req.tools[1].parameters == {"type": "object", "properties": {}}
    call = req.messages[3].content[1]
    assert isinstance(call, ToolCallPart) and call.id == "list_directory-1730-abc"
    result = req.messages[4].content[0]
    assert isinstance(result, ToolResultPart) and result.call_id == call.id
    assert result.content[0].text == "a.py\nb.py"  # type: ignore[union-attr]
    assert req.messages[4].role == "tool"


def test_snake_case_rest_body_round_trip() -> None:
    body = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "hi"},
                    {"inline_data": {"mime_type": "image/webp", "data": "UklGRg=="}},
                    {"file_data": {"file_uri": "gs://b/i.png"}},
                ],
            },
            {
                "role": "model",
                "parts": [
                    {
                        "function_call": {"name": "f", "args": {"a": [1, 2]}},
                        "thought_signature": "c2ln",
                    }
                ],
            },
            {"role": "function", "parts": [{"function_response": {"name": "f", "response": "x"}}]},
            {"parts": [{"text": "no role here"}]},
        ],
        "system_instruction": {"parts": [{"text": "snake"}]},
        "tools": [
            {"function_declarations": [{"name": "f", "parameters_json_schema": {"type": "object"}}]}
        ],
        "tool_config": {"function_calling_config": {"mode": "auto"}},
        "generation_config": {
            "max_output_tokens": 10,
            "top_k": 2.5,
            "stop_sequences": [],
            "thinking_config": {"thinking_budget": 100},
            "response_mime_type": "text/plain",
        },
        "safety_settings": [],
        "cached_content": "cachedContents/x",
        "labels": {"team": "a"},
    }
    req = assert_round_trip(body)
    assert req.max_tokens == 10 and req.top_k == 2
    assert req.tool_choice == ToolChoice(mode="auto")
    assert req.reasoning == Reasoning(budget_tokens=100, enabled=True)
    assert [m.role for m in req.messages] == ["user", "assistant", "tool", "user"]
    image = req.messages[0].content[2]
    assert isinstance(image, ImagePart) and image.url == "gs://b/i.png"


def test_round_trip_odd_shapes() -> None:
    bodies: list[dict[str, Any]] = [
        {"contents": []},
        {"contents": [{"role": "user"}], "systemInstruction": "bare string"},
        {"contents": [{"role": "user", "parts": []}], "systemInstruction": {"parts": []}},
        {"contents": [{"role": "user", "parts": [{"text": ""}]}], "generationConfig": {}},
        {
            "contents": [{"role": "user", "parts": [{"text": "x"}]}],
            "systemInstruction": {
                "parts": [{"text": "a"}, {"inlineData": {"mimeType": "text/plain", "data": "YQ=="}}]
            },
            "tools": [{"functionDeclarations": []}, {"urlContext": {}}],
            "toolConfig": {"retrievalConfig": {"languageCode": "en"}},
        },
        {
            "contents": [
                {
                    "role": "model",
                    "parts": [{"text": "", "thought": True, "thoughtSignature": "c2ln"}],
                },
                {
                    "role": "model",
                    "parts": [{"functionCall": {"name": "f"}}, {"videoMetadata": {}}],
                },
                {
                    "role": "user",
                    "parts": [
                        {
                            "functionResponse": {
                                "name": "f",
                                "response": {"a": 1},
                                "willContinue": False,
                            },
                            "partMetadata": {"k": 1},
                        }
                    ],
                },
                {
                    "role": "user",
                    "parts": [{"functionResponse": {"name": "orphan", "response": {}}}],
                },
            ],
            "generationConfig": {"thinkingConfig": {"thinkingLevel": "low", "thinkingBudget": 5}},
        },
    ]
    for body in bodies:
        assert_round_trip(body)


# ----------------------------------------------------------------------------------------------
# Converting from another protocol: bodies the real API (and the SDK's types) accept
# ----------------------------------------------------------------------------------------------


def foreign_request(**kw: Any) -> ChatRequest:
    base: dict[str, Any] = {"source": "anthropic", "model": MODEL}
    base.update(kw)
    return ChatRequest(**base)


def test_convert_full_conversation() -> None:
    req = foreign_request(
        system=[TextPart(text="Be brief."), TextPart(text="Use tools.")],
        messages=[
            Message(
                role="user",
                content=[
                    TextPart(text="Look"),
                    ImagePart(data="iVBORw0KGgo=", media_type="image/png"),
                    ImagePart(url="https://x.test/a.webp"),
                    ImagePart(url="data:image/gif;base64,R0lGODlh"),
                ],
            ),
            Message(
                role="assistant",
                content=[
                    ThinkingPart(text="hmm", signature="anthropic-sig"),
                    TextPart(text="Checking"),
                    ToolCallPart(id="toolu_1", name="get_weather", arguments='{"city":"Paris"}'),
                    ToolCallPart(id="toolu_2", name="get_time", arguments="not json"),
                    OpaquePart(protocol="anthropic", data={"type": "document"}),
                ],
            ),
            Message(
                role="tool",
                content=[ToolResultPart(call_id="toolu_1", content=[TextPart(text='{"temp":21}')])],
            ),
            Message(
                role="tool",
                content=[
                    ToolResultPart(
                        call_id="toolu_2", content=[TextPart(text="boom")], is_error=True
                    )
                ],
            ),
            Message(role="user", content=[TextPart(text="and tomorrow?")]),
            Message(role="system", content=[TextPart(text="Injected reminder")]),
        ],
        tools=[
            Tool(
                name="get_weather",
                description="Weather",
                parameters={
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "properties": {"city": {"type": "string", "format": "uri"}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
            ),
            Tool(name="get_time"),
        ],
        tool_choice=ToolChoice(mode="tool", name="get_weather"),
        temperature=0.2,
        top_p=0.9,
        top_k=5,
        max_tokens=1000,
        stop=["###"],
        reasoning=Reasoning(effort="medium", include_thoughts=True),
        extras={"metadata": {"user_id": "u"}},
    )
    body = gemini.render_request(req)
    validate_with_sdk_types(body)
    assert "model" not in body
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Use tools."}]}
    contents = body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    user_parts = contents[0]["parts"]
    assert user_parts[1] == {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    assert user_parts[2] == {
        "fileData": {"mimeType": "image/webp", "fileUri": "https://x.test/a.webp"}
    }
    assert user_parts[3] == {"inlineData": {"mimeType": "image/gif", "data": "R0lGODlh"}}
    model_parts = contents[1]["parts"]
    assert model_parts == [
        {"text": "Checking"},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "get_time", "args": {}}},
    ]
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
        {"functionResponse": {"name": "get_time", "response": {"error": "boom"}}},
        {"text": "and tomorrow?"},
        {"text": "Injected reminder"},
    ]
    decls = body["tools"][0]["functionDeclarations"]
    assert decls[0]["parameters"] == {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    assert decls[1]["parameters"] == {"type": "object", "properties": {}}
    assert body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    assert body["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "topK": 5,
        "maxOutputTokens": 1000,
        "stopSequences": ["###"],
        "thinkingConfig": {
            "thinkingBudget": gemini.EFFORT_BUDGET["medium"],
            "includeThoughts": True,
        },
    }
    # Parsed back as Gemini, the conversation keeps its shape (ids are regenerated).
    back = gemini.parse_request(body, model=MODEL)
    results = [p for m in back.messages for p in m.content if isinstance(p, ToolResultPart)]
    calls = [p for m in back.messages for p in m.content if isinstance(p, ToolCallPart)]
    assert [r.call_id for r in results] == [c.id for c in calls]
    assert results[1].is_error


def test_convert_gemini3_gets_dummy_signatures() -> None:
    req = foreign_request(
        model="gemini-3-pro-preview",
        messages=[
            Message(role="user", content=[TextPart(text="hi")]),
            Message(role="assistant", content=[ToolCallPart(id="a", name="f", arguments="{}")]),
            Message(
                role="tool",
                content=[ToolResultPart(call_id="a", name="f", content=[TextPart(text="ok")])],
            ),
        ],
    )
    body = gemini.render_request(req)
    validate_with_sdk_types(body)
    assert body["contents"][1]["parts"][0]["thoughtSignature"] == gemini.SKIP_SIGNATURE
    assert body["contents"][2]["parts"][0] == {
        "functionResponse": {"name": "f", "response": {"result": "ok"}}
    }
    body25 = gemini.render_request(req.model_copy(update={"model": MODEL}))
    assert "thoughtSignature" not in body25["contents"][1]["parts"][0]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (ToolChoice(mode="auto"), {"mode": "AUTO"}),
        (ToolChoice(mode="none"), {"mode": "NONE"}),
        (ToolChoice(mode="required"), {"mode": "ANY"}),
        (ToolChoice(mode="tool", name="f"), {"mode": "ANY", "allowedFunctionNames": ["f"]}),
    ],
)
def test_convert_tool_choice(choice: ToolChoice, expected: dict[str, Any]) -> None:
    body = gemini.render_request(foreign_request(tools=[Tool(name="f")], tool_choice=choice))
    assert body["toolConfig"] == {"functionCallingConfig": expected}
    validate_with_sdk_types(body)


@pytest.mark.parametrize(
    ("reasoning", "expected"),
    [
        (
            Reasoning(budget_tokens=3000, enabled=True),
            {"thinkingBudget": 3000, "includeThoughts": True},
        ),
        (Reasoning(effort="low"), {"thinkingBudget": 1024, "includeThoughts": True}),
        (
            Reasoning(effort="high", budget_tokens=99),
            {"thinkingBudget": 99, "includeThoughts": True},
        ),
        (
            Reasoning(effort="high", budget_tokens=99, include_thoughts=False),
            {"thinkingBudget": 99, "includeThoughts": False},
        ),
        (Reasoning(effort="none"), {"thinkingBudget": 0}),
        (Reasoning(enabled=False), {"thinkingBudget": 0}),
        (
            Reasoning(enabled=True, include_thoughts=True),
            {"thinkingBudget": -1, "includeThoughts": True},
        ),
    ],
)
def test_convert_reasoning(reasoning: Reasoning, expected: dict[str, Any]) -> None:
    body = gemini.render_request(foreign_request(reasoning=reasoning))
    assert body["generationConfig"]["thinkingConfig"] == expected
    validate_with_sdk_types(body)


def test_same_protocol_edits_are_rendered() -> None:
    req = gemini.parse_request(gemini_cli_body(), model=MODEL)
    req.temperature = 0.7
    req.reasoning = Reasoning(budget_tokens=10, enabled=True)
    req.tool_choice = ToolChoice(mode="none")
    req.tools.append(
        Tool(name="added", parameters={"type": "object", "additionalProperties": False})
    )
    req.messages.append(Message(role="user", content=[TextPart(text="more")]))
    body = gemini.render_request(req)
    assert body["generationConfig"]["temperature"] == 0.7
    assert body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 10}
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}
    decls = body["tools"][0]["functionDeclarations"]
    assert decls[-1] == {"name": "added", "parameters": {"type": "object"}}
    assert body["contents"][-1] == {"parts": [{"text": "more"}], "role": "user"}


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ([], "JSON object"),
        ({}, "contents"),
        ({"contents": {"role": "user"}}, "contents must be a list"),
        ({"contents": ["hi"]}, "contents[0]"),
        ({"contents": [{"role": "assistant", "parts": []}]}, "role"),
        ({"contents": [{"role": "user", "parts": "hi"}]}, "parts"),
        ({"contents": [{"role": "user", "parts": ["hi"]}]}, "parts[0]"),
        ({"contents": [{"role": "user", "parts": [{"text": 3}]}]}, "text"),
        ({"contents": [{"role": "model", "parts": [{"functionCall": {"args": {}}}]}]}, "name"),
        (
            {
                "contents": [
                    {"role": "model", "parts": [{"functionCall": {"name": "f", "args": "{}"}}]}
                ]
            },
            "args",
        ),
        (
            {"contents": [{"role": "user", "parts": [{"functionResponse": {"response": {}}}]}]},
            "functionResponse.name",
        ),
        ({"contents": [{"role": "user", "parts": [{"inlineData": "abc"}]}]}, "inlineData"),
        (
            {"contents": [{"role": "user", "parts": [{"text": "x", "thoughtSignature": 5}]}]},
            "thoughtSignature",
        ),
        ({"contents": [], "systemInstruction": 5}, "systemInstruction"),
        ({"contents": [], "systemInstruction": {"parts": "x"}}, "systemInstruction.parts"),
        ({"contents": [], "generationConfig": []}, "generationConfig"),
        ({"contents": [], "generationConfig": {"temperature": "hot"}}, "temperature"),
        ({"contents": [], "generationConfig": {"temperature": True}}, "temperature"),
        ({"contents": [], "generationConfig": {"maxOutputTokens": 1.5}}, "maxOutputTokens"),
        ({"contents": [], "generationConfig": {"topP": "x"}}, "topP"),
        ({"contents": [], "generationConfig": {"stopSequences": "END"}}, "stopSequences"),
        ({"contents": [], "generationConfig": {"thinkingConfig": 1}}, "thinkingConfig"),
        (
            {"contents": [], "generationConfig": {"thinkingConfig": {"thinkingBudget": "x"}}},
            "thinkingBudget",
        ),
        (
            {"contents": [], "generationConfig": {"thinkingConfig": {"includeThoughts": "yes"}}},
            "includeThoughts",
        ),
        ({"contents": [], "tools": {}}, "tools"),
        ({"contents": [], "tools": [{"functionDeclarations": {}}]}, "functionDeclarations"),
        ({"contents": [], "tools": [{"functionDeclarations": [{"description": "x"}]}]}, "name"),
        (
            {
                "contents": [],
                "tools": [{"functionDeclarations": [{"name": "f", "parameters": []}]}],
            },
            "parameters",
        ),
        ({"contents": [], "toolConfig": []}, "toolConfig"),
        ({"contents": [], "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}}, "mode"),
        (
            {
                "contents": [],
                "toolConfig": {"functionCallingConfig": {"allowedFunctionNames": "f"}},
            },
            "allowedFunctionNames",
        ),
    ],
)
def test_bad_requests(body: Any, needle: str) -> None:
    with pytest.raises(ProtocolError) as info:
        gemini.parse_request(body, model=MODEL)
    assert needle in str(info.value)


def test_bad_responses() -> None:
    with pytest.raises(ProtocolError):
        gemini.parse_response([])  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="quota"):
        gemini.parse_response(
            {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}
        )


# ----------------------------------------------------------------------------------------------
# Responses: parse, same-protocol round trip, and what the SDK makes of render_response
# ----------------------------------------------------------------------------------------------

REAL_RESPONSES: list[dict[str, Any]] = [
    {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"text": "**Plan**\nCheck the weather.", "thought": True},
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                            "thoughtSignature": "CiQB0e2Kb8v1",
                        },
                        {"functionCall": {"name": "get_time", "args": {"tz": "CET"}}},
                    ],
                    "role": "model",
                },
                "finishReason": "STOP",
                "index": 0,
                "finishMessage": "Model generated function call(s).",
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 120,
            "candidatesTokenCount": 30,
            "totalTokenCount": 190,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 120}],
            "thoughtsTokenCount": 40,
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "aBcD1234efGh",
    },
    {
        "candidates": [
            {
                "content": {
                    "parts": [{"text": "Bonjour 🌍", "thoughtSignature": "Q2lR"}],
                    "role": "model",
                },
                "finishReason": "MAX_TOKENS",
                "avgLogprobs": -0.5,
                "safetyRatings": [
                    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"}
                ],
                "citationMetadata": {"citationSources": [{"startIndex": 0, "endIndex": 3}]},
                "groundingMetadata": {"webSearchQueries": ["x"]},
            },
            {
                "content": {"parts": [{"text": "other"}], "role": "model"},
                "finishReason": "STOP",
                "index": 1,
            },
        ],
        "usageMetadata": {
            "promptTokenCount": 5,
            "candidatesTokenCount": 2,
            "totalTokenCount": 7,
            "cachedContentTokenCount": 4,
        },
        "modelVersion": "gemini-2.5-pro",
        "responseId": "r2",
        "createTime": "2025-01-01T00:00:00Z",
    },
    {
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "r3",
    },
    {
        "candidates": [{"content": {"role": "model"}, "finishReason": "RECITATION", "index": 0}],
        "modelVersion": "gemini-2.5-flash",
    },
    {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"executableCode": {"language": "PYTHON", "code": "print(2)"}},
                        {"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": "2"}},
                        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                        {"text": "Done", "thought": False},
                    ],
                    "role": "model",
                },
                "finishReason": "MALFORMED_FUNCTION_CALL",
                "index": 0,
            }
        ],
        "responseId": "r4",
        "modelVersion": "gemini-2.5-flash",
    },
]


@pytest.mark.parametrize("index", range(len(REAL_RESPONSES)))
def test_response_round_trip(index: int) -> None:
    body = REAL_RESPONSES[index]
    resp = gemini.parse_response(body)
    assert resp.source == "gemini"
    assert gemini.render_response(resp) == body
    again = ChatResponse.model_validate_json(resp.model_dump_json())
    assert gemini.render_response(again) == body


def test_parse_response_canonical() -> None:
    resp = gemini.parse_response(REAL_RESPONSES[0])
    assert resp.stop_reason == "tool_use"
    assert (resp.id, resp.model) == ("aBcD1234efGh", "gemini-2.5-flash")
    thinking, call1, call2 = resp.parts
    assert isinstance(thinking, ThinkingPart) and thinking.text.startswith("**Plan**")
    assert isinstance(call1, ToolCallPart) and call1.signature == "CiQB0e2Kb8v1"
    assert isinstance(call2, ToolCallPart) and call1.id != call2.id
    assert call1.id.startswith("call_aBcD1234_")
    assert resp.usage == Usage(input_tokens=120, output_tokens=70, reasoning_tokens=40)
    assert gemini.parse_response(REAL_RESPONSES[1]).stop_reason == "max_tokens"
    assert gemini.parse_response(REAL_RESPONSES[1]).usage.cached_tokens == 4
    assert gemini.parse_response(REAL_RESPONSES[2]).stop_reason == "filtered"
    assert gemini.parse_response(REAL_RESPONSES[3]).stop_reason == "filtered"
    assert gemini.parse_response(REAL_RESPONSES[4]).stop_reason == "end"


def sdk_generate(body: dict[str, Any]) -> types.GenerateContentResponse:
    server = Recorder(reply=body)
    return server.client.models.generate_content(model=MODEL, contents="hi")


def test_sdk_parses_rendered_response() -> None:
    resp = ChatResponse(
        source="anthropic",
        id="msg_01",
        model="claude-x",
        parts=[
            ThinkingPart(text="pondering", signature="RXVnZW5l"),
            ThinkingPart(text="secret", redacted=True),
            TextPart(text="Here you go: "),
            ToolCallPart(
                id="toolu_9", name="get_weather", arguments='{"city":"Oslo","days":[1,2]}'
            ),
            ToolCallPart(id="toolu_10", name="noop", arguments="", signature="not base64!"),
            OpaquePart(protocol="anthropic", data={"type": "x"}),
        ],
        stop_reason="tool_use",
        usage=Usage(input_tokens=50, output_tokens=20, reasoning_tokens=5, cached_tokens=10),
    )
    body = gemini.render_response(resp)
    out = sdk_generate(body)
    assert out.text == "Here you go: "
    calls = out.function_calls or []
    assert [(c.id, c.name, c.args) for c in calls] == [
        ("toolu_9", "get_weather", {"city": "Oslo", "days": [1, 2]}),
        ("toolu_10", "noop", {}),
    ]
    parts = out.candidates[0].content.parts  # type: ignore[index, union-attr]
    assert parts is not None and parts[0].thought is True and parts[0].text == "pondering"
    assert parts[0].thought_signature == b"Eugene"
    assert out.candidates[0].finish_reason == types.FinishReason.STOP  # type: ignore[index]
    usage = out.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.thoughts_token_count) == (
        50,
        15,
        5,
    )
    assert (usage.total_token_count, usage.cached_content_token_count) == (70, 10)
    assert (out.response_id, out.model_version) == ("msg_01", "claude-x")


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("max_tokens", "MAX_TOKENS"),
        ("filtered", "SAFETY"),
        ("end", "STOP"),
        ("loop_halted", "STOP"),
        ("error", "OTHER"),
    ],
)
def test_sdk_finish_reasons(stop: Any, finish: str) -> None:
    resp = ChatResponse(
        source="openai", id="x", model="m", parts=[TextPart(text="t")], stop_reason=stop
    )
    out = sdk_generate(gemini.render_response(resp))
    assert out.candidates[0].finish_reason == types.FinishReason(finish)  # type: ignore[index]


def test_sdk_parses_same_protocol_responses() -> None:
    for body in REAL_RESPONSES:
        rendered = gemini.render_response(gemini.parse_response(body))
        sdk_generate(rendered)  # validates


# ----------------------------------------------------------------------------------------------
# Stream decoder
# ----------------------------------------------------------------------------------------------

STREAM_CHUNKS: list[dict[str, Any]] = [
    {
        "candidates": [
            {
                "content": {
                    "parts": [{"text": "**Planning** the answer", "thought": True}],
                    "role": "model",
                },
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-abc123",
    },
    {
        "candidates": [
            {
                "content": {
                    "parts": [{"text": " héllo 🌍 thoughts", "thought": True}],
                    "role": "model",
                },
                "index": 0,
            }
        ],
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-abc123",
    },
    {
        "candidates": [
            {
                "content": {
                    "parts": [{"text": "Héllo 🌍, ", "thoughtSignature": "c2lnLXRleHQ="}],
                    "role": "model",
                },
                "index": 0,
            }
        ],
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-abc123",
    },
    {
        "candidates": [
            {"content": {"parts": [{"text": "checking both cities."}], "role": "model"}, "index": 0}
        ],
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-abc123",
    },
    {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Zürich"}},
                            "thoughtSignature": "c2lnLWNhbGw=",
                        },
                        {"functionCall": {"name": "get_time", "args": {"tz": "Europe/Paris"}}},
                    ],
                    "role": "model",
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 12,
            "candidatesTokenCount": 30,
            "totalTokenCount": 90,
            "thoughtsTokenCount": 48,
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-abc123",
    },
]


def stream_bytes(chunks: list[dict[str, Any]], sep: bytes = b"\r\n\r\n") -> bytes:
    return b"".join(b"data: " + json.dumps(c, ensure_ascii=False).encode() + sep for c in chunks)


EXPECTED_EVENTS: list[Event] = [
    Start(id="resp-abc123", model="gemini-2.5-flash", usage=Usage(input_tokens=12)),
    ThinkingDelta(0, "**Planning** the answer"),
    ThinkingDelta(0, " héllo 🌍 thoughts"),
    ThinkingDelta(0, "", "c2lnLXRleHQ="),
    BlockStop(0),
    TextDelta(1, "Héllo 🌍, "),
    TextDelta(1, "checking both cities."),
    BlockStop(1),
    ToolCallStart(2, "call_resp-abc_0_get_weather", "get_weather", "c2lnLWNhbGw="),
    ToolArgsDelta(2, '{"city":"Zürich"}'),
    BlockStop(2),
    ToolCallStart(3, "call_resp-abc_1_get_time", "get_time"),
    ToolArgsDelta(3, '{"tz":"Europe/Paris"}'),
    BlockStop(3),
    Finish("tool_use", Usage(input_tokens=12, output_tokens=78, reasoning_tokens=48)),
]


def decode(pieces: Iterator[bytes] | list[bytes]) -> list[Event]:
    dec = gemini.StreamDecoder()
    events: list[Event] = []
    for piece in pieces:
        events.extend(dec.feed(piece))
    events.extend(dec.close())
    assert dec.close() == []
    return events


def test_decoder_realistic_stream() -> None:
    assert decode([stream_bytes(STREAM_CHUNKS)]) == EXPECTED_EVENTS


def test_decoder_every_split_point() -> None:
    data = stream_bytes(STREAM_CHUNKS)
    for cut in range(len(data) + 1):
        assert decode([data[:cut], data[cut:]]) == EXPECTED_EVENTS, cut


def test_decoder_three_way_splits_lf_and_byte_by_byte() -> None:
    data = stream_bytes(STREAM_CHUNKS, sep=b"\n\n")
    step = max(1, len(data) // 40)
    for a in range(0, len(data), step):
        for b in range(a, len(data), step * 3):
            assert decode([data[:a], data[a:b], data[b:]]) == EXPECTED_EVENTS
    assert decode(data[i : i + 1] for i in range(len(data))) == EXPECTED_EVENTS
    crlf = stream_bytes(STREAM_CHUNKS)
    assert decode(crlf[i : i + 1] for i in range(len(crlf))) == EXPECTED_EVENTS


def test_decoder_accumulates_response() -> None:
    acc = ResponseAccumulator(source="gemini")
    for event in EXPECTED_EVENTS:
        acc.feed(event)
    resp = acc.response()
    assert [type(p).__name__ for p in resp.parts] == [
        "ThinkingPart",
        "TextPart",
        "ToolCallPart",
        "ToolCallPart",
    ]
    assert resp.parts[0].signature == "c2lnLXRleHQ="  # type: ignore[union-attr]
    assert resp.stop_reason == "tool_use"


def test_decoder_edge_cases() -> None:
    # Text-only stream without a finish reason or usage, body just ends mid-way (no blank line).
    events = decode([b'data: {"candidates":[{"content":{"parts":[{"text":"hi"}]}}]}'])
    assert events == [Start(id="", model=""), TextDelta(0, "hi"), BlockStop(0), Finish("end")]
    # Empty body.
    assert decode([b""]) == [Start(id="", model=""), Finish("end")]
    # A signature on a text part with no thinking before it; MAX_TOKENS.
    chunks: list[dict[str, Any]] = [
        {"candidates": [{"content": {"parts": [{"text": "a"}]}}], "responseId": "r"},
        {
            "candidates": [
                {
                    "content": {"parts": [{"text": "", "thoughtSignature": "c2ln"}]},
                    "finishReason": "MAX_TOKENS",
                }
            ]
        },
    ]
    assert decode([stream_bytes(chunks)]) == [
        Start(id="r", model=""),
        TextDelta(0, "a"),
        BlockStop(0),
        ThinkingDelta(1, "", "c2ln"),
        BlockStop(1),
        Finish("max_tokens"),
    ]
    # Prompt blocked: no candidates at all.
    blocked = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 3},
    }
    assert decode([stream_bytes([blocked])])[-1] == Finish("filtered", Usage(input_tokens=3))
    # Mid-stream error payload.
    err = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    events = decode([stream_bytes([STREAM_CHUNKS[3], err])])
    assert Error("The model is overloaded.", 503, "overloaded") in events
    assert events[-1] == Finish("error")
    # A plain JSON error body (not SSE), as sent with an HTTP error status.
    events = decode([json.dumps([err], indent=2).encode()])
    assert events == [
        Start(id="", model=""),
        Error("The model is overloaded.", 503, "overloaded"),
        Finish("error"),
    ]
    # Comments, keep-alives and junk are ignored.
    assert decode([b": ping\r\n\r\ndata: not json\r\n\r\n"]) == [
        Start(id="", model=""),
        Finish("end"),
    ]


# ----------------------------------------------------------------------------------------------
# Stream encoder, read back by google-genai
# ----------------------------------------------------------------------------------------------


def encode(events: list[Event], **kw: Any) -> bytes:
    enc = gemini.StreamEncoder(**kw)
    data = b"".join(enc.feed(e) for e in events) + enc.close()
    assert enc.close() == b""
    return data


_STREAM_SERVER: list[Recorder] = []


def sdk_stream(data: bytes) -> list[types.GenerateContentResponse]:
    """What google-genai's streaming API yields for `data` (one shared mock client)."""
    if not _STREAM_SERVER:
        _STREAM_SERVER.append(Recorder())
    server = _STREAM_SERVER[0]
    server.stream = data
    return list(server.client.models.generate_content_stream(model=MODEL, contents="hi"))


def test_encoder_stream_read_by_sdk() -> None:
    events: list[Event] = [
        Start(id="msg_1", model="claude-x", usage=Usage(input_tokens=30)),
        ThinkingDelta(0, "Let me "),
        ThinkingDelta(0, "think."),
        ThinkingDelta(0, "", "RXVnZW5l"),
        BlockStop(0),
        TextDelta(1, "Héllo "),
        TextDelta(1, "🌍"),
        BlockStop(1),
        ToolCallStart(2, "toolu_a", "get_weather"),
        ToolCallStart(3, "toolu_b", "get_time"),
        ToolArgsDelta(2, '{"city":'),
        ToolArgsDelta(3, '{"tz":"UTC"}'),
        ToolArgsDelta(2, '"Oslo"}'),
        BlockStop(3),
        ToolCallStart(4, "toolu_c", "noop"),
        Finish("tool_use", Usage(output_tokens=40, reasoning_tokens=10)),
    ]
    data = encode(events, model="gemini-2.5-flash")
    assert data.count(b"\r\n\r\n") == data.count(b"data: ")
    chunks = sdk_stream(data)
    parts = [p for c in chunks for p in (c.candidates[0].content.parts or [])]  # type: ignore[index, union-attr]
    thoughts = "".join(p.text or "" for p in parts if p.thought)
    text = "".join(p.text or "" for p in parts if not p.thought and p.text)
    assert thoughts == "Let me think." and text == "Héllo 🌍"
    signed = [p for p in parts if p.thought_signature]
    assert signed[0].text == "Héllo " and signed[0].thought_signature == b"Eugene"
    calls = [p.function_call for p in parts if p.function_call]
    assert [(c.id, c.name, c.args) for c in calls] == [
        ("toolu_b", "get_time", {"tz": "UTC"}),
        ("toolu_a", "get_weather", {"city": "Oslo"}),
        ("toolu_c", "noop", {}),
    ]
    last = chunks[-1]
    assert last.candidates[0].finish_reason == types.FinishReason.STOP  # type: ignore[index]
    assert last.usage_metadata is not None
    assert last.usage_metadata.prompt_token_count == 30
    assert last.usage_metadata.candidates_token_count == 30
    assert last.usage_metadata.thoughts_token_count == 10
    assert last.usage_metadata.total_token_count == 70
    assert {c.response_id for c in chunks} == {"msg_1"}
    assert {c.model_version for c in chunks} == {"gemini-2.5-flash"}


def test_encoder_text_is_written_at_once() -> None:
    enc = gemini.StreamEncoder()
    assert enc.feed(Start(id="r", model="m")) == b""
    out = enc.feed(TextDelta(0, "a"))
    assert out.startswith(b"data: ") and out.endswith(b"\r\n\r\n")
    assert json.loads(out[6:]) == {
        "candidates": [{"content": {"parts": [{"text": "a"}], "role": "model"}, "index": 0}],
        "modelVersion": "m",
        "responseId": "r",
    }
    assert enc.feed(ToolCallStart(1, "c", "f")) == b""
    assert enc.feed(ToolArgsDelta(1, "{}")) == b""
    assert b"functionCall" in enc.feed(BlockStop(1))


def test_encoder_empty_and_unfinished_streams() -> None:
    chunks = sdk_stream(encode([]))
    assert len(chunks) == 1
    assert chunks[0].candidates[0].finish_reason == types.FinishReason.STOP  # type: ignore[index]
    chunks = sdk_stream(
        encode(
            [
                Start(id="r", model="m"),
                TextDelta(0, "partial"),
                ToolCallStart(1, "c", "f"),
                ToolArgsDelta(1, '{"x":1'),
            ]
        )
    )
    assert chunks[0].text == "partial"
    last = chunks[-1]
    assert last.function_calls is not None and last.function_calls[0].args == {}
    assert last.candidates[0].finish_reason == types.FinishReason.STOP  # type: ignore[index]


def test_encoder_error_raises_in_sdk() -> None:
    data = encode(
        [
            Start(id="r", model="m"),
            TextDelta(0, "so far"),
            Error("slow down", 429, "rate_limit"),
            Finish(),
        ]
    )
    assert data.endswith(
        b'data: {"error":{"code":429,"message":"slow down","status":"RESOURCE_EXHAUSTED"}}\r\n\r\n'
    )
    with pytest.raises(genai_errors.ClientError) as info:
        sdk_stream(data)
    assert info.value.code == 429


def test_encoder_decoder_same_protocol() -> None:
    """Gemini backend -> Gemini client: re-encoded stream carries the same content."""
    events = decode([stream_bytes(STREAM_CHUNKS)])
    again = decode([encode(events)])
    acc1, acc2 = ResponseAccumulator(source="gemini"), ResponseAccumulator(source="gemini")
    for e in events:
        acc1.feed(e)
    for e in again:
        acc2.feed(e)
    assert acc2.response() == acc1.response()
    data = encode(events)
    assert b'"text":"H\xc3\xa9llo \xf0\x9f\x8c\x8d, ","thoughtSignature":"c2lnLXRleHQ="' in data


# ----------------------------------------------------------------------------------------------
# Errors and model listing
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name", "exc"),
    [
        (400, "INVALID_ARGUMENT", genai_errors.ClientError),
        (401, "UNAUTHENTICATED", genai_errors.ClientError),
        (403, "PERMISSION_DENIED", genai_errors.ClientError),
        (404, "NOT_FOUND", genai_errors.ClientError),
        (429, "RESOURCE_EXHAUSTED", genai_errors.ClientError),
        (500, "INTERNAL", genai_errors.ServerError),
        (502, "UNAVAILABLE", genai_errors.ServerError),
        (503, "UNAVAILABLE", genai_errors.ServerError),
        (504, "DEADLINE_EXCEEDED", genai_errors.ServerError),
        (529, "UNAVAILABLE", genai_errors.ServerError),
    ],
)
def test_render_error(status: int, name: str, exc: type[Exception]) -> None:
    body = gemini.render_error(status, "nope")
    assert body == {"error": {"code": status, "message": "nope", "status": name}}
    client_no_retry = genai.Client(
        api_key="k",
        http_options=types.HttpOptions(
            base_url="http://gemini.test",
            client_args={
                "transport": httpx.MockTransport(lambda request: httpx.Response(status, json=body))
            },
            retry_options=types.HttpRetryOptions(attempts=1),
        ),
    )
    with pytest.raises(exc) as info:
        client_no_retry.models.generate_content(model=MODEL, contents="x")
    assert info.value.code == status  # type: ignore[attr-defined]
    assert info.value.message == "nope"  # type: ignore[attr-defined]


def test_models_list_read_by_sdk() -> None:
    body = gemini.models_list_response(["gemini-2.5-flash", "models/gemini-2.5-pro"])
    server = Recorder(reply=body)
    models = list(server.client.models.list())
    assert [m.name for m in models] == ["models/gemini-2.5-flash", "models/gemini-2.5-pro"]
    assert models[0].display_name == "gemini-2.5-flash"
    assert models[0].supported_actions == [
        "generateContent",
        "streamGenerateContent",
        "countTokens",
    ]


# ----------------------------------------------------------------------------------------------
# clean_schema
# ----------------------------------------------------------------------------------------------

ALLOWED_SCHEMA_KEYS = {
    "type", "format", "title", "description", "nullable", "enum", "items", "properties",
    "required", "minItems", "maxItems", "minLength", "maxLength", "pattern", "minimum",
    "maximum", "anyOf", "propertyOrdering", "minProperties", "maxProperties", "default", "example",
}  # fmt: skip


def walk_schema(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield schema
    for sub in schema.get("properties", {}).values():
        yield from walk_schema(sub)
    if "items" in schema:
        yield from walk_schema(schema["items"])
    for sub in schema.get("anyOf", ()):
        yield from walk_schema(sub)


def assert_gemini_schema(schema: dict[str, Any]) -> None:
    types.Schema.model_validate(schema)  # the SDK's own Schema type, extra="forbid"
    for node in walk_schema(schema):
        assert set(node) <= ALLOWED_SCHEMA_KEYS, set(node) - ALLOWED_SCHEMA_KEYS
        if "required" in node:
            assert set(node["required"]) <= set(node.get("properties", {}))
        if "enum" in node:
            assert all(isinstance(v, str) for v in node["enum"])
        if "format" in node:
            assert node["format"] in {"enum", "date-time", "int32", "int64", "float", "double"}


class Address(pydantic.BaseModel):
    street: str
    city: str = pydantic.Field(description="City name")
    zip: str | None = None


class TreeNode(pydantic.BaseModel):
    label: str
    children: list[TreeNode] = []


class Order(pydantic.BaseModel):
    id: int
    kind: Any = pydantic.Field(json_schema_extra={"enum": ["a", "b"]})
    status: str = pydantic.Field(pattern="^[a-z]+$", json_schema_extra={"format": "email"})
    mode: Any = pydantic.Field(json_schema_extra={"const": "fast"})
    shipping: Address
    billing: Address | None = None
    tags: list[str] = pydantic.Field(default_factory=list, max_length=5)
    tree: TreeNode | None = None
    when: Any = pydantic.Field(json_schema_extra={"type": "string", "format": "date-time"})
    amount: float = pydantic.Field(ge=0, le=1000)


def test_clean_schema_pydantic() -> None:
    raw = Order.model_json_schema()
    assert "$defs" in raw
    cleaned = gemini.clean_schema(raw)
    assert_gemini_schema(cleaned)
    props = cleaned["properties"]
    assert props["shipping"]["properties"]["city"] == {
        "type": "string",
        "title": "City",
        "description": "City name",
    }
    assert props["shipping"]["required"] == ["street", "city"]
    assert props["billing"]["nullable"] is True and props["billing"]["type"] == "object"
    assert props["shipping"]["properties"]["zip"] == {
        "type": "string",
        "title": "Zip",
        "nullable": True,
    }
    assert props["kind"]["enum"] == ["a", "b"]
    assert props["mode"]["enum"] == ["fast"]
    assert "format" not in props["status"] and props["status"]["pattern"] == "^[a-z]+$"
    assert props["when"]["format"] == "date-time"
    assert props["tags"]["maxItems"] == 5 and props["tags"]["items"] == {"type": "string"}
    assert props["amount"]["minimum"] == 0 and props["amount"]["maximum"] == 1000
    # The recursive model is inlined a bounded number of times, then cut to a plain object.
    depth, node = 0, props["tree"]
    while "properties" in node:
        node = node["properties"]["children"]["items"]
        depth += 1
    assert 1 <= depth <= 9 and node["type"] == "object"


def test_clean_schema_zod_style() -> None:
    zod = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "urn:x",
        "type": "object",
        "properties": {
            "url": {"type": "string", "format": "uri"},
            "email": {"type": "string", "format": "email", "minLength": 3},
            "count": {"type": "integer", "format": "int64", "exclusiveMinimum": 0},
            "ratio": {"type": "number", "format": "double"},
            "maybe": {"type": ["string", "null"]},
            "either": {"type": ["string", "integer"]},
            "choice": {
                "oneOf": [
                    {"const": "x"},
                    {
                        "type": "object",
                        "properties": {"y": {"type": "boolean"}},
                        "additionalProperties": False,
                    },
                ]
            },
            "level": {"type": "integer", "enum": [1, 2, 3]},
            "opt": {"anyOf": [{"type": "number"}, {"type": "null"}], "default": None},
            "nested": {
                "allOf": [
                    {"$ref": "#/definitions/Base"},
                    {"properties": {"extra": {"type": "string"}}, "required": ["extra"]},
                ]
            },
            "record": {"type": "object", "additionalProperties": {"type": "string"}},
            "tuple": {"type": "array", "prefixItems": [{"type": "string"}], "items": False},
            "missing": {"$ref": "#/definitions/Nope", "description": "dangling"},
        },
        "required": ["url", "ghost"],
        "additionalProperties": False,
        "definitions": {
            "Base": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}
        },
    }
    cleaned = gemini.clean_schema(zod)
    assert_gemini_schema(cleaned)
    props = cleaned["properties"]
    assert cleaned["required"] == ["url"]
    assert props["url"] == {"type": "string"}
    assert props["email"] == {"type": "string", "minLength": 3}
    assert props["count"] == {"type": "integer", "format": "int64"}
    assert props["ratio"] == {"type": "number", "format": "double"}
    assert props["maybe"] == {"type": "string", "nullable": True}
    assert props["either"] == {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert props["choice"]["anyOf"][0] == {"enum": ["x"], "type": "string"}
    assert props["level"] == {"type": "integer"}
    assert props["opt"] == {"type": "number", "nullable": True}
    assert props["nested"]["properties"] == {"id": {"type": "string"}, "extra": {"type": "string"}}
    assert sorted(props["nested"]["required"]) == ["extra", "id"]
    assert props["record"] == {"type": "object"}
    assert props["tuple"] == {"type": "array", "items": {"type": "string"}}
    assert props["missing"] == {"description": "dangling", "type": "object"}


def test_clean_schema_odd_inputs() -> None:
    assert gemini.clean_schema({}) == {}
    assert gemini.clean_schema(True) == {}  # type: ignore[arg-type]
    assert gemini.clean_schema({"type": "object", "properties": {}}) == {
        "type": "object",
        "properties": {},
    }
    assert gemini.clean_schema({"type": "null"}) == {"nullable": True}
    loop = {"$ref": "#"}
    assert gemini.clean_schema(loop) == {"type": "object"}
    self_ref = {"type": "object", "properties": {"me": {"$ref": "#"}}}
    assert_gemini_schema(gemini.clean_schema(self_ref))


# ----------------------------------------------------------------------------------------------
# Property tests: canonical -> gemini -> canonical
# ----------------------------------------------------------------------------------------------

texts = st.text(min_size=1, max_size=12)
names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
plain_texts = texts.filter(lambda t: not t.lstrip().startswith(("{", "[")))
json_objects = st.dictionaries(names, st.one_of(st.integers(), texts, st.booleans()), max_size=3)
b64 = st.sampled_from(["c2ln", "c2lnMg==", "Q2lR", "CiQB0e2Kb8v1"])


@st.composite
def tool_turn(draw: st.DrawFn, index: int) -> list[Message]:
    """An assistant turn with 1-3 calls and the tool message answering them."""
    count = draw(st.integers(1, 3))
    calls = [
        ToolCallPart(
            id=f"id{index}_{i}",
            name=draw(names),
            arguments=json.dumps(draw(json_objects), ensure_ascii=False, separators=(",", ":")),
            signature=draw(st.none() | b64) if i == 0 else None,
        )
        for i in range(count)
    ]
    pre: list[Any] = []
    if draw(st.booleans()):
        pre.append(ThinkingPart(text=draw(texts), signature=draw(st.none() | b64)))
    if draw(st.booleans()):
        pre.append(TextPart(text=draw(texts)))
    results = []
    for call in calls:
        if draw(st.booleans()):
            body = json.dumps(draw(json_objects), ensure_ascii=False, separators=(",", ":"))
            if body == "{}" or '"result"' in body or '"output"' in body or '"error"' in body:
                body = "plain"
        else:
            body = draw(plain_texts)
        results.append(
            ToolResultPart(
                call_id=call.id,
                name=call.name,
                content=[TextPart(text=body)],
                is_error=draw(st.booleans()),
            )
        )
    return [Message(role="assistant", content=pre + calls), Message(role="tool", content=results)]


user_parts = st.one_of(
    texts.map(lambda t: TextPart(text=t)),
    st.sampled_from(["image/png", "image/jpeg"]).map(
        lambda m: ImagePart(data="iVBORw0KGgo=", media_type=m)
    ),
    st.sampled_from(["https://x.test/a.png", "gs://b/c.jpg"]).map(
        lambda u: ImagePart(url=u, media_type="image/png")
    ),
)

reasonings = st.one_of(
    st.none(),
    st.builds(
        lambda n, i: Reasoning(budget_tokens=n, enabled=True, include_thoughts=i),
        st.integers(1, 24576),  # gemini-2.5-flash's thinkingBudget range
        st.none() | st.booleans(),
    ),
    st.builds(
        lambda i: Reasoning(budget_tokens=0, enabled=False, include_thoughts=i),
        st.none() | st.booleans(),
    ),
    st.builds(lambda i: Reasoning(enabled=True, include_thoughts=i), st.none() | st.booleans()),
    st.just(Reasoning(include_thoughts=True)),
)


@st.composite
def canonical_requests(draw: st.DrawFn, source: Any) -> ChatRequest:
    messages: list[Message] = []
    for turn in range(draw(st.integers(1, 4))):
        messages.append(
            Message(role="user", content=draw(st.lists(user_parts, min_size=1, max_size=3)))
        )
        if draw(st.booleans()):
            messages.extend(draw(tool_turn(turn)))
        messages.append(Message(role="assistant", content=[TextPart(text=draw(texts))]))
    tools = [
        Tool(
            name=n,
            description=draw(st.none() | texts),
            parameters={
                "type": "object",
                "properties": {p: {"type": "string"} for p in draw(st.lists(names, max_size=2))},
            },
        )
        for n in draw(st.lists(names, max_size=3, unique=True))
    ]
    tool_choice = draw(
        st.none()
        | st.sampled_from(
            [ToolChoice(mode="auto"), ToolChoice(mode="none"), ToolChoice(mode="required")]
        )
        | names.map(lambda n: ToolChoice(mode="tool", name=n))
    )
    return ChatRequest(
        source=source,
        model=MODEL,
        system=[TextPart(text=t) for t in draw(st.lists(texts, max_size=2))],
        messages=messages,
        tools=tools,
        tool_choice=tool_choice,
        temperature=draw(st.none() | st.floats(0, 2)),
        top_p=draw(st.none() | st.floats(0, 1)),
        top_k=draw(st.none() | st.integers(1, 100)),
        max_tokens=draw(st.none() | st.integers(1, 65536)),
        stop=draw(st.lists(texts, max_size=2)),
        reasoning=draw(reasonings),
        include_usage=True,
    )


def strip_extras(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: strip_extras(v) for k, v in obj.items() if k != "extras"}
    if isinstance(obj, list):
        return [strip_extras(v) for v in obj]
    return obj


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(canonical_requests("gemini"))
def test_property_gemini_canonical_round_trip(req: ChatRequest) -> None:
    body = gemini.render_request(req)
    validate_with_sdk_types(body)
    back = gemini.parse_request(json.loads(json.dumps(body)), model=MODEL)
    assert strip_extras(back.model_dump()) == strip_extras(req.model_dump())


def normalise_foreign(req: ChatRequest) -> dict[str, Any]:
    """What survives a conversion: ids become positions, thinking and signatures are dropped."""
    ids: dict[str, int] = {}
    messages = []
    for m in req.messages:
        parts: list[tuple[Any, ...]] = []
        for p in m.content:
            if isinstance(p, ThinkingPart):
                continue
            if isinstance(p, ToolCallPart):
                ids[p.id] = len(ids)
                parts.append(("call", ids[p.id], p.name, json.loads(p.arguments)))
            elif isinstance(p, ToolResultPart):
                text = "".join(c.text for c in p.content if isinstance(c, TextPart))
                parts.append(("result", ids[p.call_id], p.name, text, p.is_error))
            elif isinstance(p, TextPart):
                parts.append(("text", p.text))
            elif isinstance(p, ImagePart):
                parts.append(("image", p.url, p.data, p.media_type))
        messages.append((m.role, parts))
    data = strip_extras(req.model_dump())
    data.update(messages=messages, source=None)
    reasoning = data["reasoning"]
    if reasoning and reasoning["enabled"] and reasoning["include_thoughts"] is None:
        reasoning["include_thoughts"] = True  # converting asks for the thoughts back
    if not req.tools:
        data["tool_choice"] = None  # a calling config alone is not sent
    return data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(canonical_requests("anthropic"))
def test_property_foreign_canonical_conversion(req: ChatRequest) -> None:
    body = gemini.render_request(req)
    validate_with_sdk_types(body)
    back = gemini.parse_request(json.loads(json.dumps(body)), model=MODEL)
    assert normalise_foreign(back) == normalise_foreign(req)


@st.composite
def canonical_responses(draw: st.DrawFn) -> ChatResponse:
    parts: list[Any] = []
    if draw(st.booleans()):
        parts.append(ThinkingPart(text=draw(texts), signature=draw(st.none() | b64)))
    if draw(st.booleans()):
        parts.append(TextPart(text=draw(texts)))
    calls = draw(st.lists(st.tuples(names, json_objects), max_size=3))
    for i, (name, args) in enumerate(calls):
        parts.append(
            ToolCallPart(
                id=f"c{i}",
                name=name,
                arguments=json.dumps(args, ensure_ascii=False, separators=(",", ":")),
            )
        )
    stop = "tool_use" if calls else draw(st.sampled_from(["end", "max_tokens", "filtered"]))
    reasoning = draw(st.none() | st.integers(0, 100))
    output = draw(st.none() | st.integers(0, 100))
    if output is not None and reasoning is not None:
        output += reasoning
    if output is None and reasoning is not None:
        output = reasoning
    return ChatResponse(
        source="gemini",
        id=draw(names),
        model=draw(names),
        parts=parts,
        stop_reason=stop,
        usage=Usage(
            input_tokens=draw(st.none() | st.integers(0, 1000)),
            output_tokens=output,
            reasoning_tokens=reasoning,
            cached_tokens=draw(st.none() | st.integers(0, 10)),
        ),
    )


@settings(max_examples=80, deadline=None)
@given(canonical_responses())
def test_property_response_round_trip(resp: ChatResponse) -> None:
    body = gemini.render_response(resp)
    back = gemini.parse_response(json.loads(json.dumps(body)))
    assert strip_extras(back.model_dump()) == strip_extras(resp.model_dump())


@settings(max_examples=40, deadline=None)
@given(canonical_responses(), st.data())
def test_property_stream_round_trip(resp: ChatResponse, data: st.DataObject) -> None:
    """Response -> canonical events -> encoder -> bytes split anywhere -> decoder."""
    events: list[Event] = [Start(id=resp.id, model=resp.model)]
    for index, part in enumerate(resp.parts):
        if isinstance(part, TextPart):
            text = part.text
            cut = data.draw(st.integers(0, len(text)))
            events += [TextDelta(index, text[:cut]), TextDelta(index, text[cut:]), BlockStop(index)]
        elif isinstance(part, ThinkingPart):
            events += [
                ThinkingDelta(index, part.text),
                ThinkingDelta(index, "", part.signature),
                BlockStop(index),
            ]
        elif isinstance(part, ToolCallPart):
            events += [
                ToolCallStart(index, part.id, part.name),
                ToolArgsDelta(index, part.arguments),
                BlockStop(index),
            ]
    events.append(Finish(resp.stop_reason, resp.usage))
    wire = encode(events, model=resp.model)
    sdk_stream(wire)  # the SDK accepts it
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=4)))
    pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    acc = ResponseAccumulator(source="gemini")
    for event in decode(pieces):
        acc.feed(event)
    got = acc.response()
    assert (got.id, got.model, got.stop_reason) == (resp.id, resp.model, resp.stop_reason)

    # A thinking block's signature travels on the next part (as the real API sends it), so the
    # signatures are compared in order, apart from the parts that carry them.
    def unsigned(parts: list[Any]) -> list[Any]:
        return [strip_extras(p.model_dump(exclude={"signature"})) for p in parts]

    def signatures(parts: list[Any]) -> list[str]:
        return [p.signature for p in parts if getattr(p, "signature", None)]

    assert unsigned(got.parts) == unsigned(resp.parts)
    assert signatures(got.parts) == signatures(resp.parts)
    assert got.usage.output_tokens == resp.usage.output_tokens
    assert got.usage.reasoning_tokens == resp.usage.reasoning_tokens
    assert got.usage.cached_tokens == resp.usage.cached_tokens
    assert got.usage.input_tokens == resp.usage.input_tokens


def test_convert_drops_what_the_api_rejects() -> None:
    req = foreign_request(
        messages=[
            Message(role="user", content=[TextPart(text="hi"), TextPart(text="")]),
            Message(role="assistant", content=[ThinkingPart(text="only thinking", signature="s")]),
            Message(role="user", content=[TextPart(text="again")]),
            Message(role="assistant", content=[TextPart(text="")]),
            Message(role="assistant", content=[TextPart(text="answer")]),
        ]
    )
    body = gemini.render_request(req)
    validate_with_sdk_types(body)
    assert body["contents"] == [
        {"parts": [{"text": "hi"}, {"text": "again"}], "role": "user"},
        {"parts": [{"text": "answer"}], "role": "model"},
    ]


def test_convert_tool_choice_without_tools_is_dropped() -> None:
    body = gemini.render_request(foreign_request(tool_choice=ToolChoice(mode="none")))
    assert "toolConfig" not in body and "tools" not in body
