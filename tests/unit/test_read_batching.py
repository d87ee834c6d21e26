"""BatchingReader over a real TCP connection on 127.0.0.1: a flood is read in batches, a paced
stream and the first reads of a flood are not held back, a stream that expects a flood is
batched from its next read, no byte is lost or reordered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from protocol.read_batching import FLOOD_READS, BatchingReader
from tests.tcp_pair import tcp_pair

Writer = Callable[[asyncio.StreamWriter], Awaitable[None]]


class CountingTransport:
    """The connection's real transport, counting how often reading was paused."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.pauses = 0

    def pause_reading(self) -> None:
        self.pauses += 1
        self._transport.pause_reading()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


async def read_all(
    send: Writer, batching: bool, expect_flood_after: int | None = None
) -> tuple[list[bytes], list[int]]:
    """Serve `send` on a free port, read everything it writes: (the reads, how many reading
    pauses there had been after each read). A connection reset ends the reading as the end of
    the data does. `expect_flood_after`: tell the reader to expect a flood after that many
    reads (as the stream pipeline does once its first output went to the client)."""

    async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await send(writer)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    transport = CountingTransport(writer.transport)  # type: ignore[arg-type]
    source: Any = BatchingReader(reader, transport) if batching else reader  # type: ignore[arg-type]
    reads: list[bytes] = []
    pauses: list[int] = []
    try:
        while data := await asyncio.wait_for(source.read(65535), 5):
            reads.append(data)
            pauses.append(transport.pauses)
            if len(reads) == expect_flood_after:
                source.expect_flood()
    except ConnectionResetError:
        pass
    finally:
        writer.close()
        server.close()
        await server.wait_closed()
    return reads, pauses


def paused(pauses: list[int]) -> int:
    """Reading pauses in all."""
    return pauses[-1] if pauses else 0


def pieces(n: int) -> list[bytes]:
    return [b"data: piece %05d\n\n" % i for i in range(n)]


async def flood(writer: asyncio.StreamWriter) -> None:
    """Each piece its own send, as fast as the loop turns (as an upstream writing events)."""
    for piece in pieces(3000):
        writer.write(piece)
        await asyncio.sleep(0)


def test_a_flood_is_read_in_a_few_large_reads() -> None:
    plain, _ = asyncio.run(read_all(flood, batching=False))
    batched, pauses = asyncio.run(read_all(flood, batching=True))
    assert b"".join(plain) == b"".join(batched) == b"".join(pieces(3000))
    assert paused(pauses) > 0
    assert len(batched) * 4 < len(plain), (len(batched), len(plain))


def test_the_first_reads_of_a_flood_are_not_held_back() -> None:
    async def burst_then_flood(writer: asyncio.StreamWriter) -> None:
        for piece in pieces(FLOOD_READS):
            writer.write(piece)
            await asyncio.sleep(0.005)  # read one by one
        await flood(writer)

    _, pauses = asyncio.run(read_all(burst_then_flood, batching=True))
    assert pauses[2 * FLOOD_READS - 1] == 0  # the paced pieces and the flood's first reads
    assert paused(pauses) > 0


def test_a_paced_stream_is_read_at_once() -> None:
    async def paced(writer: asyncio.StreamWriter) -> None:
        for piece in pieces(12):
            writer.write(piece)
            await asyncio.sleep(0.005)

    reads, pauses = asyncio.run(read_all(paced, batching=True))
    assert paused(pauses) == 0
    assert reads == pieces(12)


def test_a_reset_in_a_flood_ends_the_reading() -> None:
    async def flood_then_reset(writer: asyncio.StreamWriter) -> None:
        for piece in pieces(50):
            writer.write(piece)
            await asyncio.sleep(0)
        transport = writer.transport
        assert isinstance(transport, asyncio.Transport)
        transport.abort()

    reads, _ = asyncio.run(read_all(flood_then_reset, batching=True))
    assert b"".join(pieces(50)).startswith(b"".join(reads))


def test_a_large_body_arriving_fast_is_read_at_once() -> None:
    """Large reads carry the per-read work well: a 2 MB body sent in 64 KB writes is never held."""
    block = bytes(range(256)) * 256

    async def large(writer: asyncio.StreamWriter) -> None:
        for _ in range(32):
            writer.write(block)
            await writer.drain()
            await asyncio.sleep(0)

    reads, pauses = asyncio.run(read_all(large, batching=True))
    assert b"".join(reads) == block * 32
    assert paused(pauses) == 0


async def one_then_flood(writer: asyncio.StreamWriter) -> None:
    """A stream's first event alone (the client's first byte), then a flood."""
    writer.write(pieces(1)[0])
    await asyncio.sleep(0.02)
    await flood(writer)


def test_a_stream_that_expects_a_flood_is_batched_from_its_next_read() -> None:
    """Once the first output went to the client, the next read waits for the flood to gather
    (the proxy's core is the client's meanwhile) instead of three more single reads."""
    reads, pauses = asyncio.run(read_all(one_then_flood, batching=True, expect_flood_after=1))
    assert reads[0] == pieces(1)[0]
    assert pauses[:2] == [0, 1]
    assert b"".join(reads) == b"data: piece 00000\n\n" + b"".join(pieces(3000))
    _, unexpected = asyncio.run(read_all(one_then_flood, batching=True))
    assert unexpected[:2] == [0, 0]


