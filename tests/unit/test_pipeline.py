"""The stream pipeline's endings: abort, a halting stage, and passthrough under the scrubber.

Each case runs a real upstream stream (bytes as the vendor sends them) through the pipeline and
reads the client's bytes back with that protocol's own decoder, as an SDK would.
"""

from __future__ import annotations

import json
from typing import Any

from protocol.canonical import (
    BlockStop,
    ChatRequest,
    Error,
    Event,
    Finish,
    Start,
    TextDelta,
    ThinkingDelta,
    ToolArgsDelta,
    ToolCallStart,
)
from protocol.codec import codec
from protocol.exchange import Exchange, Front
from protocol.loops import LoopStage
from protocol.pipeline import StreamPipeline, coalesce
from protocol.redaction import RedactionStage, Redactor

KEY = "sk-test-0123456789abcdefghij"


def openai_sse(*texts: str, finish: bool = True) -> list[bytes]:
    def chunk(delta: dict[str, Any], reason: str | None = None) -> bytes:
        body = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "system_fingerprint": "fp_keep_me",
            "choices": [{"index": 0, "delta": delta, "finish_reason": reason}],
        }
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": t}) for t in texts]
    if finish:
        out += [chunk({}, "stop"), b"data: [DONE]\n\n"]
    return out


def pipeline(front: str, back: str, stages: list[Any] | None = None, **kw: Any) -> StreamPipeline:
    ex = Exchange(
        front=Front(protocol=front, client_stream=True),  # type: ignore[arg-type]
        request=ChatRequest(source=front, model="m"),  # type: ignore[arg-type]
        raw={},
        requested_model="m",
    )
    ex.backend_protocol = back  # type: ignore[assignment]
    ex.stages = list(stages or [])
    return StreamPipeline(
        codec(back).decoder(), codec(front).encoder(), ex, passthrough=front == back, **kw
    )


def run(p: StreamPipeline, chunks: list[bytes], end: bool = True) -> bytes:
    out = bytearray()
    for c in [*chunks, *([b""] if end else [])]:
        result = p(c)
        out += result if isinstance(result, bytes) else b"".join(result)
    return bytes(out)


def client_events(protocol: str, data: bytes) -> list[Event]:
    decoder = codec(protocol).decoder()
    return decoder.feed(data) + decoder.close()


