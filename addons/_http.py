"""Small helpers the addons share for answering a flow locally (JSON bodies, protocol errors)."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from mitmproxy import http

from protocol.codec import codec
from protocol.endpoints import protocol_guess
from protocol.exchange import exchange_of
from protocol.wire import dumps_bytes as dumps  # compact UTF-8 JSON bytes, for bodies

logger = logging.getLogger(__name__)

# An error body that the OpenAI, Anthropic and Gemini SDKs all read as an error with a message.
POLYGLOT_500 = {
    "type": "error",
    "error": {
        "type": "api_error",
        "message": "internal proxy error",
        "code": 500,
        "status": "INTERNAL",
    },
}
JSON_HEADERS = {"content-type": "application/json"}
SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


def headers_named(request: http.Request, wanted: frozenset[bytes]) -> dict[bytes, str]:
    """The first value of each wanted header (names in lower case), in one pass over the
    fields: mitmproxy's `headers.get` walks every field for each name asked."""
    found: dict[bytes, str] = {}
    for name, value in request.headers.fields:
        low = name.lower()
        if low in wanted and low not in found:
            found[low] = value.decode("utf-8", "surrogateescape")
    return found


def _identity(value: bytes) -> bool:
    return value.strip().lower() in (b"", b"identity")


def body_bytes(message: http.Message) -> bytes:
    """The body, decoded: an unencoded one (the usual case) is the raw bytes, found in one pass
    over the header fields (mitmproxy's `content` looks its header up on every read)."""
    for name, value in message.data.headers.fields:
        if name.lower() == b"content-encoding" and not _identity(value):
            return message.content or b""
    return message.raw_content or b""


def replace_body(message: http.Message, content: bytes) -> None:
    """Set an unencoded body and its content-length in one pass over the header fields
    (mitmproxy's `content` setter makes three); an encoded one goes through that setter."""
    length = str(len(content)).encode()
    rebuilt: list[tuple[bytes, bytes]] = []
    had_length = False
    for name, value in message.data.headers.fields:
        low = name.lower()
        if (low == b"content-encoding" and not _identity(value)) or low == b"transfer-encoding":
            message.content = content
            return
        if low == b"content-length":
            had_length = True
            value = length
        rebuilt.append((name, value))
    if not had_length:
        rebuilt.append((b"content-length", length))
    message.data.headers.fields = tuple(rebuilt)
    message.data.content = content


def spawn(tasks: set[asyncio.Task[None]], coro: Coroutine[Any, Any, None]) -> None:
    """Run `coro` on the event loop, keeping a reference in `tasks` until it is done."""
    task = asyncio.get_running_loop().create_task(coro)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> http.Response:
    return http.Response.make(status, dumps(body), {**JSON_HEADERS, **(headers or {})})


def error_response(
    protocol: str, status: int, message: str, headers: dict[str, str] | None = None
) -> http.Response:
    """An error in the client protocol's own JSON shape."""
    return json_response(status, codec(protocol).render_error(status, message), headers)


def fail_closed[H: Callable[..., Any]](hook: H) -> H:
    """Wrap a request hook: an unexpected exception answers the client with a protocol error.

    mitmproxy logs an addon's exception and lets the flow go on, which would send a request the
    chain did not finish preparing (unredacted, unrouted). This answers 500 instead.
    """

    def answer(flow: http.HTTPFlow) -> None:
        logger.exception("internal error while handling %s", flow.request.path)
        ex = exchange_of(flow.metadata)
        protocol = ex.front.protocol if ex is not None else protocol_guess(flow.request.path)
        if ex is not None:
            ex.outcome, ex.status, ex.error = "error", 500, "internal proxy error"
        try:
            flow.response = error_response(protocol, 500, "internal proxy error")
        except Exception:  # even the error renderer failed: a body every SDK can read
            flow.response = json_response(500, POLYGLOT_500)

    async def finish(pending: Awaitable[Any], flow: http.HTTPFlow) -> None:
        try:
            await pending
        except Exception:
            answer(flow)

    @functools.wraps(hook)
    def wrapper(self: Any, flow: http.HTTPFlow) -> Awaitable[None] | None:
        # a sync hook may return an awaitable for the rare requests that must wait (mitmproxy
        # awaits it): the others cost no coroutine; an `async def` hook is such an awaitable
        try:
            pending = hook(self, flow)
        except Exception:
            answer(flow)
            return None
        if pending is not None and inspect.isawaitable(pending):
            return finish(pending, flow)
        return None

    return wrapper  # type: ignore[return-value]
