"""The chunked-body decoder: any split of the bytes, the same verdicts as h11's own reader."""

from __future__ import annotations

import h11
import pytest
from h11._readers import ChunkedReader
from h11._receivebuffer import ReceiveBuffer
from hypothesis import example, given
from hypothesis import strategies as st

from protocol.chunked import ChunkedDecoder, ChunkedError


def encode(payloads: list[bytes], extensions: bool = False, trailer: bytes = b"\r\n") -> bytes:
    out = b""
    for i, payload in enumerate(payloads):
        ext = f";n={i}".encode() if extensions and i % 2 else b""
        size = f"{len(payload):x}".encode()
        out += (size.upper() if i % 3 == 1 else size) + ext + b"\r\n" + payload + b"\r\n"
    return out + b"0\r\n" + trailer


def feed(pieces: list[bytes], max_chunks: int = 0) -> tuple[list[bytes], bytes, ChunkedDecoder]:
    """Decode `pieces` as they arrive, as the proxy does: (data per call, rest, decoder)."""
    decoder = ChunkedDecoder()
    buffer, got = b"", []
    for piece in pieces:
        buffer += piece
        while not decoder.done:
            parts, used = decoder.decode(buffer, max_chunks)
            buffer = buffer[used:]
            if not parts:
                break
            got.append(b"".join(parts))
    return got, buffer, decoder


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


payloads = st.lists(st.binary(min_size=1, max_size=40), max_size=12)


@given(payloads, st.lists(st.integers(min_value=0, max_value=10_000), max_size=30), st.booleans())
def test_any_split_gives_the_payload_and_stops_at_the_trailer(
    chunks: list[bytes], cuts: list[int], extensions: bool
) -> None:
    body = encode(chunks, extensions, trailer=b"x-trailer: 1\r\n\r\n")
    got, rest, decoder = feed(split(body, cuts))
    assert b"".join(got) == b"".join(chunks)
    assert decoder.done
    assert rest == b"x-trailer: 1\r\n\r\n"


def test_a_read_with_many_chunks_is_one_piece() -> None:
    body = encode([b"data: %d\n\n" % i for i in range(500)])
    got, rest, _ = feed([body])
    assert got == [b"".join(b"data: %d\n\n" % i for i in range(500))]
    assert rest == b"\r\n"


def test_max_chunks_gives_the_first_chunk_alone() -> None:
    body = encode([b"first", b"second", b"third"])
    decoder = ChunkedDecoder()
    parts, used = decoder.decode(body, max_chunks=1)
    assert parts == [b"first"]
    parts, more = decoder.decode(body[used:])
    assert parts == [b"second", b"third"] and decoder.done


def test_a_chunk_cut_short_gives_what_has_come() -> None:
    decoder = ChunkedDecoder()
    parts, used = decoder.decode(b"a\r\n01234")
    assert (parts, used) == ([b"01234"], 8)
    parts, used = decoder.decode(b"56789\r")
    assert (parts, used) == ([b"56789"], 6)
    parts, used = decoder.decode(b"\n0\r\n")
    assert (parts, used, decoder.done) == ([], 4, True)


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\nabc\r\n",  # not hex
        b"3\r\nabcXY",  # no CRLF after the data
        b"3\r\nabc\rX",
        b"123456789012345678901\r\n",  # 21 digits
        b"0x3\r\nabc\r\n",
        b" 3\r\nabc\r\n",
    ],
)
def test_malformed_framing_is_refused(body: bytes) -> None:
    with pytest.raises(ChunkedError):
        feed([body])


def test_the_data_before_an_error_comes_first() -> None:
    decoder = ChunkedDecoder()
    data = b"3\r\nabc\r\nzz\r\n"
    parts, used = decoder.decode(data)
    assert (parts, used) == ([b"abc"], 8) and decoder.error is not None
    with pytest.raises(ChunkedError):
        decoder.decode(data[used:])


def test_a_size_line_without_end_is_refused() -> None:
    with pytest.raises(ChunkedError):
        ChunkedDecoder().decode(b"1" * 5000)


def h11_verdict(data: bytes) -> tuple[bytes, str]:
    """What h11's chunked reader makes of `data`: payload, and "done", "more" or "error"."""
    reader, buf, out = ChunkedReader(), ReceiveBuffer(), b""
    buf += data
    try:
        while True:
            if reader._reading_trailer:
                return out, "done"
            event = reader(buf)
            if event is None:
                return out, "done" if reader._reading_trailer else "more"
            if isinstance(event, h11.EndOfMessage):
                return out, "done"
            out += bytes(event.data)
    except h11.ProtocolError:
        # h11 reads the trailer section in the call that found the last chunk; the decoder
        # stops before it and its caller reads it with h11 (`addons._inject.MergedChunks`)
        return out, "done" if reader._reading_trailer else "error"


def our_verdict(data: bytes) -> tuple[bytes, str]:
    decoder, out = ChunkedDecoder(), b""
    try:
        while True:
            parts, used = decoder.decode(data)
            data = data[used:]
            out += b"".join(parts)
            if decoder.done:
                return out, "done"
            if not parts:
                return out, "more"
    except ChunkedError:
        return out, "error"


framing = st.lists(
    st.sampled_from(
        [b"0", b"3", b"a", b"F", b";x=1", b" ", b"\t", b"\r\n", b"\r", b"\n", b"abc", b"g"]
    ),
    max_size=25,
).map(b"".join)


@example(b"0\r\n0\r\n\r\n")  # a bad trailer line: the decoder's part ended before it
@given(framing)
def test_same_verdict_as_h11_on_any_bytes(data: bytes) -> None:
    assert our_verdict(data) == h11_verdict(data)
