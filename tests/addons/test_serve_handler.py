"""The run command's connection handler (`addons.serve.BatchingConnectionHandler`) on a real
TCP connection: what the layers send while one event is processed leaves in one write, and
before any hook that event starts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from mitmproxy.addons import proxyserver
from mitmproxy.proxy import commands, events, mode_specs
from mitmproxy.proxy.layers.http import HttpResponseHook
from mitmproxy.test import taddons, tflow

from addons.serve import BatchingConnectionHandler
from tests.tcp_pair import tcp_pair


class SendingLayer:
    """A layer that answers every event by sending its pieces to the client."""

    def __init__(self, handler: Any, pieces: list[bytes]) -> None:
        self.handler = handler
        self.pieces = pieces

    def handle_event(self, event: events.Event) -> Iterator[commands.Command]:
        for piece in self.pieces:
            yield commands.SendData(self.handler.client, piece)


async def test_what_one_event_sends_leaves_in_one_write() -> None:
    async with tcp_pair() as pair:
        with taddons.context(proxyserver.Proxyserver()) as tctx:
            mode = mode_specs.ProxyMode.parse("reverse:http://127.0.0.1:9@8000")
            handler = BatchingConnectionHandler(
                tctx.master, pair.near_reader, pair.near_writer, tctx.options, mode
            )
            head, body = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n", b"hi"
            handler.layer = SendingLayer(handler, [head, body])  # type: ignore[assignment]
            await handler.server_event(events.Start())
            assert pair.writes == [head + body]
            got = await asyncio.wait_for(pair.far_reader.readexactly(len(head + body)), 5)
            assert got == head + body
            handler.layer = SendingLayer(handler, [b"data: a\n\n", b"", b"data: b\n\n"])  # type: ignore[assignment]
            await handler.server_event(events.Start())
            assert pair.writes[1:] == [b"data: a\n\ndata: b\n\n"]


class SendThenHookLayer:
    """A layer that answers the first event with a stream's last chunk, then its `response`
    hook (as mitmproxy's HTTP layer does when a read holds the end of a streamed answer)."""

    def __init__(self, handler: Any, chunk: bytes) -> None:
        self.handler = handler
        self.chunk = chunk

    def handle_event(self, event: events.Event) -> Iterator[commands.Command]:
        if isinstance(event, events.Start):
            yield commands.SendData(self.handler.client, self.chunk)
            yield HttpResponseHook(tflow.tflow(resp=True))


async def test_bytes_made_before_a_hook_leave_before_the_hook_runs() -> None:
    """mitmproxy starts a hook inside the event that asks for it (eager tasks): the bytes that
    event made before the hook are sent first, not held until the hook has run."""
    async with tcp_pair() as pair:
        sent_when_hooked: list[list[bytes]] = []

        class Recorder:
            def response(self, flow: Any) -> None:
                sent_when_hooked.append(list(pair.writes))

        loop = asyncio.get_running_loop()
        factory = loop.get_task_factory()
        loop.set_task_factory(asyncio.eager_task_factory)  # as mitmproxy's master runs
        try:
            with taddons.context(proxyserver.Proxyserver(), Recorder()) as tctx:
                mode = mode_specs.ProxyMode.parse("reverse:http://127.0.0.1:9@8000")
                handler = BatchingConnectionHandler(
                    tctx.master, pair.near_reader, pair.near_writer, tctx.options, mode
                )
                chunk = b"data: last\n\n"
                handler.layer = SendThenHookLayer(handler, chunk)  # type: ignore[assignment]
                await handler.server_event(events.Start())
                assert sent_when_hooked == [[chunk]]
                got = await asyncio.wait_for(pair.far_reader.readexactly(len(chunk)), 5)
                assert got == chunk
        finally:
            loop.set_task_factory(factory)
