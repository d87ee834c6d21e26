"""Driving a live flow's response from outside mitmproxy's server connection.

mitmproxy cannot re-send a request inside one flow, cannot stream an answer an addon produces,
and ends a streamed response only when the upstream does. Failover (the fallback's chunks must
reach the client live), idle timeouts and loop halting (end the client's stream cleanly now,
close the upstream) all need that. `ResponseFeed` does it through the flow's own HTTP stream
in mitmproxy's sans-io core, so everything after it (the stream callable, the `response` hook,
HTTP/1 or HTTP/2 framing to the client, TLS) works as for any upstream answer:

- `take_pending()`: while an async `responseheaders` hook holds the flow, the rest of the
  upstream's answer (its body, its end) waits in the stream's event queue; this removes it and
  returns the body, so a failed attempt's error body never reaches the client.
- `data(chunk)` / `end()`: deliver response body bytes / the end of the response to the
  stream, as if the upstream had sent them (`MessageInjected` events routed to the stream).
- `close_upstream()`: close the flow's server connection (the backend stops generating).
- `merge_chunks(flow)`: the upstream's HTTP/1 chunked body reaches the stream callable one
  read at a time instead of one HTTP chunk at a time (`MergedChunks`).
- `batching_reader(flow)`: the upstream connection's `BatchingReader` in the run command (None
  elsewhere), to tell it that a stream's flood is coming.
- `suppress_error()` / `resume(response)`: in the `error` hook of a request whose connection
  failed before any answer, keep mitmproxy from sending its own 502, then bring the flow back
  with another answer's headers (the `responseheaders` hooks run for it as usual).

This uses mitmproxy internals (the proxyserver's connection handlers, the HTTP layer's streams
and a paused layer's queue); it is used here and nowhere else, and every entry point returns
False when the internals are not what it expects (the caller then takes the plain path).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import h11
from h11._readers import ChunkedReader
from h11._receivebuffer import ReceiveBuffer
from mitmproxy import ctx, http
from mitmproxy.proxy import events
from mitmproxy.proxy.layers.http import HttpLayer, HttpStream
from mitmproxy.proxy.layers.http._events import (
    ResponseData,
    ResponseEndOfMessage,
    ResponseHeaders,
    ResponseProtocolError,
    ResponseTrailers,
)
from mitmproxy.proxy.layers.http._http1 import Http1Client

from protocol.chunked import ChunkedDecoder, ChunkedError
from protocol.read_batching import BatchingReader

logger = logging.getLogger(__name__)

_UPSTREAM_EVENTS = (ResponseData, ResponseTrailers, ResponseEndOfMessage, ResponseProtocolError)


@dataclass(slots=True)
class _Target:
    """What the HTTP layer reads off an injected event to find the stream it is for."""

    server_conn: object
    client_conn: object


class _Injected(events.MessageInjected):
    """Marks an event as injected (the HTTP layer routes it straight to its stream)."""


class _InjectedData(ResponseData, _Injected):
    def __init__(self, target: _Target, stream_id: int, data: bytes) -> None:
        self.flow = target  # type: ignore[assignment]
        self.message = None
        self.stream_id = stream_id
        self.data = data


class _InjectedHeaders(ResponseHeaders, _Injected):
    def __init__(self, target: _Target, stream_id: int, response: http.Response) -> None:
        self.flow = target  # type: ignore[assignment]
        self.message = None
        self.stream_id = stream_id
        self.response = response
        self.end_stream = False


class _InjectedEnd(ResponseEndOfMessage, _Injected):
    def __init__(self, target: _Target, stream_id: int) -> None:
        self.flow = target  # type: ignore[assignment]
        self.message = None
        self.stream_id = stream_id


def connection_handler(flow: http.HTTPFlow) -> Any:
    """mitmproxy's handler of `flow`'s client connection (its layers, transports and
    `server_event`), or None when the connection is gone."""
    proxyserver = ctx.master.addons.get("proxyserver")
    return proxyserver.connections.get(flow.client_conn.id) if proxyserver else None


def batching_reader(flow: http.HTTPFlow) -> BatchingReader | None:
    """The reader of `flow`'s upstream connection when the run command reads it in batches
    (`addons.serve.BatchingConnectionHandler`), else None."""
    handler = connection_handler(flow)
    io = handler.transports.get(flow.server_conn) if handler is not None else None
    reader = getattr(io, "reader", None)
    return reader if isinstance(reader, BatchingReader) else None


def _find_stream(root: Any, flow: http.HTTPFlow) -> tuple[HttpLayer, HttpStream] | None:
    todo = [root]
    seen: set[int] = set()
    while todo:
        layer = todo.pop()
        if layer is None or id(layer) in seen:
            continue
        seen.add(id(layer))
        if isinstance(layer, HttpLayer):
            for stream in layer.streams.values():
                if stream.flow is flow:
                    return layer, stream
        todo.append(getattr(layer, "layer", None))
        todo.append(getattr(layer, "child_layer", None))
    return None


class MergedChunks:
    """The body reader (h11's interface) of a chunked HTTP/1 response that hands over every
    complete chunk a read brought as one piece of data (`protocol.chunked`).

    mitmproxy reads a connection in large reads, but h11's reader turns each HTTP chunk into
    its own body event: one trip through the layers, one call of the stream callable, one write
    to the client, and a copy of the rest of the read buffer. An upstream that sends each SSE
    event as its own chunk (every LLM API does) thus costs all of that per event, thousands of
    times for a fast stream. Merged, it costs that once per read: a stream the proxy keeps up
    with is relayed as it came, and a burst is caught up in a few large writes. The first chunk
    of the body goes alone, so the client's first bytes never wait for a large read.
    """

    __slots__ = ("_decoder", "_first", "_trailer")

    def __init__(self) -> None:
        self._decoder = ChunkedDecoder()
        self._first = True
        self._trailer: ChunkedReader | None = None

    def __call__(self, buf: ReceiveBuffer) -> h11.Data | h11.EndOfMessage | None:
        decoder = self._decoder
        if decoder.done:  # the trailer section: h11's own reader from there
            if self._trailer is None:
                self._trailer = ChunkedReader()
                self._trailer._reading_trailer = True
            return self._trailer(buf)
        if not buf and decoder.error is None:
            return None
        try:
            parts, used = decoder.decode(bytes(buf), 1 if self._first else 0)
        except ChunkedError as e:
            raise h11.RemoteProtocolError(str(e)) from None
        if used:
            buf.maybe_extract_at_most(used)
        if not parts:
            return self(buf) if decoder.done else None
        self._first = False
        return h11.Data(data=parts[0] if len(parts) == 1 else b"".join(parts))

    def read_eof(self) -> h11.EndOfMessage:
        raise h11.RemoteProtocolError(
            "peer closed connection without sending complete message body: incomplete chunked read"
        )


def merge_chunks(flow: http.HTTPFlow) -> bool:
    """Read `flow`'s response body with `MergedChunks` when it comes chunked over HTTP/1.

    Call it from a `responseheaders` hook: mitmproxy runs that hook while its HTTP/1 layer
    still reads the response head, before it picks the body's reader; the layer's next state
    is taken over once, to swap the reader it picked. False when that is not the case (an
    HTTP/2 upstream, the body already being read, other internals).
    """
    try:
        handler = connection_handler(flow)
        found = _find_stream(handler.layer, flow) if handler is not None else None
        if found is None:
            return False
        layer: Any = found[0].connections.get(flow.server_conn)
        for _ in range(4):  # the server's layers: (TLS ->) HttpClient -> Http1Client
            if layer is None or isinstance(layer, Http1Client):
                break
            layer = getattr(layer, "child_layer", None)
        if not isinstance(layer, Http1Client):
            return False
        if getattr(layer.state, "__func__", None) is not Http1Client.read_headers:
            return False
        client: Any = layer  # its next state, `read_body`, is looked up on the instance
        read_body = Http1Client.read_body

        def first_read_body(event: events.Event) -> Any:
            del client.read_body  # once: the class's own again for the next response
            if type(client.body_reader) is ChunkedReader:
                client.body_reader = MergedChunks()
            client.state = client.read_body
            return read_body(client, event)

        client.read_body = first_read_body
        return True
    except Exception:  # internals changed: chunks go one by one, as mitmproxy reads them
        logger.debug("cannot merge the upstream's chunks", exc_info=True)
        return False


class ResponseFeed:
    """Injects response data into one live flow (see the module docstring)."""

    __slots__ = ("flow", "_handler", "_http", "_stream", "_target", "_ended")

    def __init__(
        self, flow: http.HTTPFlow, handler: Any, http_layer: HttpLayer, stream: HttpStream
    ):
        self.flow = flow
        self._handler = handler
        self._http = http_layer
        self._stream = stream
        self._target = _Target(object(), flow.client_conn)
        self._ended = False
        http_layer.connections[self._target.server_conn] = stream  # type: ignore[index]

    @classmethod
    def attach(cls, flow: http.HTTPFlow) -> ResponseFeed | None:
        """A feed for `flow`, or None when the flow is not live or the internals differ."""
        try:
            handler = connection_handler(flow)
            if handler is None:
                return None
            found = _find_stream(handler.layer, flow)
            if found is None:
                return None
            return cls(flow, handler, *found)
        except Exception:  # internals changed: take the plain path
            logger.debug("cannot attach a response feed", exc_info=True)
            return None

    @property
    def alive(self) -> bool:
        stream = self._stream
        return (
            not self._ended
            and self._http.streams.get(stream.stream_id) is stream
            and self.flow.error is None
        )

    def upstream_complete(self) -> bool:
        """True when the upstream's whole answer already waits in the stream's queue."""
        return any(isinstance(e, ResponseEndOfMessage) for e in self._queue())

    async def wait_upstream_complete(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.upstream_complete():
            if loop.time() >= deadline or not self.alive:
                return False
            await asyncio.sleep(0.002)
        return True

    def take_pending(self) -> bytes:
        """Remove the upstream's queued answer (body, trailers, end) and return its body."""
        queue = self._queue()
        body = bytearray()
        kept = []
        for event in queue:
            if isinstance(event, _UPSTREAM_EVENTS) and not isinstance(event, _Injected):
                if isinstance(event, ResponseData):
                    body += event.data
            else:
                kept.append(event)
        queue.clear()
        queue.extend(kept)
        return bytes(body)

    async def data(self, chunk: bytes) -> bool:
        if not chunk or not self.alive:
            return False
        await self._handler.server_event(_InjectedData(self._target, self._stream.stream_id, chunk))
        return True

    async def end(self) -> bool:
        if not self.alive:
            self.detach()
            return False
        await self._handler.server_event(_InjectedEnd(self._target, self._stream.stream_id))
        self.detach()
        return True

    async def error_event(self, message: str, status: int, kind: str = "timeout") -> bool:
        """End the flow's streamed answer with an error event in the client's protocol: the
        stream pipeline (`abort`) writes it at its next chunk, which this feeds it. The response
        itself is ended by `end()`. False when the answer is not a pipeline's stream."""
        response = self.flow.response
        abort = getattr(response.stream, "abort", None) if response is not None else None
        if abort is None:
            return False
        abort(message, status, kind)
        return await self.data(b"\n")

    def can_resume(self) -> bool:
        """During the `error` hook: can `resume` revive the flow (its request was sent whole,
        and no answer or a streamed one had started)?"""
        stream = self._stream
        if stream.client_state != stream.state_done:
            return False
        return (
            self.flow.response is None or stream.server_state == stream.state_stream_response_body
        )

    def suppress_error(self) -> None:
        """During the `error` hook: mitmproxy will not send its own error to the client."""
        self._stream.client_state = self._stream.state_errored

    async def resume(self, response: http.Response | None) -> bool:
        """After the `error` hook: bring the flow back and give it `response`'s headers (the
        `responseheaders` hooks run again); its body follows with `data` and `end`. With no
        response, the flow's streamed response goes on where it broke (more `data`, `end`)."""
        stream, streams = self._stream, self._http.streams
        for _ in range(2000):  # mitmproxy finishes the error (the stream leaves its table)
            if streams.get(stream.stream_id) is not stream:
                break
            await asyncio.sleep(0.001)
        else:
            return False
        if stream.stream_id in streams or self.flow.client_conn.timestamp_end is not None:
            return False  # the client went away meanwhile
        streams[stream.stream_id] = stream
        stream.client_state = stream.state_done
        self.flow.error = None
        self.flow.live = True
        if response is None:
            stream.server_state = stream.state_stream_response_body
            return self.alive
        stream.server_state = stream.state_wait_for_response_headers
        await self._handler.server_event(_InjectedHeaders(self._target, stream.stream_id, response))
        return self.alive

    def close_upstream(self) -> None:
        server = self.flow.server_conn
        try:
            if server in self._handler.transports:
                self._handler.close_connection(server)
        except Exception:
            logger.debug("could not close the upstream connection", exc_info=True)

    def detach(self) -> None:
        self._ended = True
        self._http.connections.pop(self._target.server_conn, None)  # type: ignore[call-overload]

    def _queue(self) -> Any:
        return self._stream._paused_event_queue
