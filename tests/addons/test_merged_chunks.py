"""`MergedChunks`, the body reader that hands mitmproxy's HTTP/1 layer one piece per read."""

from __future__ import annotations

import h11
import pytest
from h11._receivebuffer import ReceiveBuffer

from addons._inject import MergedChunks


def events(reader: MergedChunks, buf: ReceiveBuffer) -> list[object]:
    """What mitmproxy's `read_body` gets from one read: events until the reader says None."""
    out: list[object] = []
    while True:
        event = reader(buf)
        if event is None:
            return out
        out.append(event)
        if isinstance(event, h11.EndOfMessage):
            return out


def sse_chunks(n: int, start: int = 0) -> bytes:
    return b"".join(
        b"%x\r\n%s\r\n" % (len(e), e) for e in (b"data: %d\n\n" % i for i in range(start, n))
    )


def test_the_first_chunk_alone_then_one_piece_per_read() -> None:
    reader, buf = MergedChunks(), ReceiveBuffer()
    buf += sse_chunks(300)
    got = events(reader, buf)
    assert [bytes(e.data) for e in got] == [  # type: ignore[attr-defined]
        b"data: 0\n\n",
        b"".join(b"data: %d\n\n" % i for i in range(1, 300)),
    ]
    buf += sse_chunks(600, 300)[:-3]  # the next read ends inside a chunk's framing
    (second,) = events(reader, buf)
    buf += sse_chunks(600, 300)[-3:] + b"0\r\n\r\n"
    third, end = events(reader, buf)
    assert bytes(second.data) + bytes(third.data) == b"".join(  # type: ignore[attr-defined]
        b"data: %d\n\n" % i for i in range(300, 600)
    )
    assert isinstance(end, h11.EndOfMessage) and not buf


def test_trailers_are_read_by_h11() -> None:
    reader, buf = MergedChunks(), ReceiveBuffer()
    buf += b"3\r\nabc\r\n0\r\nx-checksum: 1\r\n\r\n"
    data, end = events(reader, buf)
    assert bytes(data.data) == b"abc"  # type: ignore[attr-defined]
    assert end.headers == [(b"x-checksum", b"1")]  # type: ignore[attr-defined]


def test_a_bad_trailer_line_is_h11s_protocol_error() -> None:
    reader, buf = MergedChunks(), ReceiveBuffer()
    buf += b"3\r\nabc\r\n0\r\n0\r\n\r\n"
    assert bytes(reader(buf).data) == b"abc"  # type: ignore[union-attr]
    with pytest.raises(h11.ProtocolError):  # what mitmproxy's HTTP/1 layer catches
        reader(buf)


def test_bad_framing_is_h11s_protocol_error_after_the_good_data() -> None:
    reader, buf = MergedChunks(), ReceiveBuffer()
    buf += b"3\r\nabc\r\n3\r\ndef\r\nnot-hex\r\n"
    first = reader(buf)
    second = reader(buf)
    assert [bytes(first.data), bytes(second.data)] == [b"abc", b"def"]  # type: ignore[union-attr]
    with pytest.raises(h11.RemoteProtocolError):
        reader(buf)


def test_a_connection_closed_mid_body_is_an_error() -> None:
    reader, buf = MergedChunks(), ReceiveBuffer()
    buf += b"3\r\nab"
    assert bytes(reader(buf).data) == b"ab"  # type: ignore[union-attr]
    with pytest.raises(h11.RemoteProtocolError):
        reader.read_eof()
