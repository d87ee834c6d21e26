"""Reading an upstream that floods in batches: few large reads while data pours in, no delay
while it trickles.

Every read of an upstream's answer costs the proxy a fixed amount of work besides the bytes
(the event loop's wake-up, mitmproxy's layers, the stream pipeline's per-read step). A model
paced at tens of milliseconds a token gives one event a read, and that fixed cost is nothing.
An upstream that sends as fast as it can (a replayed or cached answer, a very fast model, a
local server) is read as soon as each few events land: hundreds of small reads for a
2,000-event answer, and the per-read work becomes most of the proxy's CPU.

`BatchingReader` wraps an `asyncio.StreamReader`: once `FLOOD_READS` small reads in a row (under
`SMALL_READ` bytes) each came within `FLOOD_GAP` seconds of the one before, it stops the
transport reading for `WINDOW` seconds before the next read, so the kernel gathers what arrives
meanwhile into one read (and keeps doing so while reads keep coming that fast). The first
reads of an answer (its headers and first events, a short answer whole), every read of a paced
stream and the large reads of a large body go through at once; in a flood of small pieces, an
event waits at most `WINDOW` more. Bytes are never
dropped, reordered or held past the window: only the moment of the read changes.

The pause also frees the proxy's core for the client while the upstream floods: on two cores,
with upstream and proxy both busy, the client otherwise waits its turn to read. Batching from
the first quick small read on brought a 2,000-event stream's first byte 0.3 ms sooner (A/B),
but a large body read fast has stray small reads between its full ones (the tail of each
64 KB write): it was then held 8 times over 2 MB. Three in a row never happen there.

An event stream is known as one to the layer above, though: once its first events have gone on
to the client, `expect_flood` batches from the very next read, so the client is not left
waiting for a core while the proxy reads the second and third events. A read already under
way then (mitmproxy reads again as soon as a read's data is handed on, before the response's
hooks have run) is held for one window before its data goes on: the proxy goes idle right
after the first events left, and a client woken onto the proxy's core reads them at once. In
an interleaved A/B of 350 2,000-event streams each, with the handler's write coalescing
(`protocol.write_coalescing`), the first byte's median fell from 3.23 to 2.27 ms (2.80
without coalescing). A paced stream loses nothing: its next read comes later than
`FLOOD_GAP` and ends the flood. Nor does an answer that came whole in the read that gave the
client its first bytes (nothing follows it: the pipeline does not announce a flood then).

Answers on a keep-alive connection can come back to back within `FLOOD_GAP`: the connection
handler calls `request_sent` when the proxy writes the upstream a request, and the last
answer's flood is over. Without it, a short answer's body after a flood waited a window
(an A/B of 1-delta streams: median first byte 2.62 -> 1.79 ms with this and the handler's
flush before each hook).
"""

from __future__ import annotations

import asyncio
import time

WINDOW = 0.001  # seconds reading pauses before a read in a flood (the event loop's resolution)
FLOOD_GAP = 0.002  # reads closer together than this are part of a flood
FLOOD_READS = 3  # quick small reads in a row before batching starts
SMALL_READ = 8192  # bytes: a read this large already carries the per-read work well


class BatchingReader:
    """The `read` of an `asyncio.StreamReader`, batched while its peer floods (module doc)."""

    __slots__ = (
        "_reader",
        "_transport",
        "_last",
        "_quick",
        "_window",
        "_gap",
        "_after",
        "_small",
        "_reading",
        "_hold",
        "_gathering",
    )

    def __init__(
        self,
        reader: asyncio.StreamReader,
        transport: asyncio.Transport,
        *,
        window: float = WINDOW,
        gap: float = FLOOD_GAP,
        after: int = FLOOD_READS,
        small: int = SMALL_READ,
    ) -> None:
        self._reader = reader
        self._transport = transport
        self._window = window
        self._gap = gap
        self._after = after
        self._small = small
        self._last = float("-inf")  # when the previous read returned (monotonic seconds)
        self._quick = 0  # small reads in a row that came within `gap` of the one before
        self._reading = False  # a read is under way
        self._hold = False  # a flood was announced while the read under way waited for data
        self._gathering: asyncio.Future[None] | None = None  # the window under way, if any

    async def read(self, n: int = -1) -> bytes:
        transport = self._transport
        batched = self._quick >= self._after and transport.is_reading()
        if batched:
            await self._gather()
        self._reading = True
        try:
            data = await self._reader.read(n)
        finally:
            self._reading = False
        now = time.monotonic()
        if self._hold:
            self._hold = False
            # only a flood's data: what comes later is the next answer on this connection
            if data and now - self._last < self._gap and transport.is_reading():
                await self._gather()
                now = time.monotonic()
        # a batched read is large by design: the flood goes on while the reads keep coming,
        # unless one filled the whole read: bulk data, not a flood of small pieces
        small = len(data) < self._small or (batched and (n < 0 or len(data) < n))
        quick = now - self._last < self._gap and small
        self._quick = self._quick + 1 if quick else 0
        self._last = now
        return data

    async def _gather(self) -> None:
        """Let the kernel gather the next window's bytes into one read. A transport the reader
        itself paused (its buffer is full) has plenty to read already."""
        transport = self._transport
        transport.pause_reading()
        loop = asyncio.get_running_loop()
        window = self._gathering = loop.create_future()
        timer = loop.call_later(self._window, _end_window, window)
        try:
            await window
        finally:
            timer.cancel()
            self._gathering = None
            if not transport.is_closing():
                transport.resume_reading()

    def request_sent(self) -> None:
        """The proxy wrote the peer a request: what comes next is a new answer. The last
        answer's flood is over (back-to-back answers on a keep-alive connection come within
        `FLOOD_GAP` of each other, and the new one's first events must not wait a window), and
        a window still under way from it ends now."""
        self._quick = 0
        self._hold = False
        if self._gathering is not None:  # the last answer's window: the new one reads at once
            _end_window(self._gathering)

    def expect_flood(self) -> None:
        """The peer streams events and the first ones went on: batch from the next read (unless
        that read comes slower than a flood, which ends it). A read already under way is held
        for one window before its data goes on, when that data comes as fast as a flood's (a
        short answer may have come whole: the read under way then waits for the next answer on
        the connection, which must not wait)."""
        self._quick = max(self._quick, self._after)
        self._last = time.monotonic()
        self._hold = self._reading


def _end_window(window: asyncio.Future[None]) -> None:
    if not window.done():
        window.set_result(None)
