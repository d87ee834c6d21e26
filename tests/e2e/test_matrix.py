"""The matrix: 3 SDK clients x 4 backends x {plain, stream, tool call, streamed tool call}.

Each case asserts on what the client got (through the SDK's own parsing) and on what the
strict upstream received (right API, model, key, system prompt, user text, tool declaration).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e import clients
from tests.e2e.conftest import BACKENDS, MODELS, PROXY_KEY, UPSTREAM_KEYS
from tests.e2e.proxy import ProxyProcess
from tests.upstream.script import Reply, ToolCall, Upstream

FRONTS = ("openai", "anthropic", "gemini")
CASES = ("plain", "stream", "tool", "stream_tool")
ANSWER = "It is sunny in Paris, 21°C. Enjoy the café ☕."
FINISH = {
    "openai": {"text": "stop", "tool": "tool_calls"},
    "anthropic": {"text": "end_turn", "tool": "tool_use"},
    "gemini": {"text": "STOP", "tool": "STOP"},
}


def call(front: str, proxy: ProxyProcess, model: str, case: str) -> clients.Got:
    stream, tools = case.startswith("stream"), case.endswith("tool")
    if front == "openai":
        return clients.openai_call(
            clients.openai_client(proxy.url, PROXY_KEY), model, stream=stream, tools=tools
        )
    if front == "anthropic":
        return clients.anthropic_call(
            clients.anthropic_client(proxy.url, PROXY_KEY), model, stream=stream, tools=tools
        )
    return clients.gemini_call(
        clients.gemini_client(proxy.url, PROXY_KEY), model, stream=stream, tools=tools
    )


def received_parts(backend: str, body: dict[str, Any]) -> tuple[str, str, list[str]]:
    """(system text, last user text, declared tool names) from a backend-protocol body."""
    if backend in ("openai", "openrouter"):
        system = " ".join(
            m["content"] for m in body["messages"] if m["role"] in ("system", "developer")
        )
        user = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        if isinstance(user, list):
            user = "".join(p.get("text", "") for p in user)
        tools = [t["function"]["name"] for t in body.get("tools", [])]
        return system, user, tools
    if backend == "anthropic":
        system = body.get("system", "")
        if isinstance(system, list):
            system = "".join(b["text"] for b in system)
        user = body["messages"][-1]["content"]
        if isinstance(user, list):
            user = "".join(b.get("text", "") for b in user)
        return system, user, [t["name"] for t in body.get("tools", [])]
    system = "".join(p.get("text", "") for p in body.get("systemInstruction", {}).get("parts", []))
    user = "".join(p.get("text", "") for p in body["contents"][-1]["parts"])
    tools = [d["name"] for t in body.get("tools", []) for d in t.get("functionDeclarations", [])]
    return system, user, tools


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("front", FRONTS)
def test_matrix(front: str, backend: str, case: str, proxy: ProxyProcess, upstream: Upstream) -> None:
    tools = case.endswith("tool")
    stream = case.startswith("stream")
    if tools:
        reply = Reply(
            text=None,
            tool_calls=[ToolCall(name="get_weather", args={"city": "Paris", "unit": "c"})],
            text_chunks=3,
        )
    else:
        reply = Reply(text=ANSWER, text_chunks=5)
    upstream.enqueue(reply)

    got = call(front, proxy, f"{backend}:{MODELS[backend]}", case)

    # what the client got
    if tools:
        assert got.tool_calls == [("get_weather", {"city": "Paris", "unit": "c"})]
        assert got.finish == FINISH[front]["tool"]
    else:
        assert got.text == ANSWER
        assert got.tool_calls == []
        assert got.finish == FINISH[front]["text"]
    assert got.input_tokens and got.input_tokens > 0
    assert got.output_tokens and got.output_tokens > 0

    # what the upstream received
    assert len(upstream.requests) == 1
    rec = upstream.requests[0]
    assert rec.backend == backend
    system, user, tool_names = received_parts(backend, rec.body)
    assert system == clients.SYSTEM
    assert user == clients.PROMPT
    assert tool_names == (["get_weather"] if tools else [])
    key = UPSTREAM_KEYS[backend]
    if backend in ("openai", "openrouter"):
        assert rec.headers["authorization"] == f"Bearer {key}"
        assert rec.body["model"] == MODELS[backend]
        assert bool(rec.body.get("stream")) == stream
    elif backend == "anthropic":
        assert rec.headers["x-api-key"] == key
        assert rec.body["model"] == MODELS[backend]
        assert bool(rec.body.get("stream")) == stream
    else:
        assert rec.headers["x-goog-api-key"] == key
        method = "streamGenerateContent" if stream else "generateContent"
        assert rec.path.endswith(f"/models/{MODELS[backend]}:{method}")
    if backend == "openrouter":
        assert rec.headers.get("http-referer") and rec.headers.get("x-title")
    # the client's proxy key never reaches a backend
    assert PROXY_KEY not in repr(rec.headers) and PROXY_KEY not in repr(rec.body)