def test_a_paced_stream_that_expects_a_flood_is_held_once_at_most() -> None:
    """A paced stream's next read comes too late for a flood: the flood ends there, every
    later event is read as it comes."""

    async def paced(writer: asyncio.StreamWriter) -> None:
        for piece in pieces(12):
            writer.write(piece)
            await asyncio.sleep(0.005)

    reads, pauses = asyncio.run(read_all(paced, batching=True, expect_flood_after=1))
    assert reads == pieces(12)
    assert paused(pauses) <= 1


def test_a_read_under_way_when_a_flood_is_announced_is_held_for_one_window() -> None:
    """The read already waiting when the first output goes to the client returns its data
    one window late (reading paused meanwhile): the proxy leaves its core to the client
    instead of relaying the second event at once. Nothing is lost or reordered."""

    held, pauses, late, rest = asyncio.run(read_under_way(after=0.0))
    assert held == b"data: second\n\n" and rest == b"data: third\n\n"
    assert pauses >= 1 and late >= 0.04


def test_a_read_under_way_whose_data_comes_later_than_a_flood_is_not_held() -> None:
    """A short answer came whole before its first output: the read under way waits for the
    next answer on the connection, which goes on at once."""
    held, pauses, late, rest = asyncio.run(read_under_way(after=0.02))
    assert held == b"data: second\n\n" and rest == b"data: third\n\n"
    assert pauses == 0 and late < 0.04


def test_a_new_answer_is_not_batched_for_the_floods_of_the_last_one() -> None:
    """Back to back on a keep-alive connection, an answer's first reads come within the flood
    gap of the last answer's: once the proxy has sent the next request, they go on at once."""
    assert asyncio.run(next_answer(request_sent=True)) == (0, [b"head", b"body"])
    paused_after_flood, _ = asyncio.run(next_answer(request_sent=False))
    assert paused_after_flood >= 1  # without it, the new answer waits as the flood's reads did


def test_a_window_under_way_when_the_next_request_goes_out_ends_at_once() -> None:
    """The read after a flood waits out a window; the proxy sends the next request meanwhile:
    that answer's first bytes are read as they come, not at the window's end."""
    assert asyncio.run(answer_during_window()) < 0.25


async def answer_during_window() -> float:
    """Seconds from the next answer's first bytes to their read, under a 0.5 s window."""
    async with tcp_pair() as pair:
        transport = CountingTransport(pair.near_writer.transport)  # type: ignore[arg-type]
        source = BatchingReader(pair.near_reader, transport, window=0.5)  # type: ignore[arg-type]
        source.expect_flood()  # the last answer flooded: the next read waits a window
        waiting = asyncio.ensure_future(source.read(65535))
        await asyncio.sleep(0.02)
        assert transport.pauses == 1 and not waiting.done()
        source.request_sent()
        t0 = time.monotonic()
        pair.far_writer.write(b"head")
        assert await waiting == b"head"
        return time.monotonic() - t0


async def next_answer(request_sent: bool) -> tuple[int, list[bytes]]:
    """A flood was expected on the connection; the next answer's head and body come 5 ms
    apart: (reading pauses meanwhile, the reads)."""
    async with tcp_pair() as pair:
        transport = CountingTransport(pair.near_writer.transport)  # type: ignore[arg-type]
        source = BatchingReader(pair.near_reader, transport, window=0.05, gap=0.2)  # type: ignore[arg-type]
        source.expect_flood()  # the last answer's first output went on
        if request_sent:
            source.request_sent()
        pair.far_writer.write(b"head")
        reads = [await source.read(65535)]
        await asyncio.sleep(0.005)
        pair.far_writer.write(b"body")
        reads.append(await source.read(65535))
        return transport.pauses, reads


async def read_under_way(after: float) -> tuple[bytes, int, float, bytes]:
    """A read waits; the first output goes on; `after` seconds later data arrives: (what the
    waiting read returned, reading pauses until then, how long after the data it returned,
    the rest). The window is 50 ms, to tell a held read from a scheduling delay."""
    async with tcp_pair() as pair:
        transport = CountingTransport(pair.near_writer.transport)  # type: ignore[arg-type]
        source = BatchingReader(pair.near_reader, transport, window=0.05)  # type: ignore[arg-type]
        upstream = pair.far_writer
        waiting = asyncio.ensure_future(source.read(65535))
        await asyncio.sleep(0.01)
        source.expect_flood()  # the first output went on while this read waited
        await asyncio.sleep(after)
        upstream.write(b"data: second\n\n")
        t0 = time.monotonic()
        held = await waiting
        late = time.monotonic() - t0
        pauses = transport.pauses
        upstream.write(b"data: third\n\n")
        upstream.close()
        rest = b""
        while data := await source.read(65535):
            rest += data
        return held, pauses, late, rest
