"""The in-chat command syntax: finding `!/name(args)` in a user message, and removing it.

This module owns the grammar only: what a command looks like, where in a message one may
appear, and how the message reads once the commands are taken out. What each command does is
`protocol.command_handlers`; the state it acts on is `protocol.sessions`.

Grammar: `PREFIXname` or `PREFIXname(arg, key=value, ...)`. Names match `[A-Za-z][A-Za-z0-9_-]*`
and are normalised (lower case, `_` -> `-`), keys likewise. A value is either bare (trimmed,
runs to the next `,` or `)` outside balanced parentheses; quote characters inside it are
literal) or begins with `"` or `'` and then holds anything up to the matching quote, where `\\`
escapes the quote character or a backslash (other backslashes stay as typed, so Windows paths
survive). An occurrence whose parenthesis never closes (or whose arguments exceed
`MAX_ARGS_CHARS`) is not a command and is left as text; the work spent on such occurrences is
bounded linearly in the text's length.

Never a command: text inside fenced code blocks (``` or ~~~, CommonMark rules, an unclosed
fence runs to the end), inside inline code spans (a backtick run closed by the next run of the
same length within the paragraph), and on quoted lines (first non-blank character `>`).
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass

DEFAULT_PREFIX = "!/"
MAX_ARGS_CHARS = 4000  # a longer argument list is not a command (bounds the work per occurrence)
_BUDGET_BASE = 50_000  # characters that failed argument scans may read in one text ...
_BUDGET_PER_CHAR = 4  # ... plus this many per character of the text

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_KEY = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)\s*=")
_FENCE_OPEN = re.compile(r"[ \t]*(`{3,}|~{3,})([^\n]*)")
_FENCE_CLOSE = re.compile(r"[ \t]*(`{3,}|~{3,})[ \t]*\r?")
_TICKS = re.compile(r"`+")
_QUOTES = "\"'"

Span = tuple[int, int]
Args = tuple[tuple[str, ...], tuple[tuple[str, str], ...]]


def normalise_name(name: str) -> str:
    """A command or key name as compared: lower case, `_` read as `-`."""
    return name.lower().replace("_", "-")


def valid_prefix(prefix: str) -> bool:
    """A prefix is 2 to 10 printable characters, none of them whitespace."""
    return (
        isinstance(prefix, str)
        and 2 <= len(prefix) <= 10
        and prefix.isprintable()
        and not any(c.isspace() for c in prefix)
    )


@dataclass(frozen=True)
class Command:
    """One command found in a text: normalised name and arguments, and where it was."""

    name: str
    args: tuple[str, ...]
    kwargs: tuple[tuple[str, str], ...]
    start: int
    end: int
    raw: str

    def kwarg(self, key: str) -> str | None:
        """The value given for `key` (any case, `_` or `-`); the last one when repeated."""
        wanted = normalise_name(key)
        found = None
        for k, v in self.kwargs:
            if k == wanted:
                found = v
        return found


# ------------------------------------------------------------------------------------------------
# Where commands may not be: fences, inline code, quoted lines.
# ------------------------------------------------------------------------------------------------


def _lines(text: str) -> Iterator[Span]:
    """(start, end) of each line's content, the newline excluded."""
    start = 0
    while True:
        nl = text.find("\n", start)
        if nl < 0:
            yield start, len(text)
            return
        yield start, nl
        start = nl + 1


def _fence_opening(line: str) -> tuple[str, int] | None:
    match = _FENCE_OPEN.fullmatch(line)
    if match is None:
        return None
    run = match[1]
    if run[0] == "`" and "`" in match[2]:
        return None  # ```code``` on one line is inline code, not a fence
    return run[0], len(run)


def _closes_fence(line: str, fence: tuple[str, int]) -> bool:
    match = _FENCE_CLOSE.fullmatch(line)
    return match is not None and match[1][0] == fence[0] and len(match[1]) >= fence[1]


