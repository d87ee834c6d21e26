"""The stream pipeline: upstream bytes -> decoder -> stages -> encoder -> client bytes.

`StreamPipeline` is the callable that mitmproxy calls with each raw upstream chunk (and once
with `b""` at the end). It never raises (a raise would corrupt the stream inside the proxy
core) and never returns `b""` for "nothing" (that would end an HTTP/1.1 chunked body): it
returns `[]` instead.

Passthrough: when client and backend speak the same protocol, the upstream bytes are relayed
exactly as they came (through `raw_filter` when one is set: it sees whole SSE events), whole
SSE events at a time; the events are still decoded for the stages.

Ending early: `abort(message)` ends the client's stream with an error event in its protocol at
the next call (an idle upstream, a broken fallback); a stage that halts the answer (the loop
guard) sets `exchange.outcome = "loop_halted"` and emits its closing events (note, finish): the
stream is encoded from there on, ended, and `on_halt` is called so the caller can end the
response and close the upstream. Upstream bytes after either are dropped. In passthrough the
encoder never saw the relayed events: it is brought to their state from the accumulator first.

Also here: `response_events`, a whole `ChatResponse` as the stream events that would carry it
(a non-streamed upstream answer to a client that asked to stream; local answers).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from protocol.canonical import (
    BlockStop,
    ChatResponse,
    Error,
    Event,
    Finish,
    OpaquePart,
    ResponseAccumulator,
    Start,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolArgsDelta,
    ToolCallPart,
    ToolCallStart,
)
from protocol.codec import StreamDecoder, StreamEncoder
from protocol.exchange import Exchange

logger = logging.getLogger(__name__)


class StreamPipeline:
    __slots__ = (
        "on_first_output",
        "decoder",
        "encoder",
        "stages",
        "passthrough",
        "exchange",
        "accumulator",
        "on_close",
        "on_halt",
        "raw_filter",
        "guard",
        "_closed",
        "_failed",
        "_ended",
        "_abort",
        "_held",
        "_pending",
        "_pending_raw",
        "_guard_seen",
    )

    def __init__(
        self,
        decoder: StreamDecoder,
        encoder: StreamEncoder,
        exchange: Exchange,
        *,
        passthrough: bool = False,
        on_close: Callable[[StreamPipeline], None] | None = None,
        on_halt: Callable[[StreamPipeline], None] | None = None,
        raw_filter: Callable[[bytes], bytes] | None = None,
    ) -> None:
        # called once, when the first bytes for the client come out (the run command's upstream
        # reader then batches the flood that usually follows: `protocol.read_batching`)
        self.on_first_output: Callable[[], None] | None = None
        self.decoder = decoder
        self.encoder = encoder
        self.exchange = exchange
        self.stages = list(exchange.stages)
        self.passthrough = passthrough
        self.accumulator = ResponseAccumulator(source=exchange.front.protocol)
        self.on_close = on_close
        self.on_halt = on_halt
        self.raw_filter = raw_filter
        self._closed = False
        self._failed = False
        self._ended = False  # the client's stream is complete (halted or aborted)
        self._abort: Error | None = None
        self._held = b""  # passthrough: the start of an SSE event not complete yet
        # passthrough with a guard (the answer scrubber): raw bytes wait while it holds text
        self.guard: Any = None
        self._pending: list[Event] = []
        self._pending_raw: list[bytes] = []
        self._guard_seen = 0

    def abort(self, message: str, status: int = 504, kind: str = "timeout") -> None:
        """End the client's stream with this error at the next call (any chunk, or b"")."""
        if not self._ended:
            self._abort = Error(message, status, kind)

    @property
    def ended(self) -> bool:
        return self._ended

    def __call__(self, chunk: bytes) -> bytes | Iterable[bytes]:
        try:
            out = self._aborted() if self._abort is not None else self._step(chunk)
        except Exception:  # never let an exception reach mitmproxy's core
            logger.exception("stream conversion failed; ending the stream")
            out = self._fail()
        if chunk == b"" and not self._closed:
            self._closed = True
            self._finish()
        if not out:
            return []
        if self.on_first_output is not None:
            first, self.on_first_output = self.on_first_output, None
            if not self.accumulator.finished:  # a whole answer in one read: nothing follows
                first()
        return out

    def _step(self, chunk: bytes) -> bytes:
        if self._failed or self._ended:
            return b""
        ex = self.exchange
        now = time.monotonic()
        ex.last_activity = now
        if ex.first_byte is None and chunk:
            ex.first_byte = now
        final = chunk == b""
        events = self.decoder.close() if final else self.decoder.feed(chunk)
        if len(events) > 2:
            events = coalesce(events)
        for stage in self.stages:
            events = _through(stage, events, final)
        if ex.outcome == "loop_halted":
            return self._halt(events)
        if self.passthrough:
            if self.guard is not None:
                return self._guarded(chunk, events, final)
            accumulate = self.accumulator.feed
            for event in events:
                accumulate(event)
            return self._relay(chunk, final)
        accumulate = self.accumulator.feed
        for event in events:
            accumulate(event)
        encode = self.encoder.feed
        out = b"".join([encode(e) for e in events]) if events else b""
        if final:
            out += self.encoder.close()
        return out

    def _relay(self, chunk: bytes, final: bool) -> bytes:
        """Passthrough: the raw bytes, whole SSE events at a time (through `raw_filter`)."""
        data = self._held + chunk if self._held else chunk
        if final:
            out, self._held = data, b""
        else:
            end = max(data.rfind(b"\n\n") + 2, data.rfind(b"\r\n\r\n") + 4, data.rfind(b"\r\r") + 2)
            if end <= 1:
                self._held = data
                return b""
            out, self._held = (data[:end], data[end:]) if end < len(data) else (data, b"")
        if self.raw_filter is not None and out:
            out = self.raw_filter(out)
        return out

    def _guarded(self, chunk: bytes, events: list[Event], final: bool) -> bytes:
        """Passthrough under a guard that may rewrite text (the answer scrubber): the raw bytes
        wait while it holds text back; when it replaced something the stream is encoded from
        the events from here on (the raw bytes of those events never leave)."""
        self._pending.extend(events)
        self._pending_raw.append(chunk)
        if self.guard.count != self._guard_seen:
            self._guard_seen = self.guard.count
            self._resume_encoder()
            out = b""
            accumulate = self.accumulator.feed
            encode = self.encoder.feed
            for event in self._take_pending():
                accumulate(event)
                out += encode(event)
            self._pending_raw.clear()
            return out + self.encoder.close() if final else out
        if self.guard.holding and not final:
            return b""
        accumulate = self.accumulator.feed
        for event in self._take_pending():
            accumulate(event)
        raw = b"".join(self._pending_raw)
        self._pending_raw.clear()
        return self._relay(raw, final)

    def _take_pending(self) -> list[Event]:
        pending, self._pending = self._pending, []
        return pending

    def _halt(self, events: list[Event]) -> bytes:
        """A stage halted the answer: its last events (note, finish) close the stream."""
        if self.passthrough:
            self._resume_encoder()
        out = b""
        events = self._take_pending() + events
        self._pending_raw.clear()
        accumulate = self.accumulator.feed
        encode = self.encoder.feed
        for event in events:
            accumulate(event)
            out += encode(event)
        out += self.encoder.close()
        self._ended = True
        if self.on_halt is not None:
            try:
                self.on_halt(self)
            except Exception:
                logger.exception("halt callback failed")
        return out

    def _aborted(self) -> bytes:
        error, self._abort = self._abort, None
        if self._ended or self._failed or error is None:
            return b""
        self._ended = True
        self.exchange.error = error.message
        if self.exchange.outcome == "pending":
            self.exchange.outcome = "error"
        if self.passthrough:
            self._resume_encoder()
        return self.encoder.feed(error) + self.encoder.close()

    def _resume_encoder(self) -> None:
        """Bring the unused passthrough encoder to the state of what was relayed; the bytes it
        would have written for that are dropped, and the raw start of an unfinished SSE event
        is dropped with them (the client never saw any of it)."""
        self._held = b""
        self.passthrough = False
        acc = self.accumulator
        encode = self.encoder.feed
        encode(Start(acc.id, acc.model, None))
        for index in sorted(acc.blocks):
            block = acc.blocks[index]
            if block == "text":
                encode(TextDelta(index, ""))
            elif isinstance(block, ThinkingPart):
                encode(ThinkingDelta(index, "", None, block.redacted))
            elif isinstance(block, ToolCallPart):
                encode(ToolCallStart(index, block.id, block.name, block.signature))
            if index in acc.stopped:
                encode(BlockStop(index))

    def _fail(self) -> bytes:
        if self._failed or self._ended:
            return b""
        self._failed = True
        self.exchange.error = "stream conversion failed"
        try:
            if self.passthrough:
                return b""
            return self.encoder.feed(Error("stream conversion failed", 502, "api_error")) + (
                self.encoder.close()
            )
        except Exception:
            logger.exception("encoder failed while ending the stream")
            return b""

    def _finish(self) -> None:
        ex = self.exchange
        ex.finished = time.monotonic()
        acc = self.accumulator
        try:
            ex.answer = acc.response()
        except Exception:
            logger.exception("could not reassemble the streamed answer")
        if acc.usage.input_tokens is not None or acc.usage.output_tokens is not None:
            ex.usage = acc.usage
            ex.usage_source = "upstream"
        if ex.outcome == "pending":
            ex.outcome = "error" if (self._failed or not acc.finished) else "ok"
        if ex.outcome == "error" and ex.error is None:
            ex.error = "the backend's stream ended before its answer was complete"
        if self.on_close is not None:
            try:
                self.on_close(self)
            except Exception:
                logger.exception("stream close callback failed")


