"""The SSE decoder holds for any split of the bytes; the encoder writes what it reads."""

import re

from hypothesis import given
from hypothesis import strategies as st

from protocol.sse import SSEDecoder, SSEEvent

STREAM = (
    b"event: message_start\n"
    b'data: {"type":"message_start","text":"h\xc3\xa9llo \xf0\x9f\x8c\x8d"}\n\n'
    b": keep-alive comment\n\n"
    b"data: line one\n"
    b"data: line two\n\n"
    b"data:no-space\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent("message_start", '{"type":"message_start","text":"héllo 🌍"}'),
    SSEEvent(None, "line one\nline two"),
    SSEEvent(None, "no-space"),
    SSEEvent(None, "[DONE]"),
]


def decode(chunks: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.close())
    return events


def test_whole() -> None:
    assert decode([STREAM]) == EXPECTED


def test_every_single_split_point() -> None:
    for i in range(len(STREAM) + 1):
        assert decode([STREAM[:i], STREAM[i:]]) == EXPECTED, i


def test_byte_by_byte() -> None:
    assert decode([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_crlf_and_cr_line_ends_any_split() -> None:
    for sep in (b"\r\n", b"\r"):
        stream = STREAM.replace(b"\n", sep)
        assert decode([stream]) == EXPECTED
        for i in range(len(stream) + 1):
            assert decode([stream[:i], stream[i:]]) == EXPECTED, (sep, i)


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_random_splits(points: list[int]) -> None:
    cuts = sorted(set(points))
    chunks = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)], strict=True)]
    assert decode(chunks) == EXPECTED


def test_last_event_without_blank_line_is_delivered_at_close() -> None:
    assert decode([b'data: {"a":1}']) == [SSEEvent(None, '{"a":1}')]



def reference(stream: bytes) -> list[SSEEvent]:
    """The events of a whole stream, read line by line as the SSE spec says (a last event
    without its blank line is delivered at the end, as the decoder's `close` does)."""
    out: list[SSEEvent] = []
    event: str | None = None
    data: list[str] = []
    for line in [*re.split(r"\r\n|\r|\n", stream.decode("utf-8", "replace")), ""]:
        if not line:
            if data:
                out.append(SSEEvent(event, "\n".join(data)))
            elif event is not None:
                out.append(SSEEvent(event, ""))
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    return out


LINES = st.sampled_from(
    [
        b"event: message_start\n",
        b"event:delta\n",
        b'data: {"t":"h\xc3\xa9"}\n',
        b"data:x\n",
        b"data:  two spaces\n",
        b"data:\n",
        b": comment\n",
        b"id: 7\n",
        b"retry: 10\n",
        b"\n",
        b"\n\n",
    ]
)


@given(st.lists(LINES, max_size=40), st.lists(st.integers(min_value=0, max_value=2000), max_size=8))
def test_any_mix_of_events_reads_as_the_spec_says_however_split(
    lines: list[bytes], points: list[int]
) -> None:
    """Runs of plain events (read by one match each) mixed with every other kind of line, cut
    anywhere: the same events as a line-by-line reading of the whole stream."""
    stream = b"".join(lines)
    cuts = sorted({p % (len(stream) + 1) for p in points})
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert decode(chunks) == reference(stream)
