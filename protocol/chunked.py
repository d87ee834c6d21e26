"""HTTP/1.1 chunked transfer coding (RFC 9112, 7.1), decoded incrementally in large pieces.

`ChunkedDecoder.decode` takes whatever bytes of a chunked body have arrived and returns the
payload of every chunk in them at once (a chunk cut short by the end of the bytes gives what
it has so far), and how far it got; the caller keeps the rest for the next call. Every LLM API
sends each SSE event as its own chunk, so a fast stream is thousands of tiny chunks: decoded
here one network read at a time, not one chunk at a time.

The framing is checked as strictly as h11 checks it: a size line of 1-20 hex digits, optional
extensions and trailing blanks, CRLF; CRLF after each chunk's data. The last chunk (size 0)
sets `done` and stops before the trailer section, which the caller reads.
"""

from __future__ import annotations

import re

_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;.*)?[ \t]*")
# the usual size line, CRLF included: one match instead of a search and a match
_SIZE_HEAD = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;[^\r\n]*)?[ \t]*\r\n")
_CRLF = b"\r\n"
MAX_SIZE_LINE = 4096  # bytes of a size line with no end in sight: not a chunked body


class ChunkedError(ValueError):
    """The body is not valid chunked coding."""


class ChunkedDecoder:
    __slots__ = ("_left", "_crlf", "done", "error")

    def __init__(self) -> None:
        self._left = 0  # payload bytes of the current chunk still to come
        self._crlf = 0  # bytes of the CRLF after a chunk's data still to come (0-2)
        self.done = False  # the last chunk was read; the trailer section follows
        self.error: ChunkedError | None = None

    def decode(self, data: bytes, max_chunks: int = 0) -> tuple[list[bytes], int]:
        """The payload pieces in `data` and the offset where decoding stopped.

        Stops at the end of `data`, after the last chunk's size line (`done`), after
        `max_chunks` whole chunks when that is not 0, or before a malformed part (`error` is
        set; the pieces before it are returned, and it is raised by the next call that would
        return nothing).
        """
        if self.error is not None and not data:
            raise self.error
        parts: list[bytes] = []
        pos, end = 0, len(data)
        left, crlf, chunks = self._left, self._crlf, 0
        while pos < end and not self.done:
            if left:
                take = min(left, end - pos)
                parts.append(data[pos : pos + take])
                pos += take
                left -= take
                if left:
                    break
                crlf = 2
                chunks += 1
                if chunks == max_chunks:
                    break
            elif crlf:
                got = data[pos : pos + crlf]
                if got != _CRLF[2 - crlf : 2 - crlf + len(got)]:
                    self.error = ChunkedError(f"malformed chunk footer: {got!r}")
                    break
                pos += len(got)
                crlf -= len(got)
            else:
                head = _SIZE_HEAD.match(data, pos)
                if head is not None:
                    pos, size = head.end(), int(head.group(1), 16)
                else:  # a size line not complete yet, or not well formed
                    line_end = data.find(_CRLF, pos)
                    if line_end < 0:
                        if end - pos > MAX_SIZE_LINE:
                            self.error = ChunkedError("chunk size line too long")
                        break
                    match = _SIZE_LINE.fullmatch(data, pos, line_end)
                    if match is None:
                        self.error = ChunkedError(
                            f"illegal chunk header: {data[pos:line_end][:100]!r}"
                        )
                        break
                    pos, size = line_end + 2, int(match.group(1), 16)
                if not size:
                    self.done = True
                    break
                stop = pos + size
                if data[stop : stop + 2] == _CRLF:  # the usual case: the whole chunk is here
                    parts.append(data[pos:stop])
                    pos = stop + 2
                    chunks += 1
                    if chunks == max_chunks:
                        break
                else:
                    left = size
        self._left, self._crlf = left, crlf
        if not parts and self.error is not None:
            raise self.error
        return parts, pos
