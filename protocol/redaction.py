"""Secret redaction: configured keys and well-known secret shapes out of requests and answers.

Owns:
- `REDACTED`, the text every secret is replaced with, and `SECRET_PATTERNS`, the built-in
  secret shapes (name -> regex);
- `pattern_settings`: the user's `mitm.conf` value turned into the enabled patterns;
- `Redactor`: one combined matcher over the configured key values and the enabled patterns;
  `redact(text)` and `redact_request(req)` (in place, returns the count);
- `StreamScrubber` / `BytesScrubber`: the same for answers that arrive in pieces (decoded text,
  raw SSE bytes), catching a key split across any number of pieces;
- `RedactionStage`: the stream-pipeline stage that scrubs text, thinking and tool arguments.

How it matches. The key values (each also as it reads inside a JSON string when that differs)
become one trie-shaped alternation, longest key first at every position, and the enabled
patterns are alternated after them, so a text is searched once, in C. Every top-level
alternative starts with a literal character, which lets `re` skip positions that cannot start a
secret; a user pattern that starts with anything else still works, only slower. Matches that
overlap (a pattern match running into a key, two keys sharing characters) are merged into one
replaced region, so no fragment of a key is ever left behind.

What it never touches, on purpose: thinking text in requests (providers sign it; a changed
thought is rejected), images, provider-opaque blocks, tool definitions, and `extras`.

Streams. A scrubber holds back only the end of what it was given when that end is the start
of a configured key (usually nothing), and emits everything else at once; `flush()` at the
end of a block. Configured keys are caught exactly however they are split; patterns are
matched in what has arrived so far (a match touching the end is held until the next piece), so
answers are meant to be scrubbed with `Redactor.keys_only()`.

No key value ever reaches a log line, an exception message or a `repr`.
"""

from __future__ import annotations

import json
import logging
import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from protocol.canonical import (
    BlockStop,
    ChatRequest,
    Error,
    Event,
    Finish,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ToolArgsDelta,
    ToolCallPart,
    ToolResultPart,
)

logger = logging.getLogger(__name__)

REDACTED = "(API_KEY_HAS_BEEN_REDACTED)"
MIN_KEY_LENGTH = 8  # shorter configured values ("none", "dummy") are not treated as keys

# Each pattern starts with a literal character (so the combined regex keeps its fast scan) and
# checks what precedes it with a lookbehind placed after that literal.
SECRET_PATTERNS: dict[str, str] = {
    # OpenAI and the many providers with OpenAI-style keys (sk-proj-, sk-svcacct-, sk-or-v1-,
    # DeepSeek...): 20+ key characters that either mix upper case, lower case and digits, or
    # hold a run of 20+ letters and digits with a digit in it; hyphenated names
    # (sk-learn-compatible-...) do neither. Anthropic's keys have their own pattern.
    "openai": (
        r"sk-(?<![A-Za-z0-9]sk-)(?!ant-)"
        r"(?:(?=[A-Za-z0-9_-]*?[A-Z])(?=[A-Za-z0-9_-]*?[a-z])(?=[A-Za-z0-9_-]*?[0-9])"
        r"|(?=[A-Za-z0-9_-]*?(?<![A-Za-z0-9])(?=[A-Za-z0-9]{20})[A-Za-z0-9]*[0-9]))"
        r"[A-Za-z0-9_-]{20,}"
    ),
    "anthropic": r"sk-ant-(?<![A-Za-z0-9]sk-ant-)[A-Za-z0-9_-]{20,}",
    "google_api_key": r"AIza(?<![A-Za-z0-9]AIza)[A-Za-z0-9_-]{35}(?![A-Za-z0-9_-])",
    # AWS access key ids are base32: A-Z and 2-7.
    "aws_access_key_id": r"A(?:KIA|SIA)(?<![A-Za-z0-9]A[KS]IA)[A-Z2-7]{16}(?![A-Za-z0-9])",
    "github_token": r"gh[pousr]_(?<![A-Za-z0-9]gh[pousr]_)[A-Za-z0-9]{36,}(?![A-Za-z0-9])",
    "github_pat": r"github_pat_(?<![A-Za-z0-9]github_pat_)[A-Za-z0-9_]{22,}",
    "slack_token": r"xox[abeprs]-(?<![A-Za-z0-9]xox[abeprs]-)[0-9]+-[A-Za-z0-9-]{8,}",
    "stripe_live_key": (
        r"sk_live_(?<![A-Za-z0-9]sk_live_)[A-Za-z0-9]{20,}"
        r"|rk_live_(?<![A-Za-z0-9]rk_live_)[A-Za-z0-9]{20,}"
    ),
    # BEGIN ... PRIVATE KEY----- to its END line; without an END (a truncated paste) the
    # base64 lines that follow, real or JSON-escaped line breaks between them.
    "private_key_pem": (
        r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY-----"
        r"(?:[\s\S]{0,20000}?-----END[A-Z0-9 ]{0,40}PRIVATE KEY-----"
        r"|(?:(?:\s|\\[nr])+[A-Za-z0-9+/=]{16,})*)"
    ),
}

