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
# The usual event, an optional `event:` line, one `data:` line and the blank line: read with one
# match each while nothing of an earlier event is pending; anything else (several data lines,
# comments, `id:`, `retry:`) goes through the line by line reader.
_SIMPLE_EVENT = re.compile(r"(?:event: ?([^\n]*)\n)?data: ?([^\n]*)\n\n")


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
        if b"\r" not in buf:  # the usual case: decoded and split once for all its lines
            cut = buf.rfind(b"\n")
            if cut < 0:
                self._partial = buf
                return out
            self._partial = buf[cut + 1 :]
            # a UTF-8 character never holds a \n byte: the complete lines decode on their own
            text = buf[: cut + 1].decode("utf-8", "replace")
            pos = 0
            if self._data or self._event is not None:
                # an event an earlier chunk began: its lines, up to the blank line that ends it
                if text[0] == "\n":
                    pos = 1
                else:
                    blank = text.find("\n\n")
                    pos = len(text) if blank < 0 else blank + 2  # none: the event goes on
                self._lines(text[: pos - 1].split("\n"), out)
            simple = _SIMPLE_EVENT.match
            while (m := simple(text, pos)) is not None:
                out.append(SSEEvent(m.group(1), m.group(2)))
                pos = m.end()
            if pos < len(text):
                self._lines(text[pos:-1].split("\n"), out)
            return out
        pos = 0
        lines: list[str] = []
        for match in _LINE_END.finditer(buf):
            end = match.end()
            if match.group() == b"\r" and end == len(buf):
                self._skip_lf = True  # the \n of a \r\n may come in the next chunk
            lines.append(buf[pos : match.start()].decode("utf-8", "replace"))
            pos = end
        self._partial = buf[pos:]
        self._lines(lines, out)
        return out

    def close(self) -> list[SSEEvent]:
        """End of stream: a last event not followed by a blank line is still delivered."""
        out: list[SSEEvent] = []
        lines = [self._partial.decode("utf-8", "replace")] if self._partial else []
        self._partial = b""
        self._lines([*lines, ""], out)
        return out

    def _lines(self, lines: list[str], out: list[SSEEvent]) -> None:
        event, data = self._event, self._data
        for line in lines:
            if not line:  # a blank line ends the event
                if data:
                    out.append(SSEEvent(event, data[0] if len(data) == 1 else "\n".join(data)))
                    data = []
                elif event is not None:
                    out.append(SSEEvent(event, ""))
                event = None
            elif line.startswith("data:"):
                data.append(line[6:] if line[5:6] == " " else line[5:])
            elif line[0] != ":":  # not a comment
                name, sep, value = line.partition(":")
                if sep and value[:1] == " ":
                    value = value[1:]
                if name == "data":
                    data.append(value)
                elif name == "event":
                    event = value
        self._event, self._data = event, data