def _code_spans(text: str, start: int, end: int) -> list[Span]:
    """Inline code spans in text[start:end]: a run of n backticks up to the next run of n."""
    runs = [(m.start(), m.end()) for m in _TICKS.finditer(text, start, end)]
    by_length: dict[int, list[int]] = {}
    for index, (a, b) in enumerate(runs):
        by_length.setdefault(b - a, []).append(index)
    spans: list[Span] = []
    i = 0
    while i < len(runs):
        a, b = runs[i]
        same = by_length[b - a]
        k = bisect_right(same, i)
        if k < len(same):
            j = same[k]
            spans.append((a, runs[j][1]))
            i = j + 1
        else:
            i += 1
    return spans


def excluded_spans(text: str) -> list[Span]:
    """Sorted, disjoint spans of `text` where no command is recognised."""
    spans: list[Span] = []
    fence: tuple[str, int] | None = None
    para: Span | None = None  # the paragraph being collected (inline code stays within one)

    def flush() -> None:
        nonlocal para
        if para is not None:
            spans.extend(_code_spans(text, *para))
            para = None

    for start, end in _lines(text):
        line = text[start:end]
        if fence is not None:
            spans.append((start, end))
            if _closes_fence(line, fence):
                fence = None
            continue
        opening = _fence_opening(line)
        if opening is not None or line.lstrip().startswith(">"):
            flush()
            fence = opening
            spans.append((start, end))
        elif not line.strip():
            flush()
        else:
            para = (para[0] if para else start, end)
    flush()
    return spans


class _Excluded:
    """Overlap queries against sorted, disjoint spans."""

    def __init__(self, spans: list[Span]) -> None:
        self.spans = [(a, b) for a, b in spans if b > a]
        self.starts = [a for a, _ in self.spans]

    def hit(self, start: int, end: int) -> Span | None:
        """The last span overlapping [start, end) (end > start), or None."""
        k = bisect_left(self.starts, end)
        if k and self.spans[k - 1][1] > start:
            return self.spans[k - 1]
        return None


# ------------------------------------------------------------------------------------------------
# One occurrence: name and arguments.
# ------------------------------------------------------------------------------------------------


def _skip_space(text: str, i: int, limit: int) -> int:
    while i < limit and text[i].isspace():
        i += 1
    return i


def _read_quoted(text: str, i: int, limit: int) -> tuple[str, int] | None:
    """The quoted string opening at text[i]; None when it never closes."""
    quote = text[i]
    out: list[str] = []
    i += 1
    while i < limit:
        c = text[i]
        if c == "\\" and i + 1 < limit and text[i + 1] in (quote, "\\"):
            out.append(text[i + 1])
            i += 2
        elif c == quote:
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    return None


def _read_bare(text: str, i: int, limit: int) -> int | None:
    """The index of the `,` or `)` ending a bare value (parentheses may nest); None if none."""
    depth = 0
    while i < limit:
        c = text[i]
        if c == "(":
            depth += 1
        elif c == ")":
            if depth == 0:
                return i
            depth -= 1
        elif c == "," and depth == 0:
            return i
        i += 1
    return None


def _read_value(text: str, i: int, limit: int) -> tuple[str, bool, int] | None:
    """(value, was quoted, index of the delimiter after it) or None when unterminated."""
    i = _skip_space(text, i, limit)
    head, quoted = "", False
    if i < limit and text[i] in _QUOTES:
        got = _read_quoted(text, i, limit)
        if got is None:
            return None
        head, i = got
        quoted = True
    stop = _read_bare(text, i, limit)
    if stop is None:
        return None
    return head + text[i:stop].strip(), quoted, stop


def _read_args(text: str, i: int, limit: int) -> tuple[Args, int] | None:
    """Arguments from just after `(` up to `limit`: (args, index after `)`) or None."""
    args: list[str] = []
    kwargs: list[tuple[str, str]] = []
    i = _skip_space(text, i, limit)
    if i < limit and text[i] == ")":
        return ((), ()), i + 1
    while True:
        i = _skip_space(text, i, limit)
        key_match = _KEY.match(text, i, limit)
        if key_match:
            i = key_match.end()
        got = _read_value(text, i, limit)
        if got is None:
            return None
        value, quoted, i = got
        if key_match:
            kwargs.append((normalise_name(key_match[1]), value))
        elif value or quoted:
            args.append(value)
        if text[i] == ")":
            return (tuple(args), tuple(kwargs)), i + 1
        i += 1  # past the comma