_TAIL_DEPTH = 32  # key prefixes up to this long are recognised by the tail regex alone
_END = "<end>"  # trie markers (never a single character)
_TRUNC = "<trunc>"


# ----------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------


def check_pattern(name: str, regex: Any) -> str:
    """`regex` if it can join the combined matcher, else ValueError naming the pattern.

    It must compile on its own, use no capturing groups (they would shift other patterns'
    backreferences; use `(?:...)`), no global inline flags (use scoped ones: `(?i:...)`), and
    not match the empty string.
    """
    if not isinstance(regex, str) or not regex:
        raise ValueError(f"redaction pattern {name!r}: the regex must be a non-empty string")
    try:
        compiled = re.compile(f"(?:{regex})")
    except re.error as exc:
        raise ValueError(f"redaction pattern {name!r}: invalid regex: {exc}") from None
    if compiled.groups:
        raise ValueError(
            f"redaction pattern {name!r}: capturing groups are not allowed, use (?:...)"
        )
    if compiled.fullmatch("") is not None:
        raise ValueError(f"redaction pattern {name!r}: matches the empty string")
    return regex


def pattern_settings(config: Mapping[str, Any] | str | None) -> dict[str, str]:
    """The enabled patterns (name -> regex) for the user's `mitm.conf` value.

    The value is a mapping (or the same as YAML/JSON text, as `--set` passes it):
        add:      {name: regex, ...}   # new patterns; a built-in's name replaces it
        disable:  [name, ...]          # or "name,name"; "all" turns every built-in off
    Empty or None: the built-ins. Unknown fields, unknown names to disable and bad regexes
    raise ValueError naming them.
    """
    if isinstance(config, str):
        try:
            config = yaml.safe_load(config) if config.strip() else None
        except yaml.YAMLError:
            raise ValueError("redaction patterns: the value is not YAML or JSON") from None
    if not config:
        return dict(SECRET_PATTERNS)
    if not isinstance(config, Mapping):
        raise ValueError("redaction patterns: expected a mapping with 'add' and/or 'disable'")
    unknown = set(config) - {"add", "disable"}
    if unknown:
        raise ValueError(f"redaction patterns: unknown field(s) {sorted(map(str, unknown))}")
    add = config.get("add") or {}
    if not isinstance(add, Mapping):
        raise ValueError("redaction patterns: 'add' must map names to regexes")
    disable = config.get("disable") or []
    if isinstance(disable, str):
        disable = [d.strip() for d in disable.split(",") if d.strip()]
    if not isinstance(disable, list | tuple) or not all(isinstance(d, str) for d in disable):
        raise ValueError("redaction patterns: 'disable' must be a list of names")
    patterns = dict(SECRET_PATTERNS)
    for name in disable:
        if name == "all":
            patterns.clear()
        elif name in SECRET_PATTERNS or name in add:
            patterns.pop(name, None)
        else:
            raise ValueError(f"redaction patterns: cannot disable unknown pattern {name!r}")
    for name, regex in add.items():
        if name not in disable:
            patterns[str(name)] = check_pattern(str(name), regex)
    return patterns


