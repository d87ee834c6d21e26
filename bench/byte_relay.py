"""The relay benchmark's floor: a TCP relay that forwards bytes both ways and does nothing else.

No HTTP parsing, no flow, no hook: each client connection gets its own upstream connection,
and whatever one side sends is written to the other as it is read (asyncio protocols, the
least Python can do per read). `bench/relay.py` runs it as a reference target: what any proxy
written in Python must add at least, on the same machine in the same run, to a request's
latency and to a stream's first byte. The figures of a real proxy are read against it.

Run: `.venv/bin/python bench/byte_relay.py --port 8200 --upstream-port 8100` (127.0.0.1 only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib


class _ToClient(asyncio.Protocol):
    """The upstream side of one relayed connection: what it sends goes to the client."""

    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class _FromClient(asyncio.Protocol):
    """The client side of one relayed connection: connects upstream, then forwards."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.upstream: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # until the upstream connection is there
        asyncio.get_running_loop().create_task(self._connect(transport))

    async def _connect(self, client: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        try:
            upstream, _ = await loop.create_connection(
                lambda: _ToClient(client), "127.0.0.1", self.upstream_port
            )
        except OSError:
            client.close()
            return
        self.upstream = upstream
        if client.is_closing():
            upstream.close()
        else:
            client.resume_reading()

    def data_received(self, data: bytes) -> None:
        assert isinstance(self.upstream, asyncio.WriteTransport)
        self.upstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()


async def serve(port: int, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _FromClient(upstream_port), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.upstream_port))


if __name__ == "__main__":
    main()