def coalesce(events: list[Event]) -> list[Event]:
    """`events` with each run of text deltas (or tool-argument deltas) of one block merged into
    one delta. Only what one upstream read brought is merged: a burst the upstream sent at once
    goes through the stages and the encoder once, not once per token (with a model's pacing a
    read holds one event and nothing changes)."""
    out: list[Event] = []
    run: list[str] = []
    last: Event | None = None
    for event in events:
        kind = type(event)
        if (kind is TextDelta or kind is ToolArgsDelta) and type(last) is kind:
            if kind is TextDelta and event.index == last.index:  # type: ignore[union-attr]
                run.append(event.text)  # type: ignore[union-attr]
                continue
            if kind is ToolArgsDelta and event.index == last.index:  # type: ignore[union-attr]
                run.append(event.fragment)  # type: ignore[union-attr]
                continue
        if run:
            out[-1] = _merged(last, run)  # type: ignore[arg-type]
            run = []
        out.append(event)
        last = event
    if run:
        out[-1] = _merged(last, run)  # type: ignore[arg-type]
    return out


def _merged(first: TextDelta | ToolArgsDelta, rest: list[str]) -> Event:
    if isinstance(first, TextDelta):
        return TextDelta(first.index, first.text + "".join(rest))
    return ToolArgsDelta(first.index, first.fragment + "".join(rest))