# ----------------------------------------------------------------------------------------------
# Building the regexes
# ----------------------------------------------------------------------------------------------


def _key_variants(key: str) -> set[str]:
    """The key, and the key as it reads inside a JSON string when that differs."""
    out = {key, json.dumps(key)[1:-1], json.dumps(key, ensure_ascii=False)[1:-1]}
    if "/" in key:
        out.add(key.replace("/", "\\/"))
    return out


def _trie(words: Iterable[str], depth: int | None = None) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for ch in word[:depth] if depth is not None else word:
            node = node.setdefault(ch, {})
        node[_END] = True
        if depth is not None and len(word) > depth:
            node[_TRUNC] = True
    return root


def _children(node: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(ch, child) for ch, child in node.items() if len(ch) == 1]


def _word_branches(node: dict[str, Any]) -> list[tuple[str, str]]:
    """(first character, regex of the rest) of each branch of a trie node; the rest matches
    the longest word of that branch at a given position."""
    out = []
    for ch, child in _children(node):
        rest = ""
        while _END not in child and len(child) == 1:  # a chain: one flat literal
            ((ch2, child),) = child.items()
            rest += re.escape(ch2)
        if _children(child):
            inner = "|".join(re.escape(c) + r for c, r in _word_branches(child))
            # a word ending here while longer ones go on: prefer the longer (greedy `?`)
            rest += f"(?:{inner})?" if _END in child else f"(?:{inner})"
        out.append((ch, rest))
    return out


