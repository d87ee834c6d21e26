"""Loop detection: halting an answer whose model repeats itself, and tool calls that go round.

Owns:
- `LoopSettings` and `LoopDetector`: finds a block of text repeated back to back in a stream of
  canonical text (never SSE or JSON framing), at amortised constant work per character;
- `LoopStage`: the stream-pipeline stage that runs one detector per block kind (text,
  thinking) and, on a loop, ends the answer cleanly with a note and `Finish("loop_halted")`;
- `check_response`: the same check for a whole (non-streamed) answer;
- `ToolLoopSettings` and `ToolLoopTracker`: the same tool called with the same arguments over
  and over in one session, with the texts the client gets (`tool_loop_message`,
  `tool_loop_warning`).

How the detector works. A block of `p` characters said `n` times back to back is a stretch of
text where each character equals the one `p` before it, `(n - 1) * p` characters long (plus the
first copy). Every `_ANCHOR` characters (a checkpoint), the last `_ANCHOR` characters are
searched (`str.rfind`, in C) in the `max_pattern_length` characters before them; each distance
at which they recur is a candidate period, kept when one slice comparison shows its run is
already a few dozen characters long, and then measured backwards once. From there each live
candidate is carried forward by one slice comparison per step and dropped at its first
mismatch. A long repetition of a unit that is not words ("null, null, ...") would keep every
multiple of its unit alive as a candidate: it is noted once as a zone instead, and those
multiples are skipped while it lasts. So the work per character is constant (the search window
per checkpoint, plus the few live candidates) whatever the length of the stream and whatever
it holds, and the text kept is bounded by `buffer_size`. A run is always picked up before it
reaches the threshold, so where the threshold is reached does not depend on how the text was
split into chunks; the one exception is a block whose letters are more than `_ANCHOR`
characters apart (checkpoints whose anchor has no letter are skipped), which can be cut later.

What counts as a loop. The block is the shortest unit of the repetition, taken whole as many
times as needed to reach `min_pattern_length` characters (so "Try again. " x50 is reported as
"Try again. Try again. Try again. " with the default 32). The unit must hold at least
`min_unit_words` different words (runs of letters, read round the unit): separators ("-----",
"|---|"), whitespace, digits ("0, 0, 0, "), hex fills ("0x00, ") and one word again and again
("null, null, ") never count, which keeps zero matrices, sparse JSON arrays and table rules
from tripping. The note shows the block turned to start a line, sentence or word.

Default tuning, on tests/data/loops/ (README there): a block of 32 to 1,000 characters said 3
times, with 2 different words in its unit. Measured: 2 repetitions trips on a refrain sung
twice, two identical assert lines and a `false, ...` run; 4 misses a long paragraph said three
times. With 3, a minimum of 16 characters or less trips on a table row whose cell repeats
("| at-least-once   " five times); 20 to 56 (the largest tried) pass the whole corpus; 32 is
taken for margin (a short phrase or code line then needs 6 copies, a sentence or long line 3).
A maximum of 500 misses the 644-character paragraph. One word per unit is not enough: all-zero
C table rows (`{0x00, ...},`) and runs of `null` trip. The buffer (4,096) holds three blocks of
the longest length. `bench/loops.py` measures the throughput.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

from protocol.canonical import (
    BlockStop,
    ChatResponse,
    Event,
    Finish,
    Start,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolArgsDelta,
    ToolCallStart,
    Usage,
)
from protocol.env import env_bool

logger = logging.getLogger(__name__)

_ANCHOR = 24  # characters searched for at each checkpoint (fewer when min_pattern_length is)
_WORD = re.compile(r"[^\W\d_]+")  # a run of letters
_LETTER = re.compile(r"[^\W\d_]")
_NON_LETTER = re.compile(r"[\W\d_]")


# ----------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------


def _env_int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw[:40]!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _env_float(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw[:40]!r}") from None
    if not value >= minimum or value == float("inf"):
        raise ValueError(f"{name} must be a finite number of at least {minimum}, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class LoopSettings:
    """Text loop detection. A loop is a block of `min_pattern_length`..`max_pattern_length`
    characters said `min_repetitions` times back to back; `buffer_size` characters of recent
    text are kept (at least `max_pattern_length * min_repetitions`). `min_unit_words` is the
    number of different words the repeated unit must hold (not read from the environment).
    The defaults are tuned on tests/data/loops/ (module docstring)."""

    enabled: bool = True
    min_pattern_length: int = 32
    max_pattern_length: int = 1000
    min_repetitions: int = 3
    buffer_size: int = 4096
    min_unit_words: int = 2

    def __post_init__(self) -> None:
        if self.min_pattern_length < 1:
            raise ValueError("min_pattern_length must be at least 1")
        if self.max_pattern_length < self.min_pattern_length:
            raise ValueError("max_pattern_length must be at least min_pattern_length")
        if self.min_repetitions < 2:
            raise ValueError("min_repetitions must be at least 2")
        if self.buffer_size < self.max_pattern_length * self.min_repetitions:
            raise ValueError(
                "buffer_size must be at least max_pattern_length * min_repetitions "
                f"({self.max_pattern_length * self.min_repetitions})"
            )
        if self.min_unit_words < 1:
            raise ValueError("min_unit_words must be at least 1")

    @property
    def shortest_loop(self) -> int:
        """Characters of the shortest text that can hold a loop (`min_repetitions` blocks of
        `min_pattern_length`): a shorter text is never read."""
        return self.min_repetitions * self.min_pattern_length

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LoopSettings:
        """Settings from LOOP_DETECTION_* variables; missing or empty ones keep the default.
        A bad value raises ValueError naming the variable."""
        d = cls()
        min_len = _env_int(env, "LOOP_DETECTION_MIN_PATTERN_LENGTH", d.min_pattern_length, 1)
        max_len = _env_int(env, "LOOP_DETECTION_MAX_PATTERN_LENGTH", d.max_pattern_length, 1)
        reps = _env_int(env, "LOOP_DETECTION_MIN_REPETITIONS", d.min_repetitions, 2)
        buffer = _env_int(env, "LOOP_DETECTION_BUFFER_SIZE", d.buffer_size, 1)
        if max_len < min_len:
            raise ValueError(
                f"LOOP_DETECTION_MAX_PATTERN_LENGTH ({max_len}) must be at least "
                f"LOOP_DETECTION_MIN_PATTERN_LENGTH ({min_len})"
            )
        if buffer < max_len * reps:
            raise ValueError(
                f"LOOP_DETECTION_BUFFER_SIZE ({buffer}) must be at least "
                "LOOP_DETECTION_MAX_PATTERN_LENGTH * LOOP_DETECTION_MIN_REPETITIONS "
                f"({max_len * reps})"
            )
        return cls(
            enabled=env_bool(env, "LOOP_DETECTION_ENABLED", d.enabled),
            min_pattern_length=min_len,
            max_pattern_length=max_len,
            min_repetitions=reps,
            buffer_size=buffer,
        )


# ----------------------------------------------------------------------------------------------
# The detector
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoopMatch:
    """A loop: `block` said `repetitions` times back to back; the threshold was reached at
    `offset_in_chunk` in the text last fed (cut that text there to keep what came before)."""

    block: str
    repetitions: int
    offset_in_chunk: int


def _unit(block: str) -> str:
    """The shortest string that `block` is a whole number of copies of."""
    size = len(block)
    for q in range(1, size // 2 + 1):
        if size % q == 0 and block[q:] == block[:-q]:
            return block[:q]
    return block


def _is_wordy(block: str, min_words: int) -> bool:
    """Whether the unit `block` repeats holds `min_words` different words. The unit is cyclic:
    it is read from a non-letter so that no word is cut in two."""
    unit = _unit(block)
    gap = _NON_LETTER.search(unit)
    if gap is None:
        return min_words <= 1  # all letters: one word going round
    k = gap.start()
    unit = unit[k:] + unit[:k]
    return len({w.lower() for w in _WORD.findall(unit)}) >= min_words


def _readable(block: str, before: str) -> str:
    """The block as the note shows it. Any rotation of a repeated block repeats the same way,
    and the first copy may begin a few characters early (the text before the loop can end like
    the block does): when the first copy does not start a word (`before` is the character in
    front of it), it is turned to start a line, else a sentence, else a word."""
    if not block[0].isspace() and (not before or before.isspace()):
        return block
    size = len(block)
    for boundary in ("\n", ". ", " "):
        k = block.find(boundary)
        if k >= 0:
            k += len(boundary)
            while k < size and block[k].isspace():
                k += 1
            k %= size
            return block[k:] + block[:k]
    return block


def _first_mismatch(buf: str, i: int, j: int, p: int) -> int:
    """The first k in [i, j) with buf[k] != buf[k - p]; one is known to exist."""
    lo, hi = 0, j - i  # a prefix of `lo` characters matches, one of `hi` does not
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if buf[i - p : i - p + mid] == buf[i : i + mid]:
            lo = mid
        else:
            hi = mid
    return i + lo


def _run_start(buf: str, end: int, p: int, known: int) -> int:
    """The start of the run of positions k < end with buf[k] == buf[k - p], whose last `known`
    positions are known to match (the run cannot start before p)."""
    y = end - known
    block = max(p, 64)
    while y > p:
        x = max(p, y - block)
        if buf[x - p : y - p] == buf[x:y]:
            y = x
            block <<= 1
            continue
        lo, hi = x, y  # the suffix from `hi` matches, the one from `lo` does not
        while hi - lo > 1:
            mid = (lo + hi) >> 1
            if buf[mid - p : y - p] == buf[mid:y]:
                hi = mid
            else:
                lo = mid
        return hi
    return y


class LoopDetector:
    """Feeds on text as it streams and says when a block starts repeating itself.

    `feed(text)` returns a `LoopMatch` the first time a block has been said
    `min_repetitions` times back to back (the detector then starts afresh), else None.
    """

    __slots__ = (
        "settings",
        "_buf",
        "_base",
        "_runs",
        "_rejected",
        "_next_check",
        "_anchor",
        "_stride",
        "_probe",
        "_keep",
        "_zone_q",
        "_zone_start",
        "_carried",
    )

    def __init__(self, settings: LoopSettings | None = None) -> None:
        self.settings = settings or LoopSettings()
        s = self.settings
        # A run that reaches the threshold is at least `shortest` characters long then. It is
        # picked up in time when some checkpoint sees it between `_probe` and `shortest`
        # characters long: a recurrence of the anchor becomes a candidate only when its run is
        # `_probe` long (one slice comparison; shorter ones are found again at the next
        # checkpoints if they go on), and checkpoints are `_stride` apart.
        shortest = (s.min_repetitions - 1) * s.min_pattern_length
        self._anchor = max(1, min(_ANCHOR, (shortest + 1) // 2))
        self._stride = self._anchor
        self._probe = max(self._anchor, min(2 * self._anchor, shortest + 1 - self._stride))
        self._keep = s.buffer_size
        self._runs: dict[int, int] = {}
        self._rejected: set[int] = set()
        self.reset()

    def reset(self) -> None:
        """Forget all text seen."""
        self._buf = ""  # the newest text: between buffer_size and twice that many characters
        self._base = 0  # the position in the whole stream of _buf[0]
        self._runs = {}  # live candidate period -> stream position where its run started
        self._rejected = set()  # live candidates whose block is not words (never a loop)
        self._next_check = self._stride
        # A zone: the text from _zone_start on repeats a unit of _zone_q characters that is not
        # words ("null, null, ..."). Every multiple of _zone_q would be a candidate set aside;
        # they are skipped while the zone lasts, so that a long such run costs no more than text.
        self._zone_q = 0
        self._zone_start = 0
        self._carried = 0  # the stream position up to which the zone has been carried

    def feed(self, text: str) -> LoopMatch | None:
        if not text or not self.settings.enabled:
            return None
        buf = self._buf
        self._buf = ""  # one reference left: the += below extends in place
        start = self._base + len(buf)
        buf += text
        self._buf = buf
        end = start + len(text)
        if end < self._next_check and not self._runs:
            return None  # nothing to carry now (a zone is carried at the next checkpoint)
        pos = self._carried if self._zone_q and not self._runs and self._carried < start else start
        match: LoopMatch | None = None
        while pos < end:
            stop = min(end, self._next_check)
            if self._runs or self._zone_q:
                match = self._extend(pos, stop, start)
                if match is not None:
                    break
            pos = stop
            if stop == self._next_check:
                self._next_check += self._stride
                match = self._discover(stop, start)
                if match is not None:
                    break
        if match is not None:
            self.reset()
            return match
        self._carried = end
        if len(buf) > 2 * self._keep:
            cut = len(buf) - self._keep
            self._buf = buf[cut:]
            self._base += cut
        return None

    def _extend(self, lo: int, hi: int, chunk_start: int) -> LoopMatch | None:
        """Carry the live candidates over the stream positions [lo, hi)."""
        buf, base = self._buf, self._base
        i, j = lo - base, hi - base
        zq = self._zone_q
        if zq and buf[i - zq : j - zq] != buf[i:j]:
            self._zone_q = 0
        need_reps = self.settings.min_repetitions - 1
        reached_at: list[tuple[int, int, int]] = []  # (threshold position, period, run start)
        for p, run_start in list(self._runs.items()):
            if buf[i - p : j - p] == buf[i:j]:
                good = hi
            else:
                good = _first_mismatch(buf, i, j, p) + base
                del self._runs[p]
                if p in self._rejected:
                    self._rejected.discard(p)
                    continue
            if p not in self._rejected:
                reached = run_start + need_reps * p
                if reached <= good:
                    reached_at.append((max(reached, lo), p, run_start))
        return self._confirm(reached_at, hi, chunk_start) if reached_at else None

    def _discover(self, t: int, chunk_start: int) -> LoopMatch | None:
        """Checkpoint at stream position t: new candidate periods from the recent anchor."""
        s = self.settings
        buf, base = self._buf, self._base
        rt = t - base
        a = self._anchor
        if rt < a + s.min_pattern_length:
            return None
        anchor = buf[rt - a : rt]
        if _LETTER.search(anchor) is None:
            return None
        runs = self._runs
        probe = self._probe
        need_reps = s.min_repetitions - 1
        lo = max(0, rt - a - s.max_pattern_length)
        end = rt - s.min_pattern_length
        zq, zs = self._zone_q, self._zone_start - base
        if zq and zs > rt - a:
            zq = 0  # the anchor is not inside the zone
        if zq and a >= zq:
            # inside the zone the anchor recurs only at multiples of the unit: all skipped
            end = min(end, zs + a - 1)
        reached_at: list[tuple[int, int, int]] = []
        while True:
            k = buf.rfind(anchor, lo, end)
            if k < 0:
                break
            end = k + a - 1
            p = rt - a - k
            if p in runs or (zq and k >= zs and p % zq == 0):
                continue
            if probe <= rt - p and buf[rt - p - probe : rt - p] != buf[rt - probe : rt]:
                continue
            run_start = _run_start(buf, rt, p, a) + base
            runs[p] = run_start
            reached = run_start + need_reps * p
            if reached <= t:  # found late (anchors without letters were skipped)
                reached_at.append((max(reached, chunk_start), p, run_start))
        return self._confirm(reached_at, t, chunk_start) if reached_at else None

    def _confirm(
        self, reached_at: list[tuple[int, int, int]], now: int, chunk_start: int
    ) -> LoopMatch | None:
        """The earliest of these candidates whose block is words, as a match; the others, not
        words, are set aside until their run breaks (`now`: the stream position reached)."""
        for at, p, run_start in sorted(reached_at):
            r = run_start - self._base
            block = self._buf[r - p : r]  # the first copy
            if _is_wordy(block, self.settings.min_unit_words):
                reps = (at - run_start) // p + 1
                before = self._buf[r - p - 1] if r > p else ""
                return LoopMatch(_readable(block, before), reps, at - chunk_start)
            if p not in self._runs:  # its run has just broken
                continue
            self._rejected.add(p)
            q = len(_unit(block))
            if q < p:
                self._open_zone(q, run_start - p, now)
        return None

    def _open_zone(self, q: int, start: int, now: int) -> None:
        """The text from `start` to `now` repeats a unit of q characters that is not words:
        find where that repetition began, and drop the candidates it already implies."""
        base = self._base
        q_start = _run_start(self._buf, now - base, q, now - start - q)
        if q_start > q:
            zone_start = q_start - q + base
        elif base == 0:
            zone_start = 0  # it began with the stream itself
        else:
            return  # it began before the buffer: where exactly is unknown, no zone
        self._zone_q, self._zone_start = q, zone_start
        runs = self._runs
        for p in [p for p, st in runs.items() if p % q == 0 and st >= zone_start + p]:
            del runs[p]
            self._rejected.discard(p)


# ----------------------------------------------------------------------------------------------
# The stream stage and the whole-answer check
# ----------------------------------------------------------------------------------------------


def note_text(match: LoopMatch) -> str:
    """The note that ends a halted answer (without the blank line put before it)."""
    shown = match.block[:40].replace("\r", "\\r").replace("\n", "\\n")
    return f'[loop detected: "{shown}" repeated {match.repetitions} times; response halted]'


class LoopStage:
    """Pipeline stage: watches text and thinking deltas and halts the answer on a loop.

    Until a loop, `feed` returns `[event]`. On a loop in a delta it returns the part of the
    delta before the loop's threshold, a BlockStop for each open block, the note as a text
    block of its own, and `Finish("loop_halted")`; `halted` and `match` are set, `on_halt` is
    called, and everything after is swallowed.
    """

    __slots__ = (
        "settings",
        "on_halt",
        "halted",
        "match",
        "_text",
        "_thinking",
        "_open",
        "_max_index",
        "_usage",
    )

    def __init__(
        self,
        settings: LoopSettings | None = None,
        on_halt: Callable[[LoopMatch], None] | None = None,
    ) -> None:
        self.settings = settings or LoopSettings()
        self.on_halt = on_halt
        self.halted = False
        self.match: LoopMatch | None = None
        self._text: LoopDetector | None = None  # made at the first delta of each kind
        self._thinking: LoopDetector | None = None
        self._open: set[int] = set()  # blocks started and not stopped, in the output
        self._max_index = -1
        self._usage: Usage | None = None

    def feed(self, event: Event) -> list[Event]:
        if self.halted:
            return []
        if isinstance(event, TextDelta):
            detector = self._text
            if detector is None:
                detector = self._text = LoopDetector(self.settings)
        elif isinstance(event, ThinkingDelta) and not event.redacted:
            detector = self._thinking
            if detector is None:
                detector = self._thinking = LoopDetector(self.settings)
        else:
            self._note(event)
            return [event]
        index = event.index
        if index > self._max_index:
            self._max_index = index
        match = detector.feed(event.text)
        if match is None:
            self._open.add(index)
            return [event]
        return self._halt(event, match)

    def close(self) -> list[Event]:
        return []

    def _note(self, event: Event) -> None:
        if isinstance(event, BlockStop):
            self._open.discard(event.index)
        elif isinstance(event, ToolCallStart | ToolArgsDelta | ThinkingDelta):
            self._open.add(event.index)
        elif isinstance(event, Start | Finish):
            if event.usage is not None:
                self._usage = (
                    event.usage if self._usage is None else self._usage.merged(event.usage)
                )
            return
        else:
            return
        if event.index > self._max_index:
            self._max_index = event.index

    def _halt(self, event: TextDelta | ThinkingDelta, match: LoopMatch) -> list[Event]:
        out: list[Event] = []
        if match.offset_in_chunk > 0:
            out.append(replace(event, text=event.text[: match.offset_in_chunk]))
            self._open.add(event.index)
        out.extend(BlockStop(i) for i in sorted(self._open))
        self._open.clear()
        note_index = self._max_index + 1
        out.append(TextDelta(note_index, "\n\n" + note_text(match)))
        out.append(BlockStop(note_index))
        out.append(Finish(stop_reason="loop_halted", usage=self._usage))
        self.halted = True
        self.match = match
        logger.info(
            "loop detected: a %d-character block repeated %d times; answer halted",
            len(match.block),
            match.repetitions,
        )
        if self.on_halt is not None:
            self.on_halt(match)
        return out


def check_response(
    resp: ChatResponse, settings: LoopSettings | None = None
) -> tuple[ChatResponse, LoopMatch | None]:
    """A whole answer checked as the stream stage would: on a loop, a copy cut where the
    threshold was reached, later parts dropped, the note added as a text part and stop reason
    `loop_halted`; else the answer unchanged."""
    settings = settings or LoopSettings()
    if not settings.enabled:
        return resp, None
    # a loop is `min_repetitions` blocks of at least `min_pattern_length` characters: a text
    # shorter than that in all is not read at all (most whole answers)
    shortest = settings.shortest_loop
    text_total = thinking_total = 0
    for part in resp.parts:
        if isinstance(part, TextPart):
            text_total += len(part.text)
        elif isinstance(part, ThinkingPart) and not part.redacted:
            thinking_total += len(part.text)
    text = LoopDetector(settings) if text_total >= shortest else None
    thinking = LoopDetector(settings) if thinking_total >= shortest else None
    for i, part in enumerate(resp.parts):
        if isinstance(part, TextPart) and text is not None:
            match = text.feed(part.text)
        elif isinstance(part, ThinkingPart) and not part.redacted and thinking is not None:
            match = thinking.feed(part.text)
        else:
            continue
        if match is None:
            continue
        parts = list(resp.parts[:i])
        if match.offset_in_chunk > 0:
            cut: dict[str, object] = {"text": part.text[: match.offset_in_chunk]}
            if isinstance(part, ThinkingPart):
                cut["signature"] = None  # it signed the whole text; a stream would not send it
            parts.append(part.model_copy(update=cut))
        parts.append(TextPart(text="\n\n" + note_text(match)))
        halted = resp.model_copy(
            update={"parts": parts, "stop_reason": "loop_halted", "stop_sequence": None}
        )
        return halted, match
    return resp, None


# ----------------------------------------------------------------------------------------------
# Tool-call loops
# ----------------------------------------------------------------------------------------------

ToolLoopMode = Literal["break", "chance_then_break"]


class ToolLoopVerdict(StrEnum):
    OK = "ok"  # forward the call
    WARN = "warn"  # chance_then_break, first time: add a warning, let the model try again
    BREAK = "break"  # do not forward the call; answer with `tool_loop_message`


@dataclass(frozen=True, slots=True)
class ToolLoopSettings:
    """Tool-call loops: the same call `max_repeats` times in a row within `ttl_seconds`."""

    enabled: bool = True
    max_repeats: int = 4
    ttl_seconds: float = 120.0
    mode: ToolLoopMode = "break"
    max_sessions: int = 10_000

    def __post_init__(self) -> None:
        if self.max_repeats < 2:
            raise ValueError("max_repeats must be at least 2")
        if not self.ttl_seconds > 0:
            raise ValueError("ttl_seconds must be positive")
        if self.mode not in ("break", "chance_then_break"):
            raise ValueError("mode must be 'break' or 'chance_then_break'")
        if self.max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ToolLoopSettings:
        """Settings from TOOL_LOOP_* variables; a bad value raises ValueError naming it."""
        d = cls()
        raw_mode = env.get("TOOL_LOOP_MODE", "").strip().lower()
        if raw_mode and raw_mode not in ("break", "chance_then_break"):
            raise ValueError(
                f"TOOL_LOOP_MODE must be 'break' or 'chance_then_break', got {raw_mode[:40]!r}"
            )
        mode: ToolLoopMode = "chance_then_break" if raw_mode == "chance_then_break" else d.mode
        return cls(
            enabled=env_bool(env, "TOOL_LOOP_DETECTION_ENABLED", d.enabled),
            max_repeats=_env_int(env, "TOOL_LOOP_MAX_REPEATS", d.max_repeats, 2),
            ttl_seconds=_env_float(env, "TOOL_LOOP_TTL_SECONDS", d.ttl_seconds, 0.001),
            mode=mode,
        )


def _call_key(name: str, arguments: str) -> bytes:
    """A digest of the call: its name and its arguments JSON with keys sorted (raw when the
    arguments are not JSON). The digest keeps large arguments out of memory."""
    text = arguments.strip() or "{}"
    try:
        canonical = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    except ValueError:
        canonical = text
    h = hashlib.blake2b(digest_size=16)
    h.update(name.encode("utf-8", "surrogatepass"))
    h.update(b"\x00")
    h.update(canonical.encode("utf-8", "surrogatepass"))
    return h.digest()


@dataclass(slots=True)
class _ToolRun:
    key: bytes
    times: deque[float]  # when the calls of the current run were seen, oldest first
    last_seen: float
    warned: set[bytes] = field(default_factory=set)


class ToolLoopTracker:
    """Counts identical tool calls in a row per session.

    A call identical to the previous one of the session (same name, same arguments) extends the
    run; a different one starts a new run; calls older than the TTL drop out of the run. When
    the run reaches `max_repeats`: `break` mode answers BREAK; `chance_then_break` answers WARN
    the first time for that call in that session, BREAK after. Sessions idle for the TTL are
    forgotten, and at most `max_sessions` are kept (least recently used dropped first).
    """

    def __init__(
        self, settings: ToolLoopSettings | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings or ToolLoopSettings()
        self._clock = clock
        self._sessions: OrderedDict[str, _ToolRun] = OrderedDict()

    def observe(self, session_id: str, name: str, arguments: str) -> ToolLoopVerdict:
        s = self.settings
        if not s.enabled:
            return ToolLoopVerdict.OK
        now = self._clock()
        self._expire(now)
        key = _call_key(name, arguments)
        run = self._sessions.get(session_id)
        if run is None:
            run = _ToolRun(key, deque(maxlen=s.max_repeats), now)
            self._sessions[session_id] = run
            while len(self._sessions) > s.max_sessions:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(session_id)
            if run.key != key:
                run.key = key
                run.times.clear()
            horizon = now - s.ttl_seconds
            while run.times and run.times[0] < horizon:
                run.times.popleft()
        run.times.append(now)
        run.last_seen = now
        if len(run.times) < s.max_repeats:
            return ToolLoopVerdict.OK
        if s.mode == "chance_then_break" and key not in run.warned:
            run.warned.add(key)
            return ToolLoopVerdict.WARN
        return ToolLoopVerdict.BREAK

    def run_length(self, session_id: str) -> int:
        """How many identical calls in a row the session's current run holds within the TTL
        (capped at max_repeats)."""
        run = self._sessions.get(session_id)
        if run is None:
            return 0
        horizon = self._clock() - self.settings.ttl_seconds
        return sum(1 for t in run.times if t >= horizon)

    def forget(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _expire(self, now: float) -> None:
        horizon = now - self.settings.ttl_seconds
        sessions = self._sessions
        while sessions:
            sid, run = next(iter(sessions.items()))
            if run.last_seen >= horizon:
                break
            del sessions[sid]


def tool_loop_message(name: str, repeats: int) -> str:
    """The error text the client gets instead of the call's result in break mode."""
    return (
        f"Tool call loop detected: the tool '{name}' was called {repeats} times in a row with "
        "the same arguments. This call was not forwarded and was not executed. Repeating it "
        "will not give a different result: change your approach (different arguments, another "
        "tool, or answer with what you already know)."
    )


def tool_loop_warning(name: str, repeats: int) -> str:
    """The warning added to the conversation once in chance_then_break mode."""
    return (
        f"Warning: you have called the tool '{name}' {repeats} times in a row with the same "
        "arguments, and it keeps giving the same result. Do not call it again with these "
        "arguments: try a different approach. If you call it again unchanged, the call will be "
        "blocked."
    )
