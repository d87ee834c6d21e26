"""The openai SDK as a test harness for the OpenAI codecs (chat completions and Responses):
a client answered by a handler, a client answered with a fixed body, and a walk that forces the
lazy validation of a TypedDict the SDK's types validated."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import openai


def client(handler: Any) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="sk-test",
        base_url="http://test.invalid/v1",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


def serve(body: bytes | dict[str, Any]) -> openai.OpenAI:
    """An SDK client whose every call is answered with `body` (JSON, or SSE bytes)."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        if isinstance(body, bytes):
            return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})
        return httpx2.Response(200, json=body)

    return client(handler)


def force(value: Any) -> Any:
    """Walks a validated TypedDict, running the lazy validators of its `Iterable` fields."""
    if isinstance(value, dict):
        return {k: force(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [force(v) for v in value]
    if isinstance(value, str | bytes | int | float | bool) or value is None:
        return value
    if isinstance(value, Iterator) or hasattr(value, "__next__"):
        return [force(v) for v in value]
    return value
