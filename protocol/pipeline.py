"""The stream pipeline: upstream bytes -> decoder -> stages -> encoder -> client bytes.

`StreamPipeline` is the callable that mitmproxy calls with each raw upstream chunk (and once
with `b""` at the end). It never raises (a raise would corrupt the stream inside the proxy
core) and never returns `b""` for "nothing" (that would end an HTTP/1.1 chunked body): it
returns `[]` instead.

Passthrough: when client and backend speak the same protocol and no stage changed anything, the
upstream bytes are relayed exactly as they came; the events are still decoded for the stages.

Also here: `response_events`, a whole `ChatResponse` as the stream events that would carry it
(a non-streamed upstream answer to a client that asked to stream; local answers).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

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
        "decoder",
        "encoder",
        "stages",
        "passthrough",
        "exchange",
        "accumulator",
        "on_close",
        "_closed",
        "_failed",
    )

    def __init__(
        self,
        decoder: StreamDecoder,
        encoder: StreamEncoder,
        exchange: Exchange,
        *,
        passthrough: bool = False,
        on_close: Callable[[StreamPipeline], None] | None = None,
    ) -> None:
        self.decoder = decoder
        self.encoder = encoder
        self.exchange = exchange
        self.stages = list(exchange.stages)
        self.passthrough = passthrough
        self.accumulator = ResponseAccumulator(source=exchange.front.protocol)
        self.on_close = on_close
        self._closed = False
        self._failed = False

    def __call__(self, chunk: bytes) -> bytes | Iterable[bytes]:
        try:
            out = self._step(chunk)
        except Exception:  # never let an exception reach mitmproxy's core
            logger.exception("stream conversion failed; ending the stream")
            out = self._fail()
        if chunk == b"" and not self._closed:
            self._closed = True
            self._finish()
        return out if out else []

    def _step(self, chunk: bytes) -> bytes:
        if self._failed:
            return b""
        ex = self.exchange
        if ex.first_byte is None and chunk:
            ex.first_byte = time.monotonic()
        final = chunk == b""
        events = self.decoder.close() if final else self.decoder.feed(chunk)
        for stage in self.stages:
            events = _through(stage, events, final)
        accumulate = self.accumulator.feed
        for event in events:
            accumulate(event)
        if self.passthrough:
            return chunk
        encode = self.encoder.feed
        out = b"".join([encode(e) for e in events]) if events else b""
        if final:
            out += self.encoder.close()
        return out

    def _fail(self) -> bytes:
        if self._failed:
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
        if self.on_close is not None:
            try:
                self.on_close(self)
            except Exception:
                logger.exception("stream close callback failed")


def _through(stage: object, events: list[Event], final: bool) -> list[Event]:
    out: list[Event] = []
    feed = stage.feed  # type: ignore[attr-defined]
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
