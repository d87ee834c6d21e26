"""Server-sent events: an incremental decoder that holds for any split of the bytes.

`SSEDecoder.feed(chunk)` takes bytes split anywhere (mid-line, mid-event, inside a multi-byte
UTF-8 character, between the `\\r` and `\\n` of a line end) and returns the complete events seen
so far. Work per call is proportional to the chunk: only the unfinished last line is kept.
Each protocol's stream encoder writes its own event bytes (precomputed prefixes, per chunk).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: str


class SSEDecoder:
    __slots__ = ("_partial", "_skip_lf", "_event", "_data")

    def __init__(self) -> None:
        self._partial = b""
        self._skip_lf = False
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buf = self._partial + chunk if self._partial else chunk
        out: list[SSEEvent] = []
        if b"\r" not in buf:
            lines = buf.split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                self._line(line, out)
            return out
        pos = 0
        for match in _LINE_END.finditer(buf):
            end = match.end()
            if match.group() == b"\r" and end == len(buf):
                self._skip_lf = True  # the \n of a \r\n may come in the next chunk
            self._line(buf[pos : match.start()], out)
            pos = end
        self._partial = buf[pos:]
        return out

    def close(self) -> list[SSEEvent]:
        """End of stream: a last event not followed by a blank line is still delivered."""
        out: list[SSEEvent] = []
        if self._partial:
            self._line(self._partial, out)
            self._partial = b""
        self._line(b"", out)
        return out

    def _line(self, raw: bytes, out: list[SSEEvent]) -> None:
        if not raw:
            if self._data or self._event is not None:
                out.append(SSEEvent(self._event, "\n".join(self._data)))
            self._event, self._data = None, []
            return
        line = raw.decode("utf-8", "replace")
        if line[0] == ":":
            return
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value

