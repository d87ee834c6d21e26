"""The strict test upstream, proven with the official SDKs pointed straight at it.

If the SDKs parse every rendering (plain, stream, tool calls, thinking) the wire formats are
right; the strictness tests post bodies the real APIs refuse and expect their 400s, and the
matching valid bodies to pass (so the upstream is strict, not merely picky).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from anthropic.types import MessageParam, TextBlock, ThinkingBlock, ToolUseBlock
from anthropic.types.beta import BetaContextManagementConfigParam, BetaMessageParam, BetaTextBlock
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gtypes
from openai.types.chat import ChatCompletionMessageFunctionToolCall, ChatCompletionMessageParam
from pydantic import TypeAdapter

from tests.upstream import DEFAULT_TEXT, Reply, ToolCall, Upstream, Usage, render
from tests.upstream.server import Backend

ROOT = Path(__file__).resolve().parents[2]
WEATHER = ToolCall("get_weather", {"city": "Oslo", "unit": "c"})
CLOCK = ToolCall("get_time", {"zone": "Europe/Oslo", "detail": {"seconds": True}})


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


@pytest.fixture(autouse=True)
def fresh(upstream: Upstream) -> None:
    upstream.reset()


@pytest.fixture(scope="module")
def oai(upstream: Upstream) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=upstream.sdk_base_url("openai"),
        api_key=upstream.keys["openai"],
        max_retries=0,
        timeout=10,
    )


@pytest.fixture(scope="module")
def orouter(upstream: Upstream) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=upstream.sdk_base_url("openrouter"),
        api_key=upstream.keys["openrouter"],
        max_retries=0,
        timeout=10,
        default_headers={"HTTP-Referer": "https://example.test", "X-Title": "upstream tests"},
    )


@pytest.fixture(scope="module")
def claude(upstream: Upstream) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=upstream.sdk_base_url("anthropic"),
        api_key=upstream.keys["anthropic"],
        max_retries=0,
        timeout=10,
    )


@pytest.fixture(scope="module")
def gemini(upstream: Upstream) -> genai.Client:
    return genai.Client(
        api_key=upstream.keys["gemini"],
        http_options=gtypes.HttpOptions(
            base_url=upstream.sdk_base_url("gemini"), api_version="v1beta", timeout=10_000
        ),
    )


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def auth_headers(upstream: Upstream, backend: Backend) -> dict[str, str]:
    key = upstream.keys[backend] or "any"
    if backend in ("openai", "openrouter"):
        return {"authorization": f"Bearer {key}"}
    if backend == "anthropic":
        return {"x-api-key": key, "anthropic-version": "2023-06-01"}
    return {"x-goog-api-key": key}


def post(
    http: httpx.Client,
    upstream: Upstream,
    backend: Backend,
    path: str,
    body: object,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return http.post(
        upstream.base_url(backend) + path,
        json=body,
        headers={**auth_headers(upstream, backend), **(headers or {})},
    )


QUESTION = "What is the weather in Oslo?"
USER: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]  # raw JSON bodies
OAI_USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": QUESTION}]
ANT_USER: list[MessageParam] = [{"role": "user", "content": QUESTION}]
BETA_USER: list[BetaMessageParam] = [{"role": "user", "content": QUESTION}]


def text_of(block: object) -> str:
    assert isinstance(block, (TextBlock, BetaTextBlock)), block
    return block.text


def tool_use_of(block: object) -> ToolUseBlock:
    assert isinstance(block, ToolUseBlock), block
    return block


def thinking_of(block: object) -> ThinkingBlock:
    assert isinstance(block, ThinkingBlock), block
    return block


def function_calls(calls: list[Any]) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for call in calls:
        assert isinstance(call, ChatCompletionMessageFunctionToolCall), call
        found.append((call.function.name, json.loads(call.function.arguments)))
    return found


def candidate(response: gtypes.GenerateContentResponse) -> gtypes.Candidate:
    assert response.candidates, response
    return response.candidates[0]


def parts_of(response: gtypes.GenerateContentResponse) -> list[gtypes.Part]:
    content = candidate(response).content
    assert content is not None
    return content.parts or []


# --------------------------------------------------------------------------------------------
# renderings against the SDKs' own response models (strict pydantic validation)
# --------------------------------------------------------------------------------------------

REPLIES = [
    Reply(),
    Reply(text="", tool_calls=[WEATHER, CLOCK]),
    Reply(text="Let me check.", tool_calls=[WEATHER], interleave_tool_args=True),
    Reply(thinking="Hmm, weather.", tool_calls=[WEATHER, CLOCK], args_at_end=True),
    Reply(thinking="Deep thought", text="42", usage=Usage(100, 50, 30, 20), finish="length"),
]


@pytest.mark.parametrize("reply", REPLIES)
def test_renderings_validate_against_sdk_response_models(reply: Reply) -> None:
    from anthropic.types import Message, RawMessageStreamEvent
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    for flavor in ("openai", "openrouter"):
        ChatCompletion.model_validate(render.openai_completion(reply, "gpt-4o", flavor))
        events = render.openai_stream(reply, "gpt-4o", flavor, include_usage=True)
        assert events[-1] == b"data: [DONE]\n\n"
        assert (b'"obfuscation":' in events[0]) == (flavor == "openai")
        for event in events[:-1]:
            assert event.startswith(b"data: ") and event.endswith(b"\n\n")
            ChatCompletionChunk.model_validate(json.loads(event[6:]))
    Message.model_validate(render.anthropic_message(reply, "claude-x"))
    stream_event = TypeAdapter(RawMessageStreamEvent)
    for event in render.anthropic_stream(reply, "claude-x"):
        name, data = event.decode().rstrip("\n").split("\n")
        payload = json.loads(data.removeprefix("data: "))
        assert name == f"event: {payload['type']}"
        if payload["type"] != "ping":
            stream_event.validate_python(payload)
    # google.genai models forbid unknown keys: this also proves no invented field
    gtypes.GenerateContentResponse.model_validate(render.gemini_response(reply, "gemini-x"))
    for obj in render.gemini_stream_objects(reply, "gemini-x"):
        gtypes.GenerateContentResponse.model_validate(obj)


def test_model_listings_validate_against_sdk_models() -> None:
    from anthropic.types import ModelInfo
    from openai.types import Model

    for item in render.openai_models(["gpt-4o"], "openai")["data"]:
        Model.model_validate(item)
    for item in render.anthropic_models(["claude-x"])["data"]:
        ModelInfo.model_validate(item)
    for item in render.gemini_models(["gemini-x"])["models"]:
        gtypes.Model.model_validate(
            {key: value for key, value in item.items() if key != "supportedGenerationMethods"}
        )


# --------------------------------------------------------------------------------------------
# OpenAI
# --------------------------------------------------------------------------------------------


def test_openai_plain(upstream: Upstream, oai: openai.OpenAI) -> None:
    upstream.enqueue(Reply(text="Sunny.", usage=Usage(30, 5, 0, 10)))
    completion = oai.chat.completions.create(model="gpt-4o", messages=OAI_USER)
    assert completion.choices[0].message.content == "Sunny."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (30, 5)
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 10
    request = upstream.last("openai")
    assert request.method == "POST" and request.api_path == "/chat/completions"
    assert request.headers["authorization"] == f"Bearer {upstream.keys['openai']}"
    assert request.body["messages"] == USER and request.status == 200


def test_openai_stream_text_role_first_and_usage_chunk(
    upstream: Upstream, oai: openai.OpenAI
) -> None:
    upstream.enqueue(Reply(text="The weather is sunny today.", text_chunks=4))
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o",
            messages=OAI_USER,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(deltas) == 4 and "".join(deltas) == "The weather is sunny today."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(c.usage is None for c in chunks[:-1])

    upstream.enqueue(Reply(text="No usage asked."))
    chunks = list(oai.chat.completions.create(model="gpt-4o", messages=OAI_USER, stream=True))
    assert all(c.usage is None and c.choices for c in chunks)


def test_openai_tool_calls(upstream: Upstream, oai: openai.OpenAI) -> None:
    upstream.enqueue(Reply(tool_calls=[WEATHER, ToolCall("get_time", {}, id="call_fixed")]))
    message = oai.chat.completions.create(model="gpt-4o", messages=OAI_USER).choices[0]
    assert message.finish_reason == "tool_calls" and message.message.content is None
    calls = message.message.tool_calls or []
    assert function_calls(calls) == [
        ("get_weather", WEATHER.args),
        ("get_time", {}),
    ]
    assert calls[0].id.startswith("call_") and calls[1].id == "call_fixed"


@pytest.mark.parametrize("mode", ["sequential", "interleave_tool_args", "args_at_end"])
def test_openai_streamed_parallel_tool_calls(
    upstream: Upstream, oai: openai.OpenAI, mode: str
) -> None:
    reply = Reply(
        text="Checking.",
        tool_calls=[WEATHER, CLOCK],
        args_chunks=4,
        interleave_tool_args=mode == "interleave_tool_args",
        args_at_end=mode == "args_at_end",
    )
    upstream.enqueue(reply)
    names: dict[int, str] = {}
    arguments: dict[int, str] = {}
    order: list[int] = []
    for chunk in oai.chat.completions.create(model="gpt-4o", messages=OAI_USER, stream=True):
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            assert call.function is not None
            if call.id:
                assert call.function.name and call.function.arguments == ""
                names[call.index] = call.function.name
            if call.function.arguments:
                order.append(call.index)
            arguments[call.index] = arguments.get(call.index, "") + (call.function.arguments or "")
    assert names == {0: "get_weather", 1: "get_time"}
    assert {i: json.loads(a) for i, a in arguments.items()} == {0: WEATHER.args, 1: CLOCK.args}
    if mode == "interleave_tool_args":
        assert order[:2] == [0, 1]
    elif mode == "args_at_end":
        assert order == [0, 1]  # one final chunk with both
    else:
        assert order == sorted(order)

    # the SDK's own accumulator agrees
    upstream.enqueue(reply)
    with oai.chat.completions.stream(model="gpt-4o", messages=OAI_USER) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [json.loads(c.function.arguments) for c in calls] == [WEATHER.args, CLOCK.args]
    assert final.choices[0].message.content == "Checking."


def test_openai_models(oai: openai.OpenAI) -> None:
    models = oai.models.list()
    assert "gpt-4o" in [model.id for model in models]
    assert oai.models.retrieve("gpt-4o").owned_by == "system"


async def test_async_client_from_pytest_asyncio(upstream: Upstream) -> None:
    client = openai.AsyncOpenAI(
        base_url=upstream.sdk_base_url("openai"), api_key=upstream.keys["openai"], max_retries=0
    )
    upstream.enqueue(Reply(text="async ok", text_chunks=2))
    stream = await client.chat.completions.create(model="gpt-4o", messages=OAI_USER, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "async ok"
    await client.close()


# --------------------------------------------------------------------------------------------
# OpenRouter
# --------------------------------------------------------------------------------------------


def test_openrouter_reasoning_and_headers(upstream: Upstream, orouter: openai.OpenAI) -> None:
    extra = {
        "reasoning": {"max_tokens": 2000},
        "provider": {"order": ["anthropic"]},
        "usage": {"include": True},
    }
    upstream.enqueue(Reply(thinking="Think think.", text="Done.", thinking_signature="c2ln"))
    completion = orouter.chat.completions.create(
        model="anthropic/claude-sonnet-4.5",
        messages=OAI_USER,
        extra_body=extra,
    )
    message = completion.choices[0].message
    assert message.content == "Done."
    assert (message.model_extra or {})["reasoning"] == "Think think."
    assert (message.model_extra or {})["reasoning_details"][0]["signature"] == "c2ln"

    upstream.enqueue(Reply(thinking="Think think.", text="Done.", text_chunks=2))
    reasoning, content, usage = "", "", None
    for chunk in orouter.chat.completions.create(
        model="anthropic/claude-sonnet-4.5",
        messages=OAI_USER,
        stream=True,
        extra_body=extra,
    ):
        usage = chunk.usage or usage
        if chunk.choices:
            reasoning += (chunk.choices[0].delta.model_extra or {}).get("reasoning") or ""
            content += chunk.choices[0].delta.content or ""
    assert (reasoning, content) == ("Think think.", "Done.")
    assert usage is not None and usage.total_tokens == 20  # OpenRouter always sends usage
    request = upstream.last("openrouter")
    assert request.headers["http-referer"] == "https://example.test"
    assert request.headers["x-title"] == "upstream tests"
    assert request.body["reasoning"] == {"max_tokens": 2000}


# --------------------------------------------------------------------------------------------
# Anthropic
# --------------------------------------------------------------------------------------------


def test_anthropic_plain(upstream: Upstream, claude: anthropic.Anthropic) -> None:
    upstream.enqueue(Reply(text="Cloudy.", usage=Usage(40, 6, 0, 15)))
    message = claude.messages.create(
        model="claude-test-model",
        max_tokens=256,
        system="Be brief.",
        messages=ANT_USER,
    )
    assert [block.type for block in message.content] == ["text"]
    assert text_of(message.content[0]) == "Cloudy."
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (25, 15)
    assert message.usage.output_tokens == 6
    assert upstream.last("anthropic").headers["anthropic-version"]


def test_anthropic_stream_thinking_and_tool_use(
    upstream: Upstream, claude: anthropic.Anthropic
) -> None:
    upstream.enqueue(
        Reply(thinking="I should call the tool.", text="Let me look.", tool_calls=[WEATHER])
    )
    with claude.messages.stream(
        model="claude-test-model",
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 2048},
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
        messages=ANT_USER,
    ) as stream:
        message = stream.get_final_message()
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use"]
    thinking, tool = thinking_of(message.content[0]), tool_use_of(message.content[2])
    assert thinking.thinking == "I should call the tool." and thinking.signature
    assert text_of(message.content[1]) == "Let me look."
    assert (tool.name, tool.input) == ("get_weather", WEATHER.args)
    assert tool.id.startswith("toolu_")
    assert message.stop_reason == "tool_use" and message.usage.output_tokens == 8


def test_anthropic_stream_event_order(upstream: Upstream, http: httpx.Client) -> None:
    upstream.enqueue(Reply(thinking="t", text="ab", tool_calls=[WEATHER], text_chunks=2))
    body = {"model": "claude-x", "max_tokens": 4096, "stream": True, "messages": USER}
    response = post(http, upstream, "anthropic", "/messages", body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")
    ]
    names = [event["type"] + (f":{event['index']}" if "index" in event else "") for event in events]
    assert names == [
        "message_start",
        "ping",
        "content_block_start:0",
        "content_block_delta:0",
        "content_block_delta:0",  # signature_delta
        "content_block_stop:0",
        "content_block_start:1",
        "content_block_delta:1",
        "content_block_delta:1",
        "content_block_stop:1",
        "content_block_start:2",
        *["content_block_delta:2"] * 4,  # "" then 3 argument fragments
        "content_block_stop:2",
        "message_delta",
        "message_stop",
    ]
    assert events[0]["message"]["usage"]["input_tokens"] == 12
    assert events[4]["delta"]["type"] == "signature_delta"
    assert events[-2]["usage"]["output_tokens"] == 8


def test_anthropic_count_tokens_models_and_beta(
    upstream: Upstream, claude: anthropic.Anthropic, http: httpx.Client
) -> None:
    count = claude.messages.count_tokens(model="claude-x", messages=ANT_USER)
    assert count.input_tokens > 0
    ids = [model.id for model in claude.models.list()]
    assert ids == upstream.state.models["anthropic"]
    assert claude.models.retrieve(ids[0]).type == "model"

    edits: BetaContextManagementConfigParam = {
        "edits": [{"type": "clear_thinking_20251015", "keep": "all"}]
    }
    upstream.enqueue(Reply(text="beta ok"))
    message = claude.beta.messages.create(
        model="claude-x",
        max_tokens=100,
        messages=BETA_USER,
        context_management=edits,
        betas=["context-management-2025-06-27"],
    )
    assert text_of(message.content[0]) == "beta ok"
    assert upstream.last().headers["anthropic-beta"] == "context-management-2025-06-27"
    # the same body without the beta header: a GA request, the field is unknown
    body = {"model": "claude-x", "max_tokens": 100, "messages": USER, "context_management": edits}
    response = post(http, upstream, "anthropic", "/messages", body)
    assert response.status_code == 400
    assert "context_management: Extra inputs are not permitted" in response.text


# --------------------------------------------------------------------------------------------
# Gemini
# --------------------------------------------------------------------------------------------


def test_gemini_plain(upstream: Upstream, gemini: genai.Client) -> None:
    upstream.enqueue(Reply(text="Rainy.", usage=Usage(9, 7, 3, 2)))
    response = gemini.models.generate_content(model="gemini-2.5-flash", contents="Weather?")
    assert response.text == "Rainy."
    assert candidate(response).finish_reason == gtypes.FinishReason.STOP
    usage = response.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count) == (9, 4)
    assert (usage.thoughts_token_count, usage.cached_content_token_count) == (3, 2)
    assert usage.total_token_count == 16
    request = upstream.last("gemini")
    assert request.api_path == "/models/gemini-2.5-flash:generateContent"
    assert request.headers["x-goog-api-key"] == upstream.keys["gemini"]


def test_gemini_stream_thoughts_and_function_call(upstream: Upstream, gemini: genai.Client) -> None:
    upstream.enqueue(Reply(thinking="Considering.", tool_calls=[WEATHER, CLOCK], text_chunks=2))
    chunks = list(
        gemini.models.generate_content_stream(
            model="gemini-2.5-flash",
            contents="Weather?",
            config=gtypes.GenerateContentConfig(
                thinking_config=gtypes.ThinkingConfig(include_thoughts=True)
            ),
        )
    )
    parts = [part for chunk in chunks for part in parts_of(chunk)]
    thoughts = [p.text for p in parts if p.thought]
    calls = [p.function_call for p in parts if p.function_call]
    assert "".join(t or "" for t in thoughts) == "Considering."
    assert [(c.name, c.args) for c in calls] == [
        ("get_weather", WEATHER.args),
        ("get_time", CLOCK.args),
    ]
    signed = [p for p in parts if p.thought_signature]
    assert len(signed) == 1 and signed[0].function_call is not None
    assert candidate(chunks[-1]).finish_reason == gtypes.FinishReason.STOP
    assert all(candidate(chunk).finish_reason is None for chunk in chunks[:-1])
    final_usage = chunks[-1].usage_metadata
    assert final_usage is not None and final_usage.candidates_token_count == 8


def test_gemini_sse_wire_format_and_query_key(upstream: Upstream, http: httpx.Client) -> None:
    upstream.enqueue(Reply(text="abcdef", text_chunks=3))
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    url = upstream.base_url("gemini") + "/models/gemini-2.5-flash:streamGenerateContent"
    response = http.post(url, params={"alt": "sse", "key": upstream.keys["gemini"]}, json=body)
    assert response.status_code == 200
    raw = response.content
    assert raw.endswith(b"\r\n\r\n") and b"\n\n" not in raw.replace(b"\r\n\r\n", b"")
    events = [json.loads(e.removeprefix(b"data: ")) for e in raw.split(b"\r\n\r\n") if e]
    texts = [e["candidates"][0]["content"]["parts"][0]["text"] for e in events]
    assert texts == ["ab", "cd", "ef"]
    assert "finishReason" in events[-1]["candidates"][0]
    assert "candidatesTokenCount" in events[-1]["usageMetadata"]


def test_gemini_count_tokens_and_models(gemini: genai.Client) -> None:
    assert (
        gemini.models.count_tokens(model="gemini-2.5-flash", contents="hello").total_tokens or 0
    ) > 0
    names = [model.name for model in gemini.models.list()]
    assert "models/gemini-2.5-flash" in names


# --------------------------------------------------------------------------------------------
# strictness: what the real APIs refuse, refused here with their words
# --------------------------------------------------------------------------------------------

TOOL_USE_TURN: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather?"},
    {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}],
    },
    {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "5C"}],
    },
]
OPENAI_TOOL_TURN: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "5C"},
]
GEMINI_USER: list[dict[str, Any]] = [{"role": "user", "parts": [{"text": "Weather?"}]}]


def anthropic_body(**fields: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 4096, "messages": USER, **fields}


def gemini_tool(parameters: dict[str, Any], key: str = "parameters") -> list[dict[str, Any]]:
    return [{"functionDeclarations": [{"name": "get_weather", key: parameters}]}]


REJECTED: list[tuple[str, Backend, str, dict[str, Any], str]] = [
    (
        "anthropic missing max_tokens",
        "anthropic",
        "/messages",
        {"model": "claude-x", "messages": USER},
        "max_tokens: Field required",
    ),
    (
        "anthropic thinking budget 1000",
        "anthropic",
        "/messages",
        anthropic_body(thinking={"type": "enabled", "budget_tokens": 1000}),
        "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
    ),
    (
        "anthropic budget >= max_tokens",
        "anthropic",
        "/messages",
        anthropic_body(max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 2048}),
        "`max_tokens` must be greater than `thinking.budget_tokens`",
    ),
    (
        "anthropic unknown top-level field",
        "anthropic",
        "/messages",
        anthropic_body(reasoning_effort="high"),
        "reasoning_effort: Extra inputs are not permitted",
    ),
    (
        "anthropic unknown block field",
        "anthropic",
        "/messages",
        anthropic_body(
            messages=[{"role": "user", "content": [{"type": "text", "text": "x", "bogus": 1}]}]
        ),
        "messages.0.content.0.bogus: Extra inputs are not permitted",
    ),
    (
        "anthropic tool_result without tool_use",
        "anthropic",
        "/messages",
        anthropic_body(messages=[TOOL_USE_TURN[0], TOOL_USE_TURN[2]]),
        "unexpected `tool_use_id` found in `tool_result` blocks: toolu_1",
    ),
    (
        "anthropic tool_use without tool_result",
        "anthropic",
        "/messages",
        anthropic_body(messages=[*TOOL_USE_TURN[:2], {"role": "user", "content": "and?"}]),
        "messages.1: `tool_use` ids were found without `tool_result` blocks",
    ),
    (
        "anthropic thinking without thinking block in the tool turn",
        "anthropic",
        "/messages",
        anthropic_body(thinking={"type": "enabled", "budget_tokens": 1024}, messages=TOOL_USE_TURN),
        "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`",
    ),
    (
        "anthropic temperature with thinking",
        "anthropic",
        "/messages",
        anthropic_body(temperature=0.5, thinking={"type": "enabled", "budget_tokens": 1024}),
        "`temperature` may only be set to 1 when thinking is enabled",
    ),
    (
        "anthropic temperature above 1",
        "anthropic",
        "/messages",
        anthropic_body(temperature=1.5),
        "temperature: Input should be less than or equal to 1",
    ),
    (
        "anthropic tool name",
        "anthropic",
        "/messages",
        anthropic_body(tools=[{"name": "get weather", "input_schema": {"type": "object"}}]),
        "tools.0.custom.name: String should match pattern",
    ),
    (
        "anthropic empty messages",
        "anthropic",
        "/messages",
        anthropic_body(messages=[]),
        "messages: at least one message is required",
    ),
    (
        "anthropic beta field in the body",
        "anthropic",
        "/messages",
        anthropic_body(betas=["x"]),
        "betas: Extra inputs are not permitted",
    ),
    (
        "anthropic tool_use id from another API",
        "anthropic",
        "/messages",
        anthropic_body(
            messages=[
                TOOL_USE_TURN[0],
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "fc.1:x", "name": "get_weather", "input": {}}
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "fc.1:x", "content": "5C"}],
                },
            ]
        ),
        "messages.1.content.0.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'",
    ),
    (
        "anthropic prefill with trailing whitespace",
        "anthropic",
        "/messages",
        anthropic_body(messages=[*USER, {"role": "assistant", "content": "The answer is "}]),
        "final assistant content cannot end with trailing whitespace",
    ),
    (
        "anthropic text after tool_result",
        "anthropic",
        "/messages",
        anthropic_body(
            messages=[
                *TOOL_USE_TURN[:2],
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "here:"},
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "5C"},
                    ],
                },
            ]
        ),
        "`tool_result` blocks must come first",
    ),
    (
        "openai tool call id longer than 40",
        "openai",
        "/chat/completions",
        {
            "model": "gpt-4o",
            "messages": [
                OPENAI_TOOL_TURN[0],
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "x" * 41,
                            "type": "function",
                            "function": {"name": "w", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "x" * 41, "content": "5C"},
            ],
        },
        "Invalid 'messages[1].tool_calls[0].id': string too long",
    ),
    (
        "openai unknown role",
        "openai",
        "/chat/completions",
        {"model": "gpt-4o", "messages": [{"role": "wizard", "content": "hi"}]},
        "Invalid value for 'messages[0].role': 'wizard'",
    ),
    (
        "openai unknown top-level field",
        "openai",
        "/chat/completions",
        {"model": "gpt-4o", "messages": USER, "thinking": {"type": "enabled"}},
        "Unrecognized request argument supplied: thinking",
    ),
    (
        "openai unknown message field",
        "openai",
        "/chat/completions",
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi", "cache_control": {}}]},
        "Unknown parameter: 'messages[0].cache_control'",
    ),
    (
        "openai tool message without tool_calls",
        "openai",
        "/chat/completions",
        {"model": "gpt-4o", "messages": [OPENAI_TOOL_TURN[0], OPENAI_TOOL_TURN[2]]},
        "messages with role 'tool' must be a response to a preceeding message with 'tool_calls'",
    ),
    (
        "openai tool call without answer",
        "openai",
        "/chat/completions",
        {"model": "gpt-4o", "messages": [*OPENAI_TOOL_TURN[:2], {"role": "user", "content": "?"}]},
        "did not have response messages: call_1",
    ),
    (
        "openai temperature",
        "openai",
        "/chat/completions",
        {"model": "gpt-4o", "messages": USER, "temperature": 3},
        "Invalid 'temperature': decimal above maximum value",
    ),
    (
        "openai stream_options without stream",
        "openai",
        "/chat/completions",
        {"model": "gpt-4o", "messages": USER, "stream_options": {"include_usage": True}},
        "'stream_options' parameter is only allowed when 'stream' is enabled",
    ),
    (
        "openai max_tokens as a string",
        "openai",
        "/chat/completions",
        {"model": "gpt-4o", "messages": USER, "max_tokens": "100"},
        "Invalid type for 'max_tokens': expected an integer or null, but got a string",
    ),
    (
        "openrouter unknown reasoning key",
        "openrouter",
        "/chat/completions",
        {"model": "x/y", "messages": USER, "reasoning": {"budget": 10}},
        "Unknown parameter: 'reasoning.budget'",
    ),
    (
        "gemini additionalProperties in parameters",
        "gemini",
        "/models/gemini-2.5-flash:generateContent",
        {
            "contents": GEMINI_USER,
            "tools": gemini_tool({"type": "object", "additionalProperties": False}),
        },
        "Unknown name \"additionalProperties\" at 'tools[0].functionDeclarations[0].parameters'",
    ),
    (
        "gemini $schema in parameters",
        "gemini",
        "/models/gemini-2.5-flash:generateContent",
        {
            "contents": GEMINI_USER,
            "tools": gemini_tool(
                {"type": "object", "$schema": "http://json-schema.org/draft-07/schema#"}
            ),
        },
        'Unknown name "$schema"',
    ),
    (
        "gemini const in a property",
        "gemini",
        "/models/gemini-2.5-flash:generateContent",
        {
            "contents": GEMINI_USER,
            "tools": gemini_tool(
                {"type": "object", "properties": {"a": {"type": "string", "const": "x"}}}
            ),
        },
        'Unknown name "const"',
    ),
    (
        "gemini unsupported format",
        "gemini",
        "/models/gemini-2.5-flash:generateContent",
        {
            "contents": GEMINI_USER,
            "tools": gemini_tool(
                {"type": "object", "properties": {"u": {"type": "string", "format": "uri"}}}
            ),
        },
        "properties.u.format: only 'enum' and 'date-time' are supported for STRING type",
    ),
    (
        "gemini functionResponse without name",
        "gemini",
        "/models/gemini-2.5-flash:generateContent",
        {
            "contents": [
                *GEMINI_USER,
                {"role": "user", "parts": [{"functionResponse": {"response": {}}}]},
            ]
        },
        "contents[1].parts[0].function_response.name: Name cannot be empty",
    ),
    (
        "gemini empty contents",
        "gemini",
        "/models/gemini-2.5-flash:generateContent",
        {"contents": []},
        "contents is not specified",
    ),
    (
        "gemini bad role",
        "gemini",
        "/models/gemini-2.5-flash:generateContent",
        {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]},
        "Please use a valid role: user, model.",
    ),
    (
        "gemini empty part",
        "gemini",
        "/models/gemini-2.5-flash:generateContent",
        {"contents": [{"role": "user", "parts": [{"thoughtSignature": "AAAA"}]}]},
        "required oneof field 'data' must have one initialized field",
    ),
    (
        "gemini temperature",
        "gemini",
        "/models/gemini-2.5-flash:streamGenerateContent",
        {"contents": GEMINI_USER, "generationConfig": {"temperature": 2.5}},
        "generation_config.temperature",
    ),
    (
        "gemini unknown generationConfig field",
        "gemini",
        "/models/gemini-2.5-flash:generateContent",
        {"contents": GEMINI_USER, "generationConfig": {"max_tokens": 5}},
        "Unknown name \"max_tokens\" at 'generationConfig'",
    ),
    (
        "gemini unknown schema type",
        "gemini",
        "/models/gemini-2.5-flash:generateContent",
        {"contents": GEMINI_USER, "tools": gemini_tool({"type": "dict"})},
        "tools[0].functionDeclarations[0].parameters.type",
    ),
    (
        "gemini Vertex-only tool",
        "gemini",
        "/models/gemini-2.5-flash:generateContent",
        {"contents": GEMINI_USER, "tools": [{"retrieval": {}}]},
        "only supported in Gemini Enterprise Agent Platform mode",
    ),
]


@pytest.mark.parametrize(
    ("backend", "path", "body", "expected"),
    [case[1:] for case in REJECTED],
    ids=[case[0] for case in REJECTED],
)
def test_rejects_what_the_real_api_rejects(
    upstream: Upstream,
    http: httpx.Client,
    backend: Backend,
    path: str,
    body: dict[str, Any],
    expected: str,
) -> None:
    upstream.enqueue(Reply(text="must not be consumed"))
    response = post(http, upstream, backend, path, body)
    assert response.status_code == 400, response.text
    error = response.json()
    if backend == "anthropic":
        assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
        message = error["error"]["message"]
    elif backend == "gemini":
        assert error["error"]["status"] == "INVALID_ARGUMENT" and error["error"]["code"] == 400
        message = error["error"]["message"]
    elif backend == "openai":
        assert error["error"]["type"] == "invalid_request_error"
        message = error["error"]["message"]
    else:
        assert error["error"]["code"] == 400
        message = error["error"]["message"]
    assert expected in message, message
    assert upstream.pending() == 1  # a refused request consumes no reply
    assert upstream.last().status == 400 and upstream.last().error == message


ACCEPTED: list[tuple[str, Backend, str, dict[str, Any], dict[str, str]]] = [
    (
        "anthropic full tool loop with thinking",
        "anthropic",
        "/messages",
        anthropic_body(
            thinking={"type": "enabled", "budget_tokens": 1024},
            temperature=1,
            system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
            messages=[
                TOOL_USE_TURN[0],
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "t", "signature": "c2ln"},
                        *TOOL_USE_TURN[1]["content"],
                    ],
                },
                TOOL_USE_TURN[2],
            ],
        ),
        {},
    ),
    (
        "anthropic prefill and sampling",
        "anthropic",
        "/messages",
        anthropic_body(
            temperature=0.2,
            top_p=0.9,
            top_k=40,
            messages=[*USER, {"role": "assistant", "content": "The"}],
        ),
        {},
    ),
    (
        "anthropic count_tokens with beta field",
        "anthropic",
        "/messages/count_tokens",
        {
            "model": "claude-x",
            "messages": USER,
            "context_management": {"edits": [{"type": "clear_thinking_20251015"}]},
        },
        {"anthropic-beta": "context-management-2025-06-27"},
    ),
    (
        "openai full tool loop",
        "openai",
        "/chat/completions",
        {
            "model": "gpt-4o",
            "messages": OPENAI_TOOL_TURN,
            "temperature": 0,
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "w",
                        "parameters": {"type": "object", "additionalProperties": False},
                    },
                }
            ],
            "tool_choice": "auto",
            "parallel_tool_calls": True,
            "max_completion_tokens": 50,
        },
        {},
    ),
    (
        "openrouter extras",
        "openrouter",
        "/chat/completions",
        {
            "model": "a/b",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}
                    ],
                },
                {
                    "role": "assistant",
                    "content": "x",
                    "reasoning": "r",
                    "reasoning_details": [
                        {"type": "reasoning.text", "text": "r", "signature": "s"}
                    ],
                },
                {"role": "user", "content": "more"},
            ],
            "reasoning": {"effort": "high"},
            "provider": {"sort": "price"},
            "transforms": [],
            "models": ["a/b", "c/d"],
            "route": "fallback",
            "usage": {"include": True},
            "top_k": 5,
        },
        {},
    ),
    (
        "gemini full JSON Schema in parametersJsonSchema",
        "gemini",
        "/models/gemini-2.5-flash:generateContent",
        {
            "contents": [
                *GEMINI_USER,
                {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {"name": "get_weather", "args": {}},
                            "thoughtSignature": "c2ln",
                        }
                    ],
                },
                {
                    "role": "user",
                    "parts": [{"functionResponse": {"name": "get_weather", "response": {"t": 5}}}],
                },
            ],
            "system_instruction": {"parts": [{"text": "Be brief."}]},
            "tools": gemini_tool(
                {
                    "type": "object",
                    "additionalProperties": False,
                    "$defs": {},
                    "properties": {"u": {"type": "string", "format": "uri"}},
                },
                key="parametersJsonSchema",
            ),
            "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
            "generationConfig": {
                "temperature": 1.5,
                "maxOutputTokens": 100,
                "thinkingConfig": {"thinkingBudget": 128, "includeThoughts": True},
            },
        },
        {},
    ),
    (
        "gemini lowercase OpenAPI types",
        "gemini",
        "/models/gemini-2.5-flash:generateContent",
        {
            "contents": GEMINI_USER,
            "tools": gemini_tool(
                {
                    "type": "object",
                    "properties": {"n": {"type": "integer", "format": "int32"}},
                    "required": ["n"],
                }
            ),
        },
        {},
    ),
    (
        "gemini countTokens with generateContentRequest",
        "gemini",
        "/models/gemini-2.5-flash:countTokens",
        {"generateContentRequest": {"model": "models/gemini-2.5-flash", "contents": GEMINI_USER}},
        {},
    ),
]


@pytest.mark.parametrize(
    ("backend", "path", "body", "headers"),
    [case[1:] for case in ACCEPTED],
    ids=[case[0] for case in ACCEPTED],
)
def test_accepts_what_the_real_api_accepts(
    upstream: Upstream,
    http: httpx.Client,
    backend: Backend,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
) -> None:
    response = post(http, upstream, backend, path, body, headers)
    assert response.status_code == 200, response.text


# --------------------------------------------------------------------------------------------
# auth, unknown paths, scripted errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["openai", "openrouter", "anthropic", "gemini"])
def test_wrong_or_missing_key_is_401_in_the_api_format(
    upstream: Upstream, http: httpx.Client, backend: Backend
) -> None:
    path = (
        "/models/gemini-2.5-flash:generateContent"
        if backend == "gemini"
        else ("/messages" if backend == "anthropic" else "/chat/completions")
    )
    wrong = {"authorization": "Bearer nope", "x-api-key": "nope", "x-goog-api-key": "nope"}
    for headers in (wrong, {}):
        base = {"anthropic-version": "2023-06-01"} if backend == "anthropic" else {}
        response = http.post(
            upstream.base_url(backend) + path, json={}, headers={**base, **headers}
        )
        assert response.status_code == 401
        error = response.json()
        if backend == "anthropic":
            assert error["error"]["type"] == "authentication_error"
        elif backend == "gemini":
            assert error["error"]["status"] == "UNAUTHENTICATED"
        else:
            assert error["error"]["message"]
        assert "nope" not in response.text  # keys are never echoed


def test_unknown_paths_and_anthropic_version(upstream: Upstream, http: httpx.Client) -> None:
    for backend in ("openai", "openrouter", "anthropic", "gemini"):
        response = http.get(
            upstream.base_url(backend) + "/nowhere", headers=auth_headers(upstream, backend)
        )
        assert response.status_code == 404
        assert "error" in response.json()
    assert http.get(upstream.url + "/elsewhere").status_code == 404
    # the SDK-style root without the version is no API root
    response = http.post(
        upstream.sdk_base_url("anthropic") + "/messages",
        json=anthropic_body(),
        headers=auth_headers(upstream, "anthropic"),
    )
    assert response.status_code == 404
    headers = {"x-api-key": upstream.keys["anthropic"] or ""}
    response = http.post(upstream.base_url("anthropic") + "/messages", json={}, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "anthropic-version: header is required"


def test_scripted_errors(
    upstream: Upstream, oai: openai.OpenAI, claude: anthropic.Anthropic, gemini: genai.Client
) -> None:
    upstream.enqueue(Reply(status=429, headers={"retry-after": "7"}), backend="openai")
    with pytest.raises(openai.RateLimitError) as rate_limited:
        oai.chat.completions.create(model="gpt-4o", messages=OAI_USER)
    assert rate_limited.value.response.headers["retry-after"] == "7"
    upstream.enqueue(Reply(status=529), backend="anthropic")
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        claude.messages.create(model="c", max_tokens=10, messages=ANT_USER)
    assert overloaded.value.status_code == 529
    assert isinstance(overloaded.value.body, dict)
    assert overloaded.value.body["error"]["type"] == "overloaded_error"
    upstream.enqueue(Reply(status=503, error_message="try later"), backend="gemini")
    with pytest.raises(genai_errors.ServerError) as unavailable:
        gemini.models.generate_content(model="gemini-2.5-flash", contents="x")
    assert unavailable.value.code == 503 and unavailable.value.message == "try later"
    upstream.enqueue(Reply(status=500))
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(model="gpt-4o", messages=OAI_USER)


# --------------------------------------------------------------------------------------------
# transport: split, delays, broken streams
# --------------------------------------------------------------------------------------------


def test_split_bytes_streams_still_parse(
    upstream: Upstream, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    text = "Split anywhere, even inside UTF-8: åäö ✓."
    upstream.enqueue(Reply(text=text, text_chunks=6, split_bytes=3), backend="openai")
    chunks = oai.chat.completions.create(model="gpt-4o", messages=OAI_USER, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    upstream.enqueue(Reply(text=text, tool_calls=[WEATHER], split_bytes=5), backend="anthropic")
    with claude.messages.stream(model="c", max_tokens=50, messages=ANT_USER) as stream:
        message = stream.get_final_message()
    assert text_of(message.content[0]) == text
    assert tool_use_of(message.content[1]).input == WEATHER.args


def test_delays(upstream: Upstream, oai: openai.OpenAI) -> None:
    upstream.enqueue(Reply(text="abcd", text_chunks=4, delay_before_headers=0.2, chunk_delay=0.05))
    started = time.monotonic()
    stream = oai.chat.completions.create(model="gpt-4o", messages=OAI_USER, stream=True)
    first = time.monotonic() - started
    list(stream)
    total = time.monotonic() - started
    assert 0.2 <= first < 0.5
    assert total >= 0.2 + 0.05 * 6


def test_broken_streams(
    upstream: Upstream, oai: openai.OpenAI, claude: anthropic.Anthropic, http: httpx.Client
) -> None:
    upstream.enqueue(Reply(text="x" * 40, text_chunks=8, close_midstream=True))
    with pytest.raises((openai.APIConnectionError, httpx.RemoteProtocolError)):
        list(oai.chat.completions.create(model="gpt-4o", messages=OAI_USER, stream=True))
    assert upstream.last().error == "connection dropped mid-stream (close_midstream)"
    upstream.enqueue(Reply(text="x" * 40, text_chunks=8, midstream_error="Overloaded"))
    with (
        pytest.raises(anthropic.APIStatusError),
        claude.messages.stream(model="c", max_tokens=50, messages=ANT_USER) as stream,
    ):
        stream.get_final_message()
    upstream.enqueue(Reply(text="x" * 40, text_chunks=8, midstream_error="boom"))
    response = post(
        http,
        upstream,
        "gemini",
        "/models/g:streamGenerateContent?alt=sse",
        {"contents": GEMINI_USER},
    )
    last = json.loads(response.content.rstrip(b"\r\n").split(b"\r\n\r\n")[-1][6:])
    assert last["error"]["status"] == "UNAVAILABLE"


def test_omit_usage_and_empty_text(upstream: Upstream, oai: openai.OpenAI) -> None:
    upstream.enqueue(Reply(text="", omit_usage=True))
    completion = oai.chat.completions.create(model="gpt-4o", messages=OAI_USER)
    assert completion.usage is None and completion.choices[0].message.content == ""


# --------------------------------------------------------------------------------------------
# scripting semantics
# --------------------------------------------------------------------------------------------


def test_queues_defaults_and_records(
    upstream: Upstream, oai: openai.OpenAI, http: httpx.Client
) -> None:
    upstream.set_default(Reply(text="default for openrouter"), backend="openrouter")
    upstream.enqueue(Reply(text="shared 1"), Reply(text="shared 2"))
    upstream.enqueue(Reply(text="openai only"), backend="openai")

    def ask(backend: Backend) -> str:
        body = {"model": "m", "messages": USER}
        response = post(http, upstream, backend, "/chat/completions", body)
        return str(response.json()["choices"][0]["message"]["content"])

    assert ask("openai") == "openai only"
    assert ask("openrouter") == "shared 1"
    assert ask("openai") == "shared 2"
    assert ask("openrouter") == "default for openrouter"
    assert ask("openai") == DEFAULT_TEXT
    assert upstream.pending() == 0
    assert [r.backend for r in upstream.requests] == [
        "openai",
        "openrouter",
        "openai",
        "openrouter",
        "openai",
    ]
    assert upstream.requests_for("openrouter")[0].body["model"] == "m"
    assert upstream.wait_for_requests(5, timeout=0.1)
    upstream.clear()
    assert upstream.requests == []
    with pytest.raises(AssertionError):
        upstream.last()


def test_env_and_urls(upstream: Upstream) -> None:
    env = upstream.env()
    assert env["ANTHROPIC_API_BASE_URL"] == f"{upstream.url}/anthropic/v1"
    assert env["GEMINI_API_BASE_URL"] == f"{upstream.url}/gemini/v1beta"
    assert env["OPENROUTER_API_KEY"] == upstream.keys["openrouter"]
    assert upstream.sdk_base_url("anthropic") == f"{upstream.url}/anthropic"
    assert upstream.base_url("openai") == upstream.sdk_base_url("openai")
    assert upstream.url.startswith("http://127.0.0.1:")


def test_cli_serves_long_streams() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.upstream", "--port", "0", "--stream-chunks", "300"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), line
        url = line.split()[-1]
        body = {"model": "gpt-4o", "messages": USER, "stream": True}
        with httpx.Client(timeout=10) as client:
            response = client.post(
                f"{url}/openai/v1/chat/completions",
                json=body,
                headers={"authorization": "Bearer test-openai-key"},
            )
        deltas = [
            json.loads(line[6:])["choices"][0]["delta"].get("content")
            for line in response.text.splitlines()
            if line.startswith("data: {")
        ]
        assert len([d for d in deltas if d]) == 300
    finally:
        process.terminate()
        process.wait(timeout=10)
