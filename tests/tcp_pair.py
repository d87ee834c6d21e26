"""A real TCP connection on 127.0.0.1 for tests of what is written to a socket and when."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class TcpPair:
    """Both ends of one connection; `writes` records the near writer's writes, call by call."""

    near_reader: asyncio.StreamReader
    near_writer: asyncio.StreamWriter
    far_reader: asyncio.StreamReader
    far_writer: asyncio.StreamWriter
    writes: list[bytes] = field(default_factory=list)


@asynccontextmanager
async def tcp_pair() -> AsyncIterator[TcpPair]:
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put((reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    near_reader, near_writer = await asyncio.open_connection("127.0.0.1", port)
    far_reader, far_writer = await accepted.get()
    pair = TcpPair(near_reader, near_writer, far_reader, far_writer)
    plain_write = near_writer.write

    def recorded(data: bytes) -> None:
        pair.writes.append(bytes(data))
        plain_write(data)

    near_writer.write = recorded  # type: ignore[method-assign]
    try:
        yield pair
    finally:
        near_writer.close()
        far_writer.close()
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)