class _Scanner:
    """Reads the occurrences of a prefix in one text.

    Failed argument scans (an unclosed parenthesis reads up to its limit) draw on a budget
    linear in the text's length, so no text makes parsing quadratic: once it is spent, an
    occurrence with an argument list is no longer read as a command.
    """

    def __init__(self, text: str, prefix: str) -> None:
        self.text = text
        self.prefix = prefix
        self.budget = _BUDGET_BASE + _BUDGET_PER_CHAR * len(text)

    def command_at(self, start: int) -> Command | None:
        text = self.text
        name_match = _NAME.match(text, start + len(self.prefix))
        if name_match is None:
            return None
        end = name_match.end()
        args: Args = ((), ())
        if end < len(text) and text[end] == "(":
            if self.budget <= 0:
                return None
            limit = min(len(text), end + 1 + min(MAX_ARGS_CHARS, self.budget))
            got = _read_args(text, end + 1, limit)
            if got is None:
                self.budget -= limit - (end + 1)
                return None
            args, end = got
        name = normalise_name(name_match.group())
        return Command(name, args[0], args[1], start, end, text[start:end])


# ------------------------------------------------------------------------------------------------
# Public: parse and strip.
# ------------------------------------------------------------------------------------------------


def parse_commands(text: str, prefix: str = DEFAULT_PREFIX) -> list[Command]:
    """Every command in `text`, in order. Never raises for any text (ValueError: bad prefix)."""
    if not valid_prefix(prefix):
        raise ValueError(f"invalid command prefix {prefix!r}: 2-10 printable non-space characters")
    if prefix not in text:
        return []
    excluded = _Excluded(excluded_spans(text))
    scanner = _Scanner(text, prefix)
    found: list[Command] = []
    pos = text.find(prefix)
    while pos >= 0:
        span = excluded.hit(pos, pos + len(prefix))
        if span is not None and span[0] <= pos:
            pos = text.find(prefix, max(span[1], pos + 1))
            continue
        command = scanner.command_at(pos)
        if command is not None and excluded.hit(command.start, command.end) is None:
            found.append(command)
            pos = text.find(prefix, command.end)
        else:
            pos = text.find(prefix, pos + 1)
    return found


def _newline_of(space: str) -> str:
    return "\r\n" if "\r\n" in space else "\n"


def _join_gap(segments: list[str]) -> str:
    """The whitespace that replaces a gap between two texts once the commands in it are gone.

    `segments` is the whitespace around the removed commands (one more than the commands).
    Mid-line: one space. Across lines: one newline, or one blank line when the gap held a
    blank line that was not a command's line; the indentation of the line that keeps text stays.
    """
    gap = "".join(segments)
    if "\n" not in gap:
        return " " if gap else ""
    blank = any(seg.count("\n") > 1 for seg in segments)
    last = next(seg for seg in reversed(segments) if "\n" in seg)
    indent = last[last.rfind("\n") + 1 :]
    newline = _newline_of(gap)
    return (newline * 2 if blank else newline) + indent


def _pieces(text: str, commands: list[Command]) -> list[str]:
    """The text between the commands (overlapping or out-of-range commands are skipped)."""
    pieces: list[str] = []
    prev = 0
    for command in sorted(commands, key=lambda c: c.start):
        if command.start < prev or command.end > len(text) or command.end < command.start:
            continue
        pieces.append(text[prev : command.start])
        prev = command.end
    pieces.append(text[prev:])
    return pieces


def strip_commands(text: str, commands: list[Command]) -> str:
    """`text` without the commands' spans, whitespace tidied where they were, then stripped.

    With no commands the text is returned as it is. Otherwise everything but the whitespace
    around a removed command (and at both ends) is kept byte for byte.
    """
    if not commands:
        return text
    out: list[str] = []
    segments: list[str] = [""]
    for index, piece in enumerate(_pieces(text, commands)):
        if index:
            segments.append("")  # a command was removed here
        body_start = len(piece) - len(piece.lstrip())
        if body_start == len(piece):
            segments[-1] += piece
            continue
        body_end = len(piece.rstrip())
        segments[-1] += piece[:body_start]
        if out:
            out.append(_join_gap(segments))
        out.append(piece[body_start:body_end])
        segments = [piece[body_end:]]
    return "".join(out)
