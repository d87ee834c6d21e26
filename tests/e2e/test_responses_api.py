"""The OpenAI Responses API through the real proxy, driven by the openai SDK (and the others).

As a front (`POST /v1/responses`: `responses.create`, `stream=True`, the `responses.stream`
helper and its `get_final_response()`) to every backend, and as a backend
(`openai-responses:<model>`) behind the chat-completions, Anthropic and Gemini fronts. Each case
asserts on what the client read through the SDK and on what the strict upstream received.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import openai
import pytest
from openai.types.responses import (
    FunctionToolParam,
    Response,
    ResponseFunctionToolCall,
    ResponseReasoningItem,
)

from tests.e2e import clients
from tests.e2e.conftest import PROXY_KEY, UPSTREAM_KEYS
from tests.e2e.proxy import ProxyProcess
from tests.upstream.script import RecordedRequest, Reply, ToolCall, Upstream, Usage

Mode = Literal["create", "stream", "helper"]
MODES: tuple[Mode, ...] = ("create", "stream", "helper")
# target backend -> (the upstream API that answers it, the model asked for)
TARGETS: dict[str, tuple[str, str]] = {
    "openai": ("openai", "gpt-5"),
    "openrouter": ("openrouter", "openai/gpt-5"),
    "anthropic": ("anthropic", "claude-sonnet-4-5"),
    "gemini": ("gemini", "gemini-2.5-pro"),
    "openai-responses": ("openai", "gpt-5"),
}
ANSWER = "It is sunny in Paris, 21°C. Enjoy the café ☕."
THOUGHT = "The user wants the weather.\n\nParis is sunny today."
ARGS = {"city": "Paris", "unit": "c"}
TOOL: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": str(clients.TOOL["description"]),
    "parameters": cast(dict[str, object], clients.TOOL["parameters"]),
    "strict": False,
}


def model_of(target: str) -> str:
    return f"{target}:{TARGETS[target][1]}"


def upstream_api(target: str) -> str:
    return TARGETS[target][0]


@pytest.fixture
def client(proxy: ProxyProcess) -> openai.OpenAI:
    return clients.openai_client(proxy.url, PROXY_KEY)


# --------------------------------------------------------------------------------------------
# the three ways the SDK asks, reduced to the final `Response`
# --------------------------------------------------------------------------------------------


@dataclass
class Asked:
    response: Response
    text_deltas: str | None = None  # what the text delta events added up to (streams)
    args_deltas: list[str] = field(default_factory=list)  # per function call (streams)
    event_types: list[str] = field(default_factory=list)

    @property
    def calls(self) -> list[ResponseFunctionToolCall]:
        return [item for item in self.response.output if isinstance(item, ResponseFunctionToolCall)]

    @property
    def reasoning(self) -> list[ResponseReasoningItem]:
        return [item for item in self.response.output if isinstance(item, ResponseReasoningItem)]


def ask(client: openai.OpenAI, mode: Mode, **kwargs: Any) -> Asked:
    """`responses.create`, `create(stream=True)` or `responses.stream` with `kwargs`."""
    response: Response
    if mode == "create":
        return Asked(client.responses.create(**kwargs))
    if mode == "helper":
        with client.responses.stream(**kwargs) as stream:
            events = list(stream)
            response = stream.get_final_response()
    else:
        events = list(client.responses.create(**kwargs, stream=True))
        final = events[-1]
        assert final.type in ("response.completed", "response.incomplete"), final.type
        response = final.response
    numbers = [event.sequence_number for event in events]
    assert numbers == list(range(len(numbers))), numbers
    args: dict[str, str] = {}
    for event in events:
        if event.type == "response.function_call_arguments.delta":
            args[event.item_id] = args.get(event.item_id, "") + event.delta
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    return Asked(response, text, list(args.values()), [event.type for event in events])


# --------------------------------------------------------------------------------------------
# what the upstream received, read back per API
# --------------------------------------------------------------------------------------------


def only_request(upstream: Upstream, target: str) -> RecordedRequest:
    records = [r for r in upstream.requests if r.method == "POST"]
    assert len(records) == 1, [(r.method, r.path) for r in records]
    record = records[0]
    assert record.backend == upstream_api(target)
    if target == "openai-responses":
        assert record.api_path == "/responses"
    elif upstream_api(target) in ("openai", "openrouter"):
        assert record.api_path == "/chat/completions"
    return record


def text_of(content: Any, key: str = "text") -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get(key, "") for part in content or [] if isinstance(part, dict))


def received(target: str, record: RecordedRequest) -> tuple[str, str, list[str], bool]:
    """(system text, last user text, declared tool names, streamed) from the upstream body."""
    body = record.body
    api = upstream_api(target)
    if target == "openai-responses":
        items = [body["input"]] if isinstance(body["input"], str) else body["input"]
        users = [i for i in items if isinstance(i, str) or i.get("role") == "user"]
        user = users[-1] if isinstance(users[-1], str) else text_of(users[-1]["content"])
        tools = [t["name"] for t in body.get("tools", [])]
        return body.get("instructions", ""), user, tools, body.get("stream") is True
    if api in ("openai", "openrouter"):
        system = " ".join(
            text_of(m["content"]) for m in body["messages"] if m["role"] in ("system", "developer")
        )
        user = text_of([m for m in body["messages"] if m["role"] == "user"][-1]["content"])
        tools = [t["function"]["name"] for t in body.get("tools", [])]
        return system, user, tools, body.get("stream") is True
    if api == "anthropic":
        last = [m for m in body["messages"] if m["role"] == "user"][-1]
        tools = [t["name"] for t in body.get("tools", [])]
        return text_of(body.get("system", "")), text_of(last["content"]), tools, record.stream
    system = text_of(body.get("systemInstruction", {}).get("parts"))
    user = text_of([c for c in body["contents"] if c["role"] == "user"][-1]["parts"])
    tools = [d["name"] for t in body.get("tools", []) for d in t.get("functionDeclarations", [])]
    return system, user, tools, record.stream


def tool_turns(
    target: str, body: dict[str, Any]
) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, str]]]:
    """(the assistant's calls as (id, args), the results as (id, text)) in the upstream body.

    Gemini pairs a result with its call by function name: the "id" is the name there.
    """
    api = upstream_api(target)
    calls: list[tuple[str, dict[str, Any]]] = []
    results: list[tuple[str, str]] = []
    if target == "openai-responses":
        for item in body["input"]:
            if item.get("type") == "function_call":
                calls.append((item["call_id"], json.loads(item["arguments"])))
            elif item.get("type") == "function_call_output":
                results.append((item["call_id"], text_of(item["output"])))
    elif api in ("openai", "openrouter"):
        for message in body["messages"]:
            for call in message.get("tool_calls") or []:
                calls.append((call["id"], json.loads(call["function"]["arguments"])))
            if message["role"] == "tool":
                results.append((message["tool_call_id"], text_of(message["content"])))
    elif api == "anthropic":
        for message in body["messages"]:
            for block in message["content"] if isinstance(message["content"], list) else []:
                if block["type"] == "tool_use":
                    calls.append((block["id"], block["input"]))
                elif block["type"] == "tool_result":
                    results.append((block["tool_use_id"], text_of(block["content"])))
    else:
        for content in body["contents"]:
            for part in content["parts"]:
                if "functionCall" in part:
                    calls.append((part["functionCall"]["name"], part["functionCall"]["args"]))
                elif "functionResponse" in part:
                    response = part["functionResponse"]
                    results.append(
                        (response["name"], json.dumps(response["response"], ensure_ascii=False))
                    )
    return calls, results


def check_key(target: str, record: RecordedRequest) -> None:
    key = UPSTREAM_KEYS[upstream_api(target)]
    assert record.key == key
    assert PROXY_KEY not in repr(record.headers) and PROXY_KEY not in repr(record.body)


# --------------------------------------------------------------------------------------------
# the Responses front to every backend
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", TARGETS)
def test_text_and_usage(target: str, mode: Mode, client: openai.OpenAI, upstream: Upstream) -> None:
    upstream.enqueue(Reply(text=ANSWER, text_chunks=5, usage=Usage(21, 7, 0, 0)))
    asked = ask(
        client, mode, model=model_of(target), instructions=clients.SYSTEM, input=clients.PROMPT
    )

    response = asked.response
    assert response.output_text == ANSWER and response.status == "completed"
    assert asked.text_deltas in (None, ANSWER)
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (21, 7)
    assert response.usage.total_tokens == 28

    record = only_request(upstream, target)
    system, user, tools, streamed = received(target, record)
    assert (system, user, tools) == (clients.SYSTEM, clients.PROMPT, [])
    assert streamed == (mode != "create")
    assert record.model == TARGETS[target][1]
    check_key(target, record)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", TARGETS)
def test_function_tool_round_trip(
    target: str, mode: Mode, client: openai.OpenAI, upstream: Upstream
) -> None:
    upstream.enqueue(
        Reply(text="", tool_calls=[ToolCall("get_weather", ARGS)], args_chunks=4),
        Reply(text=ANSWER),
    )
    model = model_of(target)
    first = ask(client, mode, model=model, input=clients.PROMPT, tools=[TOOL])
    assert first.response.status == "completed" and first.response.output_text == ""
    [call] = first.calls
    assert (call.name, json.loads(call.arguments)) == ("get_weather", ARGS)
    assert call.call_id
    if mode != "create":
        assert first.args_deltas == [call.arguments]
    record = only_request(upstream, target)
    assert received(target, record)[2] == ["get_weather"]
    if target != "openai-responses":  # converted tools are sent non-strict
        assert "strict" not in json.dumps(record.body) or '"strict": false' in json.dumps(
            record.body
        )
    upstream.clear()

    history: list[Any] = [
        {"role": "user", "content": clients.PROMPT},
        {
            "type": "function_call",
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
        },
        {"type": "function_call_output", "call_id": call.call_id, "output": "21°C, sunny"},
    ]
    second = ask(client, mode, model=model, input=history, tools=[TOOL])
    assert second.response.output_text == ANSWER and second.calls == []

    calls, results = tool_turns(target, only_request(upstream, target).body)
    pairing = "get_weather" if upstream_api(target) == "gemini" else call.call_id
    assert calls == [(pairing, ARGS)]
    assert len(results) == 1 and results[0][0] == pairing and "21°C, sunny" in results[0][1]


# The reasoning request `{"effort": "high", "summary": "auto"}` in each backend's own form.
REASONING_SENT: dict[str, Any] = {
    "openai": lambda body: body["reasoning_effort"] == "high",
    "openrouter": lambda body: body["reasoning"] == {"effort": "high"},
    "anthropic": lambda body: (
        body["thinking"] == {"type": "enabled", "budget_tokens": 16384}
        and body["max_tokens"] > 16384
    ),
    "gemini": lambda body: (
        body["generationConfig"]["thinkingConfig"]
        == {"thinkingBudget": 24576, "includeThoughts": True}
    ),
    "openai-responses": lambda body: body["reasoning"] == {"effort": "high", "summary": "auto"},
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", TARGETS)
def test_reasoning_reaches_each_backend_in_its_form(
    target: str, mode: Mode, client: openai.OpenAI, upstream: Upstream
) -> None:
    upstream.enqueue(Reply(text=ANSWER, thinking=THOUGHT, usage=Usage(30, 20, 12, 4)))
    asked = ask(
        client,
        mode,
        model=model_of(target),
        input=clients.PROMPT,
        reasoning={"effort": "high", "summary": "auto"},
    )
    assert asked.response.output_text == ANSWER
    body = only_request(upstream, target).body
    assert REASONING_SENT[target](body), body
    usage = asked.response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.input_tokens_details.cached_tokens) == (30, 4)
    if target == "openai":
        assert asked.reasoning == []  # chat completions never return the reasoning text
    else:
        # one item holds the thought; a Gemini stream may add a signature-only item (its
        # thoughtSignature came on a later part), which holds no text
        [item, *signature_only] = asked.reasoning
        assert "\n\n".join(part.text for part in item.summary) == THOUGHT
        assert asked.response.output.index(item) == 0
        assert all(not r.summary and r.encrypted_content for r in signature_only)
        assert signature_only == [] or (target, mode) in (
            ("gemini", "stream"),
            ("gemini", "helper"),
        )
    if target != "anthropic":  # the Messages API does not count thinking tokens apart
        assert usage.output_tokens_details.reasoning_tokens == 12


@pytest.mark.parametrize(
    "target",
    ["anthropic", "openai-responses"],
)
def test_reasoning_and_tool_loop_keep_the_thinking(
    target: str, client: openai.OpenAI, upstream: Upstream
) -> None:
    """Codex's loop: reasoning on, `store: false`, the reasoning item sent back with the call.

    Anthropic refuses a tool loop with thinking on unless the assistant turn that made the call
    starts with its signed thinking block: the signature the proxy handed out as
    `encrypted_content` has to come back as that block, and thinking has to stay on.
    """
    upstream.enqueue(
        Reply(
            text="",
            thinking=THOUGHT,
            thinking_signature="c2lnbmVkLWJ5LXRoZS11cHN0cmVhbQ==",
            tool_calls=[ToolCall("get_weather", ARGS)],
        ),
        Reply(text=ANSWER),
    )
    common: dict[str, Any] = {
        "model": model_of(target),
        "tools": [TOOL],
        "reasoning": {"effort": "medium", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "store": False,
    }
    first = ask(client, "stream", input=clients.PROMPT, **common)
    [reasoning] = first.reasoning
    [call] = first.calls
    assert reasoning.encrypted_content
    history: list[Any] = [
        {"role": "user", "content": clients.PROMPT},
        reasoning.model_dump(exclude_none=True),
        {
            "type": "function_call",
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
        },
        {"type": "function_call_output", "call_id": call.call_id, "output": "21°C, sunny"},
    ]
    upstream.clear()
    second = ask(client, "stream", input=history, **common)
    assert second.response.output_text == ANSWER
    record = only_request(upstream, target)
    assert record.status == 200, record.error
    body = record.body
    if target == "anthropic":
        assert body["thinking"] == {"type": "enabled", "budget_tokens": 8192}
        assert body["messages"][1]["content"][0] == {
            "type": "thinking",
            "thinking": THOUGHT,
            "signature": "c2lnbmVkLWJ5LXRoZS11cHN0cmVhbQ==",
        }
    else:
        assert body["input"][1] == history[1]


@pytest.mark.parametrize("mode", ["create", "stream"])
@pytest.mark.parametrize("target", TARGETS)
def test_token_limit_makes_the_response_incomplete(
    target: str, mode: Mode, client: openai.OpenAI, upstream: Upstream
) -> None:
    upstream.enqueue(Reply(text="It is sunny in", finish="length"))
    asked = ask(client, mode, model=model_of(target), input=clients.PROMPT, max_output_tokens=64)
    response = asked.response
    assert response.status == "incomplete" and response.output_text == "It is sunny in"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    if mode == "stream":
        assert asked.event_types[-1] == "response.incomplete"


@pytest.mark.parametrize("target", TARGETS)
def test_upstream_bytes_split_anywhere(
    target: str, client: openai.OpenAI, upstream: Upstream
) -> None:
    upstream.enqueue(
        Reply(
            text=ANSWER,
            thinking="Grüße ☕",
            tool_calls=[ToolCall("get_weather", ARGS)],
            split_bytes=5,
        )
    )
    asked = ask(
        client,
        "helper",
        model=model_of(target),
        input=clients.PROMPT,
        tools=[TOOL],
        reasoning={"effort": "low", "summary": "auto"},
    )
    assert asked.response.output_text == ANSWER
    assert [(c.name, json.loads(c.arguments)) for c in asked.calls] == [("get_weather", ARGS)]


@pytest.mark.parametrize("target", ["anthropic", "openai-responses"])
def test_upstream_dropping_the_stream_ends_it_with_response_failed(
    target: str, client: openai.OpenAI, upstream: Upstream
) -> None:
    """Bytes reached the client, so nothing can be retried: the stream ends with the protocol's
    own failure event (not a cut connection), naming what happened."""
    upstream.enqueue(Reply(text="x" * 60, text_chunks=12, close_midstream=True))
    events = list(client.responses.create(model=model_of(target), input="hi", stream=True))
    assert events[-1].type == "response.failed"
    assert "stream broke" in (
        events[-1].response.error.message if events[-1].response.error else ""
    )
    assert not any(e.type == "response.completed" for e in events)


# An Anthropic `budget_tokens` turned into an OpenAI effort: chat completions use the shared
# table of `protocol/reasoning.py` (1..4096 low, ..12288 medium, above high); the Responses
# codec has thresholds of its own (..1024 low, ..8192 medium).
BUDGET_CASES = [
    pytest.param(target, budget, effort, id=f"{target}-{budget}")
    for target in ("openai", "openai-responses")
    for budget, effort in ((2048, "low"), (10000, "medium"), (20000, "high"))
]


@pytest.mark.parametrize(("target", "budget", "effort"), BUDGET_CASES)
def test_thinking_budget_becomes_the_table_effort(
    target: str, budget: int, effort: str, proxy: ProxyProcess, upstream: Upstream
) -> None:
    upstream.enqueue(Reply(text=ANSWER))
    claude = clients.anthropic_client(proxy.url, PROXY_KEY)
    claude.messages.create(
        model=model_of(target),
        max_tokens=budget + 4096,
        thinking={"type": "enabled", "budget_tokens": budget},
        messages=[{"role": "user", "content": clients.PROMPT}],
    )
    body = only_request(upstream, target).body
    sent = body["reasoning"]["effort"] if target == "openai-responses" else body["reasoning_effort"]
    assert sent == effort


def test_anthropic_thinking_comes_back_from_the_responses_backend(
    proxy: ProxyProcess, upstream: Upstream
) -> None:
    upstream.enqueue(Reply(text=ANSWER, thinking=THOUGHT))
    claude = clients.anthropic_client(proxy.url, PROXY_KEY)
    with claude.messages.stream(
        model="openai-responses:gpt-5",
        max_tokens=8192,
        thinking={"type": "enabled", "budget_tokens": 4096},
        messages=[{"role": "user", "content": clients.PROMPT}],
    ) as stream:
        message = stream.get_final_message()
    body = only_request(upstream, "openai-responses").body
    assert body["reasoning"].get("summary") == "auto"
    thinking = [block for block in message.content if block.type == "thinking"]
    assert [block.thinking for block in thinking] == [THOUGHT]


# --------------------------------------------------------------------------------------------
# a Codex-like request
# --------------------------------------------------------------------------------------------

CODEX_TOOLS: list[FunctionToolParam] = [
    {
        "type": "function",
        "name": "shell",
        "description": "Runs a shell command and returns its output.",
        "parameters": {
            "type": "object",
            "properties": {
                "command": {"type": "array", "items": {"type": "string"}},
                "workdir": {"type": "string"},
            },
            "required": ["command", "workdir"],
            "additionalProperties": False,
        },
        "strict": True,
    },
    {
        "type": "function",
        "name": "update_plan",
        "description": "Updates the task plan.",
        "parameters": {
            "type": "object",
            "properties": {"plan": {"type": "array", "items": {"type": "string"}}},
            "required": ["plan"],
            "additionalProperties": False,
        },
        "strict": False,
    },
]


def codex_body(model: str) -> dict[str, Any]:
    return {
        "model": model,
        "instructions": "You are Codex, a coding agent.",
        "input": [
            {
                "type": "message",
                "role": "developer",
                "content": [
                    {"type": "input_text", "text": "<permissions>workspace-write</permissions>"}
                ],
            },
            {
                "type": "message",
                "role": "user",
                "content": [
                    {
                        "type": "input_text",
                        "text": "<environment_context>cwd=/repo</environment_context>",
                    },
                    {"type": "input_text", "text": "List the files."},
                ],
            },
            {
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "**Listing** files"}],
                "encrypted_content": "gAAAAB-openai-encrypted",
            },
            {
                "type": "function_call",
                "name": "shell",
                "arguments": '{"command":["ls"],"workdir":"/repo"}',
                "call_id": "call_ls_1",
            },
            {"type": "function_call_output", "call_id": "call_ls_1", "output": "a.py\nb.py"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Two files: a.py and b.py."}],
            },
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Now show a.py."}],
            },
        ],
        "tools": CODEX_TOOLS,
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "5f1c2a9e-codex-session",
    }


def send_codex(client: openai.OpenAI, body: dict[str, Any]) -> Asked:
    kwargs = {key: value for key, value in body.items() if key != "stream"}
    return ask(client, "stream", **kwargs)


def test_codex_request_passes_through_to_the_responses_backend(
    client: openai.OpenAI, upstream: Upstream
) -> None:
    upstream.enqueue(
        Reply(
            thinking="**Reading** a.py",
            text="",
            tool_calls=[ToolCall("shell", {"command": ["cat", "a.py"], "workdir": "/repo"})],
        )
    )
    asked = send_codex(client, codex_body("openai-responses:gpt-5"))

    record = only_request(upstream, "openai-responses")
    assert record.body == codex_body("gpt-5")  # every field intact, only the model renamed
    check_key("openai-responses", record)
    [reasoning] = asked.reasoning
    assert [part.text for part in reasoning.summary] == ["**Reading** a.py"]
    assert reasoning.encrypted_content  # asked for with `include`, passed on
    [call] = asked.calls
    assert (call.name, json.loads(call.arguments)) == (
        "shell",
        {"command": ["cat", "a.py"], "workdir": "/repo"},
    )
    assert asked.response.model_extra is not None
    assert asked.response.model_extra.get("store") is False


def test_codex_request_converts_to_anthropic(client: openai.OpenAI, upstream: Upstream) -> None:
    upstream.enqueue(Reply(text="Here is a.py.", thinking="Open it."))
    asked = send_codex(client, codex_body("anthropic:claude-sonnet-4-5"))
    assert asked.response.output_text == "Here is a.py."

    body = only_request(upstream, "anthropic").body
    system = text_of(body["system"])
    assert "You are Codex, a coding agent." in system
    assert "<permissions>workspace-write</permissions>" in system
    roles = [message["role"] for message in body["messages"]]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    first_user = [block["text"] for block in body["messages"][0]["content"]]
    assert first_user == ["<environment_context>cwd=/repo</environment_context>", "List the files."]
    blocks = body["messages"][1]["content"]
    # OpenAI's encrypted reasoning means nothing to Anthropic: dropped, the call kept
    assert [b["type"] for b in blocks] == ["tool_use"]
    assert blocks[0]["id"] == "call_ls_1"
    assert blocks[0]["input"] == {"command": ["ls"], "workdir": "/repo"}
    result = body["messages"][2]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "call_ls_1"
    assert text_of(result["content"]) == "a.py\nb.py"
    assert text_of(body["messages"][3]["content"]) == "Two files: a.py and b.py."
    assert text_of(body["messages"][4]["content"]) == "Now show a.py."
    assert [t["name"] for t in body["tools"]] == ["shell", "update_plan"]
    assert body["tools"][0]["input_schema"] == CODEX_TOOLS[0]["parameters"]
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert body["stream"] is True
    for absent in ("prompt_cache_key", "include", "store", "strict", "encrypted"):
        assert absent not in json.dumps(body)


# --------------------------------------------------------------------------------------------
# the other fronts to the Responses backend
# --------------------------------------------------------------------------------------------

FRONT_CALLS: dict[str, Any] = {
    "openai": lambda proxy, **kw: clients.openai_call(
        clients.openai_client(proxy.url, PROXY_KEY), **kw
    ),
    "anthropic": lambda proxy, **kw: clients.anthropic_call(
        clients.anthropic_client(proxy.url, PROXY_KEY), **kw
    ),
    "gemini": lambda proxy, **kw: clients.gemini_call(
        clients.gemini_client(proxy.url, PROXY_KEY), **kw
    ),
}
FINISH = {
    "openai": {"text": "stop", "tool": "tool_calls"},
    "anthropic": {"text": "end_turn", "tool": "tool_use"},
    "gemini": {"text": "STOP", "tool": "STOP"},
}


@pytest.mark.parametrize("case", ["plain", "stream", "tool", "stream_tool"])
@pytest.mark.parametrize("front", ["openai", "anthropic", "gemini"])
def test_other_fronts_to_the_responses_backend(
    front: str, case: str, proxy: ProxyProcess, upstream: Upstream
) -> None:
    stream, tools = case.startswith("stream"), case.endswith("tool")
    if tools:
        upstream.enqueue(
            Reply(text="", tool_calls=[ToolCall("get_weather", ARGS)], usage=Usage(15, 6))
        )
    else:
        upstream.enqueue(Reply(text=ANSWER, text_chunks=4, usage=Usage(15, 6)))

    got = FRONT_CALLS[front](proxy, model="openai-responses:gpt-5", stream=stream, tools=tools)

    if tools:
        assert got.tool_calls == [("get_weather", ARGS)]
        assert got.finish == FINISH[front]["tool"]
    else:
        assert (got.text, got.tool_calls) == (ANSWER, [])
        assert got.finish == FINISH[front]["text"]
    assert (got.input_tokens, got.output_tokens) == (15, 6)

    record = only_request(upstream, "openai-responses")
    system, user, tool_names, streamed = received("openai-responses", record)
    assert (system, user) == (clients.SYSTEM, clients.PROMPT)
    assert tool_names == (["get_weather"] if tools else [])
    assert streamed == stream
    body = record.body
    assert body["model"] == "gpt-5" and body["store"] is False
    if tools:
        assert body["tools"][0]["parameters"] == clients.TOOL["parameters"]
        assert body["tools"][0]["strict"] is False
    check_key("openai-responses", record)


# --------------------------------------------------------------------------------------------
# refusals and errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field_", "value"),
    [("previous_response_id", "resp_abc123"), ("conversation", "conv_abc123")],
)
@pytest.mark.parametrize("target", ["openai-responses", "anthropic"])
def test_stateful_requests_are_refused_by_the_proxy(
    target: str, field_: str, value: str, client: openai.OpenAI, upstream: Upstream
) -> None:
    stateful: dict[str, Any] = {field_: value}
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=model_of(target), input="And now?", **stateful)
    assert refused.value.status_code == 400
    assert f"'{field_}' is not supported" in refused.value.message
    assert isinstance(refused.value.body, dict)
    assert refused.value.body.get("type") == "invalid_request_error"
    assert [r for r in upstream.requests if r.method == "POST"] == []


ERRORS = [
    (429, openai.RateLimitError, {"retry-after": "0"}),  # relayed; no cooldown left behind
    (500, openai.InternalServerError, {}),
    (400, openai.BadRequestError, {}),
]


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize(("status", "error", "headers"), ERRORS, ids=[str(e[0]) for e in ERRORS])
@pytest.mark.parametrize("target", TARGETS)
def test_upstream_errors_reach_the_client_as_openai_errors(
    target: str,
    status: int,
    error: type[openai.APIStatusError],
    headers: dict[str, str],
    stream: bool,
    client: openai.OpenAI,
    upstream: Upstream,
) -> None:
    message = f"upstream says no ({status}) to key {UPSTREAM_KEYS[upstream_api(target)]}"
    upstream.enqueue(Reply(status=status, error_message=message, headers=headers))
    with pytest.raises(error) as caught:
        if stream:
            list(client.responses.create(model=model_of(target), input="hi", stream=True))
        else:
            client.responses.create(model=model_of(target), input="hi")
    assert caught.value.status_code == status
    assert f"upstream says no ({status})" in caught.value.message
    assert UPSTREAM_KEYS[upstream_api(target)] not in caught.value.message  # scrubbed
    body = caught.value.body
    assert isinstance(body, dict) and isinstance(body.get("message"), str) and "type" in body
    for name, value in headers.items():
        assert caught.value.response.headers[name] == value
    assert only_request(upstream, target).status == status


def test_upstream_validation_errors_are_relayed(client: openai.OpenAI, upstream: Upstream) -> None:
    """The Responses backend gets the client's body as it is, and its 400 comes back."""
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="openai-responses:gpt-5", input="hi", max_output_tokens=8)
    assert "Expected a value >= 16" in refused.value.message
    assert only_request(upstream, "openai-responses").status == 400


@pytest.mark.parametrize("target", TARGETS)
def test_midstream_error_ends_the_stream_with_response_failed(
    target: str, client: openai.OpenAI, upstream: Upstream
) -> None:
    upstream.enqueue(Reply(text="x" * 60, text_chunks=12, midstream_error="overloaded now"))
    events = list(client.responses.create(model=model_of(target), input="hi", stream=True))
    numbers = [event.sequence_number for event in events]
    assert numbers == list(range(len(numbers)))
    last = events[-1]
    assert last.type == "response.failed", [event.type for event in events]
    assert last.response.status == "failed"
    assert last.response.error is not None and "overloaded now" in last.response.error.message


def test_bare_error_event_from_the_responses_backend(
    client: openai.OpenAI, upstream: Upstream
) -> None:
    upstream.enqueue(
        Reply(
            text="x" * 60,
            midstream_error="Rate limit reached",
            responses_error_event=True,
            error_type="rate_limit_exceeded",
        )
    )
    events = list(client.responses.create(model="openai-responses:gpt-5", input="hi", stream=True))
    last = events[-1]
    assert last.type == "error" and last.message == "Rate limit reached"
