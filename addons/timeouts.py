"""Timeouts addon: a backend that does not answer in time, or stops mid-stream, is cut off.

Options (each `"seconds"` or `"seconds,backend=seconds,..."`; 0 turns it off):
- `llm_connect_timeout` (10 s): the connect probe and a fallback attempt's connection;
- `llm_first_byte_timeout` (120 s): request sent to response headers. mitmproxy has no such
  timeout and no way to answer a flow once it went upstream, so a watchdog feeds the flow's own
  server connection a complete HTTP/1.1 `504` (`connection: close`): mitmproxy reads it as the
  backend's answer, so the failover addon tries the next attempt, or the client gets the 504 in
  its protocol; the silent upstream connection is closed.
- `llm_idle_timeout` (120 s): between two chunks of a streamed answer. The client already has
  part of the answer, so nothing can be retried: its stream ends with an error event in its
  protocol and the upstream connection is closed.

The 504 feed uses mitmproxy's connection handler (`proxyserver.connections`, `server_event`),
which is not public API. Where it cannot apply (an HTTP/2 upstream, or a connection still being
opened), the flow is killed instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import events

from addons._inject import ResponseFeed, connection_handler
from addons.config import Config
from protocol.exchange import exchange_of
from protocol.pipeline import StreamPipeline
from protocol.timeouts import PerBackend

logger = logging.getLogger(__name__)

_SWEEP_SECONDS = 1.0


def feed_upstream_response(flow: http.HTTPFlow, status: int, reason: str, body: bytes) -> bool:
    """Make `flow`'s server connection deliver this response as if the backend sent it."""
    handler = connection_handler(flow)
    server = flow.server_conn
    if handler is None or server.timestamp_tcp_setup is None or server.alpn == b"h2":
        return False
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\nx-llm-proxy: {reason}\r\n\r\n"
    ).encode()
    asyncio.ensure_future(handler.server_event(events.DataReceived(server, head + body)))
    return True


class Timeouts:
    """Owns the three timeout options; their parsed values live in `Config` (routing and
    failover read them there too)."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else Config()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._streams: dict[str, http.HTTPFlow] = {}  # streamed answers watched for idleness
        self._sweeper: asyncio.Task[None] | None = None

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "llm_connect_timeout",
            str,
            "10",
            'Seconds to connect to a backend: "10", or per backend "10,gemini=30" (0: off).',
        )
        loader.add_option(
            "llm_first_byte_timeout",
            str,
            "120",
            "Seconds from sending a request to the backend's response headers; then the next "
            'failover attempt, or 504. "120" or "120,openai=300" (0: off).',
        )
        loader.add_option(
            "llm_idle_timeout",
            str,
            "120",
            "Seconds a streamed answer may pause between chunks before it is cut with an "
            'error. "120" or per backend (0: off).',
        )

    def configure(self, updated: set[str]) -> None:
        try:
            config = self.config
            if "llm_connect_timeout" in updated:
                config.connect_timeout = PerBackend.parse(
                    ctx.options.llm_connect_timeout, option="llm_connect_timeout"
                )
            if "llm_first_byte_timeout" in updated:
                config.first_byte_timeout = PerBackend.parse(
                    ctx.options.llm_first_byte_timeout, option="llm_first_byte_timeout"
                )
            if "llm_idle_timeout" in updated:
                config.idle_timeout = PerBackend.parse(
                    ctx.options.llm_idle_timeout, option="llm_idle_timeout"
                )
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from None

    def request(self, flow: http.HTTPFlow) -> None:
        ex = exchange_of(flow.metadata)
        if ex is None or flow.response is not None or ex.route.active is None:
            return
        seconds = self.config.first_byte_timeout.get(ex.route.active.backend)
        if seconds:
            loop = asyncio.get_running_loop()
            self._timers[flow.id] = loop.call_later(seconds, self._expire, flow, seconds)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        timer = self._timers.pop(flow.id, None)
        if timer is not None:
            timer.cancel()

    def response(self, flow: http.HTTPFlow) -> None:
        self._streams.pop(flow.id, None)

    def error(self, flow: http.HTTPFlow) -> None:
        self.responseheaders(flow)
        self._streams.pop(flow.id, None)

    def watch_stream(self, flow: http.HTTPFlow) -> None:
        """Cut `flow`'s streamed answer when the upstream goes silent (called by responses)."""
        ex = exchange_of(flow.metadata)
        backend = ex.route.active.backend if ex and ex.route.active else None
        if ex is None or not self.config.idle_timeout.get(backend):
            return
        ex.last_activity = time.monotonic()
        self._streams[flow.id] = flow
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        while self._streams:
            await asyncio.sleep(_SWEEP_SECONDS)
            now = time.monotonic()
            for flow_id, flow in list(self._streams.items()):
                ex = exchange_of(flow.metadata)
                if ex is None or not flow.live:
                    self._streams.pop(flow_id, None)
                    continue
                backend = ex.route.active.backend if ex.route.active else None
                limit = self.config.idle_timeout.get(backend)
                if limit and ex.last_activity is not None and now - ex.last_activity > limit:
                    self._streams.pop(flow_id, None)
                    await self._cut_idle(flow, limit)

    async def _cut_idle(self, flow: http.HTTPFlow, limit: float) -> None:
        pipeline = flow.response.stream if flow.response is not None else None
        if not isinstance(pipeline, StreamPipeline) or pipeline.ended:
            return
        message = f"the backend sent nothing for {limit:g} s mid-stream (llm_idle_timeout)"
        logger.warning("%s %s: %s", flow.request.method, flow.request.pretty_url, message)
        feed = ResponseFeed.attach(flow)
        if feed is None:
            if flow.killable:
                flow.kill()
            return
        await feed.error_event(message, 504, "timeout")
        await feed.end()
        feed.close_upstream()

    def done(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._streams.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()

    def _expire(self, flow: http.HTTPFlow, seconds: float) -> None:
        self._timers.pop(flow.id, None)
        if flow.response is not None or flow.error is not None or not flow.live:
            return
        ex = exchange_of(flow.metadata)
        backend = ex.route.active.backend if ex and ex.route.active else "backend"
        message = f"{backend} sent no response within {seconds:g} s (llm_first_byte_timeout)"
        logger.warning("%s %s: %s", flow.request.method, flow.request.pretty_url, message)
        body = json.dumps({"error": {"message": message}}).encode()
        if not feed_upstream_response(flow, 504, "Gateway Timeout", body) and flow.killable:
            flow.kill()
