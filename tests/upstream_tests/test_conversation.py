"""Reading recorded conversations in every wire format, and replies chosen by `match`.

`tests.upstream.conversation` finds declared tools, tool results and user texts in OpenAI chat,
OpenAI Responses, Anthropic and Gemini bodies; `Upstream.when(match=...)` answers with a reply
only the requests it accepts (the agent tests ask for a tool until its result comes back).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.upstream import Reply, ToolCall, Upstream, conversation
from tests.upstream.server import RecordedRequest


def record(backend: str, body: dict[str, Any]) -> RecordedRequest:
    return RecordedRequest(backend, "POST", "/", {}, {}, body, time.time())


OPENAI_CHAT: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Read the note."}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "read", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "the note"},
        {"role": "user", "content": "Thanks."},
    ],
    "tools": [{"type": "function", "function": {"name": "read", "parameters": {}}}],
}
RESPONSES: dict[str, Any] = {
    "model": "gpt-4o",
    "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Read the note."}]},
        {"type": "function_call", "call_id": "c1", "name": "read", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "the note"},
        {"role": "user", "content": "Thanks."},
    ],
    "tools": [{"type": "function", "name": "read", "parameters": {}}],
}
ANTHROPIC: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 100,
    "messages": [
        {"role": "user", "content": "Read the note."},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": [{"type": "text", "text": "the note"}],
                },
                {"type": "text", "text": "Thanks."},
            ],
        },
    ],
    "tools": [{"name": "read", "input_schema": {"type": "object"}}],
}
GEMINI: dict[str, Any] = {
    "contents": [
        {"role": "user", "parts": [{"text": "Read the note."}]},
        {"role": "model", "parts": [{"functionCall": {"name": "read", "args": {}}}]},
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "read", "response": {"output": "the note"}}}],
        },
        {"role": "user", "parts": [{"text": "Thanks."}]},
    ],
    "tools": [{"functionDeclarations": [{"name": "read"}, {"name": "write"}]}],
}


@pytest.mark.parametrize(
    ("backend", "body", "tools", "result"),
    [
        ("openai", OPENAI_CHAT, ["read"], "the note"),
        ("openai", RESPONSES, ["read"], "the note"),
        ("anthropic", ANTHROPIC, ["read"], "the note"),
        ("gemini", GEMINI, ["read", "write"], '{"output": "the note"}'),
    ],
    ids=["openai-chat", "responses", "anthropic", "gemini"],
)
def test_conversation_is_read_alike_in_every_format(
    backend: str, body: dict[str, Any], tools: list[str], result: str
) -> None:
    seen = record(backend, body)
    assert conversation.tool_names(seen) == tools
    assert conversation.tool_results(seen) == [result]
    assert conversation.user_texts(seen) == ["Read the note.", "Thanks."]


def test_a_request_without_tools_or_body_reads_as_empty() -> None:
    for body in ({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, None):
        seen = RecordedRequest("openai", "POST", "/", {}, {}, body, time.time())
        assert conversation.tool_names(seen) == []
        assert conversation.tool_results(seen) == []
    assert conversation.user_texts(record("openai", {"input": "hi"})) == ["hi"]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


def test_when_match_answers_only_the_requests_it_accepts(upstream: Upstream) -> None:
    upstream.reset()
    upstream.when(
        Reply(tool_calls=[ToolCall("read", {"path": "note"})]),
        backend="anthropic",
        match=lambda r: not conversation.tool_results(r),
    )
    upstream.when(Reply(text="done"), backend="anthropic")
    headers = {"x-api-key": upstream.keys["anthropic"] or "k", "anthropic-version": "2023-06-01"}
    url = upstream.base_url("anthropic") + "/messages"
    first = {**ANTHROPIC, "messages": [{"role": "user", "content": "Read the note."}]}
    asked = httpx.post(url, json=first, headers=headers).json()
    answered = httpx.post(url, json=ANTHROPIC, headers=headers).json()
    again = httpx.post(url, json=first, headers=headers).json()
    assert [b["type"] for b in asked["content"]] == ["tool_use"]
    assert asked["content"][0]["input"] == {"path": "note"}
    assert answered["content"] == [{"type": "text", "text": "done"}]
    assert [b["type"] for b in again["content"]] == ["tool_use"]  # a rule without times stays