def _split_top(regex: str) -> list[str]:
    """The top-level alternatives of a regex (split at `|` outside groups and classes)."""
    pieces = []
    depth = start = i = 0
    in_class = False
    while i < len(regex):
        c = regex[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            i += 1
            if regex[i : i + 1] == "^":
                i += 1
            if regex[i : i + 1] == "]":  # a "]" first in a class is literal
                i += 1
            continue
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            pieces.append(regex[start:i])
            start = i + 1
        i += 1
    pieces.append(regex[start:])
    return pieces


def _literal_head(piece: str) -> tuple[str, str] | None:
    """(first character, rest) when `piece` starts with one plain literal character."""
    if piece[:1] == "\\":
        if len(piece) < 2 or piece[1].isalnum():
            return None
        ch, rest = piece[1], piece[2:]
    elif not piece or piece[0] in _SPECIAL:
        return None
    else:
        ch, rest = piece[0], piece[1:]
    return None if rest[:1] in _QUANTIFIERS else (ch, rest)


_SPECIAL = frozenset(".^$*+?{}[]|()\\")
_QUANTIFIERS = frozenset("*+?{")


def _combined_source(words: list[str], patterns: list[str]) -> str:
    """One alternation of the key trie and the patterns, grouped by their first character.

    `re` can skip positions that cannot start a match only when every top-level alternative
    starts with a literal, and it tries the alternatives one by one: so keys and pattern
    alternatives sharing a first character become one alternative, keys first. Pattern parts
    that start otherwise are alternated after them.
    """
    groups: dict[str, list[str]] = {}
    if words:
        for ch, rest in _word_branches(_trie(words)):
            groups.setdefault(ch, []).append(rest)
    loose = []
    for pattern in patterns:
        pieces = _split_top(pattern)
        if not _compiles_alone(pieces):  # a split the splitter got wrong: keep it whole
            loose.append(f"(?:{pattern})")
            continue
        for piece in pieces:
            head = _literal_head(piece)
            if head is None:
                loose.append(f"(?:{piece})")
            else:
                groups.setdefault(head[0], []).append(head[1])
    alternatives = [
        re.escape(ch) + (rests[0] if len(rests) == 1 else f"(?:{'|'.join(rests)})")
        for ch, rests in groups.items()
    ]
    return "|".join(alternatives + loose)


def _compiles_alone(pieces: list[str]) -> bool:
    try:
        for piece in pieces:
            re.compile(piece)
    except re.error:
        return False
    return True


def _prefix_regex(node: dict[str, Any]) -> str:
    """Alternation matching, up to the end of the text, any non-empty prefix of a trie word
    (a truncated word's deepest node accepts whatever follows: callers verify those)."""
    alts = []
    for ch, child in _children(node):
        lit = re.escape(ch)
        if _TRUNC in child:
            alts.append(lit + r"(?s:.*)\Z")
            continue
        kids = _children(child)
        alts.append(f"{lit}(?:{_prefix_regex(child)}|\\Z)" if kids else lit + r"\Z")
    return "|".join(alts)


def _compile(source: str, as_bytes: bool) -> re.Pattern[Any]:
    return re.compile(source.encode("latin-1") if as_bytes else source)


class _Matcher[AnyStr: (bytes, str)]:
    """The compiled matchers of one Redactor over one text type (str, or bytes for SSE)."""

    __slots__ = ("regex", "tail", "carriers", "max_tail", "min_len", "grows", "empty", "mark")

    def __init__(
        self,
        regex: re.Pattern[AnyStr] | None,
        tail: re.Pattern[AnyStr] | None,
        carriers: list[AnyStr],
        min_len: int,
        grows: bool,
        empty: AnyStr,
        mark: AnyStr,
    ) -> None:
        self.regex: re.Pattern[AnyStr] | None = regex
        self.tail: re.Pattern[AnyStr] | None = tail
        self.carriers: list[AnyStr] = carriers  # sorted keys minus their last character
        self.max_tail = max((len(c) for c in carriers), default=0)
        self.min_len = min_len
        self.grows = grows  # a match touching the end may still grow (patterns are enabled)
        self.empty: AnyStr = empty
        self.mark: AnyStr = mark

    def regions(self, text: AnyStr) -> list[tuple[int, int]]:
        """The spans to replace: every match, overlapping ones merged, in order."""
        regex = self.regex
        if regex is None or len(text) < self.min_len:
            return []
        search = regex.search
        m = search(text)
        out: list[tuple[int, int]] = []
        start = end = -1
        while m is not None:
            ms, me = m.span()
            if me > ms:  # (a user pattern may match an empty lookaround: nothing to replace)
                if ms < end:  # overlaps the region being built: merge
                    if me > end:
                        end = me
                else:
                    if end > start:
                        out.append((start, end))
                    start, end = ms, me
            # Later matches may overlap this one: look again from its next character.
            m = search(text, ms + 1)
        if end > start:
            out.append((start, end))
        return out

    def replace(self, text: AnyStr, regions: list[tuple[int, int]], stop: int) -> AnyStr:
        """`text[:stop]` with the regions (all ending by `stop`) replaced."""
        parts: list[AnyStr] = []
        last = 0
        for start, end in regions:
            parts.append(text[last:start])
            parts.append(self.mark)
            last = end
        parts.append(text[last:stop])
        return self.empty.join(parts)

    def tail_start(self, buf: AnyStr) -> int:
        """Where the longest end of `buf` that begins a configured key starts (or len(buf))."""
        tail = self.tail
        n = len(buf)
        if tail is None or not n:
            return n
        m = tail.search(buf, max(0, n - self.max_tail))
        while m is not None:
            i = m.start()
            if n - i <= _TAIL_DEPTH:
                return i
            rest = buf[i:]
            carriers = self.carriers
            j = bisect_left(carriers, rest)
            if j < len(carriers) and carriers[j].startswith(rest):
                return i
            m = tail.search(buf, i + 1)
        return n


def _build(keys: list[str], patterns: list[str], as_bytes: bool) -> _Matcher[Any]:
    def norm(value: str) -> str:  # bytes are handled as latin-1 text of their UTF-8 form
        return value.encode("utf-8").decode("latin-1") if as_bytes else value

    words = sorted({norm(v) for key in keys for v in _key_variants(key)}, key=len, reverse=True)
    regex = None
    if words or patterns:
        try:  # a pathological trie (hundreds of nested prefixes) is too deep for `re`
            regex = _compile(_combined_source(words, patterns), as_bytes)
        except (RecursionError, re.error):
            plain = [re.escape(w) for w in words] + [f"(?:{p})" for p in patterns]
            regex = _compile("|".join(plain), as_bytes)
    carriers = sorted({w[:-1] for w in words if len(w) > 1})
    tail = _compile(_prefix_regex(_trie(carriers, _TAIL_DEPTH)), as_bytes) if carriers else None
    min_len = min((len(w) for w in words), default=1) if not patterns else 1
    if as_bytes:
        return _Matcher(
            regex,
            tail,
            [c.encode("latin-1") for c in carriers],
            min_len,
            bool(patterns),
            b"",
            REDACTED.encode(),
        )
    return _Matcher(regex, tail, carriers, min_len, bool(patterns), "", REDACTED)


# ----------------------------------------------------------------------------------------------
# Redactor
# ----------------------------------------------------------------------------------------------


class Redactor:
    """Replaces configured key values and enabled secret patterns with `REDACTED`.

    `keys`: every configured key value (all backends' keys, the proxy's own key); values
    shorter than `MIN_KEY_LENGTH` (after trimming whitespace) are ignored. `patterns`: name ->
    regex, `SECRET_PATTERNS` when None; `disabled`: names of patterns to leave out (unknown
    names are ignored here; `pattern_settings` checks them). Patterns are checked like
    `check_pattern` (ValueError naming the pattern).
    """

    __slots__ = ("_keys", "pattern_names", "_patterns", "_text", "_bytes", "_keys_only")

    def __init__(
        self,
        keys: Iterable[str],
        patterns: Mapping[str, str] | None = None,
        disabled: Iterable[str] = (),
    ) -> None:
        values = {k.strip() for k in keys if k}
        self._keys = sorted((k for k in values if len(k) >= MIN_KEY_LENGTH), key=len, reverse=True)
        if len(self._keys) < len(values):
            logger.debug(
                "ignoring %d key value(s) too short to redact", len(values) - len(self._keys)
            )
        off = set(disabled)
        chosen = SECRET_PATTERNS if patterns is None else patterns
        self._patterns = {
            name: check_pattern(name, regex) for name, regex in chosen.items() if name not in off
        }
        self.pattern_names = tuple(self._patterns)
        self._text: _Matcher[str] = _build(self._keys, list(self._patterns.values()), False)
        self._bytes: _Matcher[bytes] | None = None
        self._keys_only: Redactor | None = None

    def __repr__(self) -> str:
        return f"Redactor({len(self._keys)} keys, patterns={list(self.pattern_names)})"

    @property
    def key_count(self) -> int:
        return len(self._keys)

    @property
    def active(self) -> bool:
        """Whether there is anything to redact at all."""
        return self._text.regex is not None

    def keys_only(self) -> Redactor:
        """A Redactor over the same configured keys and no patterns (for answers)."""
        if not self._patterns:
            return self
        if self._keys_only is None:
            self._keys_only = Redactor(self._keys, patterns={})
        return self._keys_only

    def redact(self, text: str) -> tuple[str, int]:
        """`text` with every secret replaced, and how many were; one search pass."""
        matcher = self._text
        regions = matcher.regions(text)
        if not regions:
            return text, 0
        return matcher.replace(text, regions, len(text)), len(regions)

    def redact_request(self, req: ChatRequest) -> int:
        """Redact the request in place; returns how many secrets were replaced.

        Covered: system parts, text parts of every message, tool-call arguments (the JSON
        text; it stays valid JSON), and the text parts of tool results. Thinking parts are NOT
        changed (their signatures would no longer verify), nor images, opaque blocks, tool
        definitions or any `extras`.
        """
        if not self.active:
            return 0
        redact = self.redact
        count = 0
        for part in req.system:
            part.text, n = redact(part.text)
            count += n
        for message in req.messages:
            for item in message.content:
                if isinstance(item, TextPart):
                    item.text, n = redact(item.text)
                elif isinstance(item, ToolCallPart):
                    item.arguments, n = self._redact_json_text(item.arguments)
                elif isinstance(item, ToolResultPart):
                    n = 0
                    for sub in item.content:
                        if isinstance(sub, TextPart):
                            sub.text, k = redact(sub.text)
                            n += k
                else:
                    continue
                count += n
        return count

    def _redact_json_text(self, text: str) -> tuple[str, int]:
        """Redact JSON text. When there is something to redact and the text parses, each string
        is redacted on its own (a match can then never run across quotes and swallow part of
        the structure) and the value is written back compactly; otherwise the text as is."""
        out, n = self.redact(text)
        if not n:
            return out, n
        try:
            value = json.loads(text)
        except ValueError:
            return out, n
        counter = [0]
        value = self._redact_value(value, counter)
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")), counter[0]

    def _redact_value(self, value: Any, counter: list[int]) -> Any:
        if isinstance(value, str):
            out, n = self.redact(value)
            counter[0] += n
            return out
        if isinstance(value, list):
            return [self._redact_value(v, counter) for v in value]
        if isinstance(value, dict):
            return {
                self._redact_value(k, counter): self._redact_value(v, counter)
                for k, v in value.items()
            }
        return value

    def _matcher_bytes(self) -> _Matcher[bytes]:
        if self._bytes is None:
            self._bytes = _build(self._keys, [], True)
        return self._bytes


# ----------------------------------------------------------------------------------------------
# Streams
# ----------------------------------------------------------------------------------------------


class _Scrubber[AnyStr: (bytes, str)]:
    __slots__ = ("_m", "_held", "count")

    def __init__(self, matcher: _Matcher[AnyStr]) -> None:
        self._m: _Matcher[AnyStr] = matcher
        self._held: AnyStr = matcher.empty
        self.count = 0

    def _feed(self, data: AnyStr) -> AnyStr:
        m = self._m
        buf = self._held + data if self._held else data
        if not buf:
            return buf
        n = len(buf)
        cut = m.tail_start(buf)
        regions = m.regions(buf)
        while regions and (regions[-1][1] > cut or (m.grows and regions[-1][1] == n)):
            start = regions.pop()[0]  # it reaches into the held end (or may still grow)
            cut = min(cut, start)
        if cut == n:
            self._held = m.empty
            if not regions:
                return buf
        else:
            self._held = buf[cut:]
            if not regions:
                return buf[:cut]
        self.count += len(regions)
        return m.replace(buf, regions, cut)

    def _flush(self) -> AnyStr:
        m = self._m
        held, self._held = self._held, m.empty
        if not held:
            return held
        regions = m.regions(held)
        if not regions:
            return held
        self.count += len(regions)
        return m.replace(held, regions, len(held))


class StreamScrubber(_Scrubber[str]):
    """Scrubs a text that arrives in pieces (one block of an answer).

    `feed(text)` returns what is safe to emit now: everything, unless the end of what arrived
    is the start of a configured key, which is held until the next piece shows whether the
    key follows. `flush()` at the end of the block returns what is held, scrubbed. `count` is
    how many secrets were replaced so far.
    """

    __slots__ = ()

    def __init__(self, redactor: Redactor) -> None:
        super().__init__(redactor._text)

    def feed(self, text: str) -> str:
        return self._feed(text)

    def flush(self) -> str:
        return self._flush()


class BytesScrubber(_Scrubber[bytes]):
    """Scrubs configured keys out of raw bytes (same-protocol SSE passthrough).

    Keys are matched as their UTF-8 bytes and as they read inside JSON strings; patterns are
    not applied here. `feed(data)` returns what is safe to send now; `feed(b"")` (mitmproxy's
    end-of-stream call) is the same as `flush()`; `count` is how many keys were replaced.
    """

    __slots__ = ()

    def __init__(self, redactor: Redactor) -> None:
        super().__init__(redactor._matcher_bytes())

    def feed(self, data: bytes) -> bytes:
        return self._feed(data) if data else self._flush()

    def flush(self) -> bytes:
        return self._flush()


class RedactionStage:
    """Pipeline stage scrubbing answers: text, thinking (not redacted/encrypted thinking) and
    tool-call argument fragments, one `StreamScrubber` per block index.

    A block's held text is sent at its `BlockStop`, before `Finish`/`Error`, with a thinking
    signature, and at `close()`. An event with nothing changed and nothing held is returned
    as is (`[event]`). Scrubbing thinking of an answer that carries a signature makes that
    thought fail verification if the client sends it back: a key in it is not sent on anyway.
    """

    __slots__ = ("redactor", "_scrubbers", "_done")

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self._scrubbers: dict[int, tuple[StreamScrubber, type]] = {}
        self._done = 0  # count of the scrubbers already finished

    @property
    def count(self) -> int:
        return self._done + sum(s.count for s, _ in self._scrubbers.values())

    @property
    def holding(self) -> bool:
        """Whether some text is held back (it may be the start of a key)."""
        return any(s._held for s, _ in self._scrubbers.values())

    def feed(self, event: Event) -> list[Event]:
        if not self.redactor.active:
            return [event]
        if isinstance(event, TextDelta):
            out = self._scrubber(event.index, TextDelta).feed(event.text)
            if out is event.text:
                return [event]
            return [TextDelta(event.index, out)] if out else []
        if isinstance(event, ToolArgsDelta):
            out = self._scrubber(event.index, ToolArgsDelta).feed(event.fragment)
            if out is event.fragment:
                return [event]
            return [ToolArgsDelta(event.index, out)] if out else []
        if isinstance(event, ThinkingDelta):
            return self._thinking(event)
        if isinstance(event, BlockStop):
            return self._flush(event.index) + [event]
        if isinstance(event, Finish | Error):
            return self.close() + [event]
        return [event]

    def _thinking(self, event: ThinkingDelta) -> list[Event]:
        if event.redacted:  # encrypted: nothing readable to scrub
            return [event]
        scrubber = self._scrubber(event.index, ThinkingDelta)
        out = scrubber.feed(event.text)
        if event.signature is not None:  # the block's text ends here: send what is held
            out += scrubber.flush()
            if out == event.text:
                return [event]
            return [ThinkingDelta(event.index, out, event.signature, False)]
        if out is event.text:
            return [event]
        return [ThinkingDelta(event.index, out)] if out else []

    def close(self) -> list[Event]:
        out: list[Event] = []
        for index in sorted(self._scrubbers):
            out.extend(self._flush(index))
        return out

    def _scrubber(self, index: int, kind: type) -> StreamScrubber:
        entry = self._scrubbers.get(index)
        if entry is None:
            entry = self._scrubbers[index] = (StreamScrubber(self.redactor), kind)
        return entry[0]

    def _flush(self, index: int) -> list[Event]:
        entry = self._scrubbers.pop(index, None)
        if entry is None:
            return []
        scrubber, kind = entry
        text = scrubber.flush()
        self._done += scrubber.count
        return [_delta(kind, index, text)] if text else []


def _delta(kind: type, index: int, text: str) -> Event:
    if kind is ToolArgsDelta:
        return ToolArgsDelta(index, text)
    if kind is ThinkingDelta:
        return ThinkingDelta(index, text)
    return TextDelta(index, text)
