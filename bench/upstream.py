"""The relay benchmark's upstream: a minimal, fast fake of two LLM APIs (aiohttp).

It owns only what `bench/relay.py` sends: `POST /openai/v1/chat/completions` and
`POST /anthropic/v1/messages`, each answered with a small JSON body, or with `stream: true`
an SSE stream of `--stream-chunks` text deltas in the vendor's own event sequence (OpenAI:
role chunk, N content chunks, finish chunk, usage chunk when asked, `[DONE]`; Anthropic:
message_start, ping, content_block_start, N content_block_delta, content_block_stop,
message_delta, message_stop). Every delta carries the text `tok ` so a client can count them.
A request header `x-bench-stream-chunks: N` overrides the count for one call.
No key checks, no validation: it must cost as little CPU as possible. One exception, for the
failover benchmark: a key `fail-<status>` (or `fail-<status>-<ms>`) is answered with that error
status (after that many milliseconds). `/openrouter/api/v1/chat/completions` answers like OpenAI. Each SSE event is
written separately (and the loop is yielded between events) so the proxy sees a stream, not
one burst.

Run: `.venv/bin/python bench/upstream.py --port 8100 [--stream-chunks 2000]`
(binds 127.0.0.1 only; relay.py starts and stops it itself).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from functools import cache
from typing import Any

from aiohttp import web

TEXT = "Hello from the bench upstream."
DELTA = "tok "
SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache"}
CREATED = 1_700_000_000
CHUNKS_HEADER = "x-bench-stream-chunks"  # a request header that overrides --stream-chunks


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _data(obj: Any) -> bytes:
    return f"data: {_dumps(obj)}\n\n".encode()


def _event(name: str, obj: Any) -> bytes:
    return f"event: {name}\ndata: {_dumps(obj)}\n\n".encode()


# --- OpenAI ---------------------------------------------------------------------------------


def openai_answer(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": TEXT},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16},
    }


def _openai_chunk(model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


@cache
def openai_stream(model: str, chunks: int, usage: bool) -> tuple[bytes, bytes, bytes]:
    """(head, one content event, tail): the stream is head + event * chunks + tail."""
    head = _data(_openai_chunk(model, {"role": "assistant", "content": ""}, None))
    delta = _data(_openai_chunk(model, {"content": DELTA}, None))
    tail = _data(_openai_chunk(model, {}, "stop"))
    if usage:
        tail += _data(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "choices": [],
                "usage": {
                    "prompt_tokens": 9,
                    "completion_tokens": chunks,
                    "total_tokens": 9 + chunks,
                },
            }
        )
    return head, delta, tail + b"data: [DONE]\n\n"


# --- Anthropic ------------------------------------------------------------------------------


def anthropic_answer(model: str) -> dict[str, Any]:
    return {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": TEXT}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": 7},
    }


@cache
def anthropic_stream(model: str, chunks: int) -> tuple[bytes, bytes, bytes]:
    """(head, one content_block_delta event, tail), as `openai_stream`."""
    message = {**anthropic_answer(model), "content": [], "stop_reason": None}
    message["usage"] = {"input_tokens": 9, "output_tokens": 1}
    head = (
        _event("message_start", {"type": "message_start", "message": message})
        + _event("ping", {"type": "ping"})
        + _event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
    )
    delta = _event(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": DELTA}},
    )
    tail = (
        _event("content_block_stop", {"type": "content_block_stop", "index": 0})
        + _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": chunks},
            },
        )
        + _event("message_stop", {"type": "message_stop"})
    )
    return head, delta, tail


# --- server ---------------------------------------------------------------------------------


async def _send_stream(
    request: web.Request, head: bytes, delta: bytes, chunks: int, tail: bytes
) -> web.StreamResponse:
    resp = web.StreamResponse(headers=SSE_HEADERS)
    await resp.prepare(request)
    await resp.write(head)
    for _ in range(chunks):
        await asyncio.sleep(0)
        await resp.write(delta)
    await resp.write(tail)
    await resp.write_eof()
    return resp


def _json(body: dict[str, Any]) -> web.Response:
    return web.Response(body=_dumps(body).encode(), content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    data = json.loads(await request.read() or b"{}")
    return data if isinstance(data, dict) else {}


async def _failure(request: web.Request) -> web.Response | None:
    """The error a `fail-<status>[-<ms>]` key asks for, or None."""
    auth = request.headers.get("authorization") or request.headers.get("x-api-key") or ""
    key = auth.removeprefix("Bearer ").strip()
    if not key.startswith("fail-"):
        return None
    parts = key.split("-")
    if len(parts) > 2:
        await asyncio.sleep(int(parts[2]) / 1000)
    status = int(parts[1])
    body = {"error": {"message": "bench failure", "type": "server_error", "code": status}}
    return web.Response(status=status, body=_dumps(body).encode(), content_type="application/json")


def make_app(default_chunks: int) -> web.Application:
    def chunks_of(request: web.Request) -> int:
        return int(request.headers.get(CHUNKS_HEADER, default_chunks))

    async def openai_chat(request: web.Request) -> web.StreamResponse:
        failed = await _failure(request)
        if failed is not None:
            return failed
        body = await _body(request)
        model = str(body.get("model", "gpt-4o"))
        if not body.get("stream"):
            return _json(openai_answer(model))
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = chunks_of(request)
        head, delta, tail = openai_stream(model, chunks, usage)
        return await _send_stream(request, head, delta, chunks, tail)

    async def anthropic_messages(request: web.Request) -> web.StreamResponse:
        failed = await _failure(request)
        if failed is not None:
            return failed
        body = await _body(request)
        model = str(body.get("model", "claude-sonnet-4-5"))
        if not body.get("stream"):
            return _json(anthropic_answer(model))
        chunks = chunks_of(request)
        head, delta, tail = anthropic_stream(model, chunks)
        return await _send_stream(request, head, delta, chunks, tail)

    app = web.Application()
    app.router.add_post("/openai/v1/chat/completions", openai_chat)
    app.router.add_post("/openrouter/api/v1/chat/completions", openai_chat)
    app.router.add_post("/anthropic/v1/messages", anthropic_messages)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stream-chunks", type=int, default=2000)
    args = parser.parse_args(argv)
    web.run_app(
        make_app(args.stream_chunks),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        handle_signals=True,
    )


if __name__ == "__main__":
    main()
