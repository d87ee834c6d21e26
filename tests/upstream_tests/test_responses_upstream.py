"""The test upstream's OpenAI Responses API (`POST /openai/v1/responses`), proven with the SDK.

The openai SDK reads every rendering (`responses.create`, `stream=True`, the `responses.stream`
helper and its `get_final_response()`, which checks ids and item order); the strictness tests
post bodies the real API refuses and expect its 400s, and Codex-shaped bodies to pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import (
    FunctionToolParam,
    Response,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseReasoningItem,
    ResponseStreamEvent,
)
from pydantic import TypeAdapter

from tests.upstream import Reply, ToolCall, Upstream, Usage
from tests.upstream.render_responses import ResponsesRender

WEATHER = ToolCall("get_weather", {"city": "Oslo", "unit": "c"})
CLOCK = ToolCall("get_time", {"zone": "Europe/Oslo"}, id="call_clock")
STRICT_PARAMETERS: dict[str, object] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
STRICT_TOOL: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": STRICT_PARAMETERS,
    "strict": True,
}
LOOSE_TOOL: FunctionToolParam = {
    "type": "function",
    "name": "get_time",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    "strict": False,
}
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


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
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def post(
    upstream: Upstream, http: httpx.Client, body: object, key: str | None = None
) -> httpx.Response:
    key = key if key is not None else upstream.keys["openai"]
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return http.post(upstream.base_url("openai") + "/responses", json=body, headers=headers)


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    """The `data` of each SSE event, checked against its `event:` line."""
    out = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        name, data = block.split("\n")
        payload = json.loads(data.removeprefix("data: "))
        assert name == f"event: {payload['type']}"
        out.append(payload)
    return out


# --------------------------------------------------------------------------------------------
# renderings against the SDK's own models (strict pydantic validation)
# --------------------------------------------------------------------------------------------

REPLIES = [
    Reply(),
    Reply(text="", tool_calls=[WEATHER, CLOCK]),
    Reply(text="Let me check.", thinking="Weather.\n\nOslo.", tool_calls=[WEATHER]),
    Reply(thinking="Deep thought", text="42", usage=Usage(100, 50, 30, 20), finish="length"),
    Reply(text="hidden", finish="content_filter", omit_usage=True),
]
REQUEST = {
    "model": "gpt-5",
    "input": "hi",
    "reasoning": {"effort": "high", "summary": "auto"},
    "include": ["reasoning.encrypted_content"],
    "tools": [STRICT_TOOL],
}


@pytest.mark.parametrize("reply", REPLIES)
def test_renderings_validate_against_the_sdk_models(reply: Reply) -> None:
    answer = ResponsesRender(reply, "gpt-5", REQUEST)
    whole = Response.model_validate(answer.response())
    assert whole.status == (
        "completed" if reply.neutral_finish in ("stop", "tool_calls") else "incomplete"
    )
    events = [EVENTS.validate_python(event) for event in sse_events(b"".join(answer.events()))]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[1].type == "response.in_progress"
    assert events[-1].type == f"response.{whole.status}"
    assert events[-1].response.output == whole.output
    assert {event.response.id for event in events if hasattr(event, "response")} == {whole.id}
    failed = EVENTS.validate_python(sse_events(answer.error_event("boom", bare=False))[0])
    assert failed.type == "response.failed" and failed.response.error.message == "boom"
    error = EVENTS.validate_python(sse_events(answer.error_event("boom", bare=True))[0])
    assert error.type == "error" and error.message == "boom"


# --------------------------------------------------------------------------------------------
# the SDK reads what is served
# --------------------------------------------------------------------------------------------


def test_create_text_reasoning_and_usage(upstream: Upstream, oai: openai.OpenAI) -> None:
    upstream.enqueue(
        Reply(text="Sunny.", thinking="Look up.\n\nAnswer.", usage=Usage(30, 9, 4, 10))
    )
    response = oai.responses.create(
        model="gpt-5",
        input="Weather in Oslo?",
        instructions="Be brief.",
        reasoning={"effort": "low", "summary": "auto"},
        include=["reasoning.encrypted_content"],
        store=False,
    )
    assert response.output_text == "Sunny." and response.status == "completed"
    reasoning, message = response.output
    assert isinstance(reasoning, ResponseReasoningItem)
    assert [part.text for part in reasoning.summary] == ["Look up.", "Answer."]
    assert reasoning.encrypted_content
    assert isinstance(message, ResponseOutputMessage)
    usage = response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (30, 9, 39)
    assert usage.input_tokens_details.cached_tokens == 10
    assert usage.output_tokens_details.reasoning_tokens == 4
    assert response.instructions == "Be brief." and response.model_extra == {"store": False}
    assert response.reasoning is not None and response.reasoning.effort == "low"
    request = upstream.last("openai")
    assert request.api_path == "/responses" and request.status == 200
    assert request.headers["authorization"] == f"Bearer {upstream.keys['openai']}"
    assert request.body["input"] == "Weather in Oslo?"


def test_reasoning_summary_and_encrypted_content_only_when_asked(
    upstream: Upstream, oai: openai.OpenAI
) -> None:
    upstream.enqueue(Reply(text="x", thinking="secret thoughts"))
    response = oai.responses.create(model="gpt-5", input="hi", reasoning={"effort": "low"})
    reasoning = response.output[0]
    assert isinstance(reasoning, ResponseReasoningItem)
    assert reasoning.summary == [] and reasoning.encrypted_content is None


def test_stream_events_in_the_api_order(upstream: Upstream, oai: openai.OpenAI) -> None:
    upstream.enqueue(
        Reply(text="abcdef", thinking="think", tool_calls=[WEATHER], text_chunks=2, args_chunks=2)
    )
    events = list(
        oai.responses.create(
            model="gpt-5",
            input="hi",
            stream=True,
            reasoning={"summary": "auto"},
            tools=[STRICT_TOOL],
        )
    )
    assert [event.type for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.output_text == "abcdef"
    call = final.response.output[2]
    assert isinstance(call, ResponseFunctionToolCall)
    assert json.loads(call.arguments) == WEATHER.args
    assert upstream.last("openai").stream


def test_stream_helper_final_response_and_tool_round_trip(
    upstream: Upstream, oai: openai.OpenAI
) -> None:
    upstream.enqueue(Reply(text="", tool_calls=[WEATHER, CLOCK]), Reply(text="It is 12:00, sunny."))
    with oai.responses.stream(
        model="gpt-5", input="Weather and time?", tools=[STRICT_TOOL, LOOSE_TOOL]
    ) as stream:
        deltas = [
            event.delta
            for event in stream
            if event.type == "response.function_call_arguments.delta"
        ]
        first = stream.get_final_response()
    calls = [item for item in first.output if isinstance(item, ResponseFunctionToolCall)]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", WEATHER.args),
        ("get_time", CLOCK.args),
    ]
    assert calls[1].call_id == "call_clock" and "".join(deltas) == "".join(
        c.arguments for c in calls
    )
    history: list[Any] = [{"role": "user", "content": "Weather and time?"}]
    history += [
        {"type": "function_call", "call_id": c.call_id, "name": c.name, "arguments": c.arguments}
        for c in calls
    ]
    history += [
        {"type": "function_call_output", "call_id": c.call_id, "output": "ok"} for c in calls
    ]
    with oai.responses.stream(
        model="gpt-5", input=history, tools=[STRICT_TOOL, LOOSE_TOOL]
    ) as stream:
        second = stream.get_final_response()
    assert second.output_text == "It is 12:00, sunny."
    assert upstream.last("openai").body["input"][-1]["type"] == "function_call_output"


def test_previous_response_id_of_a_stored_response(upstream: Upstream, oai: openai.OpenAI) -> None:
    upstream.enqueue(Reply(text="", tool_calls=[WEATHER]))
    first = oai.responses.create(model="gpt-5", input="Weather?", tools=[STRICT_TOOL])
    call = first.output[0]
    assert isinstance(call, ResponseFunctionToolCall)
    follow = oai.responses.create(
        model="gpt-5",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )
    assert follow.previous_response_id == first.id and follow.output_text
    upstream.enqueue(Reply(text="not kept"))
    unstored = oai.responses.create(model="gpt-5", input="x", store=False)
    with pytest.raises(openai.BadRequestError) as error:
        oai.responses.create(model="gpt-5", input="y", previous_response_id=unstored.id)
    assert error.value.message.endswith(f"Previous response with id '{unstored.id}' not found.")


def test_incomplete_at_the_token_limit(upstream: Upstream, oai: openai.OpenAI) -> None:
    upstream.enqueue(Reply(text="cut sho", finish="length"), Reply(text="cut sho", finish="length"))
    whole = oai.responses.create(model="gpt-5", input="hi", max_output_tokens=16)
    assert whole.status == "incomplete"
    assert whole.incomplete_details is not None
    assert whole.incomplete_details.reason == "max_output_tokens"
    events = list(
        oai.responses.create(model="gpt-5", input="hi", max_output_tokens=16, stream=True)
    )
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.output_text == "cut sho"


def test_obfuscation_padding_follows_stream_options(upstream: Upstream, http: httpx.Client) -> None:
    padded = post(upstream, http, {"model": "gpt-5", "input": "hi", "stream": True})
    deltas = [e for e in sse_events(padded.content) if e["type"].endswith(".delta")]
    assert deltas and all(isinstance(e["obfuscation"], str) for e in deltas)
    plain = post(
        upstream,
        http,
        {
            "model": "gpt-5",
            "input": "hi",
            "stream": True,
            "stream_options": {"include_obfuscation": False},
        },
    )
    assert padded.headers["content-type"].startswith("text/event-stream")
    assert all("obfuscation" not in e for e in sse_events(plain.content))


def test_split_bytes_stream_still_parses(upstream: Upstream, oai: openai.OpenAI) -> None:
    text = "Split anywhere, even inside UTF-8: åäö ✓."
    upstream.enqueue(Reply(text=text, text_chunks=6, split_bytes=3))
    with oai.responses.stream(model="gpt-5", input="hi") as stream:
        assert stream.get_final_response().output_text == text


# --------------------------------------------------------------------------------------------
# errors: scripted statuses, broken streams, auth, models
# --------------------------------------------------------------------------------------------


def test_scripted_status_errors(upstream: Upstream, oai: openai.OpenAI) -> None:
    upstream.enqueue(Reply(status=429, headers={"retry-after": "7"}))
    with pytest.raises(openai.RateLimitError) as limited:
        oai.responses.create(model="gpt-5", input="hi")
    assert limited.value.response.headers["retry-after"] == "7"
    assert (
        isinstance(limited.value.body, dict) and limited.value.body["code"] == "rate_limit_exceeded"
    )
    upstream.enqueue(Reply(status=500))
    with pytest.raises(openai.InternalServerError):
        list(oai.responses.create(model="gpt-5", input="hi", stream=True))


def test_midstream_failures(upstream: Upstream, oai: openai.OpenAI) -> None:
    upstream.enqueue(Reply(text="x" * 40, text_chunks=8, midstream_error="Overloaded"))
    events = list(oai.responses.create(model="gpt-5", input="hi", stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    failed = events[-1]
    assert failed.type == "response.failed" and failed.response.status == "failed"
    assert failed.response.error is not None and failed.response.error.message == "Overloaded"
    upstream.enqueue(
        Reply(
            text="x" * 40,
            midstream_error="slow down",
            responses_error_event=True,
            error_type="rate_limit_exceeded",
        )
    )
    events = list(oai.responses.create(model="gpt-5", input="hi", stream=True))
    assert events[-1].type == "error"
    assert (events[-1].code, events[-1].message) == ("rate_limit_exceeded", "slow down")
    upstream.enqueue(Reply(text="x" * 40, text_chunks=8, close_midstream=True))
    with pytest.raises((openai.APIConnectionError, httpx.RemoteProtocolError)):
        list(oai.responses.create(model="gpt-5", input="hi", stream=True))
    assert upstream.last().error == "connection dropped mid-stream (close_midstream)"


def test_auth_unknown_model_and_other_backends(upstream: Upstream, http: httpx.Client) -> None:
    body = {"model": "gpt-5", "input": "hi"}
    missing = post(upstream, http, body, key="")
    assert (
        missing.status_code == 401
        and "didn't provide an API key" in missing.json()["error"]["message"]
    )
    wrong = post(upstream, http, body, key="sk-wrong-key-123456")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    upstream.state.strict_models = True
    try:
        unknown = post(upstream, http, {"model": "gpt-9", "input": "hi"})
    finally:
        upstream.state.strict_models = False
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    other = http.post(
        upstream.base_url("openrouter") + "/responses",
        json=body,
        headers={"authorization": f"Bearer {upstream.keys['openrouter']}"},
    )
    assert other.status_code == 404


# --------------------------------------------------------------------------------------------
# strictness: what the real API refuses, and what it accepts
# --------------------------------------------------------------------------------------------


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-5", "input": "hi", **fields}


CALL = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"}
OUTPUT = {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}
REJECTED: list[tuple[str, dict[str, Any], int, str]] = [
    ("no model", {"input": "hi"}, 400, "Missing required parameter: 'model'."),
    ("no input", {"model": "gpt-5"}, 400, "Missing required parameter: 'input'."),
    ("unknown field", body(messages=[]), 400, "Unrecognized request argument supplied: messages"),
    (
        "bad part type",
        body(input=[{"role": "user", "content": [{"type": "text", "text": "x"}]}]),
        400,
        "Invalid value for 'input[0].content[0].type'",
    ),
    (
        "chat-style tool",
        body(tools=[{"type": "function", "function": {"name": "f"}}]),
        400,
        "Missing required parameter: 'tools[0].name'.",
    ),
    ("temperature", body(temperature=2.5), 400, "Invalid 'temperature': decimal above maximum"),
    ("max_output_tokens", body(max_output_tokens=8), 400, "Expected a value >= 16"),
    (
        "stream_options without stream",
        body(stream_options={"include_obfuscation": False}),
        400,
        "only allowed when 'stream' is enabled",
    ),
    (
        "output without its call",
        body(input=[{"role": "user", "content": "hi"}, OUTPUT]),
        400,
        "No tool call found for function call output with call_id call_1.",
    ),
    (
        "call without its output",
        body(input=[{"role": "user", "content": "hi"}, CALL]),
        400,
        "No tool output found for function call call_1.",
    ),
    (
        "unknown previous response",
        body(previous_response_id="resp_unknown"),
        400,
        "Previous response with id 'resp_unknown' not found.",
    ),
    (
        "conversation",
        body(conversation="conv_1"),
        404,
        "Conversation with id 'conv_1' not found.",
    ),
    (
        "reasoning item neither stored nor encrypted",
        body(
            store=False,
            input=[
                {"role": "user", "content": "hi"},
                {"type": "reasoning", "id": "rs_1", "summary": []},
            ],
        ),
        404,
        "Item with id 'rs_1' not found. Items are not persisted when `store` is set to false.",
    ),
    (
        "strict schema not closed",
        body(tools=[{**STRICT_TOOL, "parameters": {"type": "object", "properties": {}}}]),
        400,
        "Invalid schema for function 'get_weather': In context=(), 'additionalProperties' is "
        "required to be supplied and to be false.",
    ),
    (
        "strict by default, a property not required",
        body(
            tools=[
                {
                    "type": "function",
                    "name": "get_weather",
                    "parameters": {
                        **STRICT_PARAMETERS,
                        "required": ["city"],
                    },
                }
            ]
        ),
        400,
        "Missing 'unit'.",
    ),
    (
        "tool name",
        body(tools=[{**LOOSE_TOOL, "name": "get time"}]),
        400,
        "Invalid 'tools[0].name': string does not match pattern.",
    ),
    (
        "tool_choice names no tool",
        body(tools=[LOOSE_TOOL], tool_choice={"type": "function", "name": "nope"}),
        400,
        "Tool choice 'function' with name 'nope' not found in 'tools' parameter.",
    ),
]


@pytest.mark.parametrize(
    ("body_", "status", "message"),
    [case[1:] for case in REJECTED],
    ids=[case[0] for case in REJECTED],
)
def test_rejects_what_the_real_api_rejects(
    upstream: Upstream, http: httpx.Client, body_: dict[str, Any], status: int, message: str
) -> None:
    response = post(upstream, http, body_)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error["message"]
    assert error["type"] == "invalid_request_error"
    assert upstream.last().status == status and upstream.pending() == 0


CODEX_LIKE = {
    "model": "gpt-5",
    "instructions": "You are a coding agent.",
    "input": [
        {
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "Sandbox: on"}],
        },
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "List files"}],
        },
        {
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "ls"}],
            "encrypted_content": "gAAA",
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Running ls."}],
        },
        {**CALL, "name": "get_time"},
        {**OUTPUT, "output": "a.py b.py"},
        {"role": "assistant", "content": "Two files."},
        {"role": "user", "content": "Thanks"},
    ],
    "tools": [STRICT_TOOL, LOOSE_TOOL],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "session-1",
}
ACCEPTED = [
    CODEX_LIKE,
    body(
        input=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_image",
                        "image_url": "data:image/png;base64,AA",
                        "detail": "auto",
                    }
                ],
            }
        ]
    ),
    body(
        tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": False}]
    ),
    body(temperature=0.2, top_p=0.5, max_output_tokens=16, metadata={"k": "v"}, truncation="auto"),
]


@pytest.mark.parametrize("body_", ACCEPTED, ids=["codex", "image", "loose tool", "sampling"])
def test_accepts_what_the_real_api_accepts(
    upstream: Upstream, http: httpx.Client, body_: dict[str, Any]
) -> None:
    response = post(upstream, http, body_)
    assert response.status_code == 200, response.text
    if body_.get("stream"):
        assert sse_events(response.content)[-1]["type"] == "response.completed"
    else:
        Response.model_validate(response.json())
