"""The run command's connection handler (`addons.serve.BatchingConnectionHandler`) on a real
TCP connection: what the layers send while one event is processed leaves in one write."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from mitmproxy.addons import proxyserver
from mitmproxy.proxy import commands, events, mode_specs
from mitmproxy.test import taddons

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
