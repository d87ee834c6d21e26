"""Timeouts addon: a backend that sends no response headers in time gets the client a 504.

mitmproxy has no response timeout and no way to answer a flow once it went upstream. So a
watchdog started when a routed request leaves feeds the flow's own server connection a complete
HTTP/1.1 `504` response (`connection: close`) when the time is up: mitmproxy reads it as the
backend's answer, the responses addon renders it in the client's protocol like any upstream
error, and the real upstream connection is closed (the backend stops working on it).

This uses mitmproxy's connection handler (`proxyserver.connections`, `server_event`), which is
not public API: it is used here and nowhere else. Where it cannot apply (an HTTP/2 upstream, or
a connection still being opened), the flow is killed instead.
"""

from __future__ import annotations

import asyncio
import json
import logging

from mitmproxy import ctx, http
from mitmproxy.proxy import events

from protocol.exchange import exchange_of

logger = logging.getLogger(__name__)


def feed_upstream_response(flow: http.HTTPFlow, status: int, reason: str, body: bytes) -> bool:
    """Make `flow`'s server connection deliver this response as if the backend sent it."""
    proxyserver = ctx.master.addons.get("proxyserver")
    handler = proxyserver.connections.get(flow.client_conn.id) if proxyserver else None
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
    def __init__(self) -> None:
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def request(self, flow: http.HTTPFlow) -> None:
        ex = exchange_of(flow.metadata)
        if ex is None or flow.response is not None or ex.route.active is None:
            return
        seconds = ctx.options.llm_upstream_timeout
        if seconds > 0:
            loop = asyncio.get_running_loop()
            self._timers[flow.id] = loop.call_later(seconds, self._expire, flow, seconds)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        timer = self._timers.pop(flow.id, None)
        if timer is not None:
            timer.cancel()

    def error(self, flow: http.HTTPFlow) -> None:
        self.responseheaders(flow)

    def done(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _expire(self, flow: http.HTTPFlow, seconds: int) -> None:
        self._timers.pop(flow.id, None)
        if flow.response is not None or flow.error is not None or not flow.live:
            return
        ex = exchange_of(flow.metadata)
        backend = ex.route.active.backend if ex and ex.route.active else "backend"
        message = f"{backend} sent no response within {seconds} s (llm_upstream_timeout)"
        logger.warning("%s %s: %s", flow.request.method, flow.request.pretty_url, message)
        body = json.dumps({"error": {"message": message}}).encode()
        if not feed_upstream_response(flow, 504, "Gateway Timeout", body) and flow.killable:
            flow.kill()
