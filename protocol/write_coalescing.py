"""Sending what one event produced in one piece: a message's head and body, several chunks.

mitmproxy's connection handler writes every piece of data its layers produce as soon as the
layer produces it: an HTTP/1 message's head, then its body, then (chunked) each chunk and the
end. Each write is a `send` of its own, and on a local connection each wakes the peer, which
reads, parses and waits again. A request's head and body reach the upstream in two sends; a
streamed answer's response head and first events reach the client in two, and the client,
woken by the head while the proxy and a flooding upstream hold both cores of a small machine,
may then wait for a core to read the events that were ready a moment later.

`CoalescingWriter` wraps an `asyncio.StreamWriter`: `write` keeps the bytes, `flush` sends all
kept bytes in one write. A writer that starts keeping bytes reports itself (`on_pending`), and
the connection handler flushes those once it has processed an event (mitmproxy processes an
event synchronously: everything one event makes to send is known then), and before each hook
the event starts (mitmproxy's eager tasks run a hook inside the event: the last chunks of an
answer read whole would otherwise wait for its `response` hook). Closing, half-closing and
draining flush first, so nothing is reordered, lost or held past the event that produced it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class CoalescingWriter:
    """An `asyncio.StreamWriter` whose writes leave at `flush` (module doc)."""

    __slots__ = ("_writer", "_pending", "_eof", "_on_pending")

    def __init__(
        self,
        writer: asyncio.StreamWriter,
        on_pending: Callable[[CoalescingWriter], None] | None = None,
    ) -> None:
        self._writer = writer
        self._pending: list[bytes] = []
        self._eof = False
        self._on_pending = on_pending  # told when the first bytes since a flush are kept

    @property
    def transport(self) -> asyncio.WriteTransport:
        return self._writer.transport

    def write(self, data: bytes) -> None:
        if self._eof:  # refused at once, as asyncio's writer does
            raise RuntimeError("Cannot call write() after write_eof()")
        if data:
            if not self._pending and self._on_pending is not None:
                self._on_pending(self)
            self._pending.append(data)

    def flush(self) -> None:
        """Send what was written since the last flush, in one write."""
        pending = self._pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self._writer.write(data)

    def is_closing(self) -> bool:
        return self._writer.is_closing()

    def can_write_eof(self) -> bool:
        return self._writer.can_write_eof()

    def write_eof(self) -> None:
        self.flush()
        self._eof = True
        self._writer.write_eof()

    def close(self) -> None:
        self.flush()
        self._writer.close()

    async def drain(self) -> None:
        self.flush()
        await self._writer.drain()

    async def wait_closed(self) -> None:
        await self._writer.wait_closed()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._writer.get_extra_info(name, default)
