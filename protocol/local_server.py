"""A minimal HTTP/1.1 server on 127.0.0.1 for backends the proxy runs itself (the Gemini CLI).

The proxy routes a flow to such a backend like to any other (routing, failover, timeouts,
stream conversion all apply): this server is that backend's base URL. It speaks the OpenAI
chat completions protocol: `POST /v1/chat/completions` with a body the `openai_chat` codec
parses, answered by an `EventSource` (an async iterator of canonical events) as an SSE stream
(`stream: true`) or one JSON answer. An `Error` before any answer becomes an HTTP error in the
OpenAI shape (so failover and the client's error format work); the client going away stops
the iterator (which stops the work behind it).

Deliberately small: one request per connection (`connection: close`), bodies by
`content-length`, nothing else of HTTP. Only the proxy talks to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping

from protocol import openai_chat
from protocol.canonical import ChatRequest, Error, Event, ResponseAccumulator, Start
from protocol.codec import ProtocolError

logger = logging.getLogger(__name__)

EventSource = Callable[[ChatRequest, Mapping[str, str]], AsyncIterator[Event]]
MAX_BODY = 64 * 1024 * 1024
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class LocalServer:
    def __init__(self, source: EventSource) -> None:
        self.source = source
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await _read_request(reader)
            if request is None:
                return
            method, path, headers, body = request
            if method != "POST" or not path.endswith("/chat/completions"):
                await _send_json(writer, 404, openai_chat.render_error(404, f"no {method} {path}"))
                return
            try:
                req = openai_chat.parse_request(json.loads(body or b"null"))
            except (ProtocolError, ValueError) as e:
                await _send_json(writer, 400, openai_chat.render_error(400, str(e)))
                return
            await self._answer(writer, req, headers)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the proxy went away
        except Exception:
            logger.exception("local backend failed")
            with contextlib.suppress(Exception):
                await _send_json(writer, 500, openai_chat.render_error(500, "local backend failed"))
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(
        self, writer: asyncio.StreamWriter, req: ChatRequest, headers: Mapping[str, str]
    ) -> None:
        events = self.source(req, headers)
        try:
            first = await anext(events, None)
            if first is None or isinstance(first, Error):
                error = first or Error("the local backend produced nothing", 502, "bad_gateway")
                await _send_json(
                    writer, error.status, openai_chat.render_error(error.status, error.message)
                )
                return
            if req.stream:
                await self._stream(writer, req, first, events)
            else:
                await self._whole(writer, first, events)
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    async def _stream(
        self,
        writer: asyncio.StreamWriter,
        req: ChatRequest,
        first: Event,
        events: AsyncIterator[Event],
    ) -> None:
        encoder = openai_chat.StreamEncoder(include_usage=req.include_usage)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        )
        await _chunk(writer, encoder.feed(first))
        async for event in events:
            await _chunk(writer, encoder.feed(event))
        await _chunk(writer, encoder.close())
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def _whole(
        self, writer: asyncio.StreamWriter, first: Event, events: AsyncIterator[Event]
    ) -> None:
        acc = ResponseAccumulator(source="openai")
        acc.feed(first)
        error: Error | None = None
        async for event in events:
            if isinstance(event, Error):
                error = event
                break
            acc.feed(event)
        if error is not None:
            await _send_json(
                writer, error.status, openai_chat.render_error(error.status, error.message)
            )
            return
        if not acc.id and isinstance(first, Start):
            acc.id = first.id
        await _send_json(writer, 200, openai_chat.render_response(acc.response()))


async def _read_request(
    reader: asyncio.StreamReader,
) -> tuple[str, str, dict[str, str], bytes] | None:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) < 2:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    if length > MAX_BODY:
        return None
    body = await reader.readexactly(length) if length else b""
    return parts[0], parts[1].split("?", 1)[0], headers, body


async def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    if data:
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await writer.drain()


async def _send_json(writer: asyncio.StreamWriter, status: int, body: object) -> None:
    data = json.dumps(body).encode()
    writer.write(
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(data)}\r\nconnection: close\r\n\r\n".encode()
        + data
    )
    await writer.drain()