def text_of(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def test_passthrough_relays_whole_events_byte_for_byte_however_split() -> None:
    chunks = openai_sse("Hello", " world")
    data = b"".join(chunks)
    pieces = [data[i : i + 7] for i in range(0, len(data), 7)]
    out = run(pipeline("openai", "openai"), pieces)
    assert out == data


def test_abort_ends_a_passthrough_stream_with_an_error_in_the_clients_protocol() -> None:
    p = pipeline("openai", "openai")
    out = run(p, openai_sse("partial answer", finish=False), end=False)
    p.abort("the backend sent nothing for 2 s", 504, "timeout")
    out += run(p, [b"\n", b"more bytes the upstream sends late"])
    events = client_events("openai", out)
    assert text_of(events) == "partial answer"
    assert any(isinstance(e, Error) and "nothing for 2 s" in e.message for e in events)
    assert out.endswith(b"data: [DONE]\n\n") or b"[DONE]" not in out
    assert p.exchange.outcome == "error" and p.ended


def test_abort_of_a_converted_stream() -> None:
    p = pipeline("anthropic", "openai")
    out = run(p, openai_sse("half", finish=False), end=False)
    p.abort("cut", 504, "timeout")
    out += run(p, [b"x"])
    events = client_events("anthropic", out)
    assert text_of(events) == "half"
    assert isinstance(events[-1], Error) or any(isinstance(e, Error) for e in events)


def test_a_halting_stage_in_passthrough_closes_the_stream_cleanly() -> None:
    halted: list[bool] = []
    ex_holder: list[Exchange] = []

    def on_halt(_: Any) -> None:
        ex_holder[0].outcome = "loop_halted"

    stage = LoopStage(on_halt=on_halt)
    p = pipeline("openai", "openai", [stage], on_halt=lambda _: halted.append(True))
    ex_holder.append(p.exchange)
    unit = "I will read the configuration file again to check it. "
    out = run(p, openai_sse("Start. ", *([unit] * 10)))
    events = client_events("openai", out)
    text = text_of(events)
    assert text.startswith("Start. ") and '[loop detected: "' in text
    assert text.count(unit.strip()) <= 5
    finishes = [e for e in events if isinstance(e, Finish)]
    assert finishes and finishes[-1].stop_reason in ("stop", "end", "loop_halted")
    assert out.rstrip().endswith(b"data: [DONE]")
    assert halted == [True]


def test_passthrough_under_the_scrubber_catches_a_key_split_over_deltas() -> None:
    redactor = Redactor([KEY]).keys_only()
    stage = RedactionStage(redactor)
    p = pipeline("openai", "openai", [stage])
    p.guard = stage
    pieces = ["your key: ", KEY[:5], KEY[5:12], KEY[12:], " keep it safe"]
    out = run(p, openai_sse(*pieces))
    assert KEY.encode() not in out and KEY[5:12].encode() not in out
    assert (
        text_of(client_events("openai", out))
        == "your key: (API_KEY_HAS_BEEN_REDACTED) keep it safe"
    )
    assert stage.count == 1


def test_passthrough_under_the_scrubber_stays_byte_for_byte_without_a_key() -> None:
    stage = RedactionStage(Redactor([KEY]).keys_only())
    p = pipeline("openai", "openai", [stage])
    p.guard = stage
    chunks = openai_sse("skip the ", "sk", "ipping ", "stones")  # "sk" starts like the key
    assert run(p, chunks) == b"".join(chunks)  # fields the encoder would not keep stay too


def test_coalesce_merges_runs_of_one_blocks_deltas_only() -> None:
    events: list[Event] = [
        Start(id="m", model="x"),
        TextDelta(0, "a"),
        TextDelta(0, "b"),
        TextDelta(0, "c"),
        BlockStop(0),
        ToolCallStart(1, "call_1", "f"),
        ToolCallStart(2, "call_2", "g"),
        ToolArgsDelta(1, '{"x"'),
        ToolArgsDelta(1, ": 1}"),
        ToolArgsDelta(2, "{}"),  # another tool's fragment: a run of its own
        ToolArgsDelta(1, ""),
        ThinkingDelta(3, "t1"),
        ThinkingDelta(3, "t2"),  # thinking keeps its events (signatures ride on them)
        TextDelta(4, "d"),
        TextDelta(5, "e"),  # another block
    ]
    assert coalesce(events) == [
        Start(id="m", model="x"),
        TextDelta(0, "abc"),
        BlockStop(0),
        ToolCallStart(1, "call_1", "f"),
        ToolCallStart(2, "call_2", "g"),
        ToolArgsDelta(1, '{"x": 1}'),
        ToolArgsDelta(2, "{}"),
        ToolArgsDelta(1, ""),
        ThinkingDelta(3, "t1"),
        ThinkingDelta(3, "t2"),
        TextDelta(4, "d"),
        TextDelta(5, "e"),
    ]


def test_a_converted_burst_reaches_the_client_merged_per_read_with_every_character() -> None:
    texts = [f"tok{i} é日 " for i in range(300)]
    data = b"".join(openai_sse(*texts))
    one_read = run(pipeline("anthropic", "openai"), [data])
    events = client_events("anthropic", one_read)
    assert text_of(events) == "".join(texts)
    assert sum(isinstance(e, TextDelta) for e in events) == 1  # one read: one delta
    pieces = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    events = client_events("anthropic", run(pipeline("anthropic", "openai"), pieces))
    assert text_of(events) == "".join(texts)
    assert 1 < sum(isinstance(e, TextDelta) for e in events) <= len(pieces)


def test_a_loop_in_one_read_is_halted_inside_the_merged_delta() -> None:
    loop = "The same sentence comes again and again in this answer. "
    data = b"".join(openai_sse("Intro. ", *([loop] * 60)))
    stage = LoopStage()
    p = pipeline("anthropic", "openai", [stage])
    stage.on_halt = lambda _: setattr(p.exchange, "outcome", "loop_halted")
    events = client_events("anthropic", run(p, [data]))
    assert stage.halted and p.exchange.outcome == "loop_halted"
    text = text_of(events)
    assert text.startswith("Intro. ") and 2 <= text.count(loop) <= 4
    assert '[loop detected: "' in text and any(isinstance(e, Finish) for e in events)


def test_the_first_output_is_announced_once_when_bytes_first_go_to_the_client() -> None:
    """`on_first_output` runs once, as the first bytes for the client come out: not for a read
    that gives the client nothing (half an event), not again later."""
    p = pipeline("anthropic", "openai")
    calls: list[int] = []
    p.on_first_output = lambda: calls.append(1)
    first, *rest = openai_sse("Hel", "lo")
    assert run(p, [first[:20]], end=False) == b""
    assert calls == []
    out = run(p, [first[20:]], end=False)
    assert out.startswith(b"event: message_start") and calls == [1]
    assert text_of(client_events("anthropic", out + run(p, rest))) == "Hello"
    assert calls == [1]


def test_an_answer_that_came_whole_in_one_read_announces_no_first_output() -> None:
    """A short answer whose end is in the read that gives the client its first bytes has no
    flood behind it: the upstream reader is not told to expect one (it would hold the
    answer's last bytes, or the next answer's, for a window)."""
    for front, back in (("anthropic", "openai"), ("openai", "openai")):
        p = pipeline(front, back)
        announced: list[int] = []
        p.on_first_output = announced.clear  # any call counts: it must not come
        announced.append(0)
        out = run(p, [b"".join(openai_sse("Hi"))])
        assert text_of(client_events(front, out)) == "Hi" and announced == [0]