def _through(stage: object, events: list[Event], final: bool) -> list[Event]:
    feed = stage.feed  # type: ignore[attr-defined]
    if len(events) == 1 and not final:  # the usual chunk: one delta
        return feed(events[0])
    out: list[Event] = []
    for event in events:
        out.extend(feed(event))
    if final:
        out.extend(stage.close())  # type: ignore[attr-defined]
    return out


def response_events(resp: ChatResponse) -> list[Event]:
    """The stream events that carry a whole response, in order."""
    events: list[Event] = [Start(id=resp.id, model=resp.model, usage=None)]
    index = 0
    for part in resp.parts:
        if isinstance(part, TextPart):
            events.append(TextDelta(index, part.text))
        elif isinstance(part, ThinkingPart):
            events.append(ThinkingDelta(index, part.text, None, part.redacted))
            if part.signature:
                events.append(ThinkingDelta(index, "", part.signature, part.redacted))
        elif isinstance(part, ToolCallPart):
            events.append(ToolCallStart(index, part.id, part.name, part.signature))
            events.append(ToolArgsDelta(index, part.arguments))
        elif isinstance(part, OpaquePart):
            continue
        else:
            continue
        events.append(BlockStop(index))
        index += 1
    events.append(Finish(resp.stop_reason, resp.usage, resp.stop_sequence))
    return events


def encode_whole(resp: ChatResponse, encoder: StreamEncoder) -> bytes:
    """A whole response as one complete stream transcript in the encoder's protocol."""
    return b"".join(encoder.feed(e) for e in response_events(resp)) + encoder.close()
