"""CoalescingWriter over a real TCP connection on 127.0.0.1: what is written leaves at `flush`
in one write, in order; closing, half-closing and draining send what is still kept."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from protocol.write_coalescing import CoalescingWriter
from tests.tcp_pair import tcp_pair

Use = Callable[[CoalescingWriter, asyncio.StreamReader], Awaitable[None]]


async def connected(use: Use) -> list[bytes]:
    """Run `use` with a coalescing writer on one end of a fresh connection and a reader of the
    other end; returns what the underlying writer was asked to write, call by call."""
    async with tcp_pair() as pair:
        await use(CoalescingWriter(pair.near_writer), pair.far_reader)
    return pair.writes


async def nothing_arrives(peer: asyncio.StreamReader) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(peer.read(100), 0.05)


def test_writes_leave_at_flush_in_one_piece() -> None:
    async def use(w: CoalescingWriter, peer: asyncio.StreamReader) -> None:
        w.write(b"HTTP/1.1 200 OK\r\n\r\n")
        w.write(b"")
        w.write(b"data: first\n\n")
        await nothing_arrives(peer)
        w.flush()
        w.flush()  # nothing kept: nothing written
        both = b"HTTP/1.1 200 OK\r\n\r\ndata: first\n\n"
        assert await asyncio.wait_for(peer.readexactly(len(both)), 5) == both
        w.write(b"data: second\n\n")
        w.flush()
        assert await asyncio.wait_for(peer.readexactly(14), 5) == b"data: second\n\n"

    writes = asyncio.run(connected(use))
    assert writes == [b"HTTP/1.1 200 OK\r\n\r\ndata: first\n\n", b"data: second\n\n"]


def test_closing_half_closing_and_draining_send_what_is_kept() -> None:
    async def use(w: CoalescingWriter, peer: asyncio.StreamReader) -> None:
        assert w.get_extra_info("peername") is not None and w.transport is not None
        w.write(b"a")
        await w.drain()
        assert await peer.readexactly(1) == b"a"
        w.write(b"b")
        assert w.can_write_eof()
        w.write_eof()
        assert await peer.read() == b"b"
        with pytest.raises(RuntimeError):  # refused when written, as asyncio's writer does
            w.write(b"c")
        w.close()
        await w.wait_closed()
        assert w.is_closing()

    writes = asyncio.run(connected(use))
    assert writes[:2] == [b"a", b"b"]
