"""Streams through the real proxy: any byte split, interleaved tool calls, thinking, live relay."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import h11
import pytest

from tests.e2e import clients
from tests.e2e.conftest import BACKENDS, MODELS, PROXY_KEY
from tests.e2e.proxy import ProxyProcess
from tests.upstream.script import Reply, ToolCall, Upstream

TEXT = "Grüße aus Zürich 🌍 — ça va? 日本語も大丈夫。"
TWO_CALLS = [
    ToolCall(name="get_weather", args={"city": "Zürich", "unit": "c"}),
    ToolCall(name="get_weather", args={"city": "東京"}),
]


def stream(front: str, proxy: ProxyProcess, model: str, tools: bool) -> clients.Got:
    call: Any = {
        "openai": lambda: clients.openai_call(
            clients.openai_client(proxy.url, PROXY_KEY), model, stream=True, tools=tools
        ),
        "anthropic": lambda: clients.anthropic_call(
            clients.anthropic_client(proxy.url, PROXY_KEY), model, stream=True, tools=tools
        ),
        "gemini": lambda: clients.gemini_call(
            clients.gemini_client(proxy.url, PROXY_KEY), model, stream=True, tools=tools
        ),
    }[front]
    return call()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("front", ["openai", "anthropic", "gemini"])
def test_upstream_split_into_tiny_writes(
    front: str, backend: str, proxy: ProxyProcess, upstream: Upstream
) -> None:
    """The upstream writes its SSE 5 bytes at a time: mid-line, mid-event, mid-character."""
    upstream.enqueue(Reply(text=TEXT, text_chunks=9, split_bytes=5))
    got = stream(front, proxy, f"{backend}:{MODELS[backend]}", tools=False)
    assert got.text == TEXT


@pytest.mark.parametrize("front", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("shape", ["interleaved", "args_at_end"])
def test_parallel_tool_calls_from_an_openai_stream(
    front: str, shape: str, proxy: ProxyProcess, upstream: Upstream
) -> None:
    upstream.enqueue(
        Reply(
            text="Let me check.",
            tool_calls=TWO_CALLS,
            interleave_tool_args=shape == "interleaved",
            args_at_end=shape == "args_at_end",
            args_chunks=4,
            split_bytes=11,
        )
    )
    got = stream(front, proxy, "openai:gpt-4o", tools=True)
    assert got.text == "Let me check."
    assert got.tool_calls == [(c.name, c.args) for c in TWO_CALLS]


@pytest.mark.parametrize("backend", ["anthropic", "gemini", "openrouter"])
@pytest.mark.parametrize("front", ["openai", "anthropic", "gemini"])
def test_thinking_comes_back_in_the_clients_own_place(
    front: str, backend: str, proxy: ProxyProcess, upstream: Upstream
) -> None:
    upstream.enqueue(
        Reply(text="42.", thinking="Let me reason carefully.", thinking_signature="c2lnbmF0dXJl")
    )
    model = f"{backend}:{MODELS[backend]}"
    if front == "anthropic":
        client = clients.anthropic_client(proxy.url, PROXY_KEY)
        with client.messages.stream(
            model=model, max_tokens=4096, messages=[{"role": "user", "content": "Answer?"}],
            thinking={"type": "enabled", "budget_tokens": 2048},
        ) as s:
            message = s.get_final_message()
        kinds = [b.type for b in message.content]
        assert kinds == ["thinking", "text"]
        thinking = message.content[0]
        assert thinking.type == "thinking" and thinking.thinking == "Let me reason carefully."
        if backend == "anthropic":
            assert thinking.signature == "c2lnbmF0dXJl"  # same protocol: byte for byte
    elif front == "openai":
        client_o = clients.openai_client(proxy.url, PROXY_KEY)
        reasoning, text = "", ""
        for chunk in client_o.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Answer?"}],
            reasoning_effort="medium", stream=True,
        ):
            for choice in chunk.choices:
                extra = choice.delta.model_extra or {}
                reasoning += extra.get("reasoning_content") or extra.get("reasoning") or ""
                text += choice.delta.content or ""
        assert reasoning == "Let me reason carefully." and text == "42."
    else:
        from google.genai import types as gt

        client_g = clients.gemini_client(proxy.url, PROXY_KEY)
        thoughts, text = "", ""
        for r in client_g.models.generate_content_stream(
            model=model, contents="Answer?",
            config=gt.GenerateContentConfig(
                thinking_config=gt.ThinkingConfig(include_thoughts=True, thinking_budget=2048)
            ),
        ):
            for part in r.candidates[0].content.parts or [] if r.candidates and r.candidates[0].content else []:
                if part.thought:
                    thoughts += part.text or ""
                else:
                    text += part.text or ""
        assert thoughts == "Let me reason carefully." and text == "42."
    # the request asked the backend for reasoning in its own terms
    body = upstream.requests[-1].body
    if backend == "anthropic":
        assert body["thinking"]["type"] == "enabled" and body["thinking"]["budget_tokens"] >= 1024
    elif backend == "gemini":
        assert body["generationConfig"]["thinkingConfig"]
    else:
        assert body.get("reasoning_effort") or body.get("reasoning")


def test_chunks_are_relayed_live_not_buffered(proxy: ProxyProcess, upstream: Upstream) -> None:
    """A converted stream reaches the client chunk by chunk as the upstream produces it."""
    upstream.enqueue(Reply(text="one two three four five six", text_chunks=6, chunk_delay=0.3))
    client = clients.openai_client(proxy.url, PROXY_KEY)
    arrivals: list[float] = []
    started = time.monotonic()
    for chunk in client.chat.completions.create(
        model="anthropic:claude-sonnet-4-5",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 6
    # the first words arrive long before the last: nothing waited for the end of the stream
    assert arrivals[-1] - arrivals[0] > 1.0


def raw_stream(proxy: ProxyProcess, model: str) -> tuple[int, bytes]:
    """A streamed OpenAI chat call over a bare HTTP/1.1 socket: (how many HTTP chunks the
    proxy wrote, the body)."""
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "go"}], "stream": True}
    ).encode()
    conn = h11.Connection(h11.CLIENT)
    head = h11.Request(
        method="POST",
        target="/v1/chat/completions",
        headers=[
            ("host", f"127.0.0.1:{proxy.port}"),
            ("authorization", f"Bearer {PROXY_KEY}"),
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
        ],
    )
    chunks, received = 0, b""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as sock:
        sock.sendall(
            conn.send(head) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
        )
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Response):
                assert event.status_code == 200
            elif isinstance(event, h11.Data):
                received += event.data
                chunks += event.chunk_end
            elif isinstance(event, h11.EndOfMessage):
                return chunks, received


def streamed_text(body: bytes) -> str:
    """The text of an OpenAI chat completion stream's body."""
    return "".join(
        delta
        for line in body.decode().splitlines()
        if line.startswith("data: {")
        for choice in json.loads(line[6:])["choices"]
        if (delta := choice["delta"].get("content"))
    )


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_a_burst_of_events_leaves_in_a_few_writes(
    backend: str, proxy: ProxyProcess, upstream: Upstream
) -> None:
    """An upstream that writes 400 SSE events back to back (each its own HTTP chunk) is
    relayed a read at a time, not an event at a time: far fewer writes, every word intact."""
    words = [f"w{i} " for i in range(400)]
    upstream.enqueue(Reply(text="".join(words), text_chunks=400))
    chunks, body = raw_stream(proxy, f"{backend}:{MODELS[backend]}")
    assert streamed_text(body) == "".join(words)
    assert chunks < 100, f"{chunks} writes for 400 events"


def test_a_trickling_flood_is_read_in_batches(proxy: ProxyProcess, upstream: Upstream) -> None:
    """An upstream that sends a long answer in thousands of tiny writes as fast as it can (each
    its own send, 40 bytes) is read in batches while it floods (`protocol.read_batching`): the
    client gets every word in a few dozen writes (read as it came: about 900)."""
    words = [f"w{i} " for i in range(2000)]
    upstream.enqueue(Reply(text="".join(words), text_chunks=2000, split_bytes=40))
    chunks, body = raw_stream(proxy, "anthropic:claude-sonnet-4-5")
    assert streamed_text(body) == "".join(words)
    assert chunks < 500, f"{chunks} writes"
